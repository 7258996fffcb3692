//! Proto ⇄ domain conversions. Parsing happens here, once; public so the fuzz
//! target (`fuzz/`) can drive exactly what the server runs.

use std::time::Duration;

use crate::domain::{
    BoundedDuration, ClaimAnswer, Claimant, FencingToken, Fingerprint, IdempotencyKey, Limits,
    Namespace, Outcome, Record, RecordId, RecordState, Tier, ValidationError,
};
use crate::engine::{ClaimCommand, CompleteCommand};
use crate::proto::{self, duration, timestamp};

/// Parses a namespace and key, naming the field that is out of bounds.
pub fn record_id(namespace: String, key: String) -> Result<RecordId, ValidationError> {
    Ok(RecordId {
        namespace: Namespace::try_from(namespace)?,
        key: IdempotencyKey::try_from(key)?,
    })
}

/// Any token parses; one that is not the holder's is refused by the ledger.
pub fn token(raw: u64) -> FencingToken {
    FencingToken::new(raw)
}

/// Resolves a requested lease against the server's bounds.
pub fn lease(
    raw: Option<prost_types::Duration>,
    limits: &Limits,
) -> Result<Duration, ValidationError> {
    bounded("lease", raw, limits.lease)
}

/// Parses a `ClaimRequest` into a validated command.
pub fn claim_command(
    request: proto::ClaimRequest,
    limits: &Limits,
) -> Result<ClaimCommand, ValidationError> {
    Ok(ClaimCommand {
        id: record_id(request.namespace, request.key)?,
        fingerprint: Fingerprint::try_from(request.fingerprint)?,
        lease: lease(request.lease, limits)?,
        claimant: Claimant::try_from(request.claimant)?,
        attempt: request.attempt,
    })
}

/// Parses a `CompleteRequest` into a validated command, enforcing the response limit.
pub fn complete_command(
    request: proto::CompleteRequest,
    limits: &Limits,
) -> Result<CompleteCommand, ValidationError> {
    let id = record_id(request.namespace, request.key)?;
    if request.response.len() > limits.max_response_bytes {
        return Err(ValidationError::new(
            "response",
            format!(
                "must be at most {} bytes, got {}",
                limits.max_response_bytes,
                request.response.len()
            ),
        ));
    }
    Ok(CompleteCommand {
        id,
        token: token(request.fencing_token),
        response: request.response,
        retention: bounded("retention", request.retention, limits.retention)?,
    })
}

fn bounded(
    field: &'static str,
    raw: Option<prost_types::Duration>,
    bounds: crate::domain::DurationBounds,
) -> Result<Duration, ValidationError> {
    let raw = raw.map(|d| (d.seconds, d.nanos));
    Ok(BoundedDuration::resolve(field, raw, bounds)?.get())
}

/// Converts a claim answer to its wire form.
pub fn claim_response(answer: ClaimAnswer) -> proto::ClaimResponse {
    let served_by = match answer.served_by {
        Tier::Cache => proto::Tier::Cache,
        Tier::Ledger => proto::Tier::Ledger,
    } as i32;
    let mut response = proto::ClaimResponse {
        served_by,
        ..Default::default()
    };
    match answer.outcome {
        Outcome::Acquired { token, .. } => {
            response.outcome = proto::Outcome::Acquired as i32;
            response.fencing_token = token.get();
        }
        Outcome::InProgress { retry_after } => {
            response.outcome = proto::Outcome::InProgress as i32;
            response.retry_after = Some(duration(retry_after));
        }
        Outcome::Completed {
            response: stored,
            completed_at,
        } => {
            response.outcome = proto::Outcome::Completed as i32;
            response.response = stored;
            response.completed_at = Some(timestamp(completed_at));
        }
        Outcome::FingerprintMismatch => {
            response.outcome = proto::Outcome::FingerprintMismatch as i32;
        }
    }
    response
}

/// Converts a record to its wire form (no fencing token).
pub fn record(record: Record) -> proto::Record {
    proto::Record {
        namespace: record.id.namespace.to_string(),
        key: record.id.key.to_string(),
        state: match record.state {
            RecordState::InProgress => proto::RecordState::InProgress,
            RecordState::Completed => proto::RecordState::Completed,
        } as i32,
        fingerprint: record.fingerprint.as_bytes().to_vec(),
        response: record.response.unwrap_or_default(),
        created_at: Some(timestamp(record.created_at)),
        completed_at: record.completed_at.map(timestamp),
        lease_expires_at: record.lease_expires_at.map(timestamp),
        expires_at: Some(timestamp(record.expires_at)),
    }
}
