-- The embedded ledger: the same table as the Postgres one, in SQLite's types.
-- Timestamps are INTEGER Unix microseconds (Postgres's precision), read from the
-- ledger process's clock inside the write transaction.

-- SQLite has no sequences: one row holds the last fencing token issued. Every claim
-- bumps it in the same transaction as its INSERT or takeover, so tokens stay strictly
-- increasing across keys and across Release, and a rolled-back claim reuses nothing
-- that was ever handed out.
CREATE TABLE onceward_fencing_tokens (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    last_value INTEGER NOT NULL CHECK (last_value >= 0)
);

INSERT INTO onceward_fencing_tokens (id, last_value) VALUES (1, 0);

-- The primary key is the UNIQUE index that makes the ledger the authority.
CREATE TABLE onceward_records (
    namespace        TEXT    NOT NULL,
    key              TEXT    NOT NULL,
    -- 1 = in progress, 2 = completed
    state            INTEGER NOT NULL CHECK (state IN (1, 2)),
    fingerprint      BLOB    NOT NULL,
    fencing_token    INTEGER NOT NULL,
    response         BLOB,
    created_at       INTEGER NOT NULL,
    completed_at     INTEGER,
    lease_expires_at INTEGER,
    expires_at       INTEGER NOT NULL,
    PRIMARY KEY (namespace, key),
    CHECK ((state = 1) = (lease_expires_at IS NOT NULL)),
    CHECK ((state = 2) = (completed_at IS NOT NULL))
) WITHOUT ROWID;

-- The retention job scans by expiry.
CREATE INDEX onceward_records_expires_at ON onceward_records (expires_at);
