-- The ledger: one row per (namespace, key). The primary key is the UNIQUE index that
-- makes the ledger the authority: a second INSERT for a key conflicts, whatever the
-- hot tier forgot.

-- One global sequence for fencing tokens, so tokens stay ordered across keys, across
-- Release, and across every sidecar sharing this database.
CREATE SEQUENCE onceward_fencing_tokens AS bigint;

CREATE TABLE onceward_records (
    namespace        text        NOT NULL,
    key              text        NOT NULL,
    -- 1 = in progress, 2 = completed
    state            smallint    NOT NULL CHECK (state IN (1, 2)),
    fingerprint      bytea       NOT NULL,
    fencing_token    bigint      NOT NULL,
    response         bytea,
    created_at       timestamptz NOT NULL,
    completed_at     timestamptz,
    lease_expires_at timestamptz,
    expires_at       timestamptz NOT NULL,
    PRIMARY KEY (namespace, key),
    CHECK ((state = 1) = (lease_expires_at IS NOT NULL)),
    CHECK ((state = 2) = (completed_at IS NOT NULL))
);

-- The retention job scans by expiry.
CREATE INDEX onceward_records_expires_at ON onceward_records (expires_at);
