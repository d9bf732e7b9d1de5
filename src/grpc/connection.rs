//! Accepting connections within limits: a connection cap, a deadline for the HTTP/2 preface, an idle timeout, TCP keepalive, and back-off when accepting fails.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Limits of the listener; see [`crate::config::LimitsConfig`] for each one's meaning and default.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Open connections at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Time from accepting to the client's whole HTTP/2 preface.
    pub handshake_timeout: Duration,
    /// Time a connection may stay open with no call in flight.
    pub idle_timeout: Duration,
    /// TCP keepalive: idle time before the kernel probes a silent peer.
    pub tcp_keepalive: Duration,
}

/// The 24 bytes every HTTP/2 client sends first (RFC 9113 §3.4).
const PREFACE_LEN: usize = 24;
/// Longest pause between accept attempts after repeated failures.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// A connection past the limits and its HTTP/2 preface, on its way to a lane. It travels as
/// a standard socket: a tokio socket belongs to the runtime that registered it, and the lane's
/// own runtime must drive it.
#[derive(Debug)]
struct Accepted {
    stream: std::net::TcpStream,
    permit: OwnedSemaphorePermit,
}

impl Accepted {
    /// The connection, registered with the runtime of the calling thread.
    fn into_connection(self, idle_timeout: Duration) -> io::Result<LimitedConnection> {
        Ok(LimitedConnection::new(TcpStream::from_std(self.stream)?, self.permit, idle_timeout))
    }
}

/// Accepts on `listener` within `limits` and hands the connections that sent their HTTP/2
/// preface in time to `lanes` streams in turn. Each stream, polled on its lane's runtime,
/// yields connections of that runtime. The accept loop ends (closing the listener) when every
/// stream is dropped.
pub fn incoming(
    listener: TcpListener,
    limits: ConnectionLimits,
    lanes: usize,
) -> Vec<impl Stream<Item = io::Result<LimitedConnection>> + Send + 'static> {
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..lanes.max(1)).map(|_| mpsc::channel::<Accepted>(64)).unzip();
    let idle_timeout = limits.idle_timeout;
    tokio::spawn(accept_loop(listener, limits, senders.into()));
    receivers
        .into_iter()
        .map(|receiver| ReceiverStream::new(receiver).map(move |accepted| accepted.into_connection(idle_timeout)))
        .collect()
}

/// Returns once every lane has dropped its stream.
async fn all_closed(lanes: &[mpsc::Sender<Accepted>]) {
    for lane in lanes {
        lane.closed().await;
    }
}

async fn accept_loop(listener: TcpListener, limits: ConnectionLimits, lanes: Arc<[mpsc::Sender<Accepted>]>) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut backoff = Duration::ZERO;
    let mut refused_since_warning = 0u64;
    let mut last_warning: Option<Instant> = None;
    let mut accepted_count = 0usize;
    loop {
        let accepted = tokio::select! {
            () = all_closed(&lanes) => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff = Duration::ZERO;
                stream
            }
            Err(error) => {
                // Out of file descriptors (EMFILE) and the like: the listener stays readable, so
                // retrying at once would spin a core. Wait, longer each time, then try again.
                backoff = (backoff * 2).clamp(Duration::from_millis(5), MAX_ACCEPT_BACKOFF);
                if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!(%error, backoff_ms = backoff.as_millis() as u64, "accepting a connection failed; backing off");
                    last_warning = Some(Instant::now());
                }
                tokio::select! {
                    () = all_closed(&lanes) => return,
                    () = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            // Closing at once tells the client to try another replica; queueing would hold it.
            crate::metrics::connection_accepted(false);
            refused_since_warning += 1;
            if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    refused = refused_since_warning,
                    "connection limit reached; closing new connections"
                );
                last_warning = Some(Instant::now());
                refused_since_warning = 0;
            }
            continue;
        };
        crate::metrics::connection_accepted(true);
        if let Err(error) = configure(&stream, limits.tcp_keepalive) {
            tracing::debug!(%error, "setting socket options failed; closing the connection");
            continue;
        }
        // In turn, so that many connections spread evenly over the lanes.
        let lane = lanes[accepted_count % lanes.len()].clone();
        accepted_count = accepted_count.wrapping_add(1);
        let handshake_timeout = limits.handshake_timeout;
        tokio::spawn(async move {
            // A client that does not speak within the deadline never reaches the HTTP/2 server.
            match tokio::time::timeout(handshake_timeout, preface_arrived(&stream)).await {
                Ok(true) => match stream.into_std() {
                    Ok(stream) => {
                        let _ = lane.send(Accepted { stream, permit }).await;
                    }
                    Err(error) => tracing::debug!(%error, "handing the connection to its lane failed; closed"),
                },
                Ok(false) => {}
                Err(_) => tracing::debug!("no HTTP/2 preface within the handshake timeout; connection closed"),
            }
        });
    }
}

