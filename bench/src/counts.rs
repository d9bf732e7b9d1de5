//! Instructions per IssueCode and per VerifyCode under callgrind, liangma against its anchors: counts that do not move with the machine's noise, unlike the throughput rows.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use liangma::pb::v1 as pb;

use crate::Options;
use crate::load::{Pace, connect, h2load, own_load};
use crate::processes::{Anchor, Service};
use crate::report::Row;
use crate::scenarios::{Bench, ISSUE, check_anchor, verify_with};

/// Calls before the count starts: connections, caches and the allocator settle.
const WARM_UP_CALLS: usize = 500;
/// Calls counted.
const COUNTED_CALLS: usize = 2_000;

impl Bench {
    /// IssueCode without QR and digits, as in the issue rows, then VerifyCode, each server under
    /// callgrind in turn: instructions per call (user space only: the kernel's share is not
    /// counted).
    pub(crate) fn counts(&mut self) -> anyhow::Result<()> {
        const WHAT: &str =
            "instructions per IssueCode, no QR, no digits (callgrind; h2load 4×8; the kernel not counted)";
        if !(installed("valgrind") && installed("callgrind_control")) {
            self.rows.push(Row::fact(WHAT, "not counted: valgrind is not installed".into(), "", None));
            return Ok(());
        }
        // Few in flight: under valgrind the server runs one thread at a time.
        let options = Options { connections: 4, streams: 8, ..self.options.clone() };
        let request = Self::issue_request(pb::QrFormat::None, false);
        let folder = self.data_dir.join("callgrind");
        std::fs::create_dir_all(&folder)?;
        let load = |address| {
            let (request, options) = (&request, &options);
            move |calls| h2load(address, ISSUE, request, options, calls).map(|_| ())
        };

        let anchor_file = folder.join("anchor");
        let pem = self.data_dir.join("dev-410800.pem");
        let code = self.codes.make(1)?[0].clone();
        let arguments = ["get-sign", &self.redis.url(), pem.to_str().context("key path")?, &code];
        let wrapper = callgrind(&anchor_file);
        let anchor = Anchor::start_under(&wrapper.each_ref().map(String::as_str), &self.anchor_binary, &arguments)?;
        let anchor_count = count(anchor.pid(), &anchor_file, load(anchor.address))?;
        check_anchor(anchor, WARM_UP_CALLS + COUNTED_CALLS)?;

        let liangma_file = folder.join("liangma");
        let wrapper = callgrind(&liangma_file);
        let wrapper = wrapper.each_ref().map(String::as_str);
        let service = Service::start_under(&wrapper, &self.liangma_binary, &self.data_dir, &self.redis.url(), "")?;
        let marks_before = self.stat("setex");
        let liangma_count = count(service.pid, &liangma_file, load(service.address))?;
        ensure!(
            self.stat("setex") - marks_before == (WARM_UP_CALLS + COUNTED_CALLS) as u64,
            "not every IssueCode under callgrind issued a code"
        );
        ensure!(service.problems() == 0, "liangma under callgrind logged warnings or errors");

        let line = format!(
            "liangma {liangma_count:.0}, anchor (tonic + Redis GET + sign) {anchor_count:.0}: {:.2}× the anchor's",
            liangma_count / anchor_count
        );
        self.rows.push(Row::fact(WHAT, line, "reported: the throughput rows' noise-free companion", None));
        self.verify_counts(&folder, &service)
    }

    /// VerifyCode through the own generator (single-use codes), 32 in flight, against tonic +
    /// `verify_strict` + Redis GET. liangma's count moves by about 1% with how the calls happen
    /// to fall into signature batches.
    fn verify_counts(&mut self, folder: &Path, service: &Service) -> anyhow::Result<()> {
        const WHAT: &str = "instructions per VerifyCode (callgrind; own generator, 4 connections, 32 in flight)";
        let (codes, runtime) = (&self.codes, &self.runtime);
        let load = |address| {
            let channels = runtime.block_on(connect(address, 4))?;
            anyhow::Ok(move |calls| {
                let fresh = codes.make(calls)?;
                runtime.block_on(own_load(&channels, Pace::InFlight(32), calls, verify_with(fresh, false)))?;
                anyhow::Ok(())
            })
        };
        let anchor_file = folder.join("verify-anchor");
        let anchor_code = self.codes.make(1)?[0].clone();
        let arguments = ["verify-get", &self.redis.url(), &anchor_code, &self.codes.public_key_hex];
        let wrapper = callgrind(&anchor_file);
        let anchor = Anchor::start_under(&wrapper.each_ref().map(String::as_str), &self.anchor_binary, &arguments)?;
        let anchor_count = count(anchor.pid(), &anchor_file, load(anchor.address)?)?;
        check_anchor(anchor, WARM_UP_CALLS + COUNTED_CALLS)?;
        let liangma_file = folder.join("liangma");
        // The service started for IssueCode is still under callgrind: its next dump is `.2`.
        let liangma_count = count_dump(service.pid, &liangma_file, 2, load(service.address)?)?;
        let line = format!(
            "liangma {liangma_count:.0}, anchor (tonic + verify_strict + Redis GET) {anchor_count:.0}: {:.2}× the anchor's",
            liangma_count / anchor_count
        );
        self.rows.push(Row::fact(WHAT, line, "reported: the throughput rows' noise-free companion", None));
        Ok(())
    }
}

fn installed(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok_and(|output| output.status.success())
}

/// `valgrind --tool=callgrind`, writing its counts to `file` (and dumps to `file.1`, …).
fn callgrind(file: &Path) -> [String; 4] {
    ["valgrind".into(), "--tool=callgrind".into(), "-q".into(), format!("--callgrind-out-file={}", file.display())]
}

/// Instructions per call of the server `pid` over [`COUNTED_CALLS`] calls of `load`, after
/// [`WARM_UP_CALLS`]: the counts are zeroed before and dumped after (`callgrind_control`).
fn count(pid: u32, file: &Path, load: impl Fn(usize) -> anyhow::Result<()>) -> anyhow::Result<f64> {
    count_dump(pid, file, 1, load)
}

/// [`count`] for a process that already dumped `dump - 1` times.
fn count_dump(pid: u32, file: &Path, dump: u32, load: impl Fn(usize) -> anyhow::Result<()>) -> anyhow::Result<f64> {
    load(WARM_UP_CALLS)?;
    control(pid, "--zero")?;
    load(COUNTED_CALLS)?;
    control(pid, "--dump")?;
    let dump = PathBuf::from(format!("{}.{dump}", file.display()));
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&dump).unwrap_or_default();
        if let Some(total) = text.lines().find_map(|line| line.strip_prefix("summary: ")) {
            return Ok(total.trim().parse::<f64>()? / COUNTED_CALLS as f64);
        }
        ensure!(started.elapsed() < Duration::from_secs(30), "callgrind wrote no counts to {}", dump.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn control(pid: u32, command: &str) -> anyhow::Result<()> {
    let output = Command::new("callgrind_control").arg(command).arg(pid.to_string()).output()?;
    ensure!(output.status.success(), "callgrind_control {command}: {}", String::from_utf8_lossy(&output.stderr));
    Ok(())
}
