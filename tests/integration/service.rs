//! The gRPC service end to end, every scenario against both the memory and the Redis store: what a
//! client sees (statuses, fields, request ids). The stores' own rules are checked more finely by
//! the store contract, the use cases' by use_cases.rs.

use std::time::{Duration, Instant};

use liangma::pb::v1 as pb;
use tonic::Code;

use crate::harness::*;

/// Runs one scenario against each backend as its own test.
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Memory).await })+
        }
        mod redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Redis).await })+
        }
    };
}

on_both_backends!(
    issue_verify_then_already_used,
    digits_form_resolves_to_the_code,
    fifty_racing_verifications_give_exactly_one_valid,
    publish_ignores_older_versions_and_verify_reports_stale_claims,
    lookup_needs_a_fresh_verification,
    usage_record_lists_each_verification,
    revoked_code_and_revoked_key_are_rejected,
    bad_requests_get_precise_errors,
    loan_evaluation_uses_verified_codes_and_live_status,
    a_retry_with_the_same_request_id_is_the_same_verification,
    only_a_live_code_of_the_member_can_be_revoked,
    publish_checks_every_field_and_refuses_version_jumps,
    a_member_cannot_be_their_own_co_borrower,
    no_code_is_consumed_by_a_loan_evaluation_that_fails_its_checks,
);

async fn issue_verify_then_already_used(backend: Backend) {
    let app = spawn_app(backend).await;
    let code = app.issue(ZHANG_WEI).await;
    assert!(code.text.starts_with("LM1:"));
    // As a USB scanner types it into a partner system: the code and a line ending.
    let first = app.verify_text(&format!("{}\r\n", code.text)).await.unwrap();
    assert_eq!(verdict(&first), pb::Verdict::Valid, "{first:?}");
    let claims = first.claims.as_ref().unwrap();
    assert_eq!(claims.issuer_centre, "410800");
    assert_eq!(claims.deposit.unwrap().balance_fen, 2_000_000);
    let live = first.live.as_ref().unwrap();
    assert!(live.found);
    assert_eq!(live.masked_name, "张*");
    assert_eq!(live.masked_id_number, "410***********0012");
    assert!(first.differences.is_empty());
    assert_eq!(first.verification_id.len(), 88);

    app.clock.advance(120);
    let second = app.verify_text(&code.text).await.unwrap();
    assert_eq!(verdict(&second), pb::Verdict::AlreadyUsed);
    let previous = second.previous_use.unwrap();
    assert_eq!(previous.centre, "440300");
    assert_eq!(previous.used_at_unix, app.clock_start());
    assert!(second.live.is_none() && second.verification_id.is_empty());
}

impl App {
    fn clock_start(&self) -> i64 {
        liangma::clock::Timestamp::parse_rfc3339(START).unwrap().unix()
    }
}

async fn digits_form_resolves_to_the_code(backend: Backend) {
    let app = spawn_app(backend).await;
    let code = app.issue(ZHANG_WEI).await;
    assert_eq!(code.digits.len(), 19, "16 digits in groups of 4: {}", code.digits);
    let mut mistyped: Vec<u8> = code.digits.clone().into_bytes();
    mistyped[0] = if mistyped[0] == b'9' { b'0' } else { mistyped[0] + 1 };
    let mistyped = app.verify_digits(std::str::from_utf8(&mistyped).unwrap()).await.unwrap();
    assert_eq!(verdict(&mistyped), pb::Verdict::Malformed);
    assert!(mistyped.detail.contains("check digit"), "{}", mistyped.detail);
    let unknown = app.verify_digits("4539 1488 0343 6467").await.unwrap();
    assert_eq!(verdict(&unknown), pb::Verdict::UnknownDigits);

    let by_digits = app.verify_digits(&code.digits).await.unwrap();
    assert_eq!(verdict(&by_digits), pb::Verdict::Valid);
    assert_eq!(by_digits.claims.unwrap().code_id, code.code_id);
    // Digits and text name the same code, which is now used.
    assert_eq!(verdict(&app.verify_text(&code.text).await.unwrap()), pb::Verdict::AlreadyUsed);
    // After expiry the digits name nothing (Redis expires them; the memory store by clock).
    if backend == Backend::Memory {
        app.clock.advance(86_400);
        assert_eq!(verdict(&app.verify_digits(&code.digits).await.unwrap()), pb::Verdict::UnknownDigits);
    }
}

async fn fifty_racing_verifications_give_exactly_one_valid(backend: Backend) {
    let app = spawn_app(backend).await;
    let code = app.issue(ZHANG_WEI).await;
    let channel = app.channel().await;
    let calls = (0..50).map(|_| {
        let mut client = pb::verifier_service_client::VerifierServiceClient::new(channel.clone());
        let text = code.text.clone();
        tokio::spawn(async move {
            let request = pb::VerifyCodeRequest {
                code: Some(pb::verify_code_request::Code::Text(text)),
                purpose: 0,
                request_id: String::new(),
            };
            client.verify_code(request).await.unwrap().into_inner()
        })
    });
    let mut valid = 0;
    let mut already_used = 0;
    for call in calls.collect::<Vec<_>>() {
        match verdict(&call.await.unwrap()) {
            pb::Verdict::Valid => valid += 1,
            pb::Verdict::AlreadyUsed => already_used += 1,
            other => panic!("unexpected verdict {other:?}"),
        }
    }
    assert_eq!((valid, already_used), (1, 49));
    // Every attempt is in the member's usage record: the 49 repeats as one counted line.
    let usage = app.usage_of(ZHANG_WEI).await;
    let lines: Vec<_> = usage.entries.iter().map(|entry| (result_of(entry), entry.count)).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.contains(&(pb::Verdict::Valid, 1)) && lines.contains(&(pb::Verdict::AlreadyUsed, 49)), "{lines:?}");
}