fn configure(stream: &TcpStream, keepalive: Duration) -> io::Result<()> {
    // Without TCP_NODELAY a response written in several HTTP/2 frames waits up to 40 ms for
    // the client's delayed ACK.
    stream.set_nodelay(true)?;
    socket2::SockRef::from(stream).set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(keepalive))
}

/// Whether the first 24 bytes arrived (they are left in the socket for the HTTP/2 server).
async fn preface_arrived(stream: &TcpStream) -> bool {
    let mut buffer = [0u8; PREFACE_LEN];
    loop {
        match stream.peek(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(length) if length >= PREFACE_LEN => return true,
            // Part of it: clients send the preface in one packet, so this is rare; look again soon.
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// What the request layer knows of a call's connection: calls in flight and the last activity,
/// which the connection's idle timer reads.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    last_active_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self { opened: Instant::now(), in_flight: AtomicUsize::new(0), last_active_ms: AtomicU64::new(0) }
    }

    fn touch(&self) {
        self.last_active_ms.store(self.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// A call on this connection started.
    pub fn call_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }

    /// A call on this connection ended.
    pub fn call_ended(&self) {
        self.touch();
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// When the connection may be closed as idle, if nothing happens before; `None` while a
    /// call is in flight.
    fn idle_deadline(&self, idle_timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        Some(self.opened + Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed)) + idle_timeout)
    }
}

/// Connection info that calls see in their request extensions: the peer's addresses and the
/// connection's [`Activity`].
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// Local and remote address.
    pub tcp: TcpConnectInfo,
    /// Calls in flight, for the idle timeout.
    pub activity: Arc<Activity>,
}

/// An accepted connection holding one of the listener's connection permits until it closes,
/// and closing itself once idle for the idle timeout.
#[derive(Debug)]
pub struct LimitedConnection {
    stream: TcpStream,
    info: ConnectionInfo,
    idle_timeout: Duration,
    idle_timer: Pin<Box<tokio::time::Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl LimitedConnection {
    fn new(stream: TcpStream, permit: OwnedSemaphorePermit, idle_timeout: Duration) -> Self {
        let tcp = stream.connect_info();
        let activity = Arc::new(Activity::new());
        let idle_timer = Box::pin(tokio::time::sleep(idle_timeout));
        Self { stream, info: ConnectionInfo { tcp, activity }, idle_timeout, idle_timer, _permit: permit }
    }

    /// Whether the connection has been idle for the idle timeout; re-arms the timer otherwise.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        while self.idle_timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            match self.info.activity.idle_deadline(self.idle_timeout) {
                Some(deadline) if deadline <= now => return true,
                Some(deadline) => self.idle_timer.as_mut().reset(deadline.into()),
                // A call is running: look again one idle period from now.
                None => self.idle_timer.as_mut().reset((now + self.idle_timeout).into()),
            }
        }
        false
    }
}

impl Connected for LimitedConnection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        self.info.clone()
    }
}

impl AsyncRead for LimitedConnection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        // The HTTP/2 server always waits to read the next frame, so polling the idle timer here
        // keeps it running; an idle connection reads as closed, which ends it.
        if self.idle_expired(cx) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedConnection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
