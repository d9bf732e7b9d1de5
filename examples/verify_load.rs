//! VerifyCode under load against two anchors measured in the same run: a bare tonic echo and
//! tonic + `verify_strict` + one Redis GET. Every request carries a different code (codes are
//! single-use) and every response is checked; Redis command statistics give round trips per
//! verification.
//!
//! Usage: cargo run --release --example verify_load -- [REQUESTS] [CONCURRENCY]
//! (defaults 40000, 256). Needs `redis-server` and `redis-cli`; see docs/performance.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, VerifyingKey};
use liangma::clock::{Clock, SystemClock};
use liangma::config::Config;
use liangma::pb::v1 as pb;
use liangma::store::redis::{RedisSettings, RedisStore};
use tonic::{Request, Response, Status};

/// The anchor servers: the same RPC with the least work a real verification could do.
#[derive(Clone)]
struct Anchor {
    verify: Option<(VerifyingKey, Vec<u8>, Signature)>,
    redis: Option<redis::aio::ConnectionManager>,
}

#[tonic::async_trait]
impl pb::verifier_service_server::VerifierService for Anchor {
    async fn verify_code(&self, _: Request<pb::VerifyCodeRequest>) -> Result<Response<pb::VerifyCodeResponse>, Status> {
        if let Some((key, message, signature)) = &self.verify {
            key.verify_strict(message, signature).map_err(|_| Status::internal("anchor signature"))?;
        }
        if let Some(redis) = &self.redis {
            let mut connection = redis.clone();
            let _: Option<String> = redis::AsyncCommands::get(&mut connection, "anchor")
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
        }
        Ok(Response::new(pb::VerifyCodeResponse { verdict: pb::Verdict::Valid.into(), ..Default::default() }))
    }
}

struct Outcome {
    per_second: f64,
    percentiles: [Duration; 3],
}

