//! The store contract: what the service relies on from storage, checked directly (no service, no
//! network) against the memory store, a real redis-server, a real Redis Cluster and a master
//! found through a real Sentinel.

use std::sync::Arc;
use std::time::Duration;

use liangma::clock::{Clock, FixedClock, Timestamp};
use liangma::code::{CodeId, DepositClaims, Purpose, SubjectRef};
use liangma::model::{
    CodeUse, DeferredUse, Granted, PublishRejection, RegistryRecord, RequestId, Subject, UsageEntry, UseOutcome,
    Verdict,
};
use liangma::store::memory::MemoryStore;
use liangma::store::redis::{RedisSettings, RedisStore, RedisTopology};
use liangma::store::{CodeStore, Store, USAGE_ENTRIES_KEPT};
use liangma::testkit::{RedisCluster, RedisSentinel, RedisServer, at, centre, member};

/// Runs each contract check against each store as its own test.
macro_rules! on_every_store {
    ($($name:ident),+ $(,)?) => {
        mod memory {
            $(#[tokio::test]
            async fn $name() {
                let clock = super::Arc::new(super::FixedClock::new(super::now()));
                super::$name(&super::MemoryStore::new(clock as super::Arc<dyn super::Clock>)).await
            })+
        }
        mod redis {
            $(#[tokio::test]
            async fn $name() {
                let server = super::RedisServer::start();
                super::$name(&super::redis_store(&server).await).await
            })+
        }

        /// The whole contract on one 3-master cluster: starting a cluster per check would cost
        /// a second or two each. Every check has its own key prefix.
        #[tokio::test]
        async fn on_a_redis_cluster() {
            let cluster = RedisCluster::start(3, 0);
            $(
                let topology = RedisTopology::Cluster { nodes: cluster.urls() };
                $name(&topology_store(topology, stringify!($name), 0).await).await;
            )+
        }

        /// The whole contract on the master a Sentinel names.
        #[tokio::test]
        async fn through_redis_sentinel() {
            let group = RedisSentinel::start();
            $(
                $name(&topology_store(sentinel_topology(&group), stringify!($name), 0).await).await;
            )+
        }
    };
}

on_every_store!(
    a_code_is_consumed_once_and_its_use_is_recorded,
    a_retry_of_the_same_request_at_the_same_centre_is_the_same_use,
    a_revoked_code_stays_revoked_and_ends_its_grant,
    only_a_code_issued_here_can_be_revoked,
    repeats_are_counted_and_never_displace_valid_entries,
    records_replace_only_older_versions_within_the_step,
    digits_resolve_until_taken_and_the_store_answers_pings,
    deferred_consumptions_queue_once_per_request_and_a_replayed_double_use_is_recorded,
    remote_answers_are_kept_for_lookups_under_their_grant,
    member_page_sessions_name_their_member_until_they_expire,
    fifty_concurrent_uses_consume_a_code_once,
    the_usage_record_keeps_the_newest_valid_entries_and_live_codes_stay_used,
);

pub fn now() -> Timestamp {
    at("2026-11-26T09:30:00+08:00")
}

async fn redis_store(server: &RedisServer) -> RedisStore {
    topology_store(RedisTopology::Standalone { url: server.url() }, "contract", 0).await
}

pub fn sentinel_topology(group: &RedisSentinel) -> RedisTopology {
    RedisTopology::Sentinel {
        sentinels: vec![group.sentinel_url()],
        master_name: RedisSentinel::MASTER_NAME.into(),
        master_credentials: None,
    }
}

/// A Redis store on `topology`, scripts loaded.
pub async fn topology_store(topology: RedisTopology, key_prefix: &str, used_mark_replicas: u32) -> RedisStore {
    let settings = RedisSettings {
        topology,
        key_prefix: key_prefix.into(),
        timeout: Duration::from_millis(500),
        usage_retention: Duration::from_secs(365 * 86_400),
        used_mark_replicas,
        lanes: 0,
    };
    let store = RedisStore::connect(&settings).unwrap();
    store.load_scripts().await.unwrap();
    store
}

pub fn subject(byte: u8) -> Subject {
    Subject { centre: centre("410800"), reference: SubjectRef::from_bytes([byte; 12]) }
}

