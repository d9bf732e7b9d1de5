//! Redis store: namespaced keys hashed by member (Cluster-ready), Lua scripts for every multi-key step, one round trip each.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::TcpSettings;
use redis::{AsyncCommands, IntoConnectionInfo, RedisError, Script};

use super::{
    CodeStore, CodeUse, Granted, PublishCounts, RegistryRecord, RegistryStore, StoreError, Subject, USAGE_ALREADY_USED,
    USAGE_CODE_REVOKED, USAGE_ENTRIES_KEPT, USAGE_VALID, UsageEntry, UseOutcome,
};
use crate::clock::Timestamp;
use crate::code::{CentreCode, CodeId, DepositClaims, Fen, Purpose};

/// Connection settings of the Redis store.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://host:port/db`, `rediss://…` or `redis+unix:///path`.
    pub url: String,
    /// Prefix of every key, so that several deployments can share one Redis.
    pub key_prefix: String,
    /// Longest wait for one command (and for a connection attempt); past it the call fails
    /// with UNAVAILABLE instead of hanging.
    pub timeout: Duration,
}

/// The Redis store; cheap to clone (one multiplexed, self-reconnecting connection).
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
    consume: Script,
    publish: Script,
    lookup: Script,
    append_usage: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish()
    }
}

fn unavailable(error: RedisError) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

impl RedisStore {
    /// Creates the store without waiting for Redis: the connection is made on first use and
    /// remade in the background after every failure, so the service starts (and recovers)
    /// whether or not Redis is up.
    pub fn connect(settings: &RedisSettings) -> Result<Self, StoreError> {
        let info = settings
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| StoreError::Unavailable(format!("bad Redis URL: {e}")))?
            // redis-rs 1.x leaves Nagle's algorithm on, which adds up to 40 ms to small replies.
            .set_tcp_settings(TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connection = client.get_connection_manager_lazy(config).map_err(unavailable)?;
        Ok(Self {
            connection,
            prefix: settings.key_prefix.clone(),
            consume: Script::new(include_str!("consume.lua")),
            publish: Script::new(include_str!("publish.lua")),
            lookup: Script::new(include_str!("lookup.lua")),
            append_usage: Script::new(include_str!("append_usage.lua")),
        })
    }

    /// Loads every script into Redis's script cache, so that the hot path is one EVALSHA
    /// from the first call on. (After a Redis restart empties the cache, the first call of each
    /// script reloads it: two extra round trips, once.)
    pub async fn load_scripts(&self) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let mut pipe = redis::pipe();
        for script in [&self.consume, &self.publish, &self.lookup, &self.append_usage] {
            pipe.load_script(script).ignore();
        }
        pipe.query_async::<()>(&mut connection).await.map_err(unavailable)
    }

    fn subject_key(&self, subject: Subject, suffix: impl std::fmt::Display) -> String {
        format!("{}:{{{}}}:{suffix}", self.prefix, subject.storage_key())
    }

    fn digits_key(&self, digits: &str) -> String {
        format!("{}:{{d:{digits}}}", self.prefix)
    }
}

/// The code state of a revoked code (a used code's is [`UsedState`]); `consume.lua` knows it too.
const REVOKED_MARK: &str = "R";

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

/// `<unix>|<centre>|<purpose>|<code id>|` — the result is appended by the script.
fn usage_prefix(at: Timestamp, centre: CentreCode, purpose: Purpose, code_id: CodeId) -> String {
    format!("{}|{centre}|{}|{code_id}|", at.unix(), purpose.as_str())
}

fn decode_usage(line: &str) -> Result<UsageEntry, StoreError> {
    let mut fields = Fields::new(line, 5, "usage entry");
    let at = Timestamp::from_unix(fields.parsed()?);
    let centre = fields.parsed()?;
    let purpose = fields.parsed()?;
    let mut code_id = [0u8; 12];
    hex::decode_to_slice(fields.text()?, &mut code_id).map_err(|_| StoreError::Corrupt("usage entry".into()))?;
    let result = fields.text()?.to_owned();
    Ok(UsageEntry { at, centre, purpose, result, code_id: CodeId::from_bytes(code_id) })
}

/// The state of a used code: `<unix>|<centre>|<grant>|<claims>`, the claims as
/// [`StoredStatus`] writes them.
struct UsedState<'a> {
    at: Timestamp,
    centre: CentreCode,
    grant: &'a str,
    claims: DepositClaims,
}

fn decode_used(value: &str) -> Result<UsedState<'_>, StoreError> {
    let mut fields = Fields::new(value, 10, "used mark");
    Ok(UsedState {
        at: Timestamp::from_unix(fields.parsed()?),
        centre: fields.parsed()?,
        grant: fields.text()?,
        claims: fields.status()?,
    })
}

