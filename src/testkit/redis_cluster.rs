//! Private Redis Clusters and Sentinel groups on loopback, killed on drop, for the store's tests.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `redis-server` process on a loopback TCP port.
#[derive(Debug)]
struct Node {
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl Node {
    fn start(dir: &Path, port: u16, extra: &[&str]) -> Self {
        let node_dir = dir.join(port.to_string());
        std::fs::create_dir_all(&node_dir).unwrap();
        let mut args: Vec<String> = [
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            // Replicas sync at once, not after the default 5 s wait for more replicas.
            "--repl-diskless-sync-delay",
            "0",
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(["--dir".to_owned(), node_dir.to_str().unwrap().to_owned()]);
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let mut node = Self { port, args, child: None };
        node.restart();
        node
    }

    /// Starts (again) with the same arguments; waits until it answers.
    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        self.child = Some(child);
        wait_until(Duration::from_secs(10), "redis-server answering", || {
            self.cli(&["PING"]).as_deref() == Some("PONG")
        });
    }

    fn replica_in_sync(&self) -> bool {
        self.cli(&["INFO", "replication"])
            .is_some_and(|info| info.contains("role:slave") && info.contains("master_link_status:up"))
    }

    /// `redis-cli` against this node; its standard output, trimmed, or None if it failed.
    fn cli(&self, args: &[&str]) -> Option<String> {
        let output = Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        assert!(Command::new("kill").args([signal, &pid]).status().unwrap().success());
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// A free loopback port whose cluster bus port (+10000) is free too.
fn free_port_pair() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A Redis Cluster of `masters` masters, each with `replicas_per_master` replicas.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts the nodes, joins them with `redis-cli --cluster create`, and waits until every
    /// slot is served and every replica is in sync. A node is declared failed after 1 s.
    pub fn start(masters: usize, replicas_per_master: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let count = masters * (1 + replicas_per_master);
        let settings = ["--cluster-enabled", "yes", "--cluster-node-timeout", "1000", "--cluster-config-file"];
        let nodes: Vec<Node> = (0..count)
            .map(|_| {
                let port = free_port_pair();
                let config_file = dir.path().join(format!("nodes-{port}.conf"));
                let mut args = settings.to_vec();
                args.push(config_file.to_str().unwrap());
                Node::start(dir.path(), port, &args)
            })
            .collect();
        let addresses: Vec<String> = nodes.iter().map(|node| format!("127.0.0.1:{}", node.port)).collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas_per_master.to_string(), "--cluster-yes"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(output.status.success(), "redis-cli --cluster create: {}", String::from_utf8_lossy(&output.stdout));
        let cluster = Self { nodes, _dir: dir };
        cluster.wait_until_healthy(masters * replicas_per_master);
        cluster
    }

    fn wait_until_healthy(&self, replicas: usize) {
        wait_until(Duration::from_secs(30), "the cluster to serve every slot with its replicas in sync", || {
            let live: Vec<&Node> = self.nodes.iter().filter(|node| node.child.is_some()).collect();
            let all_ok = live
                .iter()
                .all(|node| node.cli(&["CLUSTER", "INFO"]).is_some_and(|info| info.contains("cluster_state:ok")));
            let in_sync = live.iter().filter(|node| node.replica_in_sync()).count();
            all_ok && in_sync >= replicas
        });
    }

    /// URLs of the nodes still running, for the store's `redis_nodes`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|node| node.child.is_some())
            .map(|node| format!("redis://127.0.0.1:{}", node.port))
            .collect()
    }

    fn first_live(&self) -> &Node {
        self.nodes.iter().find(|node| node.child.is_some()).expect("a node runs")
    }

    /// The port of the master now serving `key`'s slot.
    pub fn master_port_of(&self, key: &str) -> u16 {
        let node = self.first_live();
        let slot: u16 = node.cli(&["CLUSTER", "KEYSLOT", key]).unwrap().parse().unwrap();
        // CLUSTER NODES: `<id> <ip:port@bus> <flags> <master> … <slot ranges>`.
        let nodes = node.cli(&["CLUSTER", "NODES"]).unwrap();
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (low, high) = range.split_once('-').unwrap_or((range, range));
                matches!((low.parse::<u16>(), high.parse::<u16>()), (Ok(low), Ok(high)) if (low..=high).contains(&slot))
            });
            if serves {
                let address = fields[1].split('@').next().unwrap();
                return address.rsplit(':').next().unwrap().parse().unwrap();
            }
        }
        panic!("no master serves slot {slot}");
    }

    /// Kills the master on `port` (SIGKILL: no goodbye to the cluster), waits until its
    /// replica has taken over and the cluster serves every slot again, then starts the killed
    /// node again (as an operator would), which rejoins as the new master's replica.
    pub fn kill_and_fail_over(&mut self, port: u16) {
        let index = self.nodes.iter().position(|node| node.port == port).expect("a node of this cluster");
        self.nodes[index].kill();
        wait_until(Duration::from_secs(30), "a replica to take over", || {
            let live: Vec<&Node> = self.nodes.iter().filter(|node| node.child.is_some()).collect();
            // The victim flagged FAIL (not just suspected, `fail?`) and serving no slot: its
            // replica won the election. Restarting it earlier would bring it back empty and
            // make its replica copy the emptiness.
            let promoted = live.iter().any(|node| {
                node.cli(&["CLUSTER", "NODES"]).is_some_and(|nodes| {
                    nodes.lines().any(|line| {
                        let fields: Vec<&str> = line.split_whitespace().collect();
                        fields.get(1).is_some_and(|address| address.contains(&format!(":{port}@")))
                            && fields.get(2).is_some_and(|flags| flags.split(',').any(|flag| flag == "fail"))
                            && fields.len() == 8
                    })
                })
            });
            promoted
                && live
                    .iter()
                    .all(|node| node.cli(&["CLUSTER", "INFO"]).is_some_and(|info| info.contains("cluster_state:ok")))
        });
        self.nodes[index].restart();
        wait_until(Duration::from_secs(30), "the old master to rejoin as a replica", || {
            self.nodes[index].replica_in_sync()
        });
    }
}

