//! Why a use case failed, named for what went wrong in the domain; `grpc::status` maps each variant to one gRPC status.

use crate::code::{CentreCode, Purpose};
use crate::issue::IssueError;
use crate::loan::FigureOutOfRange;
use crate::model::Verdict;
use crate::store::StoreError;

/// Why a call failed. Messages carry no personal data.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A field of the request is missing, malformed or out of range.
    #[error("{field}: {problem}")]
    InvalidRequest {
        /// The field, as the API names it (e.g. `records[3].status`).
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The request names a centre this deployment does not issue for.
    #[error("this deployment does not issue for centre {0}")]
    NotIssuedHere(CentreCode),
    /// The counter asked for a purpose this deployment does not serve.
    #[error("this centre does not serve purpose {0}")]
    PurposeNotServed(Purpose),
    /// A loan's co-borrower is the borrower.
    #[error("co_borrower: the same member as the borrower; a co-borrower is another depositor")]
    SameMemberTwice,
    /// The home centre has published no status for the member.
    #[error("centre {0} has published no deposit status for this member")]
    NotPublished(CentreCode),
    /// The member holds no live code with this id issued here.
    #[error("the member holds no live code with this id issued here")]
    NoLiveCode,
    /// The verification id is unknown, expired, or its code was revoked since.
    #[error("unknown or expired verification id")]
    NotGranted,
    /// The signing key cannot sign now (not published, revoked, outside its window), or the
    /// registry holds figures no code may carry.
    #[error("{0}")]
    CannotSign(IssueError),
    /// A loan party's code did not verify VALID; `others_consumed`: an earlier party's code
    /// was consumed by this request (repeating it with the same request id uses it again).
    #[error(
        "{party}: the code is not valid: {verdict}{}",
        if *others_consumed {
            "; the borrower's code was consumed by this request: repeat it with the same request_id to use it again"
        } else {
            ""
        }
    )]
    PartyNotValid {
        /// `borrower` or `co_borrower`.
        party: &'static str,
        /// Its verdict.
        verdict: Verdict,
        /// Whether another party's code was consumed before.
        others_consumed: bool,
    },
    /// A loan party's deposit figures are beyond what a home centre may publish.
    #[error("deposit figure out of range: {0}")]
    FigureOutOfRange(FigureOutOfRange),
    /// This deployment has no trust list file to reload (the embedded dev setup has one; a
    /// node following a directory takes its list from there).
    #[error("this deployment has no trust list file to reload (a node following a directory fetches its list)")]
    NoTrustListFile,
    /// The directory's signed list in force is past its expiry: verification fails closed
    /// until a fresh list arrives.
    #[error(
        "the national trust list expired at {0} and no fresher list arrived from the directory: verification is suspended"
    )]
    TrustListExpired(crate::clock::Timestamp),
    /// The member page's session is unknown or expired.
    #[error("unknown or expired session: open the page again from the app")]
    NoSession,
    /// This node is not the trust directory.
    #[error("this node is not the trust directory")]
    NotTheDirectory,
    /// A key change the directory refuses.
    #[error("key change refused: {0}")]
    KeyChangeRefused(String),
    /// The trust list file was not reloaded; the list in force stays. The reason names the
    /// invalid field, never the file's path.
    #[error("trust list not reloaded, the list in force stays: {0}")]
    TrustListNotReloaded(String),
    /// The store did not answer: retry later.
    #[error(transparent)]
    StoreUnavailable(StoreError),
    /// A bug or corrupt data; logged, never shown.
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    /// An invalid request field.
    pub fn invalid(field: impl Into<String>, problem: impl std::fmt::Display) -> Self {
        ServiceError::InvalidRequest { field: field.into(), problem: problem.to_string() }
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => ServiceError::StoreUnavailable(error),
            StoreError::Corrupt(message) => ServiceError::Internal(message),
        }
    }
}
