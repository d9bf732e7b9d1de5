//! Offline verification (steps 1-5 of the pipeline): decode, trust, signature, time, scope -> one verdict.

use std::fmt;

use crate::clock::Timestamp;
use crate::code::{CentreCode, Claims, DecodeError, Purpose, decode};
use crate::trust::{KeyStatus, TrustList};

/// Default tolerance for a verifier whose clock is behind the issuer's.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u32 = 300;

/// Why a code is not valid; exactly one per rejected code, the first failing check in
/// pipeline order (this enum's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Not a code of any known form: too long, bad prefix, bad base45, bad claims.
    Malformed,
    /// A code of a format version this verifier does not read.
    UnsupportedVersion,
    /// The issuing centre is not in the trust list.
    UnknownIssuer,
    /// The issuing centre has no key with the code's key id.
    UnknownKey,
    /// The code's issue time is outside the signing key's window.
    KeyNotValidAtIssue,
    /// The signing key has been revoked.
    KeyRevoked,
    /// The signature does not verify (strictly) over the claims.
    BadSignature,
    /// The issue time is later than now plus the allowed clock skew.
    NotYetValid,
    /// The code has expired.
    Expired,
    /// The code was issued for a purpose this verifier does not serve.
    WrongPurpose,
    /// The code is meant for another centre.
    WrongAudience,
}

impl Reason {
    /// Every reason, in pipeline order.
    pub const ALL: [Reason; 11] = [
        Reason::Malformed,
        Reason::UnsupportedVersion,
        Reason::UnknownIssuer,
        Reason::UnknownKey,
        Reason::KeyNotValidAtIssue,
        Reason::KeyRevoked,
        Reason::BadSignature,
        Reason::NotYetValid,
        Reason::Expired,
        Reason::WrongPurpose,
        Reason::WrongAudience,
    ];

    /// The name used in output, JSON and test vectors, e.g. `KEY_REVOKED`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Malformed => "MALFORMED",
            Reason::UnsupportedVersion => "UNSUPPORTED_VERSION",
            Reason::UnknownIssuer => "UNKNOWN_ISSUER",
            Reason::UnknownKey => "UNKNOWN_KEY",
            Reason::KeyNotValidAtIssue => "KEY_NOT_VALID_AT_ISSUE",
            Reason::KeyRevoked => "KEY_REVOKED",
            Reason::BadSignature => "BAD_SIGNATURE",
            Reason::NotYetValid => "NOT_YET_VALID",
            Reason::Expired => "EXPIRED",
            Reason::WrongPurpose => "WRONG_PURPOSE",
            Reason::WrongAudience => "WRONG_AUDIENCE",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is verifying, and under which rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierPolicy {
    /// The verifying (loan) centre, matched against a code's audience.
    pub centre: CentreCode,
    /// Purposes this verifier serves.
    pub purposes: Vec<Purpose>,
    /// How far in the future an issue time may be (verifier clock behind the issuer's).
    pub clock_skew_seconds: u32,
}

impl VerifierPolicy {
    /// A verifier for `centre` that serves every purpose with the default clock skew.
    pub fn any_purpose(centre: CentreCode) -> Self {
        Self { centre, purposes: Purpose::ALL.to_vec(), clock_skew_seconds: DEFAULT_CLOCK_SKEW_SECONDS }
    }
}

/// A rejected code: the reason, and what else is known without trusting forged data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The first check that failed.
    pub reason: Reason,
    /// For MALFORMED and UNSUPPORTED_VERSION, what exactly was wrong.
    pub decode_error: Option<DecodeError>,
    /// The claims, only when the signature verified (the code is authentic but expired,
    /// not yet valid, or out of scope), so a counter can tell the member why.
    pub authentic_claims: Option<Box<Claims>>,
}

impl Rejection {
    fn before_signature(reason: Reason) -> Self {
        Self { reason, decode_error: None, authentic_claims: None }
    }

    fn after_signature(reason: Reason, claims: Claims) -> Self {
        Self { reason, decode_error: None, authentic_claims: Some(Box::new(claims)) }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.decode_error {
            Some(error) => write!(f, "{}: {error}", self.reason),
            None => write!(f, "{}", self.reason),
        }
    }
}

impl From<DecodeError> for Rejection {
    fn from(error: DecodeError) -> Self {
        let reason = match error {
            DecodeError::UnsupportedVersion(_) => Reason::UnsupportedVersion,
            _ => Reason::Malformed,
        };
        Self { reason, decode_error: Some(error), authentic_claims: None }
    }
}

/// Runs steps 1-5 of docs/code-format.md §"Verification" on a code text.
///
/// Pure: no I/O, no clock read (`now` is passed in), so it works offline and in tests.
pub fn verify_offline(
    text: &str,
    trust: &TrustList,
    policy: &VerifierPolicy,
    now: Timestamp,
) -> Result<Claims, Rejection> {
    let check = check_before_signature(text, trust)?;
    let authentic = check.public_key.verify_strict(&check.message, &check.signature).is_ok();
    check.finish(authentic, policy, now)
}

/// A code past steps 1 and 2, whose signature (step 3) is still to be checked: the service
/// checks many at once (src/service/signatures.rs), the CLI one by one.
#[derive(Debug)]
pub struct SignatureCheck {
    /// The signed bytes: the signing domain, then the claims exactly as transmitted.
    pub message: Vec<u8>,
    pub signature: ed25519_dalek::Signature,
    pub public_key: ed25519_dalek::VerifyingKey,
    claims: Claims,
}

/// Steps 1 (decode) and 2 (trust) of the pipeline.
pub fn check_before_signature(text: &str, trust: &TrustList) -> Result<SignatureCheck, Rejection> {
    // 1. decode
    let code = decode(text)?;
    let claims = code.claims;
    // 2. trust
    let centre = trust.centre(claims.issuer).ok_or(Rejection::before_signature(Reason::UnknownIssuer))?;
    let key = centre.key(claims.key_id).ok_or(Rejection::before_signature(Reason::UnknownKey))?;
    if !key.signs_at(claims.issued_at) {
        return Err(Rejection::before_signature(Reason::KeyNotValidAtIssue));
    }
    if key.status == KeyStatus::Revoked {
        return Err(Rejection::before_signature(Reason::KeyRevoked));
    }
    let message = code.with_signed_message(<[u8]>::to_vec);
    Ok(SignatureCheck { message, signature: code.signature, public_key: key.public_key, claims })
}

impl SignatureCheck {
    /// Step 3's outcome (`authentic`: the signature verified as `verify_strict` would), then
    /// steps 4 (time) and 5 (scope).
    pub fn finish(self, authentic: bool, policy: &VerifierPolicy, now: Timestamp) -> Result<Claims, Rejection> {
        let claims = self.claims;
        // 3. signature, over the exact transmitted claim bytes
        if !authentic {
            return Err(Rejection::before_signature(Reason::BadSignature));
        }
        // 4. time
        if claims.issued_at > now.plus(i64::from(policy.clock_skew_seconds)) {
            return Err(Rejection::after_signature(Reason::NotYetValid, claims));
        }
        if now >= claims.expires_at() {
            return Err(Rejection::after_signature(Reason::Expired, claims));
        }
        // 5. scope
        if !policy.purposes.contains(&claims.purpose) {
            return Err(Rejection::after_signature(Reason::WrongPurpose, claims));
        }
        if claims.audience.is_some_and(|audience| audience != policy.centre) {
            return Err(Rejection::after_signature(Reason::WrongAudience, claims));
        }
        Ok(claims)
    }
}
