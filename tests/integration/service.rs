//! The gRPC service end to end, every scenario against both the memory and the Redis store.

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
    let published = app.trust().await.get_trust_list(pb::GetTrustListRequest {}).await.unwrap().into_inner();
    assert!(published.trust_list_json.contains("\"revoked\""));

    // A broken trust list file is refused and the list in force stays.
    std::fs::write(app.trust_list_path(), "{").unwrap();
    let error = app.trust().await.reload_trust_list(pb::ReloadTrustListRequest {}).await.unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
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
    let commands = monitor.client_commands();
    assert_eq!(commands.len(), 2, "one round trip per verification: {commands:?}");
    assert!(commands.iter().all(|command| command.starts_with("\"EVALSHA\"")), "{commands:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reports_not_serving_and_drains_in_flight_calls() {
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
