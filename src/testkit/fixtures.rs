//! Fixed keys, members, claims and trust lists: the test vectors, the tests and the benchmarks build on the same ones.

use crate::clock::Timestamp;
use crate::code::envelope::{encode_claims, encode_text, with_signed_message};
use crate::code::{AccountStatus, CentreCode, Claims, CodeId, DepositClaims, Fen, LoanState, Purpose};
use crate::issue::DepositRecord;
use crate::model::IdNumber;
use crate::trust::{CentreKey, SubjectSecret, TrustList};

pub const JIAOZUO: &str = "410800";
pub const SHENZHEN: &str = "440300";
pub const SHANGHAI: &str = "310000";
pub const HANGZHOU: &str = "330100";

pub fn centre(code: &str) -> CentreCode {
    code.parse().unwrap()
}

pub fn at(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

/// Test keys: their seeds are published in the vectors, so they must never sign anything real.
#[derive(Debug)]
pub struct Keys {
    /// Jiaozuo's key before rotation (signs until `ROTATED_AT`).
    pub jiaozuo_old: [u8; 32],
    /// Jiaozuo's key after rotation.
    pub jiaozuo_current: [u8; 32],
    /// A Jiaozuo key that was revoked.
    pub jiaozuo_revoked: [u8; 32],
    /// A key Jiaozuo never published.
    pub jiaozuo_unpublished: [u8; 32],
    /// Shenzhen's key.
    pub shenzhen: [u8; 32],
    /// Hangzhou's key; Hangzhou is not in the trust list.
    pub hangzhou: [u8; 32],
    /// Jiaozuo's subject secret.
    pub jiaozuo_subject_secret: [u8; 32],
}

pub const KEYS: Keys = Keys {
    jiaozuo_old: [0x11; 32],
    jiaozuo_current: [0x22; 32],
    jiaozuo_revoked: [0x33; 32],
    jiaozuo_unpublished: [0x44; 32],
    shenzhen: [0x55; 32],
    hangzhou: [0x66; 32],
    jiaozuo_subject_secret: [0x5a; 32],
};

pub const JIAOZUO_KEYS_FROM: &str = "2026-01-01T00:00:00+08:00";
pub const ROTATED_AT: &str = "2026-11-20T12:00:00+08:00";
pub const KEYS_UNTIL: &str = "2027-11-20T00:00:00+08:00";

pub fn key(seed: &[u8; 32]) -> CentreKey {
    CentreKey::from_seed(seed)
}

/// Jiaozuo (old key rotated to the current one, a revoked key) and Shenzhen.
pub fn trust_list() -> TrustList {
    let mut list = TrustList::new();
    let (from, until) = (at(JIAOZUO_KEYS_FROM), at(KEYS_UNTIL));
    list.add_key(
        centre(JIAOZUO),
        Some("焦作市住房公积金管理中心"),
        key(&KEYS.jiaozuo_old).verifying_key(),
        from,
        until,
    )
    .unwrap();
    list.add_key(centre(JIAOZUO), None, key(&KEYS.jiaozuo_revoked).verifying_key(), from, until).unwrap();
    list.revoke(centre(JIAOZUO), key(&KEYS.jiaozuo_revoked).key_id()).unwrap();
    list.rotate(centre(JIAOZUO), key(&KEYS.jiaozuo_current).verifying_key(), at(ROTATED_AT), until).unwrap();
    list.add_key(centre(SHENZHEN), Some("深圳市住房公积金管理中心"), key(&KEYS.shenzhen).verifying_key(), from, until)
        .unwrap();
    list
}

pub fn subject_secret() -> SubjectSecret {
    SubjectSecret::from_bytes(KEYS.jiaozuo_subject_secret)
}

/// The worked example of domain.md: 20,000 yuan balance, 30 months of continuous deposit.
pub const MEMBER_JSON: &str = r#"{
  "id_number": "11010519491231002X",
  "account_status": "normal",
  "balance_fen": 2000000,
  "monthly_deposit_fen": 150000,
  "continuous_months": 30,
  "loan_state": "none",
  "loans_used": 0,
  "registry_version": 7
}"#;

