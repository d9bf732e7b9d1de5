//! Verification, steps 1-7: the offline checks, then consumption (a retry of the same request is the same use), the usage record and the live status in one store operation.

use crate::code::digits::Digits;
use crate::code::{Claims, DepositClaims, Purpose};
use crate::model::{CodeUse, PreviousUse, RegistryRecord, RequestId, Subject, UsageEntry, UseOutcome, Verdict};
use crate::store::Store;
use crate::verify::{Reason, VerifierPolicy, verify_offline};

use super::verification_id::{new_verification_id, verification_id_of};
use super::{LOOKUP_GRANT_SECONDS, Liangma, ServiceError};

/// A code as the counter entered it.
#[derive(Debug, Clone)]
pub enum CodeInput {
    /// The `LM1:` text.
    Text(String),
    /// The digits form.
    Digits(String),
}

/// A verification, validated.
#[derive(Debug, Clone)]
pub struct VerifyCommand {
    /// The code as the counter entered it.
    pub code: CodeInput,
    /// What the counter is doing; `None`: any purpose this deployment serves.
    pub purpose: Option<Purpose>,
    /// The caller's request id: a retry with it is the same verification.
    pub request_id: Option<RequestId>,
}

/// Everything a verification found.
#[derive(Debug, Clone)]
pub struct Verification {
    /// The verdict.
    pub verdict: Verdict,
    /// Precise explanation where the verdict alone is not enough.
    pub detail: Option<String>,
    /// The claims, when the signature verified.
    pub claims: Option<Claims>,
    /// For VALID: the live registry record (`None` if the member has none).
    pub live: Option<RegistryRecord>,
    /// For VALID: deposit fields whose live value differs from the claim.
    pub differences: Vec<&'static str>,
    /// For ALREADY_USED: when and where it was used.
    pub previous_use: Option<PreviousUse>,
    /// For VALID: lets this caller look up the live status for a while.
    pub verification_id: Option<String>,
}

impl Verification {
    fn rejected(verdict: Verdict, detail: Option<String>, claims: Option<Claims>) -> Self {
        Self { verdict, detail, claims, live: None, differences: Vec::new(), previous_use: None, verification_id: None }
    }
}

/// What steps 1-5 found.
pub(super) enum Checked {
    /// Authentic and acceptable here and now: ready to consume.
    Authentic(Claims),
    /// The final answer (already in the usage record if the code was authentic).
    Rejected(Verification),
}

/// The member a code names.
pub(super) fn subject_of(claims: &Claims) -> Subject {
    Subject { centre: claims.issuer, reference: claims.subject }
}

fn differences(claimed: &DepositClaims, live: &DepositClaims) -> Vec<&'static str> {
    let checks = [
        ("account_status", claimed.account_status != live.account_status),
        ("balance_fen", claimed.balance != live.balance),
        ("monthly_deposit_fen", claimed.monthly_deposit != live.monthly_deposit),
        ("continuous_months", claimed.continuous_months != live.continuous_months),
        ("loan_state", claimed.loan_state != live.loan_state),
        ("loans_used", claimed.loans_used != live.loans_used),
        ("registry_version", claimed.registry_version != live.registry_version),
    ];
    checks.into_iter().filter(|(_, differs)| *differs).map(|(name, _)| name).collect()
}

impl<S: Store> Liangma<S> {
    /// Steps 1-7: offline checks, then (for authentic codes) consumption, the usage record and
    /// the live status in one atomic store operation. A retry with the same `request_id` after a
    /// lost answer gets the original VALID again.
    pub async fn verify(&self, command: VerifyCommand) -> Result<Verification, ServiceError> {
        match self.check_offline(command.code, command.purpose).await? {
            Checked::Authentic(claims) => self.consume(claims, command.request_id).await,
            Checked::Rejected(verification) => Ok(verification),
        }
    }

