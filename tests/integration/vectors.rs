//! The frozen test vectors in tests/vectors/v1.json, checked in both directions: the code
//! still builds exactly those bytes, and verifying each text gives the recorded verdict.
//!
//! `LIANGMA_WRITE_VECTORS=1 cargo test --test integration vectors` writes the file when it
//! does not exist yet; once committed it is frozen and only ever compared against.

use std::path::PathBuf;

use prost::Message;
use serde_json::{Value, json};

use liangma::code::envelope::{FORMAT_VERSION, SIGNING_DOMAIN, decode, encode_claims};
use liangma::code::{Claims, Purpose};
use liangma::issue::{DepositRecord, IssueRequest, Issuer};
use liangma::pb::v1::CodeClaims;
use liangma::trust::TrustList;
use liangma::verify::{Reason, VerifierPolicy, verify_offline};

use liangma::testkit::*;

const ISSUED: &str = "2026-11-26T09:30:00+08:00";
const VERIFIED: &str = "2026-11-26T10:00:00+08:00";

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/v1.json")
}

/// What the named test key is and which seed it has.
fn named_keys() -> Vec<(&'static str, &'static str, [u8; 32], &'static str)> {
    vec![
        ("jiaozuo-current", JIAOZUO, KEYS.jiaozuo_current, "signs for Jiaozuo since the rotation"),
        ("jiaozuo-old", JIAOZUO, KEYS.jiaozuo_old, "signed for Jiaozuo until the rotation"),
        ("jiaozuo-revoked", JIAOZUO, KEYS.jiaozuo_revoked, "published by Jiaozuo, then revoked"),
        ("jiaozuo-unpublished", JIAOZUO, KEYS.jiaozuo_unpublished, "never published"),
        ("shenzhen", SHENZHEN, KEYS.shenzhen, "signs for Shenzhen"),
        ("hangzhou", HANGZHOU, KEYS.hangzhou, "Hangzhou's key; Hangzhou is not in the trust list"),
    ]
}

fn seed_of(name: &str) -> [u8; 32] {
    named_keys().into_iter().find(|(n, ..)| *n == name).map(|(_, _, seed, _)| seed).unwrap()
}

fn claims_json(claims: &Claims) -> Value {
    let deposit = &claims.deposit;
    json!({
        "issuer_centre": claims.issuer.to_string(),
        "key_id": claims.key_id.to_string(),
        "code_id_hex": claims.code_id.to_string(),
        "issued_at": claims.issued_at.to_rfc3339_cst(),
        "issued_at_unix": claims.issued_at.unix(),
        "valid_for": claims.valid_for,
        "expires_at": claims.expires_at().to_rfc3339_cst(),
        "purpose": claims.purpose.as_str(),
        "audience_centre": claims.audience.map(|c| c.to_string()),
        "subject_ref_hex": claims.subject.to_full_hex(),
        "account_status": deposit.account_status.as_str(),
        "balance_fen": deposit.balance.0,
        "monthly_deposit_fen": deposit.monthly_deposit.0,
        "continuous_months": deposit.continuous_months,
        "loan_state": deposit.loan_state.as_str(),
        "loans_used": deposit.loans_used,
        "registry_version": deposit.registry_version,
    })
}

fn verifier(centre: &str, purposes: &[Purpose], now: &str) -> Value {
    json!({
        "centre": centre,
        "purposes": purposes.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "clock_skew_seconds": 300,
        "now": now,
    })
}

fn shenzhen_at(now: &str) -> Value {
    verifier(SHENZHEN, &[Purpose::OffsiteLoan], now)
}

struct Case {
    name: &'static str,
    description: &'static str,
    issue: Option<Value>,
    claims: Option<Value>,
    claims_bytes: Option<Vec<u8>>,
    signature: Option<[u8; 64]>,
    text: String,
    verifier: Value,
    /// `None` for VALID.
    expected: Option<Reason>,
}

impl Case {
    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "description": self.description,
            "issue": self.issue,
            "claims": self.claims,
            "claims_hex": self.claims_bytes.as_ref().map(hex::encode),
            "signature_hex": self.signature.map(hex::encode),
            "text": self.text,
            "verifier": self.verifier,
            "expected_verdict": self.expected.map_or("VALID", Reason::as_str),
            "expected_detail": decode(&self.text).err().map(|error| error.to_string()),
        })
    }
}

