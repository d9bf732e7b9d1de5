//! Anchor servers for `bench`: the same RPCs as liangma with the least work a real one could do.
//!
//! Usage: bench_anchor [--lanes] MODE …, MODE one of
//!        bench_anchor echo
//!        bench_anchor verify-get REDIS_URL CODE_TEXT PUBLIC_KEY_HEX
//!        bench_anchor sign SIGNING_KEY_PEM
//!        bench_anchor get-sign REDIS_URL SIGNING_KEY_PEM CODE_TEXT   (one Redis GET, as a real
//!            issuance reads the member's status, then sign; with `qr_format: PNG`, also render
//!            CODE_TEXT, a code of a real code's length, as a QR PNG)
//!
//! Listens on 127.0.0.1 (a free port), prints `listening ADDRESS`, serves on a default tokio
//! runtime (one worker per CPU) — or with `--lanes` on liangma's serving lanes (its accept loop
//! handing connections in turn to one current-thread runtime per CPU, each with a Redis
//! connection of its own) — until its standard input closes, then prints
//! `served OK FAILED`: how many answers were correct and how many were errors, so the harness can
//! check every request of a load generator that does not read gRPC trailers (h2load).

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use ed25519_dalek::{Signature, VerifyingKey};
use liangma::pb::v1 as pb;
use tonic::{Request, Response, Status};

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl Counts {
    fn count<T>(&self, answer: Result<T, Status>) -> Result<T, Status> {
        let counter = if answer.is_ok() { &self.ok } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        answer
    }
}

/// `verify_strict` of one fixed code (the anchor does not decode) and one Redis GET.
struct VerifyWork {
    key: VerifyingKey,
    signed_message: Vec<u8>,
    signature: Signature,
    redis: redis::aio::ConnectionManager,
}

#[derive(Clone)]
struct Anchor {
    counts: Arc<Counts>,
    verify: Option<Arc<VerifyWork>>,
    signing_key: Option<Arc<liangma::trust::CentreKey>>,
    /// Read before signing, when set.
    status_store: Option<redis::aio::ConnectionManager>,
    /// Rendered as a QR PNG when a request asks for one.
    qr_text: String,
}

impl Anchor {
    async fn issue_once(&self, png: bool) -> Result<pb::IssueCodeResponse, Status> {
        let key = self.signing_key.as_ref().ok_or_else(|| Status::unimplemented("this anchor does not sign"))?;
        if let Some(store) = &self.status_store {
            let mut connection = store.clone();
            let _: Option<String> = redis::AsyncCommands::get(&mut connection, "anchor")
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
        }
        // A message of a realistic code's size: domain (16 bytes) and 80 bytes of claims.
        let text = hex::encode(key.sign(&[7u8; 96]).to_bytes());
        let qr_png = if png {
            let symbol = liangma::code::qr::encode(&self.qr_text).map_err(|e| Status::internal(e.to_string()))?;
            liangma::code::qr::to_png(&symbol)
        } else {
            Vec::new()
        };
        Ok(pb::IssueCodeResponse { text, qr_png, ..Default::default() })
    }

    async fn verify_once(&self) -> Result<pb::VerifyCodeResponse, Status> {
        if let Some(work) = &self.verify {
            work.key.verify_strict(&work.signed_message, &work.signature).map_err(|_| Status::internal("signature"))?;
            let mut connection = work.redis.clone();
            let _: Option<String> = redis::AsyncCommands::get(&mut connection, "anchor")
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
        }
        Ok(pb::VerifyCodeResponse { verdict: pb::Verdict::Valid.into(), ..Default::default() })
    }
}

#[tonic::async_trait]
impl pb::verifier_service_server::VerifierService for Anchor {
    async fn verify_code(&self, _: Request<pb::VerifyCodeRequest>) -> Result<Response<pb::VerifyCodeResponse>, Status> {
        self.counts.count(self.verify_once().await).map(Response::new)
    }
}

#[tonic::async_trait]
impl pb::issuer_service_server::IssuerService for Anchor {
    async fn issue_code(
        &self,
        request: Request<pb::IssueCodeRequest>,
    ) -> Result<Response<pb::IssueCodeResponse>, Status> {
        let png = request.get_ref().qr_format == i32::from(pb::QrFormat::Png);
        self.counts.count(self.issue_once(png).await).map(Response::new)
    }

    async fn revoke_code(&self, _: Request<pb::RevokeCodeRequest>) -> Result<Response<pb::RevokeCodeResponse>, Status> {
        Err(Status::unimplemented("anchor"))
    }
}

