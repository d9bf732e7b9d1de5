//! Where a process's CPU goes during a run: `perf record` sampling it (no call graphs, so the
//! cost to the run is small), each sample's function sorted into a few kinds of work.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Kinds of work, by what a sampled function's name contains; the first match counts.
const KINDS: &[(&str, &[&str])] = &[
    ("signatures", &["curve25519", "ed25519", "sha2::", "sha512", "Scalar52", "FieldElement"]),
    ("QR + PNG", &["qrcode", "::qr::", "fdeflate", "adler", "png"]),
    ("allocator", &["mi_", "malloc", "free", "realloc", "cfree"]),
    ("copies", &["memcpy", "memmove", "memset"]),
    ("HTTP/2 + gRPC", &["h2::", "hyper", "tonic", "tower", "http::", "http_body", "axum", "prost", "bytes::"]),
    ("Redis client", &["redis::", "combine::"]),
    ("async runtime", &["tokio::", "mio::", "futures_", "crossbeam", "parking_lot"]),
    ("logging + metrics", &["tracing", "time::", "metrics"]),
    ("liangma", &["liangma::"]),
];

/// A `perf record` of one process, started before a run and read after it.
pub(crate) struct Profile {
    perf: Child,
    data: PathBuf,
}

impl Profile {
    /// Starts sampling `pid`; `None` when `perf` is not installed or may not sample.
    pub(crate) fn start(pid: u32, dir: &std::path::Path, name: &str) -> Option<Self> {
        let data = dir.join(format!("{name}.perf"));
        let perf = Command::new("perf")
            .args(["record", "-q", "-e", "cpu-clock", "-F", "499", "-p", &pid.to_string(), "-o"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        // perf attaches within a few milliseconds; samples before that are the run's first.
        std::thread::sleep(std::time::Duration::from_millis(100));
        Some(Self { perf, data })
    }

    /// Stops sampling and answers the shares, largest first, as one line.
    pub(crate) fn finish(mut self) -> Option<String> {
        let _ = Command::new("kill").args(["-INT", &self.perf.id().to_string()]).status();
        self.perf.wait().ok()?;
        let report = Command::new("perf")
            .args(["report", "--stdio", "--no-children", "--sort", "sym", "-g", "none", "-i"])
            .arg(&self.data)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let _ = std::fs::remove_file(&self.data);
        summarize(&String::from_utf8_lossy(&report.stdout))
    }
}

/// `perf report --sort sym` lines (`  12.34%  [.] function`) summed by kind.
fn summarize(report: &str) -> Option<String> {
    let mut shares: Vec<(&str, f64)> = KINDS.iter().map(|(kind, _)| (*kind, 0.0)).collect();
    let (mut kernel, mut other, mut total) = (0.0, 0.0, 0.0);
    for line in report.lines().filter(|line| !line.trim_start().starts_with('#')) {
        let Some((percent, symbol)) = line.trim().split_once('%') else { continue };
        let Ok(percent) = percent.trim().parse::<f64>() else { continue };
        total += percent;
        let symbol = symbol.trim();
        if symbol.starts_with("[k]") {
            kernel += percent;
        } else if let Some(index) = KINDS.iter().position(|(_, names)| names.iter().any(|name| symbol.contains(name))) {
            shares[index].1 += percent;
        } else {
            other += percent;
        }
    }
    if total < 50.0 {
        return None;
    }
    shares.push(("kernel (sockets, scheduling)", kernel));
    shares.push(("other", other));
    shares.retain(|(_, share)| *share >= 0.5);
    shares.sort_by(|a, b| b.1.total_cmp(&a.1));
    Some(shares.iter().map(|(kind, share)| format!("{kind} {share:.0}%")).collect::<Vec<_>>().join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_summed_by_kind_largest_first() {
        let report = "# Samples: 2K\n\
            #\n\
            \x20   40.00%  [.] curve25519_dalek::backend::vector::avx2::field::FieldElement2625x4::mul\n\
            \x20   20.00%  [k] _raw_spin_unlock_irqrestore\n\
            \x20   15.00%  [.] h2::proto::streams::prioritize::Prioritize::pop_frame\n\
            \x20   10.00%  [.] _mi_page_malloc_zero\n\
            \x20    5.00%  [.] liangma::service::verify::check_text\n\
            \x20   10.00%  [.] 0x00007f0012345678\n";
        assert_eq!(
            summarize(report).unwrap(),
            "signatures 40%, kernel (sockets, scheduling) 20%, HTTP/2 + gRPC 15%, allocator 10%, other 10%, liangma 5%"
        );
        assert_eq!(summarize("# nothing sampled\n"), None);
    }
}
