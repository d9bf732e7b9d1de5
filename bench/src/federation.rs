//! The federation scenario: a trust directory and two centre nodes (Jiaozuo issues, Shenzhen verifies), each node with its own Redis, all over mutual TLS; VerifyCode at the issuer's node against VerifyCode at the other centre's node, which consumes at the issuer.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use liangma::code::CentreCode;
use liangma::federation::identity::{Grant, Role};
use liangma::testkit::RedisServer;
use liangma::testkit::pki::TestCa;
use liangma::trust::{CentreKey, TrustList};
use tonic::transport::{Channel, Endpoint};

use crate::load::{Measured, Pace, own_load};
use crate::members::{BENCH_MEMBERS, publish};
use crate::processes::{Process, process_cpu, redis_cpu};
use crate::report::Row;
use crate::scenarios::{Bench, verify_with};

/// Requests of the one-at-a-time runs: latency without queueing.
const SEQUENTIAL: usize = 500;

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn grant(centre: u32, role: Role) -> Grant {
    Grant { centre: CentreCode::new(centre).expect("valid"), role }
}

/// The sum of a counter's series whose line starts with `series` (name and any labels), from
/// a node's `/metrics`.
fn counter(metrics_port: u16, series: &str) -> anyhow::Result<f64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", metrics_port))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body
        .lines()
        .filter(|line| line.starts_with(series))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Verifies `code` at `channel` and evaluates an off-site loan for its member by the
/// verification id, as a counter does next; the evaluation is timed.
async fn verify_then_evaluate(channel: Channel, code: String) -> anyhow::Result<Duration> {
    use liangma::pb::v1 as pb;
    let mut verifier = pb::verifier_service_client::VerifierServiceClient::new(channel.clone());
    let request = pb::VerifyCodeRequest { code: Some(pb::verify_code_request::Code::Text(code)), ..Default::default() };
    let verified = verifier.verify_code(request).await?.into_inner();
    ensure!(verified.verdict == i32::from(pb::Verdict::Valid), "verdict {}", verified.verdict);
    let mut loans = pb::loan_service_client::LoanServiceClient::new(channel);
    let request = pb::EvaluateOffsiteLoanRequest {
        borrower: Some(pb::PartyCode { code: Some(pb::party_code::Code::VerificationId(verified.verification_id)) }),
        house_price_fen: 100_000_000,
        house_kind: pb::HouseKind::New.into(),
        ..Default::default()
    };
    let started = Instant::now();
    loans.evaluate_offsite_loan(request).await?;
    Ok(started.elapsed())
}

/// Starts `liangma serve` with `config` and waits until it listens on `port`.
fn start(binary: &Path, dir: &Path, name: &str, port: u16, config: &str) -> anyhow::Result<Process> {
    let config_path = dir.join(format!("{name}.toml"));
    std::fs::write(&config_path, config)?;
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    let child = Command::new(binary)
        .arg("serve")
        .env_clear()
        .env("LIANGMA_CONFIG", &config_path)
        .env("LIANGMA_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let process = Process(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        ensure!(Instant::now() < deadline, "{name} did not start: see {}", dir.join(format!("{name}.log")).display());
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(process)
}

/// A TLS client certificate's files, for a configuration's [tls].
fn tls_section(ca: &TestCa, dir: &Path, name: &str, grants: &[Grant]) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let issued = ca.issue(grants, false);
    std::fs::write(dir.join(format!("{name}.crt")), &issued.certificate)?;
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&key, &issued.private_key)?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    Ok(format!(
        "[tls]\ncertificate = \"{0}/{name}.crt\"\nprivate_key = \"{0}/{name}.key\"\nca = \"{0}/ca.pem\"\n",
        dir.display()
    ))
}

async fn channels(ca: &TestCa, port: u16, grants: &[Grant], count: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        let tls = ca.material(grants, false).client_config();
        channels.push(Endpoint::from_shared(format!("https://127.0.0.1:{port}"))?.tls_config(tls)?.connect().await?);
    }
    Ok(channels)
}

