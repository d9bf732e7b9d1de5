//! The pages on the gRPC listener, over plain HTTP/1.1 as a browser asks: the embedded build of
//! web/, with the headers that keep it to itself. (The console's behaviour is tested in a real
//! browser by web/test/console.mjs.)

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Backend, spawn_app};

/// The status line, the headers (lower-case names) and the body of one HTTP/1.1 request.
async fn get(address: std::net::SocketAddr, method: &str, path: &str) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response.windows(4).position(|window| window == b"\r\n\r\n").expect("a header block");
    let head = String::from_utf8(response[..split].to_vec()).unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
        .collect();
    (status, headers, response[split + 4..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(header, _)| header == name).map(|(_, value)| value.as_str())
}

#[tokio::test]
async fn the_console_is_served_as_built_with_a_strict_content_security_policy() {
    let app = spawn_app(Backend::Memory).await;
    let (status, headers, _) = get(app.address, "GET", "/").await;
    assert!(status.contains(" 302 "), "{status}");
    assert_eq!(header(&headers, "location"), Some("/console/"));

    let (status, headers, body) = get(app.address, "GET", "/console/").await;
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(header(&headers, "content-type"), Some("text/html; charset=utf-8"));
    let policy = header(&headers, "content-security-policy").unwrap();
    assert!(policy.contains("default-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    let built = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/web/dist/console/index.html")).unwrap();
    assert_eq!(body, built, "the embedded page is web/dist's");

    let (status, headers, body) = get(app.address, "GET", "/console/console.js").await;
    assert!(status.contains(" 200 ") && body.len() > 1000, "{status}");
    assert_eq!(header(&headers, "content-type"), Some("text/javascript; charset=utf-8"));
    let (status, _, body) = get(app.address, "HEAD", "/console/console.css").await;
    assert!(status.contains(" 200 ") && body.is_empty(), "{status}");
    // Anything else is not a page (the gRPC routes answer it).
    let (status, headers, _) = get(app.address, "GET", "/console/../../etc/passwd").await;
    assert!(!status.contains(" 200 ") || header(&headers, "content-type") != Some("text/html; charset=utf-8"));
}
