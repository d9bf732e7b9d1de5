//! Proto <-> domain: every request field is validated here into a domain type.

use crate::code::{AccountStatus, CentreCode, Claims, CodeId, DepositClaims, Fen, LoanState, Purpose};
use crate::issue::IdNumber;
use crate::loan::name_of;
use crate::pb::v1 as pb;
use crate::service::{ServiceError, Verdict};
use crate::store::{RegistryRecord, RequestId, UsageEntry};
use crate::verify::Reason;

fn invalid(field: &str, problem: impl std::fmt::Display) -> ServiceError {
    ServiceError::InvalidArgument(format!("{field}: {problem}"))
}

/// A required 6-digit centre code.
pub fn centre(field: &str, text: &str) -> Result<CentreCode, ServiceError> {
    text.parse().map_err(|error| invalid(field, error))
}

/// An optional centre code: empty means none.
pub fn optional_centre(field: &str, text: &str) -> Result<Option<CentreCode>, ServiceError> {
    if text.is_empty() { Ok(None) } else { centre(field, text).map(Some) }
}

/// A resident ID number; the error never repeats it.
pub fn id_number(field: &str, text: &str) -> Result<IdNumber, ServiceError> {
    text.parse().map_err(|error| invalid(field, error))
}

/// An optional request id: empty means none.
pub fn request_id(field: &str, text: &str) -> Result<Option<RequestId>, ServiceError> {
    if text.is_empty() {
        return Ok(None);
    }
    RequestId::new(text)
        .map(Some)
        .ok_or_else(|| invalid(field, "1 to 64 characters of A-Z a-z 0-9 . _ : - (e.g. a UUID)"))
}

/// A purpose; unspecified (0) gives `None`.
pub fn purpose(field: &str, value: i32) -> Result<Option<Purpose>, ServiceError> {
    if value == 0 {
        return Ok(None);
    }
    Purpose::from_wire(value).map(Some).ok_or_else(|| invalid(field, "unknown purpose"))
}

/// A required purpose.
pub fn required_purpose(field: &str, value: i32) -> Result<Purpose, ServiceError> {
    purpose(field, value)?.ok_or_else(|| invalid(field, "is required"))
}

/// A code id in 24 hex digits.
pub fn code_id(field: &str, text: &str) -> Result<CodeId, ServiceError> {
    let mut bytes = [0u8; 12];
    hex::decode_to_slice(text, &mut bytes).map_err(|_| invalid(field, "must be 24 hex digits"))?;
    Ok(CodeId::from_bytes(bytes))
}

/// A deposit status to publish.
pub fn deposit_status(field: &str, status: Option<pb::DepositStatus>) -> Result<DepositClaims, ServiceError> {
    let status = status.ok_or_else(|| invalid(field, "is required"))?;
    Ok(DepositClaims {
        account_status: AccountStatus::from_wire(status.account_status)
            .ok_or_else(|| invalid(&format!("{field}.account_status"), "is required and must be known"))?,
        balance: Fen(status.balance_fen),
        monthly_deposit: Fen(status.monthly_deposit_fen),
        continuous_months: status.continuous_months,
        loan_state: LoanState::from_wire(status.loan_state)
            .ok_or_else(|| invalid(&format!("{field}.loan_state"), "unknown value"))?,
        loans_used: status.loans_used,
        registry_version: status.registry_version,
    })
}

/// The proto form of a deposit status.
pub fn deposit_status_view(status: &DepositClaims) -> pb::DepositStatus {
    pb::DepositStatus {
        account_status: status.account_status.wire(),
        balance_fen: status.balance.0,
        monthly_deposit_fen: status.monthly_deposit.0,
        continuous_months: status.continuous_months,
        loan_state: status.loan_state.wire(),
        loans_used: status.loans_used,
        registry_version: status.registry_version,
    }
}

