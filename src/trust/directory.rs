//! The signed trust list: the national directory signs the trust list with a sequence number and a validity, and every node or offline verifier checks it against the directory key it pins (docs/code-format.md §12).

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::{CentreKey, RawList, TrustList, TrustListError};
use crate::clock::Timestamp;
use crate::code::KeyId;

/// Value of the `format` field of a signed trust list file.
pub const SIGNED_FORMAT: &str = "liangma.signed-trust-list.v1";
/// Value of the `format` field of its payload.
pub const PAYLOAD_FORMAT: &str = "liangma.directory-list.v1";
/// Prepended to the payload bytes before signing, so that a directory signature can never be
/// taken for a code's signature or anything else signed with the same key.
pub const SIGNING_DOMAIN: &[u8] = b"liangma/trust-list/v1\0";
/// Largest signed list read: a national list of 300+ centres with a few keys each is about
/// 300 KB; anything far larger is refused before it is parsed.
pub const MAX_SIGNED_LIST_BYTES: usize = 4 * 1024 * 1024;

/// Why a signed trust list was refused. Whatever the reason, the list in force stays.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// Larger than [`MAX_SIGNED_LIST_BYTES`]; nothing else was looked at.
    #[error("signed trust list of {0} bytes exceeds the limit of {MAX_SIGNED_LIST_BYTES}")]
    TooLarge(usize),
    /// Not a signed trust list of the documented shape.
    #[error("not a signed trust list: {0}")]
    Malformed(String),
    /// The signature does not verify (strictly) with the pinned directory key: tampered, or
    /// signed by someone else.
    #[error("the signature does not verify with the pinned directory key {0}")]
    BadSignature(KeyId),
    /// Validly signed for another directory key than the one pinned.
    #[error("the list names directory key {named}, but the pinned directory key is {pinned}")]
    OtherDirectory {
        /// The key the payload names.
        named: String,
        /// The key pinned here.
        pinned: KeyId,
    },
    /// The payload's times or sequence number are out of order.
    #[error("signed trust list {field}: {problem}")]
    Invalid {
        /// The payload field.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The trust list inside is invalid.
    #[error(transparent)]
    TrustList(#[from] TrustListError),
    /// Its sequence number is lower than one already accepted: an old list replayed.
    #[error("sequence {offered} is older than the accepted {accepted}: a rolled-back list")]
    RolledBack {
        /// The sequence number of the list offered.
        offered: u64,
        /// The highest sequence number accepted before.
        accepted: u64,
    },
    /// The same sequence number as the list accepted, with other contents.
    #[error("sequence {0} was accepted before with other contents")]
    SequenceReused(u64),
    /// Past its expiry: verification with it fails closed.
    #[error("the signed trust list expired at {0}")]
    Expired(Timestamp),
}

/// How current a verified list is at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Before `next_update`.
    Fresh,
    /// Past `next_update`, before expiry: usable, and every use should warn.
    Stale,
    /// Past expiry: not usable.
    Expired,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigned {
    format: String,
    payload: String,
    signature: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPayload {
    format: String,
    directory_key_id: String,
    sequence: u64,
    issued_at: String,
    next_update: String,
    expires_at: String,
    trust_list: RawList,
}

/// What a directory signs: the list and its place in the directory's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Issue {
    /// Never goes backwards; each new list a directory signs has a higher one.
    pub sequence: u64,
    /// When it was signed.
    pub issued_at: Timestamp,
    /// When nodes should have fetched a newer one; past it the list is stale.
    pub next_update: Timestamp,
    /// Past it the list is not used at all.
    pub expires_at: Timestamp,
}

/// A signed trust list whose signature, shape and times were verified.
#[derive(Debug, Clone)]
pub struct SignedTrustList {
    /// Its sequence number and times.
    pub issue: Issue,
    /// The trust list it carries.
    pub list: TrustList,
    payload: String,
}

impl SignedTrustList {
    /// How current the list is at `now`.
    pub fn freshness(&self, now: Timestamp) -> Freshness {
        if now >= self.issue.expires_at {
            Freshness::Expired
        } else if now >= self.issue.next_update {
            Freshness::Stale
        } else {
            Freshness::Fresh
        }
    }

    /// Whether this list may replace one accepted before (`None`: none yet): never an older
    /// sequence, never the same sequence with other contents. `Ok(false)`: the same list again.
    pub fn replaces(&self, accepted: Option<&SignedTrustList>) -> Result<bool, DirectoryError> {
        let Some(accepted) = accepted else { return Ok(true) };
        let (offered, current) = (self.issue.sequence, accepted.issue.sequence);
        if offered < current {
            return Err(DirectoryError::RolledBack { offered, accepted: current });
        }
        if offered == current {
            return if self.payload == accepted.payload {
                Ok(false)
            } else {
                Err(DirectoryError::SequenceReused(offered))
            };
        }
        Ok(true)
    }

    /// The list, unless it has expired at `now` (an expired list fails closed).
    pub fn usable_at(&self, now: Timestamp) -> Result<&TrustList, DirectoryError> {
        match self.freshness(now) {
            Freshness::Expired => Err(DirectoryError::Expired(self.issue.expires_at)),
            Freshness::Fresh | Freshness::Stale => Ok(&self.list),
        }
    }
}

/// Signs `list` with the directory's key: the signed trust list file (JSON).
pub fn sign(list: &TrustList, issue: &Issue, directory_key: &CentreKey) -> Result<String, DirectoryError> {
    check_times(issue)?;
    let payload = RawPayload {
        format: PAYLOAD_FORMAT.into(),
        directory_key_id: directory_key.key_id().to_string(),
        sequence: issue.sequence,
        issued_at: issue.issued_at.to_rfc3339_cst(),
        next_update: issue.next_update.to_rfc3339_cst(),
        expires_at: issue.expires_at.to_rfc3339_cst(),
        trust_list: list.to_raw(),
    };
    let payload = serde_json::to_string(&payload).expect("the payload serializes");
    let signature = directory_key.sign(&signed_message(&payload));
    let signed = RawSigned { format: SIGNED_FORMAT.into(), payload, signature: hex::encode(signature.to_bytes()) };
    let mut text = serde_json::to_string_pretty(&signed).expect("the envelope serializes");
    text.push('\n');
    Ok(text)
}

/// Verifies a signed trust list with the pinned directory key, in the order of
/// docs/code-format.md §12: size, shape, signature (strict), directory, times, trust list. Does
/// not judge freshness or sequence: see [`SignedTrustList::freshness`] and
/// [`SignedTrustList::replaces`].
pub fn open(text: &str, pinned: &VerifyingKey) -> Result<SignedTrustList, DirectoryError> {
    if text.len() > MAX_SIGNED_LIST_BYTES {
        return Err(DirectoryError::TooLarge(text.len()));
    }
    let raw: RawSigned = serde_json::from_str(text).map_err(|e| DirectoryError::Malformed(e.to_string()))?;
    if raw.format != SIGNED_FORMAT {
        return Err(DirectoryError::Malformed(format!("format is `{}`, expected `{SIGNED_FORMAT}`", raw.format)));
    }
    let mut signature = [0u8; 64];
    hex::decode_to_slice(&raw.signature, &mut signature)
        .map_err(|_| DirectoryError::Malformed("signature is not 128 hex digits".into()))?;
    let pinned_id = KeyId::of_public_key(pinned.as_bytes());
    pinned
        .verify_strict(&signed_message(&raw.payload), &Signature::from_bytes(&signature))
        .map_err(|_| DirectoryError::BadSignature(pinned_id))?;
    // Authentic from here on.
    let payload: RawPayload =
        serde_json::from_str(&raw.payload).map_err(|e| DirectoryError::Malformed(format!("payload: {e}")))?;
    if payload.format != PAYLOAD_FORMAT {
        return Err(DirectoryError::Malformed(format!(
            "payload format is `{}`, expected `{PAYLOAD_FORMAT}`",
            payload.format
        )));
    }
    if payload.directory_key_id != pinned_id.to_string() {
        return Err(DirectoryError::OtherDirectory { named: payload.directory_key_id, pinned: pinned_id });
    }
    let time = |field: &'static str, text: &str| {
        Timestamp::parse_rfc3339(text).map_err(|e| DirectoryError::Invalid { field, problem: format!("`{text}`: {e}") })
    };
    let issue = Issue {
        sequence: payload.sequence,
        issued_at: time("issued_at", &payload.issued_at)?,
        next_update: time("next_update", &payload.next_update)?,
        expires_at: time("expires_at", &payload.expires_at)?,
    };
    check_times(&issue)?;
    let list = TrustList::from_raw(payload.trust_list)?;
    Ok(SignedTrustList { issue, list, payload: raw.payload })
}

