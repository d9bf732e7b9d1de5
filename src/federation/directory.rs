//! The trust directory's side: the signed list in force, key changes submitted by centres, re-signing before `next_update`, and the state file that keeps the sequence from ever going backwards.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use ed25519_dalek::{Signature, VerifyingKey};

use crate::clock::{Clock, Timestamp};
use crate::code::{CentreCode, KeyId};
use crate::trust::directory::{self, Issue, SignedTrustList};
use crate::trust::{CentreKey, KeyStatus, TrustList};

/// Prepended to what a rotation request's signature covers, so that it can never be taken for
/// a code's or a list's signature.
pub const ROTATION_DOMAIN: &[u8] = b"liangma/key-rotation/v1\0";

/// The bytes a centre's current key signs to rotate to `new_public_key`.
pub fn rotation_message(centre: CentreCode, new_public_key: &VerifyingKey) -> Vec<u8> {
    let mut message = ROTATION_DOMAIN.to_vec();
    message.extend_from_slice(centre.to_string().as_bytes());
    message.extend_from_slice(new_public_key.as_bytes());
    message
}

/// A key change a centre (or the national operators) submits.
#[derive(Debug, Clone)]
pub enum KeyChange {
    /// Another key for the centre; `name` creates a centre new to the list.
    Add {
        /// The key.
        public_key: VerifyingKey,
        /// The centre's name, for a new centre.
        name: Option<String>,
    },
    /// The new key signs from now on; the others stop signing now.
    Rotate {
        /// The new key.
        new_public_key: VerifyingKey,
        /// The key that signed the request.
        current_key_id: KeyId,
        /// Its signature over [`rotation_message`].
        signature: Signature,
    },
    /// Every code the key signed fails.
    Revoke {
        /// The key.
        key_id: KeyId,
    },
    /// Where the centre's node answers.
    SetNode {
        /// `https://host:port`.
        address: String,
    },
}

/// Why the directory refused a change; the list in force stays.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The change does not fit the list (unknown centre or key, duplicate key, bad address).
    #[error("{0}")]
    Invalid(String),
    /// The rotation's signature does not verify with a key of the centre that signs now.
    #[error("the rotation request is not signed by a key of centre {0} that signs now")]
    BadRotationSignature(CentreCode),
    /// Signing or saving the new list failed (logged; nothing changed).
    #[error("the directory could not sign or save the list")]
    Internal(String),
}

/// Times of the lists the directory signs.
#[derive(Debug, Clone, Copy)]
pub struct DirectorySettings {
    /// From signing to `next_update`.
    pub next_update: Duration,
    /// From signing to expiry.
    pub validity: Duration,
    /// Signing window of added keys.
    pub key_validity: Duration,
}

/// The list in force: its file text (served verbatim) and its verified form.
struct Current {
    text: Arc<str>,
    signed: SignedTrustList,
}

/// The directory: one signed list in force, changed under a lock, saved before it is served.
pub struct Directory {
    key: CentreKey,
    state_path: PathBuf,
    settings: DirectorySettings,
    clock: Arc<dyn Clock>,
    current: Mutex<Current>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory").field("key_id", &self.key.key_id()).finish_non_exhaustive()
    }
}

