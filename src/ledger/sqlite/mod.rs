//! The SQLite ledger: the embedded authority, for a sidecar on a bare machine.
//!
//! The same contract as the Postgres ledger, on one host. SQLite allows one writer at
//! a time, so instead of letting writers race for the file lock (and surface
//! `database is locked`), every write in this process takes one connection in turn
//! (`connections`). Each write takes SQLite's write lock before it reads, so another
//! process on the same file (a `gc` run) makes it wait out `busy_timeout` instead of
//! failing a read-then-write upgrade.
//!
//! **Group commit.** Claims and completions queue for the writer (`batch`): whatever
//! queued while the last batch ran goes into the next one, so many writes share one
//! commit and one sync of the write-ahead log (`synchronous = FULL`: an acknowledged
//! write survives a power cut). An idle ledger adds no latency: a write that finds the
//! writer free runs at once. The rarer writes (release, extension, cleanup) take the
//! writer's connection between batches, each in a transaction of its own.
//!
//! **Reads never wait for the writer.** In WAL mode a reader sees the last commit
//! while a write transaction is open, so `Lookup` and a claim that the standing record
//! decides (a duplicate, a live claim of someone else's, a fingerprint mismatch) are
//! answered from a pool of reader connections; only a claim that must write (a new
//! key, an expired lease, a claimant's own claim back) queues, and is decided again
//! under the write lock.
//!
//! Because each write transaction holds the only write lock, a claim can read the
//! standing row, decide in Rust, and write, without the retry loop Postgres needs.
//! The "database clock" is this process's clock, read inside the write transaction
//! ([`clock_now`]), so all lease arithmetic that writes is ordered by the write lock.
//!
//! # Layout
//! - here: opening the file, the reads, the writes outside batches, the clock,
//!   sorting errors, and how a SQLite row stores time and state;
//! - `batch`: the group commit of claims and completions;
//! - `bulk`: a batch's order-free writes in multi-row statements;
//! - `json_rows`: rows for a statement to read from one JSON array;
//! - `connections`: the write connection and the batch readers' connections, kept
//!   open between uses;
//! - `reads`: the claim path's reads, batched on the reader connections;
//! - `spend`: policies, spend and the audit trail, and the spend guard's part of a
//!   claim (read and debited in the claim's own write transaction);
//! - `sql`: every statement;
//! - `tests`: what only this ledger has (its file, its write-ahead log, its readers,
//!   its batches); the rules every ledger keeps are the contract suite's, in
//!   `tests/it/ledger.rs`.

mod batch;
mod bulk;
mod connections;
mod forget;
mod json_rows;
mod reads;
mod spend;
mod sql;
#[cfg(test)]
mod tests;

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use self::batch::{Write, Written, spawn_writer};
use self::connections::{Readers, Writer};
use self::sql::{
    EXTEND_LEASE, PURGE_EVENTS, PURGE_EXPIRED, PURGE_SPEND, RELEASE, RELEASE_UNHELD, SELECT_RECORD,
};
use super::batcher::Batcher;
use super::rows::{self, LedgerRow};
use super::{
    BatchCompletion, ClaimDecision, CompleteDecision, ExtendedLease, Forgotten, Ledger,
    LedgerError, NewClaim, db_token, internal, micros,
};
use crate::domain::{FencingToken, Record, RecordId};

/// Options for opening the SQLite ledger.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// The most connections the read pool opens (writes always use one).
    pub max_read_connections: u32,
    /// How long a call may queue for a connection before failing closed.
    pub acquire_timeout: Duration,
    /// How long SQLite waits for a lock held by another process on the same file.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    /// A few readers, and five seconds of queueing before a call fails closed.
    fn default() -> Self {
        Self {
            max_read_connections: 4,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// The SQLite ledger.
#[derive(Clone)]
pub struct SqliteLedger {
    /// The one write connection, for the write transactions: the batches of claims
    /// and completions, and the other writes between them.
    writer: Arc<Writer>,
    /// Readers, which in WAL mode never wait for the writer.
    reader: SqlitePool,
    /// Claims and completions, queued for the next write transaction.
    writes: Arc<Batcher<Write, Written>>,
    /// Claims, queued for a reader to see what stands.
    reads: Arc<Batcher<NewClaim, Option<ClaimDecision>>>,
}

impl std::fmt::Debug for SqliteLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLedger")
            .field("reader", &self.reader)
            .finish_non_exhaustive()
    }
}

