//! A network of real processes over mutual TLS: a trust directory and three centre nodes
//! (Jiaozuo 410800 issues, Hangzhou 330100 and Beijing 110000 verify), each node with its own
//! redis-server. One scenario, so that the processes start once.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use liangma::code::CentreCode;
use liangma::federation::directory::rotation_message;
use liangma::federation::identity::{Grant, Role};
use liangma::pb::v1 as pb;
use liangma::testkit::RedisServer;
use liangma::testkit::pki::TestCa;
use liangma::trust::{CentreKey, SubjectSecret, TrustList};
use tonic::transport::{Channel, Endpoint};

use crate::harness::ZHANG_WEI;
use crate::process::{free_port, scrape_metrics};

const JIAOZUO: u32 = 410800;
const HANGZHOU: u32 = 330100;
const BEIJING: u32 = 110000;
/// The nodes fetch the directory's list this often in this test (the default is 15 s).
const REFRESH: Duration = Duration::from_secs(1);
/// How long a node waits for another node (the default).
const REMOTE_TIMEOUT: Duration = Duration::from_millis(1000);

fn centre(code: u32) -> CentreCode {
    CentreCode::new(code).unwrap()
}

fn grant(code: u32, role: Role) -> Grant {
    Grant { centre: centre(code), role }
}

fn write_secret(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A `liangma serve` process with its configuration file.
struct Process {
    child: Option<Child>,
    config: PathBuf,
    port: u16,
    log: PathBuf,
}

impl Process {
    fn start(dir: &Path, name: &str, port: u16, config: &str) -> Self {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        let mut process = Self { child: None, config: path, port, log: dir.join(format!("{name}.log")) };
        process.spawn();
        process
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_liangma"))
            .arg("serve")
            .env_clear()
            .env("LIANGMA_CONFIG", &self.config)
            .env("LIANGMA_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "{} exited with {status}:\n{}",
                    self.config.display(),
                    std::fs::read_to_string(&self.log).unwrap()
                );
            }
            assert!(Instant::now() < deadline, "{} did not start", self.config.display());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client channel to `url` presenting a certificate with `grants` (none: no certificate).
fn channel(ca: &TestCa, url: &str, grants: Option<&[Grant]>, national_operator: bool) -> Channel {
    let tls = match grants {
        Some(grants) => ca.material(grants, national_operator).client_config(),
        None => tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca.certificate())),
    };
    Endpoint::from_shared(url.to_owned())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect_lazy()
}

fn verifier(channel: Channel) -> pb::verifier_service_client::VerifierServiceClient<Channel> {
    pb::verifier_service_client::VerifierServiceClient::new(channel)
}

fn verify_request(text: &str, request_id: &str) -> pb::VerifyCodeRequest {
    pb::VerifyCodeRequest {
        code: Some(pb::verify_code_request::Code::Text(text.to_owned())),
        request_id: request_id.to_owned(),
        ..Default::default()
    }
}

