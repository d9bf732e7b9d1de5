//! One-command benchmark: liangma (Redis backend) against anchor servers measured in the same run; one table.
//!
//! Run it with `bench/run` (builds, installs h2load, then runs this). It starts a private
//! `redis-server`, `liangma serve` (dev setup, Redis store) and the anchors of `bench_anchor`, as
//! separate processes sharing the machine with the load generators. Fixed request bodies go
//! through h2load; VerifyCode (single-use codes) and paced runs through the load generator here. Every
//! answer is checked: the own generator reads each response; for h2load (which cannot read gRPC
//! trailers) the anchors count their correct answers, Redis's command statistics count the work the
//! service did, and the service must log no warning or error.
//!
//! Options: --connections N (16) --streams N (32 per connection) --requests N (60000 per run)
//!          --records N (1000000 registry records published)
//!          --only qr,verify,issue,mixed,lookup,publish (all by default; mixed runs verify too)

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use liangma::pb::v1 as pb;
use prost::Message;
use tonic::transport::Channel;

use liangma::testkit as redis_server;

/// The parts of the run, in order; `--only` picks some (mixed needs verify's saturation rate).
const SCENARIOS: [&str; 6] = ["qr", "verify", "issue", "mixed", "lookup", "publish"];

#[derive(Clone, Copy)]
struct Options {
    connections: usize,
    streams: usize,
    requests: usize,
    records: u64,
    /// Bit i set: run `SCENARIOS[i]`.
    scenarios: u8,
}

impl Options {
    fn parse() -> anyhow::Result<Self> {
        let mut options =
            Self { connections: 16, streams: 32, requests: 60_000, records: 1_000_000, scenarios: u8::MAX };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let value = args.next().with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--connections" => options.connections = value.parse()?,
                "--streams" => options.streams = value.parse()?,
                "--requests" => options.requests = value.parse()?,
                "--records" => options.records = value.parse()?,
                "--only" => {
                    options.scenarios = 0;
                    for name in value.split(',') {
                        let index = SCENARIOS.iter().position(|known| *known == name);
                        let index = index.with_context(|| format!("unknown scenario {name}; known: {SCENARIOS:?}"))?;
                        options.scenarios |= 1 << index;
                    }
                    if options.runs("mixed") {
                        options.scenarios |= 1 << 1;
                    }
                }
                _ => bail!("unknown option {flag}; see the top of examples/bench.rs"),
            }
        }
        ensure!(options.connections > 0 && options.streams > 0 && options.requests >= 1000, "options too small");
        Ok(options)
    }

    fn in_flight(&self) -> usize {
        self.connections * self.streams
    }

    fn runs(&self, scenario: &str) -> bool {
        SCENARIOS.iter().position(|known| *known == scenario).is_some_and(|index| self.scenarios & (1 << index) != 0)
    }
}

/// Throughput and latency of one load run.
#[derive(Clone, Copy)]
struct Measured {
    per_second: f64,
    /// p50, p99, p99.9.
    latency: [Duration; 3],
    /// CPU time per request of the server process and of Redis, when measured.
    cpu: Option<[Duration; 2]>,
}

impl Measured {
    fn from_latencies(mut latencies: Vec<Duration>, elapsed: Duration) -> Self {
        latencies.sort_unstable();
        let at = |quantile: f64| latencies[((latencies.len() as f64 * quantile) as usize).min(latencies.len() - 1)];
        Self {
            per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
            latency: [at(0.5), at(0.99), at(0.999)],
            cpu: None,
        }
    }

    fn p99(&self) -> Duration {
        self.latency[1]
    }
}

/// Runs `load` and adds the CPU time per request that the server (`server_pid`) and Redis spent.
fn with_cpu(
    server_pid: u32,
    redis_socket: &Path,
    requests: usize,
    load: impl FnOnce() -> anyhow::Result<Measured>,
) -> anyhow::Result<Measured> {
    let (server_before, redis_before) = (process_cpu(server_pid)?, redis_cpu(redis_socket)?);
    let mut measured = load()?;
    let (server_after, redis_after) = (process_cpu(server_pid)?, redis_cpu(redis_socket)?);
    let per_request = |used: Duration| used / requests as u32;
    measured.cpu = Some([per_request(server_after - server_before), per_request(redis_after - redis_before)]);
    Ok(measured)
}

/// CPU time (user and system) a process has used so far, from `/proc` (Linux).
fn process_cpu(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let fields: Vec<&str> = stat.rsplit_once(')').context("/proc stat")?.1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // USER_HZ is 100 on every Linux the project runs on.
    Ok(Duration::from_millis(ticks * 10))
}

