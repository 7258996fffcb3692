//! The SQLite ledger: the embedded authority, for a sidecar on a bare machine.
//!
//! The same contract as the Postgres ledger, on one host. SQLite allows one writer at
//! a time, so instead of letting writers race for the file lock (and surface
//! `database is locked`), every write goes through a pool of exactly one connection
//! and runs in one `BEGIN IMMEDIATE` transaction: callers queue for that connection
//! and only see an error if the queue outlasts `acquire_timeout`. `BEGIN IMMEDIATE`
//! takes the write lock up front, so another process on the same file (a `gc` run)
//! makes it wait out `busy_timeout` instead of failing a read-then-write upgrade.
//! Reads use a separate pool: in WAL mode they see the last commit without waiting.
//!
//! Because each write transaction holds the only write lock, a claim can read the
//! standing row, decide in Rust, and write, without the retry loop Postgres needs.
//! The "database clock" is this process's clock, read inside the write transaction
//! ([`clock_now`]), so all lease arithmetic is ordered by the write lock.
//!
//! # Layout
//! - here: opening the file, the write queue, each operation's transaction, the clock,
//!   sorting errors, and how a SQLite row stores time and state;
//! - `sql`: every statement;
//! - `tests`: what only this ledger has (its file, its write-ahead log); the rules
//!   every ledger keeps are the contract suite's, in `tests/it/ledger.rs`.

mod sql;
#[cfg(test)]
mod tests;

use std::str::FromStr as _;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use self::sql::{
    COMPLETE, COMPLETED_BY_TOKEN, EXTEND_LEASE, INSERT_CLAIM, MARK_REENTERED, NEXT_TOKEN,
    PURGE_EXPIRED, RELEASE, RELEASE_UNHELD, SELECT_RECORD, TAKE_OVER,
};
use super::rows::{self, LedgerRow, stored_token};
use super::{
    ClaimDecision, CompleteDecision, ExtendedLease, Ledger, LedgerError, NewClaim,
    completed_earlier, db_token, internal, micros, reentry,
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
#[derive(Debug, Clone)]
pub struct SqliteLedger {
    /// Exactly one connection: the queue every write waits in.
    writer: SqlitePool,
    reader: SqlitePool,
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
            .busy_timeout(options.busy_timeout);
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
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect_options.clone())
            .await
            .with_context(|| {
                format!(
                    "cannot open SQLite ledger {}",
                    connect_options.get_filename().display()
                )
            })?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| anyhow::anyhow!(e).context("cannot apply SQLite migrations"))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_read_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect_options)
            .await
            .context("cannot open SQLite ledger for reading")?;
        Ok(Self { writer, reader })
    }

    /// The single-connection write pool, for tests that inspect the file directly.
    #[cfg(test)]
    fn pool(&self) -> &SqlitePool {
        &self.writer
    }

    /// Claims in one write transaction; see [`Ledger::claim`] for why it is run apart
    /// from its caller.
    async fn claim_now(&self, claim: &NewClaim) -> Result<ClaimDecision, LedgerError> {
        let namespace = claim.id.namespace.as_str();

        let key = claim.id.key.as_str();
        let mut tx = self.begin_write().await?;
        let now = clock_now();
        let now_at = timestamp(now)?;

        let standing = sqlx::query(SELECT_RECORD)
            .bind(namespace)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        let taken_over = match standing {
            None => None,
            Some(row) => {
                let record = rows::record(&row)?;
                let holder = rows::holder(&row)?;
                // The statements below name the holder's token as it is stored.
                let old_token: i64 = row.try_get("fencing_token").map_err(internal)?;
                if let Some(own) = reentry(&record, holder.token, holder.claimant, claim, now_at) {
                    sqlx::query(MARK_REENTERED)
                        .bind(namespace)
                        .bind(key)
                        .bind(old_token)
                        .execute(&mut *tx)
                        .await
                        .map_err(classify)?;
                    tx.commit().await.map_err(classify)?;
                    return Ok(own);
                }
                if !record.takeable_by(&claim.fingerprint, now_at) {
                    // Nothing was written; dropping the transaction rolls it back.
                    return Ok(ClaimDecision::Existing {
                        record,
                        now: now_at,
                    });
                }
                Some((
                    old_token,
                    record.into_takeover_fingerprint(&claim.fingerprint),
                ))
            }
        };

        let token: i64 = sqlx::query_scalar(NEXT_TOKEN)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
        let lease_expires_at = now.saturating_add(micros(claim.lease));
        let expires_at = lease_expires_at.saturating_add(micros(claim.abandon_after));
        match &taken_over {
            None => {
                sqlx::query(INSERT_CLAIM)
                    .bind(namespace)
                    .bind(key)
                    .bind(claim.fingerprint.as_bytes())
                    .bind(token)
                    .bind(now)
                    .bind(lease_expires_at)
                    .bind(expires_at)
                    .bind(claim.claimant.as_bytes())
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
            }
            Some((old_token, fingerprint)) => {
                let done = sqlx::query(TAKE_OVER)
                    .bind(namespace)
                    .bind(key)
                    .bind(old_token)
                    .bind(token)
                    .bind(fingerprint.as_bytes())
                    .bind(lease_expires_at)
                    .bind(expires_at)
                    .bind(now)
                    .bind(claim.claimant.as_bytes())
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
                if done.rows_affected() != 1 {
                    return Err(internal("takeover lost a row held under the write lock"));
                }
            }
        }
        tx.commit().await.map_err(classify)?;
        let takeover = taken_over.is_some();
        let fingerprint = match taken_over {
            Some((_, fingerprint)) => fingerprint,
            None => claim.fingerprint.clone(),
        };
        Ok(ClaimDecision::Acquired {
            token: stored_token(token)?,
            lease_expires_at: timestamp(lease_expires_at)?,
            takeover,
            fingerprint,
            now: now_at,
        })
    }

    /// Deletes the in-progress claim held by `token` with `statement` (`RELEASE` or
    /// `RELEASE_UNHELD`); `false`: nothing deleted.
    async fn delete_claim(
        &self,
        statement: &'static str,
        id: &RecordId,
        token: FencingToken,
    ) -> Result<bool, LedgerError> {
        let Some(token) = db_token(token) else {
            return Ok(false);
        };
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(statement)
            .bind(id.namespace.as_str())
            .bind(id.key.as_str())
            .bind(token)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(done.rows_affected() == 1)
    }

    /// Starts a write transaction holding SQLite's write lock.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, LedgerError> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(classify)
    }
}

