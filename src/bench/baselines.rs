//! The baselines onceward is measured against, each doing the same logical operation
//! the simplest way a team would write it by hand:
//!
//! - `direct-postgres`: a new operation is `INSERT … ON CONFLICT DO NOTHING RETURNING`
//!   then `UPDATE`, each its own autocommit statement (two commits), on connections
//!   kept between operations (no pool checkout, so no ping, per statement): one per
//!   operation in flight, up to `--postgres-connections`; a duplicate is the same INSERT (which conflicts) and a
//!   `SELECT` of the stored response. The table has the shape of onceward's and lives
//!   in a schema of its own, so the baseline never touches onceward's records.
//! - `direct-redis`: one `SET key value NX PX ttl GET` per operation on one
//!   multiplexed connection: the hot tier's round trip alone, with no durability.
//! - `grpc-floor`: `grpc.health.v1.Health/Check` on the same server: what any gRPC
//!   call to it costs before doing anything.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, Postgres};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::driver::Worker;
use super::workloads::{FINGERPRINT, Key, KeyPlan, NAMESPACE, code_name};

/// The prefix of every direct-redis key.
const REDIS_PREFIX: &str = "onceward-bench-baseline:";
/// TTL of direct-redis keys: long enough for a whole sweep (the completed keys are
/// written once and repeated by every later duplicate run), short enough to clean up.
const REDIS_TTL_MS: u64 = 60 * 60 * 1000;

