//! The Postgres ledger: the production authority, shared by every sidecar.
//!
//! Each operation is one autocommit statement, so a returned row means a committed
//! write (sqlx reads the statement's replies up to ReadyForQuery, which comes after
//! the commit). The claim is a single `INSERT … ON CONFLICT DO UPDATE … WHERE`: the
//! conflict arm is the compare-and-set takeover of an expired lease, evaluated under
//! the row lock against the latest committed row and `now()`, the database clock.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Row};

use super::{
    ClaimDecision, CompleteDecision, ExtendedLease, Ledger, LedgerError, NewClaim, db_token,
    internal, micros,
};
use crate::domain::{
    Completion, FencingToken, Fingerprint, IdempotencyKey, Namespace, Record, RecordId,
    RecordState,
};

/// How many times a claim re-reads when the row it conflicted with changed under it
/// (released, deleted, or its lease ran out between two statements).
const CLAIM_ATTEMPTS: usize = 4;

const STATE_IN_PROGRESS: i16 = 1;
const STATE_COMPLETED: i16 = 2;

const CLAIM: &str = r#"
INSERT INTO onceward_records AS r
    (namespace, key, state, fingerprint, fencing_token, created_at, lease_expires_at, expires_at)
VALUES ($1, $2, 1, $3, nextval('onceward_fencing_tokens'), now(),
        now() + $4 * interval '1 microsecond',
        now() + ($4 + $5) * interval '1 microsecond')
ON CONFLICT (namespace, key) DO UPDATE
    SET fencing_token = EXCLUDED.fencing_token,
        fingerprint = CASE WHEN octet_length(EXCLUDED.fingerprint) = 0
                           THEN r.fingerprint ELSE EXCLUDED.fingerprint END,
        lease_expires_at = EXCLUDED.lease_expires_at,
        expires_at = EXCLUDED.expires_at
    WHERE r.state = 1
      AND r.lease_expires_at <= now()
      AND (octet_length(r.fingerprint) = 0
           OR octet_length(EXCLUDED.fingerprint) = 0
           OR r.fingerprint = EXCLUDED.fingerprint)
RETURNING r.fencing_token, r.lease_expires_at, r.created_at < now() AS takeover
"#;

const SELECT_RECORD: &str = r#"
SELECT namespace, key, state, fingerprint, response, created_at, completed_at,
       lease_expires_at, expires_at, now() AS db_now
FROM onceward_records
WHERE namespace = $1 AND key = $2
"#;

const COMPLETE: &str = r#"
UPDATE onceward_records
SET state = 2, response = $4, completed_at = now(), lease_expires_at = NULL,
    expires_at = now() + $5 * interval '1 microsecond'
WHERE namespace = $1 AND key = $2 AND fencing_token = $3 AND state = 1
RETURNING fingerprint, response, completed_at, expires_at
"#;

const COMPLETED_BY_TOKEN: &str = r#"
SELECT fingerprint, response, completed_at, expires_at
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
RETURNING lease_expires_at, fingerprint
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
}

/// The Postgres ledger.
#[derive(Debug, Clone)]
pub struct PostgresLedger {
    pool: PgPool,
}

impl PostgresLedger {
    /// Connects, refuses a database that would lose acknowledged commits, and applies
    /// the embedded migrations.
    pub async fn connect(url: &str, options: &PostgresOptions) -> anyhow::Result<Self> {
        use anyhow::Context as _;

        let connect_options: PgConnectOptions = url
            .parse::<PgConnectOptions>()
            .context("invalid Postgres URL")?
            .application_name("onceward")
            .disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect_options)
            .await
            .context("cannot connect to Postgres")?;

        let synchronous_commit: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&pool)
            .await
            .context("cannot read synchronous_commit")?;
        if synchronous_commit == "off" {
            if options.allow_async_commit {
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

        let ledger = Self { pool };
        ledger.migrate().await?;
        Ok(ledger)
    }

    /// Applies the embedded migrations.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(|e| anyhow::anyhow!(e).context("cannot apply Postgres migrations"))
    }

    /// The connection pool, for the retention job.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn read(&self, id: &RecordId) -> Result<Option<(Record, DateTime<Utc>)>, LedgerError> {
        let row = sqlx::query(SELECT_RECORD)
            .bind(id.namespace.as_str())
            .bind(id.key.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.map(|row| {
            let now: DateTime<Utc> = row.try_get("db_now").map_err(internal)?;
            Ok((record_from_row(&row)?, now))
        })
        .transpose()
    }
}

