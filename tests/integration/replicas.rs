//! Several `liangma serve` processes on one Redis (standalone and Cluster) are one service: a
//! code raced across them verifies once, and what one writes the others read.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use liangma::pb::v1 as pb;
use liangma::testkit::{RedisCluster, RedisServer};
use tonic::transport::Channel;

use crate::harness::{ZHANG_WEI, result_of, verdict};

/// One `liangma serve` process, killed on drop.
struct Replica {
    child: Child,
    channel: Channel,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `count` replicas of the embedded dev setup sharing `data_dir` (so the same dev keys)
/// and the Redis store `store` describes (environment variables), one after the other.
async fn start_replicas(count: usize, data_dir: &std::path::Path, store: &[(&str, String)]) -> Vec<Replica> {
    let mut replicas = Vec::new();
    for _ in 0..count {
        let address = format!("127.0.0.1:{}", crate::process::free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_liangma"))
            .arg("serve")
            .env_clear()
            .env("LIANGMA_LISTEN", &address)
            .env("LIANGMA_DATA_DIR", data_dir)
            .env("LIANGMA_STORE", "redis")
            .envs(store.iter().map(|(name, value)| (*name, value.as_str())))
            .env("LIANGMA_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let channel = loop {
            if let Ok(channel) = Channel::from_shared(format!("http://{address}")).unwrap().connect().await {
                break channel;
            }
            assert!(Instant::now() < deadline, "liangma serve did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        replicas.push(Replica { child, channel });
    }
    replicas
}

fn issuer(replica: &Replica) -> pb::issuer_service_client::IssuerServiceClient<Channel> {
    pb::issuer_service_client::IssuerServiceClient::new(replica.channel.clone())
}

fn verifier(replica: &Replica) -> pb::verifier_service_client::VerifierServiceClient<Channel> {
    pb::verifier_service_client::VerifierServiceClient::new(replica.channel.clone())
}

async fn issue(replica: &Replica) -> pb::IssueCodeResponse {
    let request = pb::IssueCodeRequest {
        issuer_centre: "410800".into(),
        id_number: ZHANG_WEI.into(),
        purpose: pb::Purpose::OffsiteLoan.into(),
        ..Default::default()
    };
    issuer(replica).issue_code(request).await.unwrap().into_inner()
}

async fn verify(replica: &Replica, code: pb::verify_code_request::Code, request_id: &str) -> pb::VerifyCodeResponse {
    let request = pb::VerifyCodeRequest { code: Some(code), purpose: 0, request_id: request_id.into() };
    verifier(replica).verify_code(request).await.unwrap().into_inner()
}

fn text(code: &pb::IssueCodeResponse) -> pb::verify_code_request::Code {
    pb::verify_code_request::Code::Text(code.text.clone())
}

/// The checks every shared store must pass with these replicas.
async fn replicas_act_as_one_service(replicas: &[Replica]) {
    // A code issued at one replica, raced 50 ways across all of them: one VALID.
    let code = issue(&replicas[0]).await;
    let code = &code;
    let racers = (0..50).map(|desk| {
        let replica = &replicas[desk % replicas.len()];
        async move { verify(replica, text(code), &format!("desk-{desk}")).await }
    });
    let answers = futures_util::future::join_all(racers).await;
    let valid: Vec<&pb::VerifyCodeResponse> =
        answers.iter().filter(|answer| verdict(answer) == pb::Verdict::Valid).collect();
    let refused = answers.iter().filter(|answer| verdict(answer) == pb::Verdict::AlreadyUsed).count();
    assert_eq!((valid.len(), refused), (1, 49));

    // The member's usage record, read at another replica, has every attempt.
    let usage =
        pb::usage_record_service_client::UsageRecordServiceClient::new(replicas[replicas.len() - 1].channel.clone())
            .list_usage(pb::ListUsageRequest { issuer_centre: "410800".into(), id_number: ZHANG_WEI.into() })
            .await
            .unwrap()
            .into_inner();
    let count_of =
        |wanted| usage.entries.iter().filter(|entry| result_of(entry) == wanted).map(|entry| entry.count).sum::<u32>();
    assert_eq!((count_of(pb::Verdict::Valid), count_of(pb::Verdict::AlreadyUsed)), (1, 49));

    // A publication at one replica is the live status at another.
    let live = valid[0].live.as_ref().and_then(|live| live.status).expect("live status with VALID");
    let newer = pb::DepositStatus { registry_version: live.registry_version + 1, balance_fen: 2_345_600, ..live };
    let publication = pb::PublishStatusesRequest {
        centre: "410800".into(),
        records: vec![pb::MemberStatus { id_number: ZHANG_WEI.into(), name: "张伟".into(), status: Some(newer) }],
    };
    let published = pb::registry_service_client::RegistryServiceClient::new(replicas[1].channel.clone())
        .publish_statuses(publication)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(published.applied, 1);
    let second = issue(&replicas[1]).await;
    let checked = verify(replicas.last().unwrap(), text(&second), "desk-live").await;
    assert_eq!(verdict(&checked), pb::Verdict::Valid);
    assert_eq!(checked.live.and_then(|live| live.status).map(|status| status.balance_fen), Some(2_345_600));

    // Digits issued at one replica resolve at another; a revocation at one holds at all.
    let spoken = issue(&replicas[0]).await;
    let by_digits = verify(&replicas[1], pb::verify_code_request::Code::Digits(spoken.digits.clone()), "desk-d").await;
    assert_eq!(verdict(&by_digits), pb::Verdict::Valid);
    let revoked = issue(replicas.last().unwrap()).await;
    let revocation = pb::RevokeCodeRequest {
        issuer_centre: "410800".into(),
        id_number: ZHANG_WEI.into(),
        code_id: revoked.code_id.clone(),
    };
    issuer(&replicas[0]).revoke_code(revocation).await.unwrap();
    assert_eq!(verdict(&verify(&replicas[1], text(&revoked), "desk-r").await), pb::Verdict::CodeRevoked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_redis_server_are_one_service() {
    let redis = RedisServer::start();
    let data = tempfile::tempdir().unwrap();
    let replicas = start_replicas(2, data.path(), &[("LIANGMA_REDIS_URL", redis.url())]).await;
    replicas_act_as_one_service(&replicas).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_redis_cluster_are_one_service() {
    let cluster = RedisCluster::start(3, 0);
    let data = tempfile::tempdir().unwrap();
    let store = [("LIANGMA_REDIS_TOPOLOGY", "cluster".to_owned()), ("LIANGMA_REDIS_NODES", cluster.urls().join(","))];
    let replicas = start_replicas(3, data.path(), &store).await;
    replicas_act_as_one_service(&replicas).await;
}
