//! Issuance: a home centre turns a member's deposit record into a signed code.

use serde::Deserialize;

use crate::clock::Timestamp;
use crate::code::envelope::{self, MAX_ISSUED_AT, MAX_ISSUED_CLAIMS_LEN, MAX_VALID_FOR};
use crate::code::{
    AccountStatus, CentreCode, Claims, CodeId, DepositClaims, Fen, KeyId, LoanState, OutOfRange, Purpose, SubjectRef,
};
use crate::model::IdNumber;
use crate::trust::{CentreKey, KeyStatus, SubjectSecret, TrustList, TrustedKey};

/// A member's deposit record as the home centre's core system exports it (JSON; see
/// docs/code-format.md §"Deposit record").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepositRecord {
    /// The member's ID number; hashed, never carried.
    pub id_number: IdNumber,
    /// Account status.
    pub account_status: AccountStatus,
    /// Balance in fen.
    pub balance_fen: Fen,
    /// Monthly deposit in fen.
    pub monthly_deposit_fen: Fen,
    /// Months of continuous normal deposit.
    pub continuous_months: u32,
    /// Loan situation.
    pub loan_state: LoanState,
    /// Loans used so far.
    #[serde(default)]
    pub loans_used: u32,
    /// Version of this record in the home centre's registry.
    pub registry_version: u64,
}

impl DepositRecord {
    /// The deposit claims a code carries for this record.
    pub fn deposit_claims(&self) -> DepositClaims {
        DepositClaims {
            account_status: self.account_status,
            balance: self.balance_fen,
            monthly_deposit: self.monthly_deposit_fen,
            continuous_months: self.continuous_months,
            loan_state: self.loan_state,
            loans_used: self.loans_used,
            registry_version: self.registry_version,
        }
    }
}

/// What the member asks a code for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssueRequest {
    /// What the code will be shown for.
    pub purpose: Purpose,
    /// The only centre that may accept it, if any.
    pub audience: Option<CentreCode>,
    /// Longest validity in seconds (1..=86400); expiry is also at most 24:00 CST of the issue day.
    pub lifetime_seconds: u32,
}

/// Why a code could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The signing key is not in the trust list, so no verifier would accept its codes.
    #[error("key {0} is not in the trust list: publish it with `liangma trust add` first")]
    KeyNotPublished(KeyId),
    /// The signing key is revoked.
    #[error("key {0} is revoked")]
    KeyRevoked(KeyId),
    /// The signing key's window does not contain the issue time.
    #[error("key {key_id} signs only from {valid_from} until {valid_until}")]
    OutsideKeyWindow {
        /// The key.
        key_id: KeyId,
        /// Start of its window.
        valid_from: Timestamp,
        /// End of its window.
        valid_until: Timestamp,
    },
    /// The requested lifetime is not between 1 second and 24 hours.
    #[error("lifetime must be between 1 and {MAX_VALID_FOR} seconds")]
    Lifetime,
    /// The issue time is outside what the format can carry.
    #[error("issue time is outside the range the code format carries")]
    IssueTime,
    /// A deposit figure is above its bound (docs/code-format.md §8).
    #[error("deposit record out of range: {0}")]
    OutOfRange(OutOfRange),
    /// The claims would not fit a QR code of version 8 at error correction M.
    #[error("claims of {0} bytes exceed the {MAX_ISSUED_CLAIMS_LEN} bytes that fit a version-8 QR code")]
    TooLarge(usize),
    /// The random source failed.
    #[error("random source failed: {0}")]
    Random(getrandom::Error),
}

/// A signed code.
#[derive(Debug, Clone)]
pub struct IssuedCode {
    /// The text form (`LM1:…`), what the QR code and a scanner carry.
    pub text: String,
    /// The claims inside it.
    pub claims: Claims,
}

/// A home centre's issuing identity: its signing key, subject secret and published key entry.
#[derive(Debug)]
pub struct Issuer {
    centre: CentreCode,
    key: CentreKey,
    subject_secret: SubjectSecret,
}

impl Issuer {
    /// The issuer for `key`, which must be published (and not revoked) in `trust`.
    pub fn new(key: CentreKey, subject_secret: SubjectSecret, trust: &TrustList) -> Result<Self, IssueError> {
        let centre = published_entry(&key, trust)?.0;
        Ok(Self { centre, key, subject_secret })
    }

    /// The issuing centre.
    pub fn centre(&self) -> CentreCode {
        self.centre
    }

    /// The member's pseudonymous reference at this centre.
    pub fn subject_ref(&self, id_number: &IdNumber) -> SubjectRef {
        self.subject_secret.subject_ref(id_number)
    }

