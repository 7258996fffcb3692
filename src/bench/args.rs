//! `onceward bench`'s command line.
//!
//! Unlike `serve`, no flag here has an environment fallback: a benchmark run should be
//! described entirely by the command that produced it, so BENCHMARKS.md can quote it
//! and anyone can repeat it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::domain::parse_duration;

/// The shortest measured slice of a round: shorter ones are mostly ramp-up and drain.
const MIN_ROUND: Duration = Duration::from_millis(100);

/// `onceward bench`: a load generator for a running sidecar and its baselines.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The sidecar's gRPC address (also used by the grpc-floor baseline); several
    /// (repeated or comma-separated) measure a fleet sharing one ledger: the client
    /// connections are spread over them round-robin.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:50051")]
    pub addr: Vec<String>,

    /// What to measure; --compare measures every target.
    #[arg(long, value_enum, default_value_t = Target::Onceward)]
    pub target: Target,

    /// What one operation is; --compare measures both `new` and `duplicate`.
    #[arg(long, value_enum, default_value_t = Workload::New)]
    pub workload: Workload,

    /// In the batch workload, the fresh keys of one ClaimBatch (and its CompleteBatch).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub batch_items: u32,

    /// In the mixed workload, the share of operations that repeat a completed key.
    #[arg(long, default_value_t = 0.9, value_parser = parse_ratio)]
    pub duplicate_ratio: f64,

    /// Client connections (one HTTP/2 connection each for gRPC targets).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub connections: u32,

    /// Threads that run the load generator (and every baseline's client). One, the
    /// default, costs the least CPU per operation, which leaves the most for the
    /// target on a machine they share.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub worker_threads: u16,

    /// Operations in flight on each connection at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub in_flight: u32,

    /// How long each measured run lasts.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,

    /// Unmeasured load before each run, so connections, pools and caches are warm.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub warmup: Duration,

    /// Split each run (its --duration and its --warmup) into this many rounds. A round
    /// measures every target and workload of the level in turn, every other round in
    /// reverse order, so targets compared with each other are measured over the same
    /// stretch of time: a machine whose speed drifts during the run slows them alike.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,

    /// Open loop: start this many operations per second in total on a fixed
    /// timetable, and measure latency from each operation's scheduled start.
    /// Without it the loop is closed (each worker starts the next as soon as the
    /// last one finished).
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Measure onceward and every baseline (new and duplicate workloads), print the
    /// ratios, then the p99 of an open-loop run at half of onceward's peak.
    #[arg(long)]
    pub compare: bool,

    /// Total concurrency levels to run at instead of --connections × --in-flight:
    /// each level L uses min(L, --connections) connections and L / connections
    /// operations in flight on each.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..))]
    pub sweep: Vec<u32>,

    /// Write an SVG plot of throughput and p99 against concurrency here.
    #[arg(long)]
    pub plot: Option<PathBuf>,

    /// Print the report as JSON instead of tables.
    #[arg(long)]
    pub json: bool,

    /// Also write the JSON report to this file (whatever --json says), so one run
    /// gives both the tables and the machine-readable figures.
    #[arg(long)]
    pub json_file: Option<PathBuf>,

    /// Postgres for the direct-postgres baseline (its table lives in a schema of its
    /// own, `onceward_bench`, so it never touches onceward's records).
    #[arg(long)]
    pub database_url: Option<String>,

    /// The most Postgres connections the direct-postgres baseline opens. Up to this
    /// level each operation in flight has a connection of its own; above it, as in a
    /// hand-rolled service whose concurrency outgrows Postgres's `max_connections`
    /// (100 by default), operations in flight take turns on them.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub postgres_connections: u32,

    /// Redis for the direct-redis baseline (keys under `onceward-bench-baseline:`).
    #[arg(long)]
    pub redis_url: Option<String>,

    /// How many completed keys the duplicate workload repeats.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,

    /// Size of the response each Complete stores.
    #[arg(long, default_value_t = 64)]
    pub response_bytes: usize,

    /// Report the peak RSS (VmHWM) of this sidecar process at the end.
    #[arg(long, conflicts_with = "spawn_sidecar")]
    pub sidecar_pid: Option<u32>,

    /// Start the sidecar (`onceward serve` with the arguments after `--`), measure
    /// it, report its peak RSS and stop it.
    #[arg(long)]
    pub spawn_sidecar: bool,

    /// A second sidecar to measure, as target `embedded`: the embedded default (SQLite
    /// ledger, in-process hot tier). With --compare it takes its turn in the same
    /// rounds as the sidecar at --addr, and is compared with it.
    #[arg(long)]
    pub embedded_addr: Option<String>,

    /// Start the embedded sidecar at --embedded-addr (`onceward serve` with a fresh
    /// temporary --data-dir and no --database-url or --redis-url), measure it, report
    /// its peak RSS, then stop it and remove its directory.
    #[arg(long, requires = "embedded_addr")]
    pub spawn_embedded: bool,

    /// Arguments for `onceward serve` when --spawn-sidecar is given.
    #[arg(last = true, requires = "spawn_sidecar")]
    pub serve_args: Vec<String>,
}

