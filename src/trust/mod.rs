//! Trust list: each centre's published ed25519 public keys with their signing windows and status.

pub mod directory;
pub mod keys;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::code::{CentreCode, KeyId};

pub use keys::{CentreKey, KeyFileError, SubjectSecret};

/// Value of the `format` field of a trust list file.
pub const TRUST_LIST_FORMAT: &str = "liangma.trust-list.v1";

/// Whether a key may still be trusted at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyStatus {
    /// Trusted for codes issued inside its window.
    Active,
    /// Compromised or withdrawn: every code it signed fails.
    Revoked,
}

/// One published public key of a centre.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// Derived from the public key.
    pub key_id: KeyId,
    /// The public key, decompressed once at load so that verification does not repeat it.
    pub public_key: VerifyingKey,
    /// First instant at which the key may sign.
    pub valid_from: Timestamp,
    /// First instant at which the key may no longer sign. Codes it signed before then stay
    /// verifiable until they expire (at most one day later).
    pub valid_until: Timestamp,
    /// Active or revoked.
    pub status: KeyStatus,
}

impl TrustedKey {
    /// Whether the key's signing window contains `at`.
    pub fn signs_at(&self, at: Timestamp) -> bool {
        self.valid_from <= at && at < self.valid_until
    }
}

/// A centre and its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Centre {
    /// Division code.
    pub code: CentreCode,
    /// Display name, e.g. 焦作市住房公积金管理中心.
    pub name: String,
    /// Keys in the order published.
    pub keys: Vec<TrustedKey>,
    /// Where the centre's liangma node answers other nodes (`https://host:port`), if it has one.
    pub node: Option<String>,
}

impl Centre {
    /// The key with this id.
    pub fn key(&self, key_id: KeyId) -> Option<&TrustedKey> {
        self.keys.iter().find(|key| key.key_id == key_id)
    }
}

/// Why a trust list is not valid or could not be changed; `location` names the field.
#[derive(Debug, thiserror::Error)]
pub enum TrustListError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The JSON does not have the documented shape.
    #[error("trust list is not valid JSON of the documented shape: {0}")]
    Json(#[from] serde_json::Error),
    /// A field has a bad value.
    #[error("trust list {location}: {problem}")]
    Invalid {
        /// Which field, e.g. `centres[0].keys[1].public_key`.
        location: String,
        /// What is wrong.
        problem: String,
    },
}

fn invalid(location: impl Into<String>, problem: impl Into<String>) -> TrustListError {
    TrustListError::Invalid { location: location.into(), problem: problem.into() }
}

/// The keys of every known centre. See docs/code-format.md §"Trust list" for the file format.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustList {
    centres: BTreeMap<CentreCode, Centre>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    format: String,
    centres: Vec<RawCentre>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCentre {
    code: String,
    name: String,
    keys: Vec<RawKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    key_id: String,
    public_key: String,
    valid_from: String,
    valid_until: String,
    status: KeyStatus,
}

