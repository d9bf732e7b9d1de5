//! The trust list in force: published for offline verifiers, reloaded from its file by operators.

use std::sync::Arc;

use crate::store::Store;
use crate::trust::{TrustList, TrustListError};

use super::{Liangma, ServiceError, TrustInForce};

/// The size of a trust list: centres and keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustListSize {
    /// Centres listed.
    pub centres: usize,
    /// Keys of all of them.
    pub keys: usize,
}

impl<S: Store> Liangma<S> {
    /// The trust list in force, as its JSON file form.
    pub fn trust_list_json(&self) -> String {
        self.trust().list().to_json()
    }

    /// Re-reads the trust list file; on any error the list in force stays.
    pub fn reload_trust_list(&self) -> Result<TrustListSize, ServiceError> {
        let path = self.settings.trust_list_path.as_ref().ok_or(ServiceError::NoTrustListFile)?;
        if matches!(self.trust().as_ref(), TrustInForce::Signed(_)) {
            return Err(ServiceError::NoTrustListFile);
        }
        let list = TrustList::load(path).map_err(|error| {
            // The log names the file; the caller learns what is wrong with the list, never where
            // the server keeps its files.
            tracing::warn!(%error, "trust list not reloaded; the list in force stays");
            ServiceError::TrustListNotReloaded(match error {
                TrustListError::Io { .. } => "the configured file cannot be read (see the server log)".into(),
                _ => error.to_string(),
            })
        })?;
        let size = TrustListSize {
            centres: list.centres().count(),
            keys: list.centres().map(|centre| centre.keys.len()).sum(),
        };
        *self.trust.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(TrustInForce::File(list));
        Ok(size)
    }
}
