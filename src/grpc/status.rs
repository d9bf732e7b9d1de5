//! The one place where service errors become gRPC statuses; internal details are logged, never sent.

use tonic::Status;

use crate::federation::identity::AccessError;
use crate::service::ServiceError;

impl From<AccessError> for Status {
    fn from(error: AccessError) -> Self {
        let message = error.to_string();
        match error {
            AccessError::NoCertificate | AccessError::BadCertificate => Status::unauthenticated(message),
            AccessError::NotPermitted { .. } | AccessError::NoRole(_) | AccessError::NotNationalOperator => {
                tracing::warn!(%message, "call refused");
                Status::permission_denied(message)
            }
        }
    }
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        let message = error.to_string();
        match error {
            ServiceError::InvalidRequest { .. }
            | ServiceError::NotIssuedHere(_)
            | ServiceError::PurposeNotServed(_)
            | ServiceError::SameMemberTwice => Status::invalid_argument(message),
            ServiceError::NotPublished(_) | ServiceError::NoLiveCode => Status::not_found(message),
            ServiceError::NotGranted => Status::permission_denied(message),
            ServiceError::CannotSign(_)
            | ServiceError::PartyNotValid { .. }
            | ServiceError::FigureOutOfRange(_)
            | ServiceError::NoTrustListFile
            | ServiceError::NotTheDirectory
            | ServiceError::KeyChangeRefused(_)
            | ServiceError::TrustListNotReloaded(_) => Status::failed_precondition(message),
            ServiceError::TrustListExpired(_) => Status::unavailable(message),
            ServiceError::NoSession => Status::unauthenticated(message),
            ServiceError::StoreUnavailable(cause) => {
                tracing::warn!(error = %cause, "store unavailable");
                Status::unavailable("registry store unavailable; retry shortly")
            }
            ServiceError::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                Status::internal("internal error")
            }
        }
    }
}
