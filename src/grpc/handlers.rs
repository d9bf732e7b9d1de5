//! Thin handlers, one impl per service: decode (proto -> validated command, `convert`) -> call the use case -> encode; every error through the one map (`status`).

use std::sync::Arc;

use tonic::transport::server::TlsConnectInfo;
use tonic::{Request, Response, Status};

use super::connection::ConnectionInfo;
use super::digits_limit::DigitsLimit;
use crate::code::CentreCode;
use crate::federation::directory::Directory;
use crate::federation::identity::{Caller, Role};
use crate::pb::v1 as pb;
use crate::service::{ConsumeCommand, Liangma, Member, PublishCommand, RevokeCommand, ServiceError};
use crate::store::Store;
use crate::trust::directory::Freshness;

/// Serves every liangma service from one [`Liangma`].
pub struct Handlers<S> {
    service: Arc<Liangma<S>>,
    directory: Option<Arc<Directory>>,
    tls: bool,
    digits: Arc<DigitsLimit>,
}

impl<S> Handlers<S> {
    /// Handlers over `service`; `tls`: the listener requires client certificates, so every
    /// call is authorized by the roles its certificate grants (without TLS every caller is
    /// trusted, which only loopback or the loudly logged insecure setting allow).
    pub fn new(service: Arc<Liangma<S>>, directory: Option<Arc<Directory>>, tls: bool) -> Self {
        Self { service, directory, tls, digits: Arc::new(DigitsLimit::new(30)) }
    }

    /// Verifications by digits one caller may make per minute.
    pub fn with_digits_limit(mut self, per_minute: u32) -> Self {
        self.digits = Arc::new(DigitsLimit::new(per_minute));
        self
    }

    /// Refuses a caller past its rate of digit lookups: keyed by its certificate's grants and
    /// its address, so that desks sharing a centre's certificate count apart.
    fn digits_allowed<T>(&self, request: &Request<T>, caller: &Caller) -> Result<(), Status> {
        let address = request.remote_addr().map(|address| address.ip().to_string()).unwrap_or_default();
        let key = match caller {
            Caller::Certified { grants, .. } => {
                let grants: Vec<String> = grants.iter().map(|grant| grant.uri()).collect();
                format!("{}@{address}", grants.join(","))
            }
            _ => address,
        };
        if self.digits.allow(&key) {
            return Ok(());
        }
        crate::metrics::shed("digits");
        tracing::warn!(caller = %key, "digit lookups over the rate: refused (guessing?)");
        Err(Status::resource_exhausted("too many verifications by digits from this caller; wait a minute"))
    }

    /// Who calls, from the connection's client certificate.
    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        if !self.tls {
            return Ok(Caller::Unauthenticated);
        }
        let certificates =
            request.extensions().get::<TlsConnectInfo<ConnectionInfo>>().and_then(TlsConnectInfo::peer_certs);
        match certificates.as_ref().and_then(|chain| chain.first()) {
            None => Ok(Caller::Anonymous),
            Some(leaf) => Caller::from_certificate(leaf).map_err(Status::from),
        }
    }

    /// Refuses the call unless its caller holds `role` for `centre`.
    fn require<T>(&self, request: &Request<T>, role: Role, centre: CentreCode) -> Result<Caller, Status> {
        let caller = self.caller(request)?;
        caller.require(role, centre)?;
        Ok(caller)
    }
}

impl<S: Store> Handlers<S> {
    /// This node's counters: verification, loan evaluation, lookups.
    fn require_counter<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        self.require(request, Role::Counter, self.service.centre())
    }
}