/// An off-site-loan issuance request without audience.
fn issue_request(centre: &str, id_number: &str) -> pb::IssueCodeRequest {
    pb::IssueCodeRequest {
        issuer_centre: centre.into(),
        id_number: id_number.into(),
        purpose: pb::Purpose::OffsiteLoan.into(),
        ..Default::default()
    }
}

fn status(version: u64, balance_fen: u64) -> pb::DepositStatus {
    pb::DepositStatus {
        account_status: pb::AccountStatus::Normal.into(),
        balance_fen,
        monthly_deposit_fen: 150_000,
        continuous_months: 30,
        loan_state: pb::LoanState::None.into(),
        loans_used: 0,
        registry_version: version,
    }
}

async fn publish(app: &App, id_number: &str, version: u64, balance_fen: u64) -> pb::PublishStatusesResponse {
    app.registry()
        .await
        .publish_statuses(pb::PublishStatusesRequest {
            centre: "410800".into(),
            records: vec![pb::MemberStatus {
                id_number: id_number.into(),
                name: "张伟".into(),
                status: Some(status(version, balance_fen)),
            }],
        })
        .await
        .unwrap()
        .into_inner()
}

async fn publish_ignores_older_versions_and_verify_reports_stale_claims(backend: Backend) {
    let app = spawn_app(backend).await;
    let applied = publish(&app, ZHANG_WEI, 5, 2_100_000).await;
    assert_eq!((applied.applied, applied.ignored_not_newer), (1, 0));
    let code = app.issue(ZHANG_WEI).await;
    // A replayed older record and the same version again change nothing.
    assert_eq!(publish(&app, ZHANG_WEI, 4, 1).await.ignored_not_newer, 1);
    assert_eq!(publish(&app, ZHANG_WEI, 5, 1).await.ignored_not_newer, 1);
    // The member withdrew money after the code was issued: the claims are now stale.
    assert_eq!(publish(&app, ZHANG_WEI, 6, 100_000).await.applied, 1);
    let verified = app.verify_text(&code.text).await.unwrap();
    assert_eq!(verdict(&verified), pb::Verdict::Valid);
    assert_eq!(verified.claims.unwrap().deposit.unwrap().balance_fen, 2_100_000);
    assert_eq!(verified.live.unwrap().status.unwrap().balance_fen, 100_000);
    assert_eq!(verified.differences, ["balance_fen", "registry_version"]);
}

