//! The completion batch: one UPDATE for every completion in it, then a read by token
//! for each request it did not update, answered by the rule of both ledgers
//! (`completed_earlier`: a retried completion, or not the holder's).

use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::PgConnection;

use super::sql::{COMPLETE_BATCH, COMPLETED_BY_TOKEN};
use super::{classify, db_now, fetch_all_retrying, key_order};
use crate::domain::RecordId;
use crate::ledger::batcher::BatchOutcome;
use crate::ledger::{CompleteDecision, completed_earlier, internal, micros, rows};

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
        results[i] = Some(rows::completed(&row, response, db_now(&row)?)?);
    }

    // A request the UPDATE did not touch is a retry of a completion that already
    // happened, or not the holder's.
    for (pending, result) in batch.iter().zip(&mut results) {
        if result.is_some() {
            continue;
        }
        let stored = sqlx::query(COMPLETED_BY_TOKEN)
            .bind(pending.id.namespace.as_str())
            .bind(pending.id.key.as_str())
            .bind(pending.token)
            .fetch_optional(&mut *connection)
            .await
            .map_err(classify)?
            .map(|row| rows::stored_completion(&row, db_now(&row)?))
            .transpose()?;
        *result = Some(completed_earlier(stored, pending.token));
    }
    Ok(results.into_iter().flatten().map(Ok).collect())
}
