//! Typed configuration: a TOML file (every field optional, defaults below) plus `LIANGMA_*` environment overrides.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::code::{CentreCode, Purpose};

/// The whole configuration. With no file and no environment, the embedded default: listen on
/// 127.0.0.1:50051 as Shenzhen (440300), memory store, dev keys for Jiaozuo (410800) and
/// Shenzhen kept in `./liangma-data`, sample members published at start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:50051`. Env `LIANGMA_LISTEN`.
    pub listen: SocketAddr,
    /// Without `[tls]` the service speaks plaintext gRPC; off loopback that needs this explicit
    /// `true` (behind a TLS-terminating proxy or on a closed network), and the service says so
    /// loudly at start. Default false: a non-loopback plaintext `listen` is refused. Env
    /// `LIANGMA_INSECURE_PLAINTEXT` (`true`/`false`).
    pub insecure_plaintext: bool,
    /// Mutual TLS: this node's certificate, and the CA whose client certificates name callers.
    /// Default: none (plaintext; loopback only unless `insecure_plaintext`).
    pub tls: Option<TlsConfig>,
    /// Membership of a network of centres: the directory to follow and how to reach other
    /// centres' nodes. Default: none (a single node that consumes every code in its own store).
    pub federation: Option<FederationConfig>,
    /// This node is the trust directory (the national platform's role). Default: none.
    pub directory: Option<DirectoryConfig>,
    /// Address of the Prometheus endpoint (`/metrics`, plaintext; no personal data in it).
    /// Default: none (no endpoint). Env `LIANGMA_METRICS_LISTEN`.
    pub metrics_listen: Option<SocketAddr>,
    /// OpenTelemetry export of spans; none: no export.
    pub telemetry: Option<TelemetryConfig>,
    /// This deployment's centre as a verifier (matched against codes' audience). Default
    /// `440300`. Env `LIANGMA_CENTRE`.
    pub centre: CentreCode,
    /// Purposes this deployment's counters serve. Default: all.
    pub purposes: Vec<Purpose>,
    /// Accepted clock skew for codes issued in the verifier's future, seconds. Default 300.
    pub clock_skew_secs: u32,
    /// Folder for dev keys and the dev trust list. Default `liangma-data`. Env `LIANGMA_DATA_DIR`.
    pub data_dir: PathBuf,
    /// Trust list file. Default: none, which selects the embedded dev setup (a trust list in
    /// `data_dir`). Env `LIANGMA_TRUST_LIST`.
    pub trust_list: Option<PathBuf>,
    /// Centres this deployment issues codes for. Default: none (dev setup: Jiaozuo and Shenzhen).
    pub issuers: Vec<IssuerConfig>,
    /// Publish a few sample members at start. Default: true only in the dev setup.
    pub sample_members: Option<bool>,
    /// Loan policy for off-site loan evaluation: a built-in name (`jiaozuo-2024`,
    /// `jiaozuo-before-2024`) or a policy file (docs/loan-policy.md). Default `jiaozuo-2024`.
    /// Env `LIANGMA_LOAN_POLICY`.
    pub loan_policy: String,
    /// Storage.
    pub store: StoreConfig,
    /// Limits.
    pub limits: LimitsConfig,
    /// Log output: `text` or `json`. Default `text`. Env `LIANGMA_LOG_FORMAT`; the level
    /// filter is `LIANGMA_LOG` (default `info`).
    pub log_format: LogFormat,
    /// Log lines queued for the writer thread; when the output is slower than the service and
    /// the queue is full, lines are dropped and counted (never waited for). Default 16384.
    pub log_queue_lines: usize,
}

/// One centre this deployment signs for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The centre.
    pub centre: CentreCode,
    /// Its signing key (PKCS#8 PEM), published in the trust list.
    pub signing_key: PathBuf,
    /// Its subject secret file.
    pub subject_secret: PathBuf,
}

/// Mutual TLS on the listener and towards other nodes (docs/federation.md §"Certificates").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// This node's certificate chain (PEM), presented to clients and to the nodes it calls.
    pub certificate: PathBuf,
    /// Its private key (PEM).
    pub private_key: PathBuf,
    /// The CA certificate(s) (PEM) that issue callers' and other nodes' certificates.
    pub ca: PathBuf,
}

