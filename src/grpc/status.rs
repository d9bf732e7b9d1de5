//! The one place where service errors become gRPC statuses; internal details are logged, never sent.

use tonic::Status;

use crate::service::ServiceError;

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
            | ServiceError::TrustListNotReloaded(_) => Status::failed_precondition(message),
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