impl TrustList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// The centre with this code.
    pub fn centre(&self, code: CentreCode) -> Option<&Centre> {
        self.centres.get(&code)
    }

    /// Every centre, by code.
    pub fn centres(&self) -> impl Iterator<Item = &Centre> {
        self.centres.values()
    }

    /// Parses and validates the JSON form.
    pub fn from_json(json: &str) -> Result<Self, TrustListError> {
        Self::from_raw(serde_json::from_str(json)?)
    }

    fn from_raw(raw: RawList) -> Result<Self, TrustListError> {
        if raw.format != TRUST_LIST_FORMAT {
            return Err(invalid("format", format!("is `{}`, expected `{TRUST_LIST_FORMAT}`", raw.format)));
        }
        let mut list = Self::new();
        for (index, raw_centre) in raw.centres.into_iter().enumerate() {
            let at = format!("centres[{index}]");
            let code: CentreCode = raw_centre
                .code
                .parse()
                .map_err(|e| invalid(format!("{at}.code"), format!("`{}`: {e}", raw_centre.code)))?;
            if list.centres.contains_key(&code) {
                return Err(invalid(format!("{at}.code"), format!("centre {code} is listed twice")));
            }
            if let Some(node) = &raw_centre.node {
                check_node_address(node).map_err(|problem| invalid(format!("{at}.node"), problem))?;
            }
            let mut centre = Centre { code, name: raw_centre.name, keys: Vec::new(), node: raw_centre.node };
            for (key_index, raw_key) in raw_centre.keys.into_iter().enumerate() {
                let key = parse_key(&format!("{at}.keys[{key_index}]"), raw_key)?;
                if centre.key(key.key_id).is_some() {
                    return Err(invalid(format!("{at}.keys[{key_index}].key_id"), "listed twice for this centre"));
                }
                centre.keys.push(key);
            }
            list.centres.insert(code, centre);
        }
        Ok(list)
    }

    /// The JSON form, pretty-printed, centres ordered by code.
    pub fn to_json(&self) -> String {
        let mut json = serde_json::to_string_pretty(&self.to_raw()).expect("trust list serializes");
        json.push('\n');
        json
    }

    fn to_raw(&self) -> RawList {
        RawList {
            format: TRUST_LIST_FORMAT.into(),
            centres: self
                .centres
                .values()
                .map(|centre| RawCentre {
                    code: centre.code.to_string(),
                    name: centre.name.clone(),
                    keys: centre
                        .keys
                        .iter()
                        .map(|key| RawKey {
                            key_id: key.key_id.to_string(),
                            public_key: hex::encode(key.public_key.as_bytes()),
                            valid_from: key.valid_from.to_rfc3339_cst(),
                            valid_until: key.valid_until.to_rfc3339_cst(),
                            status: key.status,
                        })
                        .collect(),
                    node: centre.node.clone(),
                })
                .collect(),
        }
    }

    /// Reads and validates a trust list file.
    pub fn load(path: &Path) -> Result<Self, TrustListError> {
        let json = std::fs::read_to_string(path).map_err(|source| TrustListError::Io { path: path.into(), source })?;
        Self::from_json(&json)
    }

    /// Like [`TrustList::load`], but a missing file is an empty list (for the first `trust add`).
    pub fn load_or_empty(path: &Path) -> Result<Self, TrustListError> {
        match std::fs::metadata(path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::new()),
            _ => Self::load(path),
        }
    }

    /// Writes the list through a temporary file and a rename, so that a reader or a crash
    /// never sees half a list.
    pub fn save(&self, path: &Path) -> Result<(), TrustListError> {
        let io_error = |source| TrustListError::Io { path: path.into(), source };
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let mut file = std::fs::File::create(&temporary).map_err(io_error)?;
        file.write_all(self.to_json().as_bytes()).map_err(io_error)?;
        file.sync_all().map_err(io_error)?;
        std::fs::rename(&temporary, path).map_err(io_error)
    }

    /// Publishes a key for a centre, creating the centre if it is new (then `name` is required).
    pub fn add_key(
        &mut self,
        code: CentreCode,
        name: Option<&str>,
        public_key: VerifyingKey,
        valid_from: Timestamp,
        valid_until: Timestamp,
    ) -> Result<KeyId, TrustListError> {
        checked_window(valid_from, valid_until, "signing window")?;
        let key = checked_key(public_key, valid_from, valid_until, "public key")?;
        let key_id = key.key_id;
        if self.centres.values().any(|centre| centre.keys.iter().any(|k| k.public_key == public_key)) {
            return Err(invalid("public key", format!("key {key_id} is already published")));
        }
        let centre = match (self.centres.get_mut(&code), name) {
            (Some(centre), name) => {
                if let Some(name) = name {
                    centre.name = name.to_owned();
                }
                centre
            }
            (None, Some(name)) => {
                self.centres.entry(code).or_insert(Centre { code, name: name.to_owned(), keys: Vec::new(), node: None })
            }
            (None, None) => return Err(invalid("name", format!("centre {code} is new: give its name"))),
        };
        if centre.key(key_id).is_some() {
            return Err(invalid("public key", format!("key id {key_id} is already used by this centre")));
        }
        centre.keys.push(key);
        Ok(key_id)
    }

    /// Rotation: from `at` on, `public_key` signs for the centre; every other active key of
    /// the centre stops signing at `at` but still verifies the codes it signed before.
    pub fn rotate(
        &mut self,
        code: CentreCode,
        public_key: VerifyingKey,
        at: Timestamp,
        valid_until: Timestamp,
    ) -> Result<KeyId, TrustListError> {
        if self.centre(code).is_none() {
            return Err(invalid("centre", format!("centre {code} is not in the trust list")));
        }
        let key_id = self.add_key(code, None, public_key, at, valid_until)?;
        let centre = self.centres.get_mut(&code).expect("checked above");
        for key in centre.keys.iter_mut().filter(|key| key.key_id != key_id && key.status == KeyStatus::Active) {
            key.valid_until = key.valid_until.min(at);
        }
        Ok(key_id)
    }

    /// Sets where the centre's node answers other nodes.
    pub fn set_node(&mut self, code: CentreCode, address: &str) -> Result<(), TrustListError> {
        check_node_address(address).map_err(|problem| invalid("node", problem))?;
        let centre = self
            .centres
            .get_mut(&code)
            .ok_or_else(|| invalid("centre", format!("centre {code} is not in the trust list")))?;
        centre.node = Some(address.to_owned());
        Ok(())
    }

    /// Revokes a key: every code it ever signed fails verification from now on.
    pub fn revoke(&mut self, code: CentreCode, key_id: KeyId) -> Result<(), TrustListError> {
        let key = self
            .centres
            .get_mut(&code)
            .and_then(|centre| centre.keys.iter_mut().find(|key| key.key_id == key_id))
            .ok_or_else(|| invalid("key id", format!("centre {code} has no key {key_id}")))?;
        key.status = KeyStatus::Revoked;
        Ok(())
    }
}

