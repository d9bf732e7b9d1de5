//! Redis store (one server, a Redis Cluster or a Sentinel-watched master): keys hashed by member, Lua scripts for every multi-key step, one round trip each.

use std::fmt::Write;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::{AsyncCommands, RedisError, Script};

use super::redis_topology::RedisConnection;
pub use super::redis_topology::RedisTopology;
use super::{CodeStore, RegistryStore, StoreError, USAGE_ENTRIES_KEPT};
use crate::clock::Timestamp;
use crate::code::{CentreCode, CodeId, DepositClaims, Fen, Purpose};
use crate::model::{
    CodeUse, DeferredUse, Granted, PublishOutcome, PublishRejection, RegistryRecord, RequestId, Subject, UsageEntry,
    UseOutcome, Verdict,
};

/// Connection settings of the Redis store.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// Where Redis is: one server, a cluster, or a master named by Sentinel.
    pub topology: RedisTopology,
    /// Prefix of every key, so that several deployments can share one Redis.
    pub key_prefix: String,
    /// Longest wait for one store operation, reconnecting included; past it the operation
    /// fails with [`StoreError::Unavailable`] instead of hanging.
    pub timeout: Duration,
    /// A member's usage record expires this long after its latest entry.
    pub usage_retention: Duration,
    /// Replicas that must hold a used mark before its verification answers VALID (Redis
    /// `WAIT`); 0 answers as soon as the master has it.
    pub used_mark_replicas: u32,
    /// Serving lanes ([`crate::lanes`]): each gets a connection of its own, driven on its own
    /// thread, beside the one every other thread shares.
    pub lanes: usize,
}

/// The Redis store; cheap to clone (multiplexed, self-reconnecting connections: one per
/// serving lane and one shared by every other thread).
#[derive(Clone)]
pub struct RedisStore {
    /// Index 0: threads outside the lanes; index n: lane n. With one Redis server, the
    /// connection manager starts its reader task on the thread that first uses it, so a lane's
    /// calls never wake another thread for Redis.
    connections: Arc<[RedisConnection]>,
    prefix: String,
    timeout: Duration,
    usage_retention: Duration,
    used_mark_replicas: u32,
    record: Script,
    publish: Script,
    lookup: Script,
    revoke: Script,
    trim: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish()
    }
}

fn unavailable(error: RedisError) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

/// A member's used-codes hash is trimmed when the hot path sees it reach [`USAGE_ENTRIES_KEPT`]
/// plus a multiple of [`USED_FIELDS_TRIM_STEP`] fields. A trim brings it back to
/// [`USAGE_ENTRIES_KEPT`], so it runs once per 50 uses of such a member; when it cannot (more of
/// the member's codes than that used in the last two days, none of which may go), the next try
/// is 50 fields later, not on every use: a trim reads the whole hash.
const USED_FIELDS_TRIM_STEP: usize = 50;

/// Whether a use that left the member's used-codes hash with `fields` fields should trim it.
fn trim_due(fields: usize) -> bool {
    fields > USAGE_ENTRIES_KEPT && (fields - USAGE_ENTRIES_KEPT).is_multiple_of(USED_FIELDS_TRIM_STEP)
}

/// No code lives longer than this after a use or revocation (a code ends at 24:00 CST of its
/// day, plus the clock skew): a mark older than this guards nothing and may be trimmed.
const LIVE_HORIZON_SECONDS: i64 = 2 * 86_400;

impl RedisStore {
    /// Creates the store without waiting for Redis: the connection is made on first use and
    /// remade in the background after every failure, so the service starts (and recovers)
    /// whether or not Redis is up.
    pub fn connect(settings: &RedisSettings) -> Result<Self, StoreError> {
        Ok(Self {
            connections: (0..=settings.lanes)
                .map(|_| RedisConnection::open(&settings.topology, settings.timeout))
                .collect::<Result<_, _>>()?,
            prefix: settings.key_prefix.clone(),
            timeout: settings.timeout,
            usage_retention: settings.usage_retention,
            used_mark_replicas: settings.used_mark_replicas,
            record: Script::new(include_str!("record.lua")),
            publish: Script::new(include_str!("publish.lua")),
            lookup: Script::new(include_str!("lookup.lua")),
            revoke: Script::new(include_str!("revoke.lua")),
            trim: Script::new(include_str!("trim.lua")),
        })
    }