fn record(version: u64, balance: u64) -> RegistryRecord {
    let status =
        DepositClaims { registry_version: version, balance: liangma::code::Fen(balance), ..member().deposit_claims() };
    RegistryRecord {
        status,
        masked_name: "张*".into(),
        masked_id_number: "410***********0012".into(),
        published_at: now(),
    }
}

pub fn code_use(subject: Subject, code: u8, verifier: &str, request: Option<&str>) -> CodeUse {
    CodeUse {
        subject,
        code_id: CodeId::from_bytes([code; 12]),
        centre: centre(verifier),
        request_id: request.map(|id| RequestId::new(id).unwrap()),
        purpose: Purpose::OffsiteLoan,
        at: now(),
        used_ttl_seconds: 3_600,
        grant: format!("grant-of-{verifier}-{}", request.unwrap_or("none")),
        claims: member().deposit_claims(),
        accepted_offline: false,
    }
}

fn results(entries: &[UsageEntry]) -> Vec<(Verdict, u32)> {
    entries.iter().map(|entry| (entry.result, entry.count)).collect()
}

async fn a_code_is_consumed_once_and_its_use_is_recorded(store: &impl Store) {
    let member = subject(1);
    store.publish(&[(member, record(3, 2_000_000))], 1 << 36).await.unwrap();
    let first = store.consume(&code_use(member, 7, "440300", None)).await.unwrap();
    assert_eq!(first, UseOutcome::Consumed { live: Some(record(3, 2_000_000)) });
    let second = store.consume(&code_use(member, 7, "330100", None)).await.unwrap();
    assert_eq!(second, UseOutcome::AlreadyUsed { at: now(), centre: centre("440300") });
    // The grant of the first use gives its claims and the live record; a guessed one nothing.
    let granted = store.lookup_granted(member, CodeId::from_bytes([7; 12]), "grant-of-440300-none").await.unwrap();
    let granted = granted.expect("granted");
    assert_eq!((granted.subject, granted.verified_at, granted.live), (member, now(), Some(record(3, 2_000_000))));
    assert_eq!(store.lookup_granted(member, CodeId::from_bytes([7; 12]), "grant-of-440300-nonf").await.unwrap(), None);
    let usage = store.usage(member).await.unwrap();
    assert_eq!(results(&usage), [(Verdict::Valid, 1), (Verdict::AlreadyUsed, 1)]);
    assert_eq!(usage[1].centre, centre("330100"));
}

async fn a_retry_of_the_same_request_at_the_same_centre_is_the_same_use(store: &impl Store) {
    let member = subject(2);
    let first = code_use(member, 8, "440300", Some("desk-1"));
    assert!(matches!(store.consume(&first).await.unwrap(), UseOutcome::Consumed { .. }));
    // The retry carries a new grant of its own; the original one is what it gets back.
    let retry = CodeUse { grant: "another".into(), ..first.clone() };
    let repeated = store.consume(&retry).await.unwrap();
    assert_eq!(repeated, UseOutcome::Repeated { live: None, grant: first.grant.clone() });
    for (verifier, request) in [("440300", Some("desk-2")), ("440300", None), ("330100", Some("desk-1"))] {
        let other = store.consume(&code_use(member, 8, verifier, request)).await.unwrap();
        assert!(matches!(other, UseOutcome::AlreadyUsed { .. }), "{verifier} {request:?}: {other:?}");
    }
    // The retry added nothing to the record; the refusals are there, newest first (the two at
    // 440300 in a row counted on one line).
    let usage = store.usage(member).await.unwrap();
    assert_eq!(results(&usage), [(Verdict::Valid, 1), (Verdict::AlreadyUsed, 1), (Verdict::AlreadyUsed, 2)]);
    assert_eq!(usage[1].centre, centre("330100"));
}

async fn a_revoked_code_stays_revoked_and_ends_its_grant(store: &impl Store) {
    let member = subject(3);
    let code_id = CodeId::from_bytes([9; 12]);
    assert_eq!(store.mark_issued_and_get(member, code_id, 3_600).await.unwrap(), None, "not published");
    let used = code_use(member, 9, "440300", Some("desk-1"));
    store.consume(&used).await.unwrap();
    assert!(store.revoke(member, code_id, now(), 90_000).await.unwrap());
    assert_eq!(store.lookup_granted(member, code_id, &used.grant).await.unwrap(), None);
    // Even the original request's retry: the member's revocation wins.
    assert_eq!(store.consume(&used).await.unwrap(), UseOutcome::Revoked);
    let usage = store.usage(member).await.unwrap();
    assert_eq!(results(&usage), [(Verdict::Valid, 1), (Verdict::CodeRevoked, 1)]);
}