impl BenchArgs {
    /// The concurrency levels to measure at.
    pub fn levels(&self) -> Vec<Level> {
        if self.sweep.is_empty() {
            return vec![Level {
                connections: self.connections,
                in_flight: self.in_flight,
            }];
        }
        self.sweep
            .iter()
            .map(|&total| {
                let connections = total.min(self.connections);
                Level {
                    connections,
                    in_flight: total.div_ceil(connections),
                }
            })
            .collect()
    }

    /// The warm-up and the measured time of one round.
    pub fn round_lengths(&self) -> Result<(Duration, Duration), String> {
        let measured = self.duration / self.rounds;
        if measured < MIN_ROUND {
            return Err(format!(
                "--duration {:?} split into --rounds {} leaves {measured:?} per round; \
                 give each round at least {MIN_ROUND:?}",
                self.duration, self.rounds
            ));
        }
        Ok((self.warmup / self.rounds, measured))
    }

    /// How the loop is paced.
    pub fn pacing(&self) -> Pacing {
        match self.rate {
            Some(rate) => Pacing::Open { rate },
            None => Pacing::Closed,
        }
    }
}

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// The sidecar at --addr.
    Onceward,
    /// The embedded sidecar at --embedded-addr.
    Embedded,
    /// What a team would hand-roll: INSERT … ON CONFLICT DO NOTHING, then UPDATE, each
    /// its own autocommit statement.
    DirectPostgres,
    /// One `SET key value NX PX ttl GET` per operation on one multiplexed connection.
    DirectRedis,
    /// The same server answering `grpc.health.v1.Health/Check`: the cost of gRPC alone.
    GrpcFloor,
}

impl Target {
    /// Every target, in report order (`embedded` only runs with --embedded-addr).
    pub const ALL: [Target; 5] = [
        Target::Onceward,
        Target::Embedded,
        Target::DirectPostgres,
        Target::DirectRedis,
        Target::GrpcFloor,
    ];

    /// The name used in tables, JSON and the plot.
    pub fn name(self) -> &'static str {
        match self {
            Target::Onceward => "onceward",
            Target::Embedded => "embedded",
            Target::DirectPostgres => "direct-postgres",
            Target::DirectRedis => "direct-redis",
            Target::GrpcFloor => "grpc-floor",
        }
    }
}

impl BenchArgs {
    /// The targets and workloads one run measures, in the same rounds: with
    /// `--compare` every target on `new` and `duplicate`; a side-by-side workload with
    /// what it is compared with (batches and budgets with single pairs, Connect with
    /// gRPC duplicates, budgets with duplicates and the floor too); else one of each.
    pub fn measured(&self) -> anyhow::Result<(Vec<Target>, Vec<Workload>)> {
        if self.compare {
            anyhow::ensure!(
                self.database_url.is_some() && self.redis_url.is_some(),
                "--compare measures the direct-postgres and direct-redis baselines too: \
                 give --database-url and --redis-url"
            );
            let mut workloads = vec![Workload::New, Workload::Duplicate];
            if self.workload == Workload::Mixed {
                workloads.push(Workload::Mixed);
            }
            let targets = Target::ALL
                .into_iter()
                .filter(|&t| t != Target::Embedded || self.embedded_addr.is_some())
                .collect();
            return Ok((targets, workloads));
        }
        let side_by_side = match self.workload {
            Workload::Connect => vec![Workload::Duplicate, Workload::Connect],
            Workload::Budget => vec![Workload::New, Workload::Budget, Workload::Duplicate],
            Workload::Batch => vec![Workload::New, Workload::Batch],
            _ => return Ok((vec![self.target], vec![self.workload])),
        };
        anyhow::ensure!(
            self.target == Target::Onceward,
            "--workload {} measures the sidecar itself: use --target onceward",
            self.workload.name()
        );
        let mut targets = vec![Target::Onceward];
        if self.workload == Workload::Budget {
            targets.push(Target::GrpcFloor);
        }
        Ok((targets, side_by_side))
    }
}

