//! Storage behind traits: the registry of deposit statuses, and the per-code state (single use,
//! revocation, usage record, lookup grants, digits). A memory and a Redis implementation.

pub mod memory;
pub mod redis;
mod redis_topology;

use std::future::Future;

use crate::clock::Timestamp;
use crate::code::CodeId;
use crate::model::{
    CodeUse, DeferredUse, Granted, PublishOutcome, RegistryRecord, RequestId, Subject, UsageEntry, UseOutcome,
};

/// Most deferred consumptions queued at once; past it a node fails closed again.
pub const MAX_DEFERRED: usize = 100_000;

/// The member's usage record, newest first: the VALID entries (at most one per code, never
/// displaced by anything a replayer can cause) merged with the others (repeats collapsed).
fn merge_usage(valid: Vec<UsageEntry>, others: Vec<UsageEntry>) -> Vec<UsageEntry> {
    let mut entries = valid;
    entries.extend(others);
    // Stable: entries of the same second keep their list order.
    entries.sort_by_key(|entry| std::cmp::Reverse(entry.at));
    entries
}

/// Compares a presented lookup grant with the stored one without stopping at the first
/// difference, so response times say nothing about how much of a guess was right.
fn same_secret(stored: &str, presented: &str) -> bool {
    stored.len() == presented.len()
        && stored.bytes().zip(presented.bytes()).fold(0u8, |differences, (a, b)| differences | (a ^ b)) == 0
}

/// Everything the service needs of storage, named once for the bounds that need both halves.
pub trait Store: RegistryStore + CodeStore {}

impl<S: RegistryStore + CodeStore> Store for S {}

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

    /// Marks a code issued here revoked at `at` for at least `ttl_seconds` (longer than any
    /// code lives); a lookup grant of its verification ends with it, its use stays in the
    /// usage record. `false`, and nothing written, if the member holds no live code with this id.
    fn revoke(
        &self,
        subject: Subject,
        code_id: CodeId,
        at: Timestamp,
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

    /// Issuance's one round trip: notes `code_id` as issued here for `ttl_seconds` (so its
    /// member may revoke it) and reads the member's registry record. The mark is written whether
    /// or not there is a record: a mark without a code names nothing a verification can meet.
    fn mark_issued_and_get(
        &self,
        subject: Subject,
        code_id: CodeId,
        ttl_seconds: u64,
    ) -> impl Future<Output = Result<Option<RegistryRecord>, StoreError>> + Send;

    /// Stores digits -> code text for `ttl_seconds` unless the digits are taken; `false` if taken.
    fn put_digits(
        &self,
        digits: &str,
        text: &str,
        ttl_seconds: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Caches what the issuer's node answered when it consumed a code for this node (the
    /// member's record lives in that node's store), for lookups by the verification id; lives
    /// `ttl_seconds`. A later answer for the same code replaces it.
    fn put_remote_grant(
        &self,
        code_id: CodeId,
        grant: &str,
        granted: &Granted,
        ttl_seconds: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The cached answer of [`CodeStore::put_remote_grant`], if `grant` matches.
    fn remote_granted(
        &self,
        subject: Subject,
        code_id: CodeId,
        grant: &str,
    ) -> impl Future<Output = Result<Option<Granted>, StoreError>> + Send;

    /// Queues a deferred consumption (a retry of the same request replaces its entry); `false`,
    /// and nothing queued, when [`MAX_DEFERRED`] are queued already.
    fn defer(&self, deferred: &DeferredUse) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Up to about `limit` queued deferred consumptions.
    fn deferred(&self, limit: usize) -> impl Future<Output = Result<Vec<DeferredUse>, StoreError>> + Send;

    /// Removes a replayed deferred consumption.
    fn deferred_done(&self, request_id: &RequestId) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores a member page session (the hash of its token) for `ttl_seconds`.
    fn put_session(
        &self,
        key: &str,
        subject: Subject,
        ttl_seconds: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The member of a live session.
    fn session(&self, key: &str) -> impl Future<Output = Result<Option<Subject>, StoreError>> + Send;

    /// The code text for live digits.
    fn resolve_digits(&self, digits: &str) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
}
