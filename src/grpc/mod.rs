//! gRPC server: the liangma services plus standard health and reflection, with size limits and a bounded drain on shutdown.

pub mod codec;
pub mod connection;
pub mod convert;
mod digits_limit;
mod guard;
pub mod handlers;
pub mod overload;
mod status;
mod web;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::config::Config;
use connection::ConnectionLimits;
use guard::GuardLayer;

use crate::pb::v1 as pb;
use crate::service::Liangma;
use crate::store::Store;
use crate::trust::directory::Freshness;
use handlers::Handlers;

/// Network settings of the server; [`ServerSettings::from_config`] documents nothing new:
/// each field is the configuration field of the same name (docs/operations.md).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Largest request message accepted by any service, in bytes; larger ones get RESOURCE_EXHAUSTED.
    pub max_message_bytes: usize,
    /// How long in-flight calls may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Connection cap, handshake and idle timeouts, TCP keepalive.
    pub connections: ConnectionLimits,
    /// HTTP/2 streams a client may open at once on one connection.
    pub max_streams_per_connection: u32,
    /// Calls of one connection running at once; further streams wait their turn.
    pub max_calls_per_connection: usize,
    /// Longest time a call may take; then it is answered DEADLINE_EXCEEDED.
    pub request_timeout: Duration,
    /// Interval of HTTP/2 pings to a client; a ping unanswered for as long ends the connection.
    pub http2_keepalive: Duration,
    /// How often health asks the store whether it answers (and looks at the trust list's freshness).
    pub store_check_interval: Duration,
    /// Mutual TLS; `None`: plaintext, every caller trusted (loopback, or the insecure setting).
    pub tls: Option<crate::federation::TlsMaterial>,
    /// This node is the trust directory.
    pub directory: Option<Arc<crate::federation::directory::Directory>>,
    /// Calls of each class running at once before shedding.
    pub class_limits: overload::ClassLimits,
    /// Digit lookups a caller may make per minute.
    pub digits_per_minute: u32,
    /// Serving threads ([`crate::lanes`]); 0 = one per CPU.
    pub serving_threads: usize,
}

impl ServerSettings {
    /// The settings of a configuration.
    pub fn from_config(config: &Config) -> Self {
        let limits = &config.limits;
        Self {
            max_message_bytes: limits.max_message_bytes,
            shutdown_grace: Duration::from_secs(limits.shutdown_grace_secs),
            connections: ConnectionLimits {
                max_connections: limits.max_connections,
                handshake_timeout: Duration::from_millis(limits.handshake_timeout_ms),
                idle_timeout: Duration::from_secs(limits.idle_timeout_secs),
                tcp_keepalive: Duration::from_secs(limits.tcp_keepalive_secs),
            },
            max_streams_per_connection: limits.max_streams_per_connection,
            max_calls_per_connection: limits.max_calls_per_connection,
            request_timeout: Duration::from_millis(limits.request_timeout_ms),
            http2_keepalive: Duration::from_secs(limits.http2_keepalive_secs),
            store_check_interval: Duration::from_millis(config.store.check_interval_ms),
            tls: None,
            directory: None,
            class_limits: overload::ClassLimits {
                verify: limits.verify_concurrency,
                issue: limits.issue_concurrency,
                publish: limits.publish_concurrency,
            },
            digits_per_minute: limits.digits_per_minute,
            serving_threads: limits.serving_threads,
        }
    }
}

/// Names of the liangma services, as health checks ask for them.
pub const SERVICE_NAMES: [&str; 8] = [
    "liangma.v1.IssuerService",
    "liangma.v1.VerifierService",
    "liangma.v1.RegistryService",
    "liangma.v1.UsageRecordService",
    "liangma.v1.TrustDirectoryService",
    "liangma.v1.LoanService",
    "liangma.v1.NodeService",
    "liangma.v1.MemberPageService",
];

/// The services that need the store and a usable trust list (every one but the trust
/// directory), and `""`, the server as a whole: health reports them NOT_SERVING while the
/// store does not answer or the directory's signed list has expired.
const NEED_THE_STORE: [&str; 8] = [
    "liangma.v1.IssuerService",
    "liangma.v1.VerifierService",
    "liangma.v1.RegistryService",
    "liangma.v1.UsageRecordService",
    "liangma.v1.LoanService",
    "liangma.v1.NodeService",
    "liangma.v1.MemberPageService",
    "",
];