#[async_trait]
impl Ledger for SqliteLedger {
    /// The claim's transaction runs in a task of its own, so a caller that goes away
    /// (a cancelled RPC, the engine's ledger timeout) cannot leave it committed but
    /// unanswered; an `Acquired` that nobody is left to receive is released at once,
    /// as on Postgres (rule 5 of docs/PROTOCOL.md: never a claim in limbo).
    async fn claim(&self, claim: &NewClaim) -> Result<ClaimDecision, LedgerError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let (ledger, claim) = (self.clone(), claim.clone());
        tokio::spawn(async move {
            let decided = ledger.claim_now(&claim).await;
            if let Err(Ok(ClaimDecision::Acquired { token, .. })) = reply.send(decided) {
                match ledger.release_unheld(&claim.id, token).await {
                    Ok(released) => tracing::info!(
                        id = %claim.id, token = token.get(), released,
                        "a claim committed after its caller gave up; released it"
                    ),
                    Err(error) => tracing::warn!(
                        id = %claim.id, token = token.get(), error = %crate::errors::chain(&error),
                        "a claim committed after its caller gave up and could not be released; \
                         its lease will run out"
                    ),
                }
            }
        });
        answer
            .await
            .map_err(|_| internal("the claim's transaction task stopped"))?
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
        let mut tx = self.begin_write().await?;
        let now = clock_now();
        let completed = sqlx::query(COMPLETE)
            .bind(id.namespace.as_str())
            .bind(id.key.as_str())
            .bind(token)
            .bind(&response)
            .bind(now)
            .bind(now.saturating_add(micros(retention)))
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        let Some(row) = completed else {
            // Not in progress under this token: what the key holds decides. Nothing was
            // written; dropping the transaction rolls it back.
            let stored = sqlx::query(COMPLETED_BY_TOKEN)
                .bind(id.namespace.as_str())
                .bind(id.key.as_str())
                .bind(token)
                .fetch_optional(&mut *tx)
                .await
                .map_err(classify)?
                .map(|row| rows::stored_completion(&row, timestamp(now)?))
                .transpose()?;
            return Ok(completed_earlier(stored, token));
        };
        let decision = rows::completed(&row, response, timestamp(now)?)?;
        // Only now: the answer must not claim a completion that did not commit.
        tx.commit().await.map_err(classify)?;
        Ok(decision)
    }

    async fn purge_expired(&self, limit: u32) -> Result<u64, LedgerError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(PURGE_EXPIRED)
            .bind(clock_now())
            .bind(i64::from(limit))
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(done.rows_affected())
    }

    async fn release(&self, id: &RecordId, token: FencingToken) -> Result<bool, LedgerError> {
        self.delete_claim(RELEASE, id, token).await
    }

    async fn release_unheld(
        &self,
        id: &RecordId,
        token: FencingToken,
    ) -> Result<bool, LedgerError> {
        self.delete_claim(RELEASE_UNHELD, id, token).await
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
        let mut tx = self.begin_write().await?;
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
