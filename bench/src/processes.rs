//! The processes of a run: the service, the anchor servers, their CPU time, and Redis's.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};

/// CPU time (user and system) a process has used so far, from `/proc` (Linux).
pub(crate) fn process_cpu(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let fields: Vec<&str> = stat.rsplit_once(')').context("/proc stat")?.1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // USER_HZ is 100 on every Linux the project runs on.
    Ok(Duration::from_millis(ticks * 10))
}

/// CPU time Redis has used so far (main thread and background threads), from `INFO cpu`.
pub(crate) fn redis_cpu(socket: &Path) -> anyhow::Result<Duration> {
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
pub(crate) struct Process(pub(crate) Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `liangma serve` with the Redis store; its log is scanned for warnings and errors.
pub(crate) struct Service {
    pub(crate) _process: Process,
    pub(crate) pid: u32,
    pub(crate) address: SocketAddr,
    pub(crate) problems: Arc<AtomicU64>,
}

impl Service {
    pub(crate) fn start(binary: &Path, data_dir: &Path, redis_url: &str) -> anyhow::Result<Self> {
        Self::start_configured(binary, data_dir, redis_url, "", None)
    }

    /// `liangma serve` with these lines of configuration file (e.g. `[limits]` settings), on
    /// these CPUs only (`taskset -c` list) if given.
    pub(crate) fn start_configured(
        binary: &Path,
        data_dir: &Path,
        redis_url: &str,
        config: &str,
        cpus: Option<&str>,
    ) -> anyhow::Result<Self> {
        let pinned = cpus.map(|cpus| vec!["taskset", "-c", cpus]).unwrap_or_default();
        Self::start_under(&pinned, binary, data_dir, redis_url, config)
    }

    /// `liangma serve` run by `wrapper` (e.g. `taskset -c 0`, or valgrind), if not empty.
    pub(crate) fn start_under(
        wrapper: &[&str],
        binary: &Path,
        data_dir: &Path,
        redis_url: &str,
        config: &str,
    ) -> anyhow::Result<Self> {
        // Read by the process at start, before this function returns: the next service may reuse it.
        let config_path = data_dir.join("bench-service.toml");
        std::fs::create_dir_all(data_dir)?;
        std::fs::write(&config_path, config)?;
        let mut child = wrapped(wrapper, binary)
            .arg("serve")
            .env("LIANGMA_CONFIG", &config_path)
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

    pub(crate) fn problems(&self) -> u64 {
        self.problems.load(Ordering::Relaxed)
    }
}

/// A command running `binary` under `wrapper`'s program and arguments, or directly.
fn wrapped(wrapper: &[&str], binary: &Path) -> Command {
    match wrapper.split_first() {
        Some((program, arguments)) => {
            let mut command = Command::new(program);
            command.args(arguments).arg(binary);
            command
        }
        None => Command::new(binary),
    }
}

/// Restricts every thread of process `pid` to these CPUs (`taskset -c` list).
pub(crate) fn pin(pid: u32, cpus: &str) -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("running taskset (util-linux)")?;
    ensure!(status.success(), "taskset -p {cpus} {pid} failed");
    Ok(())
}

/// Writes a quota into a new cgroup's directory.
type SetQuota<'a> = dyn Fn(&Path) -> std::io::Result<()> + 'a;

/// A CPU quota on one process (a cgroup of its own); the process returns to the root group and
/// the group is removed when dropped.
pub(crate) struct CpuQuota {
    group: std::path::PathBuf,
    root_procs: std::path::PathBuf,
    pid: u32,
}

impl CpuQuota {
    /// Limits process `pid` (all its threads) to `percent` of one CPU, through cgroup v2
    /// (`cpu.max`) or v1 (`cpu.cfs_quota_us`); `None` where neither may be written.
    pub(crate) fn limit(pid: u32, percent: u32) -> Option<Self> {
        let name = format!("liangma-bench-{}", std::process::id());
        // A short period, so that a node out of quota stalls for milliseconds, not tens of them.
        let period = 10_000u32;
        let quota = period / 100 * percent;
        let attempts: [(&str, &SetQuota<'_>); 2] = [
            ("/sys/fs/cgroup", &|group| std::fs::write(group.join("cpu.max"), format!("{quota} {period}"))),
            ("/sys/fs/cgroup/cpu", &|group| {
                std::fs::write(group.join("cpu.cfs_period_us"), period.to_string())?;
                std::fs::write(group.join("cpu.cfs_quota_us"), quota.to_string())
            }),
        ];
        for (root, set_quota) in attempts {
            let root = Path::new(root);
            // Only a mounted cgroup hierarchy has this file (on a v1 host /sys/fs/cgroup is a
            // tmpfs, where writing "cpu.max" would merely make a file).
            if !root.join("cgroup.procs").exists() {
                continue;
            }
            let group = root.join(&name);
            let joined = std::fs::create_dir(&group)
                .and_then(|()| set_quota(&group))
                .and_then(|()| std::fs::write(group.join("cgroup.procs"), pid.to_string()));
            if joined.is_ok() {
                return Some(Self { group, root_procs: root.join("cgroup.procs"), pid });
            }
            let _ = std::fs::remove_dir(&group);
        }
        None
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.root_procs, self.pid.to_string());
        let _ = std::fs::remove_dir(&self.group);
    }
}

/// One `bench_anchor` process.
pub(crate) struct Anchor {
    pub(crate) process: Process,
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) stdout: BufReader<ChildStdout>,
    pub(crate) address: SocketAddr,
}

impl Anchor {
    pub(crate) fn start(binary: &Path, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_under(&[], binary, args)
    }

    /// [`Anchor::start`] run by `wrapper` (e.g. valgrind), if not empty.
    pub(crate) fn start_under(wrapper: &[&str], binary: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut child = wrapped(wrapper, binary)
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

    pub(crate) fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// Stops the anchor; returns how many correct answers and errors it gave.
    pub(crate) fn finish(mut self) -> anyhow::Result<(u64, u64)> {
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

/// `liangma` and `bench-anchor`, built beside this binary by bench/run.
pub(crate) fn binaries() -> anyhow::Result<(PathBuf, PathBuf)> {
    let folder = std::env::current_exe()?.parent().context("executable folder")?.to_path_buf();
    let liangma = folder.join("liangma");
    let anchor = folder.join("bench-anchor");
    for binary in [&liangma, &anchor] {
        ensure!(binary.exists(), "{} is missing: run bench/run, which builds it", binary.display());
    }
    Ok((liangma, anchor))
}