impl Directory {
    /// Opens the directory: the state file's list if there is one (signed again with the next
    /// sequence), else `initial` signed as sequence 1. The new list is saved before this returns.
    pub fn open(
        key: CentreKey,
        state_path: &Path,
        initial: &Path,
        settings: DirectorySettings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let (list, last_sequence) = match std::fs::read_to_string(state_path) {
            Ok(text) => {
                let signed = directory::open(&text, &key.verifying_key())
                    .with_context(|| format!("directory state {}", state_path.display()))?;
                (signed.list, signed.issue.sequence)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => (TrustList::load(initial)?, 0),
            Err(error) => return Err(error).with_context(|| format!("reading {}", state_path.display())),
        };
        let now = clock.now();
        let (text, signed) = sign_and_save(&key, &list, last_sequence + 1, now, settings, state_path)
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        let current = Mutex::new(Current { text, signed });
        Ok(Self { key, state_path: state_path.to_owned(), settings, clock, current })
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The directory's public key, which nodes pin.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The sequence in force, and its text unless the caller knows that sequence already.
    pub fn signed_since(&self, known_sequence: u64) -> (u64, Option<Arc<str>>) {
        let current = self.current();
        let sequence = current.signed.issue.sequence;
        (sequence, (known_sequence != sequence).then(|| Arc::clone(&current.text)))
    }

    /// The list in force, verified (for this node's own verification).
    pub fn signed_list(&self) -> SignedTrustList {
        self.current().signed.clone()
    }

    /// Signs the list again with the next sequence when half the time to `next_update` has
    /// passed; `true` if it did.
    pub fn resign_if_due(&self) -> Result<bool, ChangeError> {
        let now = self.clock.now();
        let mut current = self.current();
        let half = i64::try_from(self.settings.next_update.as_secs() / 2).unwrap_or(i64::MAX);
        if now.unix() < current.signed.issue.issued_at.unix().saturating_add(half) {
            return Ok(false);
        }
        let list = current.signed.list.clone();
        self.replace(&mut current, list, now)?;
        Ok(true)
    }

    /// Applies `change` to `centre`'s entry and signs the result as the next sequence; the
    /// returned id is the new key's, for additions and rotations.
    pub fn apply(&self, centre: CentreCode, change: KeyChange) -> Result<(u64, Option<KeyId>), ChangeError> {
        let now = self.clock.now();
        let mut current = self.current();
        let mut list = current.signed.list.clone();
        let invalid = |error: crate::trust::TrustListError| ChangeError::Invalid(error.to_string());
        let until = now.plus(i64::try_from(self.settings.key_validity.as_secs()).unwrap_or(i64::MAX / 2));
        let new_key = match change {
            KeyChange::Add { public_key, name } => {
                Some(list.add_key(centre, name.as_deref(), public_key, now, until).map_err(invalid)?)
            }
            KeyChange::Rotate { new_public_key, current_key_id, signature } => {
                let signer = list
                    .centre(centre)
                    .and_then(|entry| entry.key(current_key_id))
                    .filter(|key| key.status == KeyStatus::Active && key.signs_at(now))
                    .ok_or(ChangeError::BadRotationSignature(centre))?;
                signer
                    .public_key
                    .verify_strict(&rotation_message(centre, &new_public_key), &signature)
                    .map_err(|_| ChangeError::BadRotationSignature(centre))?;
                Some(list.rotate(centre, new_public_key, now, until).map_err(invalid)?)
            }
            KeyChange::Revoke { key_id } => {
                list.revoke(centre, key_id).map_err(invalid)?;
                None
            }
            KeyChange::SetNode { address } => {
                list.set_node(centre, &address).map_err(invalid)?;
                None
            }
        };
        let sequence = self.replace(&mut current, list, now)?;
        Ok((sequence, new_key))
    }

    fn replace(&self, current: &mut Current, list: TrustList, now: Timestamp) -> Result<u64, ChangeError> {
        let sequence = current.signed.issue.sequence + 1;
        let (text, signed) = sign_and_save(&self.key, &list, sequence, now, self.settings, &self.state_path)?;
        *current = Current { text, signed };
        Ok(sequence)
    }
}

fn sign_and_save(
    key: &CentreKey,
    list: &TrustList,
    sequence: u64,
    now: Timestamp,
    settings: DirectorySettings,
    state_path: &Path,
) -> Result<(Arc<str>, SignedTrustList), ChangeError> {
    let seconds = |duration: Duration| i64::try_from(duration.as_secs()).unwrap_or(i64::MAX / 2);
    let issue = Issue {
        sequence,
        issued_at: now,
        next_update: now.plus(seconds(settings.next_update)),
        expires_at: now.plus(seconds(settings.validity)),
    };
    let internal = |error: String| {
        tracing::error!(%error, "the directory could not sign or save its list; the list in force stays");
        ChangeError::Internal(error)
    };
    let text = directory::sign(list, &issue, key).map_err(|e| internal(e.to_string()))?;
    let signed = directory::open(&text, &key.verifying_key()).map_err(|e| internal(e.to_string()))?;
    // Saved before served: a restarted directory continues above every sequence it served.
    save_atomically(state_path, &text).map_err(|e| internal(format!("{}: {e}", state_path.display())))?;
    Ok((Arc::from(text), signed))
}

/// Writes through a temporary file, fsync and rename, so that a crash leaves the old file or the new.
pub fn save_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::at;

    fn settings() -> DirectorySettings {
        DirectorySettings {
            next_update: Duration::from_secs(60),
            validity: Duration::from_secs(3600),
            key_validity: Duration::from_secs(86_400),
        }
    }

    #[test]
    fn sequences_continue_across_restarts_and_rotations_need_the_current_key() {
        let folder = tempfile::tempdir().unwrap();
        let (state, initial) = (folder.path().join("state.json"), folder.path().join("initial.json"));
        let jiaozuo = CentreCode::new(410800).unwrap();
        let current = CentreKey::from_seed(&[1; 32]);
        let now = at("2026-11-27T09:00:00+08:00");
        let mut list = TrustList::new();
        list.add_key(jiaozuo, Some("焦作"), current.verifying_key(), now.plus(-60), now.plus(86_400)).unwrap();
        list.save(&initial).unwrap();
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::FixedClock::new(now));
        let open = || Directory::open(CentreKey::from_seed(&[9; 32]), &state, &initial, settings(), Arc::clone(&clock));

        let directory = open().unwrap();
        assert_eq!(directory.signed_since(0).0, 1);
        assert!(directory.signed_since(1).1.is_none(), "a caller holding the sequence gets no list");
        let next = CentreKey::from_seed(&[2; 32]);
        let forged = KeyChange::Rotate {
            new_public_key: next.verifying_key(),
            current_key_id: next.key_id(),
            signature: next.sign(&rotation_message(jiaozuo, &next.verifying_key())),
        };
        assert!(matches!(directory.apply(jiaozuo, forged), Err(ChangeError::BadRotationSignature(_))));
        let rotation = KeyChange::Rotate {
            new_public_key: next.verifying_key(),
            current_key_id: current.key_id(),
            signature: current.sign(&rotation_message(jiaozuo, &next.verifying_key())),
        };
        assert_eq!(directory.apply(jiaozuo, rotation).unwrap(), (2, Some(next.key_id())));
        drop(directory);

        // Restarted, the directory signs above everything it served, with the change kept.
        let reopened = open().unwrap();
        let signed = reopened.signed_list();
        assert_eq!(signed.issue.sequence, 3);
        assert!(signed.list.centre(jiaozuo).unwrap().key(next.key_id()).is_some());
    }
}
