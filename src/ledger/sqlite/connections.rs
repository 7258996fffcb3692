//! The connections the ledger keeps open between uses.
//!
//! sqlx runs each SQLite connection on a thread of its own, and a pooled connection
//! handed back is pinged on that thread first, by a task spawned for it: a round trip
//! and a wait for the runtime, paid on every use, and the next use waits for both.
//! The busiest users of a connection keep theirs instead: every write takes the one
//! [`Writer`] in turn, and the claim path's batched reads take one of the [`Readers`].
//! `Lookup` and the rarer reads use the read pool.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection as _, Sqlite, Transaction};
use tokio::sync::{Mutex, MutexGuard};

use super::classify;
use crate::ledger::{LedgerError, internal};

/// The ledger's one write connection. SQLite allows one writer at a time, so rather
/// than let connections race for the file's lock (and see `database is locked`), every
/// write in this process waits its turn for this connection, in the order it asked.
pub(super) struct Writer {
    options: SqliteConnectOptions,
    /// How long a write may wait for its turn before failing closed.
    acquire_timeout: Duration,
    state: Mutex<WriterState>,
    /// Set when a transaction could not begin: the connection may be broken, so the
    /// next write opens another.
    suspect: AtomicBool,
}

impl Writer {
    /// Opens the write connection.
    pub(super) async fn open(
        options: SqliteConnectOptions,
        acquire_timeout: Duration,
    ) -> Result<Self, sqlx::Error> {
        let connection = SqliteConnection::connect_with(&options).await?;
        Ok(Self {
            options,
            acquire_timeout,
            state: Mutex::new(WriterState {
                connection: Some(connection),
                tokens: TokenBlock::default(),
            }),
            suspect: AtomicBool::new(false),
        })
    }

    /// Waits for this process's turn to write: UNAVAILABLE after the acquire timeout.
    pub(super) async fn lock(&self) -> Result<WriteLock<'_>, LedgerError> {
        let mut guard = tokio::time::timeout(self.acquire_timeout, self.state.lock())
            .await
            .map_err(|_| classify(sqlx::Error::PoolTimedOut))?;
        if self.suspect.swap(false, Ordering::Relaxed) {
            // Dropping a connection closes it.
            guard.connection.take();
        }
        if guard.connection.is_none() {
            let opened = SqliteConnection::connect_with(&self.options)
                .await
                .map_err(classify)?;
            guard.connection = Some(opened);
        }
        Ok(WriteLock {
            writer: self,
            guard,
        })
    }

    /// Closes the write connection, waiting for any write in progress; the next write
    /// opens another.
    #[cfg(test)]
    pub(super) async fn close(&self) {
        if let Some(connection) = self.state.lock().await.connection.take() {
            let _ = connection.close().await;
        }
    }
}

/// What the writer keeps between transactions.
struct WriterState {
    /// `None` after it was closed, until the next write opens another.
    connection: Option<SqliteConnection>,
    tokens: TokenBlock,
}

/// This process's turn to write, until dropped.
pub(super) struct WriteLock<'a> {
    writer: &'a Writer,
    guard: MutexGuard<'a, WriterState>,
}

/// Fencing tokens this process reserved in the ledger (`onceward_fencing_tokens`) and
/// has not handed out yet, so most batches take their claims' tokens without a
/// statement. A reservation is a statement of its own, committed before any of its
/// tokens is handed out; a block abandoned (a restart, a failed batch) leaves a gap,
/// and tokens only need to increase. The block is used only
/// while the sequence still ends where this process left it (see `bulk`): a reservation
/// by anyone else (another process on the file, or this writer's own one-by-one
/// claims) retires it.
#[derive(Debug, Default)]
pub(super) struct TokenBlock {
    next: i64,
    end: i64,
}

impl TokenBlock {
    /// How many tokens a reservation takes at least.
    const SIZE: i64 = 4096;

    /// `count` consecutive tokens: the first of them, and the sequence's last reserved
    /// value. If fewer are left, a new block is reserved first (and committed:
    /// `connection` is outside any transaction).
    pub(super) async fn take(
        &mut self,
        connection: &mut SqliteConnection,
        count: usize,
    ) -> Result<(i64, i64), LedgerError> {
        let count = i64::try_from(count).map_err(internal)?;
        if self.end - self.next < count {
            let size = count.max(Self::SIZE);
            let last: i64 = sqlx::query_scalar(super::sql::RESERVE_TOKENS)
                .bind(size)
                .fetch_one(&mut *connection)
                .await
                .map_err(super::batch::transaction_failed)?;
            self.next = last - size + 1;
            self.end = last + 1;
        }
        let first = self.next;
        self.next += count;
        Ok((first, self.end - 1))
    }

    /// Forgets the block: the sequence has moved on, or a batch failed.
    pub(super) fn retire(&mut self) {
        self.next = self.end;
    }
}

impl WriteLock<'_> {
    /// Starts a transaction holding SQLite's write lock. `BEGIN IMMEDIATE` takes it up
    /// front, so another process writing the same file (a `gc` run) makes it wait out
    /// `busy_timeout` instead of failing a read-then-write upgrade.
    pub(super) async fn begin(&mut self) -> Result<Transaction<'_, Sqlite>, LedgerError> {
        let writer = self.writer;
        self.connection()?
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|error| {
                writer.suspect.store(true, Ordering::Relaxed);
                classify(error)
            })
    }

    /// The connection, outside any transaction, and the block of fencing tokens.
    pub(super) fn parts(
        &mut self,
    ) -> Result<(&mut SqliteConnection, &mut TokenBlock), LedgerError> {
        let WriterState { connection, tokens } = &mut *self.guard;
        let connection = connection
            .as_mut()
            .ok_or_else(|| internal("the write connection is closed"))?;
        Ok((connection, tokens))
    }

    /// The connection, outside any transaction.
    pub(super) fn connection(&mut self) -> Result<&mut SqliteConnection, LedgerError> {
        self.guard
            .connection
            .as_mut()
            .ok_or_else(|| internal("the write connection is closed"))
    }
}

/// The connections of the claim path's batched reads: at most one per batch read at
/// once.
pub(super) struct Readers {
    options: SqliteConnectOptions,
    idle: std::sync::Mutex<Vec<SqliteConnection>>,
}

impl Readers {
    pub(super) fn new(options: SqliteConnectOptions) -> Self {
        Self {
            options,
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// A connection kept from an earlier read, or a new one.
    pub(super) async fn take(&self) -> Result<SqliteConnection, LedgerError> {
        let kept = self.idle().pop();
        match kept {
            Some(connection) => Ok(connection),
            None => SqliteConnection::connect_with(&self.options)
                .await
                .map_err(classify),
        }
    }

    /// Keeps `connection` for the next read. One a read failed on is not given back:
    /// dropping it closes it.
    pub(super) fn keep(&self, connection: SqliteConnection) {
        self.idle().push(connection);
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<SqliteConnection>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
