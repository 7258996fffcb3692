//! The Postgres ledger: the production authority, shared by every sidecar.
//!
//! Each operation is one autocommit statement, so a returned row means a committed
//! write (sqlx reads the statement's replies up to ReadyForQuery, which comes after
//! the commit). The claim is a single `INSERT … ON CONFLICT DO UPDATE … WHERE`: the
//! conflict arm is the compare-and-set takeover of an expired lease, evaluated under
//! the row lock against the latest committed row and `now()`, the database clock.
//!
//! **A connection that fails under a statement** (a proxy or PgBouncer restarted, a
//! failover, a cut network) costs no request once the database answers again: the
//! statement runs once more on another connection — one the pool pings before handing
//! it out, or a new one — and every kept writer connection last checked before the
//! failure is checked before its next batch. Running a statement twice is safe for
//! every statement here, even when the first run committed and only its reply was
//! lost: a claim finds the row it wrote by its claimant and is answered `Acquired`
//! with that row's token; a completion finds its own completion by its token; an
//! extension sets the same lease again; reads and cleanup change nothing twice; and a
//! release that already happened reports "not the holder", as SPEC rule 2 has it for
//! a retried Release.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{
    PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow, Postgres,
};
use sqlx::query::Query;
use sqlx::{ConnectOptions, Connection as _, Row};

use super::batcher::{BatchOutcome, Batcher};
use super::{
    ClaimDecision, CompleteDecision, ExtendedLease, Ledger, LedgerError, NewClaim, db_token,
    internal, micros, stored_fingerprint, stored_identity,
};
use crate::domain::{Completion, FencingToken, Fingerprint, Record, RecordId, RecordState};

/// How many times a claim re-reads when the row it conflicted with changed under it
/// (released, deleted, or its lease ran out between two statements).
const CLAIM_ATTEMPTS: usize = 4;
/// Default batch writers per kind of write; each holds at most one pool connection at
/// a time. One writer makes the biggest batches — one statement and one commit for
/// everything queued while the previous batch ran — and measured best on a local
/// Postgres (BENCHMARKS.md); a Postgres farther away, where a round trip dominates,
/// may want more (`--ledger-batch-writers`).
pub const DEFAULT_BATCH_WRITERS: usize = 1;
/// How often a batch aborted as a deadlock victim is run again.
const DEADLOCK_RETRIES: usize = 3;
/// The most requests one batched statement carries.
const MAX_BATCH: usize = 256;

// Claims arrive in batches (see `batcher`): one statement inserts every new key and
// takes over every expired lease in the batch, and commits once. Rows are sorted by
// key before they are sent, so concurrent batches lock rows in the same order and
// cannot deadlock each other.
const CLAIM_BATCH: &str = r#"
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
        claimant = EXCLUDED.claimant
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
const SELECT_RECORDS: &str = r#"
SELECT namespace, key, state, fingerprint, response, created_at, completed_at,
       lease_expires_at, expires_at, fencing_token, claimant, now() AS db_now
FROM onceward_records
WHERE (namespace, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"#;

const COMPLETE_BATCH: &str = r#"
UPDATE onceward_records r
SET state = 2, response = c.response, completed_at = now(), lease_expires_at = NULL,
    expires_at = now() + c.retention * interval '1 microsecond'
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bytea[], $5::bigint[])
     WITH ORDINALITY AS c(namespace, key, fencing_token, response, retention, position)
WHERE r.namespace = c.namespace AND r.key = c.key
  AND r.fencing_token = c.fencing_token AND r.state = 1
RETURNING c.position, r.fingerprint, r.completed_at, r.expires_at, now() AS db_now
"#;

const SELECT_RECORD: &str = r#"
SELECT namespace, key, state, fingerprint, response, created_at, completed_at,
       lease_expires_at, expires_at, now() AS db_now
FROM onceward_records
WHERE namespace = $1 AND key = $2
"#;

const COMPLETED_BY_TOKEN: &str = r#"
SELECT fingerprint, response, completed_at, expires_at, now() AS db_now
FROM onceward_records
WHERE namespace = $1 AND key = $2 AND fencing_token = $3 AND state = 2
"#;

const RELEASE: &str = r#"
DELETE FROM onceward_records
WHERE namespace = $1 AND key = $2 AND fencing_token = $3 AND state = 1
"#;