// The same columns, constraints and indexes as migrations/postgres, in a schema of
// the bench's own. `IF NOT EXISTS` makes repeated runs reuse it.
const SETUP: &str = r#"
CREATE SCHEMA IF NOT EXISTS onceward_bench;
CREATE SEQUENCE IF NOT EXISTS onceward_bench.fencing_tokens AS bigint;
CREATE TABLE IF NOT EXISTS onceward_bench.records (
    namespace        text        NOT NULL,
    key              text        NOT NULL,
    state            smallint    NOT NULL CHECK (state IN (1, 2)),
    fingerprint      bytea       NOT NULL,
    fencing_token    bigint      NOT NULL,
    response         bytea,
    created_at       timestamptz NOT NULL,
    completed_at     timestamptz,
    lease_expires_at timestamptz,
    expires_at       timestamptz NOT NULL,
    PRIMARY KEY (namespace, key),
    CHECK ((state = 1) = (lease_expires_at IS NOT NULL)),
    CHECK ((state = 2) = (completed_at IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS records_expires_at ON onceward_bench.records (expires_at);
"#;

const CLAIM: &str = r#"
INSERT INTO onceward_bench.records
    (namespace, key, state, fingerprint, fencing_token, created_at, lease_expires_at, expires_at)
VALUES ($1, $2, 1, $3, nextval('onceward_bench.fencing_tokens'), now(),
        now() + interval '30 seconds', now() + interval '30 seconds' + interval '24 hours')
ON CONFLICT (namespace, key) DO NOTHING
RETURNING fencing_token
"#;

const COMPLETE: &str = r#"
UPDATE onceward_bench.records
SET state = 2, response = $4, completed_at = now(), lease_expires_at = NULL,
    expires_at = now() + interval '24 hours'
WHERE namespace = $1 AND key = $2 AND fencing_token = $3 AND state = 1
"#;

const REPLAY: &str = r#"
SELECT state, response FROM onceward_bench.records WHERE namespace = $1 AND key = $2
"#;

const POPULATE: &str = r#"
INSERT INTO onceward_bench.records
    (namespace, key, state, fingerprint, fencing_token, response, created_at, completed_at,
     lease_expires_at, expires_at)
SELECT $1, $2 || '-' || g, 2, $3, nextval('onceward_bench.fencing_tokens'), $4, now(), now(),
       NULL, now() + interval '24 hours'
FROM generate_series(0, $5 - 1) AS g
ON CONFLICT (namespace, key) DO NOTHING
"#;

/// Opens a pool of `size` connections for the direct-postgres baseline and creates
/// its table.
pub async fn connect_postgres(url: &str, size: u32) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .context("direct-postgres: cannot connect to --database-url")?;
    sqlx::raw_sql(SETUP)
        .execute(&pool)
        .await
        .context("direct-postgres: cannot create the onceward_bench schema")?;
    Ok(pool)
}

/// Inserts the completed keys the duplicate workload repeats, in one statement.
pub async fn populate_postgres(pool: &PgPool, plan: &KeyPlan) -> anyhow::Result<()> {
    sqlx::query(POPULATE)
        .bind(NAMESPACE)
        .bind(&plan.completed_prefix)
        .bind(&FINGERPRINT[..])
        .bind(&plan.response[..])
        .bind(i64::try_from(plan.completed_keys).unwrap_or(i64::MAX))
        .execute(pool)
        .await
        .context("direct-postgres: cannot insert the completed keys")?;
    Ok(())
}

/// Opens the one multiplexed connection every direct-redis worker shares.
pub async fn connect_redis(url: &str) -> anyhow::Result<MultiplexedConnection> {
    redis::Client::open(crate::cache::no_delay(url)?)
        .context("direct-redis: invalid --redis-url")?
        .get_multiplexed_async_connection()
        .await
        .context("direct-redis: cannot connect to --redis-url")
}

/// One connection of the direct-postgres baseline, kept between operations by the
/// workers that share it (a pool checkout would add a ping round trip to every
/// statement).
pub type PostgresSlot = Arc<tokio::sync::Mutex<Option<PoolConnection<Postgres>>>>;

/// A direct-postgres worker: each operation holds its slot's connection for both of
/// its statements. With as many slots as workers, every operation in flight has a
/// connection of its own; with fewer, workers take turns, as requests of a service
/// with more of them in flight than connections would.
pub struct PostgresWorker {
    pool: PgPool,
    slot: PostgresSlot,
    plan: Arc<KeyPlan>,
}

impl PostgresWorker {
    /// One slot per connection `pool` may open.
    pub fn slots(pool: &PgPool) -> Vec<PostgresSlot> {
        (0..pool.options().get_max_connections())
            .map(|_| PostgresSlot::default())
            .collect()
    }

    /// A worker running `plan` on `slot`'s connection of `pool`.
    pub fn new(pool: PgPool, slot: PostgresSlot, plan: Arc<KeyPlan>) -> Self {
        Self { pool, slot, plan }
    }
}

#[async_trait]
impl Worker for PostgresWorker {
    async fn call(&mut self, seq: u64) -> Result<(), String> {
        let mut slot = self.slot.lock().await;
        let mut connection = match slot.take() {
            Some(connection) => connection,
            None => self.pool.acquire().await.map_err(postgres_error)?,
        };
        let outcome = self.run(&mut connection, seq).await;
        // A connection that failed may be broken: dropping it hands it back to the
        // pool, which tests it; the next call takes another.
        if outcome.is_ok() {
            *slot = Some(connection);
        }
        outcome
    }
}

impl PostgresWorker {
    async fn run(&self, connection: &mut PgConnection, seq: u64) -> Result<(), String> {
        let (key, fresh) = match self.plan.key(seq) {
            Key::Fresh(key) => (key, true),
            Key::Completed(key) => (key, false),
        };
        let token: Option<i64> = sqlx::query_scalar(CLAIM)
            .bind(NAMESPACE)
            .bind(&key)
            .bind(&FINGERPRINT[..])
            .fetch_optional(&mut *connection)
            .await
            .map_err(postgres_error)?;
        match (fresh, token) {
            (true, Some(token)) => {
                let done = sqlx::query(COMPLETE)
                    .bind(NAMESPACE)
                    .bind(&key)
                    .bind(token)
                    .bind(&self.plan.response[..])
                    .execute(&mut *connection)
                    .await
                    .map_err(postgres_error)?;
                if done.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err("postgres: the UPDATE matched no claim".to_owned())
                }
            }
            (false, None) => {
                let (state, _response): (i16, Option<Vec<u8>>) = sqlx::query_as(REPLAY)
                    .bind(NAMESPACE)
                    .bind(&key)
                    .fetch_one(&mut *connection)
                    .await
                    .map_err(postgres_error)?;
                if state == 2 {
                    Ok(())
                } else {
                    Err("postgres: a duplicate found no completed record".to_owned())
                }
            }
            (true, None) => Err("postgres: a fresh key conflicted".to_owned()),
            (false, Some(_)) => Err("postgres: a duplicate's key was missing".to_owned()),
        }
    }
}

fn postgres_error(error: sqlx::Error) -> String {
    match &error {
        sqlx::Error::Database(db) => {
            format!("postgres: SQLSTATE {}", db.code().unwrap_or_default())
        }
        sqlx::Error::PoolTimedOut => "postgres: pool timed out".to_owned(),
        sqlx::Error::Io(_) => "postgres: I/O error".to_owned(),
        _ => "postgres: other error".to_owned(),
    }
}

/// A direct-redis worker; all of them share the one multiplexed connection.
pub struct RedisWorker {
    connection: MultiplexedConnection,
    plan: Arc<KeyPlan>,
    /// What each SET stores: about what onceward's hot tier stores for a completion.
    value: Arc<[u8]>,
}

impl RedisWorker {
    /// A worker running `plan` on `connection`.
    pub fn new(connection: MultiplexedConnection, plan: Arc<KeyPlan>) -> Self {
        let value: Vec<u8> = FINGERPRINT
            .iter()
            .chain(plan.response.iter())
            .copied()
            .collect();
        Self {
            connection,
            plan,
            value: value.into(),
        }
    }

    async fn set(&mut self, key: &str, only_if_absent: bool) -> Result<Option<Vec<u8>>, String> {
        let mut command = redis::cmd("SET");
        command
            .arg(format!("{REDIS_PREFIX}{NAMESPACE}:{key}"))
            .arg(&self.value[..]);
        if only_if_absent {
            command.arg("NX");
        }
        command.arg("PX").arg(REDIS_TTL_MS).arg("GET");
        command
            .query_async(&mut self.connection)
            .await
            .map_err(|error| format!("redis: {:?}", error.kind()))
    }
}

#[async_trait]
impl Worker for RedisWorker {
    async fn call(&mut self, seq: u64) -> Result<(), String> {
        match self.plan.key(seq) {
            Key::Fresh(key) => match self.set(&key, true).await? {
                None => Ok(()),
                Some(_) => Err("redis: a fresh key existed".to_owned()),
            },
            Key::Completed(key) => match self.set(&key, true).await? {
                Some(_) => Ok(()),
                None => Err("redis: a duplicate's key was missing".to_owned()),
            },
        }
    }
}

/// Writes the completed keys of `plan` for the direct-redis duplicate workload.
pub struct RedisPopulator(pub RedisWorker);

#[async_trait]
impl Worker for RedisPopulator {
    async fn call(&mut self, seq: u64) -> Result<(), String> {
        let key = self.0.plan.completed_key(seq);
        self.0.set(&key, false).await.map(drop)
    }
}

/// A grpc-floor worker: one health check per operation.
pub struct HealthWorker {
    client: HealthClient<Channel>,
}

impl HealthWorker {
    /// A worker on `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            client: HealthClient::new(channel),
        }
    }
}

#[async_trait]
impl Worker for HealthWorker {
    async fn call(&mut self, _seq: u64) -> Result<(), String> {
        let answer = self
            .client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(|status| code_name(&status))?
            .into_inner();
        if answer.status == ServingStatus::Serving as i32 {
            Ok(())
        } else {
            Err("health: not SERVING".to_owned())
        }
    }
}