    /// Issues a code with a fresh random code id.
    pub fn issue(
        &self,
        trust: &TrustList,
        record: &DepositRecord,
        request: &IssueRequest,
        now: Timestamp,
    ) -> Result<IssuedCode, IssueError> {
        let code_id = CodeId::random().map_err(IssueError::Random)?;
        self.issue_with_code_id(trust, record, request, now, code_id)
    }

    /// Issues a code with the given code id (test vectors need a fixed one).
    pub fn issue_with_code_id(
        &self,
        trust: &TrustList,
        record: &DepositRecord,
        request: &IssueRequest,
        now: Timestamp,
        code_id: CodeId,
    ) -> Result<IssuedCode, IssueError> {
        self.issue_claims(trust, self.subject_ref(&record.id_number), record.deposit_claims(), request, now, code_id)
    }

    /// Issues a code for a subject whose deposit status is already known (from the registry),
    /// if `trust` (the list in force) publishes the key, unrevoked, with a window containing `now`.
    pub fn issue_claims(
        &self,
        trust: &TrustList,
        subject: SubjectRef,
        deposit: DepositClaims,
        request: &IssueRequest,
        now: Timestamp,
        code_id: CodeId,
    ) -> Result<IssuedCode, IssueError> {
        if !(1..=MAX_VALID_FOR).contains(&request.lifetime_seconds) {
            return Err(IssueError::Lifetime);
        }
        if now.unix() <= 0 || now.unix() as u64 > MAX_ISSUED_AT {
            return Err(IssueError::IssueTime);
        }
        // The list in force now, not the one at start: a key revoked or retired since then
        // must stop signing at once.
        let (_, entry) = published_entry(&self.key, trust)?;
        if !entry.signs_at(now) {
            return Err(IssueError::OutsideKeyWindow {
                key_id: self.key.key_id(),
                valid_from: entry.valid_from,
                valid_until: entry.valid_until,
            });
        }
        deposit.check_bounds().map_err(IssueError::OutOfRange)?;
        let until_midnight = now.end_of_cst_day().unix() - now.unix();
        let valid_for = request.lifetime_seconds.min(u32::try_from(until_midnight).unwrap_or(MAX_VALID_FOR));
        let claims = Claims {
            issuer: self.centre,
            key_id: self.key.key_id(),
            code_id,
            issued_at: now,
            valid_for,
            purpose: request.purpose,
            audience: request.audience,
            subject,
            deposit,
        };
        let claims_bytes = envelope::encode_claims(&claims);
        if claims_bytes.len() > MAX_ISSUED_CLAIMS_LEN {
            return Err(IssueError::TooLarge(claims_bytes.len()));
        }
        let signature = envelope::with_signed_message(&claims_bytes, |message| self.key.sign(message));
        Ok(IssuedCode { text: envelope::encode_text(&claims_bytes, &signature), claims })
    }
}

/// The centre and trust-list entry of `key`, unless it is unpublished or revoked.
fn published_entry<'t>(key: &CentreKey, trust: &'t TrustList) -> Result<(CentreCode, &'t TrustedKey), IssueError> {
    let key_id = key.key_id();
    let (centre, entry) = trust
        .centres()
        .find_map(|centre| centre.key(key_id).filter(|e| e.public_key == key.verifying_key()).map(|e| (centre.code, e)))
        .ok_or(IssueError::KeyNotPublished(key_id))?;
    if entry.status == KeyStatus::Revoked {
        return Err(IssueError::KeyRevoked(key_id));
    }
    Ok((centre, entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_numbers_need_a_valid_check_character() {
        let id: IdNumber = "11010519491231002x".parse().unwrap();
        assert_eq!(id.as_str(), "11010519491231002X");
        assert_eq!(id.masked(), "110***********002X");
        assert!("110105194912310021".parse::<IdNumber>().is_err());
        assert!("1101051949123100".parse::<IdNumber>().is_err());
        assert_eq!(format!("{id:?}"), "IdNumber(<redacted>)");
    }

    #[test]
    fn record_errors_do_not_echo_the_id_number() {
        let json = r#"{"id_number":"110105194912310021","account_status":"normal","balance_fen":1,
            "monthly_deposit_fen":1,"continuous_months":1,"loan_state":"none","registry_version":1}"#;
        let error = serde_json::from_str::<DepositRecord>(json).unwrap_err().to_string();
        assert!(!error.contains("110105194912310021"), "{error}");
        let typo = json.replace("balance_fen", "balanse_fen");
        assert!(serde_json::from_str::<DepositRecord>(&typo).is_err());
    }
}