/// CPU time Redis has used so far (main thread and background threads), from `INFO cpu`.
fn redis_cpu(socket: &Path) -> anyhow::Result<Duration> {
    let output = Command::new("redis-cli").arg("-s").arg(socket).args(["INFO", "cpu"]).output()?;
    let text = String::from_utf8(output.stdout)?;
    let mut seconds = 0.0;
    for field in ["used_cpu_user:", "used_cpu_sys:"] {
        let value = text.lines().find_map(|line| line.strip_prefix(field)).context("INFO cpu")?;
        seconds += value.trim().parse::<f64>()?;
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A child process killed on drop, so that a failed run leaves nothing behind.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `liangma serve` with the Redis store; its log is scanned for warnings and errors.
struct Service {
    _process: Process,
    pid: u32,
    address: SocketAddr,
    problems: Arc<AtomicU64>,
}

impl Service {
    fn start(binary: &Path, data_dir: &Path, redis_url: &str) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .arg("serve")
            .env_remove("LIANGMA_CONFIG")
            .env("LIANGMA_LISTEN", "127.0.0.1:0")
            .env("LIANGMA_DATA_DIR", data_dir)
            .env("LIANGMA_STORE", "redis")
            .env("LIANGMA_REDIS_URL", redis_url)
            .env("LIANGMA_LOG_FORMAT", "json")
            .env("LIANGMA_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
        let pid = child.id();
        let process = Process(child);
        let address = loop {
            let line = lines.next().context("liangma serve exited before serving")??;
            if let Some(rest) = line.split_once(r#""address":""#).map(|(_, rest)| rest) {
                break rest.split('"').next().unwrap_or_default().parse()?;
            }
        };
        let problems = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&problems);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains(r#""level":"WARN""#) || line.contains(r#""level":"ERROR""#) {
                    eprintln!("liangma: {line}");
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(Self { _process: process, pid, address, problems })
    }

    fn problems(&self) -> u64 {
        self.problems.load(Ordering::Relaxed)
    }
}

/// One `bench_anchor` process.
struct Anchor {
    process: Process,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    address: SocketAddr,
}

impl Anchor {
    fn start(binary: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let process = Process(child);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let address = line.trim().strip_prefix("listening ").context("anchor did not start")?.parse()?;
        Ok(Self { process, stdin, stdout, address })
    }

    fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// Stops the anchor; returns how many correct answers and errors it gave.
    fn finish(mut self) -> anyhow::Result<(u64, u64)> {
        drop(self.stdin.take());
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let _ = self.process.0.wait();
        let counts: Vec<u64> = line
            .trim()
            .strip_prefix("served ")
            .context("anchor answer")?
            .split(' ')
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        Ok((counts[0], counts[1]))
    }
}

/// A gRPC request body as sent on the wire: uncompressed flag, length, message.
fn grpc_frame(message: &impl Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Runs h2load with one fixed request, keeping connections × streams in flight.
fn h2load(
    address: SocketAddr,
    path: &str,
    request: &impl Message,
    options: &Options,
    requests: usize,
) -> anyhow::Result<Measured> {
    let dir = tempfile::tempdir()?;
    let body = dir.path().join("body");
    let log = dir.path().join("log");
    std::fs::write(&body, grpc_frame(request))?;
    let mut command = Command::new("h2load");
    command
        .args(["-n", &requests.to_string(), "-c", &options.connections.to_string()])
        .args(["-m", &options.streams.to_string()])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .arg("-d")
        .arg(&body)
        .arg(format!("--log-file={}", log.display()));
    let output = command.arg(format!("http://{address}{path}")).output().context("running h2load")?;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(output.status.success(), "h2load failed: {text}{}", String::from_utf8_lossy(&output.stderr));
    let succeeded = text
        .lines()
        .find_map(|line| line.strip_prefix("requests: "))
        .and_then(|line| line.split(", ").find_map(|part| part.strip_suffix(" succeeded")))
        .context("h2load summary")?;
    ensure!(succeeded == requests.to_string(), "h2load: {succeeded} of {requests} requests succeeded:\n{text}");
    let mut latencies = Vec::with_capacity(requests);
    let (mut first_start, mut last_end) = (u64::MAX, 0u64);
    for line in std::fs::read_to_string(&log)?.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        ensure!(fields.len() >= 3 && fields[1] == "200", "h2load log: {line}");
        let (start, micros): (u64, u64) = (fields[0].parse()?, fields[2].parse()?);
        first_start = first_start.min(start);
        last_end = last_end.max(start + micros);
        latencies.push(Duration::from_micros(micros));
    }
    ensure!(latencies.len() == requests, "h2load logged {} of {requests} requests", latencies.len());
    Ok(Measured::from_latencies(latencies, Duration::from_micros(last_end - first_start)))
}

async fn connect(address: SocketAddr, connections: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(tonic::transport::Endpoint::from_shared(format!("http://{address}"))?.connect().await?);
    }
    Ok(channels)
}

/// How the own load generator paces requests.
#[derive(Clone, Copy)]
enum Pace {
    /// Keep this many requests in flight.
    InFlight(usize),
    /// Start requests at this rate, whatever the answers' latency (open loop).
    PerSecond(f64),
}

/// Sends `total` calls of `call(channel, index)` and measures each; every call checks its answer.
async fn own_load<F, Fut>(channels: &[Channel], pace: Pace, total: usize, call: F) -> anyhow::Result<Measured>
where
    F: Fn(Channel, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(total);
    match pace {
        Pace::InFlight(in_flight) => {
            let next = Arc::new(AtomicUsize::new(0));
            let workers: Vec<_> = (0..in_flight)
                .map(|worker| {
                    let (channel, next, call) =
                        (channels[worker % channels.len()].clone(), Arc::clone(&next), call.clone());
                    tokio::spawn(async move {
                        let mut latencies = Vec::new();
                        loop {
                            let index = next.fetch_add(1, Ordering::Relaxed);
                            if index >= total {
                                return Ok::<_, anyhow::Error>(latencies);
                            }
                            let sent = Instant::now();
                            call(channel.clone(), index).await?;
                            latencies.push(sent.elapsed());
                        }
                    })
                })
                .collect();
            for worker in workers {
                latencies.extend(worker.await??);
            }
        }
        Pace::PerSecond(rate) => {
            // A thread of its own starts the requests that are due every 50 µs or so: tokio's
            // timer ticks in milliseconds, and bursts of a millisecond's requests would measure
            // the generator's queueing, not the server's. Latency counts from that start.
            let runtime = tokio::runtime::Handle::current();
            let channels = channels.to_vec();
            let dispatcher = tokio::task::spawn_blocking(move || {
                let mut calls = Vec::with_capacity(total);
                while calls.len() < total {
                    let due = ((started.elapsed().as_secs_f64() * rate) as usize + 1).min(total);
                    for index in calls.len()..due {
                        let (channel, call) = (channels[index % channels.len()].clone(), call.clone());
                        let sent = Instant::now();
                        calls.push(runtime.spawn(async move { call(channel, index).await.map(|()| sent.elapsed()) }));
                    }
                    std::thread::sleep(Duration::from_micros(50));
                }
                calls
            });
            for call in dispatcher.await? {
                latencies.push(call.await??);
            }
        }
    }
    Ok(Measured::from_latencies(latencies, started.elapsed()))
}

/// A VerifyCode call; liangma must also return the live status (the anchors return the verdict only).
async fn verify_call(channel: Channel, code: String, expect_live: bool) -> anyhow::Result<()> {
    let request = pb::VerifyCodeRequest {
        code: Some(pb::verify_code_request::Code::Text(code)),
        purpose: 0,
        request_id: String::new(),
    };
    let response =
        pb::verifier_service_client::VerifierServiceClient::new(channel).verify_code(request).await?.into_inner();
    ensure!(response.verdict == i32::from(pb::Verdict::Valid), "verdict {}", response.verdict);
    ensure!(!expect_live || response.live.is_some(), "no live status");
    Ok(())
}

/// Members the verification runs spread over, published before the first run: a counter sees
/// many members, so each verification touches its own member's keys.
const BENCH_MEMBERS: u64 = 10_000;

/// A fake but valid resident ID number for registry member `n` (below 10^9).
fn id_number(n: u64) -> String {
    let body = format!("41080219{n:09}");
    let check = body.as_bytes().first_chunk::<17>().and_then(liangma::model::IdNumber::check_character);
    format!("{body}{}", char::from(check.expect("17 digits")))
}

/// The registry status of member `n`, as published.
fn member_status(n: u64) -> pb::MemberStatus {
    pb::MemberStatus {
        id_number: id_number(n),
        name: "张三".into(),
        status: Some(pb::DepositStatus {
            account_status: pb::AccountStatus::Normal.into(),
            balance_fen: 1_000_000 + n,
            monthly_deposit_fen: 150_000,
            continuous_months: 30,
            loan_state: pb::LoanState::None.into(),
            loans_used: 0,
            registry_version: 1_795_000_000_000 + n,
        }),
    }
}

/// Distinct codes of the bench members, signed with the dev key of Jiaozuo that the service uses.
struct Codes {
    issuer: liangma::issue::Issuer,
    trust: liangma::trust::TrustList,
    public_key_hex: String,
    next_member: AtomicU64,
}

impl Codes {
    fn new(data_dir: &Path) -> anyhow::Result<Self> {
        let trust = liangma::trust::TrustList::load(&data_dir.join("trust.json"))?;
        let key = liangma::trust::CentreKey::read_pem_file(&data_dir.join("dev-410800.pem"))?;
        let public_key_hex = hex::encode(key.verifying_key().as_bytes());
        let subject_secret = liangma::trust::SubjectSecret::read_file(&data_dir.join("dev-410800-subject.key"))?;
        let issuer = liangma::issue::Issuer::new(key, subject_secret, &trust)?;
        Ok(Self { issuer, trust, public_key_hex, next_member: AtomicU64::new(0) })
    }

    /// `count` codes, each claiming exactly what the registry holds for its member.
    fn make(&self, count: usize) -> anyhow::Result<Arc<Vec<String>>> {
        use liangma::clock::Clock;
        let request = liangma::issue::IssueRequest {
            purpose: liangma::code::Purpose::OffsiteLoan,
            audience: Some("440300".parse()?),
            lifetime_seconds: 86_400,
        };
        let now = liangma::clock::SystemClock.now();
        let mut codes = Vec::with_capacity(count);
        for _ in 0..count {
            let member = member_status(self.next_member.fetch_add(1, Ordering::Relaxed) % BENCH_MEMBERS);
            let status = member.status.expect("set");
            let record: liangma::issue::DepositRecord = serde_json::from_str(&format!(
                r#"{{"id_number":"{}","account_status":"normal","balance_fen":{},"monthly_deposit_fen":{},
                    "continuous_months":{},"loan_state":"none","registry_version":{}}}"#,
                member.id_number,
                status.balance_fen,
                status.monthly_deposit_fen,
                status.continuous_months,
                status.registry_version
            ))?;
            codes.push(self.issuer.issue(&self.trust, &record, &request, now)?.text);
        }
        Ok(Arc::new(codes))
    }
}

