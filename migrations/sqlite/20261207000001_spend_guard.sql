-- The spend guard: each namespace's policy, each subject's spend per window, what each
-- claim debited (so a Release can refund it to the window it was made in), and the
-- audit trail. Times are INTEGER Unix microseconds, as in onceward_records.

CREATE TABLE onceward_policies (
    namespace         TEXT    PRIMARY KEY,
    killswitch        INTEGER NOT NULL DEFAULT 0,
    killswitch_reason TEXT    NOT NULL DEFAULT '',
    has_budget        INTEGER NOT NULL DEFAULT 0,
    max_cost          INTEGER NOT NULL DEFAULT 0 CHECK (max_cost >= 0),
    max_claims        INTEGER NOT NULL DEFAULT 0 CHECK (max_claims >= 0),
    window_micros     INTEGER NOT NULL DEFAULT 0 CHECK (window_micros >= 0),
    require_subject   INTEGER NOT NULL DEFAULT 0,
    updated_by        TEXT    NOT NULL DEFAULT '',
    updated_at        INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE onceward_spend (
    namespace    TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    window_start INTEGER NOT NULL,
    window_end   INTEGER NOT NULL,
    cost         INTEGER NOT NULL CHECK (cost >= 0),
    claims       INTEGER NOT NULL CHECK (claims >= 0),
    PRIMARY KEY (namespace, subject, window_start)
) WITHOUT ROWID;
CREATE INDEX onceward_spend_window_end ON onceward_spend (window_end);

ALTER TABLE onceward_records ADD COLUMN subject TEXT NOT NULL DEFAULT '';
ALTER TABLE onceward_records ADD COLUMN cost INTEGER NOT NULL DEFAULT 0;
ALTER TABLE onceward_records ADD COLUMN debit_window INTEGER;

CREATE TABLE onceward_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace  TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    minute     INTEGER NOT NULL,
    key        TEXT    NOT NULL,
    subject    TEXT    NOT NULL DEFAULT '',
    kind       INTEGER NOT NULL,
    count      INTEGER NOT NULL DEFAULT 1,
    detail     TEXT    NOT NULL DEFAULT '',
    expires_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX onceward_events_duplicates ON onceward_events (namespace, key, minute)
    WHERE kind = 1;
CREATE INDEX onceward_events_newest ON onceward_events (namespace, at DESC);
CREATE INDEX onceward_events_expires_at ON onceward_events (expires_at);