async fn only_a_code_issued_here_can_be_revoked(store: &impl Store) {
    let (member, other) = (subject(4), subject(5));
    let code_id = CodeId::from_bytes([10; 12]);
    assert!(!store.revoke(member, code_id, now(), 90_000).await.unwrap(), "never issued");
    store.publish(&[(member, record(1, 100))], 100).await.unwrap();
    let read = store.mark_issued_and_get(member, code_id, 3_600).await.unwrap();
    assert_eq!(read, Some(record(1, 100)), "issuance reads the record as it marks the code");
    assert!(!store.revoke(other, code_id, now(), 90_000).await.unwrap(), "another member's code");
    assert!(store.revoke(member, code_id, now(), 90_000).await.unwrap());
    assert_eq!(store.consume(&code_use(member, 10, "440300", None)).await.unwrap(), UseOutcome::Revoked);
}

async fn repeats_are_counted_and_never_displace_valid_entries(store: &impl Store) {
    let member = subject(6);
    for code in [20, 21] {
        store.consume(&code_use(member, code, "440300", None)).await.unwrap();
    }
    let later = |code: u8, seconds: i64| CodeUse { at: now().plus(seconds), ..code_use(member, code, "440300", None) };
    for second in 1..=5 {
        store.consume(&later(20, second)).await.unwrap();
    }
    let usage = store.usage(member).await.unwrap();
    assert_eq!(results(&usage)[0], (Verdict::AlreadyUsed, 5));
    assert_eq!((usage[0].first_at, usage[0].at), (now().plus(1), now().plus(5)));
    // Alternating replays are not counted together: they fill the list of other verdicts, whose
    // oldest go; the VALID entries stay.
    for second in 0..(USAGE_ENTRIES_KEPT as i64 + 10) {
        store.consume(&later(20 + (second % 2) as u8, 10 + second)).await.unwrap();
    }
    let usage = store.usage(member).await.unwrap();
    assert_eq!(usage.len(), USAGE_ENTRIES_KEPT + 2);
    assert_eq!(usage.iter().filter(|entry| entry.result == Verdict::Valid).count(), 2);
    // A refused authentic code's verdict is recorded, and counted when repeated.
    let expired = UsageEntry::single(
        now().plus(500),
        centre("440300"),
        Purpose::OffsiteLoan,
        Verdict::Rejected(liangma::verify::Reason::Expired),
        CodeId::from_bytes([22; 12]),
    );
    store.record_usage(member, &expired).await.unwrap();
    store
        .record_usage(member, &UsageEntry { at: now().plus(501), first_at: now().plus(501), ..expired.clone() })
        .await
        .unwrap();
    let newest = &store.usage(member).await.unwrap()[0];
    assert_eq!((newest.result, newest.count, newest.first_at), (expired.result, 2, now().plus(500)));
}

async fn records_replace_only_older_versions_within_the_step(store: &impl Store) {
    let (member, other) = (subject(7), subject(8));
    let outcome = store.publish(&[(member, record(5, 1)), (other, record(1, 2))], 100).await.unwrap();
    assert_eq!((outcome.counts.applied, outcome.counts.ignored_not_newer, outcome.rejected.len()), (2, 0, 0));
    let outcome =
        store.publish(&[(member, record(5, 9)), (member, record(4, 9)), (member, record(106, 9))], 100).await.unwrap();
    assert_eq!((outcome.counts.applied, outcome.counts.ignored_not_newer), (0, 2));
    assert_eq!(outcome.rejected, [(2, PublishRejection::VersionStepTooLarge)]);
    assert_eq!(store.get(member).await.unwrap(), Some(record(5, 1)));
    assert_eq!(store.publish(&[(member, record(105, 3))], 100).await.unwrap().counts.applied, 1);
    // An operator's repair: after removal any version is stored.
    assert!(store.remove(member).await.unwrap());
    assert!(!store.remove(member).await.unwrap());
    assert_eq!(store.get(member).await.unwrap(), None);
    assert_eq!(store.publish(&[(member, record(1, 4))], 100).await.unwrap().counts.applied, 1);
}