#[async_trait]
impl Ledger for PostgresLedger {
    async fn claim(&self, claim: &NewClaim) -> Result<ClaimDecision, LedgerError> {
        let mut standing = None;
        for _ in 0..CLAIM_ATTEMPTS {
            let acquired = sqlx::query(CLAIM)
                .bind(claim.id.namespace.as_str())
                .bind(claim.id.key.as_str())
                .bind(claim.fingerprint.as_bytes())
                .bind(micros(claim.lease))
                .bind(micros(claim.abandon_after))
                .fetch_optional(&self.pool)
                .await
                .map_err(classify)?;
            if let Some(row) = acquired {
                let token: i64 = row.try_get("fencing_token").map_err(internal)?;
                return Ok(ClaimDecision::Acquired {
                    token: FencingToken::new(token as u64),
                    lease_expires_at: row.try_get("lease_expires_at").map_err(internal)?,
                    takeover: row.try_get("takeover").map_err(internal)?,
                });
            }
            // The conflicting row stood. Read it in a new statement (a new snapshot):
            // it may have been released or its lease may have run out meanwhile, in
            // which case the claim is tried again.
            match self.read(&claim.id).await? {
                None => continue,
                Some((record, now)) => {
                    let expired_and_ours_to_take = record.state == RecordState::InProgress
                        && record.lease_expires_at.is_some_and(|at| at <= now)
                        && claim.fingerprint.is_compatible_with(&record.fingerprint);
                    if !expired_and_ours_to_take {
                        return Ok(ClaimDecision::Existing { record, now });
                    }
                    standing = Some((record, now));
                }
            }
        }
        // Contention kept changing the row; report what stood last as in progress so
        // the caller retries, rather than spin.
        match standing {
            Some((record, now)) => Ok(ClaimDecision::Existing { record, now }),
            None => Err(LedgerError::Internal(
                "claim kept conflicting with a row that vanished".into(),
            )),
        }
    }

    async fn complete(
        &self,
        id: &RecordId,
        token: FencingToken,
        response: &[u8],
        retention: Duration,
    ) -> Result<CompleteDecision, LedgerError> {
        let Some(token) = db_token(token) else {
            return Ok(CompleteDecision::NotHolder);
        };
        let row = sqlx::query(COMPLETE)
            .bind(id.namespace.as_str())
            .bind(id.key.as_str())
            .bind(token)
            .bind(response)
            .bind(micros(retention))
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        let row = match row {
            Some(row) => row,
            None => {
                // Not in progress under this token: a retry of a Complete that already
                // succeeded is fine, anything else is not the holder.
                let retried = sqlx::query(COMPLETED_BY_TOKEN)
                    .bind(id.namespace.as_str())
                    .bind(id.key.as_str())
                    .bind(token)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(classify)?;
                match retried {
                    Some(row) => row,
                    None => return Ok(CompleteDecision::NotHolder),
                }
            }
        };
        Ok(CompleteDecision::Completed {
            completion: Completion {
                completed_at: row.try_get("completed_at").map_err(internal)?,
                expires_at: row.try_get("expires_at").map_err(internal)?,
            },
            fingerprint: fingerprint_from_row(&row)?,
            response: row
                .try_get::<Option<Vec<u8>>, _>("response")
                .map_err(internal)?
                .unwrap_or_default(),
        })
    }

    async fn release(&self, id: &RecordId, token: FencingToken) -> Result<bool, LedgerError> {
        let Some(token) = db_token(token) else {
            return Ok(false);
        };
        let done = sqlx::query(RELEASE)
            .bind(id.namespace.as_str())
            .bind(id.key.as_str())
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
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
        let row = sqlx::query(EXTEND_LEASE)
            .bind(id.namespace.as_str())
            .bind(id.key.as_str())
            .bind(token)
            .bind(micros(lease))
            .bind(micros(abandon_after))
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.map(|row| {
            Ok(ExtendedLease {
                lease_expires_at: row.try_get("lease_expires_at").map_err(internal)?,
                fingerprint: fingerprint_from_row(&row)?,
            })
        })
        .transpose()
    }

    async fn lookup(&self, id: &RecordId) -> Result<Option<Record>, LedgerError> {
        Ok(self.read(id).await?.map(|(record, _)| record))
    }
}

fn record_from_row(row: &PgRow) -> Result<Record, LedgerError> {
    let namespace: String = row.try_get("namespace").map_err(internal)?;
    let key: String = row.try_get("key").map_err(internal)?;
    let state: i16 = row.try_get("state").map_err(internal)?;
    Ok(Record {
        id: RecordId {
            namespace: Namespace::try_from(namespace).map_err(internal)?,
            key: IdempotencyKey::try_from(key).map_err(internal)?,
        },
        state: match state {
            STATE_IN_PROGRESS => RecordState::InProgress,
            STATE_COMPLETED => RecordState::Completed,
            other => return Err(internal(format!("unknown record state {other}"))),
        },
        fingerprint: fingerprint_from_row(row)?,
        response: row.try_get("response").map_err(internal)?,
        created_at: row.try_get("created_at").map_err(internal)?,
        completed_at: row.try_get("completed_at").map_err(internal)?,
        lease_expires_at: row.try_get("lease_expires_at").map_err(internal)?,
        expires_at: row.try_get("expires_at").map_err(internal)?,
    })
}

fn fingerprint_from_row(row: &PgRow) -> Result<Fingerprint, LedgerError> {
    let bytes: Vec<u8> = row.try_get("fingerprint").map_err(internal)?;
    Fingerprint::try_from(bytes).map_err(internal)
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
            ["08", "53", "57", "40"].iter().any(|class| code.starts_with(class))
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