/// Publishes members `first..first + records` in batches of 1,000, 8 batches in flight; returns
/// records per second.
async fn publish(channel: Channel, first: u64, records: u64) -> anyhow::Result<f64> {
    const BATCH: u64 = 1_000;
    let semaphore = Arc::new(tokio::sync::Semaphore::new(8));
    let started = Instant::now();
    let mut calls = Vec::new();
    let end = first + records;
    for batch_start in (first..end).step_by(BATCH as usize) {
        let permit = Arc::clone(&semaphore).acquire_owned().await?;
        let mut client = pb::registry_service_client::RegistryServiceClient::new(channel.clone());
        let batch_end = (batch_start + BATCH).min(end);
        calls.push(tokio::spawn(async move {
            let records = (batch_start..batch_end).map(member_status).collect();
            let request = pb::PublishStatusesRequest { centre: "410800".into(), records };
            let applied = client.publish_statuses(request).await.map(|r| u64::from(r.into_inner().applied));
            drop(permit);
            applied
        }));
    }
    let mut applied = 0;
    for call in calls {
        applied += call.await??;
    }
    ensure!(applied == records, "only {applied} of {records} records applied");
    Ok(records as f64 / started.elapsed().as_secs_f64())
}

/// One line of the result table.
struct Row {
    what: String,
    load: String,
    measured: Option<Measured>,
    /// (throughput ratio, p99 ratio) against the row's anchor.
    against: Option<(f64, f64)>,
    target: String,
    met: Option<bool>,
}