const EXTEND_LEASE: &str = r#"
UPDATE onceward_records
SET lease_expires_at = now() + $4 * interval '1 microsecond',
    expires_at = GREATEST(expires_at, now() + ($4 + $5) * interval '1 microsecond')
WHERE namespace = $1 AND key = $2 AND fencing_token = $3 AND state = 1
RETURNING lease_expires_at, fingerprint, now() AS db_now
"#;

// Row locks taken by claims are skipped, not waited for, so cleanup never blocks a
// claim for longer than one small batch's delete, and cleaners in many sidecars each
// take different rows.
const PURGE_EXPIRED: &str = r#"
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

/// Options for connecting to Postgres.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The most connections the pool opens.
    pub max_connections: u32,
    /// How long to wait for a connection before failing closed.
    pub acquire_timeout: Duration,
    /// Start even if `synchronous_commit` is off (acknowledged writes may be lost).
    pub allow_async_commit: bool,
    /// Batch writers per kind of write (claims, completions).
    pub batch_writers: usize,
}

/// The Postgres ledger.
pub struct PostgresLedger {
    pool: PgPool,
    claims: Batcher<NewClaim, ClaimDecision>,
    completions: Batcher<PendingCompletion, CompleteDecision>,
}

/// The connections the batch writers keep between batches, so a batch costs one
/// round trip: a pooled connection is pinged when handed out and again when given
/// back, which would triple the round trips of a writer's loop.
///
/// Writers run the same few statements thousands of times a second, so they use
/// generic plans: planning a batch for its own parameters cost more than executing
/// it. A generic plan is only as good as the table statistics it was made with, and
/// one made while the table was nearly empty scans it (see the pool's
/// `force_custom_plan`). So a connection last checked `check_after` ago or more is
/// checked before use: its statements are closed, to be prepared and planned again
/// for the table as it is, or, if it has none, it is pinged. Either is a round trip
/// that proves it alive, so a Postgres restart while the writers were idle costs no
/// batch. A writer's connection never goes back to the pool with its plan setting: it
/// is closed.
struct WriterConnections {
    pool: PgPool,
    check_after: Duration,
    idle: std::sync::Mutex<Vec<KeptConnection>>,
    /// When a connection last failed under a batch.
    failed_at: std::sync::Mutex<Option<Instant>>,
}

/// A writer's connection between batches.
struct KeptConnection {
    connection: PoolConnection<Postgres>,
    /// When it was opened, or last replanned or pinged.
    checked_at: Instant,
}

/// How long a writer's connection is used before it is checked (replanned or pinged)
/// again.
const CHECK_AFTER: Duration = Duration::from_secs(1);

impl WriterConnections {
    fn new(pool: PgPool, check_after: Duration) -> Arc<Self> {
        Arc::new(Self {
            pool,
            check_after,
            idle: std::sync::Mutex::new(Vec::new()),
            failed_at: std::sync::Mutex::new(None),
        })
    }

    /// A connection failed under a batch: every kept connection last checked before
    /// now is suspect, and is checked before its next batch.
    fn saw_connection_fail(&self) {
        *self
            .failed_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
    }

    /// Whether `kept` must be checked before use: checked too long ago, or before a
    /// connection was last seen failing.
    fn needs_check(&self, kept: &KeptConnection) -> bool {
        let failed_at = *self
            .failed_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.checked_at.elapsed() >= self.check_after
            || failed_at.is_some_and(|failed_at| kept.checked_at <= failed_at)
    }

    /// A connection kept from an earlier batch, or a new one from the pool.
    async fn take(&self) -> Result<KeptConnection, LedgerError> {
        let kept = self.idle_list().pop();
        if let Some(mut kept) = kept {
            if !self.needs_check(&kept) {
                return Ok(kept);
            }
            let alive = if kept.connection.cached_statements_size() > 0 {
                kept.connection.clear_cached_statements().await.is_ok()
            } else {
                kept.connection.ping().await.is_ok()
            };
            if alive {
                kept.checked_at = Instant::now();
                return Ok(kept);
            }
            // A broken one is dropped here, which closes it.
        }
        let mut connection = self.pool.acquire().await.map_err(classify)?;
        connection.close_on_drop();
        sqlx::query("SET plan_cache_mode = force_generic_plan")
            .execute(&mut *connection)
            .await
            .map_err(classify)?;
        Ok(KeptConnection {
            connection,
            checked_at: Instant::now(),
        })
    }

