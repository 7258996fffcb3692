//! The SQL the Postgres ledger runs. The batch statements take a batch's requests as
//! parallel arrays through `unnest`, so a batch is one statement and one commit; the
//! rest address one key. Every time is the database's `now()`, the ledger's clock.

// Claims arrive in batches (see `batcher`): one statement inserts every new key and
// takes over every expired lease in the batch, and commits once. Rows are sorted by
// key before they are sent, so concurrent batches lock rows in the same order and
// cannot deadlock each other.
pub(super) const CLAIM_BATCH: &str = r#"
INSERT INTO onceward_records AS r
    (namespace, key, state, fingerprint, fencing_token, created_at, lease_expires_at,
     expires_at, claimant)
SELECT c.namespace, c.key, 1, c.fingerprint, nextval('onceward_fencing_tokens'), now(),
       now() + c.lease * interval '1 microsecond',
       now() + (c.lease + c.abandon_after) * interval '1 microsecond',
       c.claimant
FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bigint[], $5::bigint[], $6::bytea[])
     AS c(namespace, key, fingerprint, lease, abandon_after, claimant)
ON CONFLICT (namespace, key) DO UPDATE
    SET fencing_token = EXCLUDED.fencing_token,
        fingerprint = CASE WHEN octet_length(EXCLUDED.fingerprint) = 0
                           THEN r.fingerprint ELSE EXCLUDED.fingerprint END,
        lease_expires_at = EXCLUDED.lease_expires_at,
        expires_at = EXCLUDED.expires_at,
        claimant = EXCLUDED.claimant,
        reentered = false
    WHERE r.state = 1
      AND r.lease_expires_at <= now()
      AND (octet_length(r.fingerprint) = 0
           OR octet_length(EXCLUDED.fingerprint) = 0
           OR r.fingerprint = EXCLUDED.fingerprint)
RETURNING r.namespace, r.key, r.fencing_token, r.fingerprint, r.lease_expires_at,
          r.created_at < now() AS takeover, now() AS db_now
"#;

// The claim path's read of the rows that stood: with the token and claimant, which
// never leave the ledger except to the claimant that holds them.
pub(super) const SELECT_RECORDS: &str = r#"
SELECT namespace, key, state, fingerprint, response, created_at, completed_at,
       lease_expires_at, expires_at, fencing_token, claimant, now() AS db_now
FROM onceward_records
WHERE (namespace, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"#;

pub(super) const COMPLETE_BATCH: &str = r#"
UPDATE onceward_records r
SET state = 2, response = c.response, completed_at = now(), lease_expires_at = NULL,
    expires_at = now() + c.retention * interval '1 microsecond'
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bytea[], $5::bigint[])
     WITH ORDINALITY AS c(namespace, key, fencing_token, response, retention, position)
WHERE r.namespace = c.namespace AND r.key = c.key
  AND r.fencing_token = c.fencing_token AND r.state = 1
RETURNING c.position, r.fingerprint, r.completed_at, r.expires_at, now() AS db_now
"#;

pub(super) const SELECT_RECORD: &str = r#"
SELECT namespace, key, state, fingerprint, response, created_at, completed_at,
       lease_expires_at, expires_at, now() AS db_now
FROM onceward_records
WHERE namespace = $1 AND key = $2
"#;

// The read behind `completed_earlier`, which decides from the state and token; the
// `WHERE` restates that rule as its guard.
pub(super) const COMPLETED_BY_TOKEN: &str = r#"
SELECT state, fencing_token, fingerprint, response, completed_at, expires_at,
       now() AS db_now
FROM onceward_records
WHERE namespace = $1 AND key = $2 AND fencing_token = $3 AND state = 2
"#;

/// A release that refunds the claim's debit (cost and count) to the window it was made
/// in, in the same statement; `$guard` adds to the delete's `WHERE`. Returns whether it
/// released, and the units refunded.
macro_rules! release_refunding {
    ($guard:literal) => {
        concat!(
            r#"
WITH gone AS (
    DELETE FROM onceward_records
    WHERE namespace = $1 AND key = $2 AND fencing_token = $3 AND state = 1"#,
            $guard,
            r#"
    RETURNING namespace, subject, cost, debit_window
), refund AS (
    UPDATE onceward_spend s
    SET cost = GREATEST(s.cost - g.cost, 0), claims = GREATEST(s.claims - 1, 0)
    FROM gone g
    WHERE g.debit_window IS NOT NULL AND s.namespace = g.namespace
      AND s.subject = g.subject AND s.window_start = g.debit_window
    RETURNING g.cost
)
SELECT (SELECT count(*) FROM gone) AS released,
       COALESCE((SELECT sum(cost) FROM refund), 0)::bigint AS refunded
"#
        )
    };
}

pub(super) const RELEASE: &str = release_refunding!("");

// A claim whose caller gave up: released only if its claimant has not had it back.
pub(super) const RELEASE_UNHELD: &str = release_refunding!(" AND NOT reentered");

// Claims handed back to their claimants, marked so that no release of an unheld claim
// can delete them afterwards; a row that was released, taken over or ran out of lease
// since it was read is not marked, and its claim is decided again.
pub(super) const MARK_REENTERED: &str = r#"
UPDATE onceward_records r
SET reentered = true
FROM unnest($1::text[], $2::text[], $3::bigint[]) AS c(namespace, key, fencing_token)
WHERE r.namespace = c.namespace AND r.key = c.key AND r.fencing_token = c.fencing_token
  AND r.state = 1 AND r.lease_expires_at > now()
RETURNING r.namespace, r.key, now() AS db_now
"#;