    /// The connection of this thread's serving lane.
    fn connection(&self) -> RedisConnection {
        self.connections[crate::lanes::current() % self.connections.len()].clone()
    }

    /// Runs one store operation within the timeout. The connection manager's own timeouts
    /// cover each command, not a reconnection or a script reload around it: this bounds the
    /// whole operation, so a caller never waits longer than `store.timeout_ms` for one.
    async fn bounded<T>(
        &self,
        name: &'static str,
        operation: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        use tracing::Instrument;
        let started = std::time::Instant::now();
        let answered =
            tokio::time::timeout(self.timeout, operation).instrument(crate::telemetry::store_span(name)).await;
        let failure = match &answered {
            Ok(Ok(_)) => None,
            Ok(Err(_)) => Some("error"),
            Err(_) => Some("timeout"),
        };
        crate::metrics::store(started.elapsed(), failure);
        match answered {
            Ok(result) => result.map_err(unavailable),
            Err(_) => Err(StoreError::Unavailable(format!("no answer within {} ms", self.timeout.as_millis()))),
        }
    }

    /// Loads every script into Redis's script cache, so that each scripted step is one EVALSHA
    /// from the first call on. (After a Redis restart empties the cache, the first call of each
    /// script reloads it: two extra round trips, once.)
    pub async fn load_scripts(&self) -> Result<(), StoreError> {
        let mut connection = self.connection();
        // One command per script: on a cluster, SCRIPT LOAD goes to every master.
        for script in [&self.record, &self.publish, &self.lookup, &self.revoke, &self.trim] {
            self.bounded("load_scripts", script.prepare_invoke().load_async(&mut connection)).await?;
        }
        Ok(())
    }

    fn subject_key(&self, subject: Subject, suffix: impl std::fmt::Display) -> String {
        sized(self.prefix.len() + 64, format_args!("{}:{{{}}}:{suffix}", self.prefix, subject.storage_key()))
    }

    /// The member's used-codes hash: code id -> used state (or revoked state).
    fn used_key(&self, subject: Subject) -> String {
        self.subject_key(subject, "used")
    }

    /// How long a used-codes hash lives after its latest write: the usage record's retention,
    /// and never less than the mark being written must last.
    fn used_lifetime(&self, mark_seconds: u64) -> u64 {
        self.usage_retention.as_secs().max(mark_seconds).max(1)
    }

    fn session_key(&self, key: &str) -> String {
        format!("{}:{{session:{key}}}", self.prefix)
    }

    fn deferred_key(&self) -> String {
        format!("{}:{{deferred}}", self.prefix)
    }

    fn digits_key(&self, digits: &str) -> String {
        format!("{}:{{d:{digits}}}", self.prefix)
    }
}

/// Deposit claims as Redis keeps them, in a registry record and with a lookup grant:
/// `<version>|<account status>|<balance fen>|<monthly deposit fen>|<continuous months>|
/// <loan state>|<loans used>`. The version leads so that `publish.lua` can compare it. Written
/// straight into the string it is part of.
struct StoredStatus<'a>(&'a DepositClaims);

impl std::fmt::Display for StoredStatus<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.0;
        write!(
            f,
            "{}|{}|{}|{}|{}|{}|{}",
            status.registry_version,
            status.account_status,
            status.balance.0,
            status.monthly_deposit.0,
            status.continuous_months,
            status.loan_state,
            status.loans_used,
        )
    }
}

/// Fields of a stored string, each parsed on demand; any missing or unreadable one is corrupt data.
struct Fields<'a> {
    fields: std::str::SplitN<'a, char>,
    what: &'static str,
}

impl<'a> Fields<'a> {
    fn new(stored: &'a str, count: usize, what: &'static str) -> Self {
        Self { fields: stored.splitn(count, '|'), what }
    }

