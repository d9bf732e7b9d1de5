//! The link to other centres' nodes as the domain sees it: consume a code at its issuer's node (the gRPC client is `federation::remote`).

use std::future::Future;
use std::pin::Pin;

use crate::code::CentreCode;
use crate::model::{PreviousUse, RegistryRecord, RequestId, Verdict};

/// A code to consume at its issuer's node, for this node's counter.
#[derive(Debug, Clone)]
pub struct RemoteUse {
    /// The code text as scanned.
    pub text: String,
    /// The centre whose counter verified (one this node serves).
    pub verifying_centre: CentreCode,
    /// The idempotency key: a retry with it is the same use at the issuer too.
    pub request_id: RequestId,
    /// For a replayed deferred consumption: when this node's counter accepted the code.
    pub accepted_offline_at: Option<crate::clock::Timestamp>,
}

/// What the issuer's node answered.
#[derive(Debug, Clone)]
pub struct RemoteAnswer {
    /// Its verdict: VALID, ALREADY_USED, CODE_REVOKED, or a rejection by its own checks.
    pub verdict: Verdict,
    /// Its explanation, if any.
    pub detail: Option<String>,
    /// For VALID: the member's live record at the home centre.
    pub live: Option<RegistryRecord>,
    /// For ALREADY_USED: when and where.
    pub previous_use: Option<PreviousUse>,
    /// For VALID: the verification id the issuer made (this node caches the answer under it).
    pub verification_id: Option<String>,
}

/// Why the issuer's node gave no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    /// No answer in time, no connection, or the node is skipped for a while after failing.
    #[error("centre {centre}'s node is unreachable: {cause}")]
    Unreachable {
        /// The issuer.
        centre: CentreCode,
        /// What happened (for the log).
        cause: String,
    },
    /// The node answered with an error (it refused the call or could not serve it).
    #[error("centre {centre}'s node refused: {cause}")]
    Refused {
        /// The issuer.
        centre: CentreCode,
        /// Its status (for the log).
        cause: String,
    },
}

/// A boxed future, so that the link can live behind `dyn`.
pub type LinkFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Consumption at issuers' nodes.
pub trait IssuerLink: Send + Sync + 'static {
    /// Consumes `code_use` at `node` (the address the trust list names for `issuer`) within
    /// the link's time limit.
    fn consume_at_issuer<'a>(
        &'a self,
        issuer: CentreCode,
        node: &'a str,
        code_use: RemoteUse,
    ) -> LinkFuture<'a, Result<RemoteAnswer, LinkError>>;

    /// The code text behind `digits` at `node` (the issuer's): `None` if they name no live code.
    fn resolve_digits<'a>(
        &'a self,
        issuer: CentreCode,
        node: &'a str,
        digits: String,
    ) -> LinkFuture<'a, Result<Option<String>, LinkError>>;
}