async fn build(mode: &str, args: &[String], counts: Arc<Counts>) -> anyhow::Result<Anchor> {
    let mut anchor = Anchor { counts, verify: None, signing_key: None, status_store: None, qr_text: String::new() };
    match (mode, args) {
        ("echo", []) => {}
        ("verify-get", [redis_url, code, public_key]) => {
            let decoded = liangma::code::decode(code)?;
            let mut key_bytes = [0u8; 32];
            hex::decode_to_slice(public_key, &mut key_bytes).context("public key hex")?;
            let redis = redis::Client::open(redis_url.as_str())?.get_connection_manager().await?;
            anchor.verify = Some(Arc::new(VerifyWork {
                key: VerifyingKey::from_bytes(&key_bytes)?,
                signed_message: decoded.with_signed_message(<[u8]>::to_vec),
                signature: decoded.signature,
                redis,
            }));
        }
        ("sign", [pem]) => {
            anchor.signing_key = Some(Arc::new(liangma::trust::CentreKey::read_pem_file(pem.as_ref())?));
        }
        ("get-sign", [redis_url, pem, code]) => {
            anchor.signing_key = Some(Arc::new(liangma::trust::CentreKey::read_pem_file(pem.as_ref())?));
            anchor.status_store = Some(redis::Client::open(redis_url.as_str())?.get_connection_manager().await?);
            anchor.qr_text.clone_from(code);
        }
        _ => anyhow::bail!(
            "usage: bench_anchor echo | verify-get REDIS_URL CODE PUBLIC_KEY_HEX | sign KEY_PEM | get-sign REDIS_URL KEY_PEM CODE"
        ),
    }
    Ok(anchor)
}

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let lanes = args.first().is_some_and(|first| first == "--lanes");
    if lanes {
        args.remove(0);
    }
    let (mode, rest) = args.split_first().context("mode required")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let counts = Arc::new(Counts::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening {}", listener.local_addr()?);
        std::io::stdout().flush()?;
        let stdin_closed = async {
            let _ = tokio::task::spawn_blocking(|| std::io::stdin().lock().lines().count()).await;
        };
        if lanes {
            serve_on_lanes(mode, rest, Arc::clone(&counts), listener, stdin_closed).await?;
        } else {
            let anchor = build(mode, rest, Arc::clone(&counts)).await?;
            let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            serve(anchor, incoming, stdin_closed).await?;
        }
        println!("served {} {}", counts.ok.load(Ordering::Relaxed), counts.failed.load(Ordering::Relaxed));
        Ok(())
    })
}

/// Serves `anchor` on the connections of `incoming` until `stop` completes.
async fn serve<IO>(
    anchor: Anchor,
    incoming: impl tonic::codegen::tokio_stream::Stream<Item = std::io::Result<IO>> + Send + 'static,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()>
where
    IO: tonic::transport::server::Connected + tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tonic::transport::Server::builder()
        .add_service(pb::verifier_service_server::VerifierServiceServer::new(anchor.clone()))
        .add_service(pb::issuer_service_server::IssuerServiceServer::new(anchor))
        .serve_with_incoming_shutdown(incoming, stop)
        .await?;
    Ok(())
}

/// The anchor on liangma's serving lanes (`liangma::lanes::spawn`, liangma's accept loop and
/// default connection limits), each lane with an anchor (so a Redis connection) of its own.
async fn serve_on_lanes(
    mode: &str,
    args: &[String],
    counts: Arc<Counts>,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let limits = liangma::grpc::ServerSettings::from_config(&liangma::config::Config::default()).connections;
    let lanes = liangma::lanes::resolve(0);
    let (stopping, stop_seen) = tokio::sync::watch::channel(false);
    let (ended, lane_results) = std::sync::mpsc::channel();
    let mut threads = Vec::new();
    for (index, incoming) in liangma::grpc::connection::incoming(listener, limits, lanes).into_iter().enumerate() {
        let (mode, args, counts, mut stop_seen) =
            (mode.to_owned(), args.to_vec(), Arc::clone(&counts), stop_seen.clone());
        let run = move || async move {
            let anchor = build(&mode, &args, counts).await.map_err(std::io::Error::other)?;
            let stop = async move {
                let _ = stop_seen.wait_for(|stop| *stop).await;
            };
            serve(anchor, incoming, stop).await.map_err(std::io::Error::other)
        };
        let ended = ended.clone();
        threads.push(liangma::lanes::spawn(index + 1, run, move |served| {
            let _ = ended.send(served);
        })?);
    }
    stop.await;
    let _ = stopping.send(true);
    for thread in threads {
        let _ = thread.join();
    }
    drop(ended);
    lane_results.iter().collect::<std::io::Result<()>>()?;
    Ok(())
}
