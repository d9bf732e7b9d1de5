//! The pages on the gRPC listener: the built front-end (web/dist, embedded at compile time) for browsers, which call the same services through gRPC-web.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use tonic::body::Body;

/// One embedded file: its path, its content type, its bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $content_type:literal) => {
        Asset {
            path: $path,
            content_type: $content_type,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/dist/", $file)),
        }
    };
}

/// Everything the pages need; nothing else is served.
const ASSETS: [Asset; 6] = [
    asset!("/console/", "console/index.html", "text/html; charset=utf-8"),
    asset!("/console/console.js", "console/console.js", "text/javascript; charset=utf-8"),
    asset!("/console/console.css", "console/console.css", "text/css; charset=utf-8"),
    asset!("/code/", "code/index.html", "text/html; charset=utf-8"),
    asset!("/code/code.js", "code/code.js", "text/javascript; charset=utf-8"),
    asset!("/code/code.css", "code/code.css", "text/css; charset=utf-8"),
];

/// Paths that lead to a page.
const REDIRECTS: [(&str, &str); 3] = [("/", "/console/"), ("/console", "/console/"), ("/code", "/code/")];

/// Scripts and styles only from this origin, no framing, no referrer; the camera stays in the page.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; \
     object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

/// Adds [`WebPages`] in front of the gRPC routes.
#[derive(Debug, Clone, Copy)]
pub(super) struct WebPagesLayer;

impl<S> tower_layer::Layer<S> for WebPagesLayer {
    type Service = WebPages<S>;

    fn layer(&self, inner: S) -> WebPages<S> {
        WebPages { inner }
    }
}

/// Answers GET and HEAD for the pages' paths; passes everything else (gRPC, gRPC-web) on.
#[derive(Debug, Clone)]
pub(super) struct WebPages<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower_service::Service<http::Request<Body>> for WebPages<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let method = request.method();
        if method == Method::GET || method == Method::HEAD {
            let path = request.uri().path();
            if let Some((_, to)) = REDIRECTS.iter().find(|(from, _)| *from == path) {
                let response = page_response(StatusCode::FOUND, "text/plain; charset=utf-8", Bytes::new(), Some(to));
                return Box::pin(async move { Ok(response) });
            }
            if let Some(asset) = ASSETS.iter().find(|asset| asset.path == path) {
                let body = if method == Method::HEAD { Bytes::new() } else { Bytes::from_static(asset.bytes) };
                let response = page_response(StatusCode::OK, asset.content_type, body, None);
                return Box::pin(async move { Ok(response) });
            }
        }
        Box::pin(self.inner.call(request))
    }
}

fn page_response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
    location: Option<&str>,
) -> http::Response<Body> {
    let mut response = http::Response::new(Body::new(http_body_util::Full::new(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // A new binary brings new assets; browsers must ask again rather than run an old console.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Some(location) = location.and_then(|to| HeaderValue::from_str(to).ok()) {
        headers.insert(header::LOCATION, location);
    }
    response
}