async fn signed_sequence(channel: Channel) -> (u64, String) {
    let answer = pb::trust_directory_service_client::TrustDirectoryServiceClient::new(channel)
        .get_trust_list(pb::GetTrustListRequest {})
        .await
        .unwrap()
        .into_inner();
    (answer.sequence, answer.trust_list_json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn centres_in_three_provinces_verify_consume_and_follow_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let ca = TestCa::new("liangma test national CA");
    std::fs::write(path("ca.pem"), ca.certificate()).unwrap();

    // Keys: the directory's, and each centre's signing key.
    let directory_key = CentreKey::generate().unwrap();
    directory_key.write_pem_file(&path("directory.pem")).unwrap();
    let jiaozuo_key = CentreKey::generate().unwrap();
    jiaozuo_key.write_pem_file(&path("jiaozuo.pem")).unwrap();
    SubjectSecret::generate().unwrap().write_file(&path("jiaozuo-subject.key")).unwrap();

    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let (directory_port, jiaozuo_port, hangzhou_port, beijing_port) = (ports[0], ports[1], ports[2], ports[3]);
    let jiaozuo_metrics = ports[4];
    let now = liangma::clock::Timestamp::from_unix(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64,
    );
    let mut initial = TrustList::new();
    for (code, name, key, port) in [
        (JIAOZUO, "焦作市住房公积金管理中心", jiaozuo_key.verifying_key(), jiaozuo_port),
        (HANGZHOU, "杭州住房公积金管理中心", CentreKey::generate().unwrap().verifying_key(), hangzhou_port),
        (BEIJING, "北京住房公积金管理中心", CentreKey::generate().unwrap().verifying_key(), beijing_port),
    ] {
        initial.add_key(centre(code), Some(name), key, now.plus(-86_400), now.plus(365 * 86_400)).unwrap();
        initial.set_node(centre(code), &format!("https://127.0.0.1:{port}")).unwrap();
    }
    initial.save(&path("initial-trust.json")).unwrap();

    let tls_files = |name: &str, grants: &[Grant]| {
        let issued = ca.issue(grants, false);
        std::fs::write(path(&format!("{name}.crt")), &issued.certificate).unwrap();
        write_secret(&path(&format!("{name}.key")), &issued.private_key);
        format!(
            "[tls]\ncertificate = \"{0}/{name}.crt\"\nprivate_key = \"{0}/{name}.key\"\nca = \"{0}/ca.pem\"\n",
            dir.path().display()
        )
    };
    let directory = Process::start(
        dir.path(),
        "directory",
        directory_port,
        &format!(
            "listen = \"127.0.0.1:{directory_port}\"\ndata_dir = \"{0}/directory-data\"\n{1}\n[directory]\n\
             signing_key = \"{0}/directory.pem\"\nstate = \"{0}/directory-state.json\"\n\
             initial_trust_list = \"{0}/initial-trust.json\"\nnext_update_secs = 60\nvalidity_secs = 3600\n",
            dir.path().display(),
            tls_files("directory", &[]),
        ),
    );
    let directory_hex = hex::encode(directory_key.verifying_key().as_bytes());
    let redis: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let node_config = |name: &str, code: u32, port: u16, redis: &RedisServer, issuer: bool| {
        let issuers = if issuer {
            format!(
                "metrics_listen = \"127.0.0.1:{jiaozuo_metrics}\"\n\
                 [[issuers]]\ncentre = \"{code}\"\nsigning_key = \"{0}/{name}.pem\"\nsubject_secret = \"{0}/{name}-subject.key\"\n",
                dir.path().display()
            )
        } else {
            String::new()
        };
        format!(
            "listen = \"127.0.0.1:{port}\"\ncentre = \"{code}\"\ndata_dir = \"{0}/{name}-data\"\nsample_members = false\n\
             {issuers}{tls}[store]\nbackend = \"redis\"\nredis_url = \"{redis}\"\n[federation]\n\
             directory_url = \"https://127.0.0.1:{directory_port}\"\ndirectory_public_key = \"{directory_hex}\"\n\
             refresh_interval_secs = {refresh}\nremote_timeout_ms = {timeout}\nbreaker_failures = 2\nbreaker_open_secs = 1\n\
             deferred_purposes = [{deferred}]\n",
            dir.path().display(),
            tls = tls_files(name, &[grant(code, Role::Node)]),
            redis = redis.url(),
            refresh = REFRESH.as_secs(),
            timeout = REMOTE_TIMEOUT.as_millis(),
            // Hangzhou accepts deposit certificates offline when Jiaozuo is down.
            deferred = if code == HANGZHOU { "\"deposit-certificate\"" } else { "" },
        )
    };
    let mut jiaozuo = Process::start(
        dir.path(),
        "jiaozuo",
        jiaozuo_port,
        &node_config("jiaozuo", JIAOZUO, jiaozuo_port, &redis[0], true),
    );
    let hangzhou = Process::start(
        dir.path(),
        "hangzhou",
        hangzhou_port,
        &node_config("hangzhou", HANGZHOU, hangzhou_port, &redis[1], false),
    );
    let beijing = Process::start(
        dir.path(),
        "beijing",
        beijing_port,
        &node_config("beijing", BEIJING, beijing_port, &redis[2], false),
    );

    // Jiaozuo's core system publishes its member and issues codes.
    let jiaozuo_core = channel(&ca, &jiaozuo.url(), Some(&[grant(JIAOZUO, Role::Core)]), false);
    pb::registry_service_client::RegistryServiceClient::new(jiaozuo_core.clone())
        .publish_statuses(pb::PublishStatusesRequest {
            centre: JIAOZUO.to_string(),
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
                    registry_version: 1,
                }),
            }],
        })
        .await
        .unwrap();
    let mut issuer = pb::issuer_service_client::IssuerServiceClient::new(jiaozuo_core.clone());
    let (mut codes, mut network_digits) = (Vec::new(), Vec::new());
    for index in 0..6 {
        // The last one is a deposit certificate, which Hangzhou accepts offline if need be.
        let purpose = if index == 5 { pb::Purpose::DepositCertificate } else { pb::Purpose::OffsiteLoan };
        let issued = issuer
            .issue_code(pb::IssueCodeRequest {
                issuer_centre: JIAOZUO.to_string(),
                id_number: ZHANG_WEI.into(),
                purpose: purpose.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        codes.push(issued.text);
        network_digits.push(issued.network_digits);
    }

    // Hangzhou's counter: VALID with Jiaozuo's live status, consumed at Jiaozuo.
    let hangzhou_counter = channel(&ca, &hangzhou.url(), Some(&[grant(HANGZHOU, Role::Counter)]), false);
    let first =
        verifier(hangzhou_counter.clone()).verify_code(verify_request(&codes[0], "hz-1")).await.unwrap().into_inner();
    assert_eq!(first.verdict(), pb::Verdict::Valid, "{first:?}");
    let live = first.live.clone().unwrap();
    assert!(live.found && live.masked_name == "张*", "{live:?}");
    assert_eq!(live.status.unwrap().balance_fen, 2_000_000);
    let accepted = || async {
        let scrape = scrape_metrics(jiaozuo_metrics).await;
        scrape
            .lines()
            .find_map(|line| line.strip_prefix("liangma_connections_total{outcome=\"accepted\"} ")?.parse::<u64>().ok())
    };
    let accepted_after_first = accepted().await;
    assert!(accepted_after_first.is_some(), "Jiaozuo counts the connections it accepts");
    // The answer was lost: the same counter retries with the same request id.
    let retried =
        verifier(hangzhou_counter.clone()).verify_code(verify_request(&codes[0], "hz-1")).await.unwrap().into_inner();
    assert_eq!((retried.verdict(), &retried.verification_id), (pb::Verdict::Valid, &first.verification_id));
    assert_eq!(accepted().await, accepted_after_first, "Hangzhou asked Jiaozuo again over the connection it kept");
    // Beijing sees the code used, by Hangzhou.
    let beijing_counter = channel(&ca, &beijing.url(), Some(&[grant(BEIJING, Role::Counter)]), false);
    let reused =
        verifier(beijing_counter.clone()).verify_code(verify_request(&codes[0], "bj-1")).await.unwrap().into_inner();
    assert_eq!(reused.verdict(), pb::Verdict::AlreadyUsed);
    assert_eq!(reused.previous_use.unwrap().centre, HANGZHOU.to_string());
    // The member's usage record at home shows both, once each.
    let usage = pb::usage_record_service_client::UsageRecordServiceClient::new(jiaozuo_core.clone())
        .list_usage(pb::ListUsageRequest { issuer_centre: JIAOZUO.to_string(), id_number: ZHANG_WEI.into() })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let seen: Vec<(String, pb::Verdict, u32)> =
        usage.iter().map(|entry| (entry.centre.clone(), entry.result(), entry.count)).collect();
    assert!(seen.contains(&(HANGZHOU.to_string(), pb::Verdict::Valid, 1)), "{seen:?}");
    assert!(seen.contains(&(BEIJING.to_string(), pb::Verdict::AlreadyUsed, 1)), "{seen:?}");
    assert_eq!(seen.len(), 2, "{seen:?}");
    // Beijing uses the deposit certificate while Jiaozuo is up (for the double use below).
    let certificate =
        verifier(beijing_counter.clone()).verify_code(verify_request(&codes[5], "bj-cert")).await.unwrap();
    assert_eq!(certificate.into_inner().verdict(), pb::Verdict::Valid);

    // Digits typed at another centre's counter: the network form names the issuer, whose node
    // resolves them; the bare 16 digits mean nothing away from home.
    let digits_request = |digits: &str| pb::VerifyCodeRequest {
        code: Some(pb::verify_code_request::Code::Digits(digits.to_owned())),
        request_id: "bj-digits".into(),
        ..Default::default()
    };
    assert!(network_digits[4].starts_with("410800 "), "{}", network_digits[4]);
    let bare = network_digits[4].trim_start_matches("410800 ");
    let unknown = verifier(beijing_counter.clone()).verify_code(digits_request(bare)).await.unwrap().into_inner();
    assert_eq!(unknown.verdict(), pb::Verdict::UnknownDigits);
    let typed =
        verifier(beijing_counter.clone()).verify_code(digits_request(&network_digits[4])).await.unwrap().into_inner();
    assert_eq!(typed.verdict(), pb::Verdict::Valid, "{typed:?}");
    assert!(typed.live.unwrap().found);

    // Every call has a known caller with the right role.
    let refused = |result: Result<tonic::Response<pb::VerifyCodeResponse>, tonic::Status>| {
        result.map(|response| response.into_inner().verdict()).unwrap_err().code()
    };
    let anonymous = channel(&ca, &hangzhou.url(), None, false);
    assert_eq!(
        refused(verifier(anonymous).verify_code(verify_request(&codes[1], "x")).await),
        tonic::Code::Unauthenticated
    );
    let stranger_ca = TestCa::new("someone else's CA");
    let stranger = Endpoint::from_shared(hangzhou.url())
        .unwrap()
        .tls_config(
            stranger_ca
                .material(&[grant(HANGZHOU, Role::Counter)], false)
                .client_config()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca.certificate())),
        )
        .unwrap()
        .connect_lazy();
    assert!(
        verifier(stranger).verify_code(verify_request(&codes[1], "x")).await.is_err(),
        "a foreign CA's client is refused"
    );
    let other_centre = channel(&ca, &hangzhou.url(), Some(&[grant(BEIJING, Role::Counter)]), false);
    assert_eq!(
        refused(verifier(other_centre).verify_code(verify_request(&codes[1], "x")).await),
        tonic::Code::PermissionDenied
    );
    let wrong_role = channel(&ca, &hangzhou.url(), Some(&[grant(HANGZHOU, Role::Core)]), false);
    assert_eq!(
        refused(verifier(wrong_role.clone()).verify_code(verify_request(&codes[1], "x")).await),
        tonic::Code::PermissionDenied
    );
    let publish_for_another = pb::registry_service_client::RegistryServiceClient::new(channel(
        &ca,
        &jiaozuo.url(),
        Some(&[grant(HANGZHOU, Role::Core)]),
        false,
    ))
    .publish_statuses(pb::PublishStatusesRequest { centre: JIAOZUO.to_string(), records: Vec::new() })
    .await;
    assert_eq!(publish_for_another.unwrap_err().code(), tonic::Code::PermissionDenied);
    // Nor may it issue, revoke or read the usage record for Jiaozuo's members.
    let hangzhou_core_at_jiaozuo = channel(&ca, &jiaozuo.url(), Some(&[grant(HANGZHOU, Role::Core)]), false);
    let issue_for_another = pb::issuer_service_client::IssuerServiceClient::new(hangzhou_core_at_jiaozuo.clone())
        .issue_code(pb::IssueCodeRequest {
            issuer_centre: JIAOZUO.to_string(),
            id_number: ZHANG_WEI.into(),
            purpose: pb::Purpose::OffsiteLoan.into(),
            ..Default::default()
        })
        .await;
    assert_eq!(issue_for_another.unwrap_err().code(), tonic::Code::PermissionDenied);
    let revoke_for_another = pb::issuer_service_client::IssuerServiceClient::new(hangzhou_core_at_jiaozuo.clone())
        .revoke_code(pb::RevokeCodeRequest {
            issuer_centre: JIAOZUO.to_string(),
            id_number: ZHANG_WEI.into(),
            code_id: "00".repeat(12),
        })
        .await;
    assert_eq!(revoke_for_another.unwrap_err().code(), tonic::Code::PermissionDenied);
    let usage_of_another = pb::usage_record_service_client::UsageRecordServiceClient::new(hangzhou_core_at_jiaozuo)
        .list_usage(pb::ListUsageRequest { issuer_centre: JIAOZUO.to_string(), id_number: ZHANG_WEI.into() })
        .await;
    assert_eq!(usage_of_another.unwrap_err().code(), tonic::Code::PermissionDenied);
    // Reloading a node's trust list is for its operators (and a node following the directory has
    // no file to reload).
    let reload = |grants: Vec<Grant>| {
        let channel = channel(&ca, &hangzhou.url(), Some(&grants), false);
        async move {
            pb::trust_directory_service_client::TrustDirectoryServiceClient::new(channel)
                .reload_trust_list(pb::ReloadTrustListRequest {})
                .await
                .unwrap_err()
                .code()
        }
    };
    assert_eq!(reload(vec![grant(HANGZHOU, Role::Counter)]).await, tonic::Code::PermissionDenied);
    assert_eq!(reload(vec![grant(HANGZHOU, Role::Operator)]).await, tonic::Code::FailedPrecondition);
    // A node may consume only in the name of the centre its certificate names.
    let impostor = pb::node_service_client::NodeServiceClient::new(channel(
        &ca,
        &jiaozuo.url(),
        Some(&[grant(HANGZHOU, Role::Node)]),
        false,
    ))
    .consume_code(pb::ConsumeCodeRequest {
        text: codes[1].clone(),
        verifying_centre: BEIJING.to_string(),
        request_id: "impostor".into(),
        accepted_offline_at_unix: 0,
    })
    .await;
    assert_eq!(impostor.unwrap_err().code(), tonic::Code::PermissionDenied);

    // The issuer's node goes down: a bounded, explicit answer, and nothing consumed.
    jiaozuo.kill();
    let lookup_cached = pb::registry_service_client::RegistryServiceClient::new(hangzhou_counter.clone())
        .lookup_status(pb::LookupStatusRequest { verification_id: first.verification_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(lookup_cached.live.unwrap().found, "the lookup is answered from Hangzhou's own store");
    let started = Instant::now();
    let down =
        verifier(hangzhou_counter.clone()).verify_code(verify_request(&codes[1], "hz-2")).await.unwrap().into_inner();
    let waited = started.elapsed();
    assert_eq!(down.verdict(), pb::Verdict::IssuerUnreachable, "{down:?}");
    assert!(down.detail.contains("NOT consumed") && down.claims.is_some(), "{down:?}");
    assert!(waited < REMOTE_TIMEOUT + Duration::from_millis(1500), "answered after {waited:?}");
    // The breaker opens: further counters are answered at once instead of waiting again.
    let _ = verifier(hangzhou_counter.clone()).verify_code(verify_request(&codes[1], "hz-2")).await.unwrap();
    let started = Instant::now();
    let fast =
        verifier(hangzhou_counter.clone()).verify_code(verify_request(&codes[1], "hz-2")).await.unwrap().into_inner();
    assert_eq!(fast.verdict(), pb::Verdict::IssuerUnreachable);
    assert!(started.elapsed() < Duration::from_millis(300), "breaker open: {:?}", started.elapsed());
    // Deferred consumption, for the purpose Hangzhou accepts the risk of: verified offline and
    // queued (loan codes above were not). Beijing had used it already: a double use to find.
    let offline = verifier(hangzhou_counter.clone()).verify_code(verify_request(&codes[5], "hz-cert")).await.unwrap();
    let offline = offline.into_inner();
    assert_eq!(offline.verdict(), pb::Verdict::VerifiedOffline, "{offline:?}");
    assert!(offline.verification_id.is_empty() && offline.claims.is_some());
    // Back up: the same request now consumes the code, without restarting anyone else.
    jiaozuo.spawn();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = verifier(hangzhou_counter.clone())
            .verify_code(verify_request(&codes[1], "hz-2"))
            .await
            .unwrap()
            .into_inner();
        if answer.verdict() == pb::Verdict::Valid {
            break;
        }
        assert_eq!(answer.verdict(), pb::Verdict::IssuerUnreachable);
        assert!(Instant::now() < deadline, "Hangzhou never reached the restarted Jiaozuo node");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The queued consumption is replayed at Jiaozuo: the double use is in the member's usage
    // record and in both centres' logs.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let usage = pb::usage_record_service_client::UsageRecordServiceClient::new(jiaozuo_core.clone())
            .list_usage(pb::ListUsageRequest { issuer_centre: JIAOZUO.to_string(), id_number: ZHANG_WEI.into() })
            .await
            .unwrap()
            .into_inner()
            .entries;
        let double_use = usage.iter().any(|entry| {
            entry.result() == pb::Verdict::DoubleUse && entry.centre == HANGZHOU.to_string() && entry.at_unix > 0
        });
        if double_use {
            break;
        }
        assert!(Instant::now() < deadline, "the deferred consumption was never replayed: {usage:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for log in [&hangzhou.log, &jiaozuo.log] {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.contains("DOUBLE USE"), "{} should report the double use", log.display());
    }

    // Rotation through the directory: codes of the previous key keep verifying.
    let jiaozuo_operator = channel(&ca, &directory.url(), Some(&[grant(JIAOZUO, Role::Operator)]), false);
    let mut changes = pb::trust_directory_service_client::TrustDirectoryServiceClient::new(jiaozuo_operator);
    let new_key = CentreKey::generate().unwrap();
    let rotation = rotation_message(centre(JIAOZUO), &new_key.verifying_key());
    let rotated = changes
        .submit_key_change(pb::SubmitKeyChangeRequest {
            centre: JIAOZUO.to_string(),
            change: Some(pb::submit_key_change_request::Change::Rotate(pb::RotateKey {
                new_public_key: new_key.verifying_key().as_bytes().to_vec(),
                current_key_id: jiaozuo_key.key_id().to_string(),
                signature: jiaozuo_key.sign(&rotation).to_bytes().to_vec(),
            })),
        })
        .await
        .unwrap()
        .into_inner();
    // A rotation signed by anyone but the current key is refused.
    let forged = changes
        .submit_key_change(pb::SubmitKeyChangeRequest {
            centre: JIAOZUO.to_string(),
            change: Some(pb::submit_key_change_request::Change::Rotate(pb::RotateKey {
                new_public_key: CentreKey::generate().unwrap().verifying_key().as_bytes().to_vec(),
                current_key_id: new_key.key_id().to_string(),
                signature: new_key.sign(&rotation).to_bytes().to_vec(),
            })),
        })
        .await;
    assert_eq!(forged.unwrap_err().code(), tonic::Code::FailedPrecondition);
    // Another centre's operator cannot touch Jiaozuo's entry, nor admit a centre; the national
    // operator can.
    let revoke_jiaozuo = || pb::SubmitKeyChangeRequest {
        centre: JIAOZUO.to_string(),
        change: Some(pb::submit_key_change_request::Change::Revoke(pb::RevokeKey {
            key_id: new_key.key_id().to_string(),
        })),
    };
    let admit = |code: u32| pb::SubmitKeyChangeRequest {
        centre: code.to_string(),
        change: Some(pb::submit_key_change_request::Change::Add(pb::AddKey {
            public_key: CentreKey::generate().unwrap().verifying_key().as_bytes().to_vec(),
            centre_name: "上海市公积金管理中心".into(),
        })),
    };
    let mut hangzhou_operator = pb::trust_directory_service_client::TrustDirectoryServiceClient::new(channel(
        &ca,
        &directory.url(),
        Some(&[grant(HANGZHOU, Role::Operator)]),
        false,
    ));
    let denied = hangzhou_operator.submit_key_change(revoke_jiaozuo()).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        hangzhou_operator.submit_key_change(admit(310000)).await.unwrap_err().code(),
        tonic::Code::PermissionDenied
    );
    let mut national = pb::trust_directory_service_client::TrustDirectoryServiceClient::new(channel(
        &ca,
        &directory.url(),
        Some(&[]),
        true,
    ));
    assert!(national.submit_key_change(admit(310000)).await.unwrap().into_inner().sequence > rotated.sequence);
    // A node is not the directory.
    let not_directory = pb::trust_directory_service_client::TrustDirectoryServiceClient::new(jiaozuo_core.clone())
        .get_signed_trust_list(pb::GetSignedTrustListRequest { known_sequence: 0 })
        .await;
    assert_eq!(not_directory.unwrap_err().code(), tonic::Code::FailedPrecondition);
    let deadline = Instant::now() + REFRESH * 5;
    while signed_sequence(hangzhou_counter.clone()).await.0 <= rotated.sequence {
        assert!(Instant::now() < deadline, "the rotation did not reach Hangzhou");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let old_key_code =
        verifier(hangzhou_counter.clone()).verify_code(verify_request(&codes[2], "hz-3")).await.unwrap().into_inner();
    assert_eq!(old_key_code.verdict(), pb::Verdict::Valid, "{old_key_code:?}");

    // A node address that leads to another centre's node (a wrong or hijacked entry): Hangzhou
    // refuses to take Beijing's node for Jiaozuo's, whatever its certificate's CA and host.
    let set_node = |port: u16| pb::SubmitKeyChangeRequest {
        centre: JIAOZUO.to_string(),
        change: Some(pb::submit_key_change_request::Change::SetNode(pb::SetNode {
            address: format!("https://127.0.0.1:{port}"),
        })),
    };
    let redirected = national.submit_key_change(set_node(beijing_port)).await.unwrap().into_inner().sequence;
    while signed_sequence(hangzhou_counter.clone()).await.0 < redirected {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let misled = verifier(hangzhou_counter.clone()).verify_code(verify_request(&codes[3], "hz-4")).await.unwrap();
    assert_eq!(misled.into_inner().verdict(), pb::Verdict::IssuerUnreachable);
    log_says(&hangzhou.log, &["does not grant the node role of centre 410800"]).await;
    let restored = national.submit_key_change(set_node(jiaozuo_port)).await.unwrap().into_inner().sequence;
    while signed_sequence(hangzhou_counter.clone()).await.0 < restored {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Revocation: refused by every node within one refresh interval (plus one fetch).
    // (Submitted with the CLI, as Jiaozuo's operators would.)
    let operator = ca.issue(&[grant(JIAOZUO, Role::Operator)], false);
    std::fs::write(path("operator.crt"), &operator.certificate).unwrap();
    write_secret(&path("operator.key"), &operator.private_key);
    let client = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_liangma"))
            .args(["client", "--server", &directory.url(), "--ca"])
            .arg(path("ca.pem"))
            .arg("--cert")
            .arg(path("operator.crt"))
            .arg("--key")
            .arg(path("operator.key"))
            .args(args)
            .output()
            .unwrap()
    };
    // An offline verifier exports the signed list and checks a code against it first.
    let exported = client(&["export-trust-list"]);
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));
    std::fs::write(path("exported.json"), &exported.stdout).unwrap();
    let offline = Command::new(env!("CARGO_BIN_EXE_liangma"))
        .args(["verify", "--trust"])
        .arg(path("exported.json"))
        .args(["--directory-public-key", &directory_hex, "--centre", "330100", &codes[3]])
        .output()
        .unwrap();
    assert_eq!(offline.status.code(), Some(0), "{}", String::from_utf8_lossy(&offline.stderr));
    let output = client(&["key-change", "revoke", "--centre", "410800", "--key-id", &jiaozuo_key.key_id().to_string()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8(output.stdout).unwrap();
    let revoked_sequence: u64 = printed.trim().strip_prefix("signed into sequence ").unwrap().parse().unwrap();
    let started = Instant::now();
    for counter in [hangzhou_counter.clone(), beijing_counter.clone()] {
        while signed_sequence(counter.clone()).await.0 < revoked_sequence {
            assert!(started.elapsed() < REFRESH * 10, "the revocation did not propagate");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let propagation = started.elapsed();
    assert!(propagation <= REFRESH + Duration::from_millis(1000), "revocation took {propagation:?}");
    let refused_now =
        verifier(beijing_counter.clone()).verify_code(verify_request(&codes[3], "bj-2")).await.unwrap().into_inner();
    assert_eq!(refused_now.verdict(), pb::Verdict::KeyRevoked);
    println!("revocation propagated to every node in {propagation:?}");
    drop(directory);
}

/// A directory that serves whatever list the test puts in (tampered, foreign, old, expiring).
#[derive(Clone, Default)]
struct ScriptedDirectory {
    served: std::sync::Arc<std::sync::Mutex<(u64, String)>>,
}

impl ScriptedDirectory {
    fn serve(&self, sequence: u64, text: String) {
        *self.served.lock().unwrap() = (sequence, text);
    }
}

#[tonic::async_trait]
impl pb::trust_directory_service_server::TrustDirectoryService for ScriptedDirectory {
    async fn get_trust_list(
        &self,
        _: tonic::Request<pb::GetTrustListRequest>,
    ) -> Result<tonic::Response<pb::GetTrustListResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("scripted"))
    }

    async fn reload_trust_list(
        &self,
        _: tonic::Request<pb::ReloadTrustListRequest>,
    ) -> Result<tonic::Response<pb::ReloadTrustListResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("scripted"))
    }

    async fn get_signed_trust_list(
        &self,
        request: tonic::Request<pb::GetSignedTrustListRequest>,
    ) -> Result<tonic::Response<pb::GetSignedTrustListResponse>, tonic::Status> {
        let (sequence, text) = self.served.lock().unwrap().clone();
        let unchanged = request.into_inner().known_sequence == sequence;
        Ok(tonic::Response::new(pb::GetSignedTrustListResponse {
            sequence,
            unchanged,
            signed_list: if unchanged { String::new() } else { text },
        }))
    }

    async fn submit_key_change(
        &self,
        _: tonic::Request<pb::SubmitKeyChangeRequest>,
    ) -> Result<tonic::Response<pb::SubmitKeyChangeResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("scripted"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_tampered_foreign_and_rolled_back_lists_and_fails_closed_when_its_list_expires() {
    use liangma::trust::directory::{Issue, sign};
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let ca = TestCa::new("liangma test national CA");
    std::fs::write(path("ca.pem"), ca.certificate()).unwrap();
    let directory_key = CentreKey::generate().unwrap();
    let list = liangma::testkit::trust_list();
    let now = || {
        liangma::clock::Timestamp::from_unix(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64,
        )
    };
    let signed = |sequence: u64, key: &CentreKey, next_update: i64, expires: i64| {
        let issued_at = now();
        let issue = Issue {
            sequence,
            issued_at,
            next_update: issued_at.plus(next_update),
            expires_at: issued_at.plus(expires),
        };
        sign(&list, &issue, key).unwrap()
    };

    let scripted = ScriptedDirectory::default();
    scripted.serve(5, signed(5, &directory_key, 3600, 7200));
    let directory_port = free_port();
    let directory_tls = ca.material(&[], false).server_config(Duration::from_secs(5));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .tls_config(directory_tls)
            .unwrap()
            .add_service(pb::trust_directory_service_server::TrustDirectoryServiceServer::new(scripted.clone()))
            .serve_with_shutdown(([127, 0, 0, 1], directory_port).into(), async {
                let _ = stopped.await;
            }),
    );

    let issued = ca.issue(&[grant(HANGZHOU, Role::Node)], false);
    std::fs::write(path("node.crt"), &issued.certificate).unwrap();
    write_secret(&path("node.key"), &issued.private_key);
    let port = free_port();
    let node = Process::start(
        dir.path(),
        "hangzhou",
        port,
        &format!(
            "listen = \"127.0.0.1:{port}\"\ncentre = \"{HANGZHOU}\"\ndata_dir = \"{0}/data\"\n\
             [store]\ncheck_interval_ms = 100\n\
             [tls]\ncertificate = \"{0}/node.crt\"\nprivate_key = \"{0}/node.key\"\nca = \"{0}/ca.pem\"\n\
             [federation]\ndirectory_url = \"https://127.0.0.1:{directory_port}\"\n\
             directory_public_key = \"{1}\"\nrefresh_interval_secs = 1\n",
            dir.path().display(),
            hex::encode(directory_key.verifying_key().as_bytes()),
        ),
    );
    let counter = channel(&ca, &node.url(), Some(&[grant(HANGZHOU, Role::Counter)]), false);
    assert_eq!(signed_sequence(counter.clone()).await.0, 5);

    // Tampered, signed by another directory, rolled back: each refused, sequence 5 stays.
    let tampered = signed(6, &directory_key, 3600, 7200).replace("焦作", "假的");
    let foreign = signed(7, &CentreKey::generate().unwrap(), 3600, 7200);
    let rolled_back = signed(4, &directory_key, 3600, 7200);
    for (sequence, text) in [(6, tampered), (7, foreign), (4, rolled_back)] {
        scripted.serve(sequence, text);
        tokio::time::sleep(REFRESH * 2 + Duration::from_millis(200)).await;
        assert_eq!(signed_sequence(counter.clone()).await.0, 5, "list {sequence} must be refused");
    }

    // A list that is stale at once and expires in 3 s: used while stale, then fails closed.
    scripted.serve(8, signed(8, &directory_key, 0, 3));
    let deadline = Instant::now() + REFRESH * 5;
    loop {
        let answer = pb::trust_directory_service_client::TrustDirectoryServiceClient::new(counter.clone())
            .get_trust_list(pb::GetTrustListRequest {})
            .await
            .unwrap()
            .into_inner();
        if answer.sequence == 8 {
            assert_eq!(answer.freshness(), pb::Freshness::Stale);
            break;
        }
        assert!(Instant::now() < deadline, "list 8 never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let probe = || async {
        verifier(counter.clone()).verify_code(verify_request("LM1:NOT-A-CODE", "probe")).await.map(|r| r.into_inner())
    };
    assert_eq!(probe().await.unwrap().verdict(), pb::Verdict::Malformed, "a stale list still verifies");
    let deadline = Instant::now() + Duration::from_secs(10);
    let refusal = loop {
        match probe().await {
            Err(status) => break status,
            Ok(_) => assert!(Instant::now() < deadline, "the expired list was still used"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(refusal.code(), tonic::Code::Unavailable);
    assert!(refusal.message().contains("expired"), "{}", refusal.message());
    let health = || async {
        tonic_health::pb::health_client::HealthClient::new(counter.clone())
            .check(tonic_health::pb::HealthCheckRequest { service: "liangma.v1.VerifierService".into() })
            .await
            .unwrap()
            .into_inner()
            .status()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while health().await != tonic_health::pb::health_check_response::ServingStatus::NotServing {
        assert!(Instant::now() < deadline, "health never reported the expired list");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A fresh list brings verification back without a restart.
    scripted.serve(9, signed(9, &directory_key, 3600, 7200));
    let deadline = Instant::now() + REFRESH * 5;
    while probe().await.is_err() {
        assert!(Instant::now() < deadline, "verification did not come back with a fresh list");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    log_says(&node.log, &["does not verify with the pinned directory key", "a rolled-back list", "EXPIRED"]).await;
    drop(node);
    let _ = stop.send(());
    let _ = server.await;
}

/// Waits until the node's log holds every one of `expected`: its writer thread writes lines a
/// little after the calls that log them answer (docs/operations.md, Logs).
async fn log_says(log: &std::path::Path, expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(log).unwrap();
        let missing: Vec<&str> = expected.iter().copied().filter(|line| !text.contains(line)).collect();
        if missing.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "the log should say {missing:?}:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