/// A code made by the standard issuer, with the inputs a partner needs to reproduce it.
#[allow(clippy::too_many_arguments, reason = "one argument per column of the vector table")]
fn issued_case(
    name: &'static str,
    description: &'static str,
    key_name: &str,
    record_json: &str,
    request: IssueRequest,
    now: &str,
    verifier: Value,
    expected: Option<Reason>,
) -> Case {
    let record: DepositRecord = serde_json::from_str(record_json).unwrap();
    let issuer = Issuer::new(key(&seed_of(key_name)), subject_secret(), &trust_list()).unwrap();
    let code_id = liangma::code::CodeId::from_bytes(*b"liangma-test");
    let issued = issuer.issue_with_code_id(&trust_list(), &record, &request, at(now), code_id).unwrap();
    let decoded = decode(&issued.text).unwrap();
    Case {
        name,
        description,
        issue: Some(json!({
            "key": key_name,
            "subject_secret_centre": JIAOZUO,
            "record": serde_json::from_str::<Value>(record_json).unwrap(),
            "purpose": request.purpose.as_str(),
            "audience": request.audience.map(|c| c.to_string()),
            "lifetime_seconds": request.lifetime_seconds,
            "now": now,
            "code_id_hex": code_id.to_string(),
        })),
        claims: Some(claims_json(&issued.claims)),
        claims_bytes: Some(decoded.claims_bytes),
        signature: Some(decoded.signature.to_bytes()),
        text: issued.text,
        verifier,
        expected,
    }
}

/// A code sealed from hand-made claim bytes (ones the standard issuer refuses to make).
fn sealed_case(
    name: &'static str,
    description: &'static str,
    key_name: &str,
    claims: Option<&Claims>,
    claims_bytes: Vec<u8>,
    verifier: Value,
    expected: Option<Reason>,
) -> Case {
    let (text, signature) = seal_bytes(&seed_of(key_name), &claims_bytes);
    Case {
        name,
        description,
        issue: None,
        claims: claims.map(claims_json),
        claims_bytes: Some(claims_bytes),
        signature: Some(signature),
        text,
        verifier,
        expected,
    }
}

/// A text that never was a code of ours, or a mangled one.
fn text_case(name: &'static str, description: &'static str, text: String, expected: Reason) -> Case {
    Case {
        name,
        description,
        issue: None,
        claims: None,
        claims_bytes: None,
        signature: None,
        text,
        verifier: shenzhen_at(VERIFIED),
        expected: Some(expected),
    }
}

fn offsite_loan_for_shenzhen() -> IssueRequest {
    IssueRequest { purpose: Purpose::OffsiteLoan, audience: Some(centre(SHENZHEN)), lifetime_seconds: 86_400 }
}

fn standard_claims(seed: &[u8; 32], issued_at: &str) -> Claims {
    claims(JIAOZUO, seed, issued_at, Purpose::OffsiteLoan, Some(SHENZHEN))
}

fn wire(claims: &Claims) -> CodeClaims {
    CodeClaims::decode(encode_claims(claims).as_slice()).unwrap()
}

/// Adds the group order L to the scalar S of a signature: the same point equation holds, so a
/// lax verifier accepts it; RFC 8032 (and `verify_strict`) require S < L.
fn with_non_canonical_s(signature: &[u8; 64]) -> [u8; 64] {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut out = *signature;
    let mut carry = 0u16;
    for (index, l_byte) in L.iter().enumerate() {
        let sum = u16::from(out[32 + index]) + u16::from(*l_byte) + carry;
        out[32 + index] = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0, "S + L fits 256 bits");
    out
}