/// Checks a node address: `https://` then a host and a port, nothing after.
pub fn check_node_address(address: &str) -> Result<(), String> {
    let authority = address.strip_prefix("https://").ok_or("must start with https://")?;
    let (host, port) = authority.rsplit_once(':').ok_or("must name a port: https://host:port")?;
    let host_ok = !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
        && host.len() <= 253;
    if !host_ok || port.parse::<u16>().map_or(true, |port| port == 0) {
        return Err(format!("`{address}` is not https://host:port"));
    }
    Ok(())
}

fn checked_key(
    public_key: VerifyingKey,
    valid_from: Timestamp,
    valid_until: Timestamp,
    location: &str,
) -> Result<TrustedKey, TrustListError> {
    if public_key.is_weak() {
        return Err(invalid(location, "is a small-order point, which verifies forged signatures"));
    }
    let key_id = KeyId::of_public_key(public_key.as_bytes());
    if key_id.get() == 0 {
        return Err(invalid(location, "has key id 00000000, which the code format cannot carry: generate another"));
    }
    Ok(TrustedKey { key_id, public_key, valid_from, valid_until, status: KeyStatus::Active })
}

fn checked_window(valid_from: Timestamp, valid_until: Timestamp, location: &str) -> Result<(), TrustListError> {
    if valid_from >= valid_until {
        return Err(invalid(location, format!("valid_from {valid_from} is not before valid_until {valid_until}")));
    }
    Ok(())
}

