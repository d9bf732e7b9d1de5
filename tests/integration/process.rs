//! `liangma serve` as a process: SIGTERM stops it cleanly, bad config exits 64, and its logs
//! at every level carry no ID number, name or balance.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use liangma::pb::v1 as pb;

use crate::harness::ZHANG_WEI;

pub struct Served {
    child: Child,
    pub address: String,
    /// stderr is read as it comes (unless a test wants it stalled).
    log: std::thread::JoinHandle<String>,
    /// Lets the reader start reading; until then nobody reads stderr.
    start_reading: std::sync::mpsc::Sender<()>,
    _data: tempfile::TempDir,
}

impl Served {
    /// SIGTERM, then the exit status and everything logged.
    pub fn terminate(mut self) -> (std::process::ExitStatus, String, Duration) {
        let _ = self.start_reading.send(());
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let started = Instant::now();
        let status = self.child.wait().unwrap();
        (status, self.log.join().unwrap(), started.elapsed())
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn serve(log_level: &str) -> Served {
    serve_with(log_level, &[], true).await
}

/// `liangma serve` with `config` lines in a configuration file; stderr is read from the start
/// or, with `read_logs` false, only from [`Served::terminate`] on (a stalled log reader).
pub async fn serve_with(log_level: &str, config: &[&str], read_logs: bool) -> Served {
    let data = tempfile::tempdir().unwrap();
    let address = format!("127.0.0.1:{}", free_port());
    let config_path = data.path().join("liangma.toml");
    std::fs::write(&config_path, config.join("\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_liangma"))
        .arg("serve")
        .env_clear()
        .env("LIANGMA_CONFIG", &config_path)
        .env("LIANGMA_LISTEN", &address)
        .env("LIANGMA_DATA_DIR", data.path())
        .env("LIANGMA_LOG", log_level)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (start_reading, may_read) = std::sync::mpsc::channel();
    if read_logs {
        start_reading.send(()).unwrap();
    }
    let log = std::thread::spawn(move || {
        let _ = may_read.recv();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        text
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(&address).await.is_err() {
        assert!(Instant::now() < deadline, "liangma serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Served { child, address: format!("http://{address}"), log, start_reading, _data: data }
}

async fn issue_for_zhang_wei(
    issuer: &mut pb::issuer_service_client::IssuerServiceClient<tonic::transport::Channel>,
) -> pb::IssueCodeResponse {
    let request = pb::IssueCodeRequest {
        issuer_centre: "410800".into(),
        id_number: ZHANG_WEI.into(),
        purpose: pb::Purpose::OffsiteLoan.into(),
        ..Default::default()
    };
    issuer.issue_code(request).await.unwrap().into_inner()
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
fn a_bad_configuration_exits_64_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_liangma"))
        .arg("serve")
        .env_clear()
        .env("LIANGMA_CENTRE", "41")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("LIANGMA_CENTRE"));
}

/// Off loopback, plaintext needs the explicit setting: refused without it (exit 64, before
/// binding: the port stays free), served with it and a loud warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_off_loopback_is_refused_unless_explicitly_allowed() {
    let port = free_port();
    let data = tempfile::tempdir().unwrap();
    let serve = |insecure: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_liangma"));
        command.arg("serve").env_clear().env("LIANGMA_LISTEN", format!("0.0.0.0:{port}"));
        command.env("LIANGMA_DATA_DIR", data.path()).stdout(Stdio::null()).stderr(Stdio::piped());
        if let Some(value) = insecure {
            command.env("LIANGMA_INSECURE_PLAINTEXT", value);
        }
        command
    };
    let refused = serve(None).output().unwrap();
    assert_eq!(refused.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("insecure_plaintext"));
    assert!(std::net::TcpListener::bind(("0.0.0.0", port)).is_ok(), "nothing was bound");
    let child = serve(Some("true")).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "liangma serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("INSECURE: serving plaintext gRPC off loopback"));
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
    let code = issue_for_zhang_wei(&mut issuer).await;
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

/// Nobody reads the server's stderr: log lines are dropped and counted, and every call is still
/// answered (before, the server froze once the pipe and the log queue were full).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_log_reader_never_stalls_the_service() {
    let served = serve_with("info", &["log_queue_lines = 32"], false).await;
    let channel = tonic::transport::Channel::from_shared(served.address.clone()).unwrap().connect().await.unwrap();
    let mut issuer = pb::issuer_service_client::IssuerServiceClient::new(channel.clone());
    let mut verifier = pb::verifier_service_client::VerifierServiceClient::new(channel);
    let code = issue_for_zhang_wei(&mut issuer).await;
    // Each call logs a line of about 150 bytes: 3,000 overfill a 64 KiB pipe several times.
    for _ in 0..3_000 {
        let mut request = tonic::Request::new(pb::VerifyCodeRequest {
            code: Some(pb::verify_code_request::Code::Text(code.text.clone())),
            ..Default::default()
        });
        request.set_timeout(Duration::from_secs(5));
        verifier.verify_code(request).await.expect("answered although nobody reads the log");
    }
    let (status, log, _) = served.terminate();
    assert_eq!(status.code(), Some(0));
    let dropped: u64 = log
        .lines()
        .filter(|line| line.contains("log lines dropped"))
        .map(|line| line.rsplit("dropped=").next().unwrap().trim().parse::<u64>().unwrap())
        .sum();
    let verified = log.lines().filter(|line| line.contains("verified")).count() as u64;
    assert!(dropped > 0, "{log}");
    // Every verification's line is written or counted (the count covers any line dropped).
    assert!(verified <= 3_000 && verified + dropped >= 3_000, "{verified} written, {dropped} dropped");
}

/// With file descriptors exhausted, accepting fails over and over: the server backs off
/// instead of spinning a core, and serves again once descriptors are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_errors_back_off_instead_of_spinning() {
    let served = serve("info").await;
    let pid = served.child.id();
    // Leave the server few descriptors to spare.
    let limited = Command::new("prlimit").args(["--nofile=48:48", "--pid", &pid.to_string()]).status().unwrap();
    assert!(limited.success(), "prlimit (util-linux) must be installed");
    let mut held = Vec::new();
    for _ in 0..80 {
        if let Ok(socket) = tokio::net::TcpStream::connect(served.address.trim_start_matches("http://")).await {
            held.push(socket);
        }
    }
    let cpu_seconds = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        ticks as f64 / 100.0
    };
    let before = cpu_seconds();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_seconds() - before;
    assert!(used < 0.5, "the accept loop used {used:.2} s of CPU in 2 s");
    drop(held);
    let channel = tonic::transport::Channel::from_shared(served.address.clone()).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    let (_, log, _) = served.terminate();
    assert!(log.contains("accepting a connection failed; backing off"), "{log}");
}

/// `liangma client` as a person at a counter uses it: times in China Standard Time, and a
/// verification retried with its request id is the same verification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_shows_local_times_and_retries_with_its_request_id() {
    let app = crate::harness::spawn_app(crate::harness::Backend::Memory).await;
    let server = format!("http://{}", app.address);
    let client = move |args: Vec<String>| {
        let server = server.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_liangma"))
                .arg("client")
                .arg("--server")
                .arg(server)
                .args(args)
                .output()
                .unwrap()
        })
    };
    let words = |text: &str| text.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let issued =
        client(words(&format!("issue --issuer 410800 --id-number {ZHANG_WEI} --audience 440300"))).await.unwrap();
    assert!(issued.status.success(), "{}", String::from_utf8_lossy(&issued.stderr));
    let code = String::from_utf8(issued.stdout).unwrap().trim().to_owned();
    assert!(String::from_utf8_lossy(&issued.stderr).contains("expires 2026-11-27T00:00:00+08:00"));
    assert!(String::from_utf8_lossy(&issued.stderr).starts_with("digits "), "the spoken form by default");
    let plain = client(words(&format!("issue --issuer 410800 --id-number {ZHANG_WEI} --no-digits"))).await.unwrap();
    assert!(plain.status.success(), "{}", String::from_utf8_lossy(&plain.stderr));
    assert!(String::from_utf8_lossy(&plain.stderr).starts_with("code id "), "no digits when not wanted");
    for _ in 0..2 {
        let verified =
            client(vec!["verify".into(), code.clone(), "--request-id".into(), "desk-3-0001".into()]).await.unwrap();
        assert_eq!(verified.status.code(), Some(0), "{}", String::from_utf8_lossy(&verified.stdout));
        assert!(String::from_utf8_lossy(&verified.stdout).starts_with("VALID"));
    }
    let again = client(vec!["verify".into(), code]).await.unwrap();
    assert_eq!(again.status.code(), Some(1));
    let line = String::from_utf8(again.stdout).unwrap();
    assert!(line.starts_with("ALREADY_USED") && line.contains("used_by=440300 at=2026-11-26T09:30:00+08:00"), "{line}");
}