/// What one operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Claim a fresh key, then Complete it: one operation is both RPCs.
    New,
    /// Claim a key that was completed before the run (the stored result comes back).
    Duplicate,
    /// `--duplicate-ratio` duplicates, the rest new.
    Mixed,
    /// `ClaimBatch` of `--batch-items` fresh keys, then `CompleteBatch` of them: one
    /// operation is both RPCs. Measured in the same rounds as `new`, so the report
    /// compares items/s with single Claim+Complete pairs/s.
    Batch,
    /// A duplicate `Claim` over the Connect protocol (JSON over HTTP/1.1, one
    /// keep-alive connection per operation in flight), as a `fetch` or curl caller
    /// sends it. Measured in the same rounds as gRPC `duplicate`, so the report compares
    /// the two.
    Connect,
    /// `new` in a namespace with a budget (the spend guard): each Claim names one of
    /// 1000 subjects and costs 1, debited in the claim's ledger transaction; the limits
    /// are never reached. Measured in the same rounds as `new` (no policy) and
    /// `duplicate` with the gRPC floor, so the report compares the three.
    Budget,
}

impl Workload {
    /// The name used in tables, JSON and the plot.
    pub fn name(self) -> &'static str {
        match self {
            Workload::New => "new",
            Workload::Duplicate => "duplicate",
            Workload::Mixed => "mixed",
            Workload::Batch => "batch",
            Workload::Connect => "connect",
            Workload::Budget => "budget",
        }
    }
}

/// A concurrency level: `connections × in_flight` operations at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Level {
    /// Client connections.
    pub connections: u32,
    /// Operations in flight per connection.
    pub in_flight: u32,
}

impl Level {
    /// Operations in flight in total.
    pub fn total(self) -> u32 {
        self.connections * self.in_flight
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}×{}", self.connections, self.in_flight)
    }
}

/// How operations are started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Each worker starts its next operation when the last one finished.
    Closed,
    /// Operations start on a fixed timetable of `rate` per second in total.
    Open {
        /// Operations per second.
        rate: f64,
    },
}

fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(format!("{text:?} is not a ratio between 0 and 1")),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a positive rate (operations per second)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(argv: &[&str]) -> BenchArgs {
        Wrapper::try_parse_from(std::iter::once("bench").chain(argv.iter().copied()))
            .expect("valid flags")
            .args
    }

    #[test]
    fn a_sweep_level_splits_into_connections_and_in_flight() {
        let args = parse(&["--connections", "4", "--sweep", "1,4,16,64"]);
        let levels: Vec<(u32, u32)> = args
            .levels()
            .into_iter()
            .map(|l| (l.connections, l.in_flight))
            .collect();
        assert_eq!(levels, [(1, 1), (4, 1), (4, 4), (4, 16)]);
    }

    #[test]
    fn serve_arguments_follow_a_double_dash() {
        let args = parse(&["--spawn-sidecar", "--", "--listen", "127.0.0.1:1"]);
        assert!(!args.spawn_embedded);
        assert_eq!(args.serve_args, ["--listen", "127.0.0.1:1"]);
        assert_eq!(args.pacing(), Pacing::Closed);
    }

    #[test]
    fn an_embedded_sidecar_is_only_spawned_at_an_address_given() {
        let args = parse(&["--spawn-embedded", "--embedded-addr", "http://127.0.0.1:2"]);
        assert_eq!(args.embedded_addr.as_deref(), Some("http://127.0.0.1:2"));
        let no_addr = Wrapper::try_parse_from(["bench", "--spawn-embedded"]);
        assert!(no_addr.is_err());
    }

    #[test]
    fn a_run_splits_into_rounds_of_its_warmup_and_duration() {
        let args = parse(&["--duration", "10s", "--warmup", "2s"]);
        assert_eq!(args.rounds, 5);
        assert_eq!(
            args.round_lengths(),
            Ok((Duration::from_millis(400), Duration::from_secs(2)))
        );
        let one = parse(&["--duration", "1s", "--rounds", "1"]);
        assert_eq!(one.round_lengths().unwrap().1, Duration::from_secs(1));
    }

    #[test]
    fn rounds_too_short_to_measure_are_refused_naming_both_flags() {
        let args = parse(&["--duration", "1s", "--rounds", "20"]);
        let error = args.round_lengths().unwrap_err();
        assert!(
            error.contains("--duration") && error.contains("--rounds 20"),
            "{error}"
        );
        assert!(error.contains("100ms"), "{error}");
        let zero = Wrapper::try_parse_from(["bench", "--rounds", "0"]);
        assert!(zero.is_err());
    }
}