impl<S> Clone for Handlers<S> {
    fn clone(&self) -> Self {
        Self {
            service: Arc::clone(&self.service),
            directory: self.directory.clone(),
            tls: self.tls,
            digits: Arc::clone(&self.digits),
        }
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
        let caller = self.require_counter(&request)?;
        if matches!(&request.get_ref().code, Some(pb::verify_code_request::Code::Digits(_))) {
            self.digits_allowed(&request, &caller)?;
        }
        let command: crate::service::VerifyCommand = request.into_inner().try_into()?;
        // The caller's request id ties the log line to the counter's retry (it names no member).
        let request_id = command.request_id.as_ref().map(|id| id.as_str().to_owned());
        let verification = self.service.verify(command).await?;
        crate::metrics::verification(verification.verdict, false);
        crate::telemetry::record_verdict(verification.verdict.as_str());
        tracing::info!(
            verdict = verification.verdict.as_str(),
            code_id = verification.claims.as_ref().map(|claims| tracing::field::display(claims.code_id)),
            request_id,
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
        let caller = self.caller(&request)?;
        let command: crate::service::IssueCommand = request.into_inner().try_into()?;
        caller.require(Role::Core, command.member.centre)?;
        let issued = self.service.issue(command).await?;
        crate::metrics::issued(issued.claims.issuer);
        tracing::info!(code_id = %issued.claims.code_id, issuer = %issued.claims.issuer, "issued");
        Ok(Response::new(issued.into()))
    }

    async fn revoke_code(
        &self,
        request: Request<pb::RevokeCodeRequest>,
    ) -> Result<Response<pb::RevokeCodeResponse>, Status> {
        let caller = self.caller(&request)?;
        let command: RevokeCommand = request.into_inner().try_into()?;
        caller.require(Role::Core, command.member.centre)?;
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
        let caller = self.caller(&request)?;
        let command: PublishCommand = request.into_inner().try_into()?;
        let centre = command.centre;
        caller.require(Role::Core, centre)?;
        let outcome = self.service.publish(command).await?;
        let (counts, rejected) = (outcome.counts, outcome.rejected.len());
        tracing::info!(%centre, applied = counts.applied, ignored = counts.ignored_not_newer, rejected, "published");
        Ok(Response::new(outcome.into()))
    }

    async fn lookup_status(
        &self,
        request: Request<pb::LookupStatusRequest>,
    ) -> Result<Response<pb::LookupStatusResponse>, Status> {
        self.require_counter(&request)?;
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
        let caller = self.caller(&request)?;
        let member: Member = request.into_inner().try_into()?;
        caller.require(Role::Core, member.centre)?;
        let entries = self.service.usage(&member).await?;
        Ok(Response::new(pb::ListUsageResponse { entries: entries.into_iter().map(Into::into).collect() }))
    }
}

#[tonic::async_trait]
impl<S: Store> pb::trust_directory_service_server::TrustDirectoryService for Handlers<S> {
    async fn get_trust_list(
        &self,
        request: Request<pb::GetTrustListRequest>,
    ) -> Result<Response<pb::GetTrustListResponse>, Status> {
        self.caller(&request)?.require_known()?;
        let trust = self.service.trust();
        let now = self.service.now();
        let mut response = pb::GetTrustListResponse { trust_list_json: trust.list().to_json(), ..Default::default() };
        if let crate::service::TrustInForce::Signed(signed) = trust.as_ref() {
            response.sequence = signed.issue.sequence;
            response.next_update_unix = signed.issue.next_update.unix();
            response.expires_at_unix = signed.issue.expires_at.unix();
            response.set_freshness(match signed.freshness(now) {
                Freshness::Fresh => pb::Freshness::Fresh,
                Freshness::Stale => pb::Freshness::Stale,
                Freshness::Expired => pb::Freshness::Expired,
            });
        }
        Ok(Response::new(response))
    }

    async fn reload_trust_list(
        &self,
        request: Request<pb::ReloadTrustListRequest>,
    ) -> Result<Response<pb::ReloadTrustListResponse>, Status> {
        self.caller(&request)?.require_national_or(Some((Role::Operator, self.service.centre())))?;
        let size = self.service.reload_trust_list()?;
        tracing::info!(centres = size.centres, keys = size.keys, "trust list reloaded");
        Ok(Response::new(size.into()))
    }

    async fn get_signed_trust_list(
        &self,
        request: Request<pb::GetSignedTrustListRequest>,
    ) -> Result<Response<pb::GetSignedTrustListResponse>, Status> {
        self.caller(&request)?.require_known()?;
        let directory = self.directory.as_ref().ok_or(ServiceError::NotTheDirectory)?;
        let (sequence, text) = directory.signed_since(request.into_inner().known_sequence);
        Ok(Response::new(pb::GetSignedTrustListResponse {
            sequence,
            unchanged: text.is_none(),
            signed_list: text.map(|text| text.to_string()).unwrap_or_default(),
        }))
    }

    async fn submit_key_change(
        &self,
        request: Request<pb::SubmitKeyChangeRequest>,
    ) -> Result<Response<pb::SubmitKeyChangeResponse>, Status> {
        let caller = self.caller(&request)?;
        let directory = self.directory.as_ref().ok_or(ServiceError::NotTheDirectory)?;
        let (centre, change) = request.into_inner().try_into()?;
        let known_centre = self.service.trust().list().centre(centre).is_some();
        // A centre new to the list is the national operators' to admit; a known centre's
        // operators change its own entry.
        caller.require_national_or(known_centre.then_some((Role::Operator, centre)))?;
        let kind = match &change {
            crate::federation::directory::KeyChange::Add { .. } => "add",
            crate::federation::directory::KeyChange::Rotate { .. } => "rotate",
            crate::federation::directory::KeyChange::Revoke { .. } => "revoke",
            crate::federation::directory::KeyChange::SetNode { .. } => "set-node",
        };
        let (sequence, key_id) =
            directory.apply(centre, change).map_err(|error| ServiceError::KeyChangeRefused(error.to_string()))?;
        self.service.install_signed_list(directory.signed_list()).map_err(|e| ServiceError::Internal(e.to_string()))?;
        tracing::info!(%centre, change = kind, sequence, "key change signed into the directory's list");
        Ok(Response::new(pb::SubmitKeyChangeResponse {
            sequence,
            key_id: key_id.map(|id| id.to_string()).unwrap_or_default(),
        }))
    }
}

#[tonic::async_trait]
impl<S: Store> pb::node_service_server::NodeService for Handlers<S> {
    async fn consume_code(
        &self,
        request: Request<pb::ConsumeCodeRequest>,
    ) -> Result<Response<pb::VerifyCodeResponse>, Status> {
        let caller = self.caller(&request)?;
        let command: ConsumeCommand = request.into_inner().try_into()?;
        // The usage entry names the verifying centre its node's certificate vouches for.
        caller.require(Role::Node, command.verifying_centre)?;
        let (verifying_centre, request_id) = (command.verifying_centre, command.request_id.as_str().to_owned());
        let verification = self.service.consume_for(command).await?;
        crate::metrics::verification(verification.verdict, true);
        crate::telemetry::record_verdict(verification.verdict.as_str());
        tracing::info!(verdict = verification.verdict.as_str(), %verifying_centre, request_id, "consumed for another centre");
        Ok(Response::new(verification.into()))
    }

