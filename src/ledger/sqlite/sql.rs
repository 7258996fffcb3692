//! The SQL the SQLite ledger runs. Times are bound as Unix microseconds from the
//! ledger's clock, read inside the write transaction; SQLite's own clock is never read.

pub(super) const SELECT_RECORD: &str = r#"
SELECT namespace, key, state, fingerprint, fencing_token, response, created_at,
       completed_at, lease_expires_at, expires_at, claimant
FROM onceward_records
WHERE namespace = ?1 AND key = ?2
"#;

/// The records of several keys of one namespace (`?2`, a JSON array of keys), for the
/// claim path's batched reads.
pub(super) const SELECT_STANDING: &str = r#"
SELECT namespace, key, state, fingerprint, fencing_token, response, created_at,
       completed_at, lease_expires_at, expires_at, claimant
FROM onceward_records
WHERE namespace = ?1 AND key IN (SELECT value FROM json_each(?2))
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
     expires_at, claimant, subject, cost, debit_window)
VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
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

/// Returns the claim's debit, which the release then refunds (`REFUND`).
pub(super) const RELEASE: &str = r#"
DELETE FROM onceward_records
WHERE namespace = ?1 AND key = ?2 AND fencing_token = ?3 AND state = 1
RETURNING subject, cost, debit_window
"#;

/// A claim whose caller gave up: released only if its claimant has not had it back.
pub(super) const RELEASE_UNHELD: &str = r#"
DELETE FROM onceward_records
WHERE namespace = ?1 AND key = ?2 AND fencing_token = ?3 AND state = 1 AND reentered = 0
RETURNING subject, cost, debit_window
"#;

/// Gives a released claim's debit (`?4` units and one claim) back to its window.
pub(super) const REFUND: &str = r#"
UPDATE onceward_spend SET cost = max(cost - ?4, 0), claims = max(claims - 1, 0)
WHERE namespace = ?1 AND subject = ?2 AND window_start = ?3
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

pub(super) const SELECT_POLICY: &str = r#"
SELECT namespace, killswitch, killswitch_reason, has_budget, max_cost, max_claims,
       window_micros, require_subject
FROM onceward_policies
WHERE namespace = ?1
"#;

pub(super) const SELECT_POLICIES: &str = r#"
SELECT namespace, killswitch, killswitch_reason, has_budget, max_cost, max_claims,
       window_micros, require_subject
FROM onceward_policies
"#;

pub(super) const UPSERT_POLICY: &str = r#"
INSERT INTO onceward_policies
    (namespace, killswitch, killswitch_reason, has_budget, max_cost, max_claims,
     window_micros, require_subject, updated_by, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
ON CONFLICT (namespace) DO UPDATE
    SET killswitch = excluded.killswitch, killswitch_reason = excluded.killswitch_reason,
        has_budget = excluded.has_budget, max_cost = excluded.max_cost,
        max_claims = excluded.max_claims, window_micros = excluded.window_micros,
        require_subject = excluded.require_subject, updated_by = excluded.updated_by,
        updated_at = excluded.updated_at
"#;

pub(super) const DELETE_POLICY: &str = r#"
DELETE FROM onceward_policies WHERE namespace = ?1
"#;

pub(super) const SELECT_SPENT: &str = r#"
SELECT cost, claims FROM onceward_spend
WHERE namespace = ?1 AND subject = ?2 AND window_start = ?3
"#;

/// Debits a claim (`?5` units and one claim) to its subject's window.
pub(super) const DEBIT: &str = r#"
INSERT INTO onceward_spend (namespace, subject, window_start, window_end, cost, claims)
VALUES (?1, ?2, ?3, ?4, ?5, 1)
ON CONFLICT (namespace, subject, window_start) DO UPDATE
    SET cost = min(cost + excluded.cost, 9223372036854775807), claims = claims + 1
"#;

pub(super) const PURGE_SPEND: &str = r#"
DELETE FROM onceward_spend
WHERE (namespace, subject, window_start) IN (
    SELECT namespace, subject, window_start FROM onceward_spend WHERE window_end <= ?1 LIMIT ?2
)
"#;

pub(super) const PURGE_EVENTS: &str = r#"
DELETE FROM onceward_events
WHERE id IN (SELECT id FROM onceward_events WHERE expires_at <= ?1 LIMIT ?2)
"#;

/// Events from `?1`, a JSON array of `[namespace, at, minute, key, subject, kind,
/// count, detail]`, kept until `?2`. A duplicate's count adds to its key's row for the
/// minute, also when two rows of the array name the same one. (`WHERE true` tells
/// SQLite's parser that the `ON` that follows is the upsert's, not a join's.)
pub(super) const INSERT_EVENTS: &str = r#"
INSERT INTO onceward_events
    (namespace, at, minute, key, subject, kind, count, detail, expires_at)
SELECT e.value ->> 0, e.value ->> 1, e.value ->> 2, e.value ->> 3, e.value ->> 4,
       e.value ->> 5, e.value ->> 6, e.value ->> 7, ?2
FROM json_each(?1) AS e
WHERE true
ON CONFLICT (namespace, key, minute) WHERE kind = 1
DO UPDATE SET count = count + excluded.count
"#;

pub(super) const SELECT_EVENTS: &str = r#"
SELECT at, key, subject, kind, count, detail
FROM onceward_events
WHERE namespace = ?1 AND at >= ?2
ORDER BY at DESC, id DESC
LIMIT ?3
"#;