    fn text(&mut self) -> Result<&'a str, StoreError> {
        self.fields.next().ok_or_else(|| StoreError::Corrupt(self.what.into()))
    }

    fn parsed<T: std::str::FromStr>(&mut self) -> Result<T, StoreError> {
        self.text()?.parse().map_err(|_| StoreError::Corrupt(self.what.into()))
    }

    fn status(&mut self) -> Result<DepositClaims, StoreError> {
        let registry_version = self.parsed()?;
        Ok(DepositClaims {
            account_status: self.parsed()?,
            balance: Fen(self.parsed()?),
            monthly_deposit: Fen(self.parsed()?),
            continuous_months: self.parsed()?,
            loan_state: self.parsed()?,
            loans_used: self.parsed()?,
            registry_version,
        })
    }
}

/// `args` written into a String of `capacity`: `format!` starts small and grows by copying,
/// several times for a key or a used state, on every verification.
fn sized(capacity: usize, args: std::fmt::Arguments<'_>) -> String {
    let mut text = String::with_capacity(capacity);
    text.write_fmt(args).expect("a String takes every write");
    text
}

/// A registry record as Redis keeps it, one string per member (a third of the memory of a JSON
/// hash): the status as [`StoredStatus`] writes it, then `|<published unix>|<masked ID
/// number>|<masked name>`; the name is last, so it may contain anything.
fn encode_record(record: &RegistryRecord) -> String {
    format!(
        "{}|{}|{}|{}",
        StoredStatus(&record.status),
        record.published_at.unix(),
        record.masked_id_number,
        record.masked_name
    )
}

fn decode_record(stored: Option<String>) -> Result<Option<RegistryRecord>, StoreError> {
    let Some(stored) = stored else { return Ok(None) };
    let mut fields = Fields::new(&stored, 10, "registry record");
    Ok(Some(RegistryRecord {
        status: fields.status()?,
        published_at: Timestamp::from_unix(fields.parsed()?),
        masked_id_number: fields.text()?.to_owned(),
        masked_name: fields.text()?.to_owned(),
    }))
}

/// `<centre>|<purpose>|<code id>|`: what a usage entry and its repeats share; the script adds
/// `<verdict>|<first unix>|<last unix>|<count>`.
fn usage_key(centre: CentreCode, purpose: Purpose, code_id: CodeId) -> String {
    format!("{centre}|{}|{code_id}|", purpose.as_str())
}

fn decode_usage(line: &str) -> Result<UsageEntry, StoreError> {
    let mut fields = Fields::new(line, 7, "usage entry");
    let centre = fields.parsed()?;
    let purpose = fields.parsed()?;
    let code_id = decode_code_id(fields.text()?, "usage entry")?;
    let result = fields.parsed()?;
    let first_at = Timestamp::from_unix(fields.parsed()?);
    let at = Timestamp::from_unix(fields.parsed()?);
    let count = fields.parsed()?;
    Ok(UsageEntry { at, first_at, count, centre, purpose, result, code_id })
}

/// The state of a used code: `<centre>|<request id>|<unix>|<purpose>|<grant>|<claims>`, the
/// claims as [`StoredStatus`] writes them. The centre and request id lead, so that a retry of
/// the same request is recognised by its prefix.
struct UsedState<'a> {
    at: Timestamp,
    centre: CentreCode,
    purpose: Purpose,
    grant: &'a str,
    claims: DepositClaims,
}

fn decode_used(value: &str) -> Result<UsedState<'_>, StoreError> {
    let mut fields = Fields::new(value, 12, "used mark");
    let centre = fields.parsed()?;
    let _request_id = fields.text()?;
    Ok(UsedState {
        at: Timestamp::from_unix(fields.parsed()?),
        centre,
        purpose: fields.parsed()?,
        grant: fields.text()?,
        claims: fields.status()?,
    })
}

/// A code's field in the member's used-codes hash.
enum CodeState<'a> {
    /// `<used state>`: consumed, the lookup grant in force.
    Used(UsedState<'a>),
    /// `R|<unix>|<used state, or nothing>`: revoked (after its use, if it was used).
    Revoked { used: Option<UsedState<'a>> },
}

fn decode_code_state(value: &str) -> Result<CodeState<'_>, StoreError> {
    let Some(revoked) = value.strip_prefix("R|") else { return Ok(CodeState::Used(decode_used(value)?)) };
    let (_, used) = revoked.split_once('|').ok_or_else(|| StoreError::Corrupt("revoked mark".into()))?;
    Ok(CodeState::Revoked { used: if used.is_empty() { None } else { Some(decode_used(used)?) } })
}

