//! Redis Cluster and Sentinel failovers: a master killed mid-traffic never lets a code be used twice.

use std::collections::HashMap;

use liangma::model::UseOutcome;
use liangma::store::redis::{RedisStore, RedisTopology};
use liangma::store::{CodeStore, StoreError};
use liangma::testkit::{RedisCluster, RedisSentinel};

use crate::store_contract::{code_use, sentinel_topology, subject, topology_store};

/// Consumes code `code` of member `member` until the store gives a definite answer, retrying
/// the same request (as a counter's client does after UNAVAILABLE). Returns whether this
/// request consumed it, and how many attempts were refused as unavailable.
async fn consume_until_answered(store: &RedisStore, member: u8, code: u8, request: &str) -> (bool, u32) {
    let code_use = code_use(subject(member), code, "330100", Some(request));
    let mut unavailable = 0;
    loop {
        match store.consume(&code_use).await {
            Ok(UseOutcome::Consumed { .. } | UseOutcome::Repeated { .. }) => return (true, unavailable),
            Ok(UseOutcome::AlreadyUsed { .. }) => return (false, unavailable),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(StoreError::Unavailable(_)) => {
                unavailable += 1;
                assert!(unavailable < 200, "no answer for 20 s");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(error) => panic!("{error}"),
        }
    }
}

/// Uses codes of 20 members while `fail_over` kills the master, then tries every code again
/// with new requests: each code was consumed by exactly one request.
async fn no_double_use_across_a_failover<T: Send + 'static>(
    store: &RedisStore,
    fail_over: impl FnOnce() -> T + Send + 'static,
) {
    let before: Vec<(u8, u8)> = (1..=20).map(|member| (member, 1)).collect();
    for &(member, code) in &before {
        assert!(consume_until_answered(store, member, code, "first").await.0);
    }
    let killer = tokio::task::spawn_blocking(fail_over);
    let mut consumed: HashMap<(u8, u8), u32> = HashMap::new();
    let mut code = 2;
    while !killer.is_finished() {
        assert!(code < u8::MAX, "the failover took too long");
        for member in 1..=20 {
            let (used, _) = consume_until_answered(store, member, code, "during").await;
            *consumed.entry((member, code)).or_default() += u32::from(used);
        }
        code += 1;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The servers stay up until the end.
    let _servers = killer.await.unwrap();
    // Every code once more, from other desks: none may be consumed a second time.
    for member in 1..=20 {
        for code in 1..code {
            let (used, _) = consume_until_answered(store, member, code, "after").await;
            assert!(!used, "member {member} code {code} was consumed again after the failover");
        }
    }
    assert!(consumed.values().all(|&count| count == 1), "{consumed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_master_killed_and_failed_over_never_gives_a_second_valid() {
    let mut cluster = RedisCluster::start(3, 1);
    let store = topology_store(RedisTopology::Cluster { nodes: cluster.urls() }, "failover", 1).await;
    // The master holding member 1's keys goes down mid-traffic.
    let victim = cluster.master_port_of(&format!("{{{}}}", subject(1).storage_key()));
    no_double_use_across_a_failover(&store, move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        cluster.kill_and_fail_over(victim);
        cluster
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_master_killed_and_failed_over_never_gives_a_second_valid() {
    let mut group = RedisSentinel::start();
    let store = topology_store(sentinel_topology(&group), "failover", 1).await;
    no_double_use_across_a_failover(&store, move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        group.kill_master_and_fail_over();
        group
    })
    .await;
}

#[tokio::test]
async fn a_use_is_not_valid_until_a_replica_holds_its_mark() {
    let group = RedisSentinel::start();
    let store = topology_store(sentinel_topology(&group), "wait", 1).await;
    group.freeze_replica();
    let first = code_use(subject(1), 1, "330100", Some("desk-1"));
    assert!(matches!(store.consume(&first).await, Err(StoreError::Unavailable(_))));
    group.thaw_replica();
    // Retries of the same request find its mark and answer for it once the replica has it.
    let mut retries = 0;
    let answer = loop {
        match store.consume(&first).await {
            Err(StoreError::Unavailable(_)) if retries < 50 => retries += 1,
            answer => break answer.unwrap(),
        }
    };
    assert!(matches!(answer, UseOutcome::Repeated { .. }), "{answer:?}");
    let other = code_use(subject(1), 1, "110000", Some("desk-2"));
    assert!(matches!(store.consume(&other).await.unwrap(), UseOutcome::AlreadyUsed { .. }));
}

/// The backup procedure of docs/operations.md: `redis-cli --rdb`, then a new server started
/// from the file holds the registry and the used marks as they were.
#[tokio::test]
async fn a_backup_restores_records_and_used_marks() {
    use liangma::store::RegistryStore;
    let server = liangma::testkit::RedisServer::start();
    let store = topology_store(RedisTopology::Standalone { url: server.url() }, "backup", 0).await;
    let member = subject(1);
    let record = liangma::model::RegistryRecord {
        status: liangma::testkit::member().deposit_claims(),
        masked_name: "张*".into(),
        masked_id_number: "410***********0012".into(),
        published_at: crate::store_contract::now(),
    };
    store.publish(&[(member, record.clone())], 1 << 36).await.unwrap();
    assert!(matches!(
        store.consume(&code_use(member, 1, "330100", Some("a"))).await.unwrap(),
        UseOutcome::Consumed { .. }
    ));
    let backup = tempfile::tempdir().unwrap();
    let file = backup.path().join("liangma.rdb");
    server.cli(&["--rdb", file.to_str().unwrap()]);
    drop(store);
    drop(server);

    let restored = liangma::testkit::RedisServer::start_from_backup(&file);
    let store = topology_store(RedisTopology::Standalone { url: restored.url() }, "backup", 0).await;
    assert_eq!(store.get(member).await.unwrap(), Some(record));
    let again = store.consume(&code_use(member, 1, "110000", Some("b"))).await.unwrap();
    assert!(matches!(again, UseOutcome::AlreadyUsed { .. }), "{again:?}");
}
