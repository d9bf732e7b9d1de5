//! Proto <-> domain, one conversion per message: `TryFrom` validates every request field into a domain command (errors name the field), `From` turns each domain result into its response.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::clock::Timestamp;
use crate::code::{AccountStatus, CentreCode, Claims, CodeId, DepositClaims, Fen, KeyId, LoanState, Purpose};
use crate::federation::directory::KeyChange;
use crate::loan::{House, name_of};
use crate::model::{IdNumber, PreviousUse, PublishOutcome, RegistryRecord, RequestId, UsageEntry, Verdict};
use crate::pb::v1 as pb;
use crate::service::link::RemoteAnswer;
use crate::service::{
    CodeInput, CodeRequest, ConsumeCommand, IssueCommand, IssuedCode, LoanCommand, LoanOutcome, Member, MemberStatus,
    PartyInput, PublishCommand, QrFormat, QrImage, RevokeCommand, ServiceError, TrustListSize, Verification,
    VerifyCommand,
};
use crate::verify::Reason;

fn invalid(field: &str, problem: impl std::fmt::Display) -> ServiceError {
    ServiceError::invalid(field, problem)
}

/// A required 6-digit centre code.
fn centre(field: &str, text: &str) -> Result<CentreCode, ServiceError> {
    text.parse().map_err(|error| invalid(field, error))
}

/// An optional centre code: empty means none.
fn optional_centre(field: &str, text: &str) -> Result<Option<CentreCode>, ServiceError> {
    if text.is_empty() { Ok(None) } else { centre(field, text).map(Some) }
}

/// A resident ID number; the error never repeats it.
fn id_number(field: &str, text: &str) -> Result<IdNumber, ServiceError> {
    text.parse().map_err(|error| invalid(field, error))
}

/// A member of a home centre.
fn member(centre_field: &str, centre_text: &str, id_text: &str) -> Result<Member, ServiceError> {
    Ok(Member { centre: centre(centre_field, centre_text)?, id_number: id_number("id_number", id_text)? })
}

/// An optional request id: empty means none.
fn request_id(text: &str) -> Result<Option<RequestId>, ServiceError> {
    if text.is_empty() {
        return Ok(None);
    }
    RequestId::new(text)
        .map(Some)
        .ok_or_else(|| invalid("request_id", "1 to 64 characters of A-Z a-z 0-9 . _ : - (e.g. a UUID)"))
}

/// A purpose; unspecified (0) gives `None`.
fn purpose(field: &str, value: i32) -> Result<Option<Purpose>, ServiceError> {
    if value == 0 {
        return Ok(None);
    }
    Purpose::from_wire(value).map(Some).ok_or_else(|| invalid(field, "unknown purpose"))
}

/// A code id in 24 hex digits.
fn code_id(field: &str, text: &str) -> Result<CodeId, ServiceError> {
    let mut bytes = [0u8; 12];
    hex::decode_to_slice(text, &mut bytes).map_err(|_| invalid(field, "must be 24 hex digits"))?;
    Ok(CodeId::from_bytes(bytes))
}

/// A code as a scanner typed it: only a trailing line ending is removed (a space is a base45
/// character and may end a code).
fn scanned_text(mut text: String) -> CodeInput {
    let kept = text.trim_end_matches(['\r', '\n']).len();
    text.truncate(kept);
    CodeInput::Text(text)
}

