//! A batch's order-free writes in one statement, whatever its size.
//!
//! Every statement sqlx runs on SQLite is a round trip to the connection's own thread,
//! and under load those hand-offs, not SQLite, are what a batch costs. So the items
//! whose order within the batch cannot matter — claims (outside any policy) and
//! completions of keys no other item of the batch touches — go first in one upsert
//! that reads its rows from one JSON array (`json_each`; blobs travel as hex): a claim
//! is an insert that a key that stands turns away, a completion an insert that always
//! meets its key and turns into the update of the claim its token holds. The statement
//! runs on its own, so SQLite commits it as it ends: one hand-off and one sync of the
//! log for the whole of it. What it decides is final; the rest (a key that stood, a
//! completion that matched nothing, repeated keys, guarded claims) is decided one item
//! at a time after it, in queue order, in a transaction of their own.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::SqliteConnection;

use super::json_rows::JsonRows;
use super::timestamp;
use crate::domain::RecordId;
use crate::ledger::rows;
use crate::ledger::{ClaimDecision, CompleteDecision, LedgerError, NewClaim, internal, micros};

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

/// What the bulk statement decided, by index in the batch. The items it leaves out
/// found their key taken (a claim) or held by another token (a completion) — or, for
/// claims, found the token sequence moved past the end of their block.
#[derive(Default)]
pub(super) struct Decided {
    pub claims: HashMap<usize, ClaimDecision>,
    pub completions: HashMap<usize, CompleteDecision>,
}

