//! The SQL the SQLite ledger runs. Times are bound as Unix microseconds from the
//! ledger's clock, read inside the write transaction; SQLite's own clock is never read.

pub(super) const SELECT_RECORD: &str = r#"
SELECT namespace, key, state, fingerprint, fencing_token, response, created_at,
       completed_at, lease_expires_at, expires_at, claimant
FROM onceward_records
WHERE namespace = ?1 AND key = ?2
"#;

/// SQLite has no sequences; this row is one. A batch reserves one token per claim in
/// it (`?1`), inside its transaction, and gets the last one back.
pub(super) const RESERVE_TOKENS: &str = r#"
UPDATE onceward_fencing_tokens SET last_value = last_value + ?1 WHERE id = 1
RETURNING last_value
"#;

/// A key's first claim. A key that stands is left alone, and the claim reads it back
/// to decide (re-entry, takeover, or the standing record).
pub(super) const INSERT_CLAIM: &str = r#"
INSERT INTO onceward_records
    (namespace, key, state, fingerprint, fencing_token, created_at, lease_expires_at,
     expires_at, claimant)
VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7, ?8)
ON CONFLICT (namespace, key) DO NOTHING
"#;

/// The compare-and-set on the old token: the write lock already makes the read and
/// this write atomic, the `WHERE` restates the takeover rule so it cannot drift.
pub(super) const TAKE_OVER: &str = r#"
UPDATE onceward_records
SET fencing_token = ?4, fingerprint = ?5, lease_expires_at = ?6, expires_at = ?7,
    claimant = ?9, reentered = 0
WHERE namespace = ?1 AND key = ?2 AND fencing_token = ?3 AND state = 1
  AND lease_expires_at <= ?8
"#;

pub(super) const COMPLETE: &str = r#"
UPDATE onceward_records
SET state = 2, response = ?4, completed_at = ?5, lease_expires_at = NULL, expires_at = ?6
WHERE namespace = ?1 AND key = ?2 AND fencing_token = ?3 AND state = 1
RETURNING fingerprint, completed_at, expires_at
"#;

/// The read behind `completed_earlier`, which decides from the state and token; the
/// `WHERE` restates that rule as its guard.
pub(super) const COMPLETED_BY_TOKEN: &str = r#"
SELECT state, fencing_token, fingerprint, response, completed_at, expires_at
FROM onceward_records
WHERE namespace = ?1 AND key = ?2 AND fencing_token = ?3 AND state = 2
"#;

pub(super) const RELEASE: &str = r#"
DELETE FROM onceward_records
WHERE namespace = ?1 AND key = ?2 AND fencing_token = ?3 AND state = 1
"#;

/// A claim whose caller gave up: released only if its claimant has not had it back.
pub(super) const RELEASE_UNHELD: &str = r#"
DELETE FROM onceward_records
WHERE namespace = ?1 AND key = ?2 AND fencing_token = ?3 AND state = 1 AND reentered = 0
"#;

/// A claim handed back to its claimant, marked in the transaction that decides it, so
/// no release of an unheld claim deletes it afterwards.
pub(super) const MARK_REENTERED: &str = r#"
UPDATE onceward_records SET reentered = 1
WHERE namespace = ?1 AND key = ?2 AND fencing_token = ?3 AND state = 1
"#;

pub(super) const EXTEND_LEASE: &str = r#"
UPDATE onceward_records
SET lease_expires_at = ?4, expires_at = max(expires_at, ?5)
WHERE namespace = ?1 AND key = ?2 AND fencing_token = ?3 AND state = 1
RETURNING lease_expires_at, fingerprint
"#;

// One writer at a time already, so no SKIP LOCKED is needed: each batch is one short
// write transaction in the queue with the claims.
pub(super) const PURGE_EXPIRED: &str = r#"
DELETE FROM onceward_records
WHERE (namespace, key) IN (
    SELECT namespace, key FROM onceward_records
    WHERE expires_at <= ?1 AND (state = 2 OR lease_expires_at <= ?1)
    ORDER BY expires_at
    LIMIT ?2
)
"#;

/// Deletes a record (a live claim only when `?3`, force, is 1; `?4` is now).
pub(super) const FORGET: &str = r#"
DELETE FROM onceward_records
WHERE namespace = ?1 AND key = ?2
  AND (?3 OR state = 2 OR lease_expires_at <= ?4)
"#;

/// Whether a record exists (after a forget deleted nothing).
pub(super) const RECORD_EXISTS: &str = r#"
SELECT EXISTS (SELECT 1 FROM onceward_records WHERE namespace = ?1 AND key = ?2)
"#;