/// Serves on `listener` until `shutdown` completes; then reports NOT_SERVING on the health
/// service, stops accepting, and gives in-flight calls `shutdown_grace` to finish.
///
/// Connections are served on [`crate::lanes`]: `serving_threads` threads, each running a
/// single-threaded runtime with the whole server, to which the accept loop (on the calling
/// runtime) hands connections in turn. A call then runs start to finish on one thread, Redis
/// included, with no wake-ups across threads: on a two-core machine this cut the CPU of a
/// bare tonic + Redis GET + sign server from 41 – 46 to 26 µs per call (docs/performance.md).
pub async fn serve<S: Store>(
    service: Arc<Liangma<S>>,
    listener: TcpListener,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (health, _) = tonic_health::server::health_reporter();
    for name in SERVICE_NAMES.iter().copied().chain([""]) {
        health.set_service_status(name, ServingStatus::Serving).await;
    }
    let stopping = Arc::new(AtomicBool::new(false));
    let monitor = tokio::spawn(watch_store(
        Arc::clone(&service),
        health.clone(),
        settings.store_check_interval,
        Arc::clone(&stopping),
    ));
    let lane = Lane {
        handlers: Handlers::new(service, settings.directory.clone(), settings.tls.is_some())
            .with_digits_limit(settings.digits_per_minute),
        health: health.clone(),
        // One set of gates for the whole server: the limits are the node's, not a lane's.
        overload: overload::OverloadLayer::new(settings.class_limits),
        settings: settings.clone(),
    };
    let lanes = crate::lanes::resolve(settings.serving_threads);
    let (phase, phase_seen) = tokio::sync::watch::channel(Phase::Serving);
    let (ended, mut lane_ended) = tokio::sync::mpsc::unbounded_channel::<std::io::Result<()>>();
    for (index, incoming) in connection::incoming(listener, settings.connections.clone(), lanes).into_iter().enumerate()
    {
        let (lane, ended, mut phase_seen) = (lane.clone(), ended.clone(), phase_seen.clone());
        let serve = move || async move {
            let mut drain_seen = phase_seen.clone();
            let stop = async move {
                let _ = drain_seen.wait_for(|phase| *phase >= Phase::Draining).await;
            };
            tokio::select! {
                served = lane.serve(incoming, stop) => served,
                _ = phase_seen.wait_for(|phase| *phase == Phase::CutOff) => Ok(()),
            }
        };
        if let Err(error) = crate::lanes::spawn(index + 1, serve, move |served| {
            let _ = ended.send(served);
        }) {
            let _ = phase.send(Phase::CutOff);
            monitor.abort();
            return Err(error);
        }
    }
    drop(ended);

    let mut running = lanes;
    let mut outcome = Ok(());
    tokio::select! {
        () = shutdown => {
            tracing::info!("shutting down: health NOT_SERVING, draining in-flight calls");
            stopping.store(true, Ordering::SeqCst);
            for name in SERVICE_NAMES.iter().copied().chain([""]) {
                health.set_service_status(name, ServingStatus::NotServing).await;
            }
            let _ = phase.send(Phase::Draining);
        }
        // A lane's server ended by itself: it failed, and the node stops with it.
        served = lane_ended.recv() => {
            running -= 1;
            outcome = served.unwrap_or(Ok(()));
            let _ = phase.send(Phase::CutOff);
        }
    }
    let deadline = tokio::time::sleep(settings.shutdown_grace);
    tokio::pin!(deadline);
    while running > 0 {
        tokio::select! {
            served = lane_ended.recv() => {
                let Some(served) = served else { break };
                running -= 1;
                if outcome.is_ok() {
                    outcome = served;
                }
            }
            () = &mut deadline, if *phase.borrow() != Phase::CutOff => {
                tracing::warn!(grace = ?settings.shutdown_grace, "drain deadline passed; closing remaining calls");
                let _ = phase.send(Phase::CutOff);
            }
        }
    }
    monitor.abort();
    outcome
}

/// Where the lanes are in the node's life; each phase follows the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Serving,
    /// No new connections; calls in flight finish.
    Draining,
    /// The grace period is over (or a lane failed): the lanes close what is left.
    CutOff,
}

/// What each lane's server is made of; the parts with state are shared by all lanes.
struct Lane<S: Store> {
    handlers: Handlers<S>,
    health: tonic_health::server::HealthReporter,
    overload: overload::OverloadLayer,
    settings: ServerSettings,
}

impl<S: Store> Clone for Lane<S> {
    fn clone(&self) -> Self {
        Self {
            handlers: self.handlers.clone(),
            health: self.health.clone(),
            overload: self.overload.clone(),
            settings: self.settings.clone(),
        }
    }
}