/// Claims for display: the subject only abbreviated.
pub fn claims_view(claims: &Claims) -> pb::ClaimsView {
    pb::ClaimsView {
        issuer_centre: claims.issuer.to_string(),
        key_id: claims.key_id.to_string(),
        code_id: claims.code_id.to_string(),
        issued_at_unix: claims.issued_at.unix(),
        expires_at_unix: claims.expires_at().unix(),
        purpose: claims.purpose.wire(),
        audience_centre: claims.audience.map(|c| c.to_string()).unwrap_or_default(),
        subject: claims.subject.to_string(),
        deposit: Some(deposit_status_view(&claims.deposit)),
    }
}

/// The live status, `found = false` when the member has no record.
pub fn live_status(record: Option<&RegistryRecord>) -> pb::LiveStatus {
    match record {
        None => pb::LiveStatus::default(),
        Some(record) => pb::LiveStatus {
            found: true,
            status: Some(deposit_status_view(&record.status)),
            masked_name: record.masked_name.clone(),
            masked_id_number: record.masked_id_number.clone(),
            published_at_unix: record.published_at.unix(),
        },
    }
}

/// The proto verdict.
pub fn verdict(verdict: Verdict) -> pb::Verdict {
    match verdict {
        Verdict::Valid => pb::Verdict::Valid,
        Verdict::CodeRevoked => pb::Verdict::CodeRevoked,
        Verdict::AlreadyUsed => pb::Verdict::AlreadyUsed,
        Verdict::UnknownDigits => pb::Verdict::UnknownDigits,
        Verdict::Rejected(reason) => match reason {
            Reason::Malformed => pb::Verdict::Malformed,
            Reason::UnsupportedVersion => pb::Verdict::UnsupportedVersion,
            Reason::UnknownIssuer => pb::Verdict::UnknownIssuer,
            Reason::UnknownKey => pb::Verdict::UnknownKey,
            Reason::KeyNotValidAtIssue => pb::Verdict::KeyNotValidAtIssue,
            Reason::KeyRevoked => pb::Verdict::KeyRevoked,
            Reason::BadSignature => pb::Verdict::BadSignature,
            Reason::NotYetValid => pb::Verdict::NotYetValid,
            Reason::Expired => pb::Verdict::Expired,
            Reason::WrongPurpose => pb::Verdict::WrongPurpose,
            Reason::WrongAudience => pb::Verdict::WrongAudience,
        },
    }
}

/// The proto verdict of a usage-record result name.
pub fn verdict_by_name(name: &str) -> pb::Verdict {
    pb::Verdict::from_str_name(&format!("VERDICT_{name}")).unwrap_or(pb::Verdict::Unspecified)
}

/// The proto form of a usage-record line.
pub fn usage_entry(entry: UsageEntry) -> pb::UsageEntry {
    pb::UsageEntry {
        at_unix: entry.at.unix(),
        centre: entry.centre.to_string(),
        purpose: entry.purpose.wire(),
        result: verdict_by_name(&entry.result).into(),
        code_id: entry.code_id.to_string(),
        count: entry.count,
        first_at_unix: entry.first_at.unix(),
    }
}

/// The proto form of a loan evaluation.
pub fn evaluation(outcome: crate::service::LoanOutcome) -> pb::EvaluateOffsiteLoanResponse {
    let crate::service::LoanOutcome { evaluation, verification_ids } = outcome;
    pb::EvaluateOffsiteLoanResponse {
        policy: evaluation.policy,
        eligible: evaluation.eligible,
        reasons: evaluation
            .reasons
            .iter()
            .map(|reason| pb::LoanReason { party: name_of(&reason.party), reason: name_of(&reason.reason) })
            .collect(),
        max_amount_fen: evaluation.max_amount.0,
        max_term_years: evaluation.max_term_years,
        decided_by: evaluation.decided_by.as_ref().map(name_of).unwrap_or_default(),
        requested_term_allowed: evaluation.requested_term_allowed,
        steps: evaluation
            .steps
            .into_iter()
            .map(|step| pb::LoanStep { description: step.description, amount_fen: step.amount.map(|amount| amount.0) })
            .collect(),
        figures: evaluation
            .figures
            .into_iter()
            .map(|figure| pb::LoanFigure { name: figure.name, value: figure.value, source: name_of(&figure.source) })
            .collect(),
        verification_ids,
    }
}
