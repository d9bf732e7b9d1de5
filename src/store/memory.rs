//! In-memory store: the embedded default (`liangma serve` without Redis) and the reference semantics of the Redis store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{CodeStore, RegistryStore, StoreError, USAGE_ENTRIES_KEPT};
use crate::clock::{Clock, Timestamp};
use crate::code::{CentreCode, CodeId, DepositClaims};
use crate::model::{
    CodeUse, DeferredUse, Granted, PublishOutcome, PublishRejection, RegistryRecord, RequestId, Subject, UsageEntry,
    UseOutcome, Verdict,
};

#[derive(Default)]
struct State {
    registry: HashMap<Subject, RegistryRecord>,
    used: HashMap<(Subject, CodeId), Used>,
    revoked: HashMap<(Subject, CodeId), Timestamp>,
    issued: HashMap<(Subject, CodeId), Timestamp>,
    usage: HashMap<Subject, Usage>,
    digits: HashMap<String, (String, Timestamp)>,
    remote_grants: HashMap<(Subject, CodeId), (String, Granted, Timestamp)>,
    deferred: std::collections::BTreeMap<String, DeferredUse>,
    sessions: HashMap<String, (Subject, Timestamp)>,
    writes_since_sweep: u32,
}

/// A member's usage record: VALID entries apart, so that nothing a replayer causes displaces them.
#[derive(Default)]
struct Usage {
    valid: Vec<UsageEntry>,
    others: Vec<UsageEntry>,
}

/// A used mark and the lookup grant kept with it.
struct Used {
    at: Timestamp,
    centre: CentreCode,
    request_id: Option<RequestId>,
    grant: String,
    claims: DepositClaims,
    until: Timestamp,
}

/// Expired marks are swept after this many writes: amortized O(1), and the maps hold at most
/// a day of codes plus one sweep interval.
const SWEEP_EVERY_WRITES: u32 = 4096;

impl State {
    fn note_write(&mut self, now: Timestamp) {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep < SWEEP_EVERY_WRITES {
            return;
        }
        self.writes_since_sweep = 0;
        self.used.retain(|_, used| now < used.until);
        self.revoked.retain(|_, until| now < *until);
        self.issued.retain(|_, until| now < *until);
        self.digits.retain(|_, (_, until)| now < *until);
        self.remote_grants.retain(|_, (_, _, until)| now < *until);
        self.sessions.retain(|_, (_, until)| now < *until);
    }
}

/// Everything in one mutex-guarded map set: operations are short and never await while
/// holding it, which also makes each of them atomic like the Redis scripts.
pub struct MemoryStore {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryStore")
    }
}

impl MemoryStore {
    /// An empty store whose entries expire by `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { state: Mutex::new(State::default()), clock }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied operation behind (each
        // one is a few map calls), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn deadline(&self, ttl_seconds: u64) -> Timestamp {
        self.clock.now().plus(i64::try_from(ttl_seconds).unwrap_or(i64::MAX))
    }
}

fn append_usage(state: &mut State, subject: Subject, entry: UsageEntry) {
    let usage = state.usage.entry(subject).or_default();
    let valid = entry.result == Verdict::Valid;
    let entries = if valid { &mut usage.valid } else { &mut usage.others };
    match entries.first_mut() {
        Some(newest) if !valid && newest.repeats(&entry) => {
            newest.at = entry.at;
            newest.count = newest.count.saturating_add(1);
        }
        _ => {
            entries.insert(0, entry);
            entries.truncate(USAGE_ENTRIES_KEPT);
        }
    }
}

impl RegistryStore for MemoryStore {
    async fn publish(
        &self,
        records: &[(Subject, RegistryRecord)],
        max_version_step: u64,
    ) -> Result<PublishOutcome, StoreError> {
        let mut state = self.state();
        let mut outcome = PublishOutcome::default();
        for (index, (subject, record)) in records.iter().enumerate() {
            let version = record.status.registry_version;
            match state.registry.get(subject).map(|stored| stored.status.registry_version) {
                Some(stored) if version <= stored => outcome.counts.ignored_not_newer += 1,
                Some(stored) if version - stored > max_version_step => {
                    outcome.rejected.push((index, PublishRejection::VersionStepTooLarge));
                }
                _ => {
                    state.registry.insert(*subject, record.clone());
                    outcome.counts.applied += 1;
                }
            }
        }
        Ok(outcome)
    }

    async fn get(&self, subject: Subject) -> Result<Option<RegistryRecord>, StoreError> {
        Ok(self.state().registry.get(&subject).cloned())
    }