pub fn member() -> DepositRecord {
    serde_json::from_str(MEMBER_JSON).unwrap()
}

pub fn id_number() -> IdNumber {
    member().id_number
}

/// Claims as the standard issuer would build them for `member()`.
pub fn claims(issuer: &str, seed: &[u8; 32], issued_at: &str, purpose: Purpose, audience: Option<&str>) -> Claims {
    let issued_at = at(issued_at);
    Claims {
        issuer: centre(issuer),
        key_id: key(seed).key_id(),
        code_id: CodeId::from_bytes(*b"liangma-test"),
        issued_at,
        valid_for: u32::try_from(issued_at.end_of_cst_day().unix() - issued_at.unix()).unwrap().min(86_400),
        purpose,
        audience: audience.map(centre),
        subject: subject_secret().subject_ref(&id_number()),
        deposit: member().deposit_claims(),
    }
}

/// The largest claims a real member can have: every optional field set, every number at its
/// realistic maximum (balance 10^10 fen = 100 million yuan, registry versions as millisecond
/// timestamps up to the year 2100).
pub fn largest_claims() -> Claims {
    Claims {
        issuer: centre("829999"),
        key_id: crate::code::KeyId::from_wire(u32::MAX),
        code_id: CodeId::from_bytes([0xff; 12]),
        issued_at: at("2099-12-31T12:00:00+08:00"),
        valid_for: 43_200,
        purpose: Purpose::LoanSettlement,
        audience: Some(centre("829998")),
        subject: crate::code::SubjectRef::from_bytes([0xff; 12]),
        deposit: DepositClaims {
            account_status: AccountStatus::Closed,
            balance: Fen(crate::code::bounds::MAX_BALANCE_FEN),
            monthly_deposit: Fen(crate::code::bounds::MAX_MONTHLY_DEPOSIT_FEN),
            continuous_months: crate::code::bounds::MAX_CONTINUOUS_MONTHS,
            loan_state: LoanState::Settled,
            loans_used: crate::code::bounds::MAX_LOANS_USED,
            registry_version: crate::code::bounds::MAX_REGISTRY_VERSION,
        },
    }
}

/// Signs arbitrary claim bytes the way an issuer does, for codes the issuer would refuse to make.
pub fn seal_bytes(seed: &[u8; 32], claims_bytes: &[u8]) -> (String, [u8; 64]) {
    let signature = with_signed_message(claims_bytes, |message| key(seed).sign(message));
    (encode_text(claims_bytes, &signature), signature.to_bytes())
}

pub fn seal(seed: &[u8; 32], claims: &Claims) -> String {
    seal_bytes(seed, &encode_claims(claims)).0
}

/// The trust list of `trust_list()` plus `other_centres` more centres (500000, 500001, …) with
/// two keys each: the size of a national list (300 other centres), for benchmarks.
pub fn national_trust_list(other_centres: u32) -> TrustList {
    let mut list = trust_list();
    for index in 0..other_centres {
        for seed in [1u8, 2] {
            let mut bytes = [seed; 32];
            bytes[..4].copy_from_slice(&index.to_be_bytes());
            let code = CentreCode::new(500_000 + index).expect("a six-digit code");
            let name = (seed == 1).then_some("centre");
            list.add_key(code, name, key(&bytes).verifying_key(), at(JIAOZUO_KEYS_FROM), at(KEYS_UNTIL))
                .expect("distinct test keys");
        }
    }
    list
}

/// Jiaozuo's issuer with its current key.
pub fn jiaozuo_issuer() -> crate::issue::Issuer {
    crate::issue::Issuer::new(key(&KEYS.jiaozuo_current), subject_secret(), &trust_list())
        .expect("the current key is published")
}
