//! Prometheus metrics: every name and label in one place; labels are verdicts, centre codes, RPC names and outcomes, never anything about a member.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::code::CentreCode;
use crate::model::Verdict;

/// Latency buckets, seconds: 100 µs to 10 s.
const BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0];

/// Serves `/metrics` on `listen` and records from now on; needs a tokio runtime.
pub fn install(listen: SocketAddr) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(listen)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)?
        .install()?;
    Ok(())
}

/// A verification's verdict, at this node's counter (`remote`: consumed for another centre).
pub fn verification(verdict: Verdict, remote: bool) {
    let name = if remote { "liangma_consumptions_for_other_centres_total" } else { "liangma_verifications_total" };
    metrics::counter!(name, "verdict" => verdict.as_str()).increment(1);
}

/// A code issued for `issuer`.
pub fn issued(issuer: CentreCode) {
    metrics::counter!("liangma_codes_issued_total", "issuer" => issuer.to_string()).increment(1);
}

/// The gRPC methods of the embedded descriptor set, as request paths (`/package.Service/Method`):
/// only these become label values, so that no client can mint new series.
fn known_paths() -> &'static HashSet<&'static str> {
    static PATHS: OnceLock<HashSet<&'static str>> = OnceLock::new();
    PATHS.get_or_init(|| {
        let sets = [crate::pb::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET].map(|bytes| {
            let set: prost_types::FileDescriptorSet =
                prost::Message::decode(bytes).expect("the embedded descriptor sets decode");
            set
        });
        sets.iter()
            .flat_map(|set| set.file.iter())
            .flat_map(|file| {
                let package = file.package().to_owned();
                file.service.iter().flat_map(move |service| {
                    let prefix = format!("/{package}.{}/", service.name());
                    // Leaked once, so that labelling a call allocates nothing.
                    service.method.iter().map(move |method| &*format!("{prefix}{}", method.name()).leak())
                })
            })
            .collect()
    })
}

/// The label of a request path: the RPC itself, or `other` (pages, unknown paths).
pub fn rpc_label(path: &str) -> &'static str {
    known_paths().get(path).copied().unwrap_or("other")
}

/// One call's duration, by [`rpc_label`].
pub fn rpc(label: &'static str, elapsed: Duration) {
    metrics::histogram!("liangma_rpc_duration_seconds", "rpc" => label).record(elapsed.as_secs_f64());
}

/// One store operation: its duration, and whether it failed (`timeout` or `error`).
pub fn store(elapsed: Duration, failure: Option<&'static str>) {
    metrics::histogram!("liangma_store_duration_seconds").record(elapsed.as_secs_f64());
    if let Some(kind) = failure {
        metrics::counter!("liangma_store_errors_total", "kind" => kind).increment(1);
    }
}

/// A TCP connection accepted (each one a TLS handshake, with TLS), or closed at once because
/// the node holds its most connections.
pub fn connection_accepted(within_limit: bool) {
    let outcome = if within_limit { "accepted" } else { "over_limit" };
    metrics::counter!("liangma_connections_total", "outcome" => outcome).increment(1);
}

/// Signatures checked together: one batch of `size` (1: a lone check with `verify_strict`),
/// and whether the batch equation failed so each was checked alone.
pub fn signature_batch(size: usize, fell_back: bool) {
    metrics::histogram!("liangma_signature_batch_size").record(size as f64);
    if fell_back {
        metrics::counter!("liangma_signature_batch_fallbacks_total").increment(1);
    }
}

/// The signed trust list in force: its sequence, seconds to expiry, and freshness.
pub fn trust_list(sequence: u64, seconds_to_expiry: i64, stale: bool, expired: bool) {
    metrics::gauge!("liangma_trust_list_sequence").set(sequence as f64);
    metrics::gauge!("liangma_trust_list_seconds_to_expiry").set(seconds_to_expiry as f64);
    metrics::gauge!("liangma_trust_list_stale").set(f64::from(u8::from(stale)));
    metrics::gauge!("liangma_trust_list_expired").set(f64::from(u8::from(expired)));
}

/// A call to another centre's node: `answered`, `unreachable`, `refused` or `skipped` (breaker open).
pub fn issuer_call(issuer: CentreCode, outcome: &'static str) {
    metrics::counter!("liangma_issuer_calls_total", "issuer" => issuer.to_string(), "outcome" => outcome).increment(1);
}

/// A call refused to keep verification going (`class`: verification, issuance, publishing) or
/// a caller over its rate (`digits`).
pub fn shed(class: &'static str) {
    metrics::counter!("liangma_shed_calls_total", "class" => class).increment(1);
}

/// A lookup by verification id answered from this node's cache of another node's answer (`hit`)
/// or not found there (`miss`).
pub fn remote_cache(hit: bool) {
    metrics::counter!("liangma_remote_cache_lookups_total", "result" => if hit { "hit" } else { "miss" }).increment(1);
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_rpc_of_the_api_is_a_known_path_and_nothing_else_is() {
        let paths = super::known_paths();
        assert!(paths.contains("/liangma.v1.VerifierService/VerifyCode"));
        assert!(paths.contains("/liangma.v1.MemberPageService/ShowCode"));
        assert!(!paths.contains("/console/"));
        assert!(paths.contains("/grpc.health.v1.Health/Check"));
        assert!(paths.iter().all(|path| path.starts_with("/liangma.v1.") || path.starts_with("/grpc.health.v1.")));
    }
}
