//! `liangma serve`: config -> service -> gRPC server until SIGTERM/SIGINT -> bounded drain.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, LogFormat, StoreBackend};
use crate::grpc::{self, ServerSettings};
use crate::store::Store;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;

/// Exit status for a configuration that cannot be used (EX_CONFIG-style usage error).
pub(super) const EXIT_BAD_CONFIG: u8 = 64;

pub(super) fn run(config_path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config = match Config::load(config_path.as_deref(), |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("liangma: bad configuration: {error}");
            return Ok(ExitCode::from(EXIT_BAD_CONFIG));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    // Declared after the runtime, so dropped before it: the last spans are sent while it runs.
    let _flush_on_exit = {
        let _inside = runtime.enter();
        init_logging(&config)?
    };
    runtime.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}

/// Logs go to stderr from a thread of their own (src/logging.rs): a caller never waits for
/// the output; lines the output cannot take in time are counted and reported. With
/// `[telemetry]`, spans go to the collector too (src/telemetry.rs); the log shows no spans. The
/// returned guards flush what is left when dropped.
fn init_logging(
    config: &Config,
) -> anyhow::Result<(crate::logging::FlushOnDrop, Option<crate::telemetry::ExportGuard>)> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::util::SubscriberInitExt;
    let directives = std::env::var("LIANGMA_LOG").ok();
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (queue, guard) = crate::logging::start(std::io::stderr(), config.log_queue_lines, config.log_format)
        .context("starting the log writer thread")?;
    let export = match &config.telemetry {
        Some(telemetry) => Some(crate::telemetry::export_layer(telemetry, config.centre)?),
        None => None,
    };
    let (export, export_guard) = match export {
        Some((layer, guard)) => (Some(layer.boxed()), Some(guard)),
        None => (None, None),
    };
    log_subscriber(directives.as_deref(), config.log_format, colour, move || queue.clone(), export)
        .try_init()
        .context("installing the log subscriber")?;
    if let Some(telemetry) = &config.telemetry {
        tracing::info!(
            endpoint = %telemetry.otlp_endpoint,
            sample_ratio = telemetry.sample_ratio,
            "OpenTelemetry: exporting spans of calls, Redis operations and calls to other nodes"
        );
    }
    Ok((guard, export_guard))
}

/// A layer of the log subscriber.
type BoxedLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// The subscriber: log lines of the events `directives` (`LIANGMA_LOG`, default `info`) allow,
/// without spans, and the span exporter if any. Built so that what no layer wants is disabled
/// at its callsite: the libraries' trace spans (h2 opens several per frame) then cost a load
/// and a branch instead of a span each.
fn log_subscriber<W>(
    directives: Option<&str>,
    format: LogFormat,
    colour: bool,
    writer: W,
    export: Option<BoxedLayer>,
) -> impl tracing::Subscriber + Send + Sync + for<'span> tracing_subscriber::registry::LookupSpan<'span>
where
    W: for<'writer> tracing_subscriber::fmt::MakeWriter<'writer> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::{FilterExt, LevelFilter};
    use tracing_subscriber::layer::SubscriberExt;
    let filter =
        directives.and_then(|directives| EnvFilter::try_new(directives).ok()).unwrap_or_else(|| EnvFilter::new("info"));
    // The span test has no level of its own: the hint says so, or the pair would have none and
    // every callsite of every level would be asked at run time.
    let events_only =
        tracing_subscriber::filter::filter_fn(|metadata| !metadata.is_span()).with_max_level_hint(LevelFilter::TRACE);
    let log_filter = filter.and(events_only);
    let lines = tracing_subscriber::fmt::layer().with_ansi(colour).with_writer(writer);
    let log = match format {
        LogFormat::Text => lines.with_filter(log_filter).boxed(),
        LogFormat::Json => lines.event_format(crate::json_log::JsonLines).with_filter(log_filter).boxed(),
    };
    // A list, not an `Option` layer: an absent `Option` layer declares interest in every
    // callsite, which enabled every library's trace spans.
    let layers: Vec<BoxedLayer> = std::iter::once(log).chain(export).collect();
    tracing_subscriber::registry().with(layers)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match config.store.backend {
        StoreBackend::Memory => serve_with(&config, MemoryStore::new(Arc::clone(&clock)), clock).await,
        StoreBackend::Redis => {
            let store = RedisStore::connect(&config.redis_settings())?;
            if let Err(error) = store.load_scripts().await {
                tracing::warn!(%error, "Redis not reachable yet; calls that need it answer UNAVAILABLE until it is");
            }
            serve_with(&config, store, clock).await
        }
    }
}