impl SqliteLedger {
    /// Opens (creating the file and its directory if missing) the database at
    /// `path_or_url` — a `sqlite://…` URL or a plain path — in WAL mode with
    /// `synchronous = FULL`, so an acknowledged commit survives a crash, and applies
    /// the embedded migrations.
    pub async fn connect(path_or_url: &str, options: &SqliteOptions) -> anyhow::Result<Self> {
        use anyhow::Context as _;

        if path_or_url.contains(":memory:") || path_or_url.contains("mode=memory") {
            anyhow::bail!(
                "an in-memory SQLite ledger would lose every acknowledged claim on exit; \
                 give it a file"
            );
        }
        let base = if path_or_url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(path_or_url).context("invalid SQLite URL")?
        } else {
            SqliteConnectOptions::new().filename(path_or_url)
        };
        let connect_options = base
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(options.busy_timeout)
            // A checkpoint copies the log's pages into the file and syncs both, in the
            // commit that crosses the limit. Every 4 000 pages (16 MiB of log) rather
            // than SQLite's 1 000, the pages every commit rewrites (the token sequence,
            // the tables' last pages) are copied once per checkpoint, not four times.
            .pragma("wal_autocheckpoint", "4000");
        if let Some(dir) = connect_options
            .get_filename()
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }

        // The writer stays open for the ledger's life: closing the last connection
        // checkpoints and removes the WAL, and reopening costs every idle claim.
        let writer = Writer::open(connect_options.clone(), options.acquire_timeout)
            .await
            .with_context(|| {
                format!(
                    "cannot open SQLite ledger {}",
                    connect_options.get_filename().display()
                )
            })?;
        {
            let mut lock = writer.lock().await?;
            sqlx::migrate!("./migrations/sqlite")
                .run(lock.connection()?)
                .await
                .map_err(|e| anyhow::anyhow!(e).context("cannot apply SQLite migrations"))?;
        }
        let writer = Arc::new(writer);
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_read_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect_options.clone())
            .await
            .context("cannot open SQLite ledger for reading")?;
        let writes = Arc::new(spawn_writer(writer.clone()));
        let readers = usize::try_from(options.max_read_connections.max(1)).unwrap_or(1);
        let reads = Arc::new(reads::spawn_reader(
            Arc::new(Readers::new(connect_options)),
            readers,
        ));
        Ok(Self {
            writer,
            reader,
            writes,
            reads,
        })
    }

    /// The answer to `claim` if the record that stands decides it without a write (a
    /// completed record, a live claim of someone else's, a fingerprint mismatch), read
    /// on a reader connection (`reads`): in WAL mode it sees the last commit without
    /// waiting for the writer. `None`: the writer decides (a new key, an expired lease,
    /// the claimant's own claim), and decides again under the write lock.
    async fn standing_answer(
        &self,
        claim: &NewClaim,
    ) -> Result<Option<ClaimDecision>, LedgerError> {
        self.reads.submit(claim.clone()).await
    }

    /// Queues `write` for the next write transaction.
    async fn write(&self, write: Write) -> Result<Written, LedgerError> {
        self.writes.submit(write).await
    }
}

