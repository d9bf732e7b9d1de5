//! Logs written to stderr by a thread of their own that never blocks a caller: when the output falls behind, lines are dropped and counted, and the next line written says how many.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::config::LogFormat;

/// How long the writer lets lines gather after writing more than one: lines reach the log at
/// most this much later, and at 50,000 calls per second that is 100 of the 16,384 lines
/// `log_queue_lines` queues by default.
const GATHER_UNDER_LOAD: Duration = Duration::from_millis(2);

enum Message {
    Line(Vec<u8>),
    /// Write what is queued, flush, and stop.
    Finish,
}

/// A handle that queues each formatted event (tracing writes one event per `write`).
#[derive(Clone)]
pub struct LogQueue {
    sender: Sender<Message>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for LogQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogQueue").field("dropped", &self.dropped.load(Ordering::Relaxed)).finish()
    }
}

impl Write for LogQueue {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        match self.sender.try_send(Message::Line(line.to_vec())) {
            Ok(()) => {}
            // Full: the output is slower than the service. Waiting would stall every call that
            // logs (a stalled reader of stderr froze the service); losing a line does not.
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Flushes the queue when dropped (at exit), waiting at most two seconds for a slow output.
#[derive(Debug)]
pub struct FlushOnDrop {
    sender: Sender<Message>,
    done: Receiver<()>,
}

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        if self.sender.send_timeout(Message::Finish, Duration::from_secs(2)).is_ok() {
            let _ = self.done.recv_timeout(Duration::from_secs(2));
        }
    }
}

/// Starts the writer thread for `output`, with room for `capacity` queued lines.
pub fn start(
    output: impl Write + Send + 'static,
    capacity: usize,
    format: LogFormat,
) -> io::Result<(LogQueue, FlushOnDrop)> {
    let (sender, receiver) = crossbeam_channel::bounded(capacity);
    let (done_sender, done) = crossbeam_channel::bounded(1);
    let dropped = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&dropped);
    std::thread::Builder::new().name("liangma-log".into()).spawn(move || {
        // Batched: a write per line would be a system call per verification (docs/performance.md).
        let mut output = io::BufWriter::with_capacity(64 * 1024, output);
        // Parks when idle, so a lone line is written at once.
        'lines: while let Ok(first) = receiver.recv() {
            let mut lines = 0;
            for message in std::iter::once(first).chain(receiver.try_iter()) {
                let line = match message {
                    Message::Line(line) => line,
                    Message::Finish => break 'lines,
                };
                report_dropped(&mut output, &counter, format);
                let _ = output.write_all(&line);
                lines += 1;
            }
            let _ = output.flush();
            // Under load, let the next lines gather instead of waking for each: writing as they
            // came cost an issuance 0.63 writes and 0.54 scheduler yields (strace).
            if lines > 1 {
                std::thread::sleep(GATHER_UNDER_LOAD);
            }
        }
        report_dropped(&mut output, &counter, format);
        let _ = output.flush();
        let _ = done_sender.send(());
    })?;
    Ok((LogQueue { sender: sender.clone(), dropped }, FlushOnDrop { sender, done }))
}

/// Writes the line reporting lines lost since the last report, if any were.
fn report_dropped(output: &mut impl Write, counter: &AtomicU64, format: LogFormat) {
    let lost = counter.swap(0, Ordering::Relaxed);
    if lost > 0 {
        let _ = output.write_all(dropped_notice(lost, format).as_bytes());
    }
}

/// The line that reports lost lines, in the format of the other lines (their timestamp too).
fn dropped_notice(count: u64, format: LogFormat) -> String {
    let mut now = String::new();
    let _ = crate::json_log::write_timestamp(&mut now, std::time::SystemTime::now());
    let message = "log lines dropped: the log output was slower than the service";
    match format {
        LogFormat::Text => format!("{now}  WARN liangma::logging: {message} dropped={count}\n"),
        LogFormat::Json => format!(
            "{{\"timestamp\":\"{now}\",\"level\":\"WARN\",\"fields\":{{\"message\":\"{message}\",\"dropped\":{count}}},\"target\":\"liangma::logging\"}}\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output that accepts nothing until released, like a pipe nobody reads.
    struct Stalled(Receiver<()>, Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Stalled {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let _ = self.0.recv();
            self.1.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_output_drops_and_counts_lines_and_never_blocks_the_writer() {
        let (release, released) = crossbeam_channel::unbounded();
        let written = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (mut queue, flush) = start(Stalled(released, Arc::clone(&written)), 4, LogFormat::Json).unwrap();
        let started = std::time::Instant::now();
        for index in 0..10_000 {
            queue.write_all(format!("line {index}\n").as_bytes()).unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(5), "writing never waits for the output");
        for _ in 0..100_000 {
            let _ = release.send(());
        }
        drop(flush);
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        let notices: Vec<serde_json::Value> = text
            .lines()
            .filter(|line| line.contains("log lines dropped"))
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert!(!notices.is_empty(), "the loss is reported");
        let dropped: u64 = notices.iter().map(|notice| notice["fields"]["dropped"].as_u64().unwrap()).sum();
        let kept = text.lines().filter(|line| line.starts_with("line ")).count() as u64;
        assert_eq!(kept + dropped, 10_000, "every line is written or counted");
    }
}
