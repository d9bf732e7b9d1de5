//! The use cases on the service itself: memory store, fixed clock, no network. Each refusal is
//! checked as the domain names it (a `ServiceError` variant), not by its message.

use std::sync::Arc;

use liangma::clock::{Clock, FixedClock, Timestamp};
use liangma::code::{CodeId, DepositClaims, Fen, Purpose};
use liangma::config::Config;
use liangma::loan::House;
use liangma::model::{RequestId, Verdict};
use liangma::service::{
    CodeInput, IssueCommand, IssuedCode, Liangma, LoanCommand, Member, MemberStatus, PartyInput, PublishCommand,
    RevokeCommand, ServiceError, VerifyCommand,
};
use liangma::store::memory::MemoryStore;
use liangma::testkit::centre;
use liangma::verify::Reason;

use crate::harness::{START, WANG_FANG, ZHANG_WEI};

struct Setup {
    service: Liangma<MemoryStore>,
    clock: Arc<FixedClock>,
    _data: tempfile::TempDir,
}

async fn setup() -> Setup {
    let clock = Arc::new(FixedClock::new(Timestamp::parse_rfc3339(START).unwrap()));
    let data = tempfile::tempdir().unwrap();
    let config = Config { data_dir: data.path().to_path_buf(), ..Config::default() };
    let store = MemoryStore::new(clock.clone() as Arc<dyn Clock>);
    let service = liangma::app::build(&config, store, clock.clone()).await.unwrap();
    Setup { service, clock, _data: data }
}

fn jiaozuo_member(id_number: &str) -> Member {
    Member { centre: centre("410800"), id_number: id_number.parse().unwrap() }
}

fn issue_for(id_number: &str, purpose: Purpose) -> IssueCommand {
    IssueCommand {
        member: jiaozuo_member(id_number),
        purpose,
        audience: None,
        lifetime_seconds: None,
        qr: None,
        digits: true,
    }
}

fn verify(code: &IssuedCode, request_id: Option<&str>) -> VerifyCommand {
    VerifyCommand {
        code: CodeInput::Text(code.text.clone()),
        purpose: None,
        request_id: request_id.map(|id| RequestId::new(id).unwrap()),
    }
}

fn loan(borrower: PartyInput, co_borrower: Option<PartyInput>) -> LoanCommand {
    LoanCommand {
        request_id: Some(RequestId::new("loan-1").unwrap()),
        borrower,
        co_borrower,
        house_price: Fen(150_000_000),
        house: House::New,
        requested_term_years: None,
    }
}

fn code_of(code: &IssuedCode) -> PartyInput {
    PartyInput::Code(CodeInput::Text(code.text.clone()))
}

#[tokio::test]
async fn issuing_needs_a_published_member_of_a_centre_issued_here() {
    let setup = setup().await;
    let unknown = setup.service.issue(issue_for("11010519491231002X", Purpose::OffsiteLoan)).await.unwrap_err();
    assert!(matches!(unknown, ServiceError::NotPublished(centre) if centre.to_string() == "410800"), "{unknown:?}");
    let elsewhere = IssueCommand {
        member: Member { centre: centre("330100"), id_number: ZHANG_WEI.parse().unwrap() },
        ..issue_for(ZHANG_WEI, Purpose::OffsiteLoan)
    };
    let error = setup.service.issue(elsewhere).await.unwrap_err();
    assert!(matches!(error, ServiceError::NotIssuedHere(_)), "{error:?}");
    let too_long = IssueCommand { lifetime_seconds: Some(86_401), ..issue_for(ZHANG_WEI, Purpose::OffsiteLoan) };
    let error = setup.service.issue(too_long).await.unwrap_err();
    assert!(matches!(&error, ServiceError::InvalidRequest { field, .. } if field == "lifetime_seconds"), "{error:?}");
}

#[tokio::test]
async fn a_verification_is_consumed_once_and_a_retry_is_the_same_verification() {
    let setup = setup().await;
    let code = setup.service.issue(issue_for(ZHANG_WEI, Purpose::OffsiteLoan)).await.unwrap();
    let first = setup.service.verify(verify(&code, Some("desk-1"))).await.unwrap();
    assert_eq!(first.verdict, Verdict::Valid);
    setup.clock.advance(3);
    let retry = setup.service.verify(verify(&code, Some("desk-1"))).await.unwrap();
    assert_eq!((retry.verdict, &retry.verification_id), (Verdict::Valid, &first.verification_id));
    let other = setup.service.verify(verify(&code, None)).await.unwrap();
    assert_eq!(other.verdict, Verdict::AlreadyUsed);
    assert_eq!(other.previous_use.map(|used| used.at), Some(Timestamp::parse_rfc3339(START).unwrap()));
    let live = setup.service.lookup(first.verification_id.as_deref().unwrap()).await.unwrap().unwrap();
    assert_eq!(live.status.balance, Fen(2_000_000));
    let error = setup.service.lookup("not an id").await.unwrap_err();
    assert!(matches!(error, ServiceError::NotGranted), "{error:?}");
    let narrowed = VerifyCommand { purpose: Some(Purpose::OffsiteLoan), ..verify(&code, None) };
    assert_eq!(setup.service.verify(narrowed).await.unwrap().verdict, Verdict::AlreadyUsed);
}

