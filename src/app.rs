//! Assembles the service from a [`Config`]: keys and trust list (or the embedded dev setup), store, sample members.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::clock::{Clock, Timestamp};
use crate::code::{AccountStatus, CentreCode, DepositClaims, Fen, KeyId, LoanState};
use crate::config::Config;
use crate::federation::TlsMaterial;
use crate::federation::directory::{Directory, DirectorySettings};
use crate::federation::refresh::Follower;
use crate::federation::remote::{BreakerSettings, GrpcLink};
use crate::issue::Issuer;
use crate::service::link::IssuerLink;
use crate::service::{Liangma, MemberStatus, PublishCommand, ServiceSettings, TrustInForce};
use crate::store::Store;
use crate::trust::{CentreKey, SubjectSecret, TrustList};
use crate::verify::VerifierPolicy;

/// Centres of the embedded dev setup: Jiaozuo (Henan) and Shenzhen (Guangdong).
pub const DEV_CENTRES: [(u32, &str); 2] = [(410800, "焦作市住房公积金管理中心"), (440300, "深圳市住房公积金管理中心")];

/// Fake members of the dev setup (valid check characters, no real person):
/// (centre, ID number, name, balance in fen, continuous months, loan state).
pub const SAMPLE_MEMBERS: [(u32, &str, &str, u64, u32, LoanState); 5] = [
    (410800, "410802198503120012", "张伟", 2_000_000, 30, LoanState::None),
    (410800, "410803199207040027", "王芳", 850_000, 23, LoanState::None),
    (410800, "410821197809230032", "李强", 4_600_000, 120, LoanState::Outstanding),
    (440300, "440304198802150044", "陈静", 12_500_000, 60, LoanState::Settled),
    (440300, "440305199506300053", "刘洋", 310_000, 8, LoanState::None),
];

/// The trust list, issuers and trust list path of a configuration with a trust list file (or
/// the embedded dev setup, whose keys are created on first start).
pub fn identity(config: &Config, now: Timestamp) -> anyhow::Result<(TrustList, Vec<Issuer>, std::path::PathBuf)> {
    if config.is_dev_setup() {
        return dev_identity(&config.data_dir, now);
    }
    let path = config.trust_list.clone().context("no trust_list file is configured")?;
    let trust = TrustList::load(&path)?;
    let issuers = issuers(config, &trust)?;
    Ok((trust, issuers, path))
}

/// The configured issuers, each key checked against `trust`.
fn issuers(config: &Config, trust: &TrustList) -> anyhow::Result<Vec<Issuer>> {
    config
        .issuers
        .iter()
        .map(|issuer| {
            let key = CentreKey::read_pem_file(&issuer.signing_key)?;
            let secret = SubjectSecret::read_file(&issuer.subject_secret)?;
            let issuer_identity = Issuer::new(key, secret, trust)
                .with_context(|| format!("issuer {}: {}", issuer.centre, issuer.signing_key.display()))?;
            anyhow::ensure!(
                issuer_identity.centre() == issuer.centre,
                "issuer {}: the key is published for centre {}",
                issuer.centre,
                issuer_identity.centre()
            );
            Ok(issuer_identity)
        })
        .collect()
}

fn dev_identity(data_dir: &Path, now: Timestamp) -> anyhow::Result<(TrustList, Vec<Issuer>, std::path::PathBuf)> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let trust_path = data_dir.join("trust.json");
    let mut trust = TrustList::load_or_empty(&trust_path)?;
    let mut issuers = Vec::new();
    for (code, name) in DEV_CENTRES {
        let centre = CentreCode::new(code).expect("valid");
        let key_path = data_dir.join(format!("dev-{centre}.pem"));
        let secret_path = data_dir.join(format!("dev-{centre}-subject.key"));
        if !key_path.exists() {
            CentreKey::generate().context("random source")?.write_pem_file(&key_path)?;
        }
        if !secret_path.exists() {
            SubjectSecret::generate().context("random source")?.write_file(&secret_path)?;
        }
        let key = CentreKey::read_pem_file(&key_path)?;
        if trust.centre(centre).and_then(|c| c.key(key.key_id())).is_none() {
            // Dev keys sign from a day ago (clock differences) for ten years.
            trust.add_key(centre, Some(name), key.verifying_key(), now.plus(-86_400), now.plus(10 * 365 * 86_400))?;
            trust.save(&trust_path)?;
        }
        issuers.push(Issuer::new(key, SubjectSecret::read_file(&secret_path)?, &trust)?);
    }
    Ok((trust, issuers, trust_path))
}

/// The service settings of a configuration.
pub fn service_settings(
    config: &Config,
    trust_list_path: Option<std::path::PathBuf>,
) -> anyhow::Result<ServiceSettings> {
    let loan_policy = config.load_loan_policy()?;
    // The dev setup demonstrates Jiaozuo's policy at a Shenzhen counter on purpose.
    if loan_policy.centre != config.centre && !config.is_dev_setup() {
        tracing::warn!(policy = %loan_policy.name, policy_centre = %loan_policy.centre, centre = %config.centre,
            "the loan policy belongs to another centre");
    }
    Ok(ServiceSettings {
        policy: VerifierPolicy {
            centre: config.centre,
            purposes: config.purposes.clone(),
            clock_skew_seconds: config.clock_skew_secs,
        },
        code_lifetime_seconds: config.limits.code_lifetime_secs,
        max_publish_batch: config.limits.max_publish_batch,
        max_version_step: config.limits.max_version_step,
        qr_render_concurrency: config.limits.qr_render_concurrency,
        trust_list_path,
        loan_policy,
        usage_retention_seconds: config.usage_retention().as_secs(),
        deferred_purposes: config
            .federation
            .as_ref()
            .map(|federation| federation.deferred_purposes.clone())
            .unwrap_or_default(),
    })
}

