//! Connecting to Postgres: one connection first, so a failure keeps its cause
//! ("connection refused", "database … does not exist") with what to do about it
//! instead of the pool's "timed out"; then the checks before serving (durable commits,
//! the schema) and the pool.

use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection as _};

use super::PostgresLedger;
use super::writers::batch_writers;
use crate::domain::format_duration;
use crate::errors::chain;
use crate::ledger::schema::{self, Migrations, Step};

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
    /// Apply the migrations this database lacks, or refuse to run without them.
    pub migrations: Migrations,
}

impl PostgresLedger {
    /// Connects, refuses a database that would lose acknowledged commits, and applies
    /// the embedded migrations (or, with [`Migrations::Require`], refuses a database
    /// that lacks any).
    pub async fn connect(url: &str, options: &PostgresOptions) -> anyhow::Result<Self> {
        Ok(Self::connect_reporting(url, options).await?.0)
    }

    /// [`connect`](Self::connect), also saying which migrations it applied.
    pub async fn connect_reporting(
        url: &str,
        options: &PostgresOptions,
    ) -> anyhow::Result<(Self, Vec<Step>)> {
        let first_options = connect_options(url)?;
        let mut first = connect_once(url, options.acquire_timeout).await?;
        let applied = schema::applied_postgres(&mut first)
            .await
            .context("cannot read which migrations the Postgres ledger has applied")?;
        let pending = schema::pending(&schema::POSTGRES, &applied);
        if options.migrations == Migrations::Require {
            let ledger = format!(
                "the Postgres ledger at {}/{}",
                place(&first_options),
                first_options
                    .get_database()
                    .unwrap_or_else(|| first_options.get_username())
            );
            schema::refuse_pending(&ledger, &pending)?;
        }
        let _ = first.close().await;

        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect_options(url)?)
            .await
            .context("cannot connect to Postgres")?;
        refuse_async_commit(&pool, options.allow_async_commit).await?;
        let applied_now = match options.migrations {
            Migrations::Apply if !pending.is_empty() => {
                schema::POSTGRES
                    .run(&pool)
                    .await
                    .context("cannot apply Postgres migrations")?;
                pending
            }
            _ => Vec::new(),
        };
        let (claims, completions) = batch_writers(&pool, options.batch_writers);
        let ledger = Self {
            pool,
            claims,
            completions,
        };
        Ok((ledger, applied_now))
    }
}

/// How the ledger's connections are opened.
pub(super) fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
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

/// Opens one connection to `url` within `timeout`. A failure names the server, the
/// user and the cause, and what to do about the common ones.
pub async fn connect_once(url: &str, timeout: Duration) -> anyhow::Result<PgConnection> {
    let options = connect_options(url)?;
    match tokio::time::timeout(timeout, options.connect()).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(anyhow::anyhow!(
            "cannot connect to Postgres at {} as {}: {}{}",
            place(&options),
            options.get_username(),
            cause(&error),
            hint(&error, &options)
                .map(|hint| format!(" — {hint}"))
                .unwrap_or_default()
        )),
        Err(_) => anyhow::bail!(
            "cannot connect to Postgres at {}: no answer within --ledger-timeout ({}) — \
             is the address right, and does a firewall drop the packets?",
            place(&options),
            format_duration(timeout)
        ),
    }
}

/// The cause: for an error from the server, only its message (sqlx's text adds the
/// line of Postgres's source that raised it).
fn cause(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(database) => database.message().to_owned(),
        other => chain(other),
    }
}

/// `host:port`, or the Unix socket.
fn place(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    }
}

/// What to do about a failed connection, for the causes a person can fix.
fn hint(error: &sqlx::Error, options: &PgConnectOptions) -> Option<String> {
    match error {
        sqlx::Error::Database(database) => match database.code().as_deref()? {
            "3D000" => Some(format!(
                "create it with `createdb -h {} -p {} -U {} {}`, or name an existing \
                 database in --database-url",
                options.get_host(),
                options.get_port(),
                options.get_username(),
                options
                    .get_database()
                    .unwrap_or_else(|| options.get_username())
            )),
            "28P01" | "28000" => Some(
                "check the user and password in --database-url, and Postgres's pg_hba.conf"
                    .to_owned(),
            ),
            "53300" => Some(
                "Postgres has no connection to spare: lower --database-max-connections \
                 across the sidecars, or raise max_connections"
                    .to_owned(),
            ),
            _ => None,
        },
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            Some("is Postgres running and listening there?".to_owned())
        }
        sqlx::Error::Tls(_) => Some("check sslmode in --database-url".to_owned()),
        _ => None,
    }
}

/// Whether Postgres found a prepared statement missing, or one of the same name already
/// there: the connection is not the one that prepared it, which is what a pooler in
/// transaction mode without prepared statement support does to sqlx's named statements.
fn prepared_statements_lost(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Database(database)
            if matches!(database.code().as_deref(), Some("42P05" | "26000"))
    )
}

/// Fails unless Postgres acknowledges commits only once they are durable, or the
/// operator accepted the risk.
async fn refuse_async_commit(pool: &PgPool, allow_async_commit: bool) -> anyhow::Result<()> {
    // The first statement on the pool: where a pooler that loses prepared statements
    // shows itself.
    let synchronous_commit: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(pool)
        .await
        .map_err(|error| match prepared_statements_lost(&error) {
            true => anyhow::anyhow!(
                "cannot read synchronous_commit: {} — is a pooler in transaction mode \
                 between onceward and Postgres that does not keep prepared statements \
                 (PgBouncer before 1.21, or without max_prepared_statements)? Use \
                 PgBouncer 1.21+ with max_prepared_statements, or session mode",
                cause(&error)
            ),
            false => anyhow::Error::new(error).context("cannot read synchronous_commit"),
        })?;
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
