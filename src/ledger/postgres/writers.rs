//! The batch writers: claims and completions queue in a `Batcher`, and each writer
//! runs what queued as one batch on a connection it keeps between batches. A batch
//! whose connection failed under it runs once more on another, which is safe for
//! every statement here (module docs of `postgres`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Connection as _;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool, Postgres};

use super::claim::{claim_batch, release_unheld_claim};
use super::complete::{PendingCompletion, complete_batch};
use super::{classify, connection_failed};
use crate::ledger::batcher::{BatchOutcome, Batcher};
use crate::ledger::{ClaimDecision, CompleteDecision, LedgerError, NewClaim};

/// The most requests one batched statement carries.
const MAX_BATCH: usize = 256;

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
                    op, error = %crate::errors::chain(error),
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
pub(super) fn batch_writers(
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

/// Whether `error` is a connection that failed (`connection_failed`), as opposed to a
/// statement the database refused or a pool with no connection to give.
fn lost_connection(error: &LedgerError) -> bool {
    matches!(error, LedgerError::Unavailable(_))
        && std::error::Error::source(error)
            .and_then(|cause| cause.downcast_ref::<sqlx::Error>())
            .is_some_and(connection_failed)
}

#[cfg(test)]
mod tests {
    use sqlx::postgres::PgPoolOptions;

    use super::*;
    use crate::ledger::postgres::connect::connect_options;

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
