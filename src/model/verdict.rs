//! The verdict of a verification, typed everywhere inside, with one string form for the API, the logs and the stores.

use crate::clock::Timestamp;
use crate::code::CentreCode;
use crate::verify::Reason;

/// The verdict of the full pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Authentic, in time, in scope, consumed now by this verification.
    Valid,
    /// An offline check failed.
    Rejected(Reason),
    /// The member revoked the code.
    CodeRevoked,
    /// Consumed before.
    AlreadyUsed,
    /// The digits name no live code.
    UnknownDigits,
    /// The code passed every offline check, but its issuer's node (which alone can consume it)
    /// did not answer: it was not consumed and must not be accepted.
    IssuerUnreachable,
    /// The issuer's node did not answer, and this centre accepts the purpose with deferred
    /// consumption: accepted on the offline checks; consumption is queued and replayed.
    VerifiedOffline,
    /// A code accepted offline (deferred consumption) had been used before: found when the
    /// consumption was replayed; in the member's usage record and reported by both centres.
    DoubleUse,
}

impl Verdict {
    /// The name used in the API, logs and the usage record.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "VALID",
            Verdict::Rejected(reason) => reason.as_str(),
            Verdict::CodeRevoked => "CODE_REVOKED",
            Verdict::AlreadyUsed => "ALREADY_USED",
            Verdict::UnknownDigits => "UNKNOWN_DIGITS",
            Verdict::IssuerUnreachable => "ISSUER_UNREACHABLE",
            Verdict::VerifiedOffline => "VERIFIED_OFFLINE",
            Verdict::DoubleUse => "DOUBLE_USE",
        }
    }

    /// Every verdict, in the order of the API's enumeration.
    pub fn all() -> impl Iterator<Item = Verdict> {
        std::iter::once(Verdict::Valid).chain(Reason::ALL.into_iter().map(Verdict::Rejected)).chain([
            Verdict::CodeRevoked,
            Verdict::AlreadyUsed,
            Verdict::UnknownDigits,
            Verdict::IssuerUnreachable,
            Verdict::VerifiedOffline,
            Verdict::DoubleUse,
        ])
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is no verdict's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a verdict name")]
pub struct UnknownVerdict;

impl std::str::FromStr for Verdict {
    type Err = UnknownVerdict;

    /// The inverse of [`Verdict::as_str`].
    fn from_str(name: &str) -> Result<Self, UnknownVerdict> {
        Verdict::all().find(|verdict| verdict.as_str() == name).ok_or(UnknownVerdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verdict_name_parses_back_to_its_verdict() {
        assert_eq!(Verdict::all().count(), 18);
        for verdict in Verdict::all() {
            assert_eq!(verdict.as_str().parse(), Ok(verdict));
        }
        assert_eq!("VERDICT_VALID".parse::<Verdict>(), Err(UnknownVerdict));
    }
}

/// When and where a code was consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviousUse {
    /// When.
    pub at: Timestamp,
    /// The verifying centre.
    pub centre: CentreCode,
}
