-- The spend guard (docs/PROTOCOL.md, "Spend guard"): each namespace's policy, each
-- subject's spend per window, what each claim debited (so a Release can refund it to
-- the window it was made in), and the audit trail.

-- One row per namespace with a policy; a namespace without one has no row.
CREATE TABLE onceward_policies (
    namespace         text        PRIMARY KEY,
    killswitch        boolean     NOT NULL DEFAULT false,
    killswitch_reason text        NOT NULL DEFAULT '',
    has_budget        boolean     NOT NULL DEFAULT false,
    -- 0: no limit.
    max_cost          bigint      NOT NULL DEFAULT 0 CHECK (max_cost >= 0),
    max_claims        bigint      NOT NULL DEFAULT 0 CHECK (max_claims >= 0),
    -- The budget's window in microseconds (0 without a budget).
    window_micros     bigint      NOT NULL DEFAULT 0 CHECK (window_micros >= 0),
    require_subject   boolean     NOT NULL DEFAULT false,
    -- Who set it last (the tenant, or "anonymous" without tenants), and when.
    updated_by        text        NOT NULL DEFAULT '',
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- What each subject spent in each fixed window (aligned to the epoch).
CREATE TABLE onceward_spend (
    namespace    text        NOT NULL,
    subject      text        NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    cost         bigint      NOT NULL CHECK (cost >= 0),
    claims       bigint      NOT NULL CHECK (claims >= 0),
    PRIMARY KEY (namespace, subject, window_start)
);
CREATE INDEX onceward_spend_window_end ON onceward_spend (window_end);

-- The claim's debit: the window it was made in (NULL: nothing debited), its subject
-- and cost. A takeover keeps them: it does not debit again.
ALTER TABLE onceward_records
    ADD COLUMN subject text NOT NULL DEFAULT '',
    ADD COLUMN cost bigint NOT NULL DEFAULT 0,
    ADD COLUMN debit_window timestamptz;

-- The audit trail. kind: 1 duplicate, 2 fingerprint mismatch, 3 blocked, 4 over
-- budget, 5 takeover, 6 release, 7 forget. Duplicates are one row per key per minute,
-- counted.
CREATE TABLE onceward_events (
    id         bigserial   PRIMARY KEY,
    namespace  text        NOT NULL,
    at         timestamptz NOT NULL,
    minute     timestamptz NOT NULL,
    key        text        NOT NULL,
    subject    text        NOT NULL DEFAULT '',
    kind       smallint    NOT NULL,
    count      bigint      NOT NULL DEFAULT 1,
    detail     text        NOT NULL DEFAULT '',
    expires_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX onceward_events_duplicates ON onceward_events (namespace, key, minute)
    WHERE kind = 1;
CREATE INDEX onceward_events_newest ON onceward_events (namespace, at DESC);
CREATE INDEX onceward_events_expires_at ON onceward_events (expires_at);

-- The claims of a namespace with a policy, in one statement and one transaction, one
-- after another in array order. For each: a record that stands and cannot be taken
-- over is left to the caller to read (verdict 2: duplicates first, nothing debited);
-- otherwise the killswitch blocks it (3); a new key with a subject under a budget
-- locks the subject's window row, and is refused if a limit would be exceeded (4:
-- max_cost, 5: max_claims) or inserted and debited (1). A takeover (1, took_over)
-- debits nothing. The policy is read in the same transaction, so every decision uses
-- the policy as it stands.
CREATE FUNCTION onceward_claim_guarded(
    p_namespaces text[], p_keys text[], p_fingerprints bytea[], p_leases bigint[],
    p_abandon bigint[], p_claimants bytea[], p_subjects text[], p_costs bigint[])
RETURNS TABLE (item int, verdict smallint, token bigint, stored_fingerprint bytea,
               lease_ends timestamptz, took_over boolean, debited bigint, detail text,
               window_ends timestamptz, db_now timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    pol onceward_policies%ROWTYPE;
    pol_namespace text;
    has_policy boolean := false;
    rec record;
    now_micros bigint;
    start_micros bigint;
    w_start timestamptz;
    w_end timestamptz;
    spent_cost bigint;
    spent_claims bigint;
    debit boolean;
BEGIN
    db_now := now();
    now_micros := (extract(epoch FROM db_now) * 1000000)::bigint;
    FOR i IN 1 .. coalesce(array_length(p_keys, 1), 0) LOOP
        item := i;
        verdict := 0;
        token := NULL;
        stored_fingerprint := NULL;
        lease_ends := NULL;
        took_over := false;
        debited := 0;
        detail := '';
        window_ends := NULL;
        IF pol_namespace IS DISTINCT FROM p_namespaces[i] THEN
            SELECT * INTO pol FROM onceward_policies p WHERE p.namespace = p_namespaces[i];
            has_policy := FOUND;
            pol_namespace := p_namespaces[i];
        END IF;

        SELECT r.state, r.fingerprint, r.lease_expires_at INTO rec
        FROM onceward_records r
        WHERE r.namespace = p_namespaces[i] AND r.key = p_keys[i]
        FOR UPDATE;
        IF FOUND THEN
            IF NOT (rec.state = 1 AND rec.lease_expires_at <= db_now
                    AND (octet_length(rec.fingerprint) = 0
                         OR octet_length(p_fingerprints[i]) = 0
                         OR rec.fingerprint = p_fingerprints[i])) THEN
                verdict := 2;
                RETURN NEXT;
                CONTINUE;
            END IF;
            IF has_policy AND pol.killswitch THEN
                verdict := 3;
                detail := pol.killswitch_reason;
                RETURN NEXT;
                CONTINUE;
            END IF;
            UPDATE onceward_records r
            SET fencing_token = nextval('onceward_fencing_tokens'),
                fingerprint = CASE WHEN octet_length(p_fingerprints[i]) = 0
                                   THEN r.fingerprint ELSE p_fingerprints[i] END,
                lease_expires_at = db_now + p_leases[i] * interval '1 microsecond',
                expires_at = db_now + (p_leases[i] + p_abandon[i]) * interval '1 microsecond',
                claimant = p_claimants[i],
                reentered = false
            WHERE r.namespace = p_namespaces[i] AND r.key = p_keys[i]
            RETURNING r.fencing_token, r.fingerprint, r.lease_expires_at
            INTO token, stored_fingerprint, lease_ends;
            verdict := 1;
            took_over := true;
            RETURN NEXT;
            CONTINUE;
        END IF;

        -- A new key: inserted first, so that a concurrent claim of the same key that
        -- has not committed yet is waited for and answered as the duplicate it is
        -- (verdict 2), never refused by the killswitch or the budget. If the policy
        -- refuses this claim, the row goes again in the same transaction: nobody
        -- ever sees it.
        debit := has_policy AND pol.has_budget AND p_subjects[i] <> '';
        IF debit THEN
            start_micros := (now_micros / pol.window_micros) * pol.window_micros;
            w_start := 'epoch'::timestamptz
                + (start_micros / 1000000) * interval '1 second'
                + (start_micros % 1000000) * interval '1 microsecond';
            w_end := w_start + (pol.window_micros / 1000000) * interval '1 second'
                + (pol.window_micros % 1000000) * interval '1 microsecond';
        END IF;
        INSERT INTO onceward_records AS r
            (namespace, key, state, fingerprint, fencing_token, created_at, lease_expires_at,
             expires_at, claimant, subject, cost, debit_window)
        VALUES (p_namespaces[i], p_keys[i], 1, p_fingerprints[i],
                nextval('onceward_fencing_tokens'), db_now,
                db_now + p_leases[i] * interval '1 microsecond',
                db_now + (p_leases[i] + p_abandon[i]) * interval '1 microsecond',
                p_claimants[i], p_subjects[i], p_costs[i],
                CASE WHEN debit THEN w_start END)
        ON CONFLICT (namespace, key) DO NOTHING
        RETURNING r.fencing_token, r.fingerprint, r.lease_expires_at
        INTO token, stored_fingerprint, lease_ends;
        IF NOT FOUND THEN
            -- Inserted by a concurrent claim meanwhile: the caller reads it.
            verdict := 2;
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF has_policy AND pol.killswitch THEN
            DELETE FROM onceward_records r
            WHERE r.namespace = p_namespaces[i] AND r.key = p_keys[i];
            token := NULL;
            stored_fingerprint := NULL;
            lease_ends := NULL;
            verdict := 3;
            detail := pol.killswitch_reason;
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF debit THEN
            INSERT INTO onceward_spend (namespace, subject, window_start, window_end, cost, claims)
            VALUES (p_namespaces[i], p_subjects[i], w_start, w_end, 0, 0)
            ON CONFLICT DO NOTHING;
            SELECT s.cost, s.claims INTO spent_cost, spent_claims
            FROM onceward_spend s
            WHERE s.namespace = p_namespaces[i] AND s.subject = p_subjects[i]
              AND s.window_start = w_start
            FOR UPDATE;
            IF pol.max_cost > 0 AND spent_cost::numeric + p_costs[i] > pol.max_cost THEN
                detail := 'max_cost';
                verdict := 4;
            ELSIF pol.max_claims > 0 AND spent_claims + 1 > pol.max_claims THEN
                detail := 'max_claims';
                verdict := 5;
            END IF;
            IF verdict IN (4, 5) THEN
                DELETE FROM onceward_records r
                WHERE r.namespace = p_namespaces[i] AND r.key = p_keys[i];
                token := NULL;
                stored_fingerprint := NULL;
                lease_ends := NULL;
                window_ends := w_end;
                RETURN NEXT;
                CONTINUE;
            END IF;
            UPDATE onceward_spend s
            SET cost = LEAST(s.cost::numeric + p_costs[i], 9223372036854775807)::bigint,
                claims = s.claims + 1
            WHERE s.namespace = p_namespaces[i] AND s.subject = p_subjects[i]
              AND s.window_start = w_start;
            debited := p_costs[i];
        END IF;
        verdict := 1;
        RETURN NEXT;
    END LOOP;
END
$$;
