//! Proto ⇄ domain conversions. Parsing happens here, once; public so the fuzz
//! target (`fuzz/`) can drive exactly what the server runs.

use std::time::Duration;

use crate::domain::{
    BoundedDuration, ClaimAnswer, Claimant, FencingToken, Fingerprint, IdempotencyKey, Limits,
    Namespace, Outcome, Record, RecordId, RecordState, Spend, Subject, Tier, ValidationError,
    units,
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
        spend: spend(request.subject, request.cost)?,
    })
}

/// Parses a claim's subject and cost.
fn spend(subject: String, cost: u64) -> Result<Spend, ValidationError> {
    Ok(Spend {
        subject: Subject::try_from(subject)?,
        cost: units("cost", cost)?,
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
        Outcome::Blocked { reason } => {
            response.outcome = proto::Outcome::Blocked as i32;
            response.reason = reason;
        }
        Outcome::OverBudget { limit, retry_after } => {
            response.outcome = proto::Outcome::OverBudget as i32;
            response.reason = limit.as_str().to_owned();
            response.retry_after = Some(duration(retry_after));
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

/// Why a batch was refused: a field of the request, or a field of one item.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// A field of the request itself (the namespace, the item count, the duration).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A field of the item at `index`.
    #[error("items[{index}].{error}")]
    Item {
        /// The item's position in the request, from 0.
        index: usize,
        /// What is wrong with it.
        error: ValidationError,
    },
}

/// Checks the item count and that no key appears twice; gives each item's id.
fn batch_ids(
    namespace: String,
    keys: impl ExactSizeIterator<Item = String>,
    limits: &Limits,
) -> Result<Vec<RecordId>, BatchError> {
    let namespace = Namespace::try_from(namespace)?;
    let count = keys.len();
    if !(1..=limits.max_batch_items).contains(&count) {
        return Err(ValidationError::new(
            "items",
            format!(
                "must hold 1 to {} items (--max-batch-items), got {count}",
                limits.max_batch_items
            ),
        )
        .into());
    }
    let mut first_seen = std::collections::HashMap::with_capacity(count);
    keys.enumerate()
        .map(|(index, key)| {
            let key =
                IdempotencyKey::try_from(key).map_err(|error| BatchError::Item { index, error })?;
            if let Some(first) = first_seen.insert(key.clone(), index) {
                return Err(BatchError::Item {
                    index,
                    error: ValidationError::new(
                        "key",
                        format!(
                            "{:?} appears twice in the batch (also items[{first}])",
                            key.as_str()
                        ),
                    ),
                });
            }
            Ok(RecordId {
                namespace: namespace.clone(),
                key,
            })
        })
        .collect()
}

/// Parses a `ClaimBatchRequest` into one validated command per item, in order.
pub fn claim_batch_commands(
    mut request: proto::ClaimBatchRequest,
    limits: &Limits,
) -> Result<Vec<ClaimCommand>, BatchError> {
    let keys = request
        .items
        .iter_mut()
        .map(|item| std::mem::take(&mut item.key));
    let ids = batch_ids(std::mem::take(&mut request.namespace), keys, limits)?;
    let lease = lease(request.lease, limits)?;
    request
        .items
        .into_iter()
        .zip(ids)
        .enumerate()
        .map(|(index, (item, id))| {
            let at = |error| BatchError::Item { index, error };
            Ok(ClaimCommand {
                id,
                fingerprint: Fingerprint::try_from(item.fingerprint).map_err(at)?,
                lease,
                claimant: Claimant::try_from(item.claimant).map_err(at)?,
                attempt: item.attempt,
                spend: spend(item.subject, item.cost).map_err(at)?,
            })
        })
        .collect()
}

/// Parses a `CompleteBatchRequest` into one validated command per item, in order.
pub fn complete_batch_commands(
    mut request: proto::CompleteBatchRequest,
    limits: &Limits,
) -> Result<Vec<CompleteCommand>, BatchError> {
    let keys = request
        .items
        .iter_mut()
        .map(|item| std::mem::take(&mut item.key));
    let ids = batch_ids(std::mem::take(&mut request.namespace), keys, limits)?;
    let retention = bounded("retention", request.retention, limits.retention)?;
    request
        .items
        .into_iter()
        .zip(ids)
        .enumerate()
        .map(|(index, (item, id))| {
            if item.response.len() > limits.max_response_bytes {
                return Err(BatchError::Item {
                    index,
                    error: ValidationError::new(
                        "response",
                        format!(
                            "must be at most {} bytes, got {}",
                            limits.max_response_bytes,
                            item.response.len()
                        ),
                    ),
                });
            }
            Ok(CompleteCommand {
                id,
                token: token(item.fencing_token),
                response: item.response,
                retention,
            })
        })
        .collect()
}
