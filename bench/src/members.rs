//! The bench's members: fake but valid ID numbers, their published statuses, and codes signed with the service's dev key.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::ensure;
use liangma::pb::v1 as pb;
use tonic::transport::Channel;

/// Members the verification runs spread over, published before the first run: a counter sees
/// many members, so each verification touches its own member's keys.
pub(crate) const BENCH_MEMBERS: u64 = 10_000;

/// A fake but valid resident ID number for registry member `n` (below 10^9).
pub(crate) fn id_number(n: u64) -> String {
    let body = format!("41080219{n:09}");
    let check = body.as_bytes().first_chunk::<17>().and_then(liangma::model::IdNumber::check_character);
    format!("{body}{}", char::from(check.expect("17 digits")))
}

/// The registry status of member `n`, as published.
pub(crate) fn member_status(n: u64) -> pb::MemberStatus {
    pb::MemberStatus {
        id_number: id_number(n),
        name: "张三".into(),
        status: Some(pb::DepositStatus {
            account_status: pb::AccountStatus::Normal.into(),
            balance_fen: 1_000_000 + n,
            monthly_deposit_fen: 150_000,
            continuous_months: 30,
            loan_state: pb::LoanState::None.into(),
            loans_used: 0,
            registry_version: 1_795_000_000_000 + n,
        }),
    }
}

/// Distinct codes of the bench members, signed with the dev key of Jiaozuo that the service uses.
pub(crate) struct Codes {
    pub(crate) issuer: liangma::issue::Issuer,
    pub(crate) trust: liangma::trust::TrustList,
    pub(crate) public_key_hex: String,
    pub(crate) next_member: AtomicU64,
}

impl Codes {
    pub(crate) fn new(data_dir: &Path) -> anyhow::Result<Self> {
        let trust = liangma::trust::TrustList::load(&data_dir.join("trust.json"))?;
        let key = liangma::trust::CentreKey::read_pem_file(&data_dir.join("dev-410800.pem"))?;
        let public_key_hex = hex::encode(key.verifying_key().as_bytes());
        let subject_secret = liangma::trust::SubjectSecret::read_file(&data_dir.join("dev-410800-subject.key"))?;
        let issuer = liangma::issue::Issuer::new(key, subject_secret, &trust)?;
        Ok(Self { issuer, trust, public_key_hex, next_member: AtomicU64::new(0) })
    }

    /// `count` codes for Shenzhen (440300), each claiming exactly what the registry holds for its member.
    pub(crate) fn make(&self, count: usize) -> anyhow::Result<Arc<Vec<String>>> {
        self.make_for(count, Some("440300".parse()?))
    }

    /// `count` codes for `audience` (`None`: any centre).
    pub(crate) fn make_for(
        &self,
        count: usize,
        audience: Option<liangma::code::CentreCode>,
    ) -> anyhow::Result<Arc<Vec<String>>> {
        use liangma::clock::Clock;
        let request = liangma::issue::IssueRequest {
            purpose: liangma::code::Purpose::OffsiteLoan,
            audience,
            lifetime_seconds: 86_400,
        };
        let now = liangma::clock::SystemClock.now();
        let mut codes = Vec::with_capacity(count);
        for _ in 0..count {
            let member = member_status(self.next_member.fetch_add(1, Ordering::Relaxed) % BENCH_MEMBERS);
            let status = member.status.expect("set");
            let record: liangma::issue::DepositRecord = serde_json::from_str(&format!(
                r#"{{"id_number":"{}","account_status":"normal","balance_fen":{},"monthly_deposit_fen":{},
                    "continuous_months":{},"loan_state":"none","registry_version":{}}}"#,
                member.id_number,
                status.balance_fen,
                status.monthly_deposit_fen,
                status.continuous_months,
                status.registry_version
            ))?;
            codes.push(self.issuer.issue(&self.trust, &record, &request, now)?.text);
        }
        Ok(Arc::new(codes))
    }
}

/// Publishes members `first..first + records` in batches of 1,000, 8 batches in flight; returns
/// records per second.
pub(crate) async fn publish(channel: Channel, first: u64, records: u64) -> anyhow::Result<f64> {
    const BATCH: u64 = 1_000;
    let semaphore = Arc::new(tokio::sync::Semaphore::new(8));
    let started = Instant::now();
    let mut calls = Vec::new();
    let end = first + records;
    for batch_start in (first..end).step_by(BATCH as usize) {
        let permit = Arc::clone(&semaphore).acquire_owned().await?;
        let mut client = pb::registry_service_client::RegistryServiceClient::new(channel.clone());
        let batch_end = (batch_start + BATCH).min(end);
        calls.push(tokio::spawn(async move {
            let records = (batch_start..batch_end).map(member_status).collect();
            let request = pb::PublishStatusesRequest { centre: "410800".into(), records };
            let applied = client.publish_statuses(request).await.map(|r| u64::from(r.into_inner().applied));
            drop(permit);
            applied
        }));
    }
    let mut applied = 0;
    for call in calls {
        applied += call.await??;
    }
    ensure!(applied == records, "only {applied} of {records} records applied");
    Ok(records as f64 / started.elapsed().as_secs_f64())
}