fn build_cases() -> Vec<Case> {
    let current = KEYS.jiaozuo_current;
    let valid = issued_case(
        "valid",
        "Jiaozuo issues an off-site-loan code for Shenzhen; Shenzhen verifies it 30 minutes later.",
        "jiaozuo-current",
        MEMBER_JSON,
        offsite_loan_for_shenzhen(),
        ISSUED,
        shenzhen_at(VERIFIED),
        None,
    );
    let valid_text = valid.text.clone();
    let valid_bytes = valid.claims_bytes.clone().unwrap();
    let valid_signature = valid.signature.unwrap();
    let payload = valid_text.strip_prefix("LM1:").unwrap().to_string();
    let mut cases = vec![valid];

    let large_member = MEMBER_JSON
        .replace("\"balance_fen\": 2000000", "\"balance_fen\": 10000000000")
        .replace("\"registry_version\": 7", "\"registry_version\": 4102444800000")
        .replace("\"loans_used\": 0", "\"loans_used\": 2")
        .replace("\"loan_state\": \"none\"", "\"loan_state\": \"settled\"");
    cases.push(issued_case(
        "valid-any-audience-large-values",
        "No audience, one-hour lifetime, a 100-million-yuan balance and a millisecond registry version.",
        "jiaozuo-current",
        &large_member,
        IssueRequest { purpose: Purpose::OffsiteLoan, audience: None, lifetime_seconds: 3_600 },
        ISSUED,
        shenzhen_at(VERIFIED),
        None,
    ));
    cases.push(issued_case(
        "valid-old-key-after-rotation",
        "Signed by the old key an hour before the rotation; verified an hour after it: still valid.",
        "jiaozuo-old",
        MEMBER_JSON,
        offsite_loan_for_shenzhen(),
        "2026-11-20T11:00:00+08:00",
        shenzhen_at("2026-11-20T13:00:00+08:00"),
        None,
    ));
    cases.push(issued_case(
        "valid-last-second",
        "Verified at 23:59:59 China Standard Time on the issue day.",
        "jiaozuo-current",
        MEMBER_JSON,
        offsite_loan_for_shenzhen(),
        ISSUED,
        shenzhen_at("2026-11-26T23:59:59+08:00"),
        None,
    ));
    cases.push(issued_case(
        "valid-within-clock-skew",
        "Issued 4 minutes after the verifier's clock: within the 300-second skew.",
        "jiaozuo-current",
        MEMBER_JSON,
        offsite_loan_for_shenzhen(),
        "2026-11-26T10:04:00+08:00",
        shenzhen_at(VERIFIED),
        None,
    ));

    // Step 1: decoding.
    cases.push(text_case(
        "malformed-too-long",
        "245 characters: over the 244-character limit, rejected before any decoding.",
        format!("LM1:{}", "0".repeat(241)),
        Reason::Malformed,
    ));
    cases.push(text_case("malformed-no-prefix", "The payload without `LM1:`.", payload.clone(), Reason::Malformed));
    cases.push(text_case(
        "malformed-lowercase",
        "The whole code in lower case (base45 and the prefix are upper case).",
        valid_text.to_lowercase(),
        Reason::Malformed,
    ));
    cases.push(text_case(
        "malformed-base45-character",
        "A character outside the base45 alphabet (`#`).",
        format!("LM1:#{}", &payload[1..]),
        Reason::Malformed,
    ));
    cases.push(text_case(
        "malformed-base45-length",
        "A payload whose length leaves a single character (length mod 3 = 1).",
        format!("{valid_text}00"),
        Reason::Malformed,
    ));
    assert_eq!(payload.len() % 3, 2, "the valid envelope has an odd length, so it ends with a 2-character group");
    let (head, tail) = valid_text.split_at(valid_text.len() - 2);
    let alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
    let value = |c: char| alphabet.find(c).unwrap();
    let mut chars = tail.chars();
    let tail_value = value(chars.next().unwrap()) + 45 * value(chars.next().unwrap()) + 256;
    let wrapped_tail: String =
        [tail_value % 45, tail_value / 45].iter().map(|v| alphabet.as_bytes()[*v] as char).collect();
    let non_canonical = format!("{head}{wrapped_tail}");
    cases.push(text_case(
        "malformed-base45-non-canonical",
        "The code `valid` with its final 2-character group raised by 256: a lax base45 \
         decoder truncates it to the same byte, a canonical one rejects it.",
        non_canonical,
        Reason::Malformed,
    ));
    cases.push(text_case(
        "malformed-envelope-too-short",
        "An envelope of 64 bytes: a signature with no claims.",
        format!("LM1:{}", base45::encode([7u8; 64])),
        Reason::Malformed,
    ));
    let mut trailing = valid_bytes.clone();
    trailing.extend_from_slice(&valid_signature);
    trailing.push(0);
    cases.push(text_case(
        "malformed-trailing-byte",
        "The valid envelope followed by one extra byte.",
        format!("LM1:{}", base45::encode(&trailing)),
        Reason::Malformed,
    ));
    cases.push(text_case(
        "unsupported-version",
        "The valid payload behind the prefix of format version 2.",
        format!("LM2:{payload}"),
        Reason::UnsupportedVersion,
    ));

    let base = standard_claims(&current, ISSUED);
    let mut unknown_field = encode_claims(&base);
    unknown_field.extend_from_slice(&[0x80, 0x01, 0x01]); // field 16, varint, value 1
    cases.push(sealed_case(
        "malformed-unknown-field",
        "Validly signed claims with an extra field 16 (varint 1): unknown fields are not canonical.",
        "jiaozuo-current",
        None,
        unknown_field,
        shenzhen_at(VERIFIED),
        Some(Reason::Malformed),
    ));
    let mut non_minimal = encode_claims(&base);
    assert_eq!(non_minimal[non_minimal.len() - 2..], [0x78, 0x07], "registry_version = 7 is the last field");
    non_minimal.pop();
    non_minimal.extend_from_slice(&[0x87, 0x00]); // 7 as a two-byte varint
    cases.push(sealed_case(
        "malformed-non-minimal-varint",
        "Validly signed claims whose registry_version 7 is encoded as the varint 87 00.",
        "jiaozuo-current",
        None,
        non_minimal,
        shenzhen_at(VERIFIED),
        Some(Reason::Malformed),
    ));
    let mut reordered = encode_claims(&base);
    let last_field = reordered.split_off(reordered.len() - 2);
    reordered.splice(0..0, last_field);
    cases.push(sealed_case(
        "malformed-field-order",
        "Validly signed claims with field 15 moved to the front.",
        "jiaozuo-current",
        None,
        reordered,
        shenzhen_at(VERIFIED),
        Some(Reason::Malformed),
    ));
    let mut explicit_default = wire(&base).encode_to_vec();
    let before_loans_used = explicit_default.iter().position(|b| *b == 0x78).unwrap();
    explicit_default.splice(before_loans_used..before_loans_used, [0x68, 0x00]); // loan_state = 0 spelled out
    cases.push(sealed_case(
        "malformed-explicit-default",
        "Validly signed claims that spell out loan_state = 0 (proto3 omits default values).",
        "jiaozuo-current",
        None,
        explicit_default,
        shenzhen_at(VERIFIED),
        Some(Reason::Malformed),
    ));
    let mut no_subject = wire(&base);
    no_subject.subject_ref.clear();
    cases.push(sealed_case(
        "malformed-missing-subject",
        "Validly signed canonical claims without subject_ref.",
        "jiaozuo-current",
        None,
        no_subject.encode_to_vec(),
        shenzhen_at(VERIFIED),
        Some(Reason::Malformed),
    ));
    let mut past_midnight = wire(&standard_claims(&current, "2026-11-26T23:00:00+08:00"));
    past_midnight.valid_for = 7_200;
    cases.push(sealed_case(
        "malformed-validity-past-midnight",
        "Issued at 23:00 with valid_for 7200: expiry after 24:00 China Standard Time.",
        "jiaozuo-current",
        None,
        past_midnight.encode_to_vec(),
        shenzhen_at("2026-11-26T23:30:00+08:00"),
        Some(Reason::Malformed),
    ));

    // Step 2: trust.
    let hangzhou = claims(HANGZHOU, &KEYS.hangzhou, ISSUED, Purpose::OffsiteLoan, Some(SHENZHEN));
    cases.push(sealed_case(
        "unknown-issuer",
        "Issued and signed by Hangzhou (330100), which is not in the trust list.",
        "hangzhou",
        Some(&hangzhou),
        encode_claims(&hangzhou),
        shenzhen_at(VERIFIED),
        Some(Reason::UnknownIssuer),
    ));
    let unpublished = standard_claims(&KEYS.jiaozuo_unpublished, ISSUED);
    cases.push(sealed_case(
        "unknown-key",
        "Signed by a Jiaozuo key that was never published.",
        "jiaozuo-unpublished",
        Some(&unpublished),
        encode_claims(&unpublished),
        shenzhen_at(VERIFIED),
        Some(Reason::UnknownKey),
    ));
    let retired = standard_claims(&KEYS.jiaozuo_old, ISSUED);
    cases.push(sealed_case(
        "key-not-valid-at-issue",
        "Signed by the old Jiaozuo key six days after the rotation ended its signing window.",
        "jiaozuo-old",
        Some(&retired),
        encode_claims(&retired),
        shenzhen_at(VERIFIED),
        Some(Reason::KeyNotValidAtIssue),
    ));
    let revoked = standard_claims(&KEYS.jiaozuo_revoked, ISSUED);
    cases.push(sealed_case(
        "key-revoked",
        "Signed inside the window of a Jiaozuo key that has been revoked.",
        "jiaozuo-revoked",
        Some(&revoked),
        encode_claims(&revoked),
        shenzhen_at(VERIFIED),
        Some(Reason::KeyRevoked),
    ));

    // Step 3: signature.
    let mut flipped = valid_signature;
    flipped[63] ^= 0x01;
    let reseal = |claims_bytes: &[u8], signature: &[u8; 64]| {
        let mut envelope = claims_bytes.to_vec();
        envelope.extend_from_slice(signature);
        format!("LM1:{}", base45::encode(&envelope))
    };
    let mut case = text_case(
        "bad-signature-flipped-bit",
        "The valid code with the lowest bit of the signature's last byte flipped.",
        reseal(&valid_bytes, &flipped),
        Reason::BadSignature,
    );
    case.claims_bytes = Some(valid_bytes.clone());
    case.signature = Some(flipped);
    cases.push(case);
    let mut richer = base;
    richer.deposit.balance.0 = 200_000_000;
    let richer_bytes = encode_claims(&richer);
    let mut case = text_case(
        "bad-signature-altered-claims",
        "The valid code's signature on claims whose balance was raised to 2,000,000 yuan.",
        reseal(&richer_bytes, &valid_signature),
        Reason::BadSignature,
    );
    case.claims = Some(claims_json(&richer));
    case.claims_bytes = Some(richer_bytes);
    case.signature = Some(valid_signature);
    cases.push(case);
    cases.push(sealed_case(
        "bad-signature-wrong-key",
        "Claims naming Jiaozuo's current key, signed by Shenzhen's key.",
        "shenzhen",
        Some(&base),
        encode_claims(&base),
        shenzhen_at(VERIFIED),
        Some(Reason::BadSignature),
    ));
    let malleable = with_non_canonical_s(&valid_signature);
    let mut case = text_case(
        "bad-signature-non-canonical-s",
        "The valid signature with L added to S: satisfies the group equation but S >= L, which \
         RFC 8032 verification (verify_strict) must reject.",
        reseal(&valid_bytes, &malleable),
        Reason::BadSignature,
    );
    case.claims_bytes = Some(valid_bytes.clone());
    case.signature = Some(malleable);
    cases.push(case);

    // Step 4: time.
    cases.push(issued_case(
        "not-yet-valid",
        "Issued 6 minutes after the verifier's clock: beyond the 300-second skew.",
        "jiaozuo-current",
        MEMBER_JSON,
        offsite_loan_for_shenzhen(),
        "2026-11-26T10:06:00+08:00",
        shenzhen_at(VERIFIED),
        Some(Reason::NotYetValid),
    ));
    cases.push(issued_case(
        "expired",
        "Verified at 24:00 China Standard Time of the issue day, the first instant it is invalid.",
        "jiaozuo-current",
        MEMBER_JSON,
        offsite_loan_for_shenzhen(),
        ISSUED,
        shenzhen_at("2026-11-27T00:00:00+08:00"),
        Some(Reason::Expired),
    ));
    cases.push(issued_case(
        "expired-by-lifetime",
        "A one-hour code verified 61 minutes after issue.",
        "jiaozuo-current",
        MEMBER_JSON,
        IssueRequest { lifetime_seconds: 3_600, ..offsite_loan_for_shenzhen() },
        ISSUED,
        shenzhen_at("2026-11-26T10:31:00+08:00"),
        Some(Reason::Expired),
    ));

    // Step 5: scope.
    cases.push(issued_case(
        "wrong-purpose",
        "A deposit certificate shown at a counter that serves only off-site loans.",
        "jiaozuo-current",
        MEMBER_JSON,
        IssueRequest { purpose: Purpose::DepositCertificate, ..offsite_loan_for_shenzhen() },
        ISSUED,
        shenzhen_at(VERIFIED),
        Some(Reason::WrongPurpose),
    ));
    cases.push(issued_case(
        "wrong-audience",
        "A code for Shenzhen shown in Shanghai.",
        "jiaozuo-current",
        MEMBER_JSON,
        offsite_loan_for_shenzhen(),
        ISSUED,
        verifier(SHANGHAI, &[Purpose::OffsiteLoan], VERIFIED),
        Some(Reason::WrongAudience),
    ));

    // Clarifications of the text and claim rules (docs/code-format.md §2, §5).
    cases.push(text_case(
        "malformed-version-zero",
        "The valid payload behind `LM0:`: a version number is 1 to 999 without leading zeros, so \
         this is not a version prefix at all.",
        format!("LM0:{payload}"),
        Reason::Malformed,
    ));
    let mut leading_zero = wire(&base);
    leading_zero.issuer_centre = 12_345;
    cases.push(sealed_case(
        "malformed-issuer-centre-leading-zero",
        "Validly signed claims whose issuer_centre is 12345 (\"012345\"): a centre code is six digits \
         with a first digit that is not 0, 100000..999999.",
        "jiaozuo-current",
        None,
        leading_zero.encode_to_vec(),
        shenzhen_at(VERIFIED),
        Some(Reason::Malformed),
    ));
    let mut latest = wire(&base);
    latest.issued_at = 253_402_300_799;
    latest.valid_for = 3_600;
    cases.push(sealed_case(
        "key-not-valid-at-issue-latest-issue-time",
        "Validly signed claims issued at 9999-12-31T23:59:59Z, the latest issue time the format \
         allows (10000-01-01 in China Standard Time): outside the key's signing window.",
        "jiaozuo-current",
        None,
        latest.encode_to_vec(),
        shenzhen_at(VERIFIED),
        Some(Reason::KeyNotValidAtIssue),
    ));
    cases
}

