//! `onceward bench`: a load generator for a running sidecar, and the baselines the
//! performance bars are ratios against, measured by the same command, in the
//! same run, at the same concurrency, so that machine noise mostly cancels.
//!
//! # Layout
//! - [`args`]: the command line.
//! - `driver`: the closed/open load loop and its HDR histograms.
//! - `workloads`: Claim+Complete of fresh keys, Claim of completed keys, a mix, and
//!   ClaimBatch+CompleteBatch of fresh keys.
//! - `connect`: Claim of completed keys over the Connect protocol (JSON, HTTP/1.1).
//! - `baselines`: direct-postgres, direct-redis and grpc-floor.
//! - `report`: measurements, ratios, text tables and JSON; `side_by_side`: the tables
//!   of batches against single pairs and Connect against gRPC.
//! - `plot`: the SVG of throughput and p99 against concurrency.
//! - `sidecar`: starting the sidecar under test, and reading its peak RSS.

pub mod args;
mod baselines;
mod budget;
mod connect;
mod driver;
mod plot;
mod report;
mod side_by_side;
mod sidecar;
mod workloads;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use redis::aio::MultiplexedConnection;
use sqlx::PgPool;
use tonic::transport::{Channel, Endpoint};

pub use args::BenchArgs;
use args::{Level, Pacing, Target, Workload};
use baselines::{HealthWorker, PostgresWorker, RedisPopulator, RedisWorker};
use connect::ConnectWorker;
use driver::{Tally, Worker};
use report::{HalfPeak, Measurement, Report};
use sidecar::Sidecar;
use workloads::{KeyPlan, OncewardWorker, unique_prefix};

/// Runs the benchmark the arguments describe and prints its report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let bench = Bench::new(&args)?;
    let spawned = match args.spawn_sidecar {
        true => {
            let [addr] = args.addr.as_slice() else {
                anyhow::bail!("--spawn-sidecar starts one sidecar: give one --addr");
            };
            Some(Sidecar::spawn(&args.serve_args, addr).await?)
        }
        false => None,
    };
    let embedded = match (args.spawn_embedded, &args.embedded_addr) {
        (true, Some(addr)) => Some(Sidecar::spawn_embedded(addr).await?),
        _ => None,
    };
    let pid = spawned.as_ref().map(Sidecar::pid).or(args.sidecar_pid);
    let measured = bench.run().await;
    // Read before stopping them: the numbers vanish with the processes.
    let memory = pid.map(sidecar::memory).transpose();
    let embedded_memory = embedded
        .as_ref()
        .map(|e| sidecar::memory(e.pid()))
        .transpose();
    for sidecar in [spawned, embedded].into_iter().flatten() {
        if let Err(error) = sidecar.stop().await {
            tracing::warn!(error = %error, "a sidecar did not stop cleanly");
        }
    }
    let mut report = measured?;
    report.sidecar = memory?;
    report.embedded_sidecar = embedded_memory?;

    if let Some(path) = &args.plot {
        let title = format!(
            "onceward vs baselines: closed loop, {} s per point",
            args.duration.as_secs_f64()
        );
        std::fs::write(path, plot::svg(&report.runs, &title))
            .with_context(|| format!("cannot write the plot to {}", path.display()))?;
    }
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.json_file {
        std::fs::write(path, &json)
            .with_context(|| format!("cannot write the JSON report to {}", path.display()))?;
    }
    if args.json {
        println!("{json}");
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

/// One bench invocation's state.
struct Bench<'a> {
    args: &'a BenchArgs,
    response: Arc<[u8]>,
    /// The prefix of each target's completed keys, filled once and reused by every
    /// duplicate run after.
    completed: HashMap<Target, String>,
    /// The warm-up and the measured time each pair gets in each round.
    round_warmup: Duration,
    round_duration: Duration,
    runs: Vec<Measurement>,
}

/// The connections of one concurrency level, shared by every run at that level.
struct Connections {
    /// One HTTP/2 connection per client connection, to the --addr sidecars in turn.
    channels: Vec<Channel>,
    /// --addr, for the Connect workload's HTTP/1.1 client.
    addr: Vec<String>,
    /// The same, to --embedded-addr.
    embedded: Vec<Channel>,
    /// One Postgres connection per worker.
    postgres: Option<PgPool>,
    /// One multiplexed connection for every worker.
    redis: Option<MultiplexedConnection>,
}

impl<'a> Bench<'a> {
    /// Fails, before anything starts, on arguments that leave no time to measure.
    fn new(args: &'a BenchArgs) -> anyhow::Result<Self> {
        let (round_warmup, round_duration) = args.round_lengths().map_err(anyhow::Error::msg)?;
        Ok(Self {
            args,
            response: vec![b'r'; args.response_bytes].into(),
            completed: HashMap::new(),
            round_warmup,
            round_duration,
            runs: Vec::new(),
        })
    }

