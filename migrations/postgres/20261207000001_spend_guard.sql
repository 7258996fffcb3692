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
-- after another in array order. The policy is read in the same transaction, so every
-- decision uses the policy as it stands. For each claim:
-- - a new key is inserted first (so a concurrent claim of the same key that has not
--   committed is waited for and answered as the duplicate it is, never refused);
--   then the killswitch may block it (verdict 3), and under a budget, with a subject,
--   one guarded upsert debits the subject's window or finds a limit in the way (4:
--   max_cost, 5: max_claims). A refused claim's row goes again in the same
--   transaction: nobody ever sees it. Otherwise it is acquired (1).
-- - a key that stands and cannot be taken over is left to the caller to read
--   (verdict 2: duplicates first, nothing debited); an expired lease is blocked by the
--   killswitch (3) or taken over (1, took_over), which debits nothing.
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
    n int := coalesce(array_length(p_keys, 1), 0);
    done boolean[];
    ins_keys text[];
    ins_tokens bigint[];
    ins_fingerprints bytea[];
    ins_leases timestamptz[];
    ins_subjects text[];
    ins_costs bigint[];
    debited_subjects text[];
    j int;
BEGIN
    db_now := now();
    now_micros := (extract(epoch FROM db_now) * 1000000)::bigint;
    done := array_fill(false, ARRAY[n]);

    -- The common case in bulk: claims of one namespace with a budget and no
    -- killswitch, each of a subject no other claim of the call names, with a cost
    -- that fits. Their new keys are inserted in one statement and debited in one
    -- guarded upsert (one row per subject, so order within the call cannot matter);
    -- a claim the upsert finds a limit in the way of loses its row again. Everything
    -- else — a key that stands, a repeated subject, another namespace — is decided one
    -- by one below.
    IF n > 1 AND p_namespaces[1] = ALL (p_namespaces) THEN
        SELECT * INTO pol FROM onceward_policies p WHERE p.namespace = p_namespaces[1];
        has_policy := FOUND;
        pol_namespace := p_namespaces[1];
        IF has_policy AND pol.has_budget AND NOT pol.killswitch THEN
            start_micros := (now_micros / pol.window_micros) * pol.window_micros;
            w_start := 'epoch'::timestamptz
                + (start_micros / 1000000) * interval '1 second'
                + (start_micros % 1000000) * interval '1 microsecond';
            w_end := w_start + (pol.window_micros / 1000000) * interval '1 second'
                + (pol.window_micros % 1000000) * interval '1 microsecond';
            WITH c AS (
                SELECT u.*, count(*) OVER (PARTITION BY u.subject) AS same_subject
                FROM unnest(p_keys, p_fingerprints, p_leases, p_abandon, p_claimants,
                            p_subjects, p_costs)
                     AS u(key, fingerprint, lease, abandon, claimant, subject, cost)
            ), ins AS (
                INSERT INTO onceward_records AS r
                    (namespace, key, state, fingerprint, fencing_token, created_at,
                     lease_expires_at, expires_at, claimant, subject, cost, debit_window)
                SELECT p_namespaces[1], c.key, 1, c.fingerprint,
                       nextval('onceward_fencing_tokens'), db_now,
                       db_now + c.lease * interval '1 microsecond',
                       db_now + (c.lease + c.abandon) * interval '1 microsecond',
                       c.claimant, c.subject, c.cost, w_start
                FROM c
                WHERE c.subject <> '' AND c.same_subject = 1
                  AND (pol.max_cost = 0 OR c.cost <= pol.max_cost)
                ORDER BY c.key
                ON CONFLICT (namespace, key) DO NOTHING
                RETURNING r.key, r.fencing_token, r.fingerprint, r.lease_expires_at,
                          r.subject, r.cost
            )
            SELECT array_agg(ins.key), array_agg(ins.fencing_token),
                   array_agg(ins.fingerprint), array_agg(ins.lease_expires_at),
                   array_agg(ins.subject), array_agg(ins.cost)
            INTO ins_keys, ins_tokens, ins_fingerprints, ins_leases, ins_subjects, ins_costs
            FROM ins;

            IF ins_keys IS NOT NULL THEN
                WITH d AS (
                    INSERT INTO onceward_spend AS s
                        (namespace, subject, window_start, window_end, cost, claims)
                    SELECT p_namespaces[1], x.subject, w_start, w_end, x.cost, 1
                    FROM unnest(ins_subjects, ins_costs) AS x(subject, cost)
                    ORDER BY x.subject
                    ON CONFLICT (namespace, subject, window_start) DO UPDATE
                        SET cost = LEAST(s.cost::numeric + EXCLUDED.cost,
                                         9223372036854775807)::bigint,
                            claims = s.claims + 1
                        WHERE (pol.max_cost = 0
                               OR s.cost::numeric + EXCLUDED.cost <= pol.max_cost)
                          AND (pol.max_claims = 0 OR s.claims + 1 <= pol.max_claims)
                    RETURNING s.subject
                )
                SELECT coalesce(array_agg(d.subject), '{}') INTO debited_subjects FROM d;

                FOR k IN 1 .. array_length(ins_keys, 1) LOOP
                    j := array_position(p_keys, ins_keys[k]);
                    done[j] := true;
                    item := j;
                    took_over := false;
                    window_ends := NULL;
                    IF ins_subjects[k] = ANY (debited_subjects) THEN
                        verdict := 1;
                        token := ins_tokens[k];
                        stored_fingerprint := ins_fingerprints[k];
                        lease_ends := ins_leases[k];
                        debited := ins_costs[k];
                        detail := '';
                    ELSE
                        DELETE FROM onceward_records r
                        WHERE r.namespace = p_namespaces[1] AND r.key = ins_keys[k];
                        SELECT s.cost INTO spent_cost
                        FROM onceward_spend s
                        WHERE s.namespace = p_namespaces[1] AND s.subject = ins_subjects[k]
                          AND s.window_start = w_start;
                        IF pol.max_cost > 0
                           AND spent_cost::numeric + ins_costs[k] > pol.max_cost THEN
                            verdict := 4;
                            detail := 'max_cost';
                        ELSE
                            verdict := 5;
                            detail := 'max_claims';
                        END IF;
                        token := NULL;
                        stored_fingerprint := NULL;
                        lease_ends := NULL;
                        debited := 0;
                        window_ends := w_end;
                    END IF;
                    RETURN NEXT;
                END LOOP;
            END IF;
        END IF;
    END IF;

    FOR i IN 1 .. n LOOP
        IF done[i] THEN
            CONTINUE;
        END IF;
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

        IF FOUND THEN
            IF has_policy AND pol.killswitch THEN
                verdict := 3;
                detail := pol.killswitch_reason;
            ELSIF debit AND pol.max_cost > 0 AND p_costs[i] > pol.max_cost THEN
                verdict := 4;
                detail := 'max_cost';
            ELSIF debit THEN
                INSERT INTO onceward_spend AS s
                    (namespace, subject, window_start, window_end, cost, claims)
                VALUES (p_namespaces[i], p_subjects[i], w_start, w_end, p_costs[i], 1)
                ON CONFLICT (namespace, subject, window_start) DO UPDATE
                    SET cost = LEAST(s.cost::numeric + EXCLUDED.cost,
                                     9223372036854775807)::bigint,
                        claims = s.claims + 1
                    WHERE (pol.max_cost = 0 OR s.cost::numeric + EXCLUDED.cost <= pol.max_cost)
                      AND (pol.max_claims = 0 OR s.claims + 1 <= pol.max_claims)
                RETURNING s.cost INTO spent_cost;
                IF FOUND THEN
                    debited := p_costs[i];
                ELSE
                    SELECT s.cost, s.claims INTO spent_cost, spent_claims
                    FROM onceward_spend s
                    WHERE s.namespace = p_namespaces[i] AND s.subject = p_subjects[i]
                      AND s.window_start = w_start;
                    IF pol.max_cost > 0 AND spent_cost::numeric + p_costs[i] > pol.max_cost THEN
                        verdict := 4;
                        detail := 'max_cost';
                    ELSE
                        verdict := 5;
                        detail := 'max_claims';
                    END IF;
                END IF;
            END IF;
            IF verdict <> 0 THEN
                DELETE FROM onceward_records r
                WHERE r.namespace = p_namespaces[i] AND r.key = p_keys[i];
                token := NULL;
                stored_fingerprint := NULL;
                lease_ends := NULL;
                IF verdict <> 3 THEN
                    window_ends := w_end;
                END IF;
            ELSE
                verdict := 1;
            END IF;
            RETURN NEXT;
            CONTINUE;
        END IF;

        -- The key stands (or stood a moment ago): answered from the row, or taken over.
        SELECT r.state, r.fingerprint, r.lease_expires_at INTO rec
        FROM onceward_records r
        WHERE r.namespace = p_namespaces[i] AND r.key = p_keys[i]
        FOR UPDATE;
        IF NOT FOUND
           OR NOT (rec.state = 1 AND rec.lease_expires_at <= db_now
                   AND (octet_length(rec.fingerprint) = 0
                        OR octet_length(p_fingerprints[i]) = 0
                        OR rec.fingerprint = p_fingerprints[i])) THEN
            -- Gone again, or standing: the caller reads it and decides.
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
    END LOOP;
END
$$;
