-- The records, stored in the order they were claimed: a rowid table, with the UNIQUE
-- index on (namespace, key) as the authority.
--
-- Until now the records lived in their primary key's B-tree (WITHOUT ROWID), where a
-- new key lands on a page of its own somewhere in the middle of the table: every claim
-- rewrote one 4 KiB page in its commit's write-ahead log, and its completion that page
-- again in the next commit. Stored in insertion order, a batch's new records share the
-- table's last pages, and their completions the pages those claims filled a moment
-- before; only the index entry, a few dozen bytes, still lands at random. A commit's
-- log is about half as long, and so is its sync.
CREATE TABLE onceward_records_by_claim (
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
    claimant         BLOB    NOT NULL DEFAULT x'',
    reentered        INTEGER NOT NULL DEFAULT 0,
    subject          TEXT    NOT NULL DEFAULT '',
    cost             INTEGER NOT NULL DEFAULT 0,
    debit_window     INTEGER,
    UNIQUE (namespace, key),
    CHECK ((state = 1) = (lease_expires_at IS NOT NULL)),
    CHECK ((state = 2) = (completed_at IS NOT NULL))
);

INSERT INTO onceward_records_by_claim
    (namespace, key, state, fingerprint, fencing_token, response, created_at, completed_at,
     lease_expires_at, expires_at, claimant, reentered, subject, cost, debit_window)
SELECT namespace, key, state, fingerprint, fencing_token, response, created_at, completed_at,
       lease_expires_at, expires_at, claimant, reentered, subject, cost, debit_window
FROM onceward_records
ORDER BY created_at, fencing_token;

DROP TABLE onceward_records;

ALTER TABLE onceward_records_by_claim RENAME TO onceward_records;

-- The retention job scans by expiry.
CREATE INDEX onceward_records_expires_at ON onceward_records (expires_at);