/// Following a trust directory and consuming codes at their issuers' nodes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    /// The directory's address, `https://host:port`.
    pub directory_url: String,
    /// The directory's ed25519 public key, 64 hex digits: the only key its lists are accepted under.
    pub directory_public_key: String,
    /// Seconds between fetches of the directory's list. Default 15.
    #[serde(default = "default_refresh_secs")]
    pub refresh_interval_secs: u64,
    /// Longest wait for another node's answer, milliseconds. Default 1000.
    #[serde(default = "default_remote_timeout_ms")]
    pub remote_timeout_ms: u64,
    /// Failed calls in a row after which a node is not called for `breaker_open_secs`. Default 3.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long calls to a failing node are answered at once without trying. Default 10.
    #[serde(default = "default_breaker_open_secs")]
    pub breaker_open_secs: u64,
    /// Where the last accepted list is kept, so that a restart neither waits for the directory
    /// nor accepts an older list. Default `<data_dir>/signed-trust-list.json`.
    #[serde(default)]
    pub list_cache: Option<PathBuf>,
    /// Purposes whose codes this centre accepts on the offline checks alone when the issuer's
    /// node does not answer (VERIFIED_OFFLINE), consuming them when it answers again; this
    /// centre carries the risk of a double use. Default: none (fail closed).
    #[serde(default)]
    pub deferred_purposes: Vec<Purpose>,
}

fn default_refresh_secs() -> u64 {
    15
}
fn default_remote_timeout_ms() -> u64 {
    1000
}
fn default_breaker_failures() -> u32 {
    3
}
fn default_breaker_open_secs() -> u64 {
    10
}

/// The trust directory's own settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// The directory's signing key (PKCS#8 PEM), kept offline-grade: it vouches for every centre.
    pub signing_key: PathBuf,
    /// The signed list in force, rewritten (atomically) at every change and re-signing; it is
    /// also the sequence floor: a restarted directory never signs a lower sequence.
    pub state: PathBuf,
    /// Trust list that seeds the first signed list when `state` does not exist yet.
    pub initial_trust_list: PathBuf,
    /// Seconds from signing to `next_update`; the list is re-signed when half of it has
    /// passed. Default 60.
    #[serde(default = "default_next_update_secs")]
    pub next_update_secs: u64,
    /// Seconds from signing to expiry. Default 86400.
    #[serde(default = "default_validity_secs")]
    pub validity_secs: u64,
    /// Signing window of a key added through SubmitKeyChange, days. Default 365.
    #[serde(default = "default_key_validity_days")]
    pub key_validity_days: u64,
}

fn default_next_update_secs() -> u64 {
    60
}
fn default_validity_secs() -> u64 {
    86_400
}
fn default_key_validity_days() -> u64 {
    365
}

/// Which store, and how to reach Redis.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `memory` (default; state is lost on restart) or `redis`. Env `LIANGMA_STORE`.
    pub backend: StoreBackend,
    /// `standalone` (default: one server at `redis_url`), `cluster` (a Redis Cluster found
    /// through `redis_nodes`) or `sentinel` (the master `sentinel_master`, asked of the
    /// Sentinels in `redis_nodes`). Env `LIANGMA_REDIS_TOPOLOGY`.
    pub redis_topology: RedisTopologyKind,
    /// Redis URL of a standalone server. Default `redis://127.0.0.1:6379`. Env
    /// `LIANGMA_REDIS_URL`. With Sentinel, only its user, password and database are used, to
    /// reach the master.
    pub redis_url: String,
    /// Cluster nodes or Sentinels to start from, as `redis://[:password@]host:port` URLs.
    /// Env `LIANGMA_REDIS_NODES`, comma-separated.
    pub redis_nodes: Vec<String>,
    /// The name Sentinel knows the master by. Default `liangma`.
    pub sentinel_master: String,
    /// Replicas that must hold a code's used mark before the verification answers VALID (Redis
    /// `WAIT`, at most half of `timeout_ms`; fewer in time → UNAVAILABLE, and a retry of the
    /// same request answers VALID once they do). Set to 1 with a replica per master so that a
    /// failover cannot lose a mark. Default 0.
    pub used_mark_replicas: u32,
    /// Prefix of every Redis key. Default `lm`.
    pub key_prefix: String,
    /// Longest wait for one store operation (a Redis round trip, reconnecting included),
    /// milliseconds; past it the call answers UNAVAILABLE. Default 500.
    pub timeout_ms: u64,
    /// How often health checks that the store answers, milliseconds. Default 1000.
    pub check_interval_ms: u64,
    /// Days a usage record entry is kept and shown; a member's whole record expires this long
    /// after its latest entry. Default 365.
    pub usage_retention_days: u32,
}