fn decode_code_id(hex_id: &str, what: &'static str) -> Result<CodeId, StoreError> {
    let mut code_id = [0u8; 12];
    hex::decode_to_slice(hex_id, &mut code_id).map_err(|_| StoreError::Corrupt(what.into()))?;
    Ok(CodeId::from_bytes(code_id))
}

/// The VALID usage entries a member's used-codes hash stands for, newest first, at most
/// [`USAGE_ENTRIES_KEPT`].
fn valid_entries(fields: &[(String, String)]) -> Result<Vec<UsageEntry>, StoreError> {
    let mut entries = Vec::with_capacity(fields.len());
    for (code_id, state) in fields {
        let used = match decode_code_state(state)? {
            CodeState::Used(used) | CodeState::Revoked { used: Some(used) } => used,
            CodeState::Revoked { used: None } => continue,
        };
        let code_id = decode_code_id(code_id, "used-codes field")?;
        entries.push(UsageEntry::single(used.at, used.centre, used.purpose, Verdict::Valid, code_id));
    }
    entries.sort_by_key(|entry| std::cmp::Reverse(entry.at));
    entries.truncate(USAGE_ENTRIES_KEPT);
    Ok(entries)
}

/// `<centre>|<request id>|` of a verification, as its used state starts; empty without a
/// request id, which never matches.
fn retry_prefix(code_use: &CodeUse) -> String {
    code_use.request_id.as_ref().map(|id| format!("{}|{}|", code_use.centre, id.as_str())).unwrap_or_default()
}

impl RegistryStore for RedisStore {
    async fn publish(
        &self,
        records: &[(Subject, RegistryRecord)],
        max_version_step: u64,
    ) -> Result<PublishOutcome, StoreError> {
        let mut outcome = PublishOutcome::default();
        if records.is_empty() {
            return Ok(outcome);
        }
        let invocations: Vec<_> = records
            .iter()
            .map(|(subject, record)| {
                let mut invocation = self.publish.prepare_invoke();
                invocation
                    .key(self.subject_key(*subject, "record"))
                    .arg(record.status.registry_version)
                    .arg(encode_record(record))
                    .arg(max_version_step);
                invocation
            })
            .collect();
        let mut connection = self.connection();
        let answers: Vec<u8> = if self.connections[0].is_cluster() {
            // Members hash to different slots, so to different masters: one call per record, all
            // in flight at once (the cluster connection pipelines them per master).
            let calls = invocations.iter().map(|invocation| {
                let mut connection = connection.clone();
                async move { invocation.invoke_async::<u8>(&mut connection).await }
            });
            self.bounded("publish", async { futures_util::future::try_join_all(calls).await }).await?
        } else {
            // One round trip for the batch: load the script (a restart may have flushed the
            // cache), then one compare-and-set per record, each answering for its own record.
            let mut pipe = redis::pipe();
            pipe.load_script(&self.publish).ignore();
            for invocation in &invocations {
                pipe.invoke_script(invocation);
            }
            self.bounded("publish", pipe.query_async(&mut connection)).await?
        };
        if answers.len() != records.len() {
            return Err(StoreError::Corrupt(format!("{} answers to {} records", answers.len(), records.len())));
        }
        for (index, answer) in answers.into_iter().enumerate() {
            match answer {
                1 => outcome.counts.applied += 1,
                0 => outcome.counts.ignored_not_newer += 1,
                2 => outcome.rejected.push((index, PublishRejection::VersionStepTooLarge)),
                _ => outcome.rejected.push((index, PublishRejection::StoredRecordUnreadable)),
            }
        }
        Ok(outcome)
    }

    async fn get(&self, subject: Subject) -> Result<Option<RegistryRecord>, StoreError> {
        let mut connection = self.connection();
        let stored: Option<String> = self.bounded("get", connection.get(self.subject_key(subject, "record"))).await?;
        decode_record(stored)
    }

    async fn remove(&self, subject: Subject) -> Result<bool, StoreError> {
        let mut connection = self.connection();
        let removed: u32 = self.bounded("remove", connection.del(self.subject_key(subject, "record"))).await?;
        Ok(removed > 0)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.connection();
        self.bounded("ping", redis::cmd("PING").query_async::<()>(&mut connection)).await
    }
}

