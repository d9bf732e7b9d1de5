//! The gRPC edge under misbehaving clients: malformed bytes, oversized messages, silent and
//! idle connections, half-sent requests, too many connections. Raw HTTP/2 (the h2 crate) plays
//! the clients a well-behaved library would never be.

use std::time::{Duration, Instant};

use bytes::Bytes;
use liangma::pb::v1 as pb;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::harness::*;

type H2Client = h2::client::SendRequest<Bytes>;

async fn h2_connect(app: &App) -> (H2Client, tokio::task::JoinHandle<Result<(), h2::Error>>) {
    let tcp = TcpStream::connect(app.address).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    (client, tokio::spawn(connection))
}

fn grpc_call(app: &App, path: &str) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(format!("http://{}{path}", app.address))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap()
}

/// A gRPC message frame: uncompressed flag, big-endian length, the bytes.
fn frame(message: &[u8]) -> Bytes {
    let mut framed = vec![0];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed.into()
}

/// The grpc-status of a response, from its headers (trailers-only) or its trailers.
async fn grpc_status(response: h2::client::ResponseFuture) -> String {
    let response = response.await.unwrap();
    if let Some(status) = response.headers().get("grpc-status") {
        return status.to_str().unwrap().to_owned();
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let data = data.unwrap();
        body.flow_control().release_capacity(data.len()).unwrap();
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    trailers.get("grpc-status").unwrap().to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_a_string_field_is_invalid_argument() {
    let app = spawn_app(Backend::Memory).await;
    let (mut client, _connection) = h2_connect(&app).await;
    // VerifyCodeRequest.text (field 1, length-delimited) holding the byte 0xff.
    let (response, mut body) =
        client.send_request(grpc_call(&app, "/liangma.v1.VerifierService/VerifyCode"), false).unwrap();
    body.send_data(frame(&[0x0a, 0x01, 0xff]), true).unwrap();
    assert_eq!(grpc_status(response).await, (tonic::Code::InvalidArgument as i32).to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_take_no_larger_messages_than_the_services() {
    let app = spawn_app(Backend::Memory).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel().await);
    let huge = tonic_health::pb::HealthCheckRequest { service: "x".repeat(300 * 1024) };
    let error = health.check(huge).await.unwrap_err();
    assert!(matches!(error.code(), tonic::Code::OutOfRange | tonic::Code::ResourceExhausted), "{error:?}");
    // ServerReflectionRequest { host: 300 KiB, list_services: "" }: refused unread, so the
    // reflection service (which ends its stream quietly on a bad request) answers nothing.
    let (mut client, _connection) = h2_connect(&app).await;
    let (response, mut body) = client
        .send_request(grpc_call(&app, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"), false)
        .unwrap();
    let mut message = vec![0x0a, 0x80, 0x80, 0x13];
    message.resize(message.len() + 300 * 1024, b'x');
    message.extend_from_slice(&[0x3a, 0x00]);
    body.send_data(frame(&message), true).unwrap();
    let mut answer = response.await.unwrap().into_body();
    let mut answered = 0;
    while let Some(data) = answer.data().await {
        answered += data.unwrap().len();
    }
    assert_eq!(answered, 0, "the oversized request was processed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_end_at_the_deadline_and_never_starve_other_clients() {
    let app = spawn_configured(Backend::Memory, |config| {
        config.limits.max_streams_per_connection = 4;
        config.limits.max_calls_per_connection = 4;
        config.limits.request_timeout_ms = 800;
    })
    .await;
    let code = app.issue(ZHANG_WEI).await;
    let (client, _connection) = h2_connect(&app).await;
    // One whole call first, so that the server's settings have arrived.
    let mut client = client.ready().await.unwrap();
    let (response, mut body) = client.send_request(grpc_call(&app, "/grpc.health.v1.Health/Check"), false).unwrap();
    body.send_data(frame(&[]), true).unwrap();
    assert_eq!(grpc_status(response).await, "0");
    let mut stalled = Vec::new();
    for _ in 0..4 {
        client = client.ready().await.unwrap();
        let (response, mut body) =
            client.send_request(grpc_call(&app, "/liangma.v1.VerifierService/VerifyCode"), false).unwrap();
        // Announces 200 bytes, sends 3, and stops.
        body.send_data(Bytes::from_static(&[0, 0, 0, 0, 200, 0x0a, 0x01, b'L']), false).unwrap();
        stalled.push((response, body));
    }
    assert_eq!(client.current_max_send_streams(), 4, "the server announces its stream limit");
    // Meanwhile another client is served at once.
    let started = Instant::now();
    assert_eq!(verdict(&app.verify_text(&code.text).await.unwrap()), pb::Verdict::Valid);
    assert!(started.elapsed() < Duration::from_millis(800), "served while the others stall");
    for (response, _body) in stalled {
        assert_eq!(grpc_status(response).await, (tonic::Code::DeadlineExceeded as i32).to_string());
    }
}

/// Reads until the peer closes; `true` if it did within `within`.
async fn closed_within(socket: &mut TcpStream, within: Duration) -> bool {
    let mut buffer = [0u8; 256];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline.into(), socket.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_and_the_connection_cap_holds() {
    let app = spawn_configured(Backend::Memory, |config| {
        config.limits.max_connections = 3;
        config.limits.handshake_timeout_ms = 400;
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(app.address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Over the cap: closed at once.
    let mut over = TcpStream::connect(app.address).await.unwrap();
    assert!(closed_within(&mut over, Duration::from_millis(300)).await, "a fourth connection is refused");
    // The silent ones never said a word of HTTP/2: closed after the handshake timeout.
    for socket in &mut silent {
        assert!(closed_within(socket, Duration::from_secs(3)).await, "a silent connection stays open");
    }
    // Their places are free again for a real client.
    assert_eq!(verdict(&app.verify_text(&app.issue(ZHANG_WEI).await.text).await.unwrap()), pb::Verdict::Valid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let app = spawn_configured(Backend::Memory, |config| config.limits.idle_timeout_secs = 1).await;
    let (client, connection) = h2_connect(&app).await;
    let mut client = client.ready().await.unwrap();
    let (response, mut body) = client.send_request(grpc_call(&app, "/grpc.health.v1.Health/Check"), false).unwrap();
    body.send_data(frame(&[]), true).unwrap();
    assert_eq!(grpc_status(response).await, "0");
    let closed = tokio::time::timeout(Duration::from_secs(4), connection).await;
    assert!(closed.is_ok(), "the server keeps an idle connection open");
}