/// Storage backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreBackend {
    /// In-process maps.
    Memory,
    /// Redis: one server, a Redis Cluster or a Sentinel-watched master (`redis_topology`).
    Redis,
}

/// OpenTelemetry export (`[telemetry]`): spans of calls, Redis operations and calls to other
/// nodes, sent over OTLP/gRPC. They carry RPC names, status codes, verdicts and centre codes,
/// never a member's data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector, `http://host:4317` (OTLP over gRPC, plaintext: a collector agent on the
    /// node or its network). Env `LIANGMA_OTLP_ENDPOINT` (which also turns export on).
    pub otlp_endpoint: String,
    /// Share of calls traced, 0 to 1, decided per call (a traced call has all its spans).
    /// Default 0.01.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// `service.name` of the spans. Default `liangma`.
    #[serde(default = "default_service_name")]
    pub service_name: String,
}

fn default_sample_ratio() -> f64 {
    0.01
}
fn default_service_name() -> String {
    "liangma".into()
}

/// How Redis is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedisTopologyKind {
    /// One server (or a proxy in front of several).
    Standalone,
    /// Redis Cluster.
    Cluster,
    /// A master and replicas watched by Redis Sentinel.
    Sentinel,
}

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request message of any service, bytes. Default 262144 (a publish batch of 1000
    /// records fits).
    pub max_message_bytes: usize,
    /// Open connections at once; further ones are closed as soon as accepted. Default 1024.
    pub max_connections: usize,
    /// HTTP/2 streams a client may open at once on one connection. Default 128.
    pub max_streams_per_connection: u32,
    /// Calls of one connection handled at once; its other streams wait. Default 64.
    pub max_calls_per_connection: usize,
    /// Longest time one call may take, reading its request included; then DEADLINE_EXCEEDED.
    /// Default 10000.
    pub request_timeout_ms: u64,
    /// Time from accepting a connection to the client's HTTP/2 preface; a silent client is
    /// disconnected. Default 10000.
    pub handshake_timeout_ms: u64,
    /// A connection with no call in flight for this long is closed. Default 300.
    pub idle_timeout_secs: u64,
    /// HTTP/2 ping interval, and how long a ping may go unanswered before the connection is
    /// closed. Default 30.
    pub http2_keepalive_secs: u64,
    /// Idle time before the kernel's TCP keepalive probes a silent peer. Default 60.
    pub tcp_keepalive_secs: u64,
    /// Most records per publish call. Default 1000.
    pub max_publish_batch: usize,
    /// Largest step by which a published record's version may exceed the stored one; a record
    /// further ahead is refused (VERSION_STEP_TOO_LARGE) so that one forged or mistyped version
    /// cannot pin a member's record. Default 2^36 (about two years of millisecond timestamps).
    pub max_version_step: u64,
    /// Longest code lifetime, seconds (codes also end at 24:00 CST). Default 86400.
    pub code_lifetime_secs: u32,
    /// Grace period for in-flight calls at shutdown, seconds. Default 10.
    pub shutdown_grace_secs: u64,
    /// Serving threads, each a single-threaded runtime that serves whole connections with a
    /// Redis connection of its own; 0 (the default) = one per CPU.
    pub serving_threads: usize,
    /// QR images rendered at once on the blocking pool. Default: the number of CPUs.
    pub qr_render_concurrency: usize,
    /// Verifications (with loan evaluations, lookups and other nodes' consumptions) running at
    /// once; more are refused with RESOURCE_EXHAUSTED. Default 2048.
    pub verify_concurrency: usize,
    /// Issuances (QR rendering) running at once; refused first, and all of them while
    /// verification uses more than half its room. Default 512.
    pub issue_concurrency: usize,
    /// Publish batches running at once; refused like issuances. Default 16.
    pub publish_concurrency: usize,
    /// Verifications by digits one caller (certificate grants and address) may make per
    /// minute; a guesser is refused and logged. Default 30.
    pub digits_per_minute: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            insecure_plaintext: false,
            tls: None,
            federation: None,
            directory: None,
            metrics_listen: None,
            telemetry: None,
            centre: CentreCode::new(440300).expect("valid"),
            purposes: Purpose::ALL.to_vec(),
            clock_skew_secs: crate::verify::DEFAULT_CLOCK_SKEW_SECONDS,
            data_dir: PathBuf::from("liangma-data"),
            trust_list: None,
            issuers: Vec::new(),
            sample_members: None,
            loan_policy: "jiaozuo-2024".into(),
            store: StoreConfig::default(),
            limits: LimitsConfig::default(),
            log_format: LogFormat::Text,
            log_queue_lines: 16_384,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Memory,
            redis_topology: RedisTopologyKind::Standalone,
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_nodes: Vec::new(),
            sentinel_master: "liangma".into(),
            used_mark_replicas: 0,
            key_prefix: "lm".into(),
            timeout_ms: 500,
            check_interval_ms: 1000,
            usage_retention_days: 365,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 256 * 1024,
            max_connections: 1024,
            max_streams_per_connection: 128,
            max_calls_per_connection: 64,
            request_timeout_ms: 10_000,
            handshake_timeout_ms: 10_000,
            idle_timeout_secs: 300,
            http2_keepalive_secs: 30,
            tcp_keepalive_secs: 60,
            max_publish_batch: 1000,
            max_version_step: 1 << 36,
            code_lifetime_secs: 86_400,
            shutdown_grace_secs: 10,
            serving_threads: 0,
            qr_render_concurrency: std::thread::available_parallelism().map_or(2, usize::from),
            verify_concurrency: 2048,
            issue_concurrency: 512,
            publish_concurrency: 16,
            digits_per_minute: 30,
        }
    }
}