async fn lookup_needs_a_fresh_verification(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut registry = app.registry().await;
    let made_up = format!("{:08x}{}{}{}", 410800, "00".repeat(12), "22".repeat(12), "11".repeat(16));
    for id in [String::new(), "not an id".into(), made_up] {
        let error = registry.lookup_status(pb::LookupStatusRequest { verification_id: id }).await.unwrap_err();
        assert_eq!(error.code(), Code::PermissionDenied);
    }
    let code = app.issue(ZHANG_WEI).await;
    let verified = app.verify_text(&code.text).await.unwrap();
    let lookup = registry
        .lookup_status(pb::LookupStatusRequest { verification_id: verified.verification_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lookup.live.unwrap().status.unwrap().balance_fen, 2_000_000);
    // Another grant's secret with this code's place does not open it.
    let guessed = format!("{}{}", &verified.verification_id[..56], "11".repeat(16));
    let error = registry.lookup_status(pb::LookupStatusRequest { verification_id: guessed }).await.unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);

    // Ten minutes, by the service's clock, on either backend.
    let lookup_after = |seconds: i64| {
        app.clock.advance(seconds);
        let request = pb::LookupStatusRequest { verification_id: verified.verification_id.clone() };
        let mut registry = registry.clone();
        async move { registry.lookup_status(request).await.map(drop).map_err(|status| status.code()) }
    };
    assert_eq!(lookup_after(599).await, Ok(()));
    assert_eq!(lookup_after(1).await, Err(Code::PermissionDenied));

    // The member revoking a verified code withdraws the lookup too.
    let code = app.issue(ZHANG_WEI).await;
    let verified = app.verify_text(&code.text).await.unwrap();
    app.revoke(ZHANG_WEI, &code.code_id).await;
    let request = pb::LookupStatusRequest { verification_id: verified.verification_id };
    assert_eq!(registry.lookup_status(request).await.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(verdict(&app.verify_text(&code.text).await.unwrap()), pb::Verdict::CodeRevoked);
}

async fn usage_record_lists_each_verification(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.issue(ZHANG_WEI).await;
    let second = app.issue(ZHANG_WEI).await;
    app.verify_text(&first.text).await.unwrap();
    app.clock.advance(60);
    app.verify_text(&first.text).await.unwrap();
    app.clock.advance(60);
    app.verify_text(&second.text).await.unwrap();
    // An authentic but expired code shown the next day is a query the member sees too.
    let third = app.issue(ZHANG_WEI).await;
    app.clock.advance(86_400);
    assert_eq!(verdict(&app.verify_text(&third.text).await.unwrap()), pb::Verdict::Expired);
    let usage = app.usage_of(ZHANG_WEI).await;
    let seen: Vec<(String, i32)> = usage.entries.iter().map(|e| (e.code_id.clone(), e.result)).collect();
    assert_eq!(
        seen,
        [
            (third.code_id.clone(), pb::Verdict::Expired.into()),
            (second.code_id.clone(), pb::Verdict::Valid.into()),
            (first.code_id.clone(), pb::Verdict::AlreadyUsed.into()),
            (first.code_id.clone(), pb::Verdict::Valid.into()),
        ]
    );
    assert!(usage.entries.iter().all(|e| e.centre == "440300" && e.purpose == i32::from(pb::Purpose::OffsiteLoan)));
    // Another member's record is their own.
    let other = app.usage_of(WANG_FANG).await;
    assert!(other.entries.is_empty());
}

async fn revoked_code_and_revoked_key_are_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    let lost = app.issue(ZHANG_WEI).await;
    app.revoke(ZHANG_WEI, &lost.code_id).await;
    assert_eq!(verdict(&app.verify_text(&lost.text).await.unwrap()), pb::Verdict::CodeRevoked);

    let code = app.issue(ZHANG_WEI).await;
    let key_id = app.verify_text(&app.issue(ZHANG_WEI).await.text).await.unwrap().claims.unwrap().key_id;
    let mut list = liangma::trust::TrustList::load(&app.trust_list_path()).unwrap();
    list.revoke("410800".parse().unwrap(), key_id.parse().unwrap()).unwrap();
    list.save(&app.trust_list_path()).unwrap();
    let reloaded = app.trust().await.reload_trust_list(pb::ReloadTrustListRequest {}).await.unwrap().into_inner();
    assert_eq!((reloaded.centres, reloaded.keys), (2, 2));
    assert_eq!(verdict(&app.verify_text(&code.text).await.unwrap()), pb::Verdict::KeyRevoked);
    // The issuer signs with the list in force too: no new code from a revoked key.
    let refused = app.issuer().await.issue_code(issue_request("410800", ZHANG_WEI)).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("revoked"), "{}", refused.message());
    let published = app.trust().await.get_trust_list(pb::GetTrustListRequest {}).await.unwrap().into_inner();
    assert!(published.trust_list_json.contains("\"revoked\""));

    // A broken trust list file is refused and the list in force stays.
    std::fs::write(app.trust_list_path(), "{").unwrap();
    let error = app.trust().await.reload_trust_list(pb::ReloadTrustListRequest {}).await.unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    std::fs::remove_file(app.trust_list_path()).unwrap();
    let error = app.trust().await.reload_trust_list(pb::ReloadTrustListRequest {}).await.unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    let data_dir = app.data_dir.path().to_str().unwrap();
    assert!(!error.message().contains(data_dir) && !error.message().contains("trust.json"), "{}", error.message());
    assert!(
        app.trust()
            .await
            .get_trust_list(pb::GetTrustListRequest {})
            .await
            .unwrap()
            .into_inner()
            .trust_list_json
            .contains("410800")
    );
}

