//! Thin handlers, one impl per service: proto -> validated domain values -> service -> proto.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert;
use crate::code::Fen;
use crate::loan::House;
use crate::pb::v1 as pb;
use crate::service::{CodeInput, IssueCommand, Liangma, LoanCommand, MemberStatus, PartyInput, QrFormat, QrImage};
use crate::store::{CodeStore, RegistryStore};

/// Serves every liangma service from one [`Liangma`].
pub struct Handlers<S> {
    service: Arc<Liangma<S>>,
}

impl<S> Handlers<S> {
    /// Handlers over `service`.
    pub fn new(service: Arc<Liangma<S>>) -> Self {
        Self { service }
    }
}

impl<S> Clone for Handlers<S> {
    fn clone(&self) -> Self {
        Self { service: Arc::clone(&self.service) }
    }
}

impl<S> std::fmt::Debug for Handlers<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handlers")
    }
}

/// A code as a scanner typed it: only a trailing line ending is removed (a space is a base45
/// character and may end a code).
fn scanned_text(mut text: String) -> CodeInput {
    let kept = text.trim_end_matches(['\r', '\n']).len();
    text.truncate(kept);
    CodeInput::Text(text)
}

#[tonic::async_trait]
impl<S: RegistryStore + CodeStore> pb::verifier_service_server::VerifierService for Handlers<S> {
    async fn verify_code(
        &self,
        request: Request<pb::VerifyCodeRequest>,
    ) -> Result<Response<pb::VerifyCodeResponse>, Status> {
        let request = request.into_inner();
        let input = match request.code {
            Some(pb::verify_code_request::Code::Text(text)) if !text.is_empty() => scanned_text(text),
            Some(pb::verify_code_request::Code::Digits(digits)) if !digits.is_empty() => CodeInput::Digits(digits),
            _ => return Err(Status::invalid_argument("code: give the code text or its digits")),
        };
        let purpose = convert::purpose("purpose", request.purpose)?;
        let request_id = convert::request_id("request_id", &request.request_id)?;
        let verification = self.service.verify(input, purpose, request_id).await?;
        tracing::info!(
            verdict = verification.verdict.as_str(),
            code_id = verification.claims.as_ref().map(|claims| tracing::field::display(claims.code_id)),
            "verified"
        );
        Ok(Response::new(pb::VerifyCodeResponse {
            verdict: convert::verdict(verification.verdict).into(),
            detail: verification.detail.unwrap_or_default(),
            claims: verification.claims.as_ref().map(convert::claims_view),
            live: verification.verification_id.is_some().then(|| convert::live_status(verification.live.as_ref())),
            differences: verification.differences.iter().map(|name| (*name).to_owned()).collect(),
            previous_use: verification
                .previous_use
                .map(|used| pb::PreviousUse { used_at_unix: used.at.unix(), centre: used.centre.to_string() }),
            verification_id: verification.verification_id.unwrap_or_default(),
        }))
    }
}

#[tonic::async_trait]
impl<S: RegistryStore + CodeStore> pb::issuer_service_server::IssuerService for Handlers<S> {
    async fn issue_code(
        &self,
        request: Request<pb::IssueCodeRequest>,
    ) -> Result<Response<pb::IssueCodeResponse>, Status> {
        let request = request.into_inner();
        let command = IssueCommand {
            centre: convert::centre("issuer_centre", &request.issuer_centre)?,
            id_number: convert::id_number("id_number", &request.id_number)?,
            purpose: convert::required_purpose("purpose", request.purpose)?,
            audience: convert::optional_centre("audience_centre", &request.audience_centre)?,
            lifetime_seconds: (request.lifetime_seconds != 0).then_some(request.lifetime_seconds),
            qr: match pb::QrFormat::try_from(request.qr_format) {
                Ok(pb::QrFormat::None) => None,
                Ok(pb::QrFormat::Png) => Some(QrFormat::Png),
                Ok(pb::QrFormat::Svg) => Some(QrFormat::Svg),
                Err(_) => return Err(Status::invalid_argument("qr_format: unknown value")),
            },
        };
        let issued = self.service.issue(command).await?;
        tracing::info!(code_id = %issued.claims.code_id, issuer = %issued.claims.issuer, "issued");
        let (qr_png, qr_svg) = match issued.qr {
            Some(QrImage::Png(png)) => (png, String::new()),
            Some(QrImage::Svg(svg)) => (Vec::new(), svg),
            None => (Vec::new(), String::new()),
        };
        Ok(Response::new(pb::IssueCodeResponse {
            text: issued.text,
            digits: issued.digits.to_string(),
            code_id: issued.claims.code_id.to_string(),
            expires_at_unix: issued.claims.expires_at().unix(),
            qr_png,
            qr_svg,
        }))
    }

    async fn revoke_code(
        &self,
        request: Request<pb::RevokeCodeRequest>,
    ) -> Result<Response<pb::RevokeCodeResponse>, Status> {
        let request = request.into_inner();
        let centre = convert::centre("issuer_centre", &request.issuer_centre)?;
        let id_number = convert::id_number("id_number", &request.id_number)?;
        let code_id = convert::code_id("code_id", &request.code_id)?;
        self.service.revoke_code(centre, &id_number, code_id).await?;
        tracing::info!(%code_id, "code revoked");
        Ok(Response::new(pb::RevokeCodeResponse {}))
    }
}