    async fn remove(&self, subject: Subject) -> Result<bool, StoreError> {
        Ok(self.state().registry.remove(&subject).is_some())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl CodeStore for MemoryStore {
    async fn consume(&self, code_use: &CodeUse) -> Result<UseOutcome, StoreError> {
        let now = self.clock.now();
        let until = self.deadline(code_use.used_ttl_seconds);
        let key = (code_use.subject, code_use.code_id);
        let mut state = self.state();
        state.note_write(now);
        let revoked = state.revoked.get(&key).is_some_and(|until| now < *until);
        let previous = state.used.get(&key).filter(|used| now < used.until);
        let (outcome, result) = if revoked {
            (UseOutcome::Revoked, Verdict::CodeRevoked)
        } else if let Some(used) = previous {
            let retry = code_use.request_id.is_some()
                && used.centre == code_use.centre
                && used.request_id == code_use.request_id;
            if retry {
                let live = state.registry.get(&code_use.subject).cloned();
                return Ok(UseOutcome::Repeated { live, grant: used.grant.clone() });
            }
            let verdict = if code_use.accepted_offline { Verdict::DoubleUse } else { Verdict::AlreadyUsed };
            (UseOutcome::AlreadyUsed { at: used.at, centre: used.centre }, verdict)
        } else {
            let used = Used {
                at: code_use.at,
                centre: code_use.centre,
                request_id: code_use.request_id.clone(),
                grant: code_use.grant.clone(),
                claims: code_use.claims,
                until,
            };
            state.used.insert(key, used);
            (UseOutcome::Consumed { live: state.registry.get(&code_use.subject).cloned() }, Verdict::Valid)
        };
        let entry = UsageEntry::single(code_use.at, code_use.centre, code_use.purpose, result, code_use.code_id);
        append_usage(&mut state, code_use.subject, entry);
        Ok(outcome)
    }

    async fn record_usage(&self, subject: Subject, entry: &UsageEntry) -> Result<(), StoreError> {
        append_usage(&mut self.state(), subject, entry.clone());
        Ok(())
    }

    async fn usage(&self, subject: Subject) -> Result<Vec<UsageEntry>, StoreError> {
        let state = self.state();
        let Some(usage) = state.usage.get(&subject) else { return Ok(Vec::new()) };
        Ok(super::merge_usage(usage.valid.clone(), usage.others.clone()))
    }

    async fn revoke(
        &self,
        subject: Subject,
        code_id: CodeId,
        // The revocation's time goes into Redis's state for trimming; this store keeps time by
        // its own clock, the service's.
        _at: Timestamp,
        ttl_seconds: u64,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let until = self.deadline(ttl_seconds);
        let mut state = self.state();
        if state.issued.get(&(subject, code_id)).is_none_or(|until| now >= *until) {
            return Ok(false);
        }
        state.note_write(now);
        state.revoked.insert((subject, code_id), until);
        Ok(true)
    }

    async fn lookup_granted(
        &self,
        subject: Subject,
        code_id: CodeId,
        grant: &str,
    ) -> Result<Option<Granted>, StoreError> {
        let now = self.clock.now();
        let state = self.state();
        let key = (subject, code_id);
        if state.revoked.get(&key).is_some_and(|until| now < *until) {
            return Ok(None);
        }
        let used = state.used.get(&key).filter(|used| now < used.until && super::same_secret(&used.grant, grant));
        Ok(used.map(|used| Granted {
            subject,
            verified_at: used.at,
            claims: used.claims,
            live: state.registry.get(&subject).cloned(),
        }))
    }

    async fn mark_issued_and_get(
        &self,
        subject: Subject,
        code_id: CodeId,
        ttl_seconds: u64,
    ) -> Result<Option<RegistryRecord>, StoreError> {
        let now = self.clock.now();
        let until = self.deadline(ttl_seconds);
        let mut state = self.state();
        state.note_write(now);
        state.issued.insert((subject, code_id), until);
        Ok(state.registry.get(&subject).cloned())
    }

    async fn put_digits(&self, digits: &str, text: &str, ttl_seconds: u64) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let until = self.deadline(ttl_seconds);
        let mut state = self.state();
        if state.digits.get(digits).is_some_and(|(_, deadline)| now < *deadline) {
            return Ok(false);
        }
        state.note_write(now);
        state.digits.insert(digits.to_owned(), (text.to_owned(), until));
        Ok(true)
    }

    async fn put_remote_grant(
        &self,
        code_id: CodeId,
        grant: &str,
        granted: &Granted,
        ttl_seconds: u64,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let until = self.deadline(ttl_seconds);
        let mut state = self.state();
        state.note_write(now);
        state.remote_grants.insert((granted.subject, code_id), (grant.to_owned(), granted.clone(), until));
        Ok(())
    }

    async fn remote_granted(
        &self,
        subject: Subject,
        code_id: CodeId,
        grant: &str,
    ) -> Result<Option<Granted>, StoreError> {
        let now = self.clock.now();
        let state = self.state();
        Ok(state
            .remote_grants
            .get(&(subject, code_id))
            .filter(|(stored, _, until)| now < *until && super::same_secret(stored, grant))
            .map(|(_, granted, _)| granted.clone()))
    }

    async fn put_session(&self, key: &str, subject: Subject, ttl_seconds: u64) -> Result<(), StoreError> {
        let now = self.clock.now();
        let until = self.deadline(ttl_seconds);
        let mut state = self.state();
        state.note_write(now);
        state.sessions.insert(key.to_owned(), (subject, until));
        Ok(())
    }

    async fn session(&self, key: &str) -> Result<Option<Subject>, StoreError> {
        let now = self.clock.now();
        Ok(self.state().sessions.get(key).filter(|(_, until)| now < *until).map(|(subject, _)| *subject))
    }

    async fn defer(&self, deferred: &DeferredUse) -> Result<bool, StoreError> {
        let mut state = self.state();
        let key = deferred.request_id.as_str();
        if state.deferred.len() >= super::MAX_DEFERRED && !state.deferred.contains_key(key) {
            return Ok(false);
        }
        state.deferred.insert(key.to_owned(), deferred.clone());
        Ok(true)
    }

    async fn deferred(&self, limit: usize) -> Result<Vec<DeferredUse>, StoreError> {
        Ok(self.state().deferred.values().take(limit).cloned().collect())
    }

    async fn deferred_done(&self, request_id: &RequestId) -> Result<(), StoreError> {
        self.state().deferred.remove(request_id.as_str());
        Ok(())
    }

    async fn resolve_digits(&self, digits: &str) -> Result<Option<String>, StoreError> {
        let now = self.clock.now();
        Ok(self.state().digits.get(digits).filter(|(_, until)| now < *until).map(|(text, _)| text.clone()))
    }
}
