//! The one mapping from onceward's errors to gRPC statuses.
//!
//! Clients get a short message: the field and the limit for bad input, "not yours any
//! more" for a fencing rejection, "retry" for an unreachable ledger. Internal causes
//! are logged here with their full chain and never sent.

use tonic::Status;

use crate::domain::ValidationError;
use crate::engine::EngineError;
use crate::tenants::Refusal;

/// What a caller whose fencing token is refused is told.
pub const NOT_HOLDER: &str =
    "fencing_token is not the current holder's (lease lost, released, completed, or unknown key)";

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A request field is out of bounds.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A batch or one of its items is out of bounds.
    #[error(transparent)]
    InvalidBatch(#[from] crate::grpc::convert::BatchError),
    /// The engine refused or failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The caller is unknown, not granted the namespace, or over its rate.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The request cannot apply to the state it meets (e.g. the spend of a namespace
    /// without a budget).
    #[error("{0}")]
    Precondition(String),
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::Invalid(invalid) => Status::invalid_argument(invalid.to_string()),
            ApiError::InvalidBatch(invalid) => Status::invalid_argument(invalid.to_string()),
            ApiError::Refused(refusal @ Refusal::Unauthenticated) => {
                Status::unauthenticated(refusal.to_string())
            }
            ApiError::Refused(refusal @ (Refusal::NotGranted { .. } | Refusal::NotAdmin)) => {
                Status::permission_denied(refusal.to_string())
            }
            ApiError::Engine(EngineError::Held) => Status::failed_precondition(
                "the key holds a live claim: forget it with force (its holder's token is then refused)",
            ),
            ApiError::Refused(refusal @ Refusal::RateLimited { .. }) => {
                Status::resource_exhausted(refusal.to_string())
            }
            ApiError::Engine(EngineError::NotHolder) => Status::failed_precondition(NOT_HOLDER),
            ApiError::Precondition(message) => Status::failed_precondition(message),
            ApiError::Engine(error @ EngineError::Unavailable(_)) => {
                tracing::warn!(error = %crate::errors::chain(&error), "failing closed");
                Status::unavailable("the ledger is unavailable; safe to retry")
            }
            ApiError::Engine(error @ EngineError::Internal(_)) => {
                tracing::error!(error = %crate::errors::chain(&error), "internal error");
                Status::internal("internal error")
            }
        }
    }
}
