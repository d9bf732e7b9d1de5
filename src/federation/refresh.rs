//! A node following the directory: fetch the signed list every interval, verify it against the pinned key, swap it in atomically, keep it on disk; refusals are logged and the list in force stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use tonic::transport::{Channel, Endpoint};

use crate::pb::v1 as pb;
use crate::service::Liangma;
use crate::store::Store;
use crate::trust::directory::{self, DirectoryError, MAX_SIGNED_LIST_BYTES, SignedTrustList};

use super::TlsMaterial;
use super::directory::save_atomically;

/// How a node reaches and checks the directory.
#[derive(Debug, Clone)]
pub struct Follower {
    /// The directory's pinned key.
    pub pinned: VerifyingKey,
    /// Between fetches.
    pub interval: Duration,
    /// Where the last accepted list is kept.
    pub cache: PathBuf,
    channel: Channel,
}

/// Why one fetch brought no new list.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The directory did not answer (the list in force stays; the next fetch tries again).
    #[error("the directory did not answer: {0}")]
    Unreachable(String),
    /// The directory's answer was refused.
    #[error("the directory's list was refused: {0}")]
    Refused(#[from] DirectoryError),
}

impl Follower {
    /// A follower of the directory at `url` (no connection is made yet).
    pub fn new(
        url: &str,
        pinned: VerifyingKey,
        interval: Duration,
        cache: PathBuf,
        tls: &TlsMaterial,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(url.to_owned())?
            .tls_config(tls.client_config())?
            .connect_timeout(timeout)
            .timeout(timeout.max(Duration::from_secs(5)))
            .connect_lazy();
        Ok(Self { pinned, interval, cache, channel })
    }

    /// The list kept on disk by an earlier run, if any and valid (expired or not: the sequence
    /// floor matters as much as the content).
    pub fn cached(&self) -> Option<SignedTrustList> {
        let text = std::fs::read_to_string(&self.cache).ok()?;
        match directory::open(&text, &self.pinned) {
            Ok(signed) => Some(signed),
            Err(error) => {
                tracing::warn!(%error, "the kept signed trust list is not usable; waiting for the directory");
                None
            }
        }
    }

    /// Fetches once: `Ok(Some)` a verified list newer than `known_sequence`, `Ok(None)` unchanged.
    pub async fn fetch(&self, known_sequence: u64) -> Result<Option<(SignedTrustList, String)>, FetchError> {
        let mut client = pb::trust_directory_service_client::TrustDirectoryServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_SIGNED_LIST_BYTES + 1024);
        let answer = client
            .get_signed_trust_list(pb::GetSignedTrustListRequest { known_sequence })
            .await
            .map_err(|status| FetchError::Unreachable(format!("{:?}: {}", status.code(), status.message())))?
            .into_inner();
        if answer.unchanged {
            return Ok(None);
        }
        let signed = directory::open(&answer.signed_list, &self.pinned)?;
        Ok(Some((signed, answer.signed_list)))
    }

    /// The list to start with: the kept one, or the directory's if newer (then kept in its
    /// place); an error only when there is neither.
    pub async fn list_at_start(&self) -> anyhow::Result<SignedTrustList> {
        let kept = self.cached();
        match self.fetch(kept.as_ref().map_or(0, |kept| kept.issue.sequence)).await {
            Ok(Some((fetched, text))) => match fetched.replaces(kept.as_ref()) {
                Ok(true) => {
                    save_atomically(&self.cache, &text)
                        .map_err(|e| anyhow::anyhow!("keeping the signed list in {}: {e}", self.cache.display()))?;
                    return Ok(fetched);
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::error!(%error, "signed trust list from the directory refused; using the kept list")
                }
            },
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "trust directory not reachable at start; using the kept list");
                return kept
                    .ok_or_else(|| anyhow::anyhow!("{error}; and no signed trust list is kept from an earlier run"));
            }
        }
        kept.ok_or_else(|| anyhow::anyhow!("the directory gave no usable list and none is kept"))
    }

    /// Fetches and installs one list; `true` if a newer list went into force.
    pub async fn refresh_once<S: Store>(&self, service: &Liangma<S>) -> Result<bool, FetchError> {
        let known = service.trust().sequence().unwrap_or(0);
        let Some((signed, text)) = self.fetch(known).await? else { return Ok(false) };
        let sequence = signed.issue.sequence;
        if !service.install_signed_list(signed)? {
            return Ok(false);
        }
        if let Err(error) = save_atomically(&self.cache, &text) {
            tracing::warn!(%error, path = %self.cache.display(), "could not keep the signed trust list on disk");
        }
        tracing::info!(sequence, "signed trust list in force");
        Ok(true)
    }

    /// Fetches every interval until the task is dropped.
    pub async fn run<S: Store>(self, service: Arc<Liangma<S>>) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match self.refresh_once(&service).await {
                Ok(_) => {}
                Err(FetchError::Unreachable(error)) => {
                    tracing::warn!(%error, "trust directory unreachable; the list in force stays");
                }
                Err(FetchError::Refused(error)) => {
                    tracing::error!(%error, "signed trust list refused; the list in force stays");
                }
            }
        }
    }
}

/// The default place of the kept list: `<data_dir>/signed-trust-list.json`.
pub fn default_cache(data_dir: &Path) -> PathBuf {
    data_dir.join("signed-trust-list.json")
}
