//! Load shedding by RPC class: verification is kept alive longest; issuance (QR rendering) and bulk publishing are refused first, with RESOURCE_EXHAUSTED and a retry hint, while verification is busy.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::HeaderValue;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;

/// Calls of each class running at once; see [`crate::config::LimitsConfig`].
#[derive(Debug, Clone, Copy)]
pub struct ClassLimits {
    /// Verification, loan evaluation, lookups, node-to-node consumption.
    pub verify: usize,
    /// Issuance (which renders QR images) and the member page's codes.
    pub issue: usize,
    /// Publishing batches of registry records.
    pub publish: usize,
}

/// How long a shed caller should wait before trying again.
const RETRY_PUSHBACK_MS: &str = "200";

/// How long issuance and publishing stay shed after verification was last seen busy: in-flight
/// counts dip for moments even under a steady overload, and each issuance or batch let in
/// during a dip costs as much CPU as hundreds of verifications.
const BUSY_HOLD_MILLIS: u64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Verify,
    Issue,
    Publish,
    /// Health, reflection, trust list, pages: cheap, never shed here.
    Other,
}

fn class_of(path: &str) -> Class {
    match path {
        "/liangma.v1.VerifierService/VerifyCode"
        | "/liangma.v1.LoanService/EvaluateOffsiteLoan"
        | "/liangma.v1.RegistryService/LookupStatus"
        | "/liangma.v1.NodeService/ConsumeCode"
        | "/liangma.v1.NodeService/ResolveDigits" => Class::Verify,
        "/liangma.v1.IssuerService/IssueCode" | "/liangma.v1.MemberPageService/ShowCode" => Class::Issue,
        "/liangma.v1.RegistryService/PublishStatuses" => Class::Publish,
        _ => Class::Other,
    }
}

#[derive(Debug)]
struct Gates {
    limits: ClassLimits,
    verify: Arc<Semaphore>,
    issue: Arc<Semaphore>,
    publish: Arc<Semaphore>,
    started: std::time::Instant,
    /// Milliseconds after `started` until which verification counts as busy.
    busy_until: std::sync::atomic::AtomicU64,
}

impl Gates {
    /// A permit for the call, or `None` to shed it.
    fn admit(&self, class: Class) -> Result<Option<OwnedSemaphorePermit>, &'static str> {
        use std::sync::atomic::Ordering::Relaxed;
        if class == Class::Other {
            return Ok(None);
        }
        let verifying = self.limits.verify - self.verify.available_permits();
        let now = self.started.elapsed().as_millis() as u64;
        // While verification uses more than half its room, and for a second after, the other
        // classes give way to it.
        let verification_busy = if verifying * 2 > self.limits.verify {
            self.busy_until.store(now + BUSY_HOLD_MILLIS, Relaxed);
            true
        } else {
            now < self.busy_until.load(Relaxed)
        };
        let gate = match class {
            Class::Other => return Ok(None),
            Class::Verify => &self.verify,
            Class::Issue if verification_busy => return Err("issuance"),
            Class::Publish if verification_busy => return Err("publishing"),
            Class::Issue => &self.issue,
            Class::Publish => &self.publish,
        };
        let name = match class {
            Class::Verify => "verification",
            Class::Issue => "issuance",
            _ => "publishing",
        };
        Arc::clone(gate).try_acquire_owned().map(Some).map_err(|_| name)
    }
}

/// Adds [`Shedding`] in front of the routes.
#[derive(Debug, Clone)]
pub(super) struct OverloadLayer {
    gates: Arc<Gates>,
}

impl OverloadLayer {
    pub(super) fn new(limits: ClassLimits) -> Self {
        let gates = Gates {
            limits,
            verify: Arc::new(Semaphore::new(limits.verify)),
            issue: Arc::new(Semaphore::new(limits.issue)),
            publish: Arc::new(Semaphore::new(limits.publish)),
            started: std::time::Instant::now(),
            busy_until: std::sync::atomic::AtomicU64::new(0),
        };
        Self { gates: Arc::new(gates) }
    }
}

impl<S> tower_layer::Layer<S> for OverloadLayer {
    type Service = Shedding<S>;

    fn layer(&self, inner: S) -> Shedding<S> {
        Shedding { inner, gates: Arc::clone(&self.gates) }
    }
}

/// See [`OverloadLayer`].
#[derive(Debug, Clone)]
pub(super) struct Shedding<S> {
    inner: S,
    gates: Arc<Gates>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower_service::Service<http::Request<Body>> for Shedding<S>
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
        match self.gates.admit(class_of(request.uri().path())) {
            Ok(permit) => {
                let call = self.inner.call(request);
                Box::pin(async move {
                    let answer = call.await;
                    drop(permit);
                    answer
                })
            }
            Err(class) => {
                crate::metrics::shed(class);
                let mut response = tonic::Status::resource_exhausted(format!(
                    "the service is busy ({class} is shed first to keep verification going); retry in {RETRY_PUSHBACK_MS} ms"
                ))
                .into_http::<Body>();
                // gRPC's retry hint (A6), read by clients with retry policies.
                response.headers_mut().insert("grpc-retry-pushback-ms", HeaderValue::from_static(RETRY_PUSHBACK_MS));
                Box::pin(async move { Ok(response) })
            }
        }
    }
}