    /// Keeps `kept` for the next batch, unless the batch failed in a way that may
    /// have left it broken (dropping it closes it; the pool opens another).
    fn keep<T>(&self, kept: KeptConnection, outcome: &Result<T, LedgerError>) {
        if !matches!(outcome, Err(LedgerError::Unavailable(_))) {
            self.idle_list().push(kept);
        }
    }

    fn idle_list(&self) -> std::sync::MutexGuard<'_, Vec<KeptConnection>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A `Complete` waiting for its batch.
struct PendingCompletion {
    id: RecordId,
    token: i64,
    response: Vec<u8>,
    retention: Duration,
}

impl PostgresLedger {
    /// Connects, refuses a database that would lose acknowledged commits, and applies
    /// the embedded migrations.
    pub async fn connect(url: &str, options: &PostgresOptions) -> anyhow::Result<Self> {
        use anyhow::Context as _;

        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect_options(url)?)
            .await
            .context("cannot connect to Postgres")?;
        refuse_async_commit(&pool, options.allow_async_commit).await?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .context("cannot apply Postgres migrations")?;
        let (claims, completions) = batch_writers(&pool, options.batch_writers);
        Ok(Self {
            pool,
            claims,
            completions,
        })
    }

    async fn read(&self, id: &RecordId) -> Result<Option<(Record, DateTime<Utc>)>, LedgerError> {
        let row = once_more_if_the_connection_fails(|| {
            sqlx::query(SELECT_RECORD)
                .bind(id.namespace.as_str())
                .bind(id.key.as_str())
                .fetch_optional(&self.pool)
        })
        .await?;
        row.map(|row| {
            let now: DateTime<Utc> = row.try_get("db_now").map_err(internal)?;
            Ok((record_from_row(&row)?, now))
        })
        .transpose()
    }
}

/// How the ledger's connections are opened.
fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    use anyhow::Context as _;

    Ok(url
        .parse::<PgConnectOptions>()
        .context("invalid Postgres URL")?
        .application_name("onceward")
        // Every statement is a keyed lookup, batched through `unnest`. A generic plan
        // made while the table was small (a new database) is a sequential scan, and a
        // connection would keep it as the table grows; a plan made for each execution
        // sees the table's size and the batch's. The batch writers, which replan
        // regularly, use generic plans (`WriterConnections`).
        .options([("plan_cache_mode", "force_custom_plan")])
        .disable_statement_logging())
}

/// Fails unless Postgres acknowledges commits only once they are durable, or the
/// operator accepted the risk.
async fn refuse_async_commit(pool: &PgPool, allow_async_commit: bool) -> anyhow::Result<()> {
    use anyhow::Context as _;

    let synchronous_commit: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(pool)
        .await
        .context("cannot read synchronous_commit")?;
    if synchronous_commit == "off" {
        if allow_async_commit {
            tracing::warn!(
                "Postgres synchronous_commit is off: an acknowledged ACQUIRED or Complete \
                 may be lost if Postgres crashes (accepted by --allow-async-commit)"
            );
        } else {
            anyhow::bail!(
                "Postgres synchronous_commit is off, so acknowledged claims could be lost \
                 in a crash; turn it on, or pass --allow-async-commit to accept the risk"
            );
        }
    }
    Ok(())
}

/// Runs one batch on a connection.
type RunBatch<Req, Resp> =
    for<'c> fn(
        &'c mut PgConnection,
        &'c mut [Req],
    ) -> Pin<Box<dyn Future<Output = BatchOutcome<Resp>> + Send + 'c>>;

/// Starts `writers` writers of `op` batches, on the current runtime, each running
/// `run` on a connection kept between batches; see `Batcher::spawn` for
/// `undelivered`.
fn spawn_writers<Req, Resp>(
    op: &'static str,
    pool: &PgPool,
    writers: usize,
    run: RunBatch<Req, Resp>,
    undelivered: impl Fn(Req, Resp) + Send + Sync + 'static,
) -> Batcher<Req, Resp>
where
    Req: Send + 'static,
    Resp: Send + 'static,
{
    let connections = WriterConnections::new(pool.clone(), CHECK_AFTER);
    let run_on_kept = move |mut batch: Vec<Req>| {
        let connections = connections.clone();
        async move {
            let mut outcome = run_once(&connections, run, &mut batch).await;
            if let Err(error) = &outcome
                && lost_connection(error)
            {
                // Safe to run again even if the first run committed (module docs).
                tracing::info!(
                    op, error = %crate::telemetry::chain(error),
                    "a ledger connection failed under a batch; running it again on another"
                );
                connections.saw_connection_fail();
                outcome = run_once(&connections, run, &mut batch).await;
            }
            (batch, outcome)
        }
    };
    Batcher::spawn(op, writers, MAX_BATCH, run_on_kept, undelivered)
}