async fn load(address: std::net::SocketAddr, codes: Arc<Vec<String>>, concurrency: usize) -> anyhow::Result<Outcome> {
    // 16 connections, as h2load -c 16 would open; streams spread over them.
    let mut channels = Vec::new();
    for _ in 0..16 {
        channels.push(tonic::transport::Endpoint::from_shared(format!("http://{address}"))?.connect().await?);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let mut client = pb::verifier_service_client::VerifierServiceClient::new(channels[worker % 16].clone());
            let (codes, next) = (Arc::clone(&codes), Arc::clone(&next));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(code) = codes.get(index) else { return Ok::<_, anyhow::Error>(latencies) };
                    let sent = Instant::now();
                    let request = pb::VerifyCodeRequest {
                        code: Some(pb::verify_code_request::Code::Text(code.clone())),
                        purpose: 0,
                    };
                    let response = client.verify_code(request).await?.into_inner();
                    latencies.push(sent.elapsed());
                    // gRPC errors come back as HTTP 200: check the answer itself.
                    anyhow::ensure!(response.verdict == i32::from(pb::Verdict::Valid), "verdict {}", response.verdict);
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(codes.len());
    for worker in workers {
        latencies.extend(worker.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let at = |quantile: f64| latencies[((latencies.len() as f64 * quantile) as usize).min(latencies.len() - 1)];
    Ok(Outcome {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        percentiles: [at(0.5), at(0.99), at(0.999)],
    })
}

#[path = "../tests/integration/redis_server.rs"]
mod redis_server;

fn evalsha_calls(socket: &std::path::Path) -> u64 {
    redis_server::info_field(socket, "commandstats", "cmdstat_evalsha")
}

/// Serves `service` on its own two-worker runtime, as a separate server process would.
fn serve_on_own_runtime<F>(make: F) -> std::net::SocketAddr
where
    F: FnOnce(tokio::net::TcpListener) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + 'static,
{
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            sender.send(listener.local_addr().unwrap()).unwrap();
            make(listener).await;
        });
    });
    receiver.recv().unwrap()
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).map(|arg| arg.parse::<usize>());
    let requests = args.next().transpose()?.unwrap_or(40_000);
    let concurrency = args.next().transpose()?.unwrap_or(256);
    let client = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    // Redis connections spawn their driver tasks on the runtime that is current when they are made.
    let _runtime = client.enter();

    let dir = tempfile::tempdir()?;
    let redis_server = redis_server::RedisServer::start();
    let socket = redis_server.socket();
    let redis_url = redis_server.url();

    // The service, with the Redis store and the dev keys.
    let config = Config { data_dir: dir.path().join("data"), ..Config::default() };
    let store = RedisStore::connect(&RedisSettings {
        url: redis_url.clone(),
        key_prefix: "lm".into(),
        timeout: Duration::from_secs(2),
    })?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let service = client.block_on(async {
        store.load_scripts().await?;
        liangma::app::build(&config, store, clock).await
    })?;
    let service = Arc::new(service);
    let service_address = serve_on_own_runtime(move |listener| {
        let settings =
            liangma::grpc::ServerSettings { max_message_bytes: 1 << 20, shutdown_grace: Duration::from_secs(1) };
        Box::pin(async move {
            let _ = liangma::grpc::serve(service, listener, settings, std::future::pending()).await;
        })
    });

    // Unique codes for the sample members, signed with the dev key as the service would.
    let trust = liangma::trust::TrustList::load(&config.data_dir.join("trust.json"))?;
    let issuer = liangma::issue::Issuer::new(
        liangma::trust::CentreKey::read_pem_file(&config.data_dir.join("dev-410800.pem"))?,
        liangma::trust::SubjectSecret::read_file(&config.data_dir.join("dev-410800-subject.key"))?,
        &trust,
    )?;
    let request = liangma::issue::IssueRequest {
        purpose: liangma::code::Purpose::OffsiteLoan,
        audience: Some("440300".parse()?),
        lifetime_seconds: 86_400,
    };
    let now = SystemClock.now();
    let members = ["410802198503120012", "410803199207040027", "410821197809230032"];
    let mut codes = Vec::with_capacity(requests);
    for index in 0..requests {
        let record: liangma::issue::DepositRecord = serde_json::from_str(&format!(
            r#"{{"id_number":"{}","account_status":"normal","balance_fen":2000000,"monthly_deposit_fen":150000,
                "continuous_months":30,"loan_state":"none","registry_version":1}}"#,
            members[index % members.len()]
        ))?;
        codes.push(issuer.issue(&record, &request, now)?.text);
    }
    let codes = Arc::new(codes);

    // The anchor: the same RPC doing one verify_strict and one Redis GET.
    let decoded = liangma::code::decode(&codes[0])?;
    let public_key = trust.centres().find(|c| c.code.to_string() == "410800").unwrap().keys[0].public_key;
    let anchor_verify = Some((public_key, decoded.with_signed_message(<[u8]>::to_vec), decoded.signature));
    let redis_for_anchor =
        client.block_on(async { redis::Client::open(redis_url.as_str())?.get_connection_manager().await })?;
    let make_anchor = |anchor: Anchor| {
        move |listener: tokio::net::TcpListener| -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
            Box::pin(async move {
                let _ = tonic::transport::Server::builder()
                    .add_service(pb::verifier_service_server::VerifierServiceServer::new(anchor))
                    .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)))
                    .await;
            })
        }
    };
    let echo_address = serve_on_own_runtime(make_anchor(Anchor { verify: None, redis: None }));
    let anchor_address =
        serve_on_own_runtime(make_anchor(Anchor { verify: anchor_verify, redis: Some(redis_for_anchor) }));

    let evalsha_before = evalsha_calls(&socket);
    let echo = client.block_on(load(echo_address, Arc::clone(&codes), concurrency))?;
    let anchor = client.block_on(load(anchor_address, Arc::clone(&codes), concurrency))?;
    let evalsha_anchor = evalsha_calls(&socket);
    let verify = client.block_on(load(service_address, Arc::clone(&codes), concurrency))?;
    let evalsha_after = evalsha_calls(&socket);
    anyhow::ensure!(evalsha_anchor == evalsha_before, "the anchors ran no scripts");

    let row = |name: &str, outcome: &Outcome, against: &Outcome| {
        let [p50, p99, p999] = outcome.percentiles.map(|d| d.as_secs_f64() * 1000.0);
        println!(
            "| {name} | {:.0} | {p50:.2} | {p99:.2} | {p999:.2} | {:.2} | {:.2} |",
            outcome.per_second,
            outcome.per_second / against.per_second,
            outcome.percentiles[1].as_secs_f64() / against.percentiles[1].as_secs_f64()
        );
    };
    println!("{requests} requests per server, {concurrency} in flight over 16 connections, 2 server workers");
    println!("| server | requests/s | p50 ms | p99 ms | p99.9 ms | throughput vs anchor | p99 vs anchor |");
    println!("|---|---|---|---|---|---|---|");
    row("tonic echo", &echo, &anchor);
    row("anchor: tonic + verify_strict + Redis GET", &anchor, &anchor);
    row("liangma VerifyCode (consume, usage, live status)", &verify, &anchor);
    println!("Redis EVALSHA calls per verification: {:.3}", (evalsha_after - evalsha_anchor) as f64 / requests as f64);
    Ok(())
}