impl RegistryStore for RedisStore {
    async fn publish(&self, records: &[(Subject, RegistryRecord)]) -> Result<PublishCounts, StoreError> {
        if records.is_empty() {
            return Ok(PublishCounts::default());
        }
        // One round trip for the batch: load the script (a restart may have flushed the cache),
        // then one compare-and-set per record.
        let mut pipe = redis::pipe();
        pipe.load_script(&self.publish).ignore();
        for (subject, record) in records {
            let mut invocation = self.publish.prepare_invoke();
            invocation
                .key(self.subject_key(*subject, "record"))
                .arg(record.status.registry_version)
                .arg(encode_record(record));
            pipe.invoke_script(&invocation);
        }
        let mut connection = self.connection.clone();
        let applied: Vec<u8> = pipe.query_async(&mut connection).await.map_err(unavailable)?;
        let applied_count = applied.iter().filter(|flag| **flag == 1).count() as u32;
        Ok(PublishCounts { applied: applied_count, ignored_not_newer: records.len() as u32 - applied_count })
    }

    async fn get(&self, subject: Subject) -> Result<Option<RegistryRecord>, StoreError> {
        let mut connection = self.connection.clone();
        let stored: Option<String> = connection.get(self.subject_key(subject, "record")).await.map_err(unavailable)?;
        decode_record(stored)
    }
}

impl CodeStore for RedisStore {
    async fn consume(&self, code_use: &CodeUse) -> Result<UseOutcome, StoreError> {
        let code = code_use.code_id.to_string();
        let subject = code_use.subject;
        let mut invocation = self.consume.prepare_invoke();
        invocation
            .key(self.subject_key(subject, format_args!("code:{code}")))
            .key(self.subject_key(subject, "usage"))
            .key(self.subject_key(subject, "record"))
            .arg(format!(
                "{}|{}|{}|{}",
                code_use.at.unix(),
                code_use.centre,
                code_use.grant,
                StoredStatus(&code_use.claims)
            ))
            .arg(code_use.used_ttl_seconds.max(1))
            .arg(usage_prefix(code_use.at, code_use.centre, code_use.purpose, code_use.code_id))
            .arg(USAGE_ENTRIES_KEPT);
        let mut connection = self.connection.clone();
        let (result, previous, live): (String, Option<String>, Option<String>) =
            invocation.invoke_async(&mut connection).await.map_err(unavailable)?;
        match result.as_str() {
            USAGE_VALID => Ok(UseOutcome::Consumed { live: decode_record(live)? }),
            USAGE_ALREADY_USED => {
                let previous = previous.ok_or_else(|| StoreError::Corrupt("used mark".into()))?;
                let used = decode_used(&previous)?;
                Ok(UseOutcome::AlreadyUsed { at: used.at, centre: used.centre })
            }
            USAGE_CODE_REVOKED => Ok(UseOutcome::Revoked),
            other => Err(StoreError::Corrupt(format!("consume script answered `{other}`"))),
        }
    }

    async fn record_usage(&self, subject: Subject, entry: &UsageEntry) -> Result<(), StoreError> {
        let mut invocation = self.append_usage.prepare_invoke();
        let line = usage_prefix(entry.at, entry.centre, entry.purpose, entry.code_id) + &entry.result;
        invocation.key(self.subject_key(subject, "usage")).arg(line).arg(USAGE_ENTRIES_KEPT);
        let mut connection = self.connection.clone();
        invocation.invoke_async::<i64>(&mut connection).await.map(drop).map_err(unavailable)
    }

    async fn usage(&self, subject: Subject) -> Result<Vec<UsageEntry>, StoreError> {
        let mut connection = self.connection.clone();
        let lines: Vec<String> =
            connection.lrange(self.subject_key(subject, "usage"), 0, -1).await.map_err(unavailable)?;
        lines.iter().map(|line| decode_usage(line)).collect()
    }

    async fn revoke(&self, subject: Subject, code_id: CodeId, ttl_seconds: u64) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        // Overwrites a used mark too: a revoked code answers CODE_REVOKED from then on.
        let key = self.subject_key(subject, format_args!("code:{code_id}"));
        connection.set_ex::<_, _, ()>(key, REVOKED_MARK, ttl_seconds.max(1)).await.map_err(unavailable)
    }

    async fn lookup_granted(
        &self,
        subject: Subject,
        code_id: CodeId,
        grant: &str,
    ) -> Result<Option<Granted>, StoreError> {
        let mut invocation = self.lookup.prepare_invoke();
        invocation
            .key(self.subject_key(subject, format_args!("code:{code_id}")))
            .key(self.subject_key(subject, "record"));
        let mut connection = self.connection.clone();
        let (state, live): (Option<String>, Option<String>) =
            invocation.invoke_async(&mut connection).await.map_err(unavailable)?;
        let Some(state) = state else { return Ok(None) };
        let used = decode_used(&state)?;
        if !super::same_secret(used.grant, grant) {
            return Ok(None);
        }
        Ok(Some(Granted { verified_at: used.at, claims: used.claims, live: decode_record(live)? }))
    }

    async fn put_digits(&self, digits: &str, text: &str, ttl_seconds: u64) -> Result<bool, StoreError> {
        let mut connection = self.connection.clone();
        let stored: Option<String> = redis::cmd("SET")
            .arg(self.digits_key(digits))
            .arg(text)
            .arg("NX")
            .arg("EX")
            .arg(ttl_seconds.max(1))
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(stored.is_some())
    }

    async fn resolve_digits(&self, digits: &str) -> Result<Option<String>, StoreError> {
        let mut connection = self.connection.clone();
        connection.get(self.digits_key(digits)).await.map_err(unavailable)
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