/// Deletes the in-progress claim held by `token` with `statement` (`RELEASE` or
/// `RELEASE_UNHELD`) in a write transaction of its own; `false`: nothing deleted.
async fn delete_claim(
    writer: &Writer,
    statement: &'static str,
    id: &RecordId,
    token: FencingToken,
) -> Result<bool, LedgerError> {
    let Some(token) = db_token(token) else {
        return Ok(false);
    };
    let mut writer = writer.lock().await?;
    let mut tx = writer.begin().await?;
    let released = sqlx::query(statement)
        .bind(id.namespace.as_str())
        .bind(id.key.as_str())
        .bind(token)
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
    let was_released = released.is_some();
    let refunded = spend::refund(&mut tx, &id.namespace, released).await?;
    tx.commit().await.map_err(classify)?;
    if refunded > 0 {
        crate::metrics::spent(&id.namespace, -(refunded as f64));
    }
    Ok(was_released)
}

#[async_trait]
impl Ledger for SqliteLedger {
    /// A claim the standing record decides is answered by a reader; the rest queue
    /// for the next write. One that commits after its caller gave up (a cancelled RPC,
    /// the engine's ledger timeout) is released at once, as on Postgres (rule 5 of
    /// docs/PROTOCOL.md: never a claim in limbo).
    async fn claim(&self, claim: &NewClaim) -> Result<ClaimDecision, LedgerError> {
        if let Some(existing) = self.standing_answer(claim).await? {
            return Ok(existing);
        }
        match self.write(Write::Claim(claim.clone())).await? {
            Written::Claim(decision) => Ok(decision),
            Written::Complete(_) => Err(internal("a claim was answered as a completion")),
        }
    }

    /// The claims the readers cannot answer are queued together, so the writer takes
    /// them into one transaction (with whatever else queued).
    async fn claim_many(&self, claims: &[NewClaim]) -> Vec<Result<ClaimDecision, LedgerError>> {
        let mut answers = Vec::with_capacity(claims.len());
        let mut writes = Vec::new();
        let standing = self.reads.submit_many(claims.to_vec()).await;
        for (claim, standing) in claims.iter().zip(standing) {
            match standing {
                Ok(None) => {
                    answers.push(None);
                    writes.push(Write::Claim(claim.clone()));
                }
                Ok(Some(existing)) => answers.push(Some(Ok(existing))),
                Err(error) => answers.push(Some(Err(error))),
            }
        }
        let written = self.writes.submit_many(writes).await;
        fill_in(answers, written, |written| match written {
            Written::Claim(decision) => Ok(decision),
            Written::Complete(_) => Err(internal("a claim was answered as a completion")),
        })
    }

    /// Queued together, so the writer takes them into one transaction.
    async fn complete_many(
        &self,
        completions: Vec<BatchCompletion>,
    ) -> Vec<Result<CompleteDecision, LedgerError>> {
        let mut answers = Vec::with_capacity(completions.len());
        let mut writes = Vec::new();
        for completion in completions {
            match db_token(completion.token) {
                Some(token) => {
                    answers.push(None);
                    writes.push(Write::Complete {
                        id: completion.id,
                        token,
                        response: completion.response,
                        retention: completion.retention,
                    });
                }
                None => answers.push(Some(Ok(CompleteDecision::NotHolder))),
            }
        }
        let written = self.writes.submit_many(writes).await;
        fill_in(answers, written, |written| match written {
            Written::Complete(decision) => Ok(decision),
            Written::Claim(_) => Err(internal("a completion was answered as a claim")),
        })
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
        let write = Write::Complete {
            id: id.clone(),
            token,
            response,
            retention,
        };
        match self.write(write).await? {
            Written::Complete(decision) => Ok(decision),
            Written::Claim(_) => Err(internal("a completion was answered as a claim")),
        }
    }