async fn bad_requests_get_precise_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut verifier = app.verifier().await;
    let empty = verifier.verify_code(pb::VerifyCodeRequest::default()).await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    let garbage = app.verify_text("hello").await.unwrap();
    assert_eq!(verdict(&garbage), pb::Verdict::Malformed);
    let oversized = app.verify_text(&"A".repeat(400_000)).await.unwrap_err();
    assert!(matches!(oversized.code(), Code::OutOfRange | Code::ResourceExhausted), "{oversized:?}");

    let mut issuer = app.issuer().await;
    let bad_id = issuer.issue_code(issue_request("410800", "410802198503120013")).await.unwrap_err();
    assert_eq!(bad_id.code(), Code::InvalidArgument);
    assert!(!bad_id.message().contains("410802198503120013"), "{}", bad_id.message());
    let unknown_member = issuer.issue_code(issue_request("410800", "11010519491231002X")).await.unwrap_err();
    assert_eq!(unknown_member.code(), Code::NotFound);
    let not_ours = issuer.issue_code(issue_request("330100", ZHANG_WEI)).await.unwrap_err();
    assert_eq!(not_ours.code(), Code::InvalidArgument);
    let too_many = app
        .registry()
        .await
        .publish_statuses(pb::PublishStatusesRequest {
            centre: "410800".into(),
            records: vec![
                pb::MemberStatus {
                    id_number: ZHANG_WEI.into(),
                    name: "张伟".into(),
                    status: Some(status(1, 1))
                };
                1001
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), Code::InvalidArgument);
    // The service still answers.
    assert_eq!(verdict(&app.verify_text(&app.issue(ZHANG_WEI).await.text).await.unwrap()), pb::Verdict::Valid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_means_unavailable_quickly_and_recovery_without_restart() {
    let mut app = spawn_app(Backend::Redis).await;
    let code = app.issue(ZHANG_WEI).await;
    app.redis.as_mut().unwrap().kill();
    for _ in 0..3 {
        let started = Instant::now();
        let error = app.verify_text(&code.text).await.unwrap_err();
        assert_eq!(error.code(), Code::Unavailable, "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
        assert!(!error.message().contains("redis.sock"), "internals stay in the log: {}", error.message());
    }
    app.redis.as_mut().unwrap().restart();
    // The very next call succeeds: the service reconnected by itself. The sample members were
    // in the killed (non-persistent) Redis, so that call publishes the member again.
    assert_eq!(publish(&app, ZHANG_WEI, 1, 2_000_000).await.applied, 1);
    let verified = app.verify_text(&code.text).await.unwrap();
    assert_eq!(verdict(&verified), pb::Verdict::Valid, "nothing was half-written while Redis was down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_redis_round_trip_per_verification() {
    let app = spawn_app(Backend::Redis).await;
    let codes = [app.issue(ZHANG_WEI).await, app.issue(ZHANG_WEI).await];
    let monitor = app.redis.as_ref().unwrap().monitor();
    for code in &codes {
        assert_eq!(verdict(&app.verify_text(&code.text).await.unwrap()), pb::Verdict::Valid);
    }
    // Five plain commands, no script; that they go as one pipeline (one round trip) is
    // checked against Redis's read count in the store contract.
    assert_eq!(monitor.command_names(), ["HSETNX", "HGET", "EXPIRE", "HLEN", "GET"].repeat(2));
}

/// Issuance without digits sends only the issued mark and the registry read (one pipeline); the
/// code still verifies and its member can still revoke it. Only digits need a second command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuing_without_digits_sends_the_mark_with_the_read_and_the_code_stays_revocable() {
    let app = spawn_app(Backend::Redis).await;
    let request = |omit_digits: bool| pb::IssueCodeRequest {
        issuer_centre: "410800".into(),
        id_number: ZHANG_WEI.into(),
        purpose: pb::Purpose::OffsiteLoan.into(),
        audience_centre: "440300".into(),
        omit_digits,
        ..Default::default()
    };
    let monitor = app.redis.as_ref().unwrap().monitor();
    let plain = app.issuer().await.issue_code(request(true)).await.unwrap().into_inner();
    let with_digits = app.issuer().await.issue_code(request(false)).await.unwrap().into_inner();
    // The mark and the read are sent together, the digits after signing.
    assert_eq!(monitor.command_names(), ["SETEX", "GET", "SETEX", "GET", "SET"]);
    assert!(plain.digits.is_empty() && plain.network_digits.is_empty(), "{plain:?}");
    assert_eq!(with_digits.digits.len(), 19, "{with_digits:?}");
    app.revoke(ZHANG_WEI, &plain.code_id).await;
    assert_eq!(verdict(&app.verify_text(&plain.text).await.unwrap()), pb::Verdict::CodeRevoked);
    assert_eq!(verdict(&app.verify_text(&with_digits.text).await.unwrap()), pb::Verdict::Valid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_calls_and_stops_accepting() {
    let mut app = spawn_app(Backend::Memory).await;
    let channel = app.channel().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let check = |service: &str| tonic_health::pb::HealthCheckRequest { service: service.into() };
    let status = health.check(check("liangma.v1.VerifierService")).await.unwrap().into_inner().status;
    assert_eq!(status, i32::from(tonic_health::pb::health_check_response::ServingStatus::Serving));

    // QR rendering takes milliseconds: many at once are still running when shutdown starts.
    let in_flight: Vec<_> = (0..40)
        .map(|_| {
            let mut issuer = pb::issuer_service_client::IssuerServiceClient::new(channel.clone());
            tokio::spawn(async move {
                issuer
                    .issue_code(pb::IssueCodeRequest {
                        issuer_centre: "410800".into(),
                        id_number: ZHANG_WEI.into(),
                        purpose: pb::Purpose::OffsiteLoan.into(),
                        qr_format: pb::QrFormat::Png.into(),
                        ..Default::default()
                    })
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    app.trigger_shutdown();
    let mut drained = 0;
    for call in in_flight {
        match call.await.unwrap() {
            Ok(response) => {
                assert!(response.into_inner().qr_png.starts_with(b"\x89PNG"));
                drained += 1;
            }
            // On a busy machine a call may not have reached the server before shutdown began:
            // the server's GOAWAY (NO_ERROR) refuses it unprocessed, which a client may retry.
            // Anything else would be a call cut off during the drain.
            Err(status) => {
                let cause = format!("{status:?}");
                assert!(cause.contains("GoAway") && cause.contains("NO_ERROR"), "in-flight call failed: {cause}");
            }
        }
    }
    assert!(drained > 0, "calls in flight when shutdown began finished during the drain");
    tokio::time::timeout(Duration::from_secs(10), app.server.take().unwrap()).await.unwrap().unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(app.address).await.is_err(), "no longer accepting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_services() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let app = spawn_app(Backend::Memory).await;
    let mut client = ServerReflectionClient::new(app.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else { panic!("{response:?}") };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in liangma::grpc::SERVICE_NAMES.iter().chain(&["grpc.health.v1.Health"]) {
        assert!(names.iter().any(|n| n == name), "{name} missing from {names:?}");
    }
}

fn party_text(text: &str) -> Option<pb::PartyCode> {
    Some(pb::PartyCode { code: Some(pb::party_code::Code::Text(text.into())) })
}

async fn loan_evaluation_uses_verified_codes_and_live_status(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut loans = pb::loan_service_client::LoanServiceClient::new(app.channel().await);
    // The worked example of domain.md: 20,000 yuan, 30 months, a 700,000 yuan new house.
    let code = app.issue(ZHANG_WEI).await;
    let worked_example = pb::EvaluateOffsiteLoanRequest {
        borrower: party_text(&code.text),
        house_price_fen: 70_000_000,
        house_kind: pb::HouseKind::New.into(),
        ..Default::default()
    };
    let evaluation = loans.evaluate_offsite_loan(worked_example.clone()).await.unwrap().into_inner();
    assert!(evaluation.eligible, "{evaluation:?}");
    assert_eq!((evaluation.max_amount_fen, evaluation.decided_by.as_str()), (56_000_000, "price-ratio"));
    assert_eq!(evaluation.policy, "jiaozuo-2024");
    let balance = evaluation.figures.iter().find(|f| f.name == "borrower.balance").unwrap();
    assert_eq!(balance.source, "live-registry");
    assert_eq!(evaluation.verification_ids.len(), 1);
    // Evaluating consumed the code like any verification.
    assert_eq!(verdict(&app.verify_text(&code.text).await.unwrap()), pb::Verdict::AlreadyUsed);
    let again = loans.evaluate_offsite_loan(worked_example).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(again.message().contains("ALREADY_USED"), "{}", again.message());

    // Verified just before by the same caller: the verification id stands for the code, and the
    // registry's newer status (a withdrawal) wins over the claims.
    let borrower = app.verify_text(&app.issue(ZHANG_WEI).await.text).await.unwrap();
    publish(&app, ZHANG_WEI, 2, 1_000_000).await;
    let spouse = app.issue(WANG_FANG).await;
    let evaluation = loans
        .evaluate_offsite_loan(pb::EvaluateOffsiteLoanRequest {
            borrower: Some(pb::PartyCode {
                code: Some(pb::party_code::Code::VerificationId(borrower.verification_id)),
            }),
            co_borrower: party_text(&spouse.text),
            house_price_fen: 150_000_000,
            house_kind: pb::HouseKind::SecondHand.into(),
            building_age_years: 12,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // 10,000 × 30 × 1.0 + 8,500 × 30 × 0.8 (23 months) = 504,000; 80% of 1,500,000 = 1,200,000.
    assert_eq!((evaluation.max_amount_fen, evaluation.decided_by.as_str()), (50_400_000, "formula"));
    assert_eq!(evaluation.max_term_years, 28);
    let figure = |name: &str| evaluation.figures.iter().find(|f| f.name == name).unwrap().clone();
    assert_eq!(figure("borrower.balance").value, "10000.00 yuan");
    assert_eq!(figure("co_borrower.continuous_months").source, "live-registry");
    assert_eq!(figure("building_age_years").source, "request");
}

/// A verification request with a request id.
fn verify_request(text: &str, request_id: &str) -> pb::VerifyCodeRequest {
    pb::VerifyCodeRequest {
        code: Some(pb::verify_code_request::Code::Text(text.into())),
        purpose: 0,
        request_id: request_id.into(),
    }
}

async fn a_retry_with_the_same_request_id_is_the_same_verification(backend: Backend) {
    let app = spawn_app(backend).await;
    let code = app.issue(ZHANG_WEI).await;
    let mut verifier = app.verifier().await;
    let first = verifier.verify_code(verify_request(&code.text, "scan-1")).await.unwrap().into_inner();
    assert_eq!(verdict(&first), pb::Verdict::Valid);
    // The counter lost the answer and asks again: the same verification, not a second use.
    app.clock.advance(5);
    let retry = verifier.verify_code(verify_request(&code.text, "scan-1")).await.unwrap().into_inner();
    assert_eq!(verdict(&retry), pb::Verdict::Valid);
    assert_eq!(retry.verification_id, first.verification_id);
    assert_eq!(retry.live, first.live);
    // Anyone else, or the same counter scanning anew, finds it used.
    for other in ["scan-2", ""] {
        let again = verifier.verify_code(verify_request(&code.text, other)).await.unwrap().into_inner();
        assert_eq!(verdict(&again), pb::Verdict::AlreadyUsed, "request id {other:?}");
    }
    // The member sees one use and the two later attempts, counted on one line.
    let usage = app.usage_of(ZHANG_WEI).await;
    let lines: Vec<_> = usage.entries.iter().map(|entry| (result_of(entry), entry.count)).collect();
    assert_eq!(lines, [(pb::Verdict::AlreadyUsed, 2), (pb::Verdict::Valid, 1)]);
    let bad = verifier.verify_code(verify_request(&code.text, "no spaces|or bars")).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("request_id"), "{}", bad.message());
}

async fn only_a_live_code_of_the_member_can_be_revoked(backend: Backend) {
    let app = spawn_app(backend).await;
    let code = app.issue(ZHANG_WEI).await;
    let keys_before = app.redis.as_ref().map(|redis| redis.cli(&["DBSIZE"]));
    let mut issuer = app.issuer().await;
    let revoke = |id_number: &str, code_id: &str| pb::RevokeCodeRequest {
        issuer_centre: "410800".into(),
        id_number: id_number.into(),
        code_id: code_id.into(),
    };
    for (id_number, code_id) in [(ZHANG_WEI, "00112233445566778899aabb"), (WANG_FANG, code.code_id.as_str())] {
        let error = issuer.revoke_code(revoke(id_number, code_id)).await.unwrap_err();
        assert_eq!(error.code(), Code::NotFound, "{id_number} {code_id}");
    }
    // Nothing was written for them.
    assert_eq!(app.redis.as_ref().map(|redis| redis.cli(&["DBSIZE"])), keys_before);
    assert_eq!(verdict(&app.verify_text(&code.text).await.unwrap()), pb::Verdict::Valid, "still the member's");
    // The member's own code revokes; once expired it no longer exists to revoke.
    let lost = app.issue(ZHANG_WEI).await;
    issuer.revoke_code(revoke(ZHANG_WEI, &lost.code_id)).await.unwrap();
    let expired = app.issue(ZHANG_WEI).await;
    app.clock.advance(86_400);
    if backend == Backend::Memory {
        let error = issuer.revoke_code(revoke(ZHANG_WEI, &expired.code_id)).await.unwrap_err();
        assert_eq!(error.code(), Code::NotFound);
    }
}

fn member(id_number: &str, name: &str, status: pb::DepositStatus) -> pb::MemberStatus {
    pb::MemberStatus { id_number: id_number.into(), name: name.into(), status: Some(status) }
}

async fn publish_checks_every_field_and_refuses_version_jumps(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut registry = app.registry().await;
    let batch = |records: Vec<pb::MemberStatus>| pb::PublishStatusesRequest { centre: "410800".into(), records };
    let mut too_rich = status(2, 0);
    too_rich.balance_fen = liangma::code::bounds::MAX_BALANCE_FEN + 1;
    let mut pinned = status(1 << 42, 1);
    pinned.registry_version = 1 << 42;
    for (record, field) in [
        (member(ZHANG_WEI, &"名".repeat(65), status(2, 1)), "records[0].name"),
        (member(ZHANG_WEI, "张\u{7}伟", status(2, 1)), "records[0].name"),
        (member(ZHANG_WEI, "张伟", too_rich), "balance_fen"),
        (member(ZHANG_WEI, "张伟", pinned), "registry_version"),
        (member(ZHANG_WEI, "张伟", status(0, 1)), "registry_version"),
    ] {
        let error = registry.publish_statuses(batch(vec![record])).await.unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument);
        assert!(error.message().contains(field), "{field}: {}", error.message());
    }
    // The largest values a record may hold still make a code.
    let mut largest = status(3, liangma::code::bounds::MAX_BALANCE_FEN);
    largest.monthly_deposit_fen = liangma::code::bounds::MAX_MONTHLY_DEPOSIT_FEN;
    largest.continuous_months = liangma::code::bounds::MAX_CONTINUOUS_MONTHS;
    largest.loans_used = liangma::code::bounds::MAX_LOANS_USED;
    let applied =
        registry.publish_statuses(batch(vec![member(ZHANG_WEI, "张伟", largest)])).await.unwrap().into_inner();
    assert_eq!(applied.applied, 1);
    assert_eq!(verdict(&app.verify_text(&app.issue(ZHANG_WEI).await.text).await.unwrap()), pb::Verdict::Valid);
    // A version more than the allowed step ahead is refused for its record alone.
    let jump = liangma::config::Config::default().limits.max_version_step + 4;
    let outcome = registry
        .publish_statuses(batch(vec![
            member(ZHANG_WEI, "张伟", status(jump, 1)),
            member(WANG_FANG, "王芳", status(2, 900_000)),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((outcome.applied, outcome.ignored_not_newer), (1, 0));
    assert_eq!(outcome.rejected, [pb::RejectedRecord { index: 0, reason: "VERSION_STEP_TOO_LARGE".into() }]);
    // The genuine next version still applies: nothing was pinned.
    assert_eq!(publish(&app, ZHANG_WEI, 4, 2_000_000).await.applied, 1);
}

async fn a_member_cannot_be_their_own_co_borrower(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut loans = pb::loan_service_client::LoanServiceClient::new(app.channel().await);
    let (code, other_code) = (app.issue(ZHANG_WEI).await, app.issue(ZHANG_WEI).await);
    let verified = app.verify_text(&app.issue(ZHANG_WEI).await.text).await.unwrap();
    let by_id =
        || Some(pb::PartyCode { code: Some(pb::party_code::Code::VerificationId(verified.verification_id.clone())) });
    for (borrower, co_borrower) in [
        (party_text(&code.text), party_text(&code.text)),
        (party_text(&code.text), party_text(&other_code.text)),
        (by_id(), by_id()),
        (by_id(), party_text(&code.text)),
    ] {
        let request = pb::EvaluateOffsiteLoanRequest {
            borrower,
            co_borrower,
            house_price_fen: 200_000_000,
            house_kind: pb::HouseKind::New.into(),
            ..Default::default()
        };
        let error = loans.evaluate_offsite_loan(request).await.unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument);
        assert!(error.message().contains("same member"), "{}", error.message());
    }
    // Refused before anything was consumed.
    for code in [&code, &other_code] {
        assert_eq!(verdict(&app.verify_text(&code.text).await.unwrap()), pb::Verdict::Valid);
    }
}

async fn no_code_is_consumed_by_a_loan_evaluation_that_fails_its_checks(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut loans = pb::loan_service_client::LoanServiceClient::new(app.channel().await);
    let borrower = app.issue(ZHANG_WEI).await;
    // The spouse's code is for another purpose: refused offline, so the borrower's stays unused.
    let deposit_certificate = app
        .issuer()
        .await
        .issue_code(pb::IssueCodeRequest {
            purpose: pb::Purpose::DepositCertificate.into(),
            ..issue_request("410800", WANG_FANG)
        })
        .await
        .unwrap()
        .into_inner();
    let request = |co_borrower: &str, request_id: &str| pb::EvaluateOffsiteLoanRequest {
        borrower: party_text(&borrower.text),
        co_borrower: party_text(co_borrower),
        house_price_fen: 150_000_000,
        house_kind: pb::HouseKind::New.into(),
        request_id: request_id.into(),
        ..Default::default()
    };
    let error = loans.evaluate_offsite_loan(request(&deposit_certificate.text, "loan-1")).await.unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(
        error.message().contains("co_borrower") && error.message().contains("WRONG_PURPOSE"),
        "{}",
        error.message()
    );
    // The spouse's code was used elsewhere meanwhile: the borrower's is consumed first, and the
    // answer says how to use it again.
    let spouse = app.issue(WANG_FANG).await;
    app.verify_text(&spouse.text).await.unwrap();
    let error = loans.evaluate_offsite_loan(request(&spouse.text, "loan-2")).await.unwrap_err();
    assert!(error.message().contains("ALREADY_USED") && error.message().contains("request_id"), "{}", error.message());
    let alone = pb::EvaluateOffsiteLoanRequest { co_borrower: None, ..request("", "loan-2") };
    let evaluation = loans.evaluate_offsite_loan(alone).await.unwrap().into_inner();
    assert!(evaluation.eligible, "the same request id uses the borrower's code again: {evaluation:?}");
    // With the same request id the code serves each question about the term.
    let code = app.issue(ZHANG_WEI).await;
    let term = |years: u32| pb::EvaluateOffsiteLoanRequest {
        borrower: party_text(&code.text),
        house_price_fen: 70_000_000,
        house_kind: pb::HouseKind::New.into(),
        requested_term_years: years,
        request_id: "loan-3".into(),
        ..Default::default()
    };
    for (years, allowed) in [(0, None), (30, Some(true)), (31, Some(false))] {
        let evaluation = loans.evaluate_offsite_loan(term(years)).await.unwrap().into_inner();
        assert_eq!(evaluation.requested_term_allowed, allowed, "{years} years");
        assert_eq!(evaluation.max_term_years, 30);
    }
}

/// Redis frozen mid-verification: the call times out (UNAVAILABLE, outcome unknown), Redis then
/// runs what it had received, and the counter's retry with the same request id gets VALID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_timeout_gets_the_original_valid_not_already_used() {
    let app = spawn_app(Backend::Redis).await;
    let redis = app.redis.as_ref().unwrap();
    let code = app.issue(ZHANG_WEI).await;
    let mut verifier = app.verifier().await;
    // The connection's lane opens its Redis connection on its first call: one call first, so
    // that the frozen Redis does receive the verification below.
    let other_member = app.issue(WANG_FANG).await;
    verifier.verify_code(verify_request(&other_member.text, "counter-7-warm-up")).await.unwrap();
    redis.pause();
    let lost = verifier.verify_code(verify_request(&code.text, "counter-7-scan-1")).await.unwrap_err();
    redis.resume();
    assert_eq!(lost.code(), Code::Unavailable, "{lost:?}");
    app.clock.advance(1);
    let retry = verifier.verify_code(verify_request(&code.text, "counter-7-scan-1")).await.unwrap().into_inner();
    assert_eq!(verdict(&retry), pb::Verdict::Valid);
    let other = verifier.verify_code(verify_request(&code.text, "counter-9-scan-1")).await.unwrap().into_inner();
    assert_eq!(verdict(&other), pb::Verdict::AlreadyUsed);
    // The member's record holds what happened: one use, one refusal, nothing no counter saw.
    let usage = app.usage_of(ZHANG_WEI).await;
    let lines: Vec<_> = usage.entries.iter().map(|entry| (result_of(entry), entry.count)).collect();
    assert_eq!(lines, [(pb::Verdict::AlreadyUsed, 1), (pb::Verdict::Valid, 1)]);
}

/// With Redis gone, every call that needs it answers UNAVAILABLE within the store timeout, and
/// health says which services cannot serve until Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_down_calls_fail_within_the_store_timeout_and_health_follows_the_store() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let mut app = spawn_configured(Backend::Redis, |config| config.store.timeout_ms = 300).await;
    let code = app.issue(ZHANG_WEI).await;
    let health = tonic_health::pb::health_client::HealthClient::new(app.channel().await);
    let status_of = |service: &'static str| {
        let mut health = health.clone();
        async move {
            let request = tonic_health::pb::HealthCheckRequest { service: service.into() };
            ServingStatus::try_from(health.check(request).await.unwrap().into_inner().status).unwrap()
        }
    };
    let wait_for = |service: &'static str, wanted: ServingStatus| async move {
        let deadline = Instant::now() + Duration::from_secs(5);
        while status_of(service).await != wanted {
            assert!(Instant::now() < deadline, "{service} never became {wanted:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    app.redis.as_mut().unwrap().kill();
    wait_for("liangma.v1.VerifierService", ServingStatus::NotServing).await;
    for service in [
        "",
        "liangma.v1.IssuerService",
        "liangma.v1.RegistryService",
        "liangma.v1.UsageRecordService",
        "liangma.v1.LoanService",
    ] {
        assert_eq!(status_of(service).await, ServingStatus::NotServing, "{service:?}");
    }
    assert_eq!(status_of("liangma.v1.TrustDirectoryService").await, ServingStatus::Serving, "needs no store");

    // The bound: the store timeout, plus what a call costs without the store (generous for a
    // loaded 2-core machine, far below two timeouts).
    let bound = Duration::from_millis(300 + 200);
    let timed = |name: &'static str, call: std::pin::Pin<Box<dyn std::future::Future<Output = Code> + Send>>| async move {
        let started = Instant::now();
        let code = call.await;
        assert_eq!(code, Code::Unavailable, "{name}");
        assert!(started.elapsed() < bound, "{name} took {:?}", started.elapsed());
    };
    let (mut verifier, mut usage, mut registry, mut issuer) =
        (app.verifier().await, app.usage().await, app.registry().await, app.issuer().await);
    let digits = code.digits.clone();
    timed(
        "VerifyCode by digits",
        Box::pin(async move {
            let request = pb::VerifyCodeRequest {
                code: Some(pb::verify_code_request::Code::Digits(digits)),
                ..Default::default()
            };
            verifier.verify_code(request).await.unwrap_err().code()
        }),
    )
    .await;
    timed(
        "ListUsage",
        Box::pin(async move {
            let request = pb::ListUsageRequest { issuer_centre: "410800".into(), id_number: ZHANG_WEI.into() };
            usage.list_usage(request).await.unwrap_err().code()
        }),
    )
    .await;
    timed(
        "PublishStatuses",
        Box::pin(async move {
            let request = pb::PublishStatusesRequest {
                centre: "410800".into(),
                records: vec![member(ZHANG_WEI, "张伟", status(9, 1))],
            };
            registry.publish_statuses(request).await.unwrap_err().code()
        }),
    )
    .await;
    timed(
        "IssueCode",
        Box::pin(async move { issuer.issue_code(issue_request("410800", ZHANG_WEI)).await.unwrap_err().code() }),
    )
    .await;

    app.redis.as_mut().unwrap().restart();
    wait_for("liangma.v1.VerifierService", ServingStatus::Serving).await;
    assert_eq!(status_of("").await, ServingStatus::Serving);
}

/// A stored record the service cannot read refuses only its own publication, as a
/// non-retryable rejection; `liangma registry forget` repairs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_stored_record_refuses_only_itself_until_an_operator_forgets_it() {
    let app = spawn_app(Backend::Redis).await;
    let redis = app.redis.as_ref().unwrap();
    let secret = liangma::trust::SubjectSecret::read_file(&app.data_dir.path().join("dev-410800-subject.key")).unwrap();
    let reference = secret.subject_ref(&ZHANG_WEI.parse().unwrap()).to_full_hex();
    let key = format!("{KEY_PREFIX}:{{410800:{reference}}}:record");
    redis.cli(&["SET", &key, "not a record"]);
    let outcome = app
        .registry()
        .await
        .publish_statuses(pb::PublishStatusesRequest {
            centre: "410800".into(),
            records: vec![member(ZHANG_WEI, "张伟", status(2, 1)), member(WANG_FANG, "王芳", status(2, 900_000))],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome.applied, 1, "the other record is stored");
    assert_eq!(outcome.rejected, [pb::RejectedRecord { index: 0, reason: "STORED_RECORD_UNREADABLE".into() }]);

    let config = app.data_dir.path().join("liangma.toml");
    let settings = format!(
        "data_dir = {:?}\n[store]\nbackend = \"redis\"\nredis_url = {:?}\nkey_prefix = {KEY_PREFIX:?}\n",
        app.data_dir.path(),
        redis.url()
    );
    std::fs::write(&config, settings).unwrap();
    let forget = std::process::Command::new(env!("CARGO_BIN_EXE_liangma"))
        .args(["registry", "forget", "--centre", "410800", "--id-number", ZHANG_WEI, "--config"])
        .arg(&config)
        .env_clear()
        .output()
        .unwrap();
    assert!(forget.status.success(), "{}", String::from_utf8_lossy(&forget.stderr));
    assert!(String::from_utf8_lossy(&forget.stdout).contains("removed"));
    assert_eq!(publish(&app, ZHANG_WEI, 2, 1).await.applied, 1, "publishing works again");
}

/// Usage records are kept for the configured period: older entries are not shown, and Redis
/// drops a member's record that long after its latest entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_records_are_kept_for_the_retention_period_only() {
    let app = spawn_configured(Backend::Redis, |config| config.store.usage_retention_days = 1).await;
    let code = app.issue(ZHANG_WEI).await;
    let answer = app.verifier().await.verify_code(verify_request(&code.text, "kept-1")).await.unwrap().into_inner();
    assert_eq!(verdict(&answer), pb::Verdict::Valid);
    assert_eq!(app.usage_of(ZHANG_WEI).await.entries.len(), 1);
    let redis = app.redis.as_ref().unwrap();
    // The VALID entry is the code's used state, in the member's used-codes hash.
    let keys = redis.cli(&["--scan", "--pattern", &format!("{KEY_PREFIX}:*:used")]);
    assert_eq!(keys.lines().count(), 1, "the used-codes hash was written: {keys}");
    for key in keys.lines() {
        let ttl: i64 = redis.cli(&["TTL", key]).parse().unwrap();
        assert!((1..=86_400).contains(&ttl), "{key} lives {ttl} s");
    }
    app.clock.advance(86_400 + 1);
    assert!(app.usage_of(ZHANG_WEI).await.entries.is_empty(), "a day later the entry is no longer shown");
}

/// Connections are served by the serving lanes in turn, and each lane talks to Redis over a
/// connection of its own (plus one shared by everything else): a node holds lanes + 1
/// connections to Redis however many clients it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_serving_lane_has_a_redis_connection_of_its_own() {
    let app = spawn_configured(Backend::Redis, |config| config.limits.serving_threads = 3).await;
    let redis = app.redis.as_ref().unwrap();
    let clients = || liangma::testkit::info_field(&redis.socket(), "clients", "connected_clients");
    // The shared connection has loaded the scripts; `info_field`'s own client is counted too.
    let before = clients();
    for member in [ZHANG_WEI, WANG_FANG, ZHANG_WEI] {
        // Each call on a new connection, so the three go to the three lanes.
        app.issue(member).await;
    }
    assert_eq!(clients(), before + 3, "one Redis connection per lane");
    for _ in 0..6 {
        app.issue(WANG_FANG).await;
    }
    assert_eq!(clients(), before + 3, "more clients, no more Redis connections");
}
