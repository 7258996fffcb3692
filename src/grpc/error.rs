//! The one mapping from onceward's errors to gRPC statuses.
//!
//! Clients get a short message: the field and the limit for bad input, "not yours any
//! more" for a fencing rejection, "retry" for an unreachable ledger. Internal causes
//! are logged here with their full chain and never sent.

use tonic::{Code, Status};

use crate::domain::ValidationError;
use crate::engine::EngineError;
use crate::tenants::Refusal;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A request field is out of bounds.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The engine refused or failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The caller is unknown, not granted the namespace, or over its rate.
    #[error(transparent)]
    Refused(#[from] Refusal),
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::Invalid(invalid) => Status::invalid_argument(invalid.to_string()),
            ApiError::Refused(refusal @ Refusal::Unauthenticated) => {
                Status::unauthenticated(refusal.to_string())
            }
            ApiError::Refused(refusal @ Refusal::NotGranted { .. }) => {
                Status::permission_denied(refusal.to_string())
            }
            ApiError::Refused(refusal @ Refusal::RateLimited { .. }) => {
                Status::resource_exhausted(refusal.to_string())
            }
            ApiError::Engine(EngineError::NotHolder) => Status::failed_precondition(
                "fencing_token is not the current holder's (lease lost, released, completed, or unknown key)",
            ),
            ApiError::Engine(error @ EngineError::Unavailable(_)) => {
                tracing::warn!(error = %crate::telemetry::chain(&error), "failing closed");
                Status::unavailable("the ledger is unavailable; safe to retry")
            }
            ApiError::Engine(error @ EngineError::Internal(_)) => {
                tracing::error!(error = %crate::telemetry::chain(&error), "internal error");
                Status::internal("internal error")
            }
        }
    }
}

/// The canonical name of a status code, for metric labels.
pub fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
