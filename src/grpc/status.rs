//! The one place where service errors become gRPC statuses; internal details are logged, never sent.

use tonic::Status;

use crate::service::ServiceError;

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::InvalidArgument(message) => Status::invalid_argument(message),
            ServiceError::NotFound(message) => Status::not_found(message),
            ServiceError::PermissionDenied(message) => Status::permission_denied(message),
            ServiceError::FailedPrecondition(message) => Status::failed_precondition(message),
            ServiceError::Unavailable(cause) => {
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
