//! Property tests: issuance round-trips, any single-character change is never VALID, and decoding never panics.

use proptest::prelude::*;

use liangma::code::{AccountStatus, CentreCode, LoanState, Purpose, qr};
use liangma::issue::{DepositRecord, IssueError, IssueRequest, Issuer};
use liangma::verify::{VerifierPolicy, verify_offline};

use liangma::testkit::*;

const BASE45_AND_MORE: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:a#\u{3000}";

fn record(
    status: AccountStatus,
    balance: u64,
    monthly: u64,
    months: u32,
    loan: LoanState,
    loans_used: u32,
    version: u64,
) -> DepositRecord {
    let mut record = member();
    record.account_status = status;
    record.balance_fen.0 = balance;
    record.monthly_deposit_fen.0 = monthly;
    record.continuous_months = months;
    record.loan_state = loan;
    record.loans_used = loans_used;
    record.registry_version = version;
    record
}

fn realistic_record() -> impl Strategy<Value = DepositRecord> {
    (
        prop::sample::select(AccountStatus::ALL),
        0..=10_000_000_000u64,
        0..=100_000_000u64,
        0..=1_200u32,
        prop::sample::select(LoanState::ALL),
        0..=99u32,
        0..=4_102_444_800_000u64,
    )
        .prop_map(|(s, b, m, mo, l, u, v)| record(s, b, m, mo, l, u, v))
}

fn request() -> impl Strategy<Value = IssueRequest> {
    (prop::sample::select(Purpose::ALL), prop::option::of(100_000..=999_999u32), 1..=86_400u32).prop_map(
        |(purpose, audience, lifetime_seconds)| IssueRequest {
            purpose,
            audience: audience.and_then(CentreCode::new),
            lifetime_seconds,
        },
    )
}

/// Issue times inside the current key's window.
fn issue_time() -> impl Strategy<Value = i64> {
    at(ROTATED_AT).unix()..at(KEYS_UNTIL).unix()
}

fn verifier_for(request: &IssueRequest) -> VerifierPolicy {
    VerifierPolicy::any_purpose(request.audience.unwrap_or(centre(SHENZHEN)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn issued_codes_verify_with_the_same_claims_and_fit_version_8(
        record in realistic_record(), request in request(), now in issue_time()
    ) {
        let issuer = Issuer::new(key(&KEYS.jiaozuo_current), subject_secret(), &trust_list()).unwrap();
        let now = liangma::clock::Timestamp::from_unix(now);
        let code = issuer.issue(&trust_list(), &record, &request, now).unwrap();
        let claims = verify_offline(&code.text, &trust_list(), &verifier_for(&request), now).unwrap();
        prop_assert_eq!(claims, code.claims);
        prop_assert_eq!(claims.deposit, record.deposit_claims());
        prop_assert!(qr::encode(&code.text).unwrap().version() <= 8);
    }

    #[test]
    fn any_amounts_either_issue_a_verifiable_code_or_are_refused_as_out_of_range(
        balance in any::<u64>(), monthly in any::<u64>(), version in any::<u64>(), loans_used in any::<u32>(),
        months in any::<u32>()
    ) {
        let issuer = Issuer::new(key(&KEYS.jiaozuo_current), subject_secret(), &trust_list()).unwrap();
        let record = record(AccountStatus::Normal, balance, monthly, months, LoanState::Outstanding, loans_used, version);
        let request = IssueRequest { purpose: Purpose::OffsiteLoan, audience: Some(centre(SHENZHEN)), lifetime_seconds: 86_400 };
        let now = at("2026-11-26T09:30:00+08:00");
        match issuer.issue(&trust_list(), &record, &request, now) {
            Ok(code) => {
                prop_assert!(verify_offline(&code.text, &trust_list(), &verifier_for(&request), now).is_ok());
                prop_assert!(qr::encode(&code.text).unwrap().version() <= qr::MAX_DESIGN_VERSION);
            }
            Err(IssueError::OutOfRange(_)) => prop_assert!(record.deposit_claims().check_bounds().is_err()),
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }

    #[test]
    fn changing_any_single_character_never_yields_valid(
        record in realistic_record(),
        request in request(),
        now in issue_time(),
        position in any::<prop::sample::Index>(),
        replacement in prop::sample::select(BASE45_AND_MORE.chars().collect::<Vec<_>>()),
    ) {
        let issuer = Issuer::new(key(&KEYS.jiaozuo_current), subject_secret(), &trust_list()).unwrap();
        let now = liangma::clock::Timestamp::from_unix(now);
        let code = issuer.issue(&trust_list(), &record, &request, now).unwrap();
        let mut chars: Vec<char> = code.text.chars().collect();
        let index = position.index(chars.len());
        prop_assume!(chars[index] != replacement);
        chars[index] = replacement;
        let tampered: String = chars.into_iter().collect();
        prop_assert!(verify_offline(&tampered, &trust_list(), &verifier_for(&request), now).is_err());
    }

    #[test]
    fn decoding_arbitrary_text_never_panics(text in "\\PC{0,300}") {
        let _ = liangma::code::decode(&text);
    }

    #[test]
    fn decoding_arbitrary_envelopes_never_panics(envelope in prop::collection::vec(any::<u8>(), 0..170)) {
        let text = format!("LM1:{}", base45::encode(&envelope));
        let _ = verify_offline(&text, &trust_list(), &VerifierPolicy::any_purpose(centre(SHENZHEN)), at("2026-11-26T10:00:00+08:00"));
    }
}