fn check_times(issue: &Issue) -> Result<(), DirectoryError> {
    if issue.sequence == 0 {
        return Err(DirectoryError::Invalid { field: "sequence", problem: "must be at least 1".into() });
    }
    if !(issue.issued_at <= issue.next_update && issue.next_update <= issue.expires_at) {
        return Err(DirectoryError::Invalid {
            field: "next_update",
            problem: "issued_at <= next_update <= expires_at does not hold".into(),
        });
    }
    Ok(())
}

fn signed_message(payload: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_DOMAIN.len() + payload.len());
    message.extend_from_slice(SIGNING_DOMAIN);
    message.extend_from_slice(payload.as_bytes());
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::CentreCode;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    fn directory() -> CentreKey {
        CentreKey::from_seed(&[0x77; 32])
    }

    fn list() -> TrustList {
        let mut list = TrustList::new();
        let (from, until) = (at("2026-01-01T00:00:00Z"), at("2027-01-01T00:00:00Z"));
        list.add_key(
            CentreCode::new(410800).unwrap(),
            Some("焦作"),
            CentreKey::from_seed(&[1; 32]).verifying_key(),
            from,
            until,
        )
        .unwrap();
        list
    }

    fn issue(sequence: u64) -> Issue {
        Issue {
            sequence,
            issued_at: at("2026-11-26T09:00:00+08:00"),
            next_update: at("2026-11-26T10:00:00+08:00"),
            expires_at: at("2026-11-27T09:00:00+08:00"),
        }
    }

    #[test]
    fn a_signed_list_opens_with_the_pinned_key_and_knows_its_freshness() {
        let text = sign(&list(), &issue(7), &directory()).unwrap();
        let signed = open(&text, &directory().verifying_key()).unwrap();
        assert_eq!((signed.issue, &signed.list), (issue(7), &list()));
        assert_eq!(signed.freshness(at("2026-11-26T09:59:59+08:00")), Freshness::Fresh);
        assert_eq!(signed.freshness(at("2026-11-26T10:00:00+08:00")), Freshness::Stale);
        assert_eq!(signed.freshness(at("2026-11-27T09:00:00+08:00")), Freshness::Expired);
        assert!(matches!(signed.usable_at(at("2026-11-27T09:00:00+08:00")), Err(DirectoryError::Expired(_))));
    }

    #[test]
    fn tampering_another_key_and_another_directory_are_refused() {
        let text = sign(&list(), &issue(7), &directory()).unwrap();
        let tampered = text.replace("焦作", "假的");
        assert!(matches!(open(&tampered, &directory().verifying_key()), Err(DirectoryError::BadSignature(_))));
        let stranger = CentreKey::from_seed(&[0x78; 32]);
        assert!(matches!(open(&text, &stranger.verifying_key()), Err(DirectoryError::BadSignature(_))));
        assert!(matches!(open("{", &directory().verifying_key()), Err(DirectoryError::Malformed(_))));
        let huge = " ".repeat(MAX_SIGNED_LIST_BYTES + 1);
        assert!(matches!(open(&huge, &directory().verifying_key()), Err(DirectoryError::TooLarge(_))));
    }

    #[test]
    fn sequences_never_go_backwards_nor_repeat_with_other_contents() {
        let open_signed = |sequence: u64, list: &TrustList| {
            open(&sign(list, &issue(sequence), &directory()).unwrap(), &directory().verifying_key()).unwrap()
        };
        let seven = open_signed(7, &list());
        assert!(seven.replaces(None).unwrap());
        assert!(open_signed(8, &list()).replaces(Some(&seven)).unwrap());
        assert!(!open_signed(7, &list()).replaces(Some(&seven)).unwrap(), "the same list again");
        assert!(matches!(
            open_signed(6, &list()).replaces(Some(&seven)),
            Err(DirectoryError::RolledBack { offered: 6, accepted: 7 })
        ));
        assert!(matches!(
            open_signed(7, &TrustList::new()).replaces(Some(&seven)),
            Err(DirectoryError::SequenceReused(7))
        ));
    }

    #[test]
    fn times_out_of_order_are_refused_when_signing() {
        let backwards = Issue { next_update: at("2026-11-28T00:00:00+08:00"), ..issue(1) };
        assert!(matches!(sign(&list(), &backwards, &directory()), Err(DirectoryError::Invalid { .. })));
        assert!(matches!(
            sign(&list(), &issue(0), &directory()),
            Err(DirectoryError::Invalid { field: "sequence", .. })
        ));
    }
}