    async fn run(mut self) -> anyhow::Result<Report> {
        let args = self.args;
        let (targets, workloads) = args.measured()?;
        if workloads.contains(&Workload::Budget) {
            // The policy lives in the ledger: one sidecar of the fleet sets it for all.
            let first = args.addr.first().context("--addr is required")?;
            budget::set(first).await?;
        }
        // The floor does the same thing whatever the workload: measure it once per
        // level, next to the run it is compared with.
        let floor_workload = match workloads.contains(&Workload::Duplicate) {
            true => Workload::Duplicate,
            false => workloads[0],
        };

        let mut pairs = Vec::new();
        for &workload in &workloads {
            for &target in &targets {
                if target != Target::GrpcFloor || workload == floor_workload {
                    pairs.push((target, workload));
                }
            }
        }
        for level in args.levels() {
            let connections = self.connect(level, &targets).await?;
            let runs = self
                .measure_in_rounds(&pairs, level, args.pacing(), &connections)
                .await?;
            self.runs.extend(runs);
            if let Some(pool) = connections.postgres {
                pool.close().await;
            }
        }

        let (half_peak, half_peak_embedded) = match args.compare {
            true => (
                self.half_peak(Target::Onceward).await?,
                self.half_peak(Target::Embedded).await?,
            ),
            false => (None, None),
        };
        let mut report = Report {
            addr: args.addr.join(","),
            duration_s: args.duration.as_secs_f64(),
            warmup_s: args.warmup.as_secs_f64(),
            rounds: args.rounds,
            runs: self.runs,
            ratios: Vec::new(),
            peak_new_vs_direct_postgres: None,
            half_peak,
            half_peak_embedded,
            sidecar: None,
            embedded_sidecar: None,
            batch_items: (args.workload == Workload::Batch).then_some(args.batch_items),
            connect_compared: args.workload == Workload::Connect,
            budget_compared: args.workload == Workload::Budget,
        };
        report.compute_ratios();
        Ok(report)
    }

    /// Opens what `targets` need at `level`.
    async fn connect(&self, level: Level, targets: &[Target]) -> anyhow::Result<Connections> {
        let args = self.args;
        let mut connections = Connections {
            channels: Vec::new(),
            addr: args.addr.clone(),
            embedded: Vec::new(),
            postgres: None,
            redis: None,
        };
        if targets
            .iter()
            .any(|t| matches!(t, Target::Onceward | Target::GrpcFloor))
        {
            connections.channels = open_channels("--addr", &args.addr, level).await?;
        }
        if targets.contains(&Target::Embedded) {
            let addr = args
                .embedded_addr
                .as_deref()
                .context("the embedded target needs --embedded-addr")?;
            connections.embedded =
                open_channels("--embedded-addr", &[addr.to_owned()], level).await?;
        }
        if targets.contains(&Target::DirectPostgres) {
            let url = args
                .database_url
                .as_deref()
                .context("the direct-postgres baseline needs --database-url")?;
            let size = level.total().min(args.postgres_connections);
            connections.postgres = Some(baselines::connect_postgres(url, size).await?);
        }
        if targets.contains(&Target::DirectRedis) {
            let url = args
                .redis_url
                .as_deref()
                .context("the direct-redis baseline needs --redis-url")?;
            connections.redis = Some(baselines::connect_redis(url).await?);
        }
        Ok(connections)
    }

    /// Measures every `(target, workload)` of `pairs` at `level` in `--rounds`
    /// rounds: each round gives every pair a slice of the warm-up and of the measured
    /// time, in turn, every other round in reverse order, so that pairs compared with
    /// each other share the machine's good and bad moments.
    async fn measure_in_rounds(
        &mut self,
        pairs: &[(Target, Workload)],
        level: Level,
        pacing: Pacing,
        connections: &Connections,
    ) -> anyhow::Result<Vec<Measurement>> {
        let mut prefixes = Vec::with_capacity(pairs.len());
        for &(target, workload) in pairs {
            prefixes.push(
                self.completed_prefix(target, workload, level, connections)
                    .await?,
            );
        }
        let mut tallies: Vec<(Tally, Vec<f64>)> = pairs
            .iter()
            .map(|_| (Tally::default(), Vec::new()))
            .collect();
        for round in 0..self.args.rounds {
            for i in round_order(round, pairs.len()) {
                let (target, workload) = pairs[i];
                tracing::info!(
                    target = target.name(),
                    workload = workload.name(),
                    %level,
                    ?pacing,
                    round = round + 1,
                    "measuring"
                );
                let slice = Slice {
                    target,
                    workload,
                    completed_prefix: &prefixes[i],
                    level,
                    pacing,
                };
                let tally = self
                    .drive(&slice, connections, self.round_warmup, self.round_duration)
                    .await?;
                let (total, throughputs) = &mut tallies[i];
                throughputs.push(tally.throughput());
                total.absorb(tally);
            }
        }
        Ok(pairs
            .iter()
            .zip(tallies)
            .map(|(&(target, workload), (total, throughputs))| {
                Measurement::new(target, workload, level, pacing, &total, throughputs)
            })
            .collect())
    }