fn build_document() -> Value {
    let keys: Vec<Value> = named_keys()
        .into_iter()
        .map(|(name, centre, seed, role)| {
            let key = key(&seed);
            json!({
                "name": name,
                "centre": centre,
                "role": role,
                "seed_hex": hex::encode(seed),
                "public_key_hex": hex::encode(key.verifying_key().as_bytes()),
                "key_id": key.key_id().to_string(),
            })
        })
        .collect();
    json!({
        "format": "liangma.test-vectors.v1",
        "code_format_version": FORMAT_VERSION,
        "note": "Test keys only: their seeds are public. Times are RFC 3339; bytes are lowercase hex. \
                 See docs/code-format.md.",
        "signing_domain_hex": hex::encode(SIGNING_DOMAIN),
        "keys": keys,
        "subject_secrets": [{
            "centre": JIAOZUO,
            "secret_hex": hex::encode(KEYS.jiaozuo_subject_secret),
            "id_number": id_number().as_str(),
            "subject_ref_hex": subject_secret().subject_ref(&id_number()).to_full_hex(),
        }, {
            "centre": JIAOZUO,
            "secret_hex": hex::encode(KEYS.jiaozuo_subject_secret),
            "id_number": "11010519491231002x",
            "note": "entered with a lower-case check character: upper-cased before hashing (§3.2), \
                     so the reference is that of 11010519491231002X",
            "subject_ref_hex": subject_secret().subject_ref(&"11010519491231002x".parse().unwrap()).to_full_hex(),
        }],
        "trust_list": serde_json::from_str::<Value>(&trust_list().to_json()).unwrap(),
        "cases": build_cases().iter().map(Case::to_json).collect::<Vec<_>>(),
    })
}

