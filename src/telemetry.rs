//! Optional OpenTelemetry export: a span per RPC, per Redis operation and per call to another centre's node, over OTLP/gRPC, naming no member.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Span;
use tracing::field::Empty;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use crate::code::CentreCode;
use crate::config::TelemetryConfig;

/// Spans are made only while an exporter takes them: without one, each call skips the span
/// and its fields entirely.
static EXPORTING: AtomicBool = AtomicBool::new(false);

fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Sends what is still queued when dropped (at shutdown), waiting at most a few seconds.
#[must_use = "dropping it stops the export"]
#[derive(Debug)]
pub struct ExportGuard(SdkTracerProvider);

impl Drop for ExportGuard {
    fn drop(&mut self) {
        EXPORTING.store(false, Ordering::Relaxed);
        if let Err(error) = self.0.shutdown_with_timeout(Duration::from_secs(5)) {
            eprintln!("liangma: flushing OpenTelemetry spans: {error}");
        }
    }
}

/// The layer exporting liangma's spans (never events: log lines stay in the log) to the
/// configured collector. Must be called inside the Tokio runtime the exporter will use.
pub fn export_layer<S>(
    config: &TelemetryConfig,
    centre: CentreCode,
) -> anyhow::Result<(impl Layer<S> + use<S>, ExportGuard)>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.otlp_endpoint.clone())
        .with_timeout(Duration::from_secs(5))
        .build()
        .with_context(|| format!("telemetry.otlp_endpoint {}", config.otlp_endpoint))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new("liangma.centre", centre.to_string()))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio))))
        .with_resource(resource)
        .build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("liangma"))
        .with_location(false)
        .with_threads(false)
        .with_filter(tracing_subscriber::filter::filter_fn(|metadata| {
            metadata.is_span() && metadata.target().starts_with("liangma")
        }));
    EXPORTING.store(true, Ordering::Relaxed);
    Ok((layer, ExportGuard(provider)))
}

/// The span of one call: its RPC path (the API's own, or `other`), gRPC status and, for a
/// verification, its verdict.
pub fn rpc_span(rpc: &'static str) -> Span {
    if !exporting() {
        return Span::none();
    }
    tracing::info_span!(
        "rpc",
        otel.name = rpc,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.grpc.status_code = Empty,
        liangma.verdict = Empty,
    )
}

/// Records the gRPC status of `response` on its call's span. Unary answers carry a failure's
/// status in the headers (trailers-only); a success sends its status in the trailers.
pub fn record_status<B>(span: &Span, response: &http::Response<B>) {
    if span.is_none() {
        return;
    }
    let code = response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i64>().ok())
        .unwrap_or(0);
    span.record("rpc.grpc.status_code", code);
}

/// Records a verification's verdict on the current call's span.
pub fn record_verdict(verdict: &'static str) {
    if exporting() {
        Span::current().record("liangma.verdict", verdict);
    }
}

/// The span of one Redis operation (`consume`, `publish`, …).
pub fn store_span(operation: &'static str) -> Span {
    if !exporting() {
        return Span::none();
    }
    tracing::info_span!("redis", otel.name = operation, otel.kind = "client", db.system = "redis")
}

/// The span of one call to another centre's node (the centre is a public division code).
pub fn issuer_span(issuer: CentreCode, method: &'static str) -> Span {
    if !exporting() {
        return Span::none();
    }
    tracing::info_span!("issuer", otel.name = method, otel.kind = "client", liangma.issuer = issuer.to_string())
}
