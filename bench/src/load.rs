//! Load generation: h2load for fixed request bodies, an own generator for single-use codes and paced runs, and the figures of one run.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use liangma::pb::v1 as pb;
use prost::Message;
use tonic::transport::Channel;

use crate::Options;
use crate::processes::{process_cpu, redis_cpu};

/// Throughput and latency of one load run.
#[derive(Clone, Copy)]
pub(crate) struct Measured {
    pub(crate) per_second: f64,
    /// p50, p99, p99.9.
    pub(crate) latency: [Duration; 3],
    /// CPU time per request of the server process and of Redis, when measured.
    pub(crate) cpu: Option<[Duration; 2]>,
}

impl Measured {
    pub(crate) fn from_latencies(mut latencies: Vec<Duration>, elapsed: Duration) -> Self {
        latencies.sort_unstable();
        let at = |quantile: f64| latencies[((latencies.len() as f64 * quantile) as usize).min(latencies.len() - 1)];
        Self {
            per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
            latency: [at(0.5), at(0.99), at(0.999)],
            cpu: None,
        }
    }

    pub(crate) fn p99(&self) -> Duration {
        self.latency[1]
    }
}

/// Runs `load` and adds the CPU time per request that the server (`server_pid`) and Redis spent.
pub(crate) fn with_cpu(
    server_pid: u32,
    redis_socket: &Path,
    requests: usize,
    load: impl FnOnce() -> anyhow::Result<Measured>,
) -> anyhow::Result<Measured> {
    let (server_before, redis_before) = (process_cpu(server_pid)?, redis_cpu(redis_socket)?);
    let mut measured = load()?;
    let (server_after, redis_after) = (process_cpu(server_pid)?, redis_cpu(redis_socket)?);
    let per_request = |used: Duration| used / requests as u32;
    measured.cpu = Some([per_request(server_after - server_before), per_request(redis_after - redis_before)]);
    Ok(measured)
}

/// A gRPC request body as sent on the wire: uncompressed flag, length, message.
pub(crate) fn grpc_frame(message: &impl Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Runs h2load with one fixed request, keeping connections × streams in flight.
pub(crate) fn h2load(
    address: SocketAddr,
    path: &str,
    request: &impl Message,
    options: &Options,
    requests: usize,
) -> anyhow::Result<Measured> {
    let dir = tempfile::tempdir()?;
    let body = dir.path().join("body");
    let log = dir.path().join("log");
    std::fs::write(&body, grpc_frame(request))?;
    let mut command = Command::new("h2load");
    command
        .args(["-n", &requests.to_string(), "-c", &options.connections.to_string()])
        .args(["-m", &options.streams.to_string()])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .arg("-d")
        .arg(&body)
        .arg(format!("--log-file={}", log.display()));
    let output = command.arg(format!("http://{address}{path}")).output().context("running h2load")?;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(output.status.success(), "h2load failed: {text}{}", String::from_utf8_lossy(&output.stderr));
    let succeeded = text
        .lines()
        .find_map(|line| line.strip_prefix("requests: "))
        .and_then(|line| line.split(", ").find_map(|part| part.strip_suffix(" succeeded")))
        .context("h2load summary")?;
    ensure!(succeeded == requests.to_string(), "h2load: {succeeded} of {requests} requests succeeded:\n{text}");
    let mut latencies = Vec::with_capacity(requests);
    let (mut first_start, mut last_end) = (u64::MAX, 0u64);
    for line in std::fs::read_to_string(&log)?.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        ensure!(fields.len() >= 3 && fields[1] == "200", "h2load log: {line}");
        let (start, micros): (u64, u64) = (fields[0].parse()?, fields[2].parse()?);
        first_start = first_start.min(start);
        last_end = last_end.max(start + micros);
        latencies.push(Duration::from_micros(micros));
    }
    ensure!(latencies.len() == requests, "h2load logged {} of {requests} requests", latencies.len());
    Ok(Measured::from_latencies(latencies, Duration::from_micros(last_end - first_start)))
}