    /// Steps 1-5 (after resolving digits): the claims of an authentic, acceptable code, or the
    /// rejection, already in the member's usage record if the code was authentic.
    pub(super) async fn check_offline(
        &self,
        input: CodeInput,
        purpose: Option<Purpose>,
    ) -> Result<Checked, ServiceError> {
        let narrowed;
        let policy = match purpose {
            None => &self.settings.policy,
            Some(purpose) if self.settings.policy.purposes.contains(&purpose) => {
                narrowed = VerifierPolicy { purposes: vec![purpose], ..self.settings.policy.clone() };
                &narrowed
            }
            Some(purpose) => {
                return Err(ServiceError::PurposeNotServed(purpose));
            }
        };
        let text = match input {
            CodeInput::Text(text) => text,
            CodeInput::Digits(typed) => match Digits::parse(&typed) {
                Err(error) => {
                    return Ok(Checked::Rejected(Verification::rejected(
                        Verdict::Rejected(Reason::Malformed),
                        Some(error.to_string()),
                        None,
                    )));
                }
                Ok(digits) => match self.store.resolve_digits(digits.as_str()).await? {
                    Some(text) => text,
                    None => return Ok(Checked::Rejected(Verification::rejected(Verdict::UnknownDigits, None, None))),
                },
            },
        };
        let now = self.clock.now();
        match verify_offline(&text, &self.trust(), policy, now) {
            Ok(claims) => Ok(Checked::Authentic(claims)),
            Err(rejection) => {
                let claims = rejection.authentic_claims.map(|claims| *claims);
                if let Some(claims) = &claims {
                    // An authentic code was shown: the member sees this query in the usage record.
                    let entry = UsageEntry::single(
                        now,
                        policy.centre,
                        claims.purpose,
                        Verdict::Rejected(rejection.reason),
                        claims.code_id,
                    );
                    self.store.record_usage(subject_of(claims), &entry).await?;
                }
                let detail = rejection.decode_error.map(|error| error.to_string());
                Ok(Checked::Rejected(Verification::rejected(Verdict::Rejected(rejection.reason), detail, claims)))
            }
        }
    }

    /// Steps 6-7 for claims that passed steps 1-5.
    pub(super) async fn consume(
        &self,
        claims: Claims,
        request_id: Option<RequestId>,
    ) -> Result<Verification, ServiceError> {
        let now = self.clock.now();
        let subject = subject_of(&claims);
        let (verification_id, grant) = new_verification_id(subject, claims.code_id)?;
        let remaining = u64::try_from(claims.expires_at().unix() - now.unix()).unwrap_or(0);
        let skew = u64::from(self.settings.policy.clock_skew_seconds);
        let code_use = CodeUse {
            subject,
            code_id: claims.code_id,
            centre: self.settings.policy.centre,
            request_id,
            purpose: claims.purpose,
            at: now,
            used_ttl_seconds: (remaining + skew + 60).max(LOOKUP_GRANT_SECONDS),
            grant,
            claims: claims.deposit,
        };
        let valid = |live: Option<RegistryRecord>, verification_id: String| Verification {
            verdict: Verdict::Valid,
            detail: None,
            differences: live.as_ref().map(|live| differences(&claims.deposit, &live.status)).unwrap_or_default(),
            claims: Some(claims),
            live,
            previous_use: None,
            verification_id: Some(verification_id),
        };
        Ok(match self.store.consume(&code_use).await? {
            UseOutcome::Consumed { live } => valid(live, verification_id),
            UseOutcome::Repeated { live, grant } => valid(live, verification_id_of(subject, claims.code_id, &grant)),
            UseOutcome::AlreadyUsed { at, centre } => Verification {
                previous_use: Some(PreviousUse { at, centre }),
                ..Verification::rejected(Verdict::AlreadyUsed, None, Some(claims))
            },
            UseOutcome::Revoked => Verification::rejected(Verdict::CodeRevoked, None, Some(claims)),
        })
    }
}
