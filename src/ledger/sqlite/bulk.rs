//! A batch's writes in a few multi-row statements instead of one statement each.
//!
//! Every statement sqlx runs on SQLite is a round trip to the connection's own thread,
//! and under load those hand-offs, not SQLite, are what a batch costs. So the items
//! whose order within the batch cannot matter — claims (outside any policy) and
//! completions of keys no other item of the batch touches — go in multi-row
//! statements first: the claims in one `INSERT … ON CONFLICT DO NOTHING RETURNING`,
//! the completions in one `UPDATE … FROM (VALUES …) RETURNING`. What those statements
//! decide is final; the rest (a key that stood, a completion that matched nothing,
//! repeated keys, guarded claims) is decided one item at a time after them, in queue
//! order, as before.
//!
//! Statements are built for chunks of 64, 32, … 1 rows, so seven statement texts of
//! each kind cover every batch size and stay in sqlx's statement cache.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::SqliteConnection;

use super::timestamp;
use crate::domain::RecordId;
use crate::ledger::rows;
use crate::ledger::{ClaimDecision, CompleteDecision, LedgerError, NewClaim, internal, micros};

/// The most rows one statement carries.
const CHUNK: usize = 64;

/// A claim the bulk insert may decide: its place in the batch and its token.
pub(super) struct BulkClaim<'a> {
    pub index: usize,
    pub claim: &'a NewClaim,
    pub token: i64,
}

/// A completion the bulk update may decide.
pub(super) struct BulkCompletion<'a> {
    pub index: usize,
    pub id: &'a RecordId,
    pub token: i64,
    pub response: Vec<u8>,
    pub retention: Duration,
}