/// The consume pipeline's replies: whether HSETNX set the used state, the code's state after
/// it, the fields of the used-codes hash, the live record, and replicas acknowledging (WAIT).
type ConsumeReplies = (bool, Option<String>, usize, Option<String>, Option<u32>);

impl RedisStore {
    /// The verification hot path, one pipelined round trip of plain commands (no script):
    /// `HSETNX` consumes the code unless its field exists (used or revoked), `HGET` reads the
    /// field as it now is (the previous state when not consumed), `EXPIRE` keeps the hash
    /// alive, `HLEN` says when it needs trimming, `GET` reads the live status, and with
    /// `used_mark_replicas` a `WAIT` follows on the same master.
    async fn consume_round_trip(&self, code_use: &CodeUse, used_state: &str) -> Result<ConsumeReplies, StoreError> {
        let used_key = self.used_key(code_use.subject);
        let field = code_use.code_id.to_string();
        let mut pipe = redis::pipe();
        pipe.hset_nx(&used_key, &field, used_state)
            .hget(&used_key, &field)
            .expire(&used_key, self.used_lifetime(code_use.used_ttl_seconds) as i64)
            .ignore()
            .hlen(&used_key)
            .get(self.subject_key(code_use.subject, "record"));
        let mut connection = self.connection();
        if self.used_mark_replicas == 0 {
            let (consumed, state, fields, live): (bool, Option<String>, usize, Option<String>) =
                self.bounded("consume", pipe.query_async(&mut connection)).await?;
            return Ok((consumed, state, fields, live, None));
        }
        // WAIT runs right after the writes on the member's master, so the answer says whether
        // the used mark reached the replicas a failover would promote.
        pipe.cmd("WAIT").arg(self.used_mark_replicas).arg(self.wait_ms());
        let (consumed, state, fields, live, acknowledged) =
            self.bounded("consume", pipe.query_async(&mut connection)).await?;
        Ok((consumed, state, fields, live, Some(acknowledged)))
    }

    fn wait_ms(&self) -> u64 {
        (self.timeout.as_millis() / 2).max(1) as u64
    }

    /// Fails a use whose mark the replicas have not acknowledged: a failover now could lose it.
    /// A retry of the request finds the mark (a repeat) and waits again; a new request finds
    /// the code used unless the mark was lost.
    fn require_replicas(&self, acknowledged: Option<u32>) -> Result<(), StoreError> {
        match acknowledged {
            Some(acknowledged) if acknowledged < self.used_mark_replicas => Err(StoreError::Unavailable(format!(
                "used mark reached {acknowledged} of {} replicas within {} ms",
                self.used_mark_replicas,
                self.wait_ms()
            ))),
            _ => Ok(()),
        }
    }

    /// Bounds the member's used-codes hash (`trim.lua`). Housekeeping after an answered use: a
    /// failure is logged and the next use past the bound tries again.
    async fn trim_used(&self, subject: Subject, at: Timestamp) {
        let mut invocation = self.trim.prepare_invoke();
        invocation.key(self.used_key(subject)).arg(USAGE_ENTRIES_KEPT).arg(at.unix() - LIVE_HORIZON_SECONDS);
        let mut connection = self.connection();
        if let Err(error) = self.bounded("trim_used", invocation.invoke_async::<u64>(&mut connection)).await {
            tracing::warn!(%error, "could not trim a used-codes hash; the next use past the bound retries");
        }
    }
}

