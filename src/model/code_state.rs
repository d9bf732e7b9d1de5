//! The life of a code after issue: its uses (with the caller's request id), lookup grants, revocation and the usage record.

use crate::clock::Timestamp;
use crate::code::{CentreCode, CodeId, DepositClaims, Purpose};

use super::{RegistryRecord, Subject, Verdict};

/// A caller's id for one verification request: a retry with the same id from the same centre
/// is recognised as the same request, never as a second use. 1 to 64 characters of
/// `A-Z a-z 0-9 . _ : -` (a UUID fits).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// Longest request id.
    pub const MAX_LEN: usize = 64;

    /// The id, if `text` is one.
    pub fn new(text: &str) -> Option<Self> {
        let allowed = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-');
        ((1..=Self::MAX_LEN).contains(&text.len()) && text.as_bytes().iter().all(allowed))
            .then(|| Self(text.to_owned()))
    }

    /// A fresh random id (32 hex digits).
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 16];
        crate::random::fill(&mut bytes)?;
        Ok(Self(hex::encode(bytes)))
    }

    /// The id of one part of the request (e.g. a loan party): the id, `:` and `suffix`. It may
    /// be longer than a caller's id ([`RequestId::MAX_LEN`] bounds what callers send, not what
    /// is stored), so that two requests never share a part.
    pub fn part(&self, suffix: &str) -> Self {
        Self(format!("{}:{suffix}", self.0))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One line of a member's usage record: a verification of one of their codes, or several
/// identical ones in a row (a replayed code), counted instead of repeated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEntry {
    /// When the verification happened (the latest, if repeated).
    pub at: Timestamp,
    /// When the first of the repeated verifications happened (`at` if not repeated).
    pub first_at: Timestamp,
    /// How many identical verifications the line stands for (at least 1).
    pub count: u32,
    /// The verifying centre.
    pub centre: CentreCode,
    /// The purpose the code was shown for.
    pub purpose: Purpose,
    /// The verdict.
    pub result: Verdict,
    /// The code verified.
    pub code_id: CodeId,
}

impl UsageEntry {
    /// A single verification at `at`.
    pub fn single(at: Timestamp, centre: CentreCode, purpose: Purpose, result: Verdict, code_id: CodeId) -> Self {
        Self { at, first_at: at, count: 1, centre, purpose, result, code_id }
    }

    /// Whether `other` repeats this entry (same centre, purpose, code and verdict).
    pub fn repeats(&self, other: &UsageEntry) -> bool {
        (self.centre, self.purpose, self.code_id, self.result)
            == (other.centre, other.purpose, other.code_id, other.result)
    }
}

/// One verification that wants to consume a code.
#[derive(Debug, Clone)]
pub struct CodeUse {
    /// Whose code it is.
    pub subject: Subject,
    /// Which code.
    pub code_id: CodeId,
    /// The verifying centre.
    pub centre: CentreCode,
    /// The caller's request id, if it sent one: a retry with it gets [`UseOutcome::Repeated`].
    pub request_id: Option<RequestId>,
    /// The code's purpose.
    pub purpose: Purpose,
    /// Now.
    pub at: Timestamp,
    /// How long the "used" mark must outlive now: until the code has expired anyway, and at
    /// least as long as the lookup grant it holds.
    pub used_ttl_seconds: u64,
    /// The lookup grant kept with the used mark (see `CodeStore::lookup_granted`).
    pub grant: String,
    /// The verified deposit claims, kept with the grant for a later loan evaluation.
    pub claims: DepositClaims,
    /// A deferred consumption replayed: the code was accepted offline at `at`, so a code used
    /// before is recorded as [`Verdict::DoubleUse`], not ALREADY_USED.
    pub accepted_offline: bool,
}

/// A consumption deferred because the issuer's node did not answer: accepted offline here,
/// queued in this node's store and replayed at the issuer when it answers again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeferredUse {
    /// The issuer, whose node consumes it.
    pub issuer: CentreCode,
    /// The code.
    pub code_id: CodeId,
    /// The request it was accepted under (the queue's key: a retry replaces its entry).
    pub request_id: RequestId,
    /// The code text, as scanned.
    pub text: String,
    /// When the counter accepted it.
    pub accepted_at: Timestamp,
}

/// What a lookup grant gives access to. The service decides how long it lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    /// The member whose code was verified.
    pub subject: Subject,
    /// When the verification that made the grant happened.
    pub verified_at: Timestamp,
    /// The deposit claims of the code verified.
    pub claims: DepositClaims,
    /// The member's live registry record, if published.
    pub live: Option<RegistryRecord>,
}

/// What consuming a code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UseOutcome {
    /// First use: the code is now used; here is the member's live status, if published.
    Consumed {
        /// Live registry record.
        live: Option<RegistryRecord>,
    },
    /// The same centre consumed it before with the same request id: a retry of that
    /// verification, which stands; nothing new is written.
    Repeated {
        /// Live registry record.
        live: Option<RegistryRecord>,
        /// The lookup grant of the original verification.
        grant: String,
    },
    /// Someone consumed it before.
    AlreadyUsed {
        /// When.
        at: Timestamp,
        /// Which centre.
        centre: CentreCode,
    },
    /// The member revoked the code.
    Revoked,
}
