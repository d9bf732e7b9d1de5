//! The scenarios of a run (qr, verify, issue, mixed, lookup, publish), each appending its rows.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use liangma::pb::v1 as pb;
use liangma::testkit as redis_server;
use tonic::transport::Channel;

use crate::Options;
use crate::load::{Measured, Pace, connect, h2load, own_load, verify_call, with_cpu};
use crate::members::{BENCH_MEMBERS, Codes, publish};
use crate::processes::{Anchor, Service};
use crate::report::Row;

pub(crate) const VERIFY: &str = "/liangma.v1.VerifierService/VerifyCode";
pub(crate) const ISSUE: &str = "/liangma.v1.IssuerService/IssueCode";
pub(crate) const LOOKUP: &str = "/liangma.v1.RegistryService/LookupStatus";

pub(crate) fn verify_request(code: &str) -> pb::VerifyCodeRequest {
    pb::VerifyCodeRequest {
        code: Some(pb::verify_code_request::Code::Text(code.to_owned())),
        purpose: 0,
        request_id: String::new(),
    }
}

/// The own generator's VerifyCode calls, one code each.
pub(crate) fn verify_with(
    codes: Arc<Vec<String>>,
    expect_live: bool,
) -> impl Fn(Channel, usize) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> + Clone + Send + Sync
{
    move |channel, index| Box::pin(verify_call(channel, codes[index].clone(), expect_live))
}

pub(crate) fn check_anchor(anchor: Anchor, expected: usize) -> anyhow::Result<()> {
    let (ok, failed) = anchor.finish()?;
    ensure!(
        ok == expected as u64 && failed == 0,
        "anchor answered {ok} correctly and {failed} with errors of {expected}"
    );
    Ok(())
}

/// Everything the scenarios share; each scenario appends its rows.
pub(crate) struct Bench {
    pub(crate) options: Options,
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) redis: redis_server::RedisServer,
    pub(crate) service: Service,
    pub(crate) service_channels: Vec<Channel>,
    pub(crate) codes: Codes,
    pub(crate) anchor_binary: PathBuf,
    pub(crate) liangma_binary: PathBuf,
    pub(crate) data_dir: PathBuf,
    pub(crate) rows: Vec<Row>,
}

impl Bench {
    pub(crate) fn stat(&self, command: &str) -> u64 {
        redis_server::info_field(&self.redis.socket(), "commandstats", &format!("cmdstat_{command}"))
    }

    pub(crate) fn with_cpu(
        &self,
        server_pid: u32,
        requests: usize,
        load: impl FnOnce() -> anyhow::Result<Measured>,
    ) -> anyhow::Result<Measured> {
        with_cpu(server_pid, &self.redis.socket(), requests, load)
    }

    /// [`Bench::with_cpu`] for `load` while `perf` samples process `pid`; with the measurement,
    /// a row saying where that process's CPU went.
    pub(crate) fn profiled(
        &self,
        pid: u32,
        requests: usize,
        what: &str,
        load: impl FnOnce() -> anyhow::Result<Measured>,
    ) -> anyhow::Result<(Measured, Row)> {
        let profile = crate::profile::Profile::start(pid, &self.data_dir, "run");
        let measured = self.with_cpu(pid, requests, load)?;
        let line = profile
            .and_then(crate::profile::Profile::finish)
            .unwrap_or_else(|| "not profiled: perf is not installed or may not sample".into());
        Ok((measured, Row::fact(&format!("where the CPU goes: {what}"), line, "", None)))
    }

    pub(crate) fn saturating_load(&self) -> String {
        format!("{}×{} streams", self.options.connections, self.options.streams)
    }