/// What a node's `metrics_listen` answers to `GET /metrics`.
pub async fn scrape_metrics(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_counts_a_session_and_names_no_member() {
    let metrics_port = free_port();
    let served = serve_with("warn", &[&format!("metrics_listen = \"127.0.0.1:{metrics_port}\"")], true).await;
    let channel = tonic::transport::Endpoint::from_shared(served.address.clone()).unwrap().connect().await.unwrap();
    let mut issuer = pb::issuer_service_client::IssuerServiceClient::new(channel.clone());
    let issued = issue_for_zhang_wei(&mut issuer).await;
    let mut verifier = pb::verifier_service_client::VerifierServiceClient::new(channel);
    for request_id in ["m-1", "m-2"] {
        let request = pb::VerifyCodeRequest {
            code: Some(pb::verify_code_request::Code::Text(issued.text.clone())),
            request_id: request_id.into(),
            ..Default::default()
        };
        verifier.verify_code(request).await.unwrap();
    }
    let scrape = scrape_metrics(metrics_port).await;
    for expected in [
        "liangma_verifications_total{verdict=\"VALID\"} 1",
        "liangma_verifications_total{verdict=\"ALREADY_USED\"} 1",
        "liangma_codes_issued_total{issuer=\"410800\"} 1",
        "liangma_rpc_duration_seconds_count{rpc=\"/liangma.v1.VerifierService/VerifyCode\"} 2",
        "liangma_rpc_duration_seconds_bucket{rpc=\"/liangma.v1.IssuerService/IssueCode\",le=\"10\"} 1",
    ] {
        assert!(scrape.contains(expected), "`{expected}` missing from:\n{scrape}");
    }
    // Nothing about the member: no ID number, no name, no code, no subject reference.
    for personal in [ZHANG_WEI, "张", &issued.text[4..20], &issued.code_id] {
        assert!(!scrape.contains(personal), "the metrics contain `{personal}`");
    }
    served.terminate();
}

/// `liangma client health` is what probes run: exit 0 when SERVING; a node whose Redis is gone
/// is not ready (exit 1) but alive (`--alive`: exit 0), so it is taken out of rotation, not
/// restarted; a node that does not answer fails both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_tell_ready_from_alive() {
    let probe = |served: &Served, extra: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_liangma"))
            .args(["client", "--server", &served.address, "health"])
            .args(extra)
            .output()
            .unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let ready = serve("warn").await;
    assert_eq!(probe(&ready, &[]), (Some(0), "SERVING".to_owned()));
    assert_eq!(probe(&ready, &["--service", "liangma.v1.VerifierService"]), (Some(0), "SERVING".to_owned()));
    let mut redis = liangma::testkit::RedisServer::start();
    let cut_off =
        serve_with("warn", &["[store]", "backend = \"redis\"", &format!("redis_url = \"{}\"", redis.url())], true)
            .await;
    assert_eq!(probe(&cut_off, &["--service", "liangma.v1.VerifierService"]).0, Some(0));
    redis.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while probe(&cut_off, &["--service", "liangma.v1.VerifierService"]).0 != Some(1) {
        assert!(Instant::now() < deadline, "health never turned NOT_SERVING without Redis");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(probe(&cut_off, &["--service", "liangma.v1.VerifierService"]), (Some(1), "NOT_SERVING".to_owned()));
    assert_eq!(probe(&cut_off, &["--alive", "--service", "liangma.v1.VerifierService"]).0, Some(0));
    let (status, _, _) = cut_off.terminate();
    assert_eq!(status.code(), Some(0));
    let gone = ready.address.clone();
    drop(ready.terminate());
    let output = Command::new(env!("CARGO_BIN_EXE_liangma"))
        .args(["client", "--server", &gone, "health", "--alive"])
        .output()
        .unwrap();
    assert_ne!(output.status.code(), Some(0));
}