fn frozen() -> Value {
    let path = vectors_path();
    if !path.exists() && std::env::var_os("LIANGMA_WRITE_VECTORS").is_some() {
        let mut text = serde_json::to_string_pretty(&build_document()).unwrap();
        text.push('\n');
        std::fs::write(&path, text).unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn policy_of(verifier: &Value) -> (VerifierPolicy, liangma::clock::Timestamp) {
    let purposes = verifier["purposes"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().parse().unwrap());
    let policy = VerifierPolicy {
        centre: centre(verifier["centre"].as_str().unwrap()),
        purposes: purposes.collect(),
        clock_skew_seconds: verifier["clock_skew_seconds"].as_u64().unwrap() as u32,
    };
    (policy, at(verifier["now"].as_str().unwrap()))
}

#[test]
fn the_code_still_builds_the_frozen_vectors_byte_for_byte() {
    let frozen = frozen();
    let built = build_document();
    let (frozen_cases, built_cases) = (frozen["cases"].as_array().unwrap(), built["cases"].as_array().unwrap());
    assert_eq!(frozen_cases.len(), built_cases.len());
    for (frozen_case, built_case) in frozen_cases.iter().zip(built_cases) {
        assert_eq!(frozen_case, built_case, "vector {} changed", frozen_case["name"]);
    }
    assert_eq!(frozen, built);
}

#[test]
fn every_frozen_vector_verifies_to_its_recorded_verdict() {
    let frozen = frozen();
    let trust = TrustList::from_json(&frozen["trust_list"].to_string()).unwrap();
    for case in frozen["cases"].as_array().unwrap() {
        let (policy, now) = policy_of(&case["verifier"]);
        let verdict = match verify_offline(case["text"].as_str().unwrap(), &trust, &policy, now) {
            Ok(claims) => {
                assert_eq!(claims_json(&claims), case["claims"], "claims of {}", case["name"]);
                "VALID"
            }
            Err(rejection) => {
                let detail = rejection.decode_error.map(|error| error.to_string());
                assert_eq!(detail.as_deref(), case["expected_detail"].as_str(), "detail of {}", case["name"]);
                rejection.reason.as_str()
            }
        };
        assert_eq!(verdict, case["expected_verdict"], "vector {}", case["name"]);
    }
}

#[test]
fn issuing_from_the_recorded_inputs_reproduces_each_issued_vector() {
    let frozen = frozen();
    let trust = TrustList::from_json(&frozen["trust_list"].to_string()).unwrap();
    let secret = hex::decode(frozen["subject_secrets"][0]["secret_hex"].as_str().unwrap()).unwrap();
    let mut issued = 0;
    for case in frozen["cases"].as_array().unwrap().iter().filter(|case| !case["issue"].is_null()) {
        let inputs = &case["issue"];
        let key_entry = frozen["keys"].as_array().unwrap().iter().find(|key| key["name"] == inputs["key"]).unwrap();
        let seed: [u8; 32] = hex::decode(key_entry["seed_hex"].as_str().unwrap()).unwrap().try_into().unwrap();
        let issuer = Issuer::new(
            liangma::trust::CentreKey::from_seed(&seed),
            liangma::trust::SubjectSecret::from_bytes(secret.clone().try_into().unwrap()),
            &trust,
        )
        .unwrap();
        let record: DepositRecord = serde_json::from_value(inputs["record"].clone()).unwrap();
        let request = IssueRequest {
            purpose: inputs["purpose"].as_str().unwrap().parse().unwrap(),
            audience: inputs["audience"].as_str().map(centre),
            lifetime_seconds: inputs["lifetime_seconds"].as_u64().unwrap() as u32,
        };
        let code_id = hex::decode(inputs["code_id_hex"].as_str().unwrap()).unwrap();
        let code = issuer
            .issue_with_code_id(
                &trust,
                &record,
                &request,
                at(inputs["now"].as_str().unwrap()),
                liangma::code::CodeId::from_bytes(code_id.try_into().unwrap()),
            )
            .unwrap();
        assert_eq!(code.text, case["text"], "vector {}", case["name"]);
        let decoded = decode(&code.text).unwrap();
        assert_eq!(hex::encode(&decoded.claims_bytes), case["claims_hex"], "vector {}", case["name"]);
        assert_eq!(hex::encode(decoded.signature.to_bytes()), case["signature_hex"], "vector {}", case["name"]);
        issued += 1;
    }
    assert!(issued >= 10, "most vectors come from the standard issuer");
}

#[test]
fn the_vectors_cover_every_reason() {
    let frozen = frozen();
    let verdicts: Vec<&str> =
        frozen["cases"].as_array().unwrap().iter().map(|case| case["expected_verdict"].as_str().unwrap()).collect();
    for reason in Reason::ALL.iter().map(|r| r.as_str()).chain(["VALID"]) {
        assert!(verdicts.contains(&reason), "no vector for {reason}");
    }
}