async fn serve_with<S: Store>(config: &Config, store: S, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    if let Some(listen) = config.metrics_listen {
        crate::metrics::install(listen).with_context(|| format!("metrics endpoint on {listen}"))?;
        tracing::info!("metrics: http://{listen}/metrics");
    }
    let node = crate::app::build_node(config, store, clock).await?;
    let service = Arc::new(node.service);
    let listener =
        tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    if config.tls.is_none() && config.insecure_plaintext && !config.listen.ip().is_loopback() {
        tracing::warn!(
            address = %config.listen,
            "INSECURE: serving plaintext gRPC off loopback (insecure_plaintext = true): codes, member statuses \
             and every call cross the network unencrypted and unauthenticated; only behind a TLS-terminating \
             proxy or on a closed network"
        );
    }
    tracing::info!(
        address = %listener.local_addr()?,
        centre = %config.centre,
        store = ?config.store.backend,
        dev_setup = config.is_dev_setup(),
        tls = config.tls.is_some(),
        directory = config.directory.is_some(),
        federation = config.federation.is_some(),
        "liangma serving"
    );
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    let address = listener.local_addr()?;
    tracing::info!("counter console: {scheme}://{address}/console/");
    tracing::info!(
        "member code page: {scheme}://{address}/code/#session=… (a session from OpenMemberSession, e.g. \
         `liangma client member-page --issuer 410800 --id-number …`)"
    );
    let mut settings = ServerSettings::from_config(config);
    settings.tls = node.tls;
    settings.directory = node.directory.clone();
    // Background work ends with the process; none of it holds state that needs a clean stop.
    let replaying =
        node.follower.as_ref().map(|follower| tokio::spawn(replay(Arc::clone(&service), follower.interval)));
    let following = node.follower.map(|follower| tokio::spawn(follower.run(Arc::clone(&service))));
    let resigning = node.directory.map(|directory| tokio::spawn(resign(directory, Arc::clone(&service))));
    grpc::serve(service, listener, settings, shutdown_signal()).await?;
    for task in [following, resigning, replaying].into_iter().flatten() {
        task.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Consumptions deferred while an issuer's node was unreachable are replayed every `interval`.
async fn replay<S: Store>(service: Arc<crate::service::Liangma<S>>, interval: std::time::Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = service.replay_deferred().await {
            tracing::warn!(%error, "replaying deferred consumptions failed; retrying");
        }
    }
}

/// The directory signs its list again before nodes would find it stale.
async fn resign<S: Store>(
    directory: Arc<crate::federation::directory::Directory>,
    service: Arc<crate::service::Liangma<S>>,
) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        ticks.tick().await;
        match directory.resign_if_due() {
            Ok(false) => {}
            Ok(true) => {
                if let Err(error) = service.install_signed_list(directory.signed_list()) {
                    tracing::error!(%error, "the directory's own new list was not installed");
                }
            }
            Err(error) => tracing::error!(%error, "re-signing the directory's list failed; retrying"),
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the filter and with or without the exporter, the libraries' trace spans are
    /// disabled where they are written (h2 opens several per frame); liangma's events are logged.
    #[test]
    fn library_trace_spans_are_disabled_at_their_callsite() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _inside = runtime.enter();
        let telemetry = crate::config::TelemetryConfig {
            otlp_endpoint: "http://127.0.0.1:9".into(),
            sample_ratio: 1.0,
            service_name: "liangma".into(),
        };
        for (directives, exporting) in [(None, false), (Some("warn,liangma=debug"), false), (None, true)] {
            use tracing_subscriber::Layer;
            let export = exporting.then(|| {
                let (layer, guard) = crate::telemetry::export_layer(&telemetry, "410800".parse().unwrap()).unwrap();
                std::mem::forget(guard);
                layer.boxed()
            });
            let subscriber = log_subscriber(directives, LogFormat::Text, false, std::io::sink, export);
            tracing::subscriber::with_default(subscriber, || {
                assert!(tracing::trace_span!(target: "h2::proto", "pop_frame").is_disabled(), "{directives:?}");
                assert!(tracing::debug_span!(target: "hyper::proto", "poll").is_disabled(), "{directives:?}");
                assert!(tracing::enabled!(target: "liangma::grpc", tracing::Level::WARN), "{directives:?}");
            });
        }
    }
}
