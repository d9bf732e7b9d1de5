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

/// One verification of a member's code, as the member's usage record shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEntry {
    /// When the verification happened.
    pub at: Timestamp,
    /// The verifying centre.
    pub centre: CentreCode,
    /// The purpose the code was shown for.
    pub purpose: Purpose,
    /// The verdict name, e.g. `VALID`, `ALREADY_USED`, `EXPIRED`.
    pub result: String,
    /// The code verified.
    pub code_id: CodeId,
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
/// Entries kept per member, newest first; older ones are dropped.
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
    /// Stores each record unless the stored one has the same or a newer version.
    fn publish(
        &self,
        records: &[(Subject, RegistryRecord)],
    ) -> impl Future<Output = Result<PublishCounts, StoreError>> + Send;

    /// The member's record, if published.
    fn get(&self, subject: Subject) -> impl Future<Output = Result<Option<RegistryRecord>, StoreError>> + Send;
}

/// Per-code state. [`CodeStore::consume`] is the verification hot path: one atomic step (one
/// Redis round trip) that checks revocation, consumes, appends the usage entry, stores the
/// lookup grant with the used mark and reads the live status.
pub trait CodeStore: Send + Sync + 'static {
    /// Consumes the code unless it is revoked or used; appends the outcome to the member's
    /// usage record either way.
    fn consume(&self, code_use: &CodeUse) -> impl Future<Output = Result<UseOutcome, StoreError>> + Send;

    /// Appends a usage entry for an authentic code that was not consumed (e.g. expired).
    fn record_usage(&self, subject: Subject, entry: &UsageEntry)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The member's usage record, newest first.
    fn usage(&self, subject: Subject) -> impl Future<Output = Result<Vec<UsageEntry>, StoreError>> + Send;

    /// Marks a code revoked for `ttl_seconds` (longer than any code lives); a lookup grant of
    /// its verification ends with it.
    fn revoke(
        &self,
        subject: Subject,
        code_id: CodeId,
        ttl_seconds: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// `None` unless the code was consumed with `grant` and is not revoked; otherwise when it
    /// was verified, the claims verified and the live status.
    fn lookup_granted(
        &self,
        subject: Subject,
        code_id: CodeId,
        grant: &str,
    ) -> impl Future<Output = Result<Option<Granted>, StoreError>> + Send;

    /// Stores digits -> code text unless the digits are taken; `false` if taken.
    fn put_digits(
        &self,
        digits: &str,
        text: &str,
        ttl_seconds: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The code text for live digits.
    fn resolve_digits(&self, digits: &str) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
}
