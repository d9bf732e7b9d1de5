//! `liangma serve` as a process: SIGTERM stops it cleanly, bad config exits 64, and its logs
//! at every level carry no ID number, name or balance.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use liangma::pb::v1 as pb;

use crate::harness::ZHANG_WEI;

struct Served {
    child: Child,
    address: String,
    /// stderr is read as it comes: a full pipe would block the server mid-call.
    log: std::thread::JoinHandle<String>,
    _data: tempfile::TempDir,
}

impl Served {
    /// SIGTERM, then the exit status and everything logged.
    fn terminate(mut self) -> (std::process::ExitStatus, String, Duration) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let started = Instant::now();
        let status = self.child.wait().unwrap();
        (status, self.log.join().unwrap(), started.elapsed())
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn serve(log_level: &str) -> Served {
    let data = tempfile::tempdir().unwrap();
    let address = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_liangma"))
        .arg("serve")
        .env_clear()
        .env("LIANGMA_LISTEN", &address)
        .env("LIANGMA_DATA_DIR", data.path())
        .env("LIANGMA_LOG", log_level)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        text
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(&address).await.is_err() {
        assert!(Instant::now() < deadline, "liangma serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Served { child, address: format!("http://{address}"), log, _data: data }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_server_cleanly() {
    let served = serve("info").await;
    let channel = tonic::transport::Channel::from_shared(served.address.clone()).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(status.into_inner().status, i32::from(tonic_health::pb::health_check_response::ServingStatus::Serving));
    let (status, log, took) = served.terminate();
    assert!(took < Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(log.contains("NOT_SERVING") && log.contains("stopped"), "{log}");
}

#[test]
fn a_bad_configuration_exits_64_before_binding() {
    let output = Command::new(env!("CARGO_BIN_EXE_liangma"))
        .arg("serve")
        .env_clear()
        .env("LIANGMA_CENTRE", "41")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("LIANGMA_CENTRE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_at_every_level_carry_no_personal_data() {
    let served = serve("trace").await;
    let channel = tonic::transport::Channel::from_shared(served.address.clone()).unwrap().connect().await.unwrap();
    let mut issuer = pb::issuer_service_client::IssuerServiceClient::new(channel.clone());
    let mut verifier = pb::verifier_service_client::VerifierServiceClient::new(channel.clone());
    let mut registry = pb::registry_service_client::RegistryServiceClient::new(channel.clone());
    let mut usage = pb::usage_record_service_client::UsageRecordServiceClient::new(channel);
    registry
        .publish_statuses(pb::PublishStatusesRequest {
            centre: "410800".into(),
            records: vec![pb::MemberStatus {
                id_number: ZHANG_WEI.into(),
                name: "张伟".into(),
                status: Some(pb::DepositStatus {
                    account_status: pb::AccountStatus::Normal.into(),
                    balance_fen: 7_654_321,
                    registry_version: 9,
                    ..Default::default()
                }),
            }],
        })
        .await
        .unwrap();
    let code = issuer
        .issue_code(pb::IssueCodeRequest {
            issuer_centre: "410800".into(),
            id_number: ZHANG_WEI.into(),
            purpose: pb::Purpose::OffsiteLoan.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for _ in 0..2 {
        verifier
            .verify_code(pb::VerifyCodeRequest {
                code: Some(pb::verify_code_request::Code::Text(code.text.clone())),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    usage
        .list_usage(pb::ListUsageRequest { issuer_centre: "410800".into(), id_number: ZHANG_WEI.into() })
        .await
        .unwrap();
    // Errors too: a wrong check character, an unknown member.
    let _ = issuer
        .issue_code(pb::IssueCodeRequest {
            issuer_centre: "410800".into(),
            id_number: "410802198503120013".into(),
            purpose: 1,
            ..Default::default()
        })
        .await;
    let (_, log, _) = served.terminate();
    assert!(log.contains("TRACE") || log.contains("DEBUG"), "the test must see verbose logs");
    assert!(log.contains("verified"));
    for secret in [ZHANG_WEI, "410802198503120013", "张伟", "王芳", "7654321", "76543.21", "2000000", "20000.00"] {
        assert!(!log.contains(secret), "`{secret}` appears in the log");
    }
}