async fn digits_resolve_until_taken_and_the_store_answers_pings(store: &impl Store) {
    store.ping().await.unwrap();
    assert!(store.put_digits("1111222233334444", "LM1:A", 3_600).await.unwrap());
    assert!(!store.put_digits("1111222233334444", "LM1:B", 3_600).await.unwrap(), "digits are never shared");
    assert_eq!(store.resolve_digits("1111222233334444").await.unwrap().as_deref(), Some("LM1:A"));
    assert_eq!(store.resolve_digits("9999222233334444").await.unwrap(), None);
}

async fn deferred_consumptions_queue_once_per_request_and_a_replayed_double_use_is_recorded(store: &impl Store) {
    let deferred = |request: &str, text: &str| DeferredUse {
        issuer: centre("410800"),
        code_id: CodeId::from_bytes([40; 12]),
        request_id: RequestId::new(request).unwrap(),
        text: text.into(),
        accepted_at: now(),
    };
    assert!(store.defer(&deferred("hz-1", "LM1:A|B C")).await.unwrap());
    assert!(store.defer(&deferred("hz-1", "LM1:A|B C")).await.unwrap(), "a retry replaces its entry");
    assert!(store.defer(&deferred("hz-2", "LM1:D")).await.unwrap());
    let mut queued = store.deferred(10).await.unwrap();
    queued.sort_by(|a, b| a.request_id.as_str().cmp(b.request_id.as_str()));
    assert_eq!(queued, [deferred("hz-1", "LM1:A|B C"), deferred("hz-2", "LM1:D")]);
    store.deferred_done(&RequestId::new("hz-1").unwrap()).await.unwrap();
    assert_eq!(store.deferred(10).await.unwrap(), [deferred("hz-2", "LM1:D")]);

    // Replayed at the issuer after another centre used the code: DOUBLE_USE in the record.
    let member = subject(10);
    let first = code_use(member, 41, "110000", Some("bj-1"));
    assert!(matches!(store.consume(&first).await.unwrap(), UseOutcome::Consumed { .. }));
    let replay = CodeUse { accepted_offline: true, ..code_use(member, 41, "330100", Some("hz-9")) };
    assert!(matches!(store.consume(&replay).await.unwrap(), UseOutcome::AlreadyUsed { .. }));
    let results: Vec<(String, Verdict)> =
        store.usage(member).await.unwrap().iter().map(|entry| (entry.centre.to_string(), entry.result)).collect();
    assert!(results.contains(&("330100".into(), Verdict::DoubleUse)), "{results:?}");
    assert!(results.contains(&("110000".into(), Verdict::Valid)), "{results:?}");
}

async fn remote_answers_are_kept_for_lookups_under_their_grant(store: &impl Store) {
    let holder = subject(11);
    let code_id = CodeId::from_bytes([42; 12]);
    for live in [Some(record(7, 5_000)), None] {
        let granted = Granted { subject: holder, verified_at: now(), claims: member().deposit_claims(), live };
        store.put_remote_grant(code_id, "secret-grant", &granted, 600).await.unwrap();
        assert_eq!(store.remote_granted(holder, code_id, "secret-grant").await.unwrap(), Some(granted));
        assert_eq!(store.remote_granted(holder, code_id, "secret-grang").await.unwrap(), None);
    }
}

async fn member_page_sessions_name_their_member_until_they_expire(store: &impl Store) {
    let holder = subject(12);
    store.put_session("a1b2", holder, 900).await.unwrap();
    assert_eq!(store.session("a1b2").await.unwrap(), Some(holder));
    assert_eq!(store.session("a1b3").await.unwrap(), None);
}

async fn fifty_concurrent_uses_consume_a_code_once(store: &impl Store) {
    let member = subject(13);
    let uses: Vec<CodeUse> = (0..50usize)
        .map(|desk| code_use(member, 50, ["440300", "330100", "110000"][desk % 3], Some(&format!("desk-{desk}"))))
        .collect();
    // All in flight at once: one multiplexed connection sends them together.
    let outcomes = futures_util::future::join_all(uses.iter().map(|code_use| store.consume(code_use))).await;
    let outcomes: Vec<UseOutcome> = outcomes.into_iter().map(Result::unwrap).collect();
    let consumed = outcomes.iter().filter(|outcome| matches!(outcome, UseOutcome::Consumed { .. })).count();
    let refused = outcomes.iter().filter(|outcome| matches!(outcome, UseOutcome::AlreadyUsed { .. })).count();
    assert_eq!((consumed, refused), (1, 49), "{outcomes:?}");
    let usage = store.usage(member).await.unwrap();
    assert_eq!(usage.iter().filter(|entry| entry.result == Verdict::Valid).count(), 1);
}

