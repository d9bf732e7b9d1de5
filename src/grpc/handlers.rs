//! Thin handlers, one impl per service: decode (proto -> validated command, `convert`) -> call the use case -> encode; every error through the one map (`status`).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::pb::v1 as pb;
use crate::service::{Liangma, Member, PublishCommand, RevokeCommand};
use crate::store::Store;

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

#[tonic::async_trait]
impl<S: Store> pb::verifier_service_server::VerifierService for Handlers<S> {
    async fn verify_code(
        &self,
        request: Request<pb::VerifyCodeRequest>,
    ) -> Result<Response<pb::VerifyCodeResponse>, Status> {
        let verification = self.service.verify(request.into_inner().try_into()?).await?;
        tracing::info!(
            verdict = verification.verdict.as_str(),
            code_id = verification.claims.as_ref().map(|claims| tracing::field::display(claims.code_id)),
            "verified"
        );
        Ok(Response::new(verification.into()))
    }
}

#[tonic::async_trait]
impl<S: Store> pb::issuer_service_server::IssuerService for Handlers<S> {
    async fn issue_code(
        &self,
        request: Request<pb::IssueCodeRequest>,
    ) -> Result<Response<pb::IssueCodeResponse>, Status> {
        let issued = self.service.issue(request.into_inner().try_into()?).await?;
        tracing::info!(code_id = %issued.claims.code_id, issuer = %issued.claims.issuer, "issued");
        Ok(Response::new(issued.into()))
    }

    async fn revoke_code(
        &self,
        request: Request<pb::RevokeCodeRequest>,
    ) -> Result<Response<pb::RevokeCodeResponse>, Status> {
        let command: RevokeCommand = request.into_inner().try_into()?;
        let code_id = command.code_id;
        self.service.revoke_code(command).await?;
        tracing::info!(%code_id, "code revoked");
        Ok(Response::new(pb::RevokeCodeResponse {}))
    }
}

#[tonic::async_trait]
impl<S: Store> pb::registry_service_server::RegistryService for Handlers<S> {
    async fn publish_statuses(
        &self,
        request: Request<pb::PublishStatusesRequest>,
    ) -> Result<Response<pb::PublishStatusesResponse>, Status> {
        let command: PublishCommand = request.into_inner().try_into()?;
        let centre = command.centre;
        let outcome = self.service.publish(command).await?;
        let (counts, rejected) = (outcome.counts, outcome.rejected.len());
        tracing::info!(%centre, applied = counts.applied, ignored = counts.ignored_not_newer, rejected, "published");
        Ok(Response::new(outcome.into()))
    }

    async fn lookup_status(
        &self,
        request: Request<pb::LookupStatusRequest>,
    ) -> Result<Response<pb::LookupStatusResponse>, Status> {
        let live = self.service.lookup(&request.into_inner().verification_id).await?;
        Ok(Response::new(pb::LookupStatusResponse { live: Some(live.as_ref().into()) }))
    }
}

#[tonic::async_trait]
impl<S: Store> pb::usage_record_service_server::UsageRecordService for Handlers<S> {
    async fn list_usage(
        &self,
        request: Request<pb::ListUsageRequest>,
    ) -> Result<Response<pb::ListUsageResponse>, Status> {
        let member: Member = request.into_inner().try_into()?;
        let entries = self.service.usage(&member).await?;
        Ok(Response::new(pb::ListUsageResponse { entries: entries.into_iter().map(Into::into).collect() }))
    }
}

#[tonic::async_trait]
impl<S: Store> pb::trust_directory_service_server::TrustDirectoryService for Handlers<S> {
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
        let size = self.service.reload_trust_list()?;
        tracing::info!(centres = size.centres, keys = size.keys, "trust list reloaded");
        Ok(Response::new(size.into()))
    }
}

#[tonic::async_trait]
impl<S: Store> pb::loan_service_server::LoanService for Handlers<S> {
    async fn evaluate_offsite_loan(
        &self,
        request: Request<pb::EvaluateOffsiteLoanRequest>,
    ) -> Result<Response<pb::EvaluateOffsiteLoanResponse>, Status> {
        let outcome = self.service.evaluate_loan(request.into_inner().try_into()?).await?;
        let evaluation = &outcome.evaluation;
        tracing::info!(policy = %evaluation.policy, eligible = evaluation.eligible, decided_by = ?evaluation.decided_by, "loan evaluated");
        Ok(Response::new(outcome.into()))
    }
}
