//! `onceward relay`: the producer side of effectively-once. A service writes a row to
//! an outbox table in its own Postgres in the same transaction as its business write;
//! the relay publishes each row to NATS JetStream at least once, in order, at no more
//! than `--max-rate`, and marks it published after the broker's ack. Consumers
//! deduplicate on the message id (the inbox helper's `ClaimBatch`).
//!
//! # Layout
//! - `outbox`: the table (`--table`, `--migrate`) and the statements run on it.
//! - `pump`: the loop, and why each of its steps is safe.
//! - `publisher`: the [`Publisher`] trait and NATS JetStream behind it.
//! - `rate`: the `--max-rate` token bucket.
//! - `metrics`: the relay's own metrics, on its own `--metrics-listen`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use sqlx::Connection as _;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

use crate::domain::parse_duration;

pub mod metrics;
pub mod outbox;
pub mod publisher;
pub mod pump;
pub mod rate;

pub use outbox::TableName;
pub use publisher::{JetStream, Publisher};
pub use pump::{Pump, PumpSettings};

/// `onceward relay`.
#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    /// The service's Postgres, which holds the outbox table: postgres://…
    #[arg(long, env = "ONCEWARD_RELAY_SOURCE_URL", hide_env_values = true, value_parser = parse_postgres_url)]
    pub source_url: String,

    /// The NATS server (JetStream enabled): nats://host:port. Required unless --migrate.
    #[arg(
        long,
        env = "ONCEWARD_RELAY_NATS_URL",
        required_unless_present = "migrate"
    )]
    pub nats_url: Option<String>,

    /// The outbox table: `name` or `schema.name`, lowercase.
    #[arg(long, env = "ONCEWARD_RELAY_TABLE", default_value = "onceward_outbox", value_parser = TableName::parse)]
    pub table: TableName,

    /// Rows taken (and locked) per round; at most --max-rate, so that no round holds
    /// its locks much longer than a second.
    #[arg(long, env = "ONCEWARD_RELAY_BATCH", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,

    /// Most messages published per second (a token bucket): a backlog drains at this
    /// rate, never as a burst.
    #[arg(long, env = "ONCEWARD_RELAY_MAX_RATE", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_rate: u32,

    /// Refusals by the broker (e.g. no stream for the topic) after which a row is dead
    /// (`dead_at`, `last_error`) and no longer retried. An unreachable broker counts none.
    #[arg(long, env = "ONCEWARD_RELAY_MAX_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,

    /// How long to wait before looking again when the outbox is empty or nothing got
    /// through (e.g. 250ms, 1s).
    #[arg(long, env = "ONCEWARD_RELAY_POLL_INTERVAL", default_value = "1s", value_parser = parse_positive_duration)]
    pub poll_interval: Duration,

    /// The longest the relay waits for the broker's ack of one message before it
    /// takes the broker for unavailable (the row stays unpublished, no attempt counted).
    #[arg(long, env = "ONCEWARD_RELAY_ACK_TIMEOUT", default_value = "5s", value_parser = parse_positive_duration)]
    pub ack_timeout: Duration,

    /// Prometheus listen address (text format on /metrics). Default 127.0.0.1:9465;
    /// when that is taken (another relay on this host), a free port, logged at start.
    #[arg(long, env = "ONCEWARD_RELAY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Create the outbox table (and its index) if missing, and exit.
    #[arg(long)]
    pub migrate: bool,
}

fn parse_postgres_url(text: &str) -> Result<String, String> {
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        Ok(text.to_owned())
    } else {
        Err("must be a postgres://… URL (the outbox lives in the service's Postgres)".to_owned())
    }
}

fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        duration if duration.is_zero() => Err("must be more than zero".to_owned()),
        duration => Ok(duration),
    }
}

/// The metrics port when `--metrics-listen` is not given.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9465);

/// Binds `--metrics-listen`; without it the default, or a free port when a relay
/// already holds the default (relays are meant to run several at once).
async fn bind_metrics(requested: Option<SocketAddr>) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = requested.unwrap_or(DEFAULT_METRICS_LISTEN);
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => Ok(listener),
        Err(error) if requested.is_none() && error.kind() == std::io::ErrorKind::AddrInUse => {
            let fallback = SocketAddr::new(addr.ip(), 0);
            tracing::warn!(%addr, "the default metrics address is taken; using a free port");
            Ok(tokio::net::TcpListener::bind(fallback).await?)
        }
        Err(error) => {
            Err(error).with_context(|| format!("cannot listen on --metrics-listen {addr}"))
        }
    }
}

/// Runs `onceward relay` until `shutdown` resolves (or, with `--migrate`, creates the
/// table and returns).
pub async fn run(
    args: RelayArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let redacted = crate::app::redact(&args.source_url);
    if args.migrate {
        let mut conn = sqlx::PgConnection::connect(&args.source_url)
            .await
            .with_context(|| format!("cannot connect to --source-url {redacted}"))?;
        outbox::migrate(&mut conn, &args.table)
            .await
            .with_context(|| format!("cannot create the outbox table {}", args.table))?;
        println!("outbox table {} is ready", args.table);
        return Ok(());
    }
    let nats_url = args.nats_url.as_deref().context("--nats-url is required")?;

    let handle = metrics::install();
    let metrics_listener = bind_metrics(args.metrics_listen).await?;
    let pool = PgPoolOptions::new()
        // One for the round's transaction, one to measure the backlog.
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&args.source_url)
        .await
        .with_context(|| format!("cannot connect to --source-url {redacted}"))?;
    let mut conn = pool.acquire().await?;
    if !outbox::exists(&mut conn, &args.table).await? {
        anyhow::bail!(
            "the outbox table {} does not exist (--table): create it with `onceward relay --migrate`",
            args.table
        );
    }
    drop(conn);
    let nats_shown = crate::app::redact(nats_url);
    let publisher = JetStream::connect(nats_url, args.ack_timeout)
        .await
        .with_context(|| format!("cannot connect to --nats-url {nats_shown}"))?;

    let stop = CancellationToken::new();
    let metrics_addr = metrics_listener.local_addr()?;
    let metrics_task = tokio::spawn(crate::app::serve_metrics(
        metrics_listener,
        handle,
        stop.clone(),
    ));
    tracing::info!("serving Prometheus metrics on http://{metrics_addr}/metrics");
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown.await;
            stop.cancel();
        }
    });
    tracing::info!(
        table = %args.table,
        batch = args.batch,
        max_rate = args.max_rate,
        max_attempts = args.max_attempts,
        "relaying the outbox to {nats_shown}"
    );
    let settings = PumpSettings {
        table: args.table,
        batch: args.batch,
        max_rate: args.max_rate,
        max_attempts: args.max_attempts,
        poll_interval: args.poll_interval,
    };
    Pump::new(pool, Arc::new(publisher), settings)
        .run(stop.clone())
        .await;
    stop.cancel();
    let _ = metrics_task.await;
    Ok(())
}
