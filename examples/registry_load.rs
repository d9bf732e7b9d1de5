//! Registry load: publishes N member statuses through the real gRPC API into a private
//! redis-server and reports records per second and Redis memory per record.
//!
//! Usage: cargo run --release --example registry_load -- [RECORDS] [BATCH] [IN_FLIGHT]
//! (defaults 1000000, 1000, 8). Needs `redis-server` on the PATH; see docs/performance.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use liangma::clock::{Clock, SystemClock};
use liangma::config::Config;
use liangma::pb::v1 as pb;
use liangma::store::redis::{RedisSettings, RedisStore};

/// A fake but valid resident ID number for member `n`.
fn id_number(n: u64) -> String {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let body = format!("41080219{:09}", n);
    let sum: u32 = body.bytes().zip(WEIGHTS).map(|(digit, weight)| u32::from(digit - b'0') * weight).sum();
    format!("{body}{}", CHECK[(sum % 11) as usize] as char)
}

#[path = "../tests/integration/redis_server.rs"]
mod redis_server;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).map(|arg| arg.parse::<u64>());
    let records = args.next().transpose()?.unwrap_or(1_000_000);
    let batch = args.next().transpose()?.unwrap_or(1_000) as usize;
    let in_flight = args.next().transpose()?.unwrap_or(8) as usize;

    let dir = tempfile::tempdir()?;
    let redis = redis_server::RedisServer::start();
    let socket = redis.socket();
    let config = Config { data_dir: dir.path().join("data"), sample_members: Some(false), ..Config::default() };
    let store = RedisStore::connect(&RedisSettings {
        url: redis.url(),
        key_prefix: "lm".into(),
        timeout: Duration::from_secs(5),
    })?;
    store.load_scripts().await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let service = Arc::new(liangma::app::build(&config, store, clock).await?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let settings = liangma::grpc::ServerSettings { max_message_bytes: 1 << 20, shutdown_grace: Duration::from_secs(1) };
    tokio::spawn(liangma::grpc::serve(service, listener, settings, std::future::pending()));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?.connect().await?;

    let memory_before = redis_server::info_field(&socket, "memory", "used_memory");
    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let mut calls = Vec::new();
    for first in (0..records).step_by(batch) {
        let permit = Arc::clone(&semaphore).acquire_owned().await?;
        let mut client = pb::registry_service_client::RegistryServiceClient::new(channel.clone());
        let last = (first + batch as u64).min(records);
        calls.push(tokio::spawn(async move {
            let records = (first..last)
                .map(|n| pb::MemberStatus {
                    id_number: id_number(n),
                    name: "张三".into(),
                    status: Some(pb::DepositStatus {
                        account_status: pb::AccountStatus::Normal.into(),
                        balance_fen: 1_000_000 + n,
                        monthly_deposit_fen: 150_000,
                        continuous_months: 30,
                        loan_state: pb::LoanState::None.into(),
                        loans_used: 0,
                        registry_version: 1_795_000_000_000 + n,
                    }),
                })
                .collect();
            let request = pb::PublishStatusesRequest { centre: "410800".into(), records };
            let applied = client.publish_statuses(request).await.map(|r| r.into_inner().applied);
            drop(permit);
            applied
        }));
    }
    let mut applied = 0u64;
    for call in calls {
        applied += u64::from(call.await??);
    }
    let elapsed = started.elapsed();
    let memory_after = redis_server::info_field(&socket, "memory", "used_memory");
    anyhow::ensure!(applied == records, "only {applied} of {records} records applied");

    println!("| measure | value |");
    println!("|---|---|");
    println!("| records published (gRPC batches of {batch}, {in_flight} in flight) | {records} |");
    println!("| elapsed | {:.2} s |", elapsed.as_secs_f64());
    println!("| records per second | {:.0} |", records as f64 / elapsed.as_secs_f64());
    println!("| Redis memory per record | {} bytes |", (memory_after - memory_before) / records);
    Ok(())
}