/// A deposit status to publish.
fn deposit_status(field: &str, status: Option<pb::DepositStatus>) -> Result<DepositClaims, ServiceError> {
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

impl TryFrom<pb::VerifyCodeRequest> for VerifyCommand {
    type Error = ServiceError;

    fn try_from(request: pb::VerifyCodeRequest) -> Result<Self, ServiceError> {
        let code = match request.code {
            Some(pb::verify_code_request::Code::Text(text)) if !text.is_empty() => scanned_text(text),
            Some(pb::verify_code_request::Code::Digits(digits)) if !digits.is_empty() => CodeInput::Digits(digits),
            _ => return Err(invalid("code", "give the code text or its digits")),
        };
        Ok(VerifyCommand {
            code,
            purpose: purpose("purpose", request.purpose)?,
            request_id: request_id(&request.request_id)?,
        })
    }
}

impl TryFrom<pb::IssueCodeRequest> for IssueCommand {
    type Error = ServiceError;

    fn try_from(request: pb::IssueCodeRequest) -> Result<Self, ServiceError> {
        Ok(IssueCommand {
            member: member("issuer_centre", &request.issuer_centre, &request.id_number)?,
            purpose: purpose("purpose", request.purpose)?.ok_or_else(|| invalid("purpose", "is required"))?,
            audience: optional_centre("audience_centre", &request.audience_centre)?,
            lifetime_seconds: (request.lifetime_seconds != 0).then_some(request.lifetime_seconds),
            qr: match pb::QrFormat::try_from(request.qr_format) {
                Ok(pb::QrFormat::None) => None,
                Ok(pb::QrFormat::Png) => Some(QrFormat::Png),
                Ok(pb::QrFormat::Svg) => Some(QrFormat::Svg),
                Err(_) => return Err(invalid("qr_format", "unknown value")),
            },
            digits: !request.omit_digits,
        })
    }
}

impl TryFrom<pb::RevokeCodeRequest> for RevokeCommand {
    type Error = ServiceError;

    fn try_from(request: pb::RevokeCodeRequest) -> Result<Self, ServiceError> {
        Ok(RevokeCommand {
            member: member("issuer_centre", &request.issuer_centre, &request.id_number)?,
            code_id: code_id("code_id", &request.code_id)?,
        })
    }
}

impl TryFrom<pb::PublishStatusesRequest> for PublishCommand {
    type Error = ServiceError;

    fn try_from(request: pb::PublishStatusesRequest) -> Result<Self, ServiceError> {
        let members = request
            .records
            .into_iter()
            .enumerate()
            .map(|(index, record)| {
                Ok(MemberStatus {
                    id_number: id_number(&format!("records[{index}].id_number"), &record.id_number)?,
                    name: record.name,
                    status: deposit_status(&format!("records[{index}].status"), record.status)?,
                })
            })
            .collect::<Result<_, ServiceError>>()?;
        Ok(PublishCommand { centre: centre("centre", &request.centre)?, members })
    }
}

impl TryFrom<pb::ListUsageRequest> for Member {
    type Error = ServiceError;

    fn try_from(request: pb::ListUsageRequest) -> Result<Self, ServiceError> {
        member("issuer_centre", &request.issuer_centre, &request.id_number)
    }
}

fn party(field: &str, party: Option<pb::PartyCode>) -> Result<Option<PartyInput>, ServiceError> {
    let Some(code) = party.and_then(|party| party.code) else { return Ok(None) };
    Ok(Some(match code {
        pb::party_code::Code::Text(text) if !text.is_empty() => PartyInput::Code(scanned_text(text)),
        pb::party_code::Code::Digits(digits) if !digits.is_empty() => PartyInput::Code(CodeInput::Digits(digits)),
        pb::party_code::Code::VerificationId(id) if !id.is_empty() => PartyInput::Verified(id),
        _ => return Err(invalid(field, "empty")),
    }))
}

impl TryFrom<pb::EvaluateOffsiteLoanRequest> for LoanCommand {
    type Error = ServiceError;

    fn try_from(request: pb::EvaluateOffsiteLoanRequest) -> Result<Self, ServiceError> {
        Ok(LoanCommand {
            request_id: request_id(&request.request_id)?,
            borrower: party("borrower", request.borrower)?
                .ok_or_else(|| invalid("borrower", "give a code, its digits or a verification id"))?,
            co_borrower: party("co_borrower", request.co_borrower)?,
            house_price: Fen(request.house_price_fen),
            house: match pb::HouseKind::try_from(request.house_kind) {
                Ok(pb::HouseKind::New) => House::New,
                Ok(pb::HouseKind::SecondHand) => House::SecondHand { building_age_years: request.building_age_years },
                _ => return Err(invalid("house_kind", "NEW or SECOND_HAND")),
            },
            requested_term_years: (request.requested_term_years != 0).then_some(request.requested_term_years),
        })
    }
}

impl From<&DepositClaims> for pb::DepositStatus {
    fn from(status: &DepositClaims) -> Self {
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
}

/// Claims for display: the subject only abbreviated.
impl From<&Claims> for pb::ClaimsView {
    fn from(claims: &Claims) -> Self {
        pb::ClaimsView {
            issuer_centre: claims.issuer.to_string(),
            key_id: claims.key_id.to_string(),
            code_id: claims.code_id.to_string(),
            issued_at_unix: claims.issued_at.unix(),
            expires_at_unix: claims.expires_at().unix(),
            purpose: claims.purpose.wire(),
            audience_centre: claims.audience.map(|c| c.to_string()).unwrap_or_default(),
            subject: claims.subject.to_string(),
            deposit: Some((&claims.deposit).into()),
        }
    }
}

/// The live status, `found = false` when the member has no record.
impl From<Option<&RegistryRecord>> for pb::LiveStatus {
    fn from(record: Option<&RegistryRecord>) -> Self {
        match record {
            None => pb::LiveStatus::default(),
            Some(record) => pb::LiveStatus {
                found: true,
                status: Some((&record.status).into()),
                masked_name: record.masked_name.clone(),
                masked_id_number: record.masked_id_number.clone(),
                published_at_unix: record.published_at.unix(),
            },
        }
    }
}

impl From<Verdict> for pb::Verdict {
    fn from(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Valid => pb::Verdict::Valid,
            Verdict::CodeRevoked => pb::Verdict::CodeRevoked,
            Verdict::AlreadyUsed => pb::Verdict::AlreadyUsed,
            Verdict::UnknownDigits => pb::Verdict::UnknownDigits,
            Verdict::IssuerUnreachable => pb::Verdict::IssuerUnreachable,
            Verdict::VerifiedOffline => pb::Verdict::VerifiedOffline,
            Verdict::DoubleUse => pb::Verdict::DoubleUse,
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
}

/// The domain verdict of an API verdict (a client reading responses); `None` for unspecified.
pub fn verdict_of(verdict: pb::Verdict) -> Option<Verdict> {
    Verdict::all().find(|domain| pb::Verdict::from(*domain) == verdict)
}

impl From<PreviousUse> for pb::PreviousUse {
    fn from(used: PreviousUse) -> Self {
        pb::PreviousUse { used_at_unix: used.at.unix(), centre: used.centre.to_string() }
    }
}

impl From<Verification> for pb::VerifyCodeResponse {
    fn from(verification: Verification) -> Self {
        pb::VerifyCodeResponse {
            verdict: pb::Verdict::from(verification.verdict).into(),
            detail: verification.detail.unwrap_or_default(),
            claims: verification.claims.as_ref().map(Into::into),
            live: verification.verification_id.is_some().then(|| verification.live.as_ref().into()),
            differences: verification.differences.iter().map(|name| (*name).to_owned()).collect(),
            previous_use: verification.previous_use.map(Into::into),
            verification_id: verification.verification_id.unwrap_or_default(),
        }
    }
}

impl From<IssuedCode> for pb::IssueCodeResponse {
    fn from(issued: IssuedCode) -> Self {
        let (qr_png, qr_svg) = match issued.qr {
            Some(QrImage::Png(png)) => (png, String::new()),
            Some(QrImage::Svg(svg)) => (Vec::new(), svg),
            None => (Vec::new(), String::new()),
        };
        pb::IssueCodeResponse {
            text: issued.text,
            digits: issued.digits.as_ref().map(ToString::to_string).unwrap_or_default(),
            network_digits: issued
                .digits
                .as_ref()
                .map(|digits| crate::code::digits::network_form(issued.claims.issuer, digits))
                .unwrap_or_default(),
            code_id: issued.claims.code_id.to_string(),
            expires_at_unix: issued.claims.expires_at().unix(),
            qr_png,
            qr_svg,
        }
    }
}

impl From<PublishOutcome> for pb::PublishStatusesResponse {
    fn from(outcome: PublishOutcome) -> Self {
        pb::PublishStatusesResponse {
            applied: outcome.counts.applied,
            ignored_not_newer: outcome.counts.ignored_not_newer,
            rejected: outcome
                .rejected
                .into_iter()
                .map(|(index, reason)| pb::RejectedRecord { index: index as u32, reason: reason.as_str().into() })
                .collect(),
        }
    }
}

impl From<UsageEntry> for pb::UsageEntry {
    fn from(entry: UsageEntry) -> Self {
        pb::UsageEntry {
            at_unix: entry.at.unix(),
            centre: entry.centre.to_string(),
            purpose: entry.purpose.wire(),
            result: pb::Verdict::from(entry.result).into(),
            code_id: entry.code_id.to_string(),
            count: entry.count,
            first_at_unix: entry.first_at.unix(),
        }
    }
}

impl From<TrustListSize> for pb::ReloadTrustListResponse {
    fn from(size: TrustListSize) -> Self {
        pb::ReloadTrustListResponse { centres: size.centres as u32, keys: size.keys as u32 }
    }
}

impl From<LoanOutcome> for pb::EvaluateOffsiteLoanResponse {
    fn from(outcome: LoanOutcome) -> Self {
        let LoanOutcome { evaluation, verification_ids } = outcome;
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
                .map(|step| pb::LoanStep {
                    description: step.description,
                    amount_fen: step.amount.map(|amount| amount.0),
                })
                .collect(),
            figures: evaluation
                .figures
                .into_iter()
                .map(|figure| pb::LoanFigure {
                    name: figure.name,
                    value: figure.value,
                    source: name_of(&figure.source),
                })
                .collect(),
            verification_ids,
        }
    }
}

impl TryFrom<pb::ConsumeCodeRequest> for ConsumeCommand {
    type Error = ServiceError;

    fn try_from(request: pb::ConsumeCodeRequest) -> Result<Self, ServiceError> {
        if request.text.is_empty() {
            return Err(invalid("text", "give the code text"));
        }
        let CodeInput::Text(text) = scanned_text(request.text) else { unreachable!("scanned_text gives text") };
        Ok(ConsumeCommand {
            text,
            verifying_centre: centre("verifying_centre", &request.verifying_centre)?,
            request_id: request_id(&request.request_id)?.ok_or_else(|| invalid("request_id", "is required"))?,
            accepted_offline_at: (request.accepted_offline_at_unix != 0)
                .then(|| Timestamp::from_unix(request.accepted_offline_at_unix)),
        })
    }
}

/// The issuer node's answer, read back by the verifying node (the `From<Verification>` above
/// in reverse, for the fields a remote answer carries).
impl TryFrom<pb::VerifyCodeResponse> for RemoteAnswer {
    type Error = ServiceError;

    fn try_from(response: pb::VerifyCodeResponse) -> Result<Self, ServiceError> {
        let verdict = pb::Verdict::try_from(response.verdict)
            .ok()
            .and_then(verdict_of)
            .ok_or_else(|| invalid("verdict", "unknown"))?;
        let live = match response.live {
            Some(live) if live.found => Some(RegistryRecord {
                status: deposit_status("live.status", live.status)?,
                masked_name: live.masked_name,
                masked_id_number: live.masked_id_number,
                published_at: Timestamp::from_unix(live.published_at_unix),
            }),
            _ => None,
        };
        let previous_use = match response.previous_use {
            Some(used) => Some(PreviousUse {
                at: Timestamp::from_unix(used.used_at_unix),
                centre: centre("previous_use.centre", &used.centre)?,
            }),
            None => None,
        };
        Ok(RemoteAnswer {
            verdict,
            detail: Some(response.detail).filter(|detail| !detail.is_empty()),
            live,
            previous_use,
            verification_id: Some(response.verification_id).filter(|id| !id.is_empty()),
        })
    }
}

/// 32 bytes of an ed25519 public key that is not a small-order point.
fn public_key(field: &str, bytes: &[u8]) -> Result<VerifyingKey, ServiceError> {
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| invalid(field, "must be 32 bytes"))?;
    VerifyingKey::from_bytes(&bytes)
        .ok()
        .filter(|key| !key.is_weak())
        .ok_or_else(|| invalid(field, "is not a usable ed25519 public key"))
}

fn key_id(field: &str, text: &str) -> Result<KeyId, ServiceError> {
    text.parse().map_err(|error| invalid(field, error))
}

impl TryFrom<pb::SubmitKeyChangeRequest> for (CentreCode, KeyChange) {
    type Error = ServiceError;

    fn try_from(request: pb::SubmitKeyChangeRequest) -> Result<Self, ServiceError> {
        use pb::submit_key_change_request::Change;
        let centre = centre("centre", &request.centre)?;
        let change = match request.change {
            Some(Change::Add(add)) => KeyChange::Add {
                public_key: public_key("add.public_key", &add.public_key)?,
                name: Some(add.centre_name).filter(|name| !name.is_empty()),
            },
            Some(Change::Rotate(rotate)) => {
                let signature: [u8; 64] = rotate
                    .signature
                    .as_slice()
                    .try_into()
                    .map_err(|_| invalid("rotate.signature", "must be 64 bytes"))?;
                KeyChange::Rotate {
                    new_public_key: public_key("rotate.new_public_key", &rotate.new_public_key)?,
                    current_key_id: key_id("rotate.current_key_id", &rotate.current_key_id)?,
                    signature: Signature::from_bytes(&signature),
                }
            }
            Some(Change::Revoke(revoke)) => KeyChange::Revoke { key_id: key_id("revoke.key_id", &revoke.key_id)? },
            Some(Change::SetNode(set_node)) => KeyChange::SetNode { address: set_node.address },
            None => return Err(invalid("change", "give add, rotate, revoke or set_node")),
        };
        Ok((centre, change))
    }
}

impl TryFrom<pb::ShowCodeRequest> for (String, CodeRequest) {
    type Error = ServiceError;

    fn try_from(request: pb::ShowCodeRequest) -> Result<Self, ServiceError> {
        let request_for = CodeRequest {
            purpose: purpose("purpose", request.purpose)?.unwrap_or(Purpose::OffsiteLoan),
            audience: optional_centre("audience_centre", &request.audience_centre)?,
            lifetime_seconds: None,
            qr: Some(QrFormat::Svg),
            digits: true,
        };
        Ok((request.session, request_for))
    }
}

impl TryFrom<pb::RevokeMyCodeRequest> for (String, CodeId) {
    type Error = ServiceError;

    fn try_from(request: pb::RevokeMyCodeRequest) -> Result<Self, ServiceError> {
        Ok((request.session, code_id("code_id", &request.code_id)?))
    }
}

impl TryFrom<pb::OpenMemberSessionRequest> for (Member, Option<u32>) {
    type Error = ServiceError;

    fn try_from(request: pb::OpenMemberSessionRequest) -> Result<Self, ServiceError> {
        let member = member("issuer_centre", &request.issuer_centre, &request.id_number)?;
        Ok((member, (request.lifetime_seconds != 0).then_some(request.lifetime_seconds)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_domain_verdict_has_its_own_api_verdict_and_back() {
        for verdict in Verdict::all() {
            let api = pb::Verdict::from(verdict);
            assert_eq!(api.as_str_name(), format!("VERDICT_{verdict}"));
            assert_eq!(verdict_of(api), Some(verdict));
        }
        assert_eq!(verdict_of(pb::Verdict::Unspecified), None);
    }
}