    async fn resolve_digits(
        &self,
        request: Request<pb::ResolveDigitsRequest>,
    ) -> Result<Response<pb::ResolveDigitsResponse>, Status> {
        // Not rate-limited per caller: a node asks for all its counters, each limited there.
        self.caller(&request)?.require_any(Role::Node)?;
        let text = self.service.resolve_digits_for(&request.into_inner().digits).await?;
        Ok(Response::new(pb::ResolveDigitsResponse { found: text.is_some(), text: text.unwrap_or_default() }))
    }
}

#[tonic::async_trait]
impl<S: Store> pb::loan_service_server::LoanService for Handlers<S> {
    async fn evaluate_offsite_loan(
        &self,
        request: Request<pb::EvaluateOffsiteLoanRequest>,
    ) -> Result<Response<pb::EvaluateOffsiteLoanResponse>, Status> {
        self.require_counter(&request)?;
        let command: crate::service::LoanCommand = request.into_inner().try_into()?;
        let request_id = command.request_id.as_ref().map(|id| id.as_str().to_owned());
        let outcome = self.service.evaluate_loan(command).await?;
        let evaluation = &outcome.evaluation;
        tracing::info!(policy = %evaluation.policy, eligible = evaluation.eligible, decided_by = ?evaluation.decided_by,
            request_id, "loan evaluated");
        Ok(Response::new(outcome.into()))
    }
}

#[tonic::async_trait]
impl<S: Store> pb::member_page_service_server::MemberPageService for Handlers<S> {
    async fn open_member_session(
        &self,
        request: Request<pb::OpenMemberSessionRequest>,
    ) -> Result<Response<pb::OpenMemberSessionResponse>, Status> {
        let caller = self.caller(&request)?;
        let (member, lifetime): (Member, Option<u32>) = request.into_inner().try_into()?;
        caller.require(Role::Core, member.centre)?;
        let session = self.service.open_member_session(&member, lifetime).await?;
        tracing::info!(centre = %member.centre, "member page session opened");
        Ok(Response::new(pb::OpenMemberSessionResponse {
            page_path: format!("/code/#session={}", session.token),
            session: session.token,
            expires_at_unix: session.expires_at.unix(),
        }))
    }

    // The page's calls carry the session instead of a certificate: it names one member, so they
    // need no role (a browser holds no client certificate).
    async fn show_code(
        &self,
        request: Request<pb::ShowCodeRequest>,
    ) -> Result<Response<pb::IssueCodeResponse>, Status> {
        let (session, code): (String, crate::service::CodeRequest) = request.into_inner().try_into()?;
        let issued = self.service.show_code(&session, code).await?;
        crate::metrics::issued(issued.claims.issuer);
        tracing::info!(code_id = %issued.claims.code_id, issuer = %issued.claims.issuer, "issued to a member page");
        Ok(Response::new(issued.into()))
    }

    async fn list_my_usage(
        &self,
        request: Request<pb::ListMyUsageRequest>,
    ) -> Result<Response<pb::ListUsageResponse>, Status> {
        let entries = self.service.my_usage(&request.into_inner().session).await?;
        Ok(Response::new(pb::ListUsageResponse { entries: entries.into_iter().map(Into::into).collect() }))
    }

    async fn revoke_my_code(
        &self,
        request: Request<pb::RevokeMyCodeRequest>,
    ) -> Result<Response<pb::RevokeCodeResponse>, Status> {
        let (session, code_id): (String, crate::code::CodeId) = request.into_inner().try_into()?;
        self.service.revoke_my_code(&session, code_id).await?;
        tracing::info!(%code_id, "code revoked from a member page");
        Ok(Response::new(pb::RevokeCodeResponse {}))
    }
}
