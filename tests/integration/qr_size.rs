//! The size budget of docs/code-format.md: the largest realistic code fits a version-8 QR code at error correction M.

use liangma::code::Purpose;
use liangma::code::envelope::{decode, encode_claims};
use liangma::code::qr;
use liangma::issue::{DepositRecord, IssueRequest, Issuer};

use crate::fixtures::*;

#[test]
fn the_largest_realistic_claims_fit_qr_version_8_at_ecc_m() {
    let claims = largest_claims();
    let claims_bytes = encode_claims(&claims);
    assert_eq!(claims_bytes.len(), 80, "the documented worst case is 80 bytes of claims");
    let text = seal(&KEYS.jiaozuo_current, &claims);
    assert!(text.len() <= 221, "{} characters exceed the 221 of version 8-M alphanumeric", text.len());
    let symbol = qr::encode(&text).unwrap();
    assert!(qr::version_number(&symbol) <= qr::MAX_DESIGN_VERSION, "version {}", qr::version_number(&symbol));
    assert_eq!(decode(&text).unwrap().claims, claims);
    assert_eq!(qr::read_image(&qr::to_png(&symbol)).unwrap(), vec![text]);
}

#[test]
fn a_code_issued_for_the_largest_record_fits_version_8() {
    let record: DepositRecord = serde_json::from_str(
        r#"{"id_number": "11010519491231002X", "account_status": "closed", "balance_fen": 10000000000,
            "monthly_deposit_fen": 100000000, "continuous_months": 1200, "loan_state": "settled",
            "loans_used": 99, "registry_version": 4102444800000}"#,
    )
    .unwrap();
    let issuer = Issuer::new(key(&KEYS.jiaozuo_current), subject_secret(), &trust_list()).unwrap();
    let request =
        IssueRequest { purpose: Purpose::LoanSettlement, audience: Some(centre("829998")), lifetime_seconds: 86_400 };
    let code = issuer.issue(&record, &request, at("2026-11-26T09:30:00+08:00")).unwrap();
    assert!(qr::version_number(&qr::encode(&code.text).unwrap()) <= 8);
}
