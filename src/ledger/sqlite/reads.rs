//! The claim path's reads, batched: the claims that queue while a read runs are read
//! together, one statement per namespace (`key IN json_each(…)`), on a reader
//! connection. Every statement is a hand-off to a SQLite connection's own thread, so
//! one read per claim cost as much as the claim's whole share of its write batch.
//! Readers never wait for the writer (WAL), and several batches read at once.

use std::collections::HashMap;

use std::sync::Arc;

use sqlx::sqlite::{SqliteConnection, SqliteRow};

use super::connections::Readers;
use super::sql::SELECT_STANDING;
use super::{classify, clock_now, timestamp};
use crate::domain::{Namespace, RecordId};
use crate::ledger::batcher::{BatchOutcome, Batcher};
use crate::ledger::rows;
use crate::ledger::{ClaimDecision, LedgerError, NewClaim, internal, reentry};

/// The most claims one read carries.
const MAX_READ: usize = 1000;

/// The read queue, served by `readers` batches at once.
pub(super) fn spawn_reader(
    connections: Arc<Readers>,
    readers: usize,
) -> Batcher<NewClaim, Option<ClaimDecision>> {
    let run = move |batch: Vec<NewClaim>| {
        let connections = connections.clone();
        async move {
            let outcome = match connections.take().await {
                Ok(mut connection) => {
                    let outcome = read_batch(&mut connection, &batch).await;
                    if outcome.is_ok() {
                        connections.keep(connection);
                    }
                    outcome
                }
                Err(error) => Err(error),
            };
            (batch, outcome)
        }
    };
    Batcher::spawn("read", readers, MAX_READ, run, |_, _| {})
}

/// For each claim, the answer its standing record gives without a write (a completed
/// record, someone else's live claim, a fingerprint mismatch), or `None`: the writer
/// decides it (a new key, an expired lease, the claimant's own claim).
async fn read_batch(
    connection: &mut SqliteConnection,
    claims: &[NewClaim],
) -> BatchOutcome<Option<ClaimDecision>> {
    let mut keys: HashMap<&Namespace, Vec<&str>> = HashMap::new();
    for claim in claims {
        keys.entry(&claim.id.namespace)
            .or_default()
            .push(claim.id.key.as_str());
    }
    let mut standing: HashMap<RecordId, SqliteRow> = HashMap::with_capacity(claims.len());
    for (namespace, keys) in keys {
        let keys = serde_json::to_string(&keys).map_err(internal)?;
        let rows = sqlx::query(SELECT_STANDING)
            .bind(namespace.as_str())
            .bind(keys)
            .fetch_all(&mut *connection)
            .await
            .map_err(classify)?;
        for row in rows {
            standing.insert(rows::record(&row)?.id, row);
        }
    }
    // Read after the rows, so a lease a row shows as live is live at `now`.
    let now = timestamp(clock_now())?;
    Ok(claims
        .iter()
        .map(|claim| {
            let Some(row) = standing.get(&claim.id) else {
                return Ok(None);
            };
            let record = rows::record(row)?;
            let holder = rows::holder(row)?;
            let own = reentry(&record, holder.token, holder.claimant, claim, now).is_some();
            if own || record.takeable_by(&claim.fingerprint, now) {
                return Ok(None);
            }
            Ok(Some(ClaimDecision::Existing { record, now }))
        })
        .collect::<Vec<Result<_, LedgerError>>>())
}