impl Row {
    fn new(what: &str, load: String, measured: Measured) -> Self {
        Self { what: what.into(), load, measured: Some(measured), against: None, target: String::new(), met: None }
    }

    fn against(mut self, anchor: &Measured) -> Self {
        let measured = self.measured.expect("a measured row");
        self.against =
            Some((measured.per_second / anchor.per_second, measured.p99().as_secs_f64() / anchor.p99().as_secs_f64()));
        self
    }

    fn target(mut self, target: &str, met: bool) -> Self {
        self.target = target.into();
        self.met = Some(met);
        self
    }

    fn fact(what: &str, value: String, target: &str, met: Option<bool>) -> Self {
        Self { what: what.into(), load: value, measured: None, against: None, target: target.into(), met }
    }

    fn print(&self) {
        let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
        let (rate, p50, p99, p999) = match &self.measured {
            Some(m) => (format!("{:.0}", m.per_second), ms(m.latency[0]), ms(m.latency[1]), ms(m.latency[2])),
            None => Default::default(),
        };
        let cpu = match self.measured.and_then(|m| m.cpu) {
            Some([server, redis]) => format!("{} / {}", server.as_micros(), redis.as_micros()),
            None => String::new(),
        };
        let (vs_throughput, vs_p99) = match self.against {
            Some((throughput, p99)) => (format!("{throughput:.2}"), format!("{p99:.2}")),
            None => Default::default(),
        };
        let met = match self.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "",
        };
        println!(
            "| {} | {} | {rate} | {p50} | {p99} | {p999} | {cpu} | {vs_throughput} | {vs_p99} | {} | {met} |",
            self.what, self.load, self.target
        );
    }
}