#[tonic::async_trait]
impl<S: RegistryStore + CodeStore> pb::registry_service_server::RegistryService for Handlers<S> {
    async fn publish_statuses(
        &self,
        request: Request<pb::PublishStatusesRequest>,
    ) -> Result<Response<pb::PublishStatusesResponse>, Status> {
        let request = request.into_inner();
        let centre = convert::centre("centre", &request.centre)?;
        let members = request
            .records
            .into_iter()
            .enumerate()
            .map(|(index, record)| {
                Ok(MemberStatus {
                    id_number: convert::id_number(&format!("records[{index}].id_number"), &record.id_number)?,
                    name: record.name,
                    status: convert::deposit_status(&format!("records[{index}].status"), record.status)?,
                })
            })
            .collect::<Result<Vec<_>, crate::service::ServiceError>>()?;
        let outcome = self.service.publish(centre, members).await?;
        let counts = outcome.counts;
        let rejected = outcome.rejected.len();
        tracing::info!(%centre, applied = counts.applied, ignored = counts.ignored_not_newer, rejected, "published");
        Ok(Response::new(pb::PublishStatusesResponse {
            applied: counts.applied,
            ignored_not_newer: counts.ignored_not_newer,
            rejected: outcome
                .rejected
                .into_iter()
                .map(|(index, reason)| pb::RejectedRecord { index: index as u32, reason: reason.as_str().into() })
                .collect(),
        }))
    }

    async fn lookup_status(
        &self,
        request: Request<pb::LookupStatusRequest>,
    ) -> Result<Response<pb::LookupStatusResponse>, Status> {
        let live = self.service.lookup(&request.into_inner().verification_id).await?;
        Ok(Response::new(pb::LookupStatusResponse { live: Some(convert::live_status(live.as_ref())) }))
    }
}

#[tonic::async_trait]
impl<S: RegistryStore + CodeStore> pb::usage_record_service_server::UsageRecordService for Handlers<S> {
    async fn list_usage(
        &self,
        request: Request<pb::ListUsageRequest>,
    ) -> Result<Response<pb::ListUsageResponse>, Status> {
        let request = request.into_inner();
        let centre = convert::centre("issuer_centre", &request.issuer_centre)?;
        let id_number = convert::id_number("id_number", &request.id_number)?;
        let entries = self.service.usage(centre, &id_number).await?;
        Ok(Response::new(pb::ListUsageResponse { entries: entries.into_iter().map(convert::usage_entry).collect() }))
    }
}

#[tonic::async_trait]
impl<S: RegistryStore + CodeStore> pb::trust_directory_service_server::TrustDirectoryService for Handlers<S> {
    async fn get_trust_list(
        &self,
        _request: Request<pb::GetTrustListRequest>,
    ) -> Result<Response<pb::GetTrustListResponse>, Status> {
        Ok(Response::new(pb::GetTrustListResponse { trust_list_json: self.service.trust_list_json() }))
    }

    async fn reload_trust_list(
        &self,
        _request: Request<pb::ReloadTrustListRequest>,
    ) -> Result<Response<pb::ReloadTrustListResponse>, Status> {
        let (centres, keys) = self.service.reload_trust_list()?;
        tracing::info!(centres, keys, "trust list reloaded");
        Ok(Response::new(pb::ReloadTrustListResponse { centres: centres as u32, keys: keys as u32 }))
    }
}

fn party(field: &str, party: Option<pb::PartyCode>) -> Result<Option<PartyInput>, Status> {
    let Some(code) = party.and_then(|party| party.code) else { return Ok(None) };
    Ok(Some(match code {
        pb::party_code::Code::Text(text) if !text.is_empty() => PartyInput::Code(scanned_text(text)),
        pb::party_code::Code::Digits(digits) if !digits.is_empty() => PartyInput::Code(CodeInput::Digits(digits)),
        pb::party_code::Code::VerificationId(id) if !id.is_empty() => PartyInput::Verified(id),
        _ => return Err(Status::invalid_argument(format!("{field}: empty"))),
    }))
}

#[tonic::async_trait]
impl<S: RegistryStore + CodeStore> pb::loan_service_server::LoanService for Handlers<S> {
    async fn evaluate_offsite_loan(
        &self,
        request: Request<pb::EvaluateOffsiteLoanRequest>,
    ) -> Result<Response<pb::EvaluateOffsiteLoanResponse>, Status> {
        let request = request.into_inner();
        let borrower = party("borrower", request.borrower)?
            .ok_or_else(|| Status::invalid_argument("borrower: give a code, its digits or a verification id"))?;
        let house = match pb::HouseKind::try_from(request.house_kind) {
            Ok(pb::HouseKind::New) => House::New,
            Ok(pb::HouseKind::SecondHand) => House::SecondHand { building_age_years: request.building_age_years },
            _ => return Err(Status::invalid_argument("house_kind: NEW or SECOND_HAND")),
        };
        let command = LoanCommand {
            request_id: convert::request_id("request_id", &request.request_id)?,
            borrower,
            co_borrower: party("co_borrower", request.co_borrower)?,
            house_price: Fen(request.house_price_fen),
            house,
            requested_term_years: (request.requested_term_years != 0).then_some(request.requested_term_years),
        };
        let outcome = self.service.evaluate_loan(command).await?;
        let evaluation = &outcome.evaluation;
        tracing::info!(policy = %evaluation.policy, eligible = evaluation.eligible, decided_by = ?evaluation.decided_by, "loan evaluated");
        Ok(Response::new(convert::evaluation(outcome)))
    }
}
