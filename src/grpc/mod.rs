//! gRPC server: the liangma services plus standard health and reflection, with size limits and a bounded drain on shutdown.

pub mod convert;
pub mod handlers;
mod status;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::pb::v1 as pb;
use crate::service::Liangma;
use crate::store::{CodeStore, RegistryStore};
use handlers::Handlers;

/// Network settings of the server.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Largest request message accepted, in bytes; larger ones get RESOURCE_EXHAUSTED.
    pub max_message_bytes: usize,
    /// How long in-flight calls may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
}

/// Names of the liangma services, as health checks ask for them.
pub const SERVICE_NAMES: [&str; 6] = [
    "liangma.v1.IssuerService",
    "liangma.v1.VerifierService",
    "liangma.v1.RegistryService",
    "liangma.v1.UsageRecordService",
    "liangma.v1.TrustDirectoryService",
    "liangma.v1.LoanService",
];

/// Serves on `listener` until `shutdown` completes; then reports NOT_SERVING on the health
/// service, stops accepting, and gives in-flight calls `shutdown_grace` to finish.
pub async fn serve<S: RegistryStore + CodeStore>(
    service: Arc<Liangma<S>>,
    listener: TcpListener,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in SERVICE_NAMES.iter().copied().chain([""]) {
        health.set_service_status(name, ServingStatus::Serving).await;
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor sets are valid");

    let handlers = Handlers::new(service);
    let limit = settings.max_message_bytes;
    let draining = Arc::new(tokio::sync::Notify::new());
    let signal = {
        let draining = Arc::clone(&draining);
        let health = health.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: health NOT_SERVING, draining in-flight calls");
            for name in SERVICE_NAMES.iter().copied().chain([""]) {
                health.set_service_status(name, ServingStatus::NotServing).await;
            }
            draining.notify_one();
        }
    };
    let server = Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            pb::issuer_service_server::IssuerServiceServer::new(handlers.clone()).max_decoding_message_size(limit),
        )
        .add_service(
            pb::verifier_service_server::VerifierServiceServer::new(handlers.clone()).max_decoding_message_size(limit),
        )
        .add_service(
            pb::registry_service_server::RegistryServiceServer::new(handlers.clone()).max_decoding_message_size(limit),
        )
        .add_service(
            pb::usage_record_service_server::UsageRecordServiceServer::new(handlers.clone())
                .max_decoding_message_size(limit),
        )
        .add_service(
            pb::trust_directory_service_server::TrustDirectoryServiceServer::new(handlers.clone())
                .max_decoding_message_size(limit),
        )
        .add_service(pb::loan_service_server::LoanServiceServer::new(handlers).max_decoding_message_size(limit))
        // The builder's tcp_nodelay covers only listeners tonic binds itself: set it on the
        // accepted sockets here, or responses written in several frames wait for delayed ACKs
        // (about 40 ms each).
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), signal);
    tokio::select! {
        result = server => result,
        () = async {
            draining.notified().await;
            tokio::time::sleep(settings.shutdown_grace).await;
        } => {
            tracing::warn!(grace = ?settings.shutdown_grace, "drain deadline passed; closing remaining calls");
            Ok(())
        }
    }
}
