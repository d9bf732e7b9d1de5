//! Shedding under overload: while verification is busy, issuance and publishing give way with
//! RESOURCE_EXHAUSTED and a retry hint; each class has its bound; a guesser of digits is refused.
//! Redis is frozen (SIGSTOP) to hold calls in flight, so "busy" needs no load generator.

use std::time::Duration;

use liangma::pb::v1 as pb;
use tonic::Code;

use crate::harness::{Backend, ZHANG_WEI, spawn_configured};

fn verify_text(text: &str, request_id: &str) -> pb::VerifyCodeRequest {
    pb::VerifyCodeRequest {
        code: Some(pb::verify_code_request::Code::Text(text.into())),
        request_id: request_id.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuance_and_publishing_give_way_while_verification_is_busy() {
    let app = spawn_configured(Backend::Redis, |config| {
        config.store.timeout_ms = 2_000;
        config.limits.verify_concurrency = 2;
        config.limits.publish_concurrency = 1;
    })
    .await;
    let codes = [app.issue(ZHANG_WEI).await, app.issue(ZHANG_WEI).await];
    let redis = app.redis.as_ref().unwrap();
    redis.pause();
    // Two verifications hang in the frozen store: verification's whole room is in use.
    let mut hanging = Vec::new();
    for (index, code) in codes.iter().enumerate() {
        let mut verifier = app.verifier().await;
        let request = verify_text(&code.text, &format!("busy-{index}"));
        hanging.push(tokio::spawn(async move { verifier.verify_code(request).await }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let third = app.verifier().await.verify_code(verify_text(&codes[0].text, "busy-2")).await.unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted, "{third:?}");
    let shed = app.issuer().await.issue_code(issue_request()).await.unwrap_err();
    assert_eq!(shed.code(), Code::ResourceExhausted);
    assert!(shed.message().contains("issuance"), "{}", shed.message());
    assert_eq!(shed.metadata().get("grpc-retry-pushback-ms").and_then(|v| v.to_str().ok()), Some("200"));
    let publish = app
        .registry()
        .await
        .publish_statuses(pb::PublishStatusesRequest { centre: "410800".into(), records: Vec::new() })
        .await
        .unwrap_err();
    assert_eq!(publish.code(), Code::ResourceExhausted);
    // Health and the trust list are never shed.
    assert!(app.trust().await.get_trust_list(pb::GetTrustListRequest {}).await.is_ok());
    redis.resume();
    for call in hanging {
        assert_eq!(call.await.unwrap().unwrap().into_inner().verdict(), pb::Verdict::Valid);
    }
    // Verification idle again: issuance stays shed for a second (a dip in a steady overload
    // must not let it in), then goes through; publishing has a bound of its own.
    let held = app.issuer().await.issue_code(issue_request()).await.unwrap_err();
    assert_eq!(held.code(), Code::ResourceExhausted);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let _ = app.issue(ZHANG_WEI).await;
    let batch = || pb::PublishStatusesRequest {
        centre: "410800".into(),
        records: vec![pb::MemberStatus {
            id_number: ZHANG_WEI.into(),
            name: "张伟".into(),
            status: Some(pb::DepositStatus {
                account_status: pb::AccountStatus::Normal.into(),
                balance_fen: 2_000_000,
                monthly_deposit_fen: 150_000,
                continuous_months: 30,
                loan_state: pb::LoanState::None.into(),
                loans_used: 0,
                registry_version: 2,
            }),
        }],
    };
    redis.pause();
    let mut registry = app.registry().await;
    let request = batch();
    let first = tokio::spawn(async move { registry.publish_statuses(request).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = app.registry().await.publish_statuses(batch()).await.unwrap_err();
    redis.resume();
    assert_eq!(second.code(), Code::ResourceExhausted);
    assert!(second.message().contains("publishing"), "{}", second.message());
    assert_eq!(first.await.unwrap().unwrap().into_inner().applied, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_guessing_digits_is_refused_past_its_rate() {
    let app = spawn_configured(Backend::Memory, |config| config.limits.digits_per_minute = 3).await;
    let mut verifier = app.verifier().await;
    let digits = |request_id: &str| pb::VerifyCodeRequest {
        code: Some(pb::verify_code_request::Code::Digits("4539 1488 0343 6467".into())),
        request_id: request_id.into(),
        ..Default::default()
    };
    for attempt in 0..3 {
        let answer = verifier.verify_code(digits(&format!("guess-{attempt}"))).await.unwrap().into_inner();
        assert_eq!(answer.verdict(), pb::Verdict::UnknownDigits);
    }
    let refused = verifier.verify_code(digits("guess-3")).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    // Scanned codes are not digits: the counter keeps working.
    let code = app.issue(ZHANG_WEI).await;
    let answer = verifier.verify_code(verify_text(&code.text, "scan")).await.unwrap().into_inner();
    assert_eq!(answer.verdict(), pb::Verdict::Valid);
}

fn issue_request() -> pb::IssueCodeRequest {
    pb::IssueCodeRequest {
        issuer_centre: "410800".into(),
        id_number: ZHANG_WEI.into(),
        purpose: pb::Purpose::OffsiteLoan.into(),
        ..Default::default()
    }
}
