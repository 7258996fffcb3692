//! The payment path, effectively once end to end: an idempotent `POST /charge` that
//! writes the charge and its outbox row in one transaction, `onceward relay` publishing
//! the outbox to NATS JetStream, and a ledger consumer that deduplicates with the
//! inbox helper, applies each charge once in its own table, and dead-letters poison
//! messages. Each service exports Prometheus metrics.
//!
//! ```sh
//! onceward serve --database-url postgres://…/payments &                 # the sidecar, :50051
//! cargo run --example payment-path -- setup --database-url postgres://…/payments
//! cargo run --example payment-path -- charge-api --database-url postgres://…/payments &   # :3000
//! onceward relay --source-url postgres://…/payments --nats-url nats://127.0.0.1:4222 &
//! cargo run --example payment-path -- consumer --database-url postgres://…/payments &
//! cargo run --example payment-path -- load --charges 1000                 # the client
//! ```
//!
//! # Layout
//! - `schema`: the service's tables (charges, the outbox, the consumer's ledger).
//! - `charge_api`: `POST /charge` behind the client crate's `IdempotencyLayer`.
//! - `consumer`: the JetStream pull consumer, its inbox, its effect and its DLQ.
//! - `client`: a caller of `POST /charge` retrying with full jitter under a retry budget.
//! - `telemetry`: each service's `/metrics`.
//!
//! The proof (`tests/it/payment_path.rs`) runs these very files as processes.

mod charge_api;
mod client;
mod consumer;
mod schema;
mod telemetry;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "payment-path", about = "The payment path's services")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the tables (charges, the outbox, the consumer's ledger) and exit.
    Setup {
        #[arg(long, env = "PAYMENT_DATABASE_URL")]
        database_url: String,
    },
    /// The charge API: `POST /charge` with an `Idempotency-Key`.
    ChargeApi(charge_api::Args),
    /// The ledger consumer.
    Consumer(consumer::Args),
    /// Make charges through the API, as a retrying client would, and print the counts.
    Load {
        /// The charge API.
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
        /// Logical charges to make.
        #[arg(long, default_value_t = 100)]
        charges: u32,
        /// Requests in flight.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
}

/// How long a service waits for a sidecar that is still starting.
pub const SIDECAR_WAIT: Duration = Duration::from_secs(30);

/// A service's default `--metrics-listen`: loopback, on its own port.
pub fn metrics_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let ran = match cli.command {
        Command::Setup { database_url } => schema::setup(&database_url).await,
        Command::ChargeApi(args) => charge_api::run(args, onceward::shutdown::signal()).await,
        Command::Consumer(args) => consumer::run(args, onceward::shutdown::signal()).await,
        Command::Load {
            url,
            charges,
            concurrency,
        } => client::load(&url, charges, concurrency).await,
    };
    match ran {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("payment-path: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