/// Runs `batch` on a kept (or new) connection, and keeps the connection for the next
/// batch unless it may be broken.
async fn run_once<Req, Resp>(
    connections: &WriterConnections,
    run: RunBatch<Req, Resp>,
    batch: &mut [Req],
) -> BatchOutcome<Resp> {
    let mut kept = connections.take().await?;
    let outcome = run(&mut kept.connection, batch).await;
    connections.keep(kept, &outcome);
    outcome
}

/// The batch writers for claims and completions, spawned on the current runtime.
fn batch_writers(
    pool: &PgPool,
    writers: usize,
) -> (
    Batcher<NewClaim, ClaimDecision>,
    Batcher<PendingCompletion, CompleteDecision>,
) {
    let release_pool = pool.clone();
    let release_unheld = move |claim: NewClaim, decision| {
        if let ClaimDecision::Acquired { token, .. } = decision {
            tokio::spawn(release_unheld_claim(release_pool.clone(), claim.id, token));
        }
    };
    let claims = spawn_writers(
        "claim",
        pool,
        writers,
        |connection, batch| Box::pin(claim_batch(connection, &*batch)),
        release_unheld,
    );
    // A completion whose caller gave up committed what that caller asked for; its
    // retry with the same token is answered from it.
    let completions = spawn_writers(
        "complete",
        pool,
        writers,
        |connection, batch| Box::pin(complete_batch(connection, batch)),
        |_, _| {},
    );
    (claims, completions)
}

#[async_trait]
impl Ledger for PostgresLedger {
    async fn claim(&self, claim: &NewClaim) -> Result<ClaimDecision, LedgerError> {
        self.claims.submit(claim.clone()).await
    }

    async fn complete(
        &self,
        id: &RecordId,
        token: FencingToken,
        response: Vec<u8>,
        retention: Duration,
    ) -> Result<CompleteDecision, LedgerError> {
        let Some(token) = db_token(token) else {
            return Ok(CompleteDecision::NotHolder);
        };
        self.completions
            .submit(PendingCompletion {
                id: id.clone(),
                token,
                response,
                retention,
            })
            .await
    }

    async fn release(&self, id: &RecordId, token: FencingToken) -> Result<bool, LedgerError> {
        let Some(token) = db_token(token) else {
            return Ok(false);
        };
        release(&self.pool, id, token).await
    }

    async fn extend_lease(
        &self,
        id: &RecordId,
        token: FencingToken,
        lease: Duration,
        abandon_after: Duration,
    ) -> Result<Option<ExtendedLease>, LedgerError> {
        let Some(token) = db_token(token) else {
            return Ok(None);
        };
        let row = once_more_if_the_connection_fails(|| {
            sqlx::query(EXTEND_LEASE)
                .bind(id.namespace.as_str())
                .bind(id.key.as_str())
                .bind(token)
                .bind(micros(lease))
                .bind(micros(abandon_after))
                .fetch_optional(&self.pool)
        })
        .await?;
        row.map(|row| {
            Ok(ExtendedLease {
                lease_expires_at: row.try_get("lease_expires_at").map_err(internal)?,
                fingerprint: fingerprint_from_row(&row)?,
                now: row.try_get("db_now").map_err(internal)?,
            })
        })
        .transpose()
    }

    async fn lookup(&self, id: &RecordId) -> Result<Option<Record>, LedgerError> {
        Ok(self.read(id).await?.map(|(record, _)| record))
    }

    async fn purge_expired(&self, limit: u32) -> Result<u64, LedgerError> {
        let done = once_more_if_the_connection_fails(|| {
            sqlx::query(PURGE_EXPIRED)
                .bind(i64::from(limit))
                .execute(&self.pool)
        })
        .await?;
        Ok(done.rows_affected())
    }
}