    /// Warms `slice` up for `warmup`, then measures it for `duration`.
    async fn drive(
        &self,
        slice: &Slice<'_>,
        connections: &Connections,
        warmup: Duration,
        duration: Duration,
    ) -> anyhow::Result<Tally> {
        let plan = |label: &str| {
            Arc::new(KeyPlan {
                workload: slice.workload,
                duplicate_ratio: self.args.duplicate_ratio,
                fresh_prefix: unique_prefix(label),
                completed_prefix: slice.completed_prefix.to_owned(),
                completed_keys: self.args.keys,
                response: self.response.clone(),
                batch_items: self.args.batch_items,
            })
        };
        if !warmup.is_zero() {
            let workers = workers(slice.target, &plan("warmup"), slice.level, connections)?;
            driver::drive(workers, warmup, slice.pacing).await;
        }
        let workers = workers(slice.target, &plan("run"), slice.level, connections)?;
        Ok(driver::drive(workers, duration, slice.pacing).await)
    }

    /// The prefix of the completed keys `target` repeats in `workload` (empty if it
    /// repeats none).
    async fn completed_prefix(
        &mut self,
        target: Target,
        workload: Workload,
        level: Level,
        connections: &Connections,
    ) -> anyhow::Result<String> {
        match (target, workload) {
            (Target::GrpcFloor, _) | (_, Workload::New) => Ok(String::new()),
            _ => self.completed_keys(target, level, connections).await,
        }
    }

    /// The prefix of `target`'s completed keys, completing them first if this is
    /// the target's first duplicate run.
    async fn completed_keys(
        &mut self,
        target: Target,
        level: Level,
        connections: &Connections,
    ) -> anyhow::Result<String> {
        if let Some(prefix) = self.completed.get(&target) {
            return Ok(prefix.clone());
        }
        let plan = Arc::new(KeyPlan {
            workload: Workload::Duplicate,
            duplicate_ratio: 1.0,
            fresh_prefix: unique_prefix("unused"),
            completed_prefix: unique_prefix("completed"),
            completed_keys: self.args.keys,
            response: self.response.clone(),
            batch_items: self.args.batch_items,
        });
        tracing::info!(
            target = target.name(),
            keys = self.args.keys,
            "completing the keys duplicates will repeat"
        );
        let fill = |workers: Vec<Box<dyn Worker>>| async {
            driver::run_each(workers, self.args.keys)
                .await
                .map_err(|error| anyhow::anyhow!("{}: {error}", target.name()))
                .context("cannot complete the keys for the duplicate workload")
        };
        match target {
            Target::Onceward | Target::Embedded => {
                let channels = connections.grpc(target);
                let workers = (0..level.total() as usize)
                    .map(|i| {
                        Box::new(OncewardWorker::populating(
                            channels[i % channels.len()].clone(),
                            plan.clone(),
                        )) as Box<dyn Worker>
                    })
                    .collect();
                fill(workers).await?;
            }
            Target::DirectRedis => {
                let redis = connections.redis.clone().context("no Redis connection")?;
                let workers = (0..level.total())
                    .map(|_| {
                        Box::new(RedisPopulator(RedisWorker::new(
                            redis.clone(),
                            plan.clone(),
                        ))) as Box<dyn Worker>
                    })
                    .collect();
                fill(workers).await?;
            }
            Target::DirectPostgres => {
                let pool = connections.postgres.as_ref().context("no Postgres pool")?;
                baselines::populate_postgres(pool, &plan).await?;
            }
            Target::GrpcFloor => {}
        }
        self.completed.insert(target, plan.completed_prefix.clone());
        Ok(plan.completed_prefix.clone())
    }

