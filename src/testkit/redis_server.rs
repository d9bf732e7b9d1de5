//! A private `redis-server` on a unix socket in a temp folder, killed on drop, for the tests and the load harness.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private redis-server listening on a unix socket only.
#[derive(Debug)]
pub struct RedisServer {
    dir: tempfile::TempDir,
    child: Option<Child>,
    settings: Vec<String>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts with these settings after the defaults (no persistence), which they override:
    /// e.g. `["--appendonly", "yes", "--appendfsync", "always"]`. Files go to a temp folder on
    /// the disk of `std::env::temp_dir()`.
    pub fn start_with(settings: &[&str]) -> Self {
        let settings = settings.iter().map(|setting| (*setting).to_owned()).collect();
        let mut server = Self { dir: tempfile::tempdir().unwrap(), child: None, settings };
        server.restart();
        server
    }

    /// Starts from a backup: `rdb` (as `redis-cli --rdb` writes it) becomes the new server's
    /// `dump.rdb` before it starts.
    pub fn start_from_backup(rdb: &std::path::Path) -> Self {
        let mut server = Self { dir: tempfile::tempdir().unwrap(), child: None, settings: Vec::new() };
        std::fs::copy(rdb, server.dir.path().join("dump.rdb")).unwrap();
        server.restart();
        server
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// Starts (again) on the same socket, and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            // `redis-cli --rdb` and replicas get their copy at once, not after 5 s.
            .args(["--repl-diskless-sync-delay", "0"])
            .args(["--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .args(&self.settings)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut socket) = std::os::unix::net::UnixStream::connect(self.socket()) {
                use std::io::{Read, Write};
                let mut reply = [0u8; 7];
                if socket.write_all(b"PING\r\n").is_ok()
                    && socket.read_exact(&mut reply).is_ok()
                    && &reply == b"+PONG\r\n"
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start");
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT); it then runs what it received meanwhile.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success());
    }

    /// Runs `redis-cli` with `args` against this server; its standard output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli").arg("-s").arg(self.socket()).args(args).output().unwrap();
        assert!(output.status.success(), "redis-cli {args:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// Starts `redis-cli MONITOR`; [`Monitor::client_commands`] then lists the commands
    /// clients sent (commands run inside scripts are marked `lua` by Redis and left out).
    pub fn monitor(&self) -> Monitor {
        use std::io::BufRead;
        let mut child = Command::new("redis-cli")
            .arg("-s")
            .arg(self.socket())
            .arg("MONITOR")
            .stdout(Stdio::piped())
            .spawn()
            .expect("redis-cli is installed with redis-server");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "OK");
        let reader = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
        Monitor { child, reader }
    }
}

#[derive(Debug)]
pub struct Monitor {
    child: Child,
    reader: std::thread::JoinHandle<Vec<String>>,
}

impl Monitor {
    pub fn client_commands(mut self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(200));
        let _ = self.child.kill();
        let _ = self.child.wait();
        let lines = self.reader.join().unwrap();
        lines
            .into_iter()
            .filter(|line| !line.contains(" lua]"))
            .filter_map(|line| line.split_once("] ").map(|(_, command)| command.to_owned()))
            .collect()
    }

    /// The names of the clients' commands in order, without the health checks' `PING`s.
    pub fn command_names(self) -> Vec<String> {
        self.client_commands()
            .iter()
            .filter_map(|command| command.split('"').nth(1))
            .filter(|name| *name != "PING")
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One field of Redis's `INFO` output, e.g. `("memory", "used_memory")`, or a command's call
/// count with `("commandstats", "cmdstat_evalsha")`.
pub fn info_field(socket: &std::path::Path, section: &str, field: &str) -> u64 {
    let output = Command::new("redis-cli").arg("-s").arg(socket).args(["INFO", section]).output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let value = text.lines().find_map(|line| line.strip_prefix(&format!("{field}:"))).unwrap_or("0");
    // commandstats lines read `calls=N,usec=…`.
    let value = value.strip_prefix("calls=").map_or(value, |rest| rest.split(',').next().unwrap_or("0"));
    value.trim().parse().unwrap_or(0)
}