/// Deletes the in-progress claim held by `token`; `false`: not the holder.
async fn release(pool: &PgPool, id: &RecordId, token: i64) -> Result<bool, LedgerError> {
    let done = once_more_if_the_connection_fails(|| {
        sqlx::query(RELEASE)
            .bind(id.namespace.as_str())
            .bind(id.key.as_str())
            .bind(token)
            .execute(pool)
    })
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Releases a claim that committed after its caller gave up (its ledger timeout fired,
/// or its RPC was cancelled, while the batch ran): the caller was told UNAVAILABLE or
/// nothing, so nobody holds the claim, and without this its key would answer
/// IN_PROGRESS until the lease ran out (SPEC rule 5: never a claim in limbo). If this
/// fails too, the lease runs out as it would have.
async fn release_unheld_claim(pool: PgPool, id: RecordId, token: FencingToken) {
    let Some(db_token) = db_token(token) else {
        return;
    };
    match release(&pool, &id, db_token).await {
        Ok(released) => tracing::info!(
            %id, token = token.get(), released,
            "a claim committed after its caller gave up; released it"
        ),
        Err(error) => tracing::warn!(
            %id, token = token.get(), error = %crate::telemetry::chain(&error),
            "a claim committed after its caller gave up and could not be released; \
             its lease will run out"
        ),
    }
}

/// Runs one batch of claims: the first claim of each key in one upsert, the rows
/// that stood read back in one select, and the rest (repeated keys, rows that changed
/// in between) in further rounds.
async fn claim_batch(
    connection: &mut PgConnection,
    claims: &[NewClaim],
) -> BatchOutcome<ClaimDecision> {
    let mut decisions: Vec<Option<ClaimDecision>> = vec![None; claims.len()];
    let mut last_seen: Vec<Option<ClaimDecision>> = vec![None; claims.len()];
    if let Err(error) = claim_rounds(connection, claims, &mut decisions, &mut last_seen).await {
        // A later round failed. What an earlier one decided stands — an acquired claim
        // is committed, and answering it with the error would leave it held by nobody —
        // and the rest share the failure.
        if decisions.iter().all(Option::is_none) {
            return Err(error);
        }
        return Ok(decisions
            .into_iter()
            .map(|decided| decided.ok_or_else(|| error.for_another_caller()))
            .collect());
    }

    // Contention kept changing a row: report what stood last (the caller retries on
    // IN_PROGRESS) rather than spin.
    Ok(decisions
        .into_iter()
        .zip(last_seen)
        .map(|(decided, last_seen)| {
            decided
                .or(last_seen)
                .ok_or_else(|| internal("the claim kept conflicting with a row that vanished"))
        })
        .collect())
}

/// The rounds of `claim_batch`, which record each claim's decision as it is made, and
/// for a claim that keeps meeting a changing row, what stood last.
async fn claim_rounds(
    connection: &mut PgConnection,
    claims: &[NewClaim],
    decisions: &mut [Option<ClaimDecision>],
    last_seen: &mut [Option<ClaimDecision>],
) -> Result<(), LedgerError> {
    let mut pending: Vec<usize> = (0..claims.len()).collect();
    let mut per_key: HashMap<&RecordId, usize> = HashMap::new();
    for claim in claims {
        *per_key.entry(&claim.id).or_default() += 1;
    }
    let most_repeated = per_key.values().copied().max().unwrap_or(1);
    let mut rounds_left = CLAIM_ATTEMPTS + most_repeated;

    while !pending.is_empty() && rounds_left > 0 {
        rounds_left -= 1;
        // One row per key and statement: an upsert may not touch a row twice.
        let mut seen = HashSet::new();
        let (mut round, later): (Vec<usize>, Vec<usize>) =
            pending.iter().partition(|&&i| seen.insert(&claims[i].id));
        round.sort_by(|&a, &b| key_order(&claims[a].id).cmp(&key_order(&claims[b].id)));

        let namespaces: Vec<&str> = round
            .iter()
            .map(|&i| claims[i].id.namespace.as_str())
            .collect();
        let keys: Vec<&str> = round.iter().map(|&i| claims[i].id.key.as_str()).collect();
        let fingerprints: Vec<&[u8]> = round
            .iter()
            .map(|&i| claims[i].fingerprint.as_bytes())
            .collect();
        let leases: Vec<i64> = round.iter().map(|&i| micros(claims[i].lease)).collect();
        let abandon_after: Vec<i64> = round
            .iter()
            .map(|&i| micros(claims[i].abandon_after))
            .collect();
        let claimants: Vec<&[u8]> = round
            .iter()
            .map(|&i| claims[i].claimant.as_bytes())
            .collect();
        let rows = fetch_all_retrying(connection, || {
            sqlx::query(CLAIM_BATCH)
                .bind(&namespaces)
                .bind(&keys)
                .bind(&fingerprints)
                .bind(&leases)
                .bind(&abandon_after)
                .bind(&claimants)
        })
        .await?;
        // Each returned row is a claim of this round that acquired its key, found
        // in the round by key (it is sorted); the claims left over stood.
        let mut acquired = vec![false; round.len()];
        for row in rows {
            let key = (
                row.try_get::<&str, _>("namespace").map_err(internal)?,
                row.try_get::<&str, _>("key").map_err(internal)?,
            );
            let position = round
                .binary_search_by(|&i| key_order(&claims[i].id).cmp(&key))
                .map_err(|_| internal("the claim batch returned a key it was not sent"))?;
            acquired[position] = true;
            let token: i64 = row.try_get("fencing_token").map_err(internal)?;
            decisions[round[position]] = Some(ClaimDecision::Acquired {
                token: FencingToken::new(token as u64),
                lease_expires_at: row.try_get("lease_expires_at").map_err(internal)?,
                takeover: row.try_get("takeover").map_err(internal)?,
                fingerprint: fingerprint_from_row(&row)?,
                now: row.try_get("db_now").map_err(internal)?,
            });
        }
        let stood: Vec<usize> = round
            .iter()
            .zip(&acquired)
            .filter(|(_, acquired)| !**acquired)
            .map(|(&i, _)| i)
            .collect();

        // The rows that stood, read in a new statement (a new snapshot): one that was
        // released, deleted, or whose lease ran out meanwhile is claimed again.
        let mut retry = Vec::new();
        if !stood.is_empty() {
            let standing = read_records(connection, stood.iter().map(|&i| &claims[i].id)).await?;
            for i in stood {
                let claim = &claims[i];
                match standing.get(&claim.id) {
                    None => retry.push(i),
                    Some(standing) => {
                        if let Some(own) = standing.reentered_by(claim) {
                            decisions[i] = Some(own);
                            continue;
                        }
                        let Standing { record, now, .. } = standing;
                        let existing = ClaimDecision::Existing {
                            record: record.clone(),
                            now: *now,
                        };
                        let takeable = record.state == RecordState::InProgress
                            && record.lease_expires_at.is_some_and(|at| at <= *now)
                            && claim.fingerprint.is_compatible_with(&record.fingerprint);
                        if takeable {
                            last_seen[i] = Some(existing);
                            retry.push(i);
                        } else {
                            decisions[i] = Some(existing);
                        }
                    }
                }
            }
        }
        pending = retry.into_iter().chain(later).collect();
    }
    Ok(())
}

/// A row that stood in a claim's way, as the claim path reads it.
struct Standing {
    record: Record,
    token: i64,
    claimant: Vec<u8>,
    /// The database clock when it was read.
    now: DateTime<Utc>,
}

impl Standing {
    /// `Acquired` again, with the same token and lease, if this is a live claim that
    /// `claim`'s own claimant made (a retry whose first answer was lost) and the
    /// fingerprints agree; `None` otherwise.
    fn reentered_by(&self, claim: &NewClaim) -> Option<ClaimDecision> {
        let lease_expires_at = self.record.lease_expires_at.filter(|at| *at > self.now)?;
        let own = self.record.state == RecordState::InProgress
            && claim.claimant.matches(&self.claimant)
            && claim
                .fingerprint
                .is_compatible_with(&self.record.fingerprint);
        own.then(|| ClaimDecision::Acquired {
            token: FencingToken::new(self.token as u64),
            lease_expires_at,
            takeover: false,
            fingerprint: self.record.fingerprint.clone(),
            now: self.now,
        })
    }
}

/// Reads the records of `ids` in one statement, with the database clock.
async fn read_records<'a>(
    connection: &mut PgConnection,
    ids: impl Iterator<Item = &'a RecordId>,
) -> Result<HashMap<RecordId, Standing>, LedgerError> {
    let (namespaces, keys): (Vec<&str>, Vec<&str>) = ids
        .map(|id| (id.namespace.as_str(), id.key.as_str()))
        .unzip();
    let rows = sqlx::query(SELECT_RECORDS)
        .bind(namespaces)
        .bind(keys)
        .fetch_all(connection)
        .await
        .map_err(classify)?;
    let mut records = HashMap::with_capacity(rows.len());
    for row in rows {
        let record = record_from_row(&row)?;
        let standing = Standing {
            token: row.try_get("fencing_token").map_err(internal)?,
            claimant: row.try_get("claimant").map_err(internal)?,
            now: row.try_get("db_now").map_err(internal)?,
            record,
        };
        records.insert(standing.record.id.clone(), standing);
    }
    Ok(records)
}

/// Runs one batch of completions in one UPDATE. A request it did not update is a
/// retry of a completion that already happened, or not the holder's.
async fn complete_batch(
    connection: &mut PgConnection,
    batch: &mut [PendingCompletion],
) -> BatchOutcome<CompleteDecision> {
    // Sorted so concurrent batches lock rows in the same order; answers are returned
    // in the callers' order below.
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by(|&a, &b| key_order(&batch[a].id).cmp(&key_order(&batch[b].id)));
    let namespaces: Vec<&str> = order
        .iter()
        .map(|&i| batch[i].id.namespace.as_str())
        .collect();
    let keys: Vec<&str> = order.iter().map(|&i| batch[i].id.key.as_str()).collect();
    let tokens: Vec<i64> = order.iter().map(|&i| batch[i].token).collect();
    let responses: Vec<&[u8]> = order
        .iter()
        .map(|&i| batch[i].response.as_slice())
        .collect();
    let retentions: Vec<i64> = order.iter().map(|&i| micros(batch[i].retention)).collect();
    let rows = fetch_all_retrying(connection, || {
        sqlx::query(COMPLETE_BATCH)
            .bind(&namespaces)
            .bind(&keys)
            .bind(&tokens)
            .bind(&responses)
            .bind(&retentions)
    })
    .await?;
    // Each returned row names its request by position in the sent arrays; the
    // stored response is the one the request just sent, so it is not sent back.
    let mut results: Vec<Option<CompleteDecision>> = vec![None; batch.len()];
    for row in rows {
        let position: i64 = row.try_get("position").map_err(internal)?;
        let i = usize::try_from(position - 1)
            .ok()
            .and_then(|sent| order.get(sent).copied())
            .ok_or_else(|| internal(format!("no request at position {position}")))?;
        let response = std::mem::take(&mut batch[i].response);
        results[i] = Some(completion_from_row(&row, response)?);
    }

    // A request the UPDATE did not touch is a retry of a completion that already
    // happened, or not the holder's.
    for (pending, result) in batch.iter().zip(&mut results) {
        if result.is_some() {
            continue;
        }
        let retried = sqlx::query(COMPLETED_BY_TOKEN)
            .bind(pending.id.namespace.as_str())
            .bind(pending.id.key.as_str())
            .bind(pending.token)
            .fetch_optional(&mut *connection)
            .await
            .map_err(classify)?;
        *result = Some(match retried {
            Some(row) => {
                let stored: Option<Vec<u8>> = row.try_get("response").map_err(internal)?;
                completion_from_row(&row, stored.unwrap_or_default())?
            }
            None => CompleteDecision::NotHolder,
        });
    }
    Ok(results.into_iter().flatten().map(Ok).collect())
}

/// Runs a statement, and runs it again when Postgres aborted it as a deadlock victim
/// or for a serialization failure: nothing of it committed, and batches of unrelated
/// callers should not fail together for a lock-order accident.
async fn fetch_all_retrying<'q>(
    connection: &mut PgConnection,
    statement: impl Fn() -> Query<'q, Postgres, PgArguments>,
) -> Result<Vec<PgRow>, LedgerError> {
    let mut retries_left = DEADLOCK_RETRIES;
    loop {
        match statement().fetch_all(&mut *connection).await {
            Err(sqlx::Error::Database(error))
                if retries_left > 0
                    && matches!(error.code().as_deref(), Some("40P01" | "40001")) =>
            {
                retries_left -= 1;
                tracing::debug!(%error, "batch statement aborted by Postgres; running it again");
            }
            result => return result.map_err(classify),
        }
    }
}

