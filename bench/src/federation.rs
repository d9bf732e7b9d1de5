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
use crate::processes::Process;
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
        let node = |name: &str, centre: u32, port: u16, redis: &str, issuer: bool| -> anyhow::Result<String> {
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
                "listen = \"127.0.0.1:{port}\"\ncentre = \"{centre}\"\ndata_dir = \"{0}/{name}-data\"\n\
                 sample_members = false\nlog_format = \"json\"\n{issuers}{tls}[store]\nbackend = \"redis\"\n\
                 redis_url = \"{redis}\"\nkey_prefix = \"{name}\"\n[federation]\n\
                 directory_url = \"https://127.0.0.1:{directory_port}\"\ndirectory_public_key = \"{key}\"\n",
                path.display(),
                tls = tls_section(&ca, path, name, &[grant(centre, Role::Node)])?,
                key = hex::encode(directory_key.verifying_key().as_bytes()),
            ))
        };
        let _jiaozuo = start(
            &binary,
            path,
            "jiaozuo",
            jiaozuo_port,
            &node("jiaozuo", 410800, jiaozuo_port, &self.redis.url(), true)?,
        )?;
        let _shenzhen = start(
            &binary,
            path,
            "shenzhen",
            shenzhen_port,
            &node("shenzhen", 440300, shenzhen_port, &other_redis.url(), false)?,
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

        let measure = |channels: &[Channel], pace: Pace, total: usize| -> anyhow::Result<Measured> {
            let codes = self.codes.make_for(total, None)?;
            self.runtime.block_on(own_load(channels, pace, total, verify_with(codes, true)))
        };
        let local_one = measure(&at_issuer, Pace::InFlight(1), SEQUENTIAL)?;
        let remote_one = measure(&elsewhere, Pace::InFlight(1), SEQUENTIAL)?;
        let in_flight = Pace::InFlight(options.in_flight());
        let local = measure(&at_issuer, in_flight, requests)?;
        let remote = measure(&elsewhere, in_flight, requests)?;
        let one_at_a_time = "own, 1 in flight".to_owned();
        self.rows.push(Row::new(
            "federation: VerifyCode at the issuer's node (mTLS)",
            one_at_a_time.clone(),
            local_one,
        ));
        self.rows.push(
            Row::new(
                "federation: VerifyCode at another centre's node, consumed at the issuer",
                one_at_a_time,
                remote_one,
            )
            .against(&local_one),
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
