//! The completion batch: one UPDATE for every completion in it, then a read by token
//! for each request it did not update (a retried completion, or not the holder's).

use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};

use super::sql::{COMPLETE_BATCH, COMPLETED_BY_TOKEN};
use super::{classify, fetch_all_retrying, fingerprint_from_row, key_order};
use crate::domain::{Completion, RecordId};
use crate::ledger::batcher::BatchOutcome;
use crate::ledger::{CompleteDecision, LedgerError, internal, micros};

/// A `Complete` waiting for its batch.
pub(super) struct PendingCompletion {
    pub(super) id: RecordId,
    pub(super) token: i64,
    pub(super) response: Vec<u8>,
    pub(super) retention: Duration,
}

/// Runs one batch of completions in one UPDATE. A request it did not update is a
/// retry of a completion that already happened, or not the holder's.
pub(super) async fn complete_batch(
    connection: &mut PgConnection,
    batch: &mut [PendingCompletion],
) -> BatchOutcome<CompleteDecision> {
    // Sorted so concurrent batches lock rows in the same order; answers are returned
    // in the callers' order below.
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by(|&a, &b| key_order(&batch[a].id).cmp(&key_order(&batch[b].id)));
    let namespaces: Vec<&str> = order
        .iter()
        .map(|&i| batch[i].id.namespace.as_str())
        .collect();
    let keys: Vec<&str> = order.iter().map(|&i| batch[i].id.key.as_str()).collect();
    let tokens: Vec<i64> = order.iter().map(|&i| batch[i].token).collect();
    let responses: Vec<&[u8]> = order
        .iter()
        .map(|&i| batch[i].response.as_slice())
        .collect();
    let retentions: Vec<i64> = order.iter().map(|&i| micros(batch[i].retention)).collect();
    let rows = fetch_all_retrying(connection, || {
        sqlx::query(COMPLETE_BATCH)
            .bind(&namespaces)
            .bind(&keys)
            .bind(&tokens)
            .bind(&responses)
            .bind(&retentions)
    })
    .await?;
    // Each returned row names its request by position in the sent arrays; the
    // stored response is the one the request just sent, so it is not sent back.
    let mut results: Vec<Option<CompleteDecision>> = vec![None; batch.len()];
    for row in rows {
        let position: i64 = row.try_get("position").map_err(internal)?;
        let i = usize::try_from(position - 1)
            .ok()
            .and_then(|sent| order.get(sent).copied())
            .ok_or_else(|| internal(format!("no request at position {position}")))?;
        let response = std::mem::take(&mut batch[i].response);
        results[i] = Some(completion_from_row(&row, response)?);
    }

    // A request the UPDATE did not touch is a retry of a completion that already
    // happened, or not the holder's.
    for (pending, result) in batch.iter().zip(&mut results) {
        if result.is_some() {
            continue;
        }
        let retried = sqlx::query(COMPLETED_BY_TOKEN)
            .bind(pending.id.namespace.as_str())
            .bind(pending.id.key.as_str())
            .bind(pending.token)
            .fetch_optional(&mut *connection)
            .await
            .map_err(classify)?;
        *result = Some(match retried {
            Some(row) => {
                let stored: Option<Vec<u8>> = row.try_get("response").map_err(internal)?;
                completion_from_row(&row, stored.unwrap_or_default())?
            }
            None => CompleteDecision::NotHolder,
        });
    }
    Ok(results.into_iter().flatten().map(Ok).collect())
}

/// A completed record from a row's `fingerprint`, `completed_at` and `expires_at`.
fn completion_from_row(row: &PgRow, response: Vec<u8>) -> Result<CompleteDecision, LedgerError> {
    Ok(CompleteDecision::Completed {
        completion: Completion {
            completed_at: row.try_get("completed_at").map_err(internal)?,
            expires_at: row.try_get("expires_at").map_err(internal)?,
        },
        fingerprint: fingerprint_from_row(row)?,
        response,
        now: row.try_get("db_now").map_err(internal)?,
    })
}
