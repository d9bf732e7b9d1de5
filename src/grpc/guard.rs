//! The layer every call passes: a deadline (answered DEADLINE_EXCEEDED, as gRPC clients expect) and the connection activity the idle timeout reads.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::body::Body;

use super::connection::ConnectionInfo;

/// Adds [`Guarded`] around the routes.
#[derive(Debug, Clone)]
pub(super) struct GuardLayer {
    /// Longest time a call may take, reading its request included.
    pub(super) request_timeout: Duration,
}

impl<S> tower_layer::Layer<S> for GuardLayer {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded { inner, request_timeout: self.request_timeout }
    }
}

/// See [`GuardLayer`].
#[derive(Debug, Clone)]
pub(super) struct Guarded<S> {
    inner: S,
    request_timeout: Duration,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower_service::Service<http::Request<Body>> for Guarded<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let connection = request.extensions().get::<ConnectionInfo>().cloned().or_else(|| {
            request
                .extensions()
                .get::<tonic::transport::server::TlsConnectInfo<ConnectionInfo>>()
                .map(|tls| tls.get_ref().clone())
        });
        if let Some(connection) = &connection {
            // tonic's `Request::remote_addr` looks for the plain TCP info.
            request.extensions_mut().insert(connection.tcp.clone());
            connection.activity.call_started();
        }
        let rpc = crate::metrics::rpc_label(request.uri().path());
        let span = crate::telemetry::rpc_span(rpc);
        let call = tracing::Instrument::instrument(self.inner.call(request), span.clone());
        let timeout = self.request_timeout;
        Box::pin(async move {
            let _ended = connection.map(CallEnds);
            let started = std::time::Instant::now();
            let answered = tokio::time::timeout(timeout, call).await;
            crate::metrics::rpc(rpc, started.elapsed());
            if let Ok(Ok(response)) = &answered {
                crate::telemetry::record_status(&span, response);
            }
            match answered {
                Ok(result) => result,
                // Dropping the call cancels its handler at its next await: a store round trip
                // then runs to completion or not at all (each is atomic), never halfway.
                Err(_) => Ok(tonic::Status::deadline_exceeded(format!(
                    "the call took longer than the server's limit of {} ms",
                    timeout.as_millis()
                ))
                .into_http()),
            }
        })
    }
}

/// Marks the call ended when dropped: on completion, on timeout and on cancellation alike.
struct CallEnds(ConnectionInfo);

impl Drop for CallEnds {
    fn drop(&mut self) {
        self.0.activity.call_ended();
    }
}