impl CodeStore for RedisStore {
    async fn consume(&self, code_use: &CodeUse) -> Result<UseOutcome, StoreError> {
        let used_state = sized(
            192,
            format_args!(
                "{}|{}|{}|{}|{}|{}",
                code_use.centre,
                code_use.request_id.as_ref().map_or("", |id| id.as_str()),
                code_use.at.unix(),
                code_use.purpose.as_str(),
                code_use.grant,
                StoredStatus(&code_use.claims)
            ),
        );
        let (consumed, state, fields, live, acknowledged) = self.consume_round_trip(code_use, &used_state).await?;
        if consumed {
            self.require_replicas(acknowledged)?;
            if trim_due(fields) {
                self.trim_used(code_use.subject, code_use.at).await;
            }
            return Ok(UseOutcome::Consumed { live: decode_record(live)? });
        }
        // Fields are only ever deleted long after their code expired, so a field that HSETNX
        // found and HGET did not was lost in between: a failover. Retrying decides again.
        let state = state.ok_or_else(|| StoreError::Unavailable("used mark vanished during the call".into()))?;
        let retry_prefix = retry_prefix(code_use);
        let (outcome, verdict) = match decode_code_state(&state)? {
            CodeState::Revoked { .. } => (UseOutcome::Revoked, Verdict::CodeRevoked),
            // The same centre retrying the same request, or this very call's state (its grant is
            // fresh and random) when the client resent the pipeline after a first send reached
            // Redis: that verification stands, nothing is added.
            CodeState::Used(used)
                if state == used_state || (!retry_prefix.is_empty() && state.starts_with(&retry_prefix)) =>
            {
                self.require_replicas(acknowledged)?;
                return Ok(UseOutcome::Repeated { live: decode_record(live)?, grant: used.grant.to_owned() });
            }
            CodeState::Used(used) => (
                UseOutcome::AlreadyUsed { at: used.at, centre: used.centre },
                if code_use.accepted_offline { Verdict::DoubleUse } else { Verdict::AlreadyUsed },
            ),
        };
        // A refusal is recorded before it is answered: a node that dies in between answered
        // nothing, and the caller's retry is refused and recorded again.
        let entry = UsageEntry::single(code_use.at, code_use.centre, code_use.purpose, verdict, code_use.code_id);
        self.record_usage(code_use.subject, &entry).await?;
        Ok(outcome)
    }

    async fn record_usage(&self, subject: Subject, entry: &UsageEntry) -> Result<(), StoreError> {
        let mut invocation = self.record.prepare_invoke();
        invocation
            .key(self.subject_key(subject, "usage"))
            .arg(usage_key(entry.centre, entry.purpose, entry.code_id))
            .arg(entry.result.as_str())
            .arg(entry.at.unix())
            .arg(USAGE_ENTRIES_KEPT)
            .arg(self.usage_retention.as_secs().max(1));
        let mut connection = self.connection();
        self.bounded("record_usage", invocation.invoke_async::<u8>(&mut connection)).await.map(drop)
    }

    async fn usage(&self, subject: Subject) -> Result<Vec<UsageEntry>, StoreError> {
        let mut connection = self.connection();
        let mut pipe = redis::pipe();
        // `usage:valid` is where versions before the used-codes hash listed VALID entries; it
        // is read until it expires by itself (docs/operations.md, upgrading).
        pipe.hgetall(self.used_key(subject)).lrange(self.subject_key(subject, "usage"), 0, -1).lrange(
            self.subject_key(subject, "usage:valid"),
            0,
            -1,
        );
        let (used, others, earlier_valid): (Vec<(String, String)>, Vec<String>, Vec<String>) =
            self.bounded("usage", pipe.query_async(&mut connection)).await?;
        let decode = |lines: Vec<String>| lines.iter().map(|line| decode_usage(line)).collect::<Result<Vec<_>, _>>();
        let mut valid = valid_entries(&used)?;
        valid.extend(decode(earlier_valid)?);
        Ok(super::merge_usage(valid, decode(others)?))
    }

    async fn revoke(
        &self,
        subject: Subject,
        code_id: CodeId,
        at: Timestamp,
        ttl_seconds: u64,
    ) -> Result<bool, StoreError> {
        let mut invocation = self.revoke.prepare_invoke();
        invocation
            .key(self.subject_key(subject, format_args!("issued:{code_id}")))
            .key(self.used_key(subject))
            .arg(code_id.to_string())
            .arg(at.unix())
            .arg(self.used_lifetime(ttl_seconds));
        let mut connection = self.connection();
        let revoked: u8 = self.bounded("revoke", invocation.invoke_async(&mut connection)).await?;
        Ok(revoked == 1)
    }