pub(crate) async fn connect(address: SocketAddr, connections: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(tonic::transport::Endpoint::from_shared(format!("http://{address}"))?.connect().await?);
    }
    Ok(channels)
}

/// How the own load generator paces requests.
#[derive(Clone, Copy)]
pub(crate) enum Pace {
    /// Keep this many requests in flight.
    InFlight(usize),
    /// Start requests at this rate, whatever the answers' latency (open loop).
    PerSecond(f64),
}

/// Sends `total` calls of `call(channel, index)` and measures each; every call checks its answer.
pub(crate) async fn own_load<F, Fut>(
    channels: &[Channel],
    pace: Pace,
    total: usize,
    call: F,
) -> anyhow::Result<Measured>
where
    F: Fn(Channel, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(total);
    match pace {
        Pace::InFlight(in_flight) => {
            let next = Arc::new(AtomicUsize::new(0));
            let workers: Vec<_> = (0..in_flight)
                .map(|worker| {
                    let (channel, next, call) =
                        (channels[worker % channels.len()].clone(), Arc::clone(&next), call.clone());
                    tokio::spawn(async move {
                        let mut latencies = Vec::new();
                        loop {
                            let index = next.fetch_add(1, Ordering::Relaxed);
                            if index >= total {
                                return Ok::<_, anyhow::Error>(latencies);
                            }
                            let sent = Instant::now();
                            call(channel.clone(), index).await?;
                            latencies.push(sent.elapsed());
                        }
                    })
                })
                .collect();
            for worker in workers {
                latencies.extend(worker.await??);
            }
        }
        Pace::PerSecond(rate) => {
            // A thread of its own starts the requests that are due every 50 µs or so: tokio's
            // timer ticks in milliseconds, and bursts of a millisecond's requests would measure
            // the generator's queueing, not the server's. Latency counts from that start.
            let runtime = tokio::runtime::Handle::current();
            let channels = channels.to_vec();
            let dispatcher = tokio::task::spawn_blocking(move || {
                let mut calls = Vec::with_capacity(total);
                while calls.len() < total {
                    let due = ((started.elapsed().as_secs_f64() * rate) as usize + 1).min(total);
                    for index in calls.len()..due {
                        let (channel, call) = (channels[index % channels.len()].clone(), call.clone());
                        let sent = Instant::now();
                        calls.push(runtime.spawn(async move { call(channel, index).await.map(|()| sent.elapsed()) }));
                    }
                    std::thread::sleep(Duration::from_micros(50));
                }
                calls
            });
            for call in dispatcher.await? {
                latencies.push(call.await??);
            }
        }
    }
    Ok(Measured::from_latencies(latencies, started.elapsed()))
}

/// What the generator reads of a VerifyCode answer: the verdict, and whether the live status
/// is there (as bytes, not decoded). Decoding the whole answer (claims, live status, ids) cost
/// the generator, which shares the two CPUs with the service, work the anchors' one-field
/// answers never ask of it; h2load, which drives the other rows, decodes nothing.
#[derive(Clone, PartialEq, prost::Message)]
struct VerdictAndLive {
    #[prost(int32, tag = "1")]
    verdict: i32,
    #[prost(bytes = "bytes", optional, tag = "4")]
    live: Option<prost::bytes::Bytes>,
}

/// A VerifyCode call; liangma must also return the live status (the anchors return the verdict only).
pub(crate) async fn verify_call(channel: Channel, code: String, expect_live: bool) -> anyhow::Result<()> {
    let request = pb::VerifyCodeRequest {
        code: Some(pb::verify_code_request::Code::Text(code)),
        purpose: 0,
        request_id: String::new(),
    };
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await?;
    let codec = tonic_prost::ProstCodec::<pb::VerifyCodeRequest, VerdictAndLive>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/liangma.v1.VerifierService/VerifyCode");
    let response = client.unary(tonic::Request::new(request), path, codec).await?.into_inner();
    ensure!(response.verdict == i32::from(pb::Verdict::Valid), "verdict {}", response.verdict);
    ensure!(!expect_live || response.live.is_some(), "no live status");
    Ok(())
}