/// Builds the service over `store`, publishing the sample members when configured.
pub async fn build<S: Store>(config: &Config, store: S, clock: Arc<dyn Clock>) -> anyhow::Result<Liangma<S>> {
    Ok(build_node(config, store, clock).await?.service)
}

/// A node: the service and, per configuration, its TLS, its directory role and its follower.
#[derive(Debug)]
pub struct Node<S> {
    /// The service.
    pub service: Liangma<S>,
    /// `[tls]`, read.
    pub tls: Option<TlsMaterial>,
    /// The directory, when this node is it.
    pub directory: Option<Arc<Directory>>,
    /// The directory follower, when this node follows one (run it with [`Follower::run`]).
    pub follower: Option<Follower>,
}

/// Builds the node a configuration describes: trust from a file (or the dev setup), from the
/// directory this node is, or from the directory it follows (the kept list, then one fetch).
pub async fn build_node<S: Store>(config: &Config, store: S, clock: Arc<dyn Clock>) -> anyhow::Result<Node<S>> {
    let tls = config.tls.as_ref().map(TlsMaterial::load).transpose()?;
    let mut directory = None;
    let mut follower = None;
    let mut link = None;
    let (trust, issuers, trust_path) = if let Some(settings) = &config.directory {
        let key = CentreKey::read_pem_file(&settings.signing_key).context("directory.signing_key")?;
        let opened = Directory::open(
            key,
            &settings.state,
            &settings.initial_trust_list,
            DirectorySettings {
                next_update: Duration::from_secs(settings.next_update_secs),
                validity: Duration::from_secs(settings.validity_secs),
                key_validity: Duration::from_secs(settings.key_validity_days * 86_400),
            },
            Arc::clone(&clock),
        )?;
        let signed = opened.signed_list();
        tracing::info!(sequence = signed.issue.sequence, key_id = %KeyId::of_public_key(opened.public_key().as_bytes()),
            "trust directory: signed list in force");
        let issuers = issuers(config, &signed.list)?;
        directory = Some(Arc::new(opened));
        (TrustInForce::Signed(signed), issuers, None)
    } else if let Some(federation) = &config.federation {
        let tls = tls.as_ref().context("federation needs [tls]")?;
        let pinned = config.directory_public_key()?.context("federation.directory_public_key")?;
        let cache = federation
            .list_cache
            .clone()
            .unwrap_or_else(|| crate::federation::refresh::default_cache(&config.data_dir));
        if let Some(parent) = cache.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let timeout = Duration::from_millis(federation.remote_timeout_ms);
        let following = Follower::new(
            &federation.directory_url,
            pinned,
            Duration::from_secs(federation.refresh_interval_secs),
            cache,
            tls,
            timeout.max(Duration::from_secs(2)),
        )?;
        let signed = following.list_at_start().await?;
        tracing::info!(sequence = signed.issue.sequence, "following the trust directory");
        let issuers = issuers(config, &signed.list)?;
        link = Some(Arc::new(GrpcLink::new(
            tls.clone(),
            timeout,
            BreakerSettings {
                failures: federation.breaker_failures,
                open_for: Duration::from_secs(federation.breaker_open_secs),
            },
        )) as Arc<dyn IssuerLink>);
        follower = Some(following);
        (TrustInForce::Signed(signed), issuers, None)
    } else {
        let (trust, issuers, path) = identity(config, clock.now())?;
        (TrustInForce::File(trust), issuers, Some(path))
    };
    let mut service = Liangma::new(store, clock, trust, issuers, service_settings(config, trust_path)?)
        .context("starting the QR renderer threads")?;
    if let Some(link) = link {
        service = service.with_link(link);
    }
    if config.sample_members.unwrap_or(config.is_dev_setup()) {
        publish_samples(&service).await?;
    }
    Ok(Node { service, tls, directory, follower })
}

async fn publish_samples<S: Store>(service: &Liangma<S>) -> anyhow::Result<()> {
    for (code, _) in DEV_CENTRES {
        let centre = CentreCode::new(code).expect("valid");
        let members = SAMPLE_MEMBERS
            .iter()
            .filter(|member| member.0 == code)
            .map(|&(_, id, name, balance, months, loan_state)| MemberStatus {
                id_number: id.parse().expect("sample ID numbers are valid"),
                name: name.into(),
                status: DepositClaims {
                    account_status: AccountStatus::Normal,
                    balance: Fen(balance),
                    monthly_deposit: Fen(150_000),
                    continuous_months: months,
                    loan_state,
                    loans_used: u32::from(loan_state != LoanState::None),
                    registry_version: 1,
                },
            })
            .collect();
        service
            .publish(PublishCommand { centre, members })
            .await
            .map_err(|e| anyhow::anyhow!("publishing sample members: {e}"))?;
    }
    Ok(())
}