    async fn lookup_granted(
        &self,
        subject: Subject,
        code_id: CodeId,
        grant: &str,
    ) -> Result<Option<Granted>, StoreError> {
        let mut invocation = self.lookup.prepare_invoke();
        invocation.key(self.used_key(subject)).key(self.subject_key(subject, "record")).arg(code_id.to_string());
        let mut connection = self.connection();
        let (state, live): (Option<String>, Option<String>) =
            self.bounded("lookup_granted", invocation.invoke_async(&mut connection)).await?;
        let Some(state) = state else { return Ok(None) };
        let used = decode_used(&state)?;
        if !super::same_secret(used.grant, grant) {
            return Ok(None);
        }
        Ok(Some(Granted { subject, verified_at: used.at, claims: used.claims, live: decode_record(live)? }))
    }

    async fn mark_issued_and_get(
        &self,
        subject: Subject,
        code_id: CodeId,
        ttl_seconds: u64,
    ) -> Result<Option<RegistryRecord>, StoreError> {
        // Both keys carry the member's hash tag: one pipeline to one master, cluster or not.
        let mut pipe = redis::pipe();
        pipe.set_ex(self.subject_key(subject, format_args!("issued:{code_id}")), 1, ttl_seconds.max(1))
            .ignore()
            .get(self.subject_key(subject, "record"));
        let mut connection = self.connection();
        let (stored,): (Option<String>,) =
            self.bounded("mark_issued_and_get", pipe.query_async(&mut connection)).await?;
        decode_record(stored)
    }

    async fn put_digits(&self, digits: &str, text: &str, ttl_seconds: u64) -> Result<bool, StoreError> {
        let mut connection = self.connection();
        let set = redis::cmd("SET")
            .arg(self.digits_key(digits))
            .arg(text)
            .arg("NX")
            .arg("EX")
            .arg(ttl_seconds.max(1))
            .clone();
        let stored: Option<String> = self.bounded("put_digits", set.query_async(&mut connection)).await?;
        Ok(stored.is_some())
    }

    async fn put_remote_grant(
        &self,
        code_id: CodeId,
        grant: &str,
        granted: &Granted,
        ttl_seconds: u64,
    ) -> Result<(), StoreError> {
        let live = granted.live.as_ref().map(encode_record).unwrap_or_default();
        let stored = format!(
            "{grant}|{}|{}|{}|{live}",
            granted.verified_at.unix(),
            StoredStatus(&granted.claims),
            u8::from(granted.live.is_some())
        );
        let mut connection = self.connection();
        let key = self.subject_key(granted.subject, format_args!("remote:{code_id}"));
        self.bounded("put_remote_grant", connection.set_ex::<_, _, ()>(key, stored, ttl_seconds.max(1))).await
    }

    async fn remote_granted(
        &self,
        subject: Subject,
        code_id: CodeId,
        grant: &str,
    ) -> Result<Option<Granted>, StoreError> {
        let mut connection = self.connection();
        let key = self.subject_key(subject, format_args!("remote:{code_id}"));
        let stored: Option<String> = self.bounded("remote_granted", connection.get(key)).await?;
        let Some(stored) = stored else { return Ok(None) };
        // grant, verified at, the seven status fields, whether a record follows, the record.
        let mut fields = Fields::new(&stored, 11, "remote grant");
        if !super::same_secret(fields.text()?, grant) {
            return Ok(None);
        }
        let verified_at = Timestamp::from_unix(fields.parsed()?);
        let claims = fields.status()?;
        let has_live: u8 = fields.parsed()?;
        let live = if has_live == 1 { decode_record(Some(fields.text()?.to_owned()))? } else { None };
        Ok(Some(Granted { subject, verified_at, claims, live }))
    }

    async fn put_session(&self, key: &str, subject: Subject, ttl_seconds: u64) -> Result<(), StoreError> {
        let mut connection = self.connection();
        let stored = format!("{}|{}", subject.centre, subject.reference.to_full_hex());
        self.bounded("put_session", connection.set_ex::<_, _, ()>(self.session_key(key), stored, ttl_seconds.max(1)))
            .await
    }