/// Writes `claims` and `completions` (distinct keys) in one statement, committed as it
/// ends. The claims' tokens are consecutive from the first's, from a block that ends
/// the token sequence at `sequence_end`: if the sequence has moved on since the block
/// was reserved, someone else may have handed out later tokens, and no claim is
/// inserted.
pub(super) async fn write(
    connection: &mut SqliteConnection,
    claims: &[BulkClaim<'_>],
    completions: &mut [BulkCompletion<'_>],
    now: i64,
    sequence_end: i64,
) -> Result<Decided, LedgerError> {
    if claims.is_empty() && completions.is_empty() {
        return Ok(Decided::default());
    }
    let now_at = timestamp(now)?;
    let size = 160 * claims.len()
        + completions
            .iter()
            .map(|item| 96 + 2 * item.response.len())
            .sum::<usize>();
    let mut rows = JsonRows::with_capacity(size);
    for item in claims {
        let claim = item.claim;
        let lease_expires_at = now.saturating_add(micros(claim.lease));
        rows.row(|row| {
            row.integer(CLAIM);
            row.text(claim.id.namespace.as_str())?;
            row.text(claim.id.key.as_str())?;
            row.integer(item.token);
            row.integer(lease_expires_at.saturating_add(micros(claim.abandon_after)));
            row.integer(lease_expires_at);
            row.hex(claim.fingerprint.as_bytes());
            row.hex(claim.claimant.as_bytes());
            row.null();
            Ok(())
        })?;
    }
    for item in completions.iter() {
        let expires_at = now.saturating_add(micros(item.retention));
        // Checked before anything is written, so no answer fails after its write.
        timestamp(expires_at)?;
        rows.row(|row| {
            row.integer(COMPLETION);
            row.text(item.id.namespace.as_str())?;
            row.text(item.id.key.as_str())?;
            row.integer(item.token);
            row.integer(expires_at);
            row.null();
            row.hex(&[]);
            row.hex(&[]);
            row.hex(&item.response);
            Ok(())
        })?;
    }
    let returned = sqlx::query(WRITE)
        .bind(now)
        .bind(rows.finish()?)
        .bind(sequence_end)
        .fetch_all(&mut *connection)
        .await
        .map_err(super::batch::transaction_failed)?;

    // Everything below reads what has been committed: an answer that cannot be read
    // from it is an internal error for every caller of the batch, never a success
    // withheld from one.
    let first_token = claims.first().map_or(0, |item| item.token);
    let positions: HashMap<(&str, &str), usize> = completions
        .iter()
        .enumerate()
        .map(|(position, item)| ((item.id.namespace.as_str(), item.id.key.as_str()), position))
        .collect();
    let mut decided = Decided::default();
    let mut completed = Vec::new();
    for row in &returned {
        let state: i64 = row.try_get("state").map_err(internal)?;
        if state == CLAIM {
            let token: i64 = row.try_get("fencing_token").map_err(internal)?;
            let item = usize::try_from(token - first_token)
                .ok()
                .and_then(|position| claims.get(position))
                .filter(|item| item.token == token)
                .ok_or_else(|| internal("the bulk write returned a token it was not sent"))?;
            let lease_expires_at = now.saturating_add(micros(item.claim.lease));
            decided.claims.insert(
                item.index,
                ClaimDecision::Acquired {
                    token: rows::stored_token(token)?,
                    lease_expires_at: timestamp(lease_expires_at)?,
                    takeover: false,
                    fingerprint: item.claim.fingerprint.clone(),
                    now: now_at,
                },
            );
        } else {
            let namespace: &str = row.try_get("namespace").map_err(internal)?;
            let key: &str = row.try_get("key").map_err(internal)?;
            let position = positions
                .get(&(namespace, key))
                .copied()
                .ok_or_else(|| internal("the bulk write returned a key it was not sent"))?;
            completed.push((row, position));
        }
    }
    drop(positions);
    for (row, position) in completed {
        let item = &mut completions[position];
        let decision = rows::completed(row, std::mem::take(&mut item.response), now_at)?;
        decided.completions.insert(item.index, decision);
    }
    Ok(decided)
}

/// The kinds of row in [`WRITE`]'s array, as the states they write.
const CLAIM: i64 = 1;
const COMPLETION: i64 = 2;

/// The batch's order-free writes, from `?2`: `[kind, namespace, key, token, expiry,
/// lease expiry, fingerprint (hex), claimant (hex), response (hex)]` each, a claim
/// (kind 1) or a completion (kind 2). `?1` is the time.
///
/// A claim is inserted while the token sequence ends at `?3`, where its block was
/// reserved; a key that stands turns it away. A completion is let through only where
/// its key stands, so it always meets the key and never inserts: the upsert turns it
/// into the completion of the claim its token holds, or into nothing. (The `WHERE`
/// also tells SQLite's parser that the `ON` that follows is the upsert's, not a
/// join's.) Both come back with the state they wrote.
const WRITE: &str = r#"
INSERT INTO onceward_records
    (namespace, key, state, fingerprint, fencing_token, created_at, completed_at,
     lease_expires_at, expires_at, claimant, response)
SELECT w.value ->> 1, w.value ->> 2, w.value ->> 0, unhex(w.value ->> 6), w.value ->> 3, ?1,
       CASE w.value ->> 0 WHEN 2 THEN ?1 END, w.value ->> 5, w.value ->> 4,
       unhex(w.value ->> 7), unhex(w.value ->> 8)
FROM json_each(?2) AS w
WHERE CASE w.value ->> 0
        WHEN 1 THEN (SELECT last_value FROM onceward_fencing_tokens WHERE id = 1) = ?3
        ELSE EXISTS (SELECT 1 FROM onceward_records AS r
                     WHERE r.namespace = w.value ->> 1 AND r.key = w.value ->> 2)
      END
ON CONFLICT (namespace, key) DO UPDATE
SET state = 2, response = excluded.response, completed_at = excluded.completed_at,
    lease_expires_at = NULL, expires_at = excluded.expires_at
WHERE excluded.state = 2 AND onceward_records.state = 1
  AND onceward_records.fencing_token = excluded.fencing_token
RETURNING state, namespace, key, fencing_token, fingerprint, completed_at, expires_at
"#;