async fn the_usage_record_keeps_the_newest_valid_entries_and_live_codes_stay_used(store: &impl Store) {
    let use_at = |member: Subject, code: usize, at: Timestamp| CodeUse {
        code_id: CodeId::from_bytes({
            let mut id = [0; 12];
            id[..2].copy_from_slice(&(code as u16).to_be_bytes());
            id
        }),
        at,
        ..code_use(member, 0, "440300", None)
    };
    // Codes used days ago, one a minute: only the newest entries stay in the record.
    let (past, today) = (subject(14), subject(15));
    let uses = USAGE_ENTRIES_KEPT + 60;
    for code in 0..uses {
        let outcome = store.consume(&use_at(past, code, now().plus(-3 * 86_400 + 60 * code as i64))).await.unwrap();
        assert!(matches!(outcome, UseOutcome::Consumed { .. }), "{code}: {outcome:?}");
    }
    let usage = store.usage(past).await.unwrap();
    assert_eq!(usage.len(), USAGE_ENTRIES_KEPT);
    assert_eq!(usage[0].at, now().plus(-3 * 86_400 + 60 * (uses as i64 - 1)));
    // Codes used today may still be live: however many there are, each stays used.
    for code in 0..uses {
        store.consume(&use_at(today, code, now())).await.unwrap();
    }
    for code in [0, uses / 2, uses - 1] {
        let again = store.consume(&use_at(today, code, now().plus(1))).await.unwrap();
        assert!(matches!(again, UseOutcome::AlreadyUsed { .. }), "{code}: {again:?}");
    }
}

/// The verification hot path is one round trip of plain commands: Redis reads the pipeline in
/// one go (its `total_reads_processed` counts one read per verification), and runs no
/// script unless the code was refused.
#[tokio::test]
async fn a_verification_is_one_round_trip_of_plain_commands() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let member = subject(16);
    store.consume(&code_use(member, 1, "440300", None)).await.unwrap();
    let reads = || -> u64 {
        let info = server.cli(&["INFO", "stats"]);
        info.lines().find_map(|line| line.strip_prefix("total_reads_processed:")?.trim().parse().ok()).unwrap()
    };
    // What asking costs: redis-cli's connection is read too.
    let asking = reads().abs_diff(reads());
    let before = reads();
    for code in 2..12 {
        let outcome = store.consume(&code_use(member, code, "440300", None)).await.unwrap();
        assert!(matches!(outcome, UseOutcome::Consumed { .. }), "{outcome:?}");
    }
    assert_eq!(reads() - before, 10 + asking, "one read per verification");
    let scripts = server.cli(&["INFO", "commandstats"]);
    assert!(!scripts.contains("cmdstat_evalsha"), "{scripts}");
}

/// A member with more of today's codes used than the record keeps cannot be trimmed (each may
/// still be live): the trim, which reads the whole hash, is tried at 250 fields and then every
/// 50 more, never on every verification.
#[tokio::test]
async fn a_hash_that_cannot_shrink_is_not_trimmed_on_every_verification() {
    let server = RedisServer::start();
    let store = redis_store(&server).await;
    let member = subject(17);
    let uses = USAGE_ENTRIES_KEPT + 120;
    for code in 0..uses {
        let mut id = [0; 12];
        id[..2].copy_from_slice(&(code as u16).to_be_bytes());
        let outcome =
            store.consume(&CodeUse { code_id: CodeId::from_bytes(id), ..code_use(member, 0, "440300", None) }).await;
        assert!(matches!(outcome, Ok(UseOutcome::Consumed { .. })), "{code}: {outcome:?}");
    }
    let stats = server.cli(&["INFO", "commandstats"]);
    let trims = stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:calls=")?.split(',').next()?.parse::<usize>().ok())
        .unwrap_or(0);
    assert_eq!(trims, 2, "tried at 250 and 300 fields only: {stats}");
    assert_eq!(server.cli(&["HLEN", &format!("contract:{{{}}}:used", member.storage_key())]).trim(), uses.to_string());
}
