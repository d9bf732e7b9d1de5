//! Consumption at the issuer's node over mutual TLS: one lazily connected channel per node and serving lane, a time limit per call, and a circuit breaker per centre so that a dead node costs no counter a wait.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use crate::code::CentreCode;
use crate::pb::v1 as pb;
use crate::service::link::{IssuerLink, LinkError, LinkFuture, RemoteAnswer, RemoteUse};

use super::TlsMaterial;

type NodeClient = pb::node_service_client::NodeServiceClient<Channel>;

/// When to stop calling a failing node for a while.
#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    /// Failures in a row that open the breaker.
    pub failures: u32,
    /// How long it stays open before one call may try again.
    pub open_for: Duration,
}

#[derive(Debug, Default)]
struct Breaker {
    failures_in_a_row: u32,
    open_until: Option<Instant>,
}

/// The gRPC link to issuers' nodes.
pub struct GrpcLink {
    tls: TlsMaterial,
    timeout: Duration,
    breaker: BreakerSettings,
    /// By issuer, node address and serving lane ([`crate::lanes`]): a lane's calls go out on
    /// a connection its own thread drives, and the issuer's node, which hands connections to its
    /// lanes in turn, serves one verifying node's calls on several of its CPUs.
    channels: Mutex<HashMap<(CentreCode, String, usize), Channel>>,
    breakers: Mutex<HashMap<CentreCode, Breaker>>,
}

impl std::fmt::Debug for GrpcLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcLink")
            .field("timeout", &self.timeout)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl GrpcLink {
    /// A link presenting this node's certificate, waiting at most `timeout` for each answer.
    pub fn new(tls: TlsMaterial, timeout: Duration, breaker: BreakerSettings) -> Self {
        Self { tls, timeout, breaker, channels: Mutex::default(), breakers: Mutex::default() }
    }

    fn channel(&self, issuer: CentreCode, node: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (issuer, node.to_owned(), crate::lanes::current());
        if let Some(channel) = channels.get(&key) {
            return Ok(channel.clone());
        }
        // The server must prove to be the issuer's node, not just any holder of a CA certificate.
        let channel = self.tls.node_channel(node, issuer, self.timeout)?;
        channels.insert(key, channel.clone());
        Ok(channel)
    }

    /// `Err` with the time left while the centre's breaker is open.
    fn admit(&self, centre: CentreCode) -> Result<(), Duration> {
        let breakers = self.breakers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match breakers.get(&centre).and_then(|breaker| breaker.open_until) {
            Some(until) if Instant::now() < until => Err(until - Instant::now()),
            _ => Ok(()),
        }
    }

    fn record(&self, centre: CentreCode, succeeded: bool) {
        let mut breakers = self.breakers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let breaker = breakers.entry(centre).or_default();
        if succeeded {
            *breaker = Breaker::default();
            return;
        }
        breaker.failures_in_a_row = breaker.failures_in_a_row.saturating_add(1);
        if breaker.failures_in_a_row >= self.breaker.failures {
            // Open again after every failed trial call, so a dead node is tried once per period.
            breaker.open_until = Some(Instant::now() + self.breaker.open_for);
            tracing::warn!(%centre, failures = breaker.failures_in_a_row, open_secs = self.breaker.open_for.as_secs(),
                "node of centre unreachable; not calling it for a while");
        }
    }

    /// One call to the issuer's node through the breaker, within the time limit.
    async fn call<T, F, Fut>(
        &self,
        method: &'static str,
        issuer: CentreCode,
        node: &str,
        send: F,
    ) -> Result<T, LinkError>
    where
        F: FnOnce(NodeClient) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        use tracing::Instrument;
        self.call_unspanned(issuer, node, send).instrument(crate::telemetry::issuer_span(issuer, method)).await
    }

    async fn call_unspanned<T, F, Fut>(&self, issuer: CentreCode, node: &str, send: F) -> Result<T, LinkError>
    where
        F: FnOnce(NodeClient) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let unreachable = |cause: String| LinkError::Unreachable { centre: issuer, cause };
        if let Err(left) = self.admit(issuer) {
            crate::metrics::issuer_call(issuer, "skipped");
            return Err(unreachable(format!("failing; next try in {} ms", left.as_millis())));
        }
        let channel = self.channel(issuer, node).map_err(unreachable)?;
        let response = match tokio::time::timeout(self.timeout, send(NodeClient::new(channel))).await {
            Err(_) => Err(tonic::Status::deadline_exceeded("no answer in time")),
            Ok(result) => result,
        };
        match response {
            Ok(response) => {
                self.record(issuer, true);
                crate::metrics::issuer_call(issuer, "answered");
                Ok(response.into_inner())
            }
            Err(status) => {
                let cause = format!("{:?}: {}", status.code(), status.message());
                let transient = matches!(
                    status.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Cancelled
                        | tonic::Code::Unknown
                );
                self.record(issuer, !transient);
                crate::metrics::issuer_call(issuer, if transient { "unreachable" } else { "refused" });
                Err(if transient { unreachable(cause) } else { LinkError::Refused { centre: issuer, cause } })
            }
        }
    }
}

impl IssuerLink for GrpcLink {
    fn consume_at_issuer<'a>(
        &'a self,
        issuer: CentreCode,
        node: &'a str,
        code_use: RemoteUse,
    ) -> LinkFuture<'a, Result<RemoteAnswer, LinkError>> {
        let mut request = tonic::Request::new(pb::ConsumeCodeRequest {
            text: code_use.text,
            verifying_centre: code_use.verifying_centre.to_string(),
            request_id: code_use.request_id.as_str().to_owned(),
            accepted_offline_at_unix: code_use.accepted_offline_at.map_or(0, |at| at.unix()),
        });
        request.set_timeout(self.timeout);
        Box::pin(async move {
            let answer = self
                .call("ConsumeCode", issuer, node, |mut client: NodeClient| async move {
                    client.consume_code(request).await
                })
                .await?;
            RemoteAnswer::try_from(answer).map_err(|problem| LinkError::Refused {
                centre: issuer,
                cause: format!("unreadable answer: {problem}"),
            })
        })
    }

    fn resolve_digits<'a>(
        &'a self,
        issuer: CentreCode,
        node: &'a str,
        digits: String,
    ) -> LinkFuture<'a, Result<Option<String>, LinkError>> {
        let mut request = tonic::Request::new(pb::ResolveDigitsRequest { digits });
        request.set_timeout(self.timeout);
        Box::pin(async move {
            let answer = self
                .call("ResolveDigits", issuer, node, |mut client: NodeClient| async move {
                    client.resolve_digits(request).await
                })
                .await?;
            Ok(answer.found.then_some(answer.text))
        })
    }
}