    async fn session(&self, key: &str) -> Result<Option<Subject>, StoreError> {
        let mut connection = self.connection();
        let stored: Option<String> = self.bounded("session", connection.get(self.session_key(key))).await?;
        let Some(stored) = stored else { return Ok(None) };
        let mut fields = Fields::new(&stored, 2, "member session");
        let centre = fields.parsed()?;
        let mut reference = [0u8; 12];
        hex::decode_to_slice(fields.text()?, &mut reference)
            .map_err(|_| StoreError::Corrupt("member session".into()))?;
        Ok(Some(Subject { centre, reference: crate::code::SubjectRef::from_bytes(reference) }))
    }

    async fn defer(&self, deferred: &DeferredUse) -> Result<bool, StoreError> {
        let mut connection = self.connection();
        let key = self.deferred_key();
        let field = deferred.request_id.as_str();
        let stored =
            format!("{}|{}|{}|{}", deferred.issuer, deferred.accepted_at.unix(), deferred.code_id, deferred.text);
        // A soft cap: two round trips, so concurrent deferrals may pass it by a few.
        let (queued, present): (usize, bool) =
            self.bounded("defer", redis::pipe().hlen(&key).hexists(&key, field).query_async(&mut connection)).await?;
        if queued >= super::MAX_DEFERRED && !present {
            return Ok(false);
        }
        self.bounded("defer", connection.hset::<_, _, _, ()>(&key, field, stored)).await?;
        Ok(true)
    }

    async fn deferred(&self, limit: usize) -> Result<Vec<DeferredUse>, StoreError> {
        let mut connection = self.connection();
        let scan = redis::cmd("HSCAN").arg(self.deferred_key()).arg(0).arg("COUNT").arg(limit.max(1)).clone();
        let (_, pairs): (u64, Vec<String>) = self.bounded("deferred", scan.query_async(&mut connection)).await?;
        pairs
            .chunks_exact(2)
            .take(limit)
            .map(|pair| {
                let corrupt = || StoreError::Corrupt("deferred consumption".into());
                let mut fields = Fields::new(&pair[1], 4, "deferred consumption");
                let issuer = fields.parsed()?;
                let accepted_at = Timestamp::from_unix(fields.parsed()?);
                let mut code_id = [0u8; 12];
                hex::decode_to_slice(fields.text()?, &mut code_id).map_err(|_| corrupt())?;
                Ok(DeferredUse {
                    issuer,
                    code_id: CodeId::from_bytes(code_id),
                    request_id: RequestId::new(&pair[0]).ok_or_else(corrupt)?,
                    text: fields.text()?.to_owned(),
                    accepted_at,
                })
            })
            .collect()
    }

    async fn deferred_done(&self, request_id: &RequestId) -> Result<(), StoreError> {
        let mut connection = self.connection();
        self.bounded("deferred_done", connection.hdel::<_, _, ()>(self.deferred_key(), request_id.as_str())).await
    }

    async fn resolve_digits(&self, digits: &str) -> Result<Option<String>, StoreError> {
        let mut connection = self.connection();
        self.bounded("resolve_digits", connection.get(self.digits_key(digits))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::{AccountStatus, LoanState};

    #[test]
    fn registry_records_round_trip_through_their_stored_form() {
        let record = RegistryRecord {
            status: DepositClaims {
                account_status: AccountStatus::Sealed,
                balance: Fen(4_600_000),
                monthly_deposit: Fen(150_000),
                continuous_months: 120,
                loan_state: LoanState::Outstanding,
                loans_used: 1,
                registry_version: (1 << 53) - 1,
            },
            // A name is the member's data: it may hold the separator.
            masked_name: "李|*".into(),
            masked_id_number: "410***********0032".into(),
            published_at: Timestamp::from_unix(1_790_000_000),
        };
        let stored = encode_record(&record);
        assert_eq!(
            stored,
            "9007199254740991|sealed|4600000|150000|120|outstanding|1|1790000000|410***********0032|李|*"
        );
        assert_eq!(decode_record(Some(stored)).unwrap(), Some(record));
        assert_eq!(decode_record(None).unwrap(), None);
        for corrupt in ["", "1|normal|x|0|0|none|0|0|id|name", "1|normal|1|0|0|none|0|0", "{\"status\":{}}"] {
            assert!(matches!(decode_record(Some(corrupt.into())), Err(StoreError::Corrupt(_))), "{corrupt}");
        }
    }
}