/// A configuration problem, naming the file or variable and the field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// Every environment variable `liangma serve` reads: the configuration file's path, the log
/// level filter, and the overrides applied by [`Config::load`].
pub const ENVIRONMENT: [&str; 15] = [
    "LIANGMA_CONFIG",
    "LIANGMA_LOG",
    "LIANGMA_LISTEN",
    "LIANGMA_INSECURE_PLAINTEXT",
    "LIANGMA_METRICS_LISTEN",
    "LIANGMA_OTLP_ENDPOINT",
    "LIANGMA_CENTRE",
    "LIANGMA_DATA_DIR",
    "LIANGMA_TRUST_LIST",
    "LIANGMA_STORE",
    "LIANGMA_REDIS_URL",
    "LIANGMA_REDIS_TOPOLOGY",
    "LIANGMA_REDIS_NODES",
    "LIANGMA_LOG_FORMAT",
    "LIANGMA_LOAN_POLICY",
];

impl Config {
    /// Reads `path` (if any), then applies environment overrides from `env`.
    pub fn load(path: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = match path {
            None => Config::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))?;
                toml::from_str(&text).map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))?
            }
        };
        fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.parse().map_err(|e| ConfigError(format!("{name}=`{value}`: {e}")))
        }
        if let Some(value) = env("LIANGMA_LISTEN") {
            config.listen = parse("LIANGMA_LISTEN", &value)?;
        }
        if let Some(value) = env("LIANGMA_INSECURE_PLAINTEXT") {
            config.insecure_plaintext = parse("LIANGMA_INSECURE_PLAINTEXT", &value)?;
        }
        if let Some(value) = env("LIANGMA_METRICS_LISTEN") {
            config.metrics_listen = Some(parse("LIANGMA_METRICS_LISTEN", &value)?);
        }
        if let Some(value) = env("LIANGMA_OTLP_ENDPOINT") {
            match &mut config.telemetry {
                Some(telemetry) => telemetry.otlp_endpoint = value,
                None => {
                    config.telemetry = Some(TelemetryConfig {
                        otlp_endpoint: value,
                        sample_ratio: default_sample_ratio(),
                        service_name: default_service_name(),
                    })
                }
            }
        }
        if let Some(value) = env("LIANGMA_CENTRE") {
            config.centre = parse("LIANGMA_CENTRE", &value)?;
        }
        if let Some(value) = env("LIANGMA_DATA_DIR") {
            config.data_dir = PathBuf::from(value);
        }
        if let Some(value) = env("LIANGMA_TRUST_LIST") {
            config.trust_list = Some(PathBuf::from(value));
        }
        if let Some(value) = env("LIANGMA_STORE") {
            config.store.backend = match value.as_str() {
                "memory" => StoreBackend::Memory,
                "redis" => StoreBackend::Redis,
                _ => return Err(ConfigError(format!("LIANGMA_STORE=`{value}`: use `memory` or `redis`"))),
            };
        }
        if let Some(value) = env("LIANGMA_REDIS_URL") {
            config.store.redis_url = value;
        }
        if let Some(value) = env("LIANGMA_REDIS_TOPOLOGY") {
            config.store.redis_topology = match value.as_str() {
                "standalone" => RedisTopologyKind::Standalone,
                "cluster" => RedisTopologyKind::Cluster,
                "sentinel" => RedisTopologyKind::Sentinel,
                _ => {
                    return Err(ConfigError(format!(
                        "LIANGMA_REDIS_TOPOLOGY=`{value}`: use `standalone`, `cluster` or `sentinel`"
                    )));
                }
            };
        }
        if let Some(value) = env("LIANGMA_REDIS_NODES") {
            config.store.redis_nodes =
                value.split(',').map(str::trim).filter(|node| !node.is_empty()).map(str::to_owned).collect();
        }
        if let Some(value) = env("LIANGMA_LOAN_POLICY") {
            config.loan_policy = value;
        }
        if let Some(value) = env("LIANGMA_LOG_FORMAT") {
            config.log_format = match value.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(ConfigError(format!("LIANGMA_LOG_FORMAT=`{value}`: use `text` or `json`"))),
            };
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.listen.ip().is_loopback() && !self.insecure_plaintext && self.tls.is_none() {
            return Err(ConfigError(format!(
                "listen {}: without [tls] the service speaks plaintext gRPC, which off loopback exposes codes, \
                 member statuses and every call to the network; configure [tls], listen on loopback, or set \
                 insecure_plaintext = true (LIANGMA_INSECURE_PLAINTEXT=true) behind a TLS-terminating proxy or \
                 on a closed network",
                self.listen
            )));
        }
        if let Some(federation) = &self.federation {
            if self.tls.is_none() {
                return Err(ConfigError("federation: nodes talk over mutual TLS only; configure [tls]".into()));
            }
            crate::trust::check_node_address(&federation.directory_url)
                .map_err(|problem| ConfigError(format!("federation.directory_url: {problem}")))?;
            self.directory_public_key()?;
            if federation.refresh_interval_secs == 0
                || federation.remote_timeout_ms == 0
                || federation.breaker_failures == 0
            {
                return Err(ConfigError(
                    "federation: refresh_interval_secs, remote_timeout_ms and breaker_failures are at least 1".into(),
                ));
            }
        }
        if let Some(directory) = &self.directory {
            if directory.next_update_secs == 0 || directory.validity_secs < directory.next_update_secs {
                return Err(ConfigError(
                    "directory: next_update_secs at least 1, validity_secs at least next_update_secs".into(),
                ));
            }
            if self.federation.is_some() {
                return Err(ConfigError("directory: a directory node does not also follow a directory".into()));
            }
            if self.trust_list.is_some() {
                return Err(ConfigError("directory: the directory's list is its state file; remove trust_list".into()));
            }
        }
        if self.purposes.is_empty() {
            return Err(ConfigError("purposes: serve at least one purpose".into()));
        }
        if self.is_dev_setup() && !self.issuers.is_empty() {
            return Err(ConfigError(
                "issuers are configured but no trust list source is: give trust_list, [federation] or [directory]"
                    .into(),
            ));
        }
        self.load_loan_policy()?;
        let limits = &self.limits;
        if !(1..=86_400).contains(&limits.code_lifetime_secs) {
            return Err(ConfigError("limits.code_lifetime_secs: between 1 and 86400".into()));
        }
        if limits.max_message_bytes < 1024 || limits.max_publish_batch == 0 || self.store.timeout_ms == 0 {
            return Err(ConfigError(
                "limits.max_message_bytes >= 1024, limits.max_publish_batch >= 1, store.timeout_ms >= 1".into(),
            ));
        }
        let at_least_one = [
            ("limits.max_version_step", limits.max_version_step),
            ("limits.max_connections", limits.max_connections as u64),
            ("limits.verify_concurrency", limits.verify_concurrency as u64),
            ("limits.issue_concurrency", limits.issue_concurrency as u64),
            ("limits.publish_concurrency", limits.publish_concurrency as u64),
            ("limits.digits_per_minute", u64::from(limits.digits_per_minute)),
            ("limits.max_streams_per_connection", u64::from(limits.max_streams_per_connection)),
            ("limits.max_calls_per_connection", limits.max_calls_per_connection as u64),
            ("limits.request_timeout_ms", limits.request_timeout_ms),
            ("limits.handshake_timeout_ms", limits.handshake_timeout_ms),
            ("limits.idle_timeout_secs", limits.idle_timeout_secs),
            ("limits.http2_keepalive_secs", limits.http2_keepalive_secs),
            ("limits.tcp_keepalive_secs", limits.tcp_keepalive_secs),
            ("store.check_interval_ms", self.store.check_interval_ms),
            ("store.usage_retention_days", u64::from(self.store.usage_retention_days)),
        ];
        if self.store.redis_topology != RedisTopologyKind::Standalone && self.store.redis_nodes.is_empty() {
            return Err(ConfigError(
                "store.redis_nodes: list the cluster nodes or Sentinels to start from (redis_topology is not standalone)"
                    .into(),
            ));
        }
        if let Some(telemetry) = &self.telemetry {
            if !telemetry.otlp_endpoint.starts_with("http://") {
                return Err(ConfigError(
                    "telemetry.otlp_endpoint: an http:// address of an OTLP/gRPC collector (e.g. http://127.0.0.1:4317)"
                        .into(),
                ));
            }
            if !(0.0..=1.0).contains(&telemetry.sample_ratio) {
                return Err(ConfigError("telemetry.sample_ratio: between 0 and 1".into()));
            }
        }
        if self.log_queue_lines == 0 {
            return Err(ConfigError("log_queue_lines: at least 1".into()));
        }
        if let Some((field, _)) = at_least_one.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError(format!("{field}: at least 1")));
        }
        Ok(())
    }

    /// The configured loan policy, loaded and validated.
    pub fn load_loan_policy(&self) -> Result<crate::loan::LoanPolicy, ConfigError> {
        crate::loan::LoanPolicy::load(&self.loan_policy).map_err(|e| ConfigError(format!("loan_policy: {e}")))
    }

    /// Whether this is the embedded dev setup (no trust list, directory or federation given).
    pub fn is_dev_setup(&self) -> bool {
        self.trust_list.is_none() && self.federation.is_none() && self.directory.is_none()
    }

    /// The pinned directory key of `[federation]`.
    pub fn directory_public_key(&self) -> Result<Option<ed25519_dalek::VerifyingKey>, ConfigError> {
        let Some(federation) = &self.federation else { return Ok(None) };
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(federation.directory_public_key.trim(), &mut bytes)
            .ok()
            .and_then(|()| ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok())
            .filter(|key| !key.is_weak())
            .map(Some)
            .ok_or_else(|| {
                ConfigError("federation.directory_public_key: not 64 hex digits of an ed25519 public key".into())
            })
    }

    /// How to reach Redis, for the Redis store.
    pub fn redis_settings(&self) -> crate::store::redis::RedisSettings {
        use crate::store::redis::RedisTopology;
        let store = &self.store;
        let topology = match store.redis_topology {
            RedisTopologyKind::Standalone => RedisTopology::Standalone { url: store.redis_url.clone() },
            RedisTopologyKind::Cluster => RedisTopology::Cluster { nodes: store.redis_nodes.clone() },
            RedisTopologyKind::Sentinel => RedisTopology::Sentinel {
                sentinels: store.redis_nodes.clone(),
                master_name: store.sentinel_master.clone(),
                master_credentials: Some(store.redis_url.clone()),
            },
        };
        crate::store::redis::RedisSettings {
            topology,
            key_prefix: store.key_prefix.clone(),
            timeout: Duration::from_millis(store.timeout_ms),
            usage_retention: self.usage_retention(),
            used_mark_replicas: store.used_mark_replicas,
            lanes: crate::lanes::resolve(self.limits.serving_threads),
        }
    }

    /// How long usage record entries are kept.
    pub fn usage_retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.store.usage_retention_days) * 86_400)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_env_overrides_and_errors() {
        let config = Config::load(None, |_| None).unwrap();
        assert_eq!(config.listen.port(), 50051);
        assert!(config.is_dev_setup());
        let env = |name: &str| match name {
            "LIANGMA_STORE" => Some("redis".to_string()),
            "LIANGMA_REDIS_URL" => Some("redis://127.0.0.1:7000".to_string()),
            "LIANGMA_CENTRE" => Some("410800".to_string()),
            _ => None,
        };
        let config = Config::load(None, env).unwrap();
        assert_eq!(config.store.backend, StoreBackend::Redis);
        assert_eq!(config.store.redis_url, "redis://127.0.0.1:7000");
        assert_eq!(config.centre.to_string(), "410800");
        let error = Config::load(None, |name| (name == "LIANGMA_CENTRE").then(|| "4108".to_string())).unwrap_err();
        assert!(error.to_string().contains("LIANGMA_CENTRE"), "{error}");
    }

    #[test]
    fn redis_topologies_and_telemetry_come_from_the_environment_and_are_checked() {
        use crate::store::redis::RedisTopology;
        let cluster = |name: &str| match name {
            "LIANGMA_REDIS_TOPOLOGY" => Some("cluster".to_string()),
            "LIANGMA_REDIS_NODES" => Some("redis://10.0.0.1:7000, redis://10.0.0.2:7000,".to_string()),
            _ => None,
        };
        let topology = Config::load(None, cluster).unwrap().redis_settings().topology;
        let nodes = vec!["redis://10.0.0.1:7000".to_string(), "redis://10.0.0.2:7000".to_string()];
        assert_eq!(topology, RedisTopology::Cluster { nodes: nodes.clone() });
        let sentinel = |name: &str| match name {
            "LIANGMA_REDIS_TOPOLOGY" => Some("sentinel".to_string()),
            "LIANGMA_REDIS_NODES" => Some(nodes.join(",")),
            "LIANGMA_REDIS_URL" => Some("redis://:secret@master/2".to_string()),
            _ => None,
        };
        let topology = Config::load(None, sentinel).unwrap().redis_settings().topology;
        let master_credentials = Some("redis://:secret@master/2".to_string());
        assert_eq!(
            topology,
            RedisTopology::Sentinel { sentinels: nodes.clone(), master_name: "liangma".into(), master_credentials }
        );
        let traced = |name: &str| (name == "LIANGMA_OTLP_ENDPOINT").then(|| "http://127.0.0.1:4317".to_string());
        let telemetry = Config::load(None, traced).unwrap().telemetry.expect("export on");
        assert_eq!((telemetry.otlp_endpoint.as_str(), telemetry.sample_ratio), ("http://127.0.0.1:4317", 0.01));
        let encrypted = |name: &str| (name == "LIANGMA_OTLP_ENDPOINT").then(|| "https://collector:4317".to_string());
        assert!(Config::load(None, encrypted).unwrap_err().to_string().contains("telemetry.otlp_endpoint"));
        let no_nodes = |name: &str| (name == "LIANGMA_REDIS_TOPOLOGY").then(|| "cluster".to_string());
        assert!(Config::load(None, no_nodes).unwrap_err().to_string().contains("store.redis_nodes"));
        let unknown = |name: &str| (name == "LIANGMA_REDIS_TOPOLOGY").then(|| "ring".to_string());
        assert!(Config::load(None, unknown).unwrap_err().to_string().contains("LIANGMA_REDIS_TOPOLOGY"));
    }

    #[test]
    fn plaintext_off_loopback_needs_the_explicit_setting() {
        let open = |name: &str| match name {
            "LIANGMA_LISTEN" => Some("0.0.0.0:50051".to_string()),
            _ => None,
        };
        let error = Config::load(None, open).unwrap_err().to_string();
        assert!(error.contains("plaintext") && error.contains("insecure_plaintext"), "{error}");
        let accepted = |name: &str| match name {
            "LIANGMA_LISTEN" => Some("[::]:50051".to_string()),
            "LIANGMA_INSECURE_PLAINTEXT" => Some("true".to_string()),
            _ => None,
        };
        assert!(Config::load(None, accepted).unwrap().insecure_plaintext);
        let loopback = |name: &str| (name == "LIANGMA_LISTEN").then(|| "[::1]:50051".to_string());
        assert!(!Config::load(None, loopback).unwrap().insecure_plaintext);
    }

    #[test]
    fn file_fields_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("liangma.toml");
        std::fs::write(&path, "listen = \"0.0.0.0:9000\"\ninsecure_plaintext = true\n[store]\nbackend = \"redis\"\n")
            .unwrap();
        let config = Config::load(Some(&path), |_| None).unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.store.backend, StoreBackend::Redis);
        std::fs::write(&path, "listne = \"0.0.0.0:9000\"\n").unwrap();
        let error = Config::load(Some(&path), |_| None).unwrap_err().to_string();
        assert!(error.contains("listne"), "{error}");
    }
}