#[tokio::test]
async fn revoking_needs_a_live_code_of_the_member() {
    let setup = setup().await;
    let code = setup.service.issue(issue_for(ZHANG_WEI, Purpose::OffsiteLoan)).await.unwrap();
    let someone_else = RevokeCommand { member: jiaozuo_member(WANG_FANG), code_id: code.claims.code_id };
    assert!(matches!(setup.service.revoke_code(someone_else).await, Err(ServiceError::NoLiveCode)));
    let made_up = RevokeCommand { member: jiaozuo_member(ZHANG_WEI), code_id: CodeId::from_bytes([1; 12]) };
    assert!(matches!(setup.service.revoke_code(made_up).await, Err(ServiceError::NoLiveCode)));
    setup
        .service
        .revoke_code(RevokeCommand { member: jiaozuo_member(ZHANG_WEI), code_id: code.claims.code_id })
        .await
        .unwrap();
    assert_eq!(setup.service.verify(verify(&code, None)).await.unwrap().verdict, Verdict::CodeRevoked);
    let usage = setup.service.usage(&jiaozuo_member(ZHANG_WEI)).await.unwrap();
    assert_eq!(usage.iter().map(|entry| entry.result).collect::<Vec<_>>(), [Verdict::CodeRevoked]);
}

#[tokio::test]
async fn publishing_names_the_first_field_out_of_bounds() {
    let setup = setup().await;
    let status = DepositClaims { registry_version: 2, ..liangma::testkit::member().deposit_claims() };
    let publish = |name: &str, status: DepositClaims| PublishCommand {
        centre: centre("410800"),
        members: vec![MemberStatus { id_number: ZHANG_WEI.parse().unwrap(), name: name.into(), status }],
    };
    let error = setup.service.publish(publish(&"名".repeat(65), status)).await.unwrap_err();
    assert!(matches!(&error, ServiceError::InvalidRequest { field, .. } if field == "records[0].name"), "{error:?}");
    let huge = DepositClaims { loans_used: 128, ..status };
    let error = setup.service.publish(publish("张伟", huge)).await.unwrap_err();
    assert!(
        matches!(&error, ServiceError::InvalidRequest { field, problem } if field == "records[0].status" && problem.contains("loans_used")),
        "{error:?}"
    );
    assert_eq!(setup.service.publish(publish("张伟", status)).await.unwrap().counts.applied, 1);
}

#[tokio::test]
async fn a_loan_refuses_the_same_member_twice_and_consumes_nothing_when_a_party_fails() {
    let setup = setup().await;
    let borrower = setup.service.issue(issue_for(ZHANG_WEI, Purpose::OffsiteLoan)).await.unwrap();
    let again = setup.service.issue(issue_for(ZHANG_WEI, Purpose::OffsiteLoan)).await.unwrap();
    let error = setup.service.evaluate_loan(loan(code_of(&borrower), Some(code_of(&again)))).await.unwrap_err();
    assert!(matches!(error, ServiceError::SameMemberTwice), "{error:?}");
    let certificate = setup.service.issue(issue_for(WANG_FANG, Purpose::DepositCertificate)).await.unwrap();
    let error = setup.service.evaluate_loan(loan(code_of(&borrower), Some(code_of(&certificate)))).await.unwrap_err();
    let wrong_purpose = Verdict::Rejected(Reason::WrongPurpose);
    assert!(
        matches!(error, ServiceError::PartyNotValid { party: "co_borrower", verdict, others_consumed: false } if verdict == wrong_purpose),
        "{error:?}"
    );
    // Nothing was consumed: the borrower's code still evaluates, alone.
    let outcome = setup.service.evaluate_loan(loan(code_of(&borrower), None)).await.unwrap();
    assert!(outcome.evaluation.eligible);
    assert_eq!(outcome.verification_ids.len(), 1);
    let by_id = PartyInput::Verified(outcome.verification_ids[0].clone());
    let error = setup.service.evaluate_loan(loan(by_id.clone(), Some(by_id))).await.unwrap_err();
    assert!(matches!(error, ServiceError::SameMemberTwice), "{error:?}");
}