impl Bench {
    pub(crate) fn federation(&mut self) -> anyhow::Result<()> {
        let (options, requests, load) = (self.options.clone(), self.options.requests, self.saturating_load());
        let binary = self.liangma_binary.clone();
        let dir = tempfile::tempdir()?;
        let path = dir.path();
        let ca = TestCa::new("liangma bench CA");
        std::fs::write(path.join("ca.pem"), ca.certificate())?;
        let directory_key = CentreKey::generate()?;
        directory_key.write_pem_file(&path.join("directory.pem"))?;
        let (directory_port, jiaozuo_port, shenzhen_port) = (free_port()?, free_port()?, free_port()?);
        let (jiaozuo_metrics, shenzhen_metrics) = (free_port()?, free_port()?);
        // The dev setup's list (Jiaozuo's dev key signs the bench codes), with the nodes.
        let mut list = TrustList::load(&self.data_dir.join("trust.json"))?;
        list.set_node(CentreCode::new(410800).expect("valid"), &format!("https://127.0.0.1:{jiaozuo_port}"))?;
        list.set_node(CentreCode::new(440300).expect("valid"), &format!("https://127.0.0.1:{shenzhen_port}"))?;
        list.save(&path.join("initial.json"))?;
        let _directory = start(
            &binary,
            path,
            "directory",
            directory_port,
            &format!(
                "listen = \"127.0.0.1:{directory_port}\"\ndata_dir = \"{0}/directory-data\"\n{1}[directory]\n\
                 signing_key = \"{0}/directory.pem\"\nstate = \"{0}/directory-state.json\"\n\
                 initial_trust_list = \"{0}/initial.json\"\n",
                path.display(),
                tls_section(&ca, path, "directory", &[])?,
            ),
        )?;
        let other_redis = RedisServer::start();
        let node = |name: &str,
                    centre: u32,
                    port: u16,
                    metrics: u16,
                    redis: &str,
                    issuer: bool|
         -> anyhow::Result<String> {
            let issuers = if issuer {
                format!(
                    "[[issuers]]\ncentre = \"410800\"\nsigning_key = \"{0}/dev-410800.pem\"\n\
                     subject_secret = \"{0}/dev-410800-subject.key\"\n",
                    self.data_dir.display()
                )
            } else {
                String::new()
            };
            Ok(format!(
                "listen = \"127.0.0.1:{port}\"\nmetrics_listen = \"127.0.0.1:{metrics}\"\ncentre = \"{centre}\"\ndata_dir = \"{0}/{name}-data\"\n\
                 sample_members = false\nlog_format = \"json\"\n{issuers}{tls}[store]\nbackend = \"redis\"\n\
                 redis_url = \"{redis}\"\nkey_prefix = \"{name}\"\n[federation]\n\
                 directory_url = \"https://127.0.0.1:{directory_port}\"\ndirectory_public_key = \"{key}\"\n",
                path.display(),
                tls = tls_section(&ca, path, name, &[grant(centre, Role::Node)])?,
                key = hex::encode(directory_key.verifying_key().as_bytes()),
            ))
        };
        let jiaozuo = start(
            &binary,
            path,
            "jiaozuo",
            jiaozuo_port,
            &node("jiaozuo", 410800, jiaozuo_port, jiaozuo_metrics, &self.redis.url(), true)?,
        )?;
        let shenzhen = start(
            &binary,
            path,
            "shenzhen",
            shenzhen_port,
            &node("shenzhen", 440300, shenzhen_port, shenzhen_metrics, &other_redis.url(), false)?,
        )?;
        let core = self.runtime.block_on(channels(&ca, jiaozuo_port, &[grant(410800, Role::Core)], 1))?;
        self.runtime.block_on(publish(core[0].clone(), 0, BENCH_MEMBERS))?;
        let at_issuer =
            self.runtime.block_on(channels(&ca, jiaozuo_port, &[grant(410800, Role::Counter)], options.connections))?;
        let elsewhere = self.runtime.block_on(channels(
            &ca,
            shenzhen_port,
            &[grant(440300, Role::Counter)],
            options.connections,
        ))?;

        // CPU per verification of both nodes and both Redis servers: a remote verification is
        // work at each.
        let (jiaozuo_pid, shenzhen_pid) = (jiaozuo.0.id(), shenzhen.0.id());
        let (jiaozuo_redis, shenzhen_redis) = (self.redis.socket(), other_redis.socket());
        let cpu = || -> anyhow::Result<[Duration; 2]> {
            Ok([
                process_cpu(jiaozuo_pid)? + process_cpu(shenzhen_pid)?,
                redis_cpu(&jiaozuo_redis)? + redis_cpu(&shenzhen_redis)?,
            ])
        };
        let measure = |channels: &[Channel], pace: Pace, total: usize| -> anyhow::Result<Measured> {
            let codes = self.codes.make_for(total, None)?;
            let before = cpu()?;
            let mut measured = self.runtime.block_on(own_load(channels, pace, total, verify_with(codes, true)))?;
            let after = cpu()?;
            measured.cpu = Some([(after[0] - before[0]) / total as u32, (after[1] - before[1]) / total as u32]);
            Ok(measured)
        };
        let local_one = measure(&at_issuer, Pace::InFlight(1), SEQUENTIAL)?;
        // From the first remote verification on each of its lanes, Shenzhen keeps a connection
        // per lane to Jiaozuo: as many in flight as the saturation run, so that every lane calls.
        measure(&elsewhere, Pace::InFlight(options.in_flight()), options.in_flight())?;
        let accepted = || counter(jiaozuo_metrics, "liangma_connections_total{outcome=\"accepted\"}");
        let accepted_before = accepted()?;
        let remote_one = measure(&elsewhere, Pace::InFlight(1), SEQUENTIAL)?;
        let in_flight = Pace::InFlight(options.in_flight());
        let local = measure(&at_issuer, in_flight, requests)?;
        let remote = measure(&elsewhere, in_flight, requests)?;
        let handshakes = accepted()? - accepted_before;
        // The counter's next step: a loan evaluation by the verification id, answered from
        // Shenzhen's copy of Jiaozuo's answer.
        let hits = || counter(shenzhen_metrics, "liangma_remote_cache_lookups_total{result=\"hit\"}");
        let calls = || counter(shenzhen_metrics, "liangma_issuer_calls_total");
        let (hits_before, calls_before) = (hits()?, calls()?);
        let codes = self.codes.make_for(SEQUENTIAL, None)?;
        let started = Instant::now();
        let mut evaluations = Vec::with_capacity(codes.len());
        for code in codes.iter() {
            evaluations.push(self.runtime.block_on(verify_then_evaluate(elsewhere[0].clone(), code.clone()))?);
        }
        let evaluated = Measured::from_latencies(evaluations, started.elapsed());
        let (cache_hits, issuer_calls) = (hits()? - hits_before, calls()? - calls_before);
        let one_at_a_time = "own, 1 in flight".to_owned();
        self.rows.push(Row::new(
            "federation: VerifyCode at the issuer's node (mTLS)",
            one_at_a_time.clone(),
            local_one,
        ));
        let close_enough = remote_one.latency[0] <= local_one.latency[0] + Duration::from_millis(1)
            && remote_one.p99() <= local_one.p99().mul_f64(1.5);
        self.rows.push(
            Row::new(
                "federation: VerifyCode at another centre's node, consumed at the issuer",
                one_at_a_time,
                remote_one,
            )
            .against(&local_one)
            .target("p50 ≤ local + 1 ms, p99 ≤ 1.5× local", close_enough),
        );
        self.rows.push(Row::fact(
            "federation: connections the issuer's node accepted during the remote runs",
            format!("{handshakes:.0} for {} remote verifications", SEQUENTIAL + requests),
            "0: kept connections (one per lane of the verifying node), no TLS handshake per verification",
            Some(handshakes == 0.0),
        ));
        // Each verification is one issuer call; the evaluations add none.
        let from_copy = cache_hits == SEQUENTIAL as f64 && issuer_calls == SEQUENTIAL as f64;
        self.rows.push(
            Row::new(
                "federation: EvaluateOffsiteLoan by verification id at the verifying node, after its remote VerifyCode",
                "own, 1 in flight".to_owned(),
                evaluated,
            )
            .target(
                &format!(
                    "from the node's copy: {cache_hits:.0} of {SEQUENTIAL} cache hits, no issuer call ({issuer_calls:.0} calls for {SEQUENTIAL} verifications)"
                ),
                from_copy,
            ),
        );
        self.rows.push(Row::new("federation: VerifyCode at the issuer's node (mTLS)", format!("own {load}"), local));
        self.rows.push(
            Row::new(
                "federation: VerifyCode at another centre's node, consumed at the issuer",
                format!("own {load}"),
                remote,
            )
            .against(&local),
        );
        Ok(())
    }
}
