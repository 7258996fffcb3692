//! The command line of the one binary: its roles, each parsed in the same one pass.
//! The flags live next to the code they configure: the sidecar's in [`crate::config`],
//! the client commands' in [`crate::cli`], the load generator's in [`crate::bench`].

use clap::{Parser, Subcommand};

use crate::bench::BenchArgs;
use crate::cli::ClientCommand;
use crate::config::{GcArgs, ServeArgs, StorageArgs};
use crate::drill::DrillArgs;
use crate::relay::RelayArgs;
use crate::telemetry::LogFormat;

/// onceward: make paid or irreversible side effects happen at most once.
#[derive(Debug, Parser)]
#[command(name = "onceward", version, about, args_override_self = true)]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "ONCEWARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The roles of the one binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar.
    Serve(Box<ServeArgs>),
    /// Apply the ledger's migrations and exit.
    Migrate(StorageArgs),
    /// Run one retention pass (delete expired records) and exit; for cron jobs.
    Gc(GcArgs),
    /// Print a fresh random tenant bearer token and its SHA-256 for the config file.
    ///
    /// The SHA-256 goes into the --config file as the tenant's `token_sha256`; the
    /// token goes to the tenant's callers (ONCEWARD_AUTH_TOKEN or --auth-token-file for
    /// the CLI). `token`, the command's old name, still works.
    #[command(alias = "token")]
    NewTenantToken,
    /// The command-line client (claim, complete, release, extend, lookup, health):
    /// talks to a running sidecar and exits with a code that says what happened.
    #[command(flatten)]
    Client(ClientCommand),
    /// Measure a running sidecar's throughput and latency, and its baselines.
    Bench(BenchArgs),
    /// Game days against a running deployment: `drill key-loss` makes Redis lose the
    /// drill's own keys and shows no duplicate gets through (exit 0 only then).
    Drill(DrillArgs),
    /// The outbox relay: publish the rows a service writes to its outbox table (in the
    /// transaction of its business write) to NATS JetStream, at least once and in
    /// order; `--migrate` creates the table.
    Relay(Box<RelayArgs>),
}

impl Command {
    /// The threads the command's runtime runs on.
    pub fn worker_threads(&self) -> u16 {
        match self {
            Command::Serve(args) => args.worker_threads,
            Command::Bench(args) => args.worker_threads,
            _ => 1,
        }
    }
}
