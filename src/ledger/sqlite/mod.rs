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

use std::str::FromStr as _;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use super::{
    ClaimDecision, CompleteDecision, ExtendedLease, Ledger, LedgerError, NewClaim, db_token,
    internal, micros, stored_fingerprint, stored_identity,
};
use crate::domain::{Completion, FencingToken, Fingerprint, Record, RecordId, RecordState};

const SELECT_RECORD: &str = r#"
SELECT namespace, key, state, fingerprint, fencing_token, response, created_at,
       completed_at, lease_expires_at, expires_at, claimant
FROM onceward_records
WHERE namespace = ?1 AND key = ?2
"#;

/// SQLite has no sequences; this row is one, bumped inside the claim's transaction.
const NEXT_TOKEN: &str = r#"
UPDATE onceward_fencing_tokens SET last_value = last_value + 1 WHERE id = 1
RETURNING last_value
"#;

const INSERT_CLAIM: &str = r#"
INSERT INTO onceward_records
    (namespace, key, state, fingerprint, fencing_token, created_at, lease_expires_at,
     expires_at, claimant)
VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7, ?8)
"#;

/// The compare-and-set on the old token: the write lock already makes the read and
/// this write atomic, the `WHERE` restates the takeover rule so it cannot drift.
const TAKE_OVER: &str = r#"
UPDATE onceward_records
SET fencing_token = ?4, fingerprint = ?5, lease_expires_at = ?6, expires_at = ?7,
    claimant = ?9
WHERE namespace = ?1 AND key = ?2 AND fencing_token = ?3 AND state = 1
  AND lease_expires_at <= ?8
"#;

const COMPLETE: &str = r#"
UPDATE onceward_records
SET state = 2, response = ?4, completed_at = ?5, lease_expires_at = NULL, expires_at = ?6
WHERE namespace = ?1 AND key = ?2 AND fencing_token = ?3 AND state = 1
RETURNING fingerprint, response, completed_at, expires_at
"#;

const COMPLETED_BY_TOKEN: &str = r#"
SELECT fingerprint, response, completed_at, expires_at
FROM onceward_records
WHERE namespace = ?1 AND key = ?2 AND fencing_token = ?3 AND state = 2
"#;

const RELEASE: &str = r#"
DELETE FROM onceward_records
WHERE namespace = ?1 AND key = ?2 AND fencing_token = ?3 AND state = 1
"#;

const EXTEND_LEASE: &str = r#"
UPDATE onceward_records
SET lease_expires_at = ?4, expires_at = max(expires_at, ?5)
WHERE namespace = ?1 AND key = ?2 AND fencing_token = ?3 AND state = 1
RETURNING lease_expires_at, fingerprint
"#;

