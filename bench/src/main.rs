//! `liangma-bench`: liangma (Redis backend) against anchor servers measured in the same run; one table.
//!
//! Run it with `bench/run` (installs h2load and redis-server, builds, then runs this). It starts a
//! private `redis-server`, `liangma serve` (dev setup, Redis store) and the anchors of
//! `bench-anchor`, as separate processes sharing the machine with the load generators. Fixed
//! request bodies go through h2load; VerifyCode (single-use codes) and paced runs through the own
//! generator. Every answer is checked: the own generator reads each response; for h2load (which
//! cannot read gRPC trailers) the anchors count their correct answers, Redis's command statistics
//! count the work the service did, and the service must log no warning or error.
#![forbid(unsafe_code)]

mod counts;
mod federation;
mod load;
mod members;
mod processes;
mod profile;
mod report;
mod scale;
mod scenarios;

use std::io::Write;

use anyhow::ensure;
use clap::Parser;

use liangma::testkit as redis_server;
use load::connect;
use members::{BENCH_MEMBERS, Codes, publish};
use processes::{Service, binaries};
use scenarios::Bench;

/// A scenario of the run; `mixed` runs `verify` too (it needs verify's saturation rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scenario {
    /// QR symbol and PNG rendering in this process.
    Qr,
    /// VerifyCode against tonic + verify_strict + one Redis GET.
    Verify,
    /// IssueCode against tonic + sign.
    Issue,
    /// VerifyCode paced, alone and with PNG issuance alongside.
    Mixed,
    /// LookupStatus, saturated and at half its saturation rate.
    Lookup,
    /// PublishStatuses in batches of 1,000.
    Publish,
    /// VerifyCode at another centre's node (consumed at the issuer's node) against a verify at
    /// the issuer's node, both over mutual TLS.
    Federation,
    /// VerifyCode offered past saturation with issuance and publishing: goodput, p99, shedding.
    Overload,
    /// VerifyCode on one replica against two replicas on one Redis.
    Replicas,
    /// VerifyCode with Redis appendfsync everysec against always.
    Durability,
    /// Instructions per IssueCode under callgrind against the GET + sign anchor.
    Counts,
}

/// Options of a run.
#[derive(Debug, Clone, Parser)]
#[command(name = "liangma-bench", about = "liangma against its anchors, measured in one run (docs/performance.md)")]
pub(crate) struct Options {
    /// Connections of each load generator.
    #[arg(long, default_value_t = 16, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub(crate) connections: usize,
    /// Streams in flight per connection.
    #[arg(long, default_value_t = 32, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub(crate) streams: usize,
    /// Requests per saturation run.
    #[arg(long, default_value_t = 60_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1000..))]
    pub(crate) requests: usize,
    /// Registry records published by the publish scenario.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) records: u64,
    /// Scenarios to run, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub(crate) only: Vec<Scenario>,
}

impl Options {
    pub(crate) fn in_flight(&self) -> usize {
        self.connections * self.streams
    }

    pub(crate) fn runs(&self, scenario: Scenario) -> bool {
        self.only.is_empty()
            || self.only.contains(&scenario)
            || (scenario == Scenario::Verify && self.only.contains(&Scenario::Mixed))
    }
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
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
    let mut bench = Bench {
        options: options.clone(),
        runtime,
        redis,
        service,
        service_channels,
        codes,
        anchor_binary,
        liangma_binary,
        data_dir,
        rows: Vec::new(),
    };
    eprintln!(
        "bench: {} requests per saturation run, {} connections × {} streams",
        options.requests, options.connections, options.streams
    );
    if options.runs(Scenario::Qr) {
        bench.qr()?;
    }
    if options.runs(Scenario::Verify) {
        let verify_saturation = bench.verify()?;
        if options.runs(Scenario::Mixed) {
            bench.mixed(verify_saturation)?;
        }
    }
    if options.runs(Scenario::Issue) {
        bench.issue()?;
    }
    if options.runs(Scenario::Lookup) {
        bench.lookup()?;
    }
    if options.runs(Scenario::Publish) {
        bench.publish()?;
    }
    if options.runs(Scenario::Federation) {
        bench.federation()?;
    }
    if options.runs(Scenario::Overload) {
        bench.overload()?;
    }
    if options.runs(Scenario::Replicas) {
        bench.replicas()?;
    }
    if options.runs(Scenario::Durability) {
        bench.durability()?;
    }
    if options.runs(Scenario::Counts) {
        bench.counts()?;
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