fn parse_key(at: &str, raw: RawKey) -> Result<TrustedKey, TrustListError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(&raw.public_key, &mut bytes)
        .map_err(|_| invalid(format!("{at}.public_key"), "is not 64 hex digits"))?;
    let public_key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| invalid(format!("{at}.public_key"), "is not a valid ed25519 public key"))?;
    let time = |field: &str, text: &str| {
        Timestamp::parse_rfc3339(text).map_err(|e| invalid(format!("{at}.{field}"), format!("`{text}`: {e}")))
    };
    let valid_from = time("valid_from", &raw.valid_from)?;
    let valid_until = time("valid_until", &raw.valid_until)?;
    checked_window(valid_from, valid_until, &format!("{at}.valid_until"))?;
    let mut key = checked_key(public_key, valid_from, valid_until, &format!("{at}.public_key"))?;
    let listed: KeyId =
        raw.key_id.parse().map_err(|e| invalid(format!("{at}.key_id"), format!("`{}`: {e}", raw.key_id)))?;
    if listed != key.key_id {
        return Err(invalid(format!("{at}.key_id"), format!("is {listed}, but the public key's id is {}", key.key_id)));
    }
    key.status = raw.status;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    fn jiaozuo() -> CentreCode {
        "410800".parse().unwrap()
    }

    #[test]
    fn json_round_trip_and_field_errors() {
        let key = CentreKey::from_seed(&[1; 32]);
        let mut list = TrustList::new();
        list.add_key(
            jiaozuo(),
            Some("焦作"),
            key.verifying_key(),
            t("2026-01-01T00:00:00+08:00"),
            t("2027-01-01T00:00:00+08:00"),
        )
        .unwrap();
        let json = list.to_json();
        assert_eq!(TrustList::from_json(&json).unwrap(), list);

        let wrong_id = json.replace(&key.key_id().to_string(), "00000001");
        let error = TrustList::from_json(&wrong_id).unwrap_err().to_string();
        assert!(error.contains("centres[0].keys[0].key_id"), "{error}");

        let bad_time = json.replace("2027-01-01T00:00:00+08:00", "next year");
        let error = TrustList::from_json(&bad_time).unwrap_err().to_string();
        assert!(error.contains("centres[0].keys[0].valid_until"), "{error}");

        // An empty window is the times' fault, and the error says so.
        let backwards = json.replace("2027-01-01T00:00:00+08:00", "2025-01-01T00:00:00+08:00");
        let error = TrustList::from_json(&backwards).unwrap_err().to_string();
        assert!(error.contains("centres[0].keys[0].valid_until") && error.contains("not before"), "{error}");
        assert!(!error.contains("public_key"), "{error}");

        let error = TrustList::from_json(&json.replace(TRUST_LIST_FORMAT, "v0")).unwrap_err().to_string();
        assert!(error.contains("format"), "{error}");
    }

    #[test]
    fn rotation_ends_the_old_window_and_revocation_marks_the_key() {
        let old = CentreKey::from_seed(&[1; 32]);
        let new = CentreKey::from_seed(&[2; 32]);
        let mut list = TrustList::new();
        list.add_key(
            jiaozuo(),
            Some("焦作"),
            old.verifying_key(),
            t("2026-01-01T00:00:00Z"),
            t("2030-01-01T00:00:00Z"),
        )
        .unwrap();
        let rotated_at = t("2026-06-01T00:00:00Z");
        list.rotate(jiaozuo(), new.verifying_key(), rotated_at, t("2027-06-01T00:00:00Z")).unwrap();
        let centre = list.centre(jiaozuo()).unwrap();
        let old_entry = centre.key(old.key_id()).unwrap();
        assert_eq!(old_entry.valid_until, rotated_at);
        assert!(old_entry.signs_at(rotated_at.plus(-1)) && !old_entry.signs_at(rotated_at));
        assert!(centre.key(new.key_id()).unwrap().signs_at(rotated_at));

        list.revoke(jiaozuo(), old.key_id()).unwrap();
        assert_eq!(list.centre(jiaozuo()).unwrap().key(old.key_id()).unwrap().status, KeyStatus::Revoked);
        assert!(list.revoke(jiaozuo(), KeyId::from_wire(1)).is_err());
    }

    #[test]
    fn refuses_duplicates_and_unnamed_new_centres() {
        let key = CentreKey::from_seed(&[1; 32]);
        let mut list = TrustList::new();
        let (from, until) = (t("2026-01-01T00:00:00Z"), t("2027-01-01T00:00:00Z"));
        assert!(list.add_key(jiaozuo(), None, key.verifying_key(), from, until).is_err());
        list.add_key(jiaozuo(), Some("焦作"), key.verifying_key(), from, until).unwrap();
        assert!(list.add_key(jiaozuo(), None, key.verifying_key(), from, until).is_err());
        assert!(list.add_key(jiaozuo(), None, CentreKey::from_seed(&[2; 32]).verifying_key(), until, from).is_err());
    }
}