// One writer at a time already, so no SKIP LOCKED is needed: each batch is one short
// write transaction in the queue with the claims.
const PURGE_EXPIRED: &str = r#"
DELETE FROM onceward_records
WHERE (namespace, key) IN (
    SELECT namespace, key FROM onceward_records
    WHERE expires_at <= ?1 AND (state = 2 OR lease_expires_at <= ?1)
    ORDER BY expires_at
    LIMIT ?2
)
"#;

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
                let record = record_from_row(&row)?;
                if let Some(own) = reentered(&row, &record, claim, now_at)? {
                    return Ok(own);
                }
                let expired_and_ours_to_take = record.state == RecordState::InProgress
                    && record.lease_expires_at.is_some_and(|at| at <= now_at)
                    && claim.fingerprint.is_compatible_with(&record.fingerprint);
                if !expired_and_ours_to_take {
                    // Nothing was written; dropping the transaction rolls it back.
                    return Ok(ClaimDecision::Existing {
                        record,
                        now: now_at,
                    });
                }
                let old_token: i64 = row.try_get("fencing_token").map_err(internal)?;
                Some((old_token, record.fingerprint))
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
            Some((old_token, stored_fingerprint)) => {
                // An empty fingerprint on the request keeps the stored one, so the key
                // still mismatches whatever it mismatched before.
                let fingerprint = if claim.fingerprint.as_bytes().is_empty() {
                    stored_fingerprint
                } else {
                    &claim.fingerprint
                };
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
            Some((_, stored)) if claim.fingerprint.as_bytes().is_empty() => stored,
            _ => claim.fingerprint.clone(),
        };
        Ok(ClaimDecision::Acquired {
            token: FencingToken::new(token as u64),
            lease_expires_at: timestamp(lease_expires_at)?,
            takeover,
            fingerprint,
            now: now_at,
        })
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
    /// as on Postgres (SPEC rule 5: never a claim in limbo).
    async fn claim(&self, claim: &NewClaim) -> Result<ClaimDecision, LedgerError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let (ledger, claim) = (self.clone(), claim.clone());
        tokio::spawn(async move {
            let decided = ledger.claim_now(&claim).await;
            if let Err(Ok(ClaimDecision::Acquired { token, .. })) = reply.send(decided) {
                match ledger.release(&claim.id, token).await {
                    Ok(released) => tracing::info!(
                        id = %claim.id, token = token.get(), released,
                        "a claim committed after its caller gave up; released it"
                    ),
                    Err(error) => tracing::warn!(
                        id = %claim.id, token = token.get(), error = %crate::telemetry::chain(&error),
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
        let row = match completed {
            Some(row) => row,
            None => {
                // Not in progress under this token: a retry of a Complete that already
                // succeeded is fine, anything else is not the holder.
                let retried = sqlx::query(COMPLETED_BY_TOKEN)
                    .bind(id.namespace.as_str())
                    .bind(id.key.as_str())
                    .bind(token)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(classify)?;
                match retried {
                    Some(row) => row,
                    None => return Ok(CompleteDecision::NotHolder),
                }
            }
        };
        let decision = CompleteDecision::Completed {
            completion: Completion {
                completed_at: timestamp(row.try_get("completed_at").map_err(internal)?)?,
                expires_at: timestamp(row.try_get("expires_at").map_err(internal)?)?,
            },
            fingerprint: fingerprint_from_row(&row)?,
            response: row
                .try_get::<Option<Vec<u8>>, _>("response")
                .map_err(internal)?
                .unwrap_or_default(),
            now: timestamp(now)?,
        };
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
        let Some(token) = db_token(token) else {
            return Ok(false);
        };
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(RELEASE)
            .bind(id.namespace.as_str())
            .bind(id.key.as_str())
            .bind(token)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(done.rows_affected() == 1)
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
            .map(|row| {
                Ok(ExtendedLease {
                    lease_expires_at: timestamp(
                        row.try_get("lease_expires_at").map_err(internal)?,
                    )?,
                    fingerprint: fingerprint_from_row(&row)?,
                    now: timestamp(now)?,
                })
            })
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
        row.map(|row| record_from_row(&row)).transpose()
    }
}

/// `Acquired` again, with the same token and lease, if the standing `row` is a live
/// claim that `claim`'s own claimant made (a retry whose first answer was lost) and
/// the fingerprints agree; `None` otherwise.
fn reentered(
    row: &SqliteRow,
    record: &Record,
    claim: &NewClaim,
    now: DateTime<Utc>,
) -> Result<Option<ClaimDecision>, LedgerError> {
    let Some(lease_expires_at) = record.lease_expires_at.filter(|at| *at > now) else {
        return Ok(None);
    };
    let stored: Vec<u8> = row.try_get("claimant").map_err(internal)?;
    let own = record.state == RecordState::InProgress
        && claim.claimant.matches(&stored)
        && claim.fingerprint.is_compatible_with(&record.fingerprint);
    if !own {
        return Ok(None);
    }
    let token: i64 = row.try_get("fencing_token").map_err(internal)?;
    Ok(Some(ClaimDecision::Acquired {
        token: FencingToken::new(token as u64),
        lease_expires_at,
        takeover: false,
        fingerprint: record.fingerprint.clone(),
        now,
    }))
}

/// The ledger's clock, in Unix microseconds. Read only inside a write transaction, so
/// the write lock orders every lease decision. It is this host's wall clock: one host
/// only, which is what an embedded ledger is.
fn clock_now() -> i64 {
    Utc::now().timestamp_micros()
}

/// A stored Unix-microsecond timestamp.
fn timestamp(micros: i64) -> Result<DateTime<Utc>, LedgerError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| internal(format!("timestamp {micros} out of range")))
}

fn optional_timestamp(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>, LedgerError> {
    row.try_get::<Option<i64>, _>(column)
        .map_err(internal)?
        .map(timestamp)
        .transpose()
}

fn record_from_row(row: &SqliteRow) -> Result<Record, LedgerError> {
    let (id, state) = stored_identity(
        row.try_get("namespace").map_err(internal)?,
        row.try_get("key").map_err(internal)?,
        row.try_get("state").map_err(internal)?,
    )?;
    Ok(Record {
        id,
        state,
        fingerprint: fingerprint_from_row(row)?,
        response: row.try_get("response").map_err(internal)?,
        created_at: timestamp(row.try_get("created_at").map_err(internal)?)?,
        completed_at: optional_timestamp(row, "completed_at")?,
        lease_expires_at: optional_timestamp(row, "lease_expires_at")?,
        expires_at: timestamp(row.try_get("expires_at").map_err(internal)?)?,
    })
}

fn fingerprint_from_row(row: &SqliteRow) -> Result<Fingerprint, LedgerError> {
    stored_fingerprint(row.try_get("fingerprint").map_err(internal)?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Claimant, IdempotencyKey, Namespace};

    const LEASE: Duration = Duration::from_secs(30);
    const ABANDON: Duration = Duration::from_secs(3600);
    const RETENTION: Duration = Duration::from_secs(86_400);

    /// A fresh ledger in its own directory; the directory lives as long as the guard.
    async fn ledger() -> (SqliteLedger, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("ledger.db");
        let ledger = SqliteLedger::connect(path.to_str().unwrap(), &SqliteOptions::default())
            .await
            .unwrap();
        (ledger, dir)
    }

    fn id(key: &str) -> RecordId {
        RecordId {
            namespace: Namespace::try_from("test".to_owned()).unwrap(),
            key: IdempotencyKey::try_from(key.to_owned()).unwrap(),
        }
    }

    fn fp(bytes: &[u8]) -> Fingerprint {
        Fingerprint::try_from(bytes.to_vec()).unwrap()
    }

    fn new_claim(key: &str, fingerprint: &[u8], lease: Duration) -> NewClaim {
        NewClaim {
            id: id(key),
            fingerprint: fp(fingerprint),
            lease,
            abandon_after: ABANDON,
            claimant: Claimant::random(),
        }
    }

    /// Claims and expects to acquire; returns the token and whether it took over.
    async fn acquire(ledger: &SqliteLedger, claim: &NewClaim) -> (FencingToken, bool) {
        match ledger.claim(claim).await.unwrap() {
            ClaimDecision::Acquired {
                token, takeover, ..
            } => (token, takeover),
            other => panic!("expected Acquired, got {other:?}"),
        }
    }

    async fn existing(ledger: &SqliteLedger, claim: &NewClaim) -> Record {
        match ledger.claim(claim).await.unwrap() {
            ClaimDecision::Existing { record, .. } => record,
            other => panic!("expected Existing, got {other:?}"),
        }
    }

    /// A lease short enough to run out within a test without a long sleep.
    async fn expired_claim(ledger: &SqliteLedger, key: &str, fingerprint: &[u8]) -> FencingToken {
        let (token, _) = acquire(
            ledger,
            &new_claim(key, fingerprint, Duration::from_millis(1)),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        token
    }

    #[tokio::test]
    async fn a_new_key_is_acquired_and_recorded_in_progress() {
        let (ledger, _dir) = ledger().await;
        let before = Utc::now();
        let decision = ledger.claim(&new_claim("k", b"fp", LEASE)).await.unwrap();
        let ClaimDecision::Acquired {
            token,
            lease_expires_at,
            takeover,
            ..
        } = decision
        else {
            panic!("expected Acquired, got {decision:?}");
        };
        assert!(token.get() > 0);
        assert!(!takeover);
        assert!(
            lease_expires_at
                >= before + chrono::Duration::seconds(30) - chrono::Duration::milliseconds(1)
        );

        let record = ledger.lookup(&id("k")).await.unwrap().unwrap();
        assert_eq!(record.state, RecordState::InProgress);
        assert_eq!(record.fingerprint, fp(b"fp"));
        assert_eq!(record.lease_expires_at, Some(lease_expires_at));
        assert_eq!(
            record.expires_at,
            lease_expires_at + chrono::Duration::seconds(3600)
        );
        assert_eq!(record.response, None);
        assert_eq!(ledger.lookup(&id("unknown")).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_duplicate_claim_on_a_live_lease_reports_the_standing_record() {
        let (ledger, _dir) = ledger().await;
        acquire(&ledger, &new_claim("k", b"fp", LEASE)).await;
        let decision = ledger.claim(&new_claim("k", b"fp", LEASE)).await.unwrap();
        let ClaimDecision::Existing { record, now } = decision else {
            panic!("expected Existing, got {decision:?}");
        };
        assert_eq!(record.state, RecordState::InProgress);
        assert!(record.lease_expires_at.unwrap() > now);
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_with_a_larger_token() {
        let (ledger, _dir) = ledger().await;
        let first = expired_claim(&ledger, "k", b"fp").await;
        let created_at = ledger.lookup(&id("k")).await.unwrap().unwrap().created_at;

        let (second, takeover) = acquire(&ledger, &new_claim("k", b"fp", LEASE)).await;
        assert!(second > first);
        assert!(takeover);
        let record = ledger.lookup(&id("k")).await.unwrap().unwrap();
        assert_eq!(
            record.created_at, created_at,
            "a takeover keeps the key's age"
        );

        // The old holder lost the key: none of its writes land.
        assert!(!ledger.release(&id("k"), first).await.unwrap());
        assert_eq!(
            ledger
                .extend_lease(&id("k"), first, LEASE, ABANDON)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            ledger
                .complete(&id("k"), first, b"late".to_vec(), RETENTION)
                .await
                .unwrap(),
            CompleteDecision::NotHolder
        );
    }

    #[tokio::test]
    async fn complete_stores_the_response_and_a_retry_returns_it_unchanged() {
        let (ledger, _dir) = ledger().await;
        let (token, _) = acquire(&ledger, &new_claim("k", b"fp", LEASE)).await;

        let first = ledger
            .complete(&id("k"), token, b"charged".to_vec(), RETENTION)
            .await
            .unwrap();
        let CompleteDecision::Completed {
            completion,
            fingerprint,
            response,
            now: first_now,
        } = first.clone()
        else {
            panic!("expected Completed, got {first:?}");
        };
        assert_eq!(fingerprint, fp(b"fp"));
        assert_eq!(response, b"charged");
        assert_eq!(
            completion.expires_at - completion.completed_at,
            chrono::Duration::seconds(86_400)
        );

        let retry = ledger
            .complete(
                &id("k"),
                token,
                b"different".to_vec(),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        // A retry changes nothing (only the clock it was answered at differs).
        let at_first_clock = match retry {
            CompleteDecision::Completed {
                completion,
                fingerprint,
                response,
                ..
            } => CompleteDecision::Completed {
                completion,
                fingerprint,
                response,
                now: first_now,
            },
            other => other,
        };
        assert_eq!(at_first_clock, first, "a retry changes nothing");

        let record = ledger.lookup(&id("k")).await.unwrap().unwrap();
        assert_eq!(record.state, RecordState::Completed);
        assert_eq!(record.response.as_deref(), Some(&b"charged"[..]));
        assert_eq!(record.lease_expires_at, None);
        assert_eq!(record.completed_at, Some(completion.completed_at));

        // A completed record is never taken over, released or extended.
        assert_eq!(
            existing(&ledger, &new_claim("k", b"fp", LEASE)).await.state,
            RecordState::Completed
        );
        assert!(!ledger.release(&id("k"), token).await.unwrap());
        assert_eq!(
            ledger
                .extend_lease(&id("k"), token, LEASE, ABANDON)
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn complete_with_an_empty_response_round_trips() {
        let (ledger, _dir) = ledger().await;
        let (token, _) = acquire(&ledger, &new_claim("k", b"", LEASE)).await;
        let done = ledger
            .complete(&id("k"), token, b"".to_vec(), RETENTION)
            .await
            .unwrap();
        assert!(matches!(
            done,
            CompleteDecision::Completed { ref response, ref fingerprint, .. }
                if response.is_empty() && fingerprint.as_bytes().is_empty()
        ));
        let record = ledger.lookup(&id("k")).await.unwrap().unwrap();
        assert_eq!(record.response.unwrap_or_default(), Vec::<u8>::new());
    }

    #[tokio::test]
    async fn only_the_current_token_is_the_holder() {
        let (ledger, _dir) = ledger().await;
        let (token, _) = acquire(&ledger, &new_claim("k", b"", LEASE)).await;
        let strangers = [
            FencingToken::new(0),
            FencingToken::new(token.get() + 1),
            FencingToken::new(i64::MAX as u64 + 1),
            FencingToken::new(u64::MAX),
        ];
        for stranger in strangers {
            assert_eq!(
                ledger
                    .complete(&id("k"), stranger, b"x".to_vec(), RETENTION)
                    .await
                    .unwrap(),
                CompleteDecision::NotHolder
            );
            assert!(!ledger.release(&id("k"), stranger).await.unwrap());
            assert_eq!(
                ledger
                    .extend_lease(&id("k"), stranger, LEASE, ABANDON)
                    .await
                    .unwrap(),
                None
            );
        }
        assert_eq!(
            ledger
                .complete(&id("unknown"), token, b"x".to_vec(), RETENTION)
                .await
                .unwrap(),
            CompleteDecision::NotHolder
        );
        // The holder was untouched by all of that.
        assert!(matches!(
            ledger
                .complete(&id("k"), token, b"x".to_vec(), RETENTION)
                .await
                .unwrap(),
            CompleteDecision::Completed { .. }
        ));
    }

    #[tokio::test]
    async fn complete_after_the_lease_ran_out_succeeds_if_nobody_took_over() {
        let (ledger, _dir) = ledger().await;
        let token = expired_claim(&ledger, "k", b"").await;
        assert!(matches!(
            ledger
                .complete(&id("k"), token, b"ok".to_vec(), RETENTION)
                .await
                .unwrap(),
            CompleteDecision::Completed { .. }
        ));
    }

    #[tokio::test]
    async fn release_frees_the_key_for_a_claim_with_a_larger_token() {
        let (ledger, _dir) = ledger().await;
        let (first, _) = acquire(&ledger, &new_claim("k", b"", LEASE)).await;
        assert!(ledger.release(&id("k"), first).await.unwrap());
        assert_eq!(ledger.lookup(&id("k")).await.unwrap(), None);
        assert!(
            !ledger.release(&id("k"), first).await.unwrap(),
            "a retried release is not the holder any more"
        );

        let (second, takeover) = acquire(&ledger, &new_claim("k", b"", LEASE)).await;
        assert!(second > first);
        assert!(!takeover);
    }

    #[tokio::test]
    async fn extend_lease_moves_the_lease_and_the_abandonment_horizon() {
        let (ledger, _dir) = ledger().await;
        let (token, _) = acquire(&ledger, &new_claim("k", b"fp", Duration::from_secs(1))).await;
        let before = ledger.lookup(&id("k")).await.unwrap().unwrap();

        let extended = ledger
            .extend_lease(&id("k"), token, Duration::from_secs(600), ABANDON)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(extended.fingerprint, fp(b"fp"));
        assert!(extended.lease_expires_at > before.lease_expires_at.unwrap());

        let after = ledger.lookup(&id("k")).await.unwrap().unwrap();
        assert_eq!(after.lease_expires_at, Some(extended.lease_expires_at));
        assert_eq!(
            after.expires_at,
            extended.lease_expires_at + chrono::Duration::seconds(3600)
        );

        // A shorter extension moves the lease back but never the abandonment horizon.
        let shorter = ledger
            .extend_lease(
                &id("k"),
                token,
                Duration::from_secs(1),
                Duration::from_secs(1),
            )
            .await
            .unwrap()
            .unwrap();
        let last = ledger.lookup(&id("k")).await.unwrap().unwrap();
        assert_eq!(last.lease_expires_at, Some(shorter.lease_expires_at));
        assert_eq!(last.expires_at, after.expires_at);

        // An extended lease is live: a duplicate claim does not take it over.
        existing(&ledger, &new_claim("k", b"fp", LEASE)).await;
    }

    #[tokio::test]
    async fn fingerprints_must_match_unless_one_side_is_empty() {
        let (ledger, _dir) = ledger().await;

        // An expired lease under another fingerprint is not taken over.
        expired_claim(&ledger, "k", b"a").await;
        let standing = existing(&ledger, &new_claim("k", b"b", LEASE)).await;
        assert_eq!(standing.fingerprint, fp(b"a"));

        // An empty request fingerprint takes over and keeps the stored one.
        let (_, takeover) = acquire(&ledger, &new_claim("k", b"", Duration::from_millis(1))).await;
        assert!(takeover);
        assert_eq!(
            ledger.lookup(&id("k")).await.unwrap().unwrap().fingerprint,
            fp(b"a")
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        existing(&ledger, &new_claim("k", b"b", LEASE)).await;

        // An empty stored fingerprint takes the request's on takeover.
        expired_claim(&ledger, "empty", b"").await;
        acquire(&ledger, &new_claim("empty", b"c", LEASE)).await;
        assert_eq!(
            ledger
                .lookup(&id("empty"))
                .await
                .unwrap()
                .unwrap()
                .fingerprint,
            fp(b"c")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
    async fn fifty_concurrent_claims_on_one_key_acquire_exactly_once() {
        let (ledger, _dir) = ledger().await;
        let claims: Vec<_> = (0..50)
            .map(|_| {
                let ledger = ledger.clone();
                tokio::spawn(async move { ledger.claim(&new_claim("k", b"fp", LEASE)).await })
            })
            .collect();
        let mut acquired = 0;
        for claim in claims {
            match claim.await.unwrap() {
                Ok(ClaimDecision::Acquired { .. }) => acquired += 1,
                Ok(ClaimDecision::Existing { .. }) => {}
                Err(error) => panic!("a concurrent claim failed: {error:?}"),
            }
        }
        assert_eq!(acquired, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
    async fn tokens_increase_across_keys_and_releases() {
        let (ledger, _dir) = ledger().await;
        let mut last = FencingToken::new(0);
        for round in 0..5 {
            for key in ["a", "b", "c"] {
                let (token, _) = acquire(&ledger, &new_claim(key, b"", LEASE)).await;
                assert!(
                    token > last,
                    "round {round} key {key}: {token:?} after {last:?}"
                );
                last = token;
                assert!(ledger.release(&id(key), token).await.unwrap());
            }
        }

        // Concurrent claims on distinct keys never share a token.
        let claims: Vec<_> = (0..40)
            .map(|n| {
                let ledger = ledger.clone();
                tokio::spawn(async move {
                    acquire(&ledger, &new_claim(&format!("k{n}"), b"", LEASE))
                        .await
                        .0
                })
            })
            .collect();
        let mut tokens = Vec::new();
        for claim in claims {
            tokens.push(claim.await.unwrap());
        }
        tokens.sort();
        tokens.dedup();
        assert_eq!(tokens.len(), 40);
        assert!(tokens[0] > last);
    }

    #[tokio::test]
    async fn records_and_the_token_sequence_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
        let first = {
            let ledger = SqliteLedger::connect(&url, &SqliteOptions::default())
                .await
                .unwrap();
            let (token, _) = acquire(&ledger, &new_claim("k", b"", LEASE)).await;
            ledger.writer.close().await;
            ledger.reader.close().await;
            token
        };
        let ledger = SqliteLedger::connect(&url, &SqliteOptions::default())
            .await
            .unwrap();
        existing(&ledger, &new_claim("k", b"", LEASE)).await;
        let (token, _) = acquire(&ledger, &new_claim("other", b"", LEASE)).await;
        assert!(token > first);
    }

    #[tokio::test]
    async fn acknowledged_writes_are_synced_to_a_write_ahead_log() {
        let (ledger, _dir) = ledger().await;
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(ledger.pool())
            .await
            .unwrap();
        // 2 = FULL: the WAL is synced at every commit, so a commit survives a crash.
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(ledger.pool())
            .await
            .unwrap();
        assert_eq!((journal.as_str(), synchronous), ("wal", 2));
    }

    #[tokio::test]
    async fn an_in_memory_database_is_refused() {
        let error = SqliteLedger::connect("sqlite::memory:", &SqliteOptions::default())
            .await
            .unwrap_err();
        assert!(error.to_string().contains("in-memory"), "{error}");
    }
}