fn binaries() -> anyhow::Result<(PathBuf, PathBuf)> {
    let examples = std::env::current_exe()?.parent().context("executable folder")?.to_path_buf();
    let liangma = examples.parent().context("target folder")?.join("liangma");
    let anchor = examples.join("bench_anchor");
    for binary in [&liangma, &anchor] {
        ensure!(binary.exists(), "{} is missing: run bench/run, which builds it", binary.display());
    }
    Ok((liangma, anchor))
}

const VERIFY: &str = "/liangma.v1.VerifierService/VerifyCode";
const ISSUE: &str = "/liangma.v1.IssuerService/IssueCode";
const LOOKUP: &str = "/liangma.v1.RegistryService/LookupStatus";

fn verify_request(code: &str) -> pb::VerifyCodeRequest {
    pb::VerifyCodeRequest {
        code: Some(pb::verify_code_request::Code::Text(code.to_owned())),
        purpose: 0,
        request_id: String::new(),
    }
}

/// The own generator's VerifyCode calls, one code each.
fn verify_with(
    codes: Arc<Vec<String>>,
    expect_live: bool,
) -> impl Fn(Channel, usize) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> + Clone + Send + Sync
{
    move |channel, index| Box::pin(verify_call(channel, codes[index].clone(), expect_live))
}

fn check_anchor(anchor: Anchor, expected: usize) -> anyhow::Result<()> {
    let (ok, failed) = anchor.finish()?;
    ensure!(
        ok == expected as u64 && failed == 0,
        "anchor answered {ok} correctly and {failed} with errors of {expected}"
    );
    Ok(())
}

/// Everything the scenarios share; each scenario appends its rows.
struct Bench {
    options: Options,
    runtime: tokio::runtime::Runtime,
    redis: redis_server::RedisServer,
    service: Service,
    service_channels: Vec<Channel>,
    codes: Codes,
    anchor_binary: PathBuf,
    data_dir: PathBuf,
    rows: Vec<Row>,
}

impl Bench {
    fn stat(&self, command: &str) -> u64 {
        redis_server::info_field(&self.redis.socket(), "commandstats", &format!("cmdstat_{command}"))
    }

    fn with_cpu(
        &self,
        server_pid: u32,
        requests: usize,
        load: impl FnOnce() -> anyhow::Result<Measured>,
    ) -> anyhow::Result<Measured> {
        with_cpu(server_pid, &self.redis.socket(), requests, load)
    }

    fn saturating_load(&self) -> String {
        format!("{}×{} streams", self.options.connections, self.options.streams)
    }

