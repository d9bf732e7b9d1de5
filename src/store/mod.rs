//! Storage behind traits: the registry of deposit statuses, and the per-code state (single use,
//! revocation, usage record, lookup grants, digits). A memory and a Redis implementation.

pub mod memory;
pub mod redis;

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::code::{CentreCode, CodeId, DepositClaims, Purpose, SubjectRef};

/// A member as the registry knows them: home centre and pseudonymous reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject {
    /// The home centre whose subject secret made the reference.
    pub centre: CentreCode,
    /// The pseudonymous reference.
    pub reference: SubjectRef,
}

impl Subject {
    /// Storage key of the subject: every key of one member shares it, so that one atomic
    /// operation touches one Redis Cluster slot.
    pub fn storage_key(&self) -> String {
        format!("{}:{}", self.centre, self.reference.to_full_hex())
    }
}

/// The latest deposit status the home centre published for a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryRecord {
    /// Status; `registry_version` orders records (a record never replaces a newer one).
    pub status: DepositClaims,
    /// Name as a counter may see it, e.g. 张*.
    pub masked_name: String,
    /// ID number as a counter may see it, e.g. 110***********002X.
    pub masked_id_number: String,
    /// When it was published.
    pub published_at: Timestamp,
}

/// How a publish batch went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishCounts {
    /// Records stored.
    pub applied: u32,
    /// Records ignored because the stored version was the same or newer.
    pub ignored_not_newer: u32,
}

/// How a publish batch went: what was stored, what was older, and each record refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishOutcome {
    /// Records stored, and records ignored because the stored version was the same or newer.
    pub counts: PublishCounts,
    /// Records refused, by their index in the batch; retrying them unchanged cannot succeed.
    pub rejected: Vec<(usize, PublishRejection)>,
}

/// Why one record of a publish batch was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishRejection {
    /// Its version is more than the allowed step above the stored one (a typo or a forged
    /// version would otherwise pin the record for good).
    VersionStepTooLarge,
    /// The stored record cannot be read; an operator repairs it (docs/operations.md).
    StoredRecordUnreadable,
}

impl PublishRejection {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            PublishRejection::VersionStepTooLarge => "VERSION_STEP_TOO_LARGE",
            PublishRejection::StoredRecordUnreadable => "STORED_RECORD_UNREADABLE",
        }
    }
}

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
    /// The verdict name, e.g. `VALID`, `ALREADY_USED`, `EXPIRED`.
    pub result: String,
    /// The code verified.
    pub code_id: CodeId,
}

impl UsageEntry {
    /// A single verification at `at`.
    pub fn single(at: Timestamp, centre: CentreCode, purpose: Purpose, result: &str, code_id: CodeId) -> Self {
        Self { at, first_at: at, count: 1, centre, purpose, result: result.into(), code_id }
    }

    /// Whether `other` repeats this entry (same centre, purpose, code and verdict).
    fn repeats(&self, other: &UsageEntry) -> bool {
        (self.centre, self.purpose, self.code_id, &self.result)
            == (other.centre, other.purpose, other.code_id, &other.result)
    }
}

/// The member's usage record, newest first: the VALID entries (at most one per code, never
/// displaced by anything a replayer can cause) merged with the others (repeats collapsed).
fn merge_usage(valid: Vec<UsageEntry>, others: Vec<UsageEntry>) -> Vec<UsageEntry> {
    let mut entries = valid;
    entries.extend(others);
    // Stable: entries of the same second keep their list order.
    entries.sort_by_key(|entry| std::cmp::Reverse(entry.at));
    entries
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
    /// The lookup grant kept with the used mark (see [`CodeStore::lookup_granted`]).
    pub grant: String,
    /// The verified deposit claims, kept with the grant for a later loan evaluation.
    pub claims: DepositClaims,
}