/// A master, its replica, and one Sentinel (quorum 1) watching them as `liangma`.
#[derive(Debug)]
pub struct RedisSentinel {
    master: Node,
    replica: Node,
    sentinel: Node,
    _dir: tempfile::TempDir,
}

impl RedisSentinel {
    pub const MASTER_NAME: &str = "liangma";

    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let master = Node::start(dir.path(), free_port_pair(), &[]);
        let master_port = master.port.to_string();
        let replica = Node::start(dir.path(), free_port_pair(), &["--replicaof", "127.0.0.1", &master_port]);
        wait_until(Duration::from_secs(10), "the replica in sync", || {
            replica.cli(&["INFO", "replication"]).is_some_and(|info| info.contains("master_link_status:up"))
        });
        let sentinel_port = free_port_pair();
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {sentinel_port}\nbind 127.0.0.1\nsentinel monitor {name} 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds {name} 1000\nsentinel failover-timeout {name} 5000\n",
                name = Self::MASTER_NAME
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs as a Sentinel");
        let sentinel = Node { port: sentinel_port, args: Vec::new(), child: Some(child) };
        wait_until(Duration::from_secs(10), "Sentinel to see the replica", || {
            sentinel
                .cli(&["SENTINEL", "REPLICAS", Self::MASTER_NAME])
                .is_some_and(|replicas| replicas.contains(&replica.port.to_string()))
        });
        Self { master, replica, sentinel, _dir: dir }
    }

    /// The Sentinel's URL, for the store's `redis_nodes`.
    pub fn sentinel_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.sentinel.port)
    }

    /// Freezes the replica (SIGSTOP): it stays connected and acknowledges nothing.
    pub fn freeze_replica(&self) {
        self.replica.signal("-STOP");
    }

    /// Lets a frozen replica go on (SIGCONT).
    pub fn thaw_replica(&self) {
        self.replica.signal("-CONT");
    }

    /// Kills the master (SIGKILL), waits until Sentinel has promoted the replica, then starts
    /// the old master again as the new master's replica (as an operator would).
    pub fn kill_master_and_fail_over(&mut self) {
        self.master.kill();
        let replica_port = self.replica.port.to_string();
        wait_until(Duration::from_secs(30), "Sentinel to promote the replica", || {
            self.sentinel
                .cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", Self::MASTER_NAME])
                .is_some_and(|address| address.lines().nth(1) == Some(replica_port.as_str()))
                && self.replica.cli(&["ROLE"]).is_some_and(|role| role.starts_with("master"))
        });
        self.master.args.extend(["--replicaof".to_owned(), "127.0.0.1".to_owned(), replica_port]);
        self.master.restart();
        wait_until(Duration::from_secs(30), "the old master to follow the new one", || self.master.replica_in_sync());
        std::mem::swap(&mut self.master, &mut self.replica);
    }
}