    async fn purge_expired(&self, limit: u32) -> Result<u64, LedgerError> {
        let mut writer = self.writer.lock().await?;
        let mut tx = writer.begin().await?;
        let mut deleted = 0;
        for statement in [PURGE_EXPIRED, PURGE_SPEND, PURGE_EVENTS] {
            let done = sqlx::query(statement)
                .bind(clock_now())
                .bind(i64::from(limit))
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            deleted += done.rows_affected();
        }
        tx.commit().await.map_err(classify)?;
        Ok(deleted)
    }

    async fn release(&self, id: &RecordId, token: FencingToken) -> Result<bool, LedgerError> {
        delete_claim(&self.writer, RELEASE, id, token).await
    }

    async fn release_unheld(
        &self,
        id: &RecordId,
        token: FencingToken,
    ) -> Result<bool, LedgerError> {
        delete_claim(&self.writer, RELEASE_UNHELD, id, token).await
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
        let mut writer = self.writer.lock().await?;
        let mut tx = writer.begin().await?;
        let now = clock_now();
        let lease_expires_at = now.saturating_add(micros(lease));
        let row = sqlx::query(EXTEND_LEASE)
            .bind(id.namespace.as_str())
            .bind(id.key.as_str())
            .bind(token)
            .bind(lease_expires_at)
            .bind(lease_expires_at.saturating_add(micros(abandon_after)))
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        let extended = row
            .map(|row| rows::extended(&row, timestamp(now)?))
            .transpose()?;
        tx.commit().await.map_err(classify)?;
        Ok(extended)
    }

    async fn forget(&self, id: &RecordId, force: bool) -> Result<Forgotten, LedgerError> {
        self.forget_record(id, force).await
    }

    async fn lookup(&self, id: &RecordId) -> Result<Option<Record>, LedgerError> {
        let row = sqlx::query(SELECT_RECORD)
            .bind(id.namespace.as_str())
            .bind(id.key.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(classify)?;
        row.map(|row| rows::record(&row)).transpose()
    }
}

/// A batch's answers in order: those decided before the writer (`Some`), and the
/// writer's for the rest (`None`), taken with `take`.
fn fill_in<T>(
    answers: Vec<Option<Result<T, LedgerError>>>,
    written: Vec<Result<Written, LedgerError>>,
    take: impl Fn(Written) -> Result<T, LedgerError>,
) -> Vec<Result<T, LedgerError>> {
    let mut written = written.into_iter();
    answers
        .into_iter()
        .map(|answer| match answer {
            Some(answer) => answer,
            None => match written.next() {
                Some(result) => result.and_then(&take),
                None => Err(internal("a write of a batch went unanswered")),
            },
        })
        .collect()
}

/// The ledger's clock, in Unix microseconds. Read only inside a write transaction, so
/// the write lock orders every lease decision. It is this host's wall clock: one host
/// only, which is what an embedded ledger is.
fn clock_now() -> i64 {
    Utc::now().timestamp_micros()
}

/// An instant on the ledger's clock, from Unix microseconds.
fn timestamp(micros: i64) -> Result<DateTime<Utc>, LedgerError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| internal(format!("timestamp {micros} out of range")))
}

/// SQLite stores an instant as Unix microseconds (see [`clock_now`]) and the state as
/// an integer.
impl LedgerRow for SqliteRow {
    type Time = i64;
    type State = i64;

    fn instant(stored: i64) -> Result<DateTime<Utc>, LedgerError> {
        timestamp(stored)
    }
}

/// Sorts sqlx errors into "unreachable or busy, retry" and "unexpected".
fn classify(error: sqlx::Error) -> LedgerError {
    // Primary result codes (the low byte of SQLite's extended codes) that clear up on
    // retry: BUSY, LOCKED, IOERR, FULL (the disk), CANTOPEN.
    const TRANSIENT: [i32; 5] = [5, 6, 10, 13, 14];
    let unavailable = match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| TRANSIENT.contains(&(code & 0xff))),
        _ => false,
    };
    if unavailable {
        LedgerError::Unavailable(Box::new(error))
    } else {
        LedgerError::Internal(Box::new(error))
    }
}
