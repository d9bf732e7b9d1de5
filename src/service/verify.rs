//! Verification, steps 1-7: the offline checks, then consumption (a retry of the same request is the same use), the usage record and the live status in one store operation, here or at the issuer's node.

use crate::code::digits::TypedDigits;
use crate::code::{CentreCode, Claims, DepositClaims, Purpose};
use crate::model::{
    CodeUse, Granted, PreviousUse, RegistryRecord, RequestId, Subject, UsageEntry, UseOutcome, Verdict,
};
use crate::store::Store;
use crate::verify::{Reason, VerifierPolicy, check_before_signature};

use super::link::{LinkError, RemoteUse};
use super::verification_id::{new_verification_id, parse_verification_id, verification_id_of};
use super::{CODE_MARK_SECONDS, LOOKUP_GRANT_SECONDS, Liangma, ServiceError};
use crate::clock::Timestamp;

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
    pub(super) fn rejected(verdict: Verdict, detail: Option<String>, claims: Option<Claims>) -> Self {
        Self { verdict, detail, claims, live: None, differences: Vec::new(), previous_use: None, verification_id: None }
    }
}

/// A code that passed steps 1-5: its claims, and its text for the issuer's node.
#[derive(Debug, Clone)]
pub(super) struct AuthenticCode {
    pub(super) claims: Claims,
    pub(super) text: String,
}

/// A code another centre's node asks this node (its issuer) to consume.
#[derive(Debug, Clone)]
pub struct ConsumeCommand {
    /// The code text as the other node's counter scanned it.
    pub text: String,
    /// The centre whose counter verified, as the caller's certificate names it.
    pub verifying_centre: CentreCode,
    /// The other node's idempotency key.
    pub request_id: RequestId,
    /// A replayed deferred consumption: when the other centre accepted the code offline. The
    /// code is checked as of then, and a code used before is a DOUBLE_USE.
    pub accepted_offline_at: Option<Timestamp>,
}

/// Whether a consumption may be deferred when the issuer's node does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Deferral {
    /// A counter's verification: per the configured purposes.
    PerPurpose,
    /// Never (a loan evaluation needs the live status now).
    Never,
}