/// A code issued here, as the store keeps it until it expires.
#[derive(Debug, Clone, Copy)]
pub struct IssuedMark<'a> {
    /// Whose code it is.
    pub subject: Subject,
    /// Which code.
    pub code_id: CodeId,
    /// Its digits form.
    pub digits: &'a str,
    /// Its text form, what the digits resolve to.
    pub text: &'a str,
}

/// What a lookup grant gives access to. The service decides how long it lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
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

/// Compares a presented lookup grant with the stored one without stopping at the first
/// difference, so response times say nothing about how much of a guess was right.
fn same_secret(stored: &str, presented: &str) -> bool {
    stored.len() == presented.len()
        && stored.bytes().zip(presented.bytes()).fold(0u8, |differences, (a, b)| differences | (a ^ b)) == 0
}

/// Verdict names as the usage record stores them.
pub const USAGE_VALID: &str = "VALID";
/// See [`USAGE_VALID`].
pub const USAGE_ALREADY_USED: &str = "ALREADY_USED";
/// See [`USAGE_VALID`].
pub const USAGE_CODE_REVOKED: &str = "CODE_REVOKED";
/// Entries kept per member of each kind (VALID, and all others), newest first; older ones are dropped.
pub const USAGE_ENTRIES_KEPT: usize = 200;

/// A storage failure. Either the store could not be reached (retryable) or it returned data
/// this version cannot read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Connection refused, timed out or dropped: retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered something this version cannot read.
    #[error("store returned unreadable data: {0}")]
    Corrupt(String),
}

/// The registry of deposit statuses.
pub trait RegistryStore: Send + Sync + 'static {
    /// Stores each record unless the stored one has the same or a newer version, or one more
    /// than `max_version_step` below it; one unreadable stored record refuses only its own.
    fn publish(
        &self,
        records: &[(Subject, RegistryRecord)],
        max_version_step: u64,
    ) -> impl Future<Output = Result<PublishOutcome, StoreError>> + Send;

    /// The member's record, if published.
    fn get(&self, subject: Subject) -> impl Future<Output = Result<Option<RegistryRecord>, StoreError>> + Send;

    /// Deletes the member's record (an operator's repair); `false` if there was none.
    fn remove(&self, subject: Subject) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Answers when the store can be reached (for health reporting).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Per-code state. [`CodeStore::consume`] is the verification hot path: one atomic step (one
/// Redis round trip) that checks revocation, consumes, appends the usage entry, stores the
/// lookup grant with the used mark and reads the live status.
pub trait CodeStore: Send + Sync + 'static {
    /// Consumes the code unless it is revoked or used; appends the outcome to the member's
    /// usage record either way.
    fn consume(&self, code_use: &CodeUse) -> impl Future<Output = Result<UseOutcome, StoreError>> + Send;

    /// Appends a usage entry for an authentic code that was not consumed (e.g. expired); a
    /// repeat of the newest non-VALID entry only counts up that entry.
    fn record_usage(&self, subject: Subject, entry: &UsageEntry)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The member's usage record, newest first.
    fn usage(&self, subject: Subject) -> impl Future<Output = Result<Vec<UsageEntry>, StoreError>> + Send;

    /// Marks a code issued here revoked for `ttl_seconds` (longer than any code lives); a
    /// lookup grant of its verification ends with it. `false`, and nothing written, if the
    /// member holds no live code with this id.
    fn revoke(
        &self,
        subject: Subject,
        code_id: CodeId,
        ttl_seconds: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// `None` unless the code was consumed with `grant` and is not revoked; otherwise when it
    /// was verified, the claims verified and the live status.
    fn lookup_granted(
        &self,
        subject: Subject,
        code_id: CodeId,
        grant: &str,
    ) -> impl Future<Output = Result<Option<Granted>, StoreError>> + Send;

    /// Records a code issued here (so its member can revoke it) and stores digits -> code text
    /// unless the digits are taken; `false` if taken. Both live `ttl_seconds`.
    fn put_issued(
        &self,
        issued: &IssuedMark<'_>,
        ttl_seconds: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The code text for live digits.
    fn resolve_digits(&self, digits: &str) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
}
