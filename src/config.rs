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
    /// This version serves plaintext gRPC only; off loopback that needs this explicit `true`
    /// (behind a TLS-terminating proxy or on a closed network), and the service says so loudly
    /// at start. Default false: a non-loopback `listen` is refused. Env
    /// `LIANGMA_INSECURE_PLAINTEXT` (`true`/`false`).
    pub insecure_plaintext: bool,
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

/// Which store, and how to reach Redis.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `memory` (default; state is lost on restart) or `redis`. Env `LIANGMA_STORE`.
    pub backend: StoreBackend,
    /// Redis URL. Default `redis://127.0.0.1:6379`. Env `LIANGMA_REDIS_URL`.
    pub redis_url: String,
    /// Prefix of every Redis key. Default `lm`.
    pub key_prefix: String,
    /// Longest wait for one store operation (a Redis round trip, reconnecting included),
    /// milliseconds; past it the call answers UNAVAILABLE. Default 500.
    pub timeout_ms: u64,
    /// How often health checks that the store answers, milliseconds. Default 1000.
    pub check_interval_ms: u64,
}

/// Storage backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreBackend {
    /// In-process maps.
    Memory,
    /// Redis (standalone; keys are Cluster-ready).
    Redis,
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
    /// QR images rendered at once on the blocking pool. Default: the number of CPUs.
    pub qr_render_concurrency: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            insecure_plaintext: false,
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
            redis_url: "redis://127.0.0.1:6379".into(),
            key_prefix: "lm".into(),
            timeout_ms: 500,
            check_interval_ms: 1000,
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
            qr_render_concurrency: std::thread::available_parallelism().map_or(2, usize::from),
        }
    }
}

/// A configuration problem, naming the file or variable and the field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// Every environment variable `liangma serve` reads: the configuration file's path, the log
/// level filter, and the overrides applied by [`Config::load`].
pub const ENVIRONMENT: [&str; 11] = [
    "LIANGMA_CONFIG",
    "LIANGMA_LOG",
    "LIANGMA_LISTEN",
    "LIANGMA_INSECURE_PLAINTEXT",
    "LIANGMA_CENTRE",
    "LIANGMA_DATA_DIR",
    "LIANGMA_TRUST_LIST",
    "LIANGMA_STORE",
    "LIANGMA_REDIS_URL",
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
        if !self.listen.ip().is_loopback() && !self.insecure_plaintext {
            return Err(ConfigError(format!(
                "listen {}: this version serves plaintext gRPC only, which off loopback exposes codes, member \
                 statuses and every call to the network; listen on loopback, or set insecure_plaintext = true \
                 (LIANGMA_INSECURE_PLAINTEXT=true) behind a TLS-terminating proxy or on a closed network",
                self.listen
            )));
        }
        if self.purposes.is_empty() {
            return Err(ConfigError("purposes: serve at least one purpose".into()));
        }
        if self.trust_list.is_none() && !self.issuers.is_empty() {
            return Err(ConfigError("issuers are configured but trust_list is not: give the trust list file".into()));
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
            ("limits.max_streams_per_connection", u64::from(limits.max_streams_per_connection)),
            ("limits.max_calls_per_connection", limits.max_calls_per_connection as u64),
            ("limits.request_timeout_ms", limits.request_timeout_ms),
            ("limits.handshake_timeout_ms", limits.handshake_timeout_ms),
            ("limits.idle_timeout_secs", limits.idle_timeout_secs),
            ("limits.http2_keepalive_secs", limits.http2_keepalive_secs),
            ("limits.tcp_keepalive_secs", limits.tcp_keepalive_secs),
            ("store.check_interval_ms", self.store.check_interval_ms),
        ];
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

    /// Whether this is the embedded dev setup (no trust list given).
    pub fn is_dev_setup(&self) -> bool {
        self.trust_list.is_none()
    }

    /// The Redis command timeout.
    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.store.timeout_ms)
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