    /// QR rendering in this process: the standard's mask selection and a 1-bit PNG. The best of
    /// five rounds of 1,000 codes, as a moment of contention on a shared machine would only add
    /// to the time of one round.
    fn qr(&mut self) -> anyhow::Result<()> {
        let codes = self.codes.make(1_000)?;
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let started = Instant::now();
            for code in codes.iter() {
                let symbol = liangma::code::qr::encode(code)?;
                std::hint::black_box(liangma::code::qr::to_png(&symbol));
            }
            best = best.min(started.elapsed());
        }
        let each = best / codes.len() as u32;
        self.rows.push(Row::fact(
            "QR symbol + PNG, all 8 masks scored (one core, best of 5 rounds)",
            format!("{:.3} ms per code", each.as_secs_f64() * 1000.0),
            "≤ 0.2 ms",
            Some(each <= Duration::from_micros(200)),
        ));
        Ok(())
    }

    /// The echo and verify anchors, then VerifyCode at saturation; returns VerifyCode's rate.
    fn verify(&mut self) -> anyhow::Result<f64> {
        let (options, requests, load) = (self.options, self.options.requests, self.saturating_load());
        let in_flight = Pace::InFlight(options.in_flight());
        let anchor_code = self.codes.make(1)?[0].clone();
        let echo = Anchor::start(&self.anchor_binary, &["echo"])?;
        let echo_h2load = self.with_cpu(echo.pid(), requests, || {
            h2load(echo.address, VERIFY, &verify_request(&anchor_code), &options, requests)
        })?;
        check_anchor(echo, requests)?;
        self.rows.push(Row::new("anchor: tonic echo", format!("h2load {load}"), echo_h2load));

        let redis_url = self.redis.url();
        let anchor_args = ["verify-get", &redis_url, &anchor_code, &self.codes.public_key_hex];
        let verify_anchor = Anchor::start(&self.anchor_binary, &anchor_args)?;
        let gets_before = self.stat("get");
        let anchor_h2load = self.with_cpu(verify_anchor.pid(), requests, || {
            h2load(verify_anchor.address, VERIFY, &verify_request(&anchor_code), &options, requests)
        })?;
        let anchor_channels = self.runtime.block_on(connect(verify_anchor.address, options.connections))?;
        let anchor_codes = self.codes.make(requests)?;
        let anchor_own = self.with_cpu(verify_anchor.pid(), requests, || {
            self.runtime.block_on(own_load(&anchor_channels, in_flight, requests, verify_with(anchor_codes, false)))
        })?;
        drop(anchor_channels);
        check_anchor(verify_anchor, 2 * requests)?;
        ensure!(self.stat("get") - gets_before == 2 * requests as u64, "the verify anchor missed Redis GETs");
        self.rows.push(Row::new("anchor: tonic + verify_strict + Redis GET", format!("h2load {load}"), anchor_h2load));
        self.rows.push(Row::new("anchor: tonic + verify_strict + Redis GET", format!("own {load}"), anchor_own));

        // Distinct codes, each consumed, its usage recorded and the live status returned.
        let codes = self.codes.make(requests)?;
        let (evalsha_before, commands_before) = (self.stat("evalsha"), self.total_commands());
        let verify = self.with_cpu(self.service.pid, requests, || {
            self.runtime.block_on(own_load(&self.service_channels, in_flight, requests, verify_with(codes, true)))
        })?;
        let evalsha = (self.stat("evalsha") - evalsha_before) as f64 / requests as f64;
        let commands = (self.total_commands() - commands_before) as f64 / requests as f64;
        let met = verify.per_second >= 0.9 * anchor_own.per_second && verify.p99() <= anchor_own.p99().mul_f64(1.5);
        self.rows.push(
            Row::new("liangma VerifyCode (consume, usage record, live status)", format!("own {load}"), verify)
                .against(&anchor_own)
                .target("≥ 0.90× anchor throughput, p99 ≤ 1.5× anchor", met),
        );
        self.rows.push(Row::fact(
            "Redis round trips per VerifyCode",
            format!("{evalsha:.3} EVALSHA; {commands:.3} commands executed, the script's included"),
            "exactly 1",
            Some(evalsha == 1.0),
        ));
        Ok(verify.per_second)
    }

    /// Commands Redis has executed, those inside scripts included and the harness's own `INFO`
    /// readings left out.
    fn total_commands(&self) -> u64 {
        let output =
            Command::new("redis-cli").arg("-s").arg(self.redis.socket()).args(["INFO", "commandstats"]).output();
        let text = output.map(|output| String::from_utf8_lossy(&output.stdout).into_owned()).unwrap_or_default();
        text.lines()
            .filter(|line| line.starts_with("cmdstat_") && !line.starts_with("cmdstat_info:"))
            .filter_map(|line| line.split_once(":calls=")?.1.split(',').next()?.parse::<u64>().ok())
            .sum()
    }

    fn issue_request(qr_format: pb::QrFormat) -> pb::IssueCodeRequest {
        pb::IssueCodeRequest {
            issuer_centre: "410800".into(),
            id_number: liangma::app::SAMPLE_MEMBERS[0].1.into(),
            purpose: pb::Purpose::OffsiteLoan.into(),
            audience_centre: "440300".into(),
            lifetime_seconds: 0,
            qr_format: qr_format.into(),
        }
    }

    /// IssueCode without QR against tonic + sign.
    fn issue(&mut self) -> anyhow::Result<()> {
        let (options, requests, load) = (self.options, self.options.requests, self.saturating_load());
        let request = Self::issue_request(pb::QrFormat::None);
        let pem = self.data_dir.join("dev-410800.pem");
        let sign_anchor = Anchor::start(&self.anchor_binary, &["sign", pem.to_str().context("key path")?])?;
        let anchor = self.with_cpu(sign_anchor.pid(), requests, || {
            h2load(sign_anchor.address, ISSUE, &request, &options, requests)
        })?;
        check_anchor(sign_anchor, requests)?;
        // Every issued code stores its digits and its issued mark with two SETs (one round trip):
        // the count proves every answer was an issuance.
        let sets_before = self.stat("set");
        let issue = self.with_cpu(self.service.pid, requests, || {
            h2load(self.service.address, ISSUE, &request, &options, requests)
        })?;
        ensure!(self.stat("set") - sets_before == 2 * requests as u64, "not every IssueCode issued a code");
        self.rows.push(Row::new("anchor: tonic + sign", format!("h2load {load}"), anchor));
        self.rows.push(
            Row::new(
                "liangma IssueCode, no QR (registry read, sign, digits and issued mark stored)",
                format!("h2load {load}"),
                issue,
            )
            .against(&anchor)
            .target("≥ 0.90× anchor throughput", issue.per_second >= 0.9 * anchor.per_second),
        );
        Ok(())
    }

    /// VerifyCode at a quarter of its saturation rate, alone and while a quarter as many codes
    /// are issued with a PNG, both paced by the own generator. Sub-millisecond p99s move with the
    /// machine's noise, so the two alternate for five rounds of 3 s and each row is the round
    /// with the median p99.
    fn mixed(&mut self, verify_saturation: f64) -> anyhow::Result<()> {
        const ROUNDS: usize = 5;
        let rate = verify_saturation / 4.0;
        let count = ((rate * 3.0) as usize).max(1000);
        let (png_rate, png_count) = (rate / 4.0, count / 4);
        let paced = Pace::PerSecond(rate);
        let issue_png = |channel: Channel, _: usize| async move {
            let mut client = pb::issuer_service_client::IssuerServiceClient::new(channel);
            let issued = client.issue_code(Self::issue_request(pb::QrFormat::Png)).await?.into_inner();
            ensure!(issued.qr_png.starts_with(b"\x89PNG\r\n\x1a\n") && !issued.digits.is_empty(), "no PNG");
            Ok(())
        };
        let (mut alone, mut together, mut png) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let codes = self.codes.make(count)?;
            alone.push(self.runtime.block_on(own_load(
                &self.service_channels,
                paced,
                count,
                verify_with(codes, true),
            ))?);
            let codes = self.codes.make(count)?;
            let channels = &self.service_channels;
            let (verified, issued) = self.runtime.block_on(async {
                tokio::join!(
                    own_load(channels, paced, count, verify_with(codes, true)),
                    own_load(channels, Pace::PerSecond(png_rate), png_count, issue_png)
                )
            });
            together.push(verified?);
            png.push(issued?);
        }
        let p99s = |runs: &[Measured]| {
            runs.iter().map(|run| format!("{:.2}", run.p99().as_secs_f64() * 1e3)).collect::<Vec<_>>()
        };
        eprintln!(
            "bench: VerifyCode p99 (ms) per round, alone {:?}, with PNG issuance {:?}",
            p99s(&alone),
            p99s(&together)
        );
        let median = |mut runs: Vec<Measured>| {
            runs.sort_by_key(Measured::p99);
            runs[ROUNDS / 2]
        };
        let (alone, together, png) = (median(alone), median(together), median(png));
        let load = format!("own, {rate:.0}/s, median of {ROUNDS}");
        self.rows.push(Row::new("liangma VerifyCode alone", load.clone(), alone));
        self.rows.push(
            Row::new("liangma VerifyCode while IssueCode with PNG runs", load, together)
                .against(&alone)
                .target("p99 ≤ 1.5× VerifyCode alone", together.p99() <= alone.p99().mul_f64(1.5)),
        );
        self.rows.push(Row::new(
            "liangma IssueCode with PNG, at the same time",
            format!("own, {png_rate:.0}/s, median of {ROUNDS}"),
            png,
        ));
        Ok(())
    }

    /// LookupStatus by a verification id: at saturation, then at half of it. The paced run uses
    /// the own generator: h2load's `--rps` starts requests in bursts (its p50 stays near 1 ms
    /// even at 5% of saturation), which measures its pacing, not the server.
    fn lookup(&mut self) -> anyhow::Result<()> {
        let (options, requests, load) = (self.options, self.options.requests, self.saturating_load());
        let mut client = pb::verifier_service_client::VerifierServiceClient::new(self.service_channels[0].clone());
        let verified = self.runtime.block_on(client.verify_code(verify_request(&self.codes.make(1)?[0])))?;
        let request = pb::LookupStatusRequest { verification_id: verified.into_inner().verification_id };
        let id = request.verification_id.clone();
        let lookup = move |channel: Channel, _: usize| {
            let request = pb::LookupStatusRequest { verification_id: id.clone() };
            async move {
                let mut client = pb::registry_service_client::RegistryServiceClient::new(channel);
                let live = client.lookup_status(request).await?.into_inner().live;
                ensure!(live.is_some_and(|live| live.found), "no live status");
                Ok(())
            }
        };
        let evalsha_before = self.stat("evalsha");
        let saturated = self.with_cpu(self.service.pid, requests, || {
            h2load(self.service.address, LOOKUP, &request, &options, requests)
        })?;
        ensure!(self.stat("evalsha") - evalsha_before == requests as u64, "not every LookupStatus read the registry");
        let in_flight = Pace::InFlight(options.in_flight());
        let saturated_own = self.with_cpu(self.service.pid, requests, || {
            self.runtime.block_on(own_load(&self.service_channels, in_flight, requests, lookup.clone()))
        })?;
        let half = saturated_own.per_second / 2.0;
        let count = ((half * 8.0) as usize).max(1000);
        let at_half = self.runtime.block_on(own_load(&self.service_channels, Pace::PerSecond(half), count, lookup))?;
        self.rows.push(Row::new("liangma LookupStatus", format!("h2load {load}"), saturated));
        self.rows.push(Row::new("liangma LookupStatus", format!("own {load}"), saturated_own));
        self.rows.push(
            Row::new("liangma LookupStatus at half of saturation", format!("own, {half:.0}/s"), at_half)
                .target("p99 < 1 ms", at_half.p99() < Duration::from_millis(1)),
        );
        Ok(())
    }

    /// Registry publication through the API, and Redis memory per record.
    fn publish(&mut self) -> anyhow::Result<()> {
        let records = self.options.records;
        let memory = || redis_server::info_field(&self.redis.socket(), "memory", "used_memory");
        let memory_before = memory();
        let per_second = self.runtime.block_on(publish(self.service_channels[0].clone(), BENCH_MEMBERS, records))?;
        let memory_after = memory();
        self.rows.push(Row::fact(
            "PublishStatuses (batches of 1,000, 8 in flight)",
            format!("{records} records at {per_second:.0} records/s"),
            "≥ 100,000 records/s",
            Some(per_second >= 100_000.0),
        ));
        self.rows.push(Row::fact(
            "Redis memory per registry record",
            format!("{} bytes", memory_after.saturating_sub(memory_before) / records.max(1)),
            "reported",
            None,
        ));
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse()?;
    let (liangma_binary, anchor_binary) = binaries()?;
    // The load generator gets two workers, like each server.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let redis = redis_server::RedisServer::start();
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("data");
    let service = Service::start(&liangma_binary, &data_dir, &redis.url())?;
    let service_channels = runtime.block_on(connect(service.address, options.connections))?;
    let codes = Codes::new(&data_dir)?;
    runtime.block_on(publish(service_channels[0].clone(), 0, BENCH_MEMBERS))?;
    let mut bench =
        Bench { options, runtime, redis, service, service_channels, codes, anchor_binary, data_dir, rows: Vec::new() };
    eprintln!(
        "bench: {} requests per saturation run, {} connections × {} streams",
        options.requests, options.connections, options.streams
    );
    if options.runs("qr") {
        bench.qr()?;
    }
    if options.runs("verify") {
        let verify_saturation = bench.verify()?;
        if options.runs("mixed") {
            bench.mixed(verify_saturation)?;
        }
    }
    if options.runs("issue") {
        bench.issue()?;
    }
    if options.runs("lookup") {
        bench.lookup()?;
    }
    if options.runs("publish") {
        bench.publish()?;
    }
    let problems = bench.service.problems();
    ensure!(problems == 0, "liangma logged {problems} warnings or errors during the run");

    println!(
        "liangma bench: {} CPUs shared by the service, the anchors, Redis and the load generators",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "| measurement | load | requests/s | p50 ms | p99 ms | p99.9 ms | CPU µs per request: server / Redis \
         | × anchor throughput | × anchor p99 | target | |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for row in &bench.rows {
        row.print();
    }
    std::io::stdout().flush()?;
    Ok(())
}
