//! The member: ID number (never stored), pseudonymous subject, and the registry record of their deposit status.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::code::{CentreCode, DepositClaims, SubjectRef};

/// A mainland resident ID number (GB 11643): 17 digits and a check character.
///
/// It is only ever hashed into a subject reference; `Debug` and every error message hide it.
#[derive(Clone, PartialEq, Eq)]
pub struct IdNumber(String);

impl IdNumber {
    /// The normalized number (check character `X` in upper case).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form a counter may see: first 3 and last 4 characters, e.g. `110***********002X`.
    pub fn masked(&self) -> String {
        format!("{}***********{}", &self.0[..3], &self.0[14..])
    }

    /// The check character that completes 17 digits (GB 11643, ISO 7064 MOD 11-2); `None` if
    /// they are not all digits.
    pub fn check_character(first_17: &[u8; 17]) -> Option<u8> {
        const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
        const CHECK: &[u8; 11] = b"10X98765432";
        if !first_17.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let sum: u32 = first_17.iter().zip(WEIGHTS).map(|(digit, weight)| u32::from(digit - b'0') * weight).sum();
        Some(CHECK[(sum % 11) as usize])
    }
}

impl fmt::Debug for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdNumber(<redacted>)")
    }
}

/// The text is not a valid ID number; deliberately says nothing about the text itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid 18-character resident ID number (17 digits and a check character)")]
pub struct IdNumberError;

impl FromStr for IdNumber {
    type Err = IdNumberError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes = text.as_bytes();
        let (Some(first_17), Some(&last)) = (bytes.first_chunk::<17>(), bytes.get(17)) else {
            return Err(IdNumberError);
        };
        if bytes.len() != 18 || Self::check_character(first_17) != Some(last.to_ascii_uppercase()) {
            return Err(IdNumberError);
        }
        Ok(Self(text.to_ascii_uppercase()))
    }
}

impl<'de> Deserialize<'de> for IdNumber {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = zeroize::Zeroizing::new(String::deserialize(deserializer)?);
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A member as the registry knows them: home centre and pseudonymous reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject {
    /// The home centre whose subject secret made the reference.
    pub centre: CentreCode,
    /// The pseudonymous reference.
    pub reference: SubjectRef,
}

impl Subject {
    /// Storage key of the subject: every key of one member shares it, so that one atomic
    /// operation touches one Redis Cluster slot.
    pub fn storage_key(&self) -> StorageKey {
        StorageKey(*self)
    }
}

/// [`Subject::storage_key`]: `<centre>:<reference in hex>`, written where it is needed.
#[derive(Debug, Clone, Copy)]
pub struct StorageKey(Subject);

impl std::fmt::Display for StorageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:", self.0.centre)?;
        self.0.reference.write_full_hex(f)
    }
}

/// The latest deposit status the home centre published for a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryRecord {
    /// Status; `registry_version` orders records (a record never replaces a newer one).
    pub status: DepositClaims,
    /// Name as a counter may see it, e.g. 张*.
    pub masked_name: String,
    /// ID number as a counter may see it, e.g. 110***********002X.
    pub masked_id_number: String,
    /// When it was published.
    pub published_at: Timestamp,
}