impl<S: Store> Lane<S> {
    /// The whole server on this thread's runtime, serving the connections of `incoming` until
    /// `stop` completes and its calls have ended.
    async fn serve(
        self,
        incoming: impl tokio_stream::Stream<Item = std::io::Result<connection::LimitedConnection>> + Send + 'static,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Self { handlers, health, overload, settings } = self;
        let limit = settings.max_message_bytes;
        let health_service = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(health),
        )
        .max_decoding_message_size(limit);
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .expect("the embedded descriptor sets are valid")
            .max_decoding_message_size(limit);
        let mut builder = Server::builder();
        if let Some(tls) = &settings.tls {
            builder = builder
                .tls_config(tls.server_config(settings.connections.handshake_timeout))
                .map_err(std::io::Error::other)?;
        }
        builder
            // Browsers speak HTTP/1.1 to a plaintext or a TLS origin alike: the pages and gRPC-web.
            .accept_http1(true)
            .max_concurrent_streams(settings.max_streams_per_connection)
            .concurrency_limit_per_connection(settings.max_calls_per_connection)
            .http2_keepalive_interval(Some(settings.http2_keepalive))
            .http2_keepalive_timeout(Some(settings.http2_keepalive))
            .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
            // A request's data waits in the windows until its call reads it: they bound what a
            // client can make the server hold beyond the calls themselves.
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
            .layer(GuardLayer { request_timeout: settings.request_timeout })
            .layer(overload)
            .layer(web::WebPagesLayer)
            .layer(tonic_web::GrpcWebLayer::new())
            .add_service(health_service)
            .add_service(reflection)
            .add_service(
                pb::issuer_service_server::IssuerServiceServer::new(handlers.clone()).max_decoding_message_size(limit),
            )
            .add_service(
                pb::verifier_service_server::VerifierServiceServer::new(handlers.clone())
                    .max_decoding_message_size(limit),
            )
            .add_service(
                pb::registry_service_server::RegistryServiceServer::new(handlers.clone())
                    .max_decoding_message_size(limit),
            )
            .add_service(
                pb::usage_record_service_server::UsageRecordServiceServer::new(handlers.clone())
                    .max_decoding_message_size(limit),
            )
            .add_service(
                pb::trust_directory_service_server::TrustDirectoryServiceServer::new(handlers.clone())
                    .max_decoding_message_size(limit),
            )
            .add_service(
                pb::loan_service_server::LoanServiceServer::new(handlers.clone()).max_decoding_message_size(limit),
            )
            .add_service(
                pb::node_service_server::NodeServiceServer::new(handlers.clone()).max_decoding_message_size(limit),
            )
            .add_service(
                pb::member_page_service_server::MemberPageServiceServer::new(handlers).max_decoding_message_size(limit),
            )
            .serve_with_incoming_shutdown(incoming, stop)
            .await
            .map_err(std::io::Error::other)
    }
}

/// Largest request header block (names, values and HPACK overhead).
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// HTTP/2 flow-control window of each stream.
const STREAM_WINDOW_BYTES: u32 = 256 * 1024;
/// HTTP/2 flow-control window of each connection.
const CONNECTION_WINDOW_BYTES: u32 = 1024 * 1024;

/// Asks the store every `interval` whether it answers, and reports the services that need it
/// SERVING or NOT_SERVING accordingly, until shutdown begins.
async fn watch_store<S: Store>(
    service: Arc<Liangma<S>>,
    health: tonic_health::server::HealthReporter,
    interval: Duration,
    stopping: Arc<AtomicBool>,
) {
    let mut serving = true;
    let mut freshness = None;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let answer = service.store_ready().await;
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let trust = service.trust();
        let now_fresh = trust.freshness(service.now());
        if let crate::service::TrustInForce::Signed(signed) = trust.as_ref() {
            crate::metrics::trust_list(
                signed.issue.sequence,
                signed.issue.expires_at.unix() - service.now().unix(),
                now_fresh == Some(Freshness::Stale),
                now_fresh == Some(Freshness::Expired),
            );
        }
        if now_fresh != freshness {
            freshness = now_fresh;
            match now_fresh {
                Some(Freshness::Stale) => tracing::warn!(
                    sequence = trust.sequence(),
                    "signed trust list STALE (past next_update): still verifying; check the directory connection"
                ),
                Some(Freshness::Expired) => tracing::error!(
                    sequence = trust.sequence(),
                    "signed trust list EXPIRED: verification fails closed (UNAVAILABLE) until a fresh list arrives"
                ),
                Some(Freshness::Fresh) => tracing::info!(sequence = trust.sequence(), "signed trust list fresh"),
                None => {}
            }
        }
        let now_serving = answer.is_ok() && now_fresh != Some(Freshness::Expired);
        if now_serving == serving {
            continue;
        }
        serving = now_serving;
        match &answer {
            Ok(()) if now_serving => tracing::info!("store answers and the trust list is usable: health SERVING"),
            Ok(()) => tracing::warn!("trust list expired: health NOT_SERVING for the services that need it"),
            Err(error) => {
                tracing::warn!(%error, "store does not answer: health NOT_SERVING for the services that need it")
            }
        }
        let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
        for name in NEED_THE_STORE {
            health.set_service_status(name, status).await;
        }
    }
}
