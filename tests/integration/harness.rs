//! Test harness: a real `redis-server` per test (unix socket in a temp folder, killed on drop)
//! and the real gRPC server on 127.0.0.1:0 with a fixed clock.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use liangma::clock::{Clock, FixedClock, Timestamp};
use liangma::config::Config;
use liangma::grpc::{self, ServerSettings};
use liangma::pb::v1 as pb;
use liangma::store::Store;
use liangma::store::memory::MemoryStore;
use liangma::store::redis::{RedisStore, RedisTopology};
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub use liangma::testkit::RedisServer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Redis,
}

/// A running service with its clients.
pub struct App {
    pub address: SocketAddr,
    pub clock: Arc<FixedClock>,
    pub redis: Option<RedisServer>,
    pub data_dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Key prefix of the tests' Redis stores.
pub const KEY_PREFIX: &str = "lmtest";

pub const START: &str = "2026-11-26T09:30:00+08:00";
/// Members of the embedded sample data (fake people).
pub const ZHANG_WEI: &str = "410802198503120012";
pub const WANG_FANG: &str = "410803199207040027";

pub async fn spawn_app(backend: Backend) -> App {
    spawn_configured(backend, |config| config.limits.shutdown_grace_secs = 5).await
}

/// The service with the default configuration changed by `configure` (limits, timeouts…).
pub async fn spawn_configured(backend: Backend, configure: impl FnOnce(&mut Config)) -> App {
    if let Ok(filter) = std::env::var("LIANGMA_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
    let clock = Arc::new(FixedClock::new(Timestamp::parse_rfc3339(START).unwrap()));
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = Config { data_dir: data_dir.path().to_path_buf(), ..Config::default() };
    // Health notices a store that stopped answering within a tenth of a second.
    config.store.check_interval_ms = 100;
    configure(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (shutdown_tx, shutdown_rx) = oneshot::channel();
    let settings = ServerSettings::from_config(&config);
    let shutdown = async move {
        let _ = shutdown_rx.await;
    };
    let (redis, server) = match backend {
        Backend::Memory => {
            let store = MemoryStore::new(clock.clone() as Arc<dyn Clock>);
            (None, start(&config, store, clock.clone(), listener, settings, shutdown).await)
        }
        Backend::Redis => {
            let redis = RedisServer::start();
            let mut redis_settings = config.redis_settings();
            redis_settings.topology = RedisTopology::Standalone { url: redis.url() };
            redis_settings.key_prefix = KEY_PREFIX.into();
            let store = RedisStore::connect(&redis_settings).unwrap();
            store.load_scripts().await.unwrap();
            (Some(redis), start(&config, store, clock.clone(), listener, settings, shutdown).await)
        }
    };
    App { address, clock, redis, data_dir, shutdown: Some(shutdown_tx), server: Some(server) }
}

async fn start<S: Store>(
    config: &Config,
    store: S,
    clock: Arc<FixedClock>,
    listener: tokio::net::TcpListener,
    settings: ServerSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let service = Arc::new(liangma::app::build(config, store, clock).await.unwrap());
    tokio::spawn(grpc::serve(service, listener, settings, shutdown))
}

impl App {
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.address)).unwrap().connect().await.unwrap()
    }

    pub async fn issuer(&self) -> pb::issuer_service_client::IssuerServiceClient<Channel> {
        pb::issuer_service_client::IssuerServiceClient::new(self.channel().await)
    }

    pub async fn verifier(&self) -> pb::verifier_service_client::VerifierServiceClient<Channel> {
        pb::verifier_service_client::VerifierServiceClient::new(self.channel().await)
    }

    pub async fn registry(&self) -> pb::registry_service_client::RegistryServiceClient<Channel> {
        pb::registry_service_client::RegistryServiceClient::new(self.channel().await)
    }

    pub async fn usage(&self) -> pb::usage_record_service_client::UsageRecordServiceClient<Channel> {
        pb::usage_record_service_client::UsageRecordServiceClient::new(self.channel().await)
    }

    pub async fn trust(&self) -> pb::trust_directory_service_client::TrustDirectoryServiceClient<Channel> {
        pb::trust_directory_service_client::TrustDirectoryServiceClient::new(self.channel().await)
    }

    /// Issues an off-site-loan code of a Jiaozuo sample member for Shenzhen.
    pub async fn issue(&self, id_number: &str) -> pb::IssueCodeResponse {
        self.issuer()
            .await
            .issue_code(pb::IssueCodeRequest {
                issuer_centre: "410800".into(),
                id_number: id_number.into(),
                purpose: pb::Purpose::OffsiteLoan.into(),
                audience_centre: "440300".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// The member revokes one of their Jiaozuo codes.
    pub async fn revoke(&self, id_number: &str, code_id: &str) {
        let request = pb::RevokeCodeRequest {
            issuer_centre: "410800".into(),
            id_number: id_number.into(),
            code_id: code_id.into(),
        };
        self.issuer().await.revoke_code(request).await.unwrap();
    }

    /// The usage record of a Jiaozuo member.
    pub async fn usage_of(&self, id_number: &str) -> pb::ListUsageResponse {
        let request = pb::ListUsageRequest { issuer_centre: "410800".into(), id_number: id_number.into() };
        self.usage().await.list_usage(request).await.unwrap().into_inner()
    }

    pub async fn verify_text(&self, text: &str) -> Result<pb::VerifyCodeResponse, tonic::Status> {
        let request = pb::VerifyCodeRequest {
            code: Some(pb::verify_code_request::Code::Text(text.into())),
            purpose: 0,
            request_id: String::new(),
        };
        self.verifier().await.verify_code(request).await.map(tonic::Response::into_inner)
    }

    pub async fn verify_digits(&self, digits: &str) -> Result<pb::VerifyCodeResponse, tonic::Status> {
        let request = pb::VerifyCodeRequest {
            code: Some(pb::verify_code_request::Code::Digits(digits.into())),
            purpose: 0,
            request_id: String::new(),
        };
        self.verifier().await.verify_code(request).await.map(tonic::Response::into_inner)
    }

    pub fn trigger_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    pub fn trust_list_path(&self) -> PathBuf {
        self.data_dir.path().join("trust.json")
    }
}

pub fn verdict(response: &pb::VerifyCodeResponse) -> pb::Verdict {
    pb::Verdict::try_from(response.verdict).unwrap()
}

pub fn result_of(entry: &pb::UsageEntry) -> pb::Verdict {
    pb::Verdict::try_from(entry.result).unwrap()
}
