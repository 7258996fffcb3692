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
//! release that already happened reports "not the holder", as rule 2 of docs/PROTOCOL.md has it for
//! a retried Release.
//!
//! # Layout
//! - `forget`: deleting a record on request, and hearing of those other sidecars
//!   forgot (`LISTEN onceward_forget`);
//! - `connect`: connecting, with the cause of a failure a person can act on, and the
//!   checks before serving (durable commits, the schema);
//! - here: the one-key statements, running a statement once more when its
//!   connection fails, sorting errors, and how a Postgres row stores time and state;
//! - `claim`, `complete`: the claim and completion batches;
//! - `guarded`: the claims of namespaces with a policy (killswitch, budget), decided by
//!   the policy in their own transaction;
//! - `spend`: policies, spend and the audit trail;
//! - `writers`: the batch writers and the connections they keep between batches;
//! - `sql`: every statement.

mod claim;
mod complete;
mod connect;
mod forget;
mod guarded;
mod spend;
mod sql;
mod writers;

pub use self::connect::{PostgresOptions, connect_once};

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::{PgArguments, PgConnection, PgPool, PgRow, Postgres};
use sqlx::query::Query;

use self::complete::PendingCompletion;
use self::sql::{
    EXTEND_LEASE, PURGE_EVENTS, PURGE_EXPIRED, PURGE_SPEND, RELEASE, RELEASE_UNHELD, SELECT_RECORD,
};
use super::batcher::Batcher;
use super::rows::{self, LedgerRow};
use super::{
    BatchCompletion, ClaimDecision, CompleteDecision, ExtendedLease, ForgetHook, Forgotten, Ledger,
    LedgerError, NewClaim, db_token, internal, micros,
};
use crate::domain::{FencingToken, Record, RecordId};

/// Default batch writers per kind of write; each holds at most one pool connection at
/// a time. One writer makes the biggest batches — one statement and one commit for
/// everything queued while the previous batch ran — and measured best on a local
/// Postgres (BENCHMARKS.md); a Postgres farther away, where a round trip dominates,
/// may want more (`--ledger-batch-writers`).
pub const DEFAULT_BATCH_WRITERS: usize = 1;
/// How often a batch aborted as a deadlock victim is run again.
const DEADLOCK_RETRIES: usize = 3;

/// The Postgres ledger.
pub struct PostgresLedger {
    pool: PgPool,
    claims: Batcher<NewClaim, ClaimDecision>,
    completions: Batcher<PendingCompletion, CompleteDecision>,
}

impl PostgresLedger {
    async fn read(&self, id: &RecordId) -> Result<Option<(Record, DateTime<Utc>)>, LedgerError> {
        let row = once_more_if_the_connection_fails(|| {
            sqlx::query(SELECT_RECORD)
                .bind(id.namespace.as_str())
                .bind(id.key.as_str())
                .fetch_optional(&self.pool)
        })
        .await?;
        row.map(|row| Ok((rows::record(&row)?, db_now(&row)?)))
            .transpose()
    }
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

    /// Queued together, so a free writer puts the whole batch (and any single claims
    /// queued meanwhile) into one statement.
    async fn claim_many(&self, claims: &[NewClaim]) -> Vec<Result<ClaimDecision, LedgerError>> {
        self.claims.submit_many(claims.to_vec()).await
    }

    async fn complete_many(
        &self,
        completions: Vec<BatchCompletion>,
    ) -> Vec<Result<CompleteDecision, LedgerError>> {
        // A token no claim can hold is answered here; the rest go to the writer together.
        let mut answers: Vec<Option<Result<CompleteDecision, LedgerError>>> =
            Vec::with_capacity(completions.len());
        let mut pending = Vec::with_capacity(completions.len());
        for completion in completions {
            match db_token(completion.token) {
                Some(token) => {
                    answers.push(None);
                    pending.push(PendingCompletion {
                        id: completion.id,
                        token,
                        response: completion.response,
                        retention: completion.retention,
                    });
                }
                None => answers.push(Some(Ok(CompleteDecision::NotHolder))),
            }
        }
        let mut written = self.completions.submit_many(pending).await.into_iter();
        answers
            .into_iter()
            .map(|answer| {
                answer.unwrap_or_else(|| {
                    written.next().unwrap_or_else(|| {
                        Err(LedgerError::Internal("a completion went unanswered".into()))
                    })
                })
            })
            .collect()
    }

    async fn release(&self, id: &RecordId, token: FencingToken) -> Result<bool, LedgerError> {
        let Some(token) = db_token(token) else {
            return Ok(false);
        };
        delete_claim(&self.pool, RELEASE, id, token).await
    }

    async fn release_unheld(
        &self,
        id: &RecordId,
        token: FencingToken,
    ) -> Result<bool, LedgerError> {
        let Some(token) = db_token(token) else {
            return Ok(false);
        };
        delete_claim(&self.pool, RELEASE_UNHELD, id, token).await
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
        row.map(|row| rows::extended(&row, db_now(&row)?))
            .transpose()
    }

    async fn lookup(&self, id: &RecordId) -> Result<Option<Record>, LedgerError> {
        Ok(self.read(id).await?.map(|(record, _)| record))
    }

    async fn forget(&self, id: &RecordId, force: bool) -> Result<Forgotten, LedgerError> {
        self.forget_record(id, force).await
    }

    fn watch_forgotten(&self, hook: ForgetHook) -> Option<tokio::task::JoinHandle<()>> {
        Some(self.watch(hook))
    }

    async fn purge_expired(&self, limit: u32) -> Result<u64, LedgerError> {
        let mut deleted = 0;
        for statement in [PURGE_EXPIRED, PURGE_SPEND, PURGE_EVENTS] {
            let done = once_more_if_the_connection_fails(|| {
                sqlx::query(statement)
                    .bind(i64::from(limit))
                    .execute(&self.pool)
            })
            .await?;
            deleted += done.rows_affected();
        }
        Ok(deleted)
    }
}

/// Deletes the in-progress claim held by `token` with `statement` (`RELEASE` or
/// `RELEASE_UNHELD`), refunding its debit; `false`: nothing deleted.
async fn delete_claim(
    pool: &PgPool,
    statement: &'static str,
    id: &RecordId,
    token: i64,
) -> Result<bool, LedgerError> {
    let row = once_more_if_the_connection_fails(|| {
        sqlx::query(statement)
            .bind(id.namespace.as_str())
            .bind(id.key.as_str())
            .bind(token)
            .fetch_one(pool)
    })
    .await?;
    let released: i64 = row.try_get("released").map_err(internal)?;
    let refunded: i64 = row.try_get("refunded").map_err(internal)?;
    if refunded > 0 {
        crate::metrics::spent(&id.namespace, -(refunded as f64));
    }
    Ok(released == 1)
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

fn key_order(id: &RecordId) -> (&str, &str) {
    (id.namespace.as_str(), id.key.as_str())
}

/// Postgres stores an instant as a `timestamptz`, which decodes as one, and the state
/// as a `smallint`.
impl LedgerRow for PgRow {
    type Time = DateTime<Utc>;
    type State = i16;

    fn instant(stored: DateTime<Utc>) -> Result<DateTime<Utc>, LedgerError> {
        Ok(stored)
    }
}

/// The database clock a statement returned (`now() AS db_now`).
fn db_now(row: &PgRow) -> Result<DateTime<Utc>, LedgerError> {
    row.try_get("db_now").map_err(internal)
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