    /// An open-loop run at half of `target`'s best closed-loop new-op throughput, at
    /// the concurrency that reached it (none if it was not measured).
    async fn half_peak(&mut self, target: Target) -> anyhow::Result<Option<HalfPeak>> {
        let Some(peak) = self
            .runs
            .iter()
            .filter(|r| r.target == target && r.workload == Workload::New)
            .max_by(|a, b| a.throughput.total_cmp(&b.throughput))
            .cloned()
        else {
            return Ok(None);
        };
        let level = Level {
            connections: peak.connections,
            in_flight: peak.in_flight,
        };
        let rate = (peak.throughput / 2.0).max(1.0);
        let connections = self.connect(level, &[target]).await?;
        let pacing = Pacing::Open { rate };
        tracing::info!(target = target.name(), %level, ?pacing, "measuring new at half of its peak");
        let slice = Slice {
            target,
            workload: Workload::New,
            completed_prefix: "",
            level,
            pacing,
        };
        let (warmup, duration) = (self.args.warmup, self.args.duration);
        let tally = self.drive(&slice, &connections, warmup, duration).await?;
        let run = Measurement::new(
            target,
            Workload::New,
            level,
            pacing,
            &tally,
            vec![tally.throughput()],
        );
        Ok(Some(HalfPeak {
            peak_throughput: peak.throughput,
            run,
        }))
    }
}

impl Connections {
    /// The gRPC connections of `target`: to --embedded-addr for the embedded sidecar,
    /// to --addr for the rest.
    fn grpc(&self, target: Target) -> &[Channel] {
        match target {
            Target::Embedded => &self.embedded,
            _ => &self.channels,
        }
    }
}

/// One HTTP/2 connection per client connection of `level`, to the sidecars at `addrs`
/// (given as `flag`) in turn: a fleet gets the connections round-robin.
async fn open_channels(flag: &str, addrs: &[String], level: Level) -> anyhow::Result<Vec<Channel>> {
    let endpoints = addrs
        .iter()
        .map(|addr| {
            Endpoint::from_shared(addr.clone()).with_context(|| format!("invalid {flag} {addr:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut channels = Vec::with_capacity(level.connections as usize);
    for at in 0..level.connections as usize {
        let (addr, endpoint) = (&addrs[at % addrs.len()], &endpoints[at % endpoints.len()]);
        // Each connect() opens a connection of its own.
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to the sidecar at {addr}"))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// What one slice of a round runs.
struct Slice<'a> {
    target: Target,
    workload: Workload,
    /// The keys a duplicate repeats (empty for `new` and the floor).
    completed_prefix: &'a str,
    level: Level,
    pacing: Pacing,
}

/// The order of the `count` pairs in round `round` (from 0): forwards, then
/// backwards, so that a drift during the run favours no pair over the others.
fn round_order(round: u32, count: usize) -> Vec<usize> {
    match round % 2 {
        0 => (0..count).collect(),
        _ => (0..count).rev().collect(),
    }
}

/// One worker per operation in flight, spread over the level's connections.
fn workers(
    target: Target,
    plan: &Arc<KeyPlan>,
    level: Level,
    connections: &Connections,
) -> anyhow::Result<Vec<Box<dyn Worker>>> {
    let count = level.total() as usize;
    let channels = connections.grpc(target);
    let channel = |i: usize| channels[i % channels.len()].clone();
    let workers = match target {
        Target::Onceward if plan.workload == Workload::Connect => {
            let client = ConnectWorker::client();
            let addrs = &connections.addr;
            (0..count)
                .map(|i| {
                    ConnectWorker::new(client.clone(), &addrs[i % addrs.len()], plan.clone())
                        .map(|worker| Box::new(worker) as Box<dyn Worker>)
                })
                .collect::<anyhow::Result<_>>()?
        }
        Target::Onceward | Target::Embedded => (0..count)
            .map(|i| Box::new(OncewardWorker::new(channel(i), plan.clone())) as Box<dyn Worker>)
            .collect(),
        Target::GrpcFloor => (0..count)
            .map(|i| Box::new(HealthWorker::new(channel(i))) as Box<dyn Worker>)
            .collect(),
        Target::DirectPostgres => {
            let pool = connections.postgres.clone().context("no Postgres pool")?;
            let slots = PostgresWorker::slots(&pool);
            (0..count)
                .map(|i| {
                    let slot = slots[i % slots.len()].clone();
                    Box::new(PostgresWorker::new(pool.clone(), slot, plan.clone()))
                        as Box<dyn Worker>
                })
                .collect()
        }
        Target::DirectRedis => {
            let redis = connections.redis.clone().context("no Redis connection")?;
            (0..count)
                .map(|_| Box::new(RedisWorker::new(redis.clone(), plan.clone())) as Box<dyn Worker>)
                .collect()
        }
    };
    Ok(workers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_alternate_forwards_and_backwards() {
        let orders: Vec<Vec<usize>> = (0..3).map(|r| round_order(r, 3)).collect();
        assert_eq!(orders, [vec![0, 1, 2], vec![2, 1, 0], vec![0, 1, 2]]);
    }
}