/// Inserts `claims` (distinct keys); returns the decision of each that acquired its
/// key, by its index in the batch. The others found their key taken.
pub(super) async fn insert_claims(
    connection: &mut SqliteConnection,
    claims: &[BulkClaim<'_>],
    now: i64,
) -> Result<HashMap<usize, ClaimDecision>, LedgerError> {
    let now_at = timestamp(now)?;
    let mut decided = HashMap::with_capacity(claims.len());
    let mut start = 0;
    for size in sizes(claims.len()) {
        let chunk = &claims[start..start + size];
        start += size;
        let mut query = sqlx::query(statement(&INSERTS, insert_sql, chunk.len()));
        for item in chunk {
            let claim = item.claim;
            let lease_expires_at = now.saturating_add(micros(claim.lease));
            query = query
                .bind(claim.id.namespace.as_str())
                .bind(claim.id.key.as_str())
                .bind(claim.fingerprint.as_bytes())
                .bind(item.token)
                .bind(now)
                .bind(lease_expires_at)
                .bind(lease_expires_at.saturating_add(micros(claim.abandon_after)))
                .bind(claim.claimant.as_bytes());
        }
        let rows = query
            .fetch_all(&mut *connection)
            .await
            .map_err(super::batch::transaction_failed)?;
        let mut by_key: HashMap<(String, String), &BulkClaim<'_>> = chunk
            .iter()
            .map(|item| (owned_key(&item.claim.id), item))
            .collect();
        for row in rows {
            let key = (
                row.try_get::<String, _>("namespace").map_err(internal)?,
                row.try_get::<String, _>("key").map_err(internal)?,
            );
            let item = by_key
                .remove(&key)
                .ok_or_else(|| internal("the bulk insert returned a key it was not sent"))?;
            let lease_expires_at = now.saturating_add(micros(item.claim.lease));
            decided.insert(
                item.index,
                ClaimDecision::Acquired {
                    token: rows::stored_token(item.token)?,
                    lease_expires_at: timestamp(lease_expires_at)?,
                    takeover: false,
                    fingerprint: item.claim.fingerprint.clone(),
                    now: now_at,
                },
            );
        }
    }
    Ok(decided)
}

/// Completes `completions` (distinct keys) held by their tokens; returns the decision
/// of each that completed, by its index in the batch. The others matched nothing and
/// are decided one by one (a retry of a completion, or not the holder's).
pub(super) async fn complete(
    connection: &mut SqliteConnection,
    completions: &mut [BulkCompletion<'_>],
    now: i64,
) -> Result<HashMap<usize, CompleteDecision>, LedgerError> {
    let now_at = timestamp(now)?;
    let mut decided = HashMap::with_capacity(completions.len());
    let mut start = 0;
    for size in sizes(completions.len()) {
        let part = &mut completions[start..start + size];
        start += size;
        complete_part(connection, part, now, now_at, &mut decided).await?;
    }
    Ok(decided)
}

async fn complete_part(
    connection: &mut SqliteConnection,
    part: &mut [BulkCompletion<'_>],
    now: i64,
    now_at: chrono::DateTime<chrono::Utc>,
    decided: &mut HashMap<usize, CompleteDecision>,
) -> Result<(), LedgerError> {
    let mut query = sqlx::query(statement(&COMPLETIONS, complete_sql, part.len())).bind(now);
    for item in part.iter() {
        let expires_at = now.saturating_add(micros(item.retention));
        // Checked before anything is written, so no answer fails after its write.
        timestamp(expires_at)?;
        query = query
            .bind(item.id.namespace.as_str())
            .bind(item.id.key.as_str())
            .bind(item.token)
            .bind(item.response.as_slice())
            .bind(expires_at);
    }
    let rows = query
        .fetch_all(&mut *connection)
        .await
        .map_err(super::batch::transaction_failed)?;
    let mut by_key: HashMap<(String, String), usize> = part
        .iter()
        .enumerate()
        .map(|(position, item)| (owned_key(item.id), position))
        .collect();
    for row in rows {
        let key = (
            row.try_get::<String, _>("namespace").map_err(internal)?,
            row.try_get::<String, _>("key").map_err(internal)?,
        );
        let position = by_key
            .remove(&key)
            .ok_or_else(|| internal("the bulk completion returned a key it was not sent"))?;
        let item = &mut part[position];
        // The row is written: an answer that cannot be read from it must not commit
        // untold, so this fails the transaction.
        let decision = rows::completed(&row, std::mem::take(&mut item.response), now_at)?;
        decided.insert(item.index, decision);
    }
    Ok(())
}

fn owned_key(id: &RecordId) -> (String, String) {
    (id.namespace.as_str().to_owned(), id.key.as_str().to_owned())
}

/// The power-of-two sizes `n` (at most [`CHUNK`]) splits into, largest first.
fn sizes(mut n: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    while n > 0 {
        let size = largest_power_of_two(n.min(CHUNK));
        sizes.push(size);
        n -= size;
    }
    sizes
}

/// The texts of the statements, one per chunk size (1, 2, 4, … [`CHUNK`] rows).
type Statements = OnceLock<[String; SIZES]>;
const SIZES: usize = CHUNK.trailing_zeros() as usize + 1;
static INSERTS: Statements = OnceLock::new();
static COMPLETIONS: Statements = OnceLock::new();

/// The statement of `table` for a chunk of `rows` (a power of two), built once from
/// constant parts, so no input ever reaches its text.
fn statement(table: &'static Statements, build: fn(usize) -> String, rows: usize) -> &'static str {
    let texts = table.get_or_init(|| std::array::from_fn(|size| build(1 << size)));
    &texts[rows.trailing_zeros() as usize]
}

fn largest_power_of_two(n: usize) -> usize {
    1 << (usize::BITS - 1 - n.leading_zeros())
}

fn insert_sql(rows: usize) -> String {
    let values = vec!["(?, ?, 1, ?, ?, ?, ?, ?, ?)"; rows].join(", ");
    format!(
        "INSERT INTO onceward_records \
         (namespace, key, state, fingerprint, fencing_token, created_at, lease_expires_at, \
          expires_at, claimant) \
         VALUES {values} \
         ON CONFLICT (namespace, key) DO NOTHING \
         RETURNING namespace, key"
    )
}

fn complete_sql(rows: usize) -> String {
    let values = vec!["(?, ?, ?, ?, ?)"; rows].join(", ");
    format!(
        "UPDATE onceward_records AS r \
         SET state = 2, response = v.column4, completed_at = ?, lease_expires_at = NULL, \
             expires_at = v.column5 \
         FROM (VALUES {values}) AS v \
         WHERE r.namespace = v.column1 AND r.key = v.column2 AND r.fencing_token = v.column3 \
           AND r.state = 1 \
         RETURNING namespace, key, fingerprint, completed_at, expires_at"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_into_a_few_statement_sizes() {
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(100), [64, 32, 4]);
        assert_eq!(sizes(200), [64, 64, 64, 8]);
    }
}