/// A completed record from a row's `fingerprint`, `completed_at` and `expires_at`.
fn completion_from_row(row: &PgRow, response: Vec<u8>) -> Result<CompleteDecision, LedgerError> {
    Ok(CompleteDecision::Completed {
        completion: Completion {
            completed_at: row.try_get("completed_at").map_err(internal)?,
            expires_at: row.try_get("expires_at").map_err(internal)?,
        },
        fingerprint: fingerprint_from_row(row)?,
        response,
        now: row.try_get("db_now").map_err(internal)?,
    })
}

fn key_order(id: &RecordId) -> (&str, &str) {
    (id.namespace.as_str(), id.key.as_str())
}

fn record_from_row(row: &PgRow) -> Result<Record, LedgerError> {
    let state: i16 = row.try_get("state").map_err(internal)?;
    let (id, state) = stored_identity(
        row.try_get("namespace").map_err(internal)?,
        row.try_get("key").map_err(internal)?,
        i64::from(state),
    )?;
    Ok(Record {
        id,
        state,
        fingerprint: fingerprint_from_row(row)?,
        response: row.try_get("response").map_err(internal)?,
        created_at: row.try_get("created_at").map_err(internal)?,
        completed_at: row.try_get("completed_at").map_err(internal)?,
        lease_expires_at: row.try_get("lease_expires_at").map_err(internal)?,
        expires_at: row.try_get("expires_at").map_err(internal)?,
    })
}