/// What steps 1-5 found.
pub(super) enum Checked {
    /// Authentic and acceptable here and now: ready to consume.
    Authentic(AuthenticCode),
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
            Checked::Authentic(code) => self.consume(code, command.request_id, Deferral::PerPurpose).await,
            Checked::Rejected(verification) => Ok(verification),
        }
    }

    /// Steps 1-7 at the issuer's node for another centre's counter: the same offline checks
    /// (with the verifying centre as audience), then consumption recorded against that centre.
    pub async fn consume_for(&self, command: ConsumeCommand) -> Result<Verification, ServiceError> {
        let policy = VerifierPolicy {
            centre: command.verifying_centre,
            purposes: Purpose::ALL.to_vec(),
            clock_skew_seconds: self.settings.policy.clock_skew_seconds,
        };
        let now = self.clock.now();
        let at = match command.accepted_offline_at {
            None => now,
            // Replays come after the issuer was down, at most while used marks last.
            Some(at)
                if at <= now.plus(i64::from(policy.clock_skew_seconds))
                    && at >= now.plus(-(CODE_MARK_SECONDS as i64)) =>
            {
                at
            }
            Some(_) => return Err(ServiceError::invalid("accepted_offline_at_unix", "not within the last day")),
        };
        match self.check_text(command.text, &policy, at).await? {
            Checked::Authentic(code) => {
                self.issuer(code.claims.issuer)?;
                let offline = command.accepted_offline_at.is_some();
                let verification = self
                    .consume_here(code.claims, command.verifying_centre, Some(command.request_id), at, offline)
                    .await?;
                if verification.verdict == Verdict::DoubleUse {
                    tracing::error!(code_id = %code.claims.code_id, accepted_by = %command.verifying_centre,
                        used_by = ?verification.previous_use.map(|used| used.centre.to_string()),
                        "DOUBLE USE: a code accepted offline had been used before (in the member's usage record)");
                }
                Ok(verification)
            }
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
            CodeInput::Digits(typed) => match TypedDigits::parse(&typed) {
                Err(error) => {
                    return Ok(Checked::Rejected(Verification::rejected(
                        Verdict::Rejected(Reason::Malformed),
                        Some(error.to_string()),
                        None,
                    )));
                }
                Ok(typed) => match self.resolve_digits(typed).await? {
                    Ok(Some(text)) => text,
                    Ok(None) => {
                        return Ok(Checked::Rejected(Verification::rejected(Verdict::UnknownDigits, None, None)));
                    }
                    Err(unreachable) => return Ok(Checked::Rejected(unreachable)),
                },
            },
        };
        self.check_text(text, policy, self.clock.now()).await
    }

    /// The code text behind digits: here, or at the node of the centre the network form
    /// names when this node does not issue for it. `Err`: that node did not answer.
    async fn resolve_digits(&self, typed: TypedDigits) -> Result<Result<Option<String>, Verification>, ServiceError> {
        let remote = match (&self.link, typed.centre) {
            (Some(link), Some(centre)) if !self.issues_for(centre) => Some((link, centre)),
            _ => None,
        };
        let Some((link, issuer)) = remote else {
            return Ok(Ok(self.store.resolve_digits(typed.digits.as_str()).await?));
        };
        let unreachable = |detail: String| Verification::rejected(Verdict::IssuerUnreachable, Some(detail), None);
        let Some(node) = self.trust().list().centre(issuer).and_then(|centre| centre.node.clone()) else {
            return Ok(Err(unreachable(format!(
                "the trust list names no node for centre {issuer}: the digits cannot be resolved; scan the code instead"
            ))));
        };
        match link.resolve_digits(issuer, &node, typed.digits.as_str().to_owned()).await {
            Ok(text) => Ok(Ok(text)),
            Err(error) => {
                tracing::warn!(%error, "resolving digits at the issuer's node failed");
                Ok(Err(unreachable(format!(
                    "home centre {issuer} unreachable: the digits could not be resolved and nothing was consumed; \
                     scan the code or retry shortly"
                ))))
            }
        }
    }

    /// The code text behind digits issued here, for another centre's node.
    pub async fn resolve_digits_for(&self, digits: &str) -> Result<Option<String>, ServiceError> {
        let typed = TypedDigits::parse(digits).map_err(|error| ServiceError::invalid("digits", error))?;
        Ok(self.store.resolve_digits(typed.digits.as_str()).await?)
    }

    /// Steps 1-5 as of `now` (a replayed deferred consumption is checked as of its acceptance).
    async fn check_text(&self, text: String, policy: &VerifierPolicy, now: Timestamp) -> Result<Checked, ServiceError> {
        let trust = self.trust();
        let checked = match check_before_signature(&text, trust.usable_at(self.clock.now())?) {
            Ok(mut check) => {
                let message = std::mem::take(&mut check.message);
                let authentic = self.signatures.verify(message, check.signature, check.public_key).await;
                check.finish(authentic, policy, now)
            }
            Err(rejection) => Err(rejection),
        };
        match checked {
            Ok(claims) => Ok(Checked::Authentic(AuthenticCode { claims, text })),
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

    /// Steps 6-7 for a code that passed steps 1-5: here if this node issues for its centre (or
    /// follows no directory), else at the issuer's node.
    pub(super) async fn consume(
        &self,
        code: AuthenticCode,
        request_id: Option<RequestId>,
        deferral: Deferral,
    ) -> Result<Verification, ServiceError> {
        match &self.link {
            Some(link) if !self.issuers.contains_key(&code.claims.issuer) => {
                self.consume_remote(link.as_ref(), code, request_id, deferral).await
            }
            _ => {
                let now = self.clock.now();
                self.consume_here(code.claims, self.settings.policy.centre, request_id, now, false).await
            }
        }
    }

    async fn consume_remote(
        &self,
        link: &dyn super::link::IssuerLink,
        code: AuthenticCode,
        request_id: Option<RequestId>,
        deferral: Deferral,
    ) -> Result<Verification, ServiceError> {
        let claims = code.claims;
        let issuer = claims.issuer;
        let unreachable =
            |detail: String| Verification::rejected(Verdict::IssuerUnreachable, Some(detail), Some(claims));
        let Some(node) = self.trust().list().centre(issuer).and_then(|centre| centre.node.clone()) else {
            return Ok(unreachable(format!(
                "the trust list names no node for home centre {issuer}: the code is authentic but was NOT consumed; \
                 do not accept it"
            )));
        };
        let request_id = match request_id {
            Some(id) => id,
            None => RequestId::random().map_err(|e| ServiceError::Internal(format!("random source: {e}")))?,
        };
        // Concurrent scans of one code at this node reach the issuer one after the other.
        let _turn = self.in_flight.turn(claims.code_id).await;
        let code_use = RemoteUse {
            text: code.text.clone(),
            verifying_centre: self.settings.policy.centre,
            request_id: request_id.clone(),
            accepted_offline_at: None,
        };
        let answer = match link.consume_at_issuer(issuer, &node, code_use).await {
            Ok(answer) => answer,
            Err(error @ LinkError::Unreachable { .. })
                if deferral == Deferral::PerPurpose && self.settings.deferred_purposes.contains(&claims.purpose) =>
            {
                tracing::warn!(%error, "issuer's node unreachable; deferring the consumption");
                return self.defer(claims, code.text, request_id).await;
            }
            Err(error @ (LinkError::Unreachable { .. } | LinkError::Refused { .. })) => {
                tracing::warn!(%error, "consumption at the issuer's node failed");
                return Ok(unreachable(format!(
                    "home centre {issuer} unreachable: the code is authentic but was NOT consumed; do not accept it, \
                     retry shortly with the same request id"
                )));
            }
        };
        let mut verification = Verification::rejected(answer.verdict, answer.detail, Some(claims));
        verification.previous_use = answer.previous_use;
        if answer.verdict == Verdict::Valid {
            let named = answer
                .verification_id
                .as_deref()
                .and_then(parse_verification_id)
                .filter(|named| named.subject == subject_of(&claims) && named.code_id == claims.code_id);
            let Some(named) = named else {
                return Err(ServiceError::Internal(format!(
                    "node of centre {issuer} answered VALID without a usable verification id"
                )));
            };
            let granted = Granted {
                subject: named.subject,
                verified_at: self.clock.now(),
                claims: claims.deposit,
                live: answer.live.clone(),
            };
            self.store.put_remote_grant(claims.code_id, &named.grant, &granted, LOOKUP_GRANT_SECONDS).await?;
            verification.differences =
                answer.live.as_ref().map(|live| differences(&claims.deposit, &live.status)).unwrap_or_default();
            verification.live = answer.live;
            verification.verification_id = answer.verification_id;
        }
        Ok(verification)
    }

    /// Steps 6-7 in this node's store, recorded against `centre` (this node's own, or the
    /// centre of another node that asked).
    /// `offline`: a replayed deferred consumption, accepted at `now`; a code used before is
    /// then a DOUBLE_USE.
    async fn consume_here(
        &self,
        claims: Claims,
        centre: CentreCode,
        request_id: Option<RequestId>,
        now: Timestamp,
        offline: bool,
    ) -> Result<Verification, ServiceError> {
        let subject = subject_of(&claims);
        let (verification_id, grant) = new_verification_id(subject, claims.code_id)?;
        let remaining = u64::try_from(claims.expires_at().unix() - now.unix()).unwrap_or(0);
        let skew = u64::from(self.settings.policy.clock_skew_seconds);
        let code_use = CodeUse {
            subject,
            code_id: claims.code_id,
            centre,
            request_id,
            purpose: claims.purpose,
            at: now,
            used_ttl_seconds: (remaining + skew + 60).max(LOOKUP_GRANT_SECONDS),
            grant,
            claims: claims.deposit,
            accepted_offline: offline,
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
                ..Verification::rejected(
                    if offline { Verdict::DoubleUse } else { Verdict::AlreadyUsed },
                    None,
                    Some(claims),
                )
            },
            UseOutcome::Revoked => Verification::rejected(Verdict::CodeRevoked, None, Some(claims)),
        })
    }
}
