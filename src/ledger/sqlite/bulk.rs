//! A batch's order-free writes in two statements, whatever its size.
//!
//! Every statement sqlx runs on SQLite is a round trip to the connection's own thread,
//! and under load those hand-offs, not SQLite, are what a batch costs. So the items
//! whose order within the batch cannot matter — claims (outside any policy) and
//! completions of keys no other item of the batch touches — go in two statements
//! first, each reading its rows from one JSON array (`json_each`): the claims in one
//! `INSERT … ON CONFLICT DO NOTHING RETURNING`, the completions in one `UPDATE … FROM
//! … RETURNING`. Blobs travel as hex. What those statements decide is final; the rest
//! (a key that stood, a completion that matched nothing, repeated keys, guarded
//! claims) is decided one item at a time after them, in queue order, as before.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::SqliteConnection;

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

/// Inserts `claims` (distinct keys, their tokens consecutive from the first's, taken
/// from a block that ends the token sequence at `sequence_end`); returns the decision
/// of each that acquired its key, by its index in the batch. The others found their
/// key taken — or all of them, if the sequence has moved past `sequence_end` since the
/// block was reserved: then someone else may have handed out later tokens, and these
/// would not be the newest.
pub(super) async fn insert_claims(
    connection: &mut SqliteConnection,
    claims: &[BulkClaim<'_>],
    now: i64,
    sequence_end: i64,
) -> Result<HashMap<usize, ClaimDecision>, LedgerError> {
    let Some(first) = claims.first() else {
        return Ok(HashMap::new());
    };
    let now_at = timestamp(now)?;
    let mut rows = JsonRows::with_capacity(claims.len() * 160);
    for item in claims {
        let claim = item.claim;
        let lease_expires_at = now.saturating_add(micros(claim.lease));
        rows.row(|row| {
            row.text(claim.id.namespace.as_str())?;
            row.text(claim.id.key.as_str())?;
            row.hex(claim.fingerprint.as_bytes());
            row.integer(item.token);
            row.integer(lease_expires_at);
            row.integer(lease_expires_at.saturating_add(micros(claim.abandon_after)));
            row.hex(claim.claimant.as_bytes());
            Ok(())
        })?;
    }
    let tokens: Vec<i64> = sqlx::query_scalar(INSERT_CLAIMS)
        .bind(now)
        .bind(rows.finish()?)
        .bind(sequence_end)
        .fetch_all(&mut *connection)
        .await
        .map_err(super::batch::transaction_failed)?;
    let mut decided = HashMap::with_capacity(tokens.len());
    for token in tokens {
        let item = usize::try_from(token - first.token)
            .ok()
            .and_then(|position| claims.get(position))
            .filter(|item| item.token == token)
            .ok_or_else(|| internal("the bulk insert returned a token it was not sent"))?;
        let lease_expires_at = now.saturating_add(micros(item.claim.lease));
        decided.insert(
            item.index,
            ClaimDecision::Acquired {
                token: rows::stored_token(token)?,
                lease_expires_at: timestamp(lease_expires_at)?,
                takeover: false,
                fingerprint: item.claim.fingerprint.clone(),
                now: now_at,
            },
        );
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
    if completions.is_empty() {
        return Ok(HashMap::new());
    }
    let now_at = timestamp(now)?;
    let size = completions
        .iter()
        .map(|item| 96 + 2 * item.response.len())
        .sum();
    let mut rows = JsonRows::with_capacity(size);
    for item in completions.iter() {
        let expires_at = now.saturating_add(micros(item.retention));
        // Checked before anything is written, so no answer fails after its write.
        timestamp(expires_at)?;
        rows.row(|row| {
            row.text(item.id.namespace.as_str())?;
            row.text(item.id.key.as_str())?;
            row.integer(item.token);
            row.hex(&item.response);
            row.integer(expires_at);
            Ok(())
        })?;
    }
    let returned = sqlx::query(COMPLETE_MANY)
        .bind(now)
        .bind(rows.finish()?)
        .fetch_all(&mut *connection)
        .await
        .map_err(super::batch::transaction_failed)?;
    let positions: HashMap<(&str, &str), usize> = completions
        .iter()
        .enumerate()
        .map(|(position, item)| ((item.id.namespace.as_str(), item.id.key.as_str()), position))
        .collect();
    let mut found = Vec::with_capacity(returned.len());
    for row in &returned {
        let namespace: &str = row.try_get("namespace").map_err(internal)?;
        let key: &str = row.try_get("key").map_err(internal)?;
        let position = positions
            .get(&(namespace, key))
            .copied()
            .ok_or_else(|| internal("the bulk completion returned a key it was not sent"))?;
        found.push(position);
    }
    drop(positions);
    let mut decided = HashMap::with_capacity(returned.len());
    for (row, position) in returned.iter().zip(found) {
        let item = &mut completions[position];
        // The row is written: an answer that cannot be read from it must not commit
        // untold, so this fails the transaction.
        let decision = rows::completed(row, std::mem::take(&mut item.response), now_at)?;
        decided.insert(item.index, decision);
    }
    Ok(decided)
}

/// The claims, from `?2`: `[namespace, key, fingerprint (hex), token, lease expiry,
/// expiry, claimant (hex)]` each, inserted only while the token sequence ends at `?3`,
/// where their block was reserved. (The `WHERE` also tells SQLite's parser that the
/// `ON` that follows is the upsert's, not a join's.)
const INSERT_CLAIMS: &str = r#"
INSERT INTO onceward_records
    (namespace, key, state, fingerprint, fencing_token, created_at, lease_expires_at,
     expires_at, claimant)
SELECT c.value ->> 0, c.value ->> 1, 1, unhex(c.value ->> 2), c.value ->> 3, ?1,
       c.value ->> 4, c.value ->> 5, unhex(c.value ->> 6)
FROM json_each(?2) AS c
WHERE (SELECT last_value FROM onceward_fencing_tokens WHERE id = 1) = ?3
ON CONFLICT (namespace, key) DO NOTHING
RETURNING fencing_token
"#;

/// The completions, from `?2`: `[namespace, key, token, response (hex), expiry]` each.
const COMPLETE_MANY: &str = r#"
UPDATE onceward_records AS r
SET state = 2, response = unhex(c.value ->> 3), completed_at = ?1, lease_expires_at = NULL,
    expires_at = c.value ->> 4
FROM json_each(?2) AS c
WHERE r.namespace = c.value ->> 0 AND r.key = c.value ->> 1
  AND r.fencing_token = c.value ->> 2 AND r.state = 1
RETURNING namespace, key, fingerprint, completed_at, expires_at
"#;

/// A JSON array of arrays, written straight into one buffer.
struct JsonRows {
    bytes: Vec<u8>,
    rows: usize,
}

/// One row of [`JsonRows`], its values in order.
struct JsonRow<'a> {
    bytes: &'a mut Vec<u8>,
    values: usize,
}

impl JsonRows {
    fn with_capacity(bytes: usize) -> Self {
        let mut buffer = Vec::with_capacity(bytes + 2);
        buffer.push(b'[');
        Self {
            bytes: buffer,
            rows: 0,
        }
    }

    fn row(
        &mut self,
        write: impl FnOnce(&mut JsonRow<'_>) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        if self.rows > 0 {
            self.bytes.push(b',');
        }
        self.rows += 1;
        self.bytes.push(b'[');
        write(&mut JsonRow {
            bytes: &mut self.bytes,
            values: 0,
        })?;
        self.bytes.push(b']');
        Ok(())
    }

    fn finish(mut self) -> Result<String, LedgerError> {
        self.bytes.push(b']');
        String::from_utf8(self.bytes).map_err(internal)
    }
}

impl JsonRow<'_> {
    fn next(&mut self) {
        if self.values > 0 {
            self.bytes.push(b',');
        }
        self.values += 1;
    }

    /// A JSON string, escaped as JSON requires: keys may hold any character.
    fn text(&mut self, value: &str) -> Result<(), LedgerError> {
        self.next();
        serde_json::to_writer(&mut *self.bytes, value).map_err(internal)
    }

    fn integer(&mut self, value: i64) {
        self.next();
        let _ = write!(self.bytes, "{value}");
    }

    fn hex(&mut self, bytes: &[u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        self.next();
        self.bytes.reserve(bytes.len() * 2 + 2);
        self.bytes.push(b'"');
        for byte in bytes {
            self.bytes.push(DIGITS[usize::from(byte >> 4)]);
            self.bytes.push(DIGITS[usize::from(byte & 0x0f)]);
        }
        self.bytes.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_a_json_array_of_arrays() {
        let mut rows = JsonRows::with_capacity(0);
        for (key, token) in [("a\"b", 1), ("ключ\n", -2)] {
            rows.row(|row| {
                row.text(key)?;
                row.integer(token);
                row.hex(&[0, 255]);
                Ok(())
            })
            .unwrap();
        }
        let text = rows.finish().unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!([["a\"b", 1, "00ff"], ["ключ\n", -2, "00ff"]])
        );
        assert_eq!(JsonRows::with_capacity(0).finish().unwrap(), "[]");
    }
}