pub(super) const EXTEND_LEASE: &str = r#"
UPDATE onceward_records
SET lease_expires_at = now() + $4 * interval '1 microsecond',
    expires_at = GREATEST(expires_at, now() + ($4 + $5) * interval '1 microsecond')
WHERE namespace = $1 AND key = $2 AND fencing_token = $3 AND state = 1
RETURNING lease_expires_at, fingerprint, now() AS db_now
"#;

// Row locks taken by claims are skipped, not waited for, so cleanup never blocks a
// claim for longer than one small batch's delete, and cleaners in many sidecars each
// take different rows.
pub(super) const PURGE_EXPIRED: &str = r#"
WITH doomed AS (
    SELECT namespace, key
    FROM onceward_records
    WHERE expires_at <= now() AND (state = 2 OR lease_expires_at <= now())
    ORDER BY expires_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
DELETE FROM onceward_records r
USING doomed d
WHERE r.namespace = d.namespace AND r.key = d.key
"#;

/// Deletes a record (a live claim only when `$3`, force, is true) and, on commit, tells
/// every sidecar listening on the ledger which one. The namespace never holds `:`.
pub(super) const FORGET: &str = r#"
WITH gone AS (
    DELETE FROM onceward_records
    WHERE namespace = $1 AND key = $2
      AND ($3 OR state = 2 OR lease_expires_at <= now())
    RETURNING namespace, key
)
SELECT pg_notify('onceward_forget', namespace || ':' || key) FROM gone
"#;

/// Whether a record exists (after a forget deleted nothing).
pub(super) const RECORD_EXISTS: &str = r#"
SELECT EXISTS (SELECT 1 FROM onceward_records WHERE namespace = $1 AND key = $2)
"#;

// The claims of namespaces that may have a policy: the function the spend guard's
// migration creates decides them one after another in one transaction, reading the
// policy in it (see migrations/postgres/20261207000001_spend_guard.sql).
pub(super) const CLAIM_GUARDED: &str = r#"
SELECT item, verdict, token, stored_fingerprint, lease_ends, took_over, debited, detail,
       window_ends, db_now
FROM onceward_claim_guarded($1::text[], $2::text[], $3::bytea[], $4::bigint[],
                            $5::bigint[], $6::bytea[], $7::text[], $8::bigint[])
"#;

pub(super) const SELECT_POLICIES: &str = r#"
SELECT namespace, killswitch, killswitch_reason, has_budget, max_cost, max_claims,
       window_micros, require_subject
FROM onceward_policies
"#;

pub(super) const UPSERT_POLICY: &str = r#"
INSERT INTO onceward_policies AS p
    (namespace, killswitch, killswitch_reason, has_budget, max_cost, max_claims,
     window_micros, require_subject, updated_by, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())
ON CONFLICT (namespace) DO UPDATE
    SET killswitch = EXCLUDED.killswitch, killswitch_reason = EXCLUDED.killswitch_reason,
        has_budget = EXCLUDED.has_budget, max_cost = EXCLUDED.max_cost,
        max_claims = EXCLUDED.max_claims, window_micros = EXCLUDED.window_micros,
        require_subject = EXCLUDED.require_subject, updated_by = EXCLUDED.updated_by,
        updated_at = now()
"#;

pub(super) const DELETE_POLICY: &str = r#"
DELETE FROM onceward_policies WHERE namespace = $1
"#;

/// A subject's spend in the window of width `$3` microseconds holding `now()`.
pub(super) const SELECT_SPENT: &str = r#"
WITH w AS (
    SELECT ((extract(epoch FROM now()) * 1000000)::bigint / $3) * $3 AS start_micros
), bounds AS (
    SELECT 'epoch'::timestamptz + (start_micros / 1000000) * interval '1 second'
               + (start_micros % 1000000) * interval '1 microsecond' AS window_start,
           'epoch'::timestamptz + ((start_micros + $3) / 1000000) * interval '1 second'
               + ((start_micros + $3) % 1000000) * interval '1 microsecond' AS window_end
    FROM w
)
SELECT b.window_start, b.window_end, COALESCE(s.cost, 0) AS cost,
       COALESCE(s.claims, 0) AS claims
FROM bounds b
LEFT JOIN onceward_spend s
    ON s.namespace = $1 AND s.subject = $2 AND s.window_start = b.window_start
"#;

// Spend windows that have ended no longer limit anything; a refund to one is moot.
pub(super) const PURGE_SPEND: &str = r#"
DELETE FROM onceward_spend
WHERE ctid IN (SELECT ctid FROM onceward_spend WHERE window_end <= now() LIMIT $1)
"#;

pub(super) const PURGE_EVENTS: &str = r#"
DELETE FROM onceward_events
WHERE id IN (SELECT id FROM onceward_events WHERE expires_at <= now() LIMIT $1)
"#;

/// Appends audit events; a duplicate adds its count to its key's minute.
pub(super) const INSERT_EVENTS: &str = r#"
INSERT INTO onceward_events AS e
    (namespace, at, minute, key, subject, kind, count, detail, expires_at)
SELECT namespace, at, minute, key, subject, kind, count, detail,
       now() + $9 * interval '1 microsecond'
FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::text[], $5::text[],
            $6::smallint[], $7::bigint[], $8::text[])
     AS v(namespace, at, minute, key, subject, kind, count, detail)
ON CONFLICT (namespace, key, minute) WHERE kind = 1
DO UPDATE SET count = e.count + EXCLUDED.count
"#;

pub(super) const SELECT_EVENTS: &str = r#"
SELECT at, key, subject, kind, count, detail
FROM onceward_events
WHERE namespace = $1 AND ($2::timestamptz IS NULL OR at >= $2)
ORDER BY at DESC, id DESC
LIMIT $3
"#;