    /// QR rendering in this process: the standard's mask selection and a 1-bit PNG. The best of
    /// five rounds of 1,000 codes, as a moment of contention on a shared machine would only add
    /// to the time of one round.
    pub(crate) fn qr(&mut self) -> anyhow::Result<()> {
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
    pub(crate) fn verify(&mut self) -> anyhow::Result<f64> {
        let (options, requests, load) = (self.options.clone(), self.options.requests, self.saturating_load());
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
        let (anchor_own, anchor_profile) = self.profiled(verify_anchor.pid(), requests, "verify anchor", || {
            self.runtime.block_on(own_load(&anchor_channels, in_flight, requests, verify_with(anchor_codes, false)))
        })?;
        drop(anchor_channels);
        check_anchor(verify_anchor, 2 * requests)?;
        ensure!(self.stat("get") - gets_before == 2 * requests as u64, "the verify anchor missed Redis GETs");
        // The same anchor on liangma's serving lanes: what the runtime shape alone is worth.
        let lanes_anchor = Anchor::start(&self.anchor_binary, &[&["--lanes"][..], &anchor_args].concat())?;
        let lanes_channels = self.runtime.block_on(connect(lanes_anchor.address, options.connections))?;
        let lanes_codes = self.codes.make(requests)?;
        let anchor_on_lanes = self.with_cpu(lanes_anchor.pid(), requests, || {
            self.runtime.block_on(own_load(&lanes_channels, in_flight, requests, verify_with(lanes_codes, false)))
        })?;
        drop(lanes_channels);
        check_anchor(lanes_anchor, requests)?;
        self.rows.push(Row::new("anchor: tonic + verify_strict + Redis GET", format!("h2load {load}"), anchor_h2load));
        self.rows.push(Row::new("anchor: tonic + verify_strict + Redis GET", format!("own {load}"), anchor_own));
        self.rows.push(
            Row::new(
                "anchor: tonic + verify_strict + Redis GET, on liangma's serving lanes",
                format!("own {load}"),
                anchor_on_lanes,
            )
            .against(&anchor_own)
            .note("reported: the runtime shape alone, against the anchor above"),
        );

        // Distinct codes, each consumed, its usage recorded and the live status returned.
        let codes = self.codes.make(requests)?;
        let (evalsha_before, commands_before) = (self.stat("evalsha"), self.total_commands());
        let (verify, verify_profile) = self.profiled(self.service.pid, requests, "liangma VerifyCode", || {
            self.runtime.block_on(own_load(&self.service_channels, in_flight, requests, verify_with(codes, true)))
        })?;
        let evalsha = (self.stat("evalsha") - evalsha_before) as f64 / requests as f64;
        let commands = (self.total_commands() - commands_before) as f64 / requests as f64;
        let [service_cpu, redis_cpu] = verify.cpu.context("CPU measured")?;
        let [anchor_cpu, _] = anchor_own.cpu.context("CPU measured")?;
        let met = verify.per_second >= anchor_own.per_second
            && verify.p99() <= anchor_own.p99().mul_f64(1.2)
            && service_cpu <= anchor_cpu
            && redis_cpu <= Duration::from_micros(6);
        self.rows.push(
            Row::new("liangma VerifyCode (consume, usage record, live status)", format!("own {load}"), verify)
                .against(&anchor_own)
                .target("≥ 1.0× anchor throughput, p99 ≤ 1.2×, service CPU ≤ anchor's, Redis CPU ≤ 6 µs", met),
        );
        self.rows.push(Row::fact(
            "Redis commands per VerifyCode",
            format!("{commands:.3} (HSETNX, HGET, EXPIRE, HLEN, GET: one pipeline); {evalsha:.3} scripts"),
            "one pipeline, no script",
            // The service's health PINGs land in the same counters: a few per run.
            Some(evalsha == 0.0 && (commands - 5.0).abs() < 0.01),
        ));
        self.rows.push(against_lanes_anchor("liangma VerifyCode", &verify, &anchor_on_lanes));
        self.rows.push(anchor_profile);
        self.rows.push(verify_profile);
        Ok(verify.per_second)
    }

    /// Commands Redis has executed, those inside scripts included and the harness's own `INFO`
    /// readings left out.
    pub(crate) fn total_commands(&self) -> u64 {
        let output =
            Command::new("redis-cli").arg("-s").arg(self.redis.socket()).args(["INFO", "commandstats"]).output();
        let text = output.map(|output| String::from_utf8_lossy(&output.stdout).into_owned()).unwrap_or_default();
        text.lines()
            .filter(|line| line.starts_with("cmdstat_") && !line.starts_with("cmdstat_info:"))
            .filter_map(|line| line.split_once(":calls=")?.1.split(',').next()?.parse::<u64>().ok())
            .sum()
    }

    pub(crate) fn issue_request(qr_format: pb::QrFormat, digits: bool) -> pb::IssueCodeRequest {
        pb::IssueCodeRequest {
            issuer_centre: "410800".into(),
            id_number: liangma::app::SAMPLE_MEMBERS[0].1.into(),
            purpose: pb::Purpose::OffsiteLoan.into(),
            audience_centre: "440300".into(),
            lifetime_seconds: 0,
            qr_format: qr_format.into(),
            omit_digits: !digits,
        }
    }

    /// IssueCode without QR, without and with digits, against tonic + Redis GET + sign; with a
    /// PNG against an anchor that also renders.
    pub(crate) fn issue(&mut self) -> anyhow::Result<()> {
        let (options, requests, load) = (self.options.clone(), self.options.requests, self.saturating_load());
        let request = Self::issue_request(pb::QrFormat::None, false);
        let pem = self.data_dir.join("dev-410800.pem");
        let sign_anchor = Anchor::start(&self.anchor_binary, &["sign", pem.to_str().context("key path")?])?;
        let anchor = self.with_cpu(sign_anchor.pid(), requests, || {
            h2load(sign_anchor.address, ISSUE, &request, &options, requests)
        })?;
        check_anchor(sign_anchor, requests)?;
        // The fair anchor: a real issuance must read the member's status first.
        let redis_url = self.redis.url();
        let code = self.codes.make(1)?[0].clone();
        let get_sign =
            Anchor::start(&self.anchor_binary, &["get-sign", &redis_url, pem.to_str().context("key path")?, &code])?;
        let (get_anchor, get_anchor_profile) =
            self.profiled(get_sign.pid(), requests, "issue anchor (GET + sign)", || {
                h2load(get_sign.address, ISSUE, &request, &options, requests)
            })?;
        let get_sign_lanes = Anchor::start(
            &self.anchor_binary,
            &["--lanes", "get-sign", &redis_url, pem.to_str().context("key path")?, &code],
        )?;
        let get_anchor_on_lanes = self.with_cpu(get_sign_lanes.pid(), requests, || {
            h2load(get_sign_lanes.address, ISSUE, &request, &options, requests)
        })?;
        check_anchor(get_sign_lanes, requests)?;
        // With a QR PNG, as a member's app asks: fewer requests, each renders.
        let png_request = Self::issue_request(pb::QrFormat::Png, true);
        let png_requests = (requests / 4).max(1000);
        let png_anchor = self.with_cpu(get_sign.pid(), png_requests, || {
            h2load(get_sign.address, ISSUE, &png_request, &options, png_requests)
        })?;
        check_anchor(get_sign, requests + png_requests)?;
        // Every issued code stores its issued mark with a SETEX (in the registry read's round
        // trip), and its digits with a SET: the counts prove every answer was an issuance.
        let marks_before = self.stat("setex");
        let (issue, issue_profile) =
            self.profiled(self.service.pid, requests, "liangma IssueCode, no QR, no digits", || {
                h2load(self.service.address, ISSUE, &request, &options, requests)
            })?;
        ensure!(self.stat("setex") - marks_before == requests as u64, "not every IssueCode issued a code");
        let digits_request = Self::issue_request(pb::QrFormat::None, true);
        let digits_before = self.stat("set");
        let with_digits = self.with_cpu(self.service.pid, requests, || {
            h2load(self.service.address, ISSUE, &digits_request, &options, requests)
        })?;
        ensure!(self.stat("set") - digits_before == requests as u64, "not every IssueCode stored digits");
        self.rows.push(Row::new("anchor: tonic + sign", format!("h2load {load}"), anchor));
        self.rows.push(Row::new("anchor: tonic + Redis GET + sign", format!("h2load {load}"), get_anchor));
        self.rows.push(
            Row::new(
                "liangma IssueCode, no QR, no digits (issued mark + registry read in one round trip, sign)",
                format!("h2load {load}"),
                issue,
            )
            .against(&get_anchor)
            .target("≥ 0.95× the GET + sign anchor", issue.per_second >= 0.95 * get_anchor.per_second),
        );
        self.rows.push(
            Row::new(
                "anchor: tonic + Redis GET + sign, on liangma's serving lanes",
                format!("h2load {load}"),
                get_anchor_on_lanes,
            )
            .against(&get_anchor)
            .note("reported: the runtime shape alone, against the GET + sign anchor"),
        );
        self.rows.push(against_lanes_anchor("liangma IssueCode, no QR, no digits", &issue, &get_anchor_on_lanes));
        self.rows.push(
            Row::new(
                "liangma IssueCode, no QR, with digits (a second round trip)",
                format!("h2load {load}"),
                with_digits,
            )
            .against(&get_anchor)
            .target("≥ 0.8× the GET + sign anchor", with_digits.per_second >= 0.8 * get_anchor.per_second),
        );
        let (png, png_profile) = self.profiled(self.service.pid, png_requests, "liangma IssueCode with PNG", || {
            h2load(self.service.address, ISSUE, &png_request, &options, png_requests)
        })?;
        self.rows.push(Row::new("anchor: tonic + Redis GET + sign + QR PNG", format!("h2load {load}"), png_anchor));
        self.rows.push(
            Row::new("liangma IssueCode with PNG", format!("h2load {load}"), png)
                .against(&png_anchor)
                .note("reported: issuance as a member's app asks for it"),
        );
        self.rows.push(get_anchor_profile);
        self.rows.push(issue_profile);
        self.rows.push(png_profile);
        Ok(())
    }

    /// VerifyCode at a quarter of its saturation rate, alone and while a quarter as many codes
    /// are issued with a PNG, both paced by the own generator. Sub-millisecond p99s move with the
    /// machine's noise, so the two alternate for five rounds of 3 s and each row is the round
    /// with the median p99.
    pub(crate) fn mixed(&mut self, verify_saturation: f64) -> anyhow::Result<()> {
        const ROUNDS: usize = 5;
        let rate = verify_saturation / 4.0;
        let count = ((rate * 3.0) as usize).max(1000);
        let (png_rate, png_count) = (rate / 4.0, count / 4);
        let paced = Pace::PerSecond(rate);
        let issue_png = |channel: Channel, _: usize| async move {
            let mut client = pb::issuer_service_client::IssuerServiceClient::new(channel);
            let issued = client.issue_code(Self::issue_request(pb::QrFormat::Png, true)).await?.into_inner();
            ensure!(issued.qr_png.starts_with(b"\x89PNG\r\n\x1a\n") && !issued.digits.is_empty(), "no PNG");
            Ok(())
        };
        let (mut alone, mut together, mut png) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let codes = self.codes.make(count)?;
            alone.push(self.with_cpu(self.service.pid, count, || {
                self.runtime.block_on(own_load(&self.service_channels, paced, count, verify_with(codes, true)))
            })?);
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
    pub(crate) fn lookup(&mut self) -> anyhow::Result<()> {
        let (options, requests, load) = (self.options.clone(), self.options.requests, self.saturating_load());
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
        let (saturated_own, lookup_profile) =
            self.profiled(self.service.pid, requests, "liangma LookupStatus", || {
                self.runtime.block_on(own_load(&self.service_channels, in_flight, requests, lookup.clone()))
            })?;
        let half = saturated_own.per_second / 2.0;
        let count = ((half * 8.0) as usize).max(1000);
        let at_half = self.with_cpu(self.service.pid, count, || {
            self.runtime.block_on(own_load(&self.service_channels, Pace::PerSecond(half), count, lookup))
        })?;
        self.rows.push(Row::new("liangma LookupStatus", format!("h2load {load}"), saturated));
        self.rows.push(Row::new("liangma LookupStatus", format!("own {load}"), saturated_own));
        self.rows.push(
            Row::new("liangma LookupStatus at half of saturation", format!("own, {half:.0}/s"), at_half)
                .target("p99 < 1 ms", at_half.p99() < Duration::from_millis(1)),
        );
        self.rows.push(lookup_profile);
        Ok(())
    }

    /// Registry publication through the API, and Redis memory per record.
    pub(crate) fn publish(&mut self) -> anyhow::Result<()> {
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

/// liangma's row against the anchor served the same way (both on serving lanes): what the
/// pipeline costs beyond its anchor once the runtime shape is equal.
fn against_lanes_anchor(what: &str, liangma: &Measured, anchor: &Measured) -> Row {
    let cpu =
        |measured: &Measured| measured.cpu.map_or_else(|| "?".into(), |[server, _]| server.as_micros().to_string());
    Row::fact(
        &format!("{what} × the same anchor on lanes"),
        format!(
            "{:.2}× throughput, {:.2}× p99; service CPU µs {} against {}",
            liangma.per_second / anchor.per_second,
            liangma.p99().as_secs_f64() / anchor.p99().as_secs_f64(),
            cpu(liangma),
            cpu(anchor)
        ),
        "reported: the pipeline's own distance to its anchor",
        None,
    )
}