fn fingerprint_from_row(row: &PgRow) -> Result<Fingerprint, LedgerError> {
    stored_fingerprint(row.try_get("fingerprint").map_err(internal)?)
}

/// Whether `error` is a connection that failed (`connection_failed`), as opposed to a
/// statement the database refused or a pool with no connection to give.
fn lost_connection(error: &LedgerError) -> bool {
    matches!(error, LedgerError::Unavailable(_))
        && std::error::Error::source(error)
            .and_then(|cause| cause.downcast_ref::<sqlx::Error>())
            .is_some_and(connection_failed)
}

/// Whether the connection under a statement failed: it broke, or the server ended it
/// (an administrator, a shutdown, a crash) or never had it (a connection exception).
fn connection_failed(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P0")),
        _ => false,
    }
}

/// Runs one statement on a pooled connection and, if the connection failed under it,
/// once more on another (the pool pings what it hands out): see the module docs for
/// why that is safe for every statement here.
async fn once_more_if_the_connection_fails<T, F, Fut>(statement: F) -> Result<T, LedgerError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    match statement().await {
        Err(error) if connection_failed(&error) => {
            tracing::info!(%error, "a ledger connection failed under a statement; running it again on another");
            statement().await.map_err(classify)
        }
        result => result.map_err(classify),
    }
}

/// Sorts sqlx errors into "unreachable, retry" and "unexpected".
fn classify(error: sqlx::Error) -> LedgerError {
    let unavailable = match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Connection exceptions, shutdowns, resource exhaustion, serialization
        // failures and read-only standbys all clear up on retry.
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            ["08", "53", "57", "40"]
                .iter()
                .any(|class| code.starts_with(class))
                || code == "25006"
        }),
        _ => false,
    };
    if unavailable {
        LedgerError::Unavailable(Box::new(error))
    } else {
        LedgerError::Internal(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn plan_cache_mode(connection: &mut PgConnection) -> String {
        sqlx::query_scalar("SHOW plan_cache_mode")
            .fetch_one(connection)
            .await
            .unwrap()
    }

    /// Needs the test Postgres (`ONCEWARD_TEST_DATABASE_URL`), like the integration
    /// tests.
    #[tokio::test]
    async fn writer_connections_replan_and_never_go_back_to_the_pool_with_generic_plans() {
        let url = std::env::var("ONCEWARD_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(connect_options(&url).unwrap())
            .await
            .expect("the test Postgres");
        let writers = WriterConnections::new(pool.clone(), Duration::ZERO);

        let mut kept = writers.take().await.unwrap();
        assert_eq!(
            plan_cache_mode(&mut kept.connection).await,
            "force_generic_plan"
        );
        sqlx::query("SELECT $1::int")
            .bind(1)
            .fetch_one(&mut *kept.connection)
            .await
            .unwrap();
        assert!(kept.connection.cached_statements_size() > 0);
        writers.keep(kept, &Ok(()));

        // Checked longer ago than `check_after` (zero): its statements are closed, to
        // be prepared and planned again.
        let kept = writers.take().await.unwrap();
        assert_eq!(kept.connection.cached_statements_size(), 0);

        // Dropped after a failure: closed, so the pool's next connection is a new one
        // with the pool's own setting.
        writers.keep(kept, &Err::<(), _>(LedgerError::Unavailable("cut".into())));
        let mut pooled = pool.acquire().await.unwrap();
        assert_eq!(plan_cache_mode(&mut pooled).await, "force_custom_plan");
    }
}
