//! What a bench run reports: one row per measured run, the ratios the performance bars
//! are set on, the p99 at half of peak and the sidecar's peak RSS; as text tables for
//! people or as one JSON document for machines.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::args::{Level, Pacing, Target, Workload};
use super::driver::Tally;

/// new-op throughput, onceward ÷ direct-postgres: onceward must win by batching.
pub const NEW_VS_POSTGRES_BAR: f64 = 1.5;
/// duplicate throughput, onceward ÷ grpc-floor: the hot tier must cost little.
pub const DUPLICATE_VS_FLOOR_BAR: f64 = 0.6;
/// new-op throughput, embedded ÷ onceward on --addr (Postgres and Redis): the embedded
/// default must be no slower on one host.
pub const EMBEDDED_NEW_VS_ONCEWARD_BAR: f64 = 1.0;
/// Items per second of `ClaimBatch`+`CompleteBatch` over single Claim+Complete pairs
/// per second, at the same RPCs in flight.
pub const BATCH_VS_NEW_BAR: f64 = 4.0;
/// Duplicate throughput, Connect JSON ÷ gRPC, at the same concurrency.
pub const CONNECT_VS_GRPC_BAR: f64 = 0.5;
/// New-key claims under a budget ÷ without a policy, at the same level.
pub const BUDGET_VS_NEW_BAR: f64 = 0.8;

/// One measured run.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// What was measured.
    pub target: Target,
    /// The workload (grpc-floor answers a health check whatever the workload).
    pub workload: Workload,
    /// Client connections.
    pub connections: u32,
    /// Operations in flight per connection.
    pub in_flight: u32,
    /// Operations in flight in total.
    pub concurrency: u32,
    /// `closed` or `open`.
    pub mode: &'static str,
    /// The open loop's asked-for rate (operations per second).
    pub target_rate: Option<f64>,
    /// Operations that succeeded.
    pub ok: u64,
    /// Operations that failed.
    pub errors_total: u64,
    /// Failed operations by gRPC status code (or baseline error label).
    pub errors: BTreeMap<String, u64>,
    /// Seconds from the first start to the last finish.
    pub elapsed_s: f64,
    /// Successful operations per second.
    pub throughput: f64,
    /// Latency of successful operations, in microseconds.
    pub latency_us: Percentiles,
    /// Throughput of each round, in the order measured (`--rounds`).
    pub round_throughputs: Vec<f64>,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Slowest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Measurement {
    /// The measurement of `tally`, the rounds' tallies absorbed into one, whose
    /// throughputs were `round_throughputs`.
    pub fn new(
        target: Target,
        workload: Workload,
        level: Level,
        pacing: Pacing,
        tally: &Tally,
        round_throughputs: Vec<f64>,
    ) -> Self {
        let latency = &tally.latency;
        let (mode, target_rate) = match pacing {
            Pacing::Closed => ("closed", None),
            Pacing::Open { rate } => ("open", Some(rate)),
        };
        Self {
            target,
            workload,
            connections: level.connections,
            in_flight: level.in_flight,
            concurrency: level.total(),
            mode,
            target_rate,
            ok: tally.ok,
            errors_total: tally.error_count(),
            errors: tally.errors.clone(),
            elapsed_s: tally.elapsed.as_secs_f64(),
            throughput: tally.throughput(),
            latency_us: Percentiles {
                p50: latency.value_at_quantile(0.50),
                p90: latency.value_at_quantile(0.90),
                p99: latency.value_at_quantile(0.99),
                p999: latency.value_at_quantile(0.999),
                max: latency.max(),
                mean: latency.mean(),
            },
            round_throughputs,
        }
    }

    /// The workload column: grpc-floor does the same thing for every workload.
    pub fn workload_label(&self) -> &'static str {
        match self.target {
            Target::GrpcFloor => "health-check",
            _ => self.workload.name(),
        }
    }
}

/// The ratios at one concurrency level.
#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    /// Operations in flight in total.
    pub concurrency: u32,
    /// new-op throughput, onceward ÷ direct-postgres (bar: ≥ 1.5).
    pub new_vs_direct_postgres: Option<f64>,
    /// duplicate throughput, onceward ÷ grpc-floor (bar: ≥ 0.6).
    pub duplicate_vs_grpc_floor: Option<f64>,
    /// new-op throughput, onceward ÷ direct-redis (no bar: Redis alone is not durable).
    pub new_vs_direct_redis: Option<f64>,
    /// duplicate throughput, onceward ÷ direct-redis.
    pub duplicate_vs_direct_redis: Option<f64>,
    /// `new_vs_direct_postgres` of each round alone: how far the machine's drift
    /// moved it.
    pub new_vs_direct_postgres_by_round: Vec<f64>,
    /// `duplicate_vs_grpc_floor` of each round alone.
    pub duplicate_vs_grpc_floor_by_round: Vec<f64>,
    /// new-op throughput, embedded ÷ onceward at --addr (bar: ≥ 1.0).
    pub embedded_new_vs_onceward: Option<f64>,
    /// duplicate throughput, embedded ÷ grpc-floor (bar: ≥ 0.6).
    pub embedded_duplicate_vs_grpc_floor: Option<f64>,
    /// new-op throughput, embedded ÷ direct-postgres (no bar: not the same durability
    /// domain, a figure for scale).
    pub embedded_new_vs_direct_postgres: Option<f64>,
    /// `embedded_new_vs_onceward` of each round alone.
    pub embedded_new_vs_onceward_by_round: Vec<f64>,
    /// `embedded_duplicate_vs_grpc_floor` of each round alone.
    pub embedded_duplicate_vs_grpc_floor_by_round: Vec<f64>,
}

/// The p99 of an open-loop run at half of onceward's peak new-op throughput.
#[derive(Debug, Clone, Serialize)]
pub struct HalfPeak {
    /// The peak (closed loop) it is half of, in operations per second.
    pub peak_throughput: f64,
    /// The open-loop run.
    pub run: Measurement,
}

/// Peak memory of the sidecar process, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SidecarMemory {
    /// The process measured.
    pub pid: u32,
    /// `VmHWM`: the most resident memory it ever had, in KiB.
    pub peak_rss_kib: u64,
    /// `VmRSS` at the end, in KiB.
    pub rss_kib: u64,
}

/// Everything one `onceward bench` invocation measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The sidecar measured.
    pub addr: String,
    /// Seconds per measured run, all its rounds together.
    pub duration_s: f64,
    /// Seconds of unmeasured warm-up per run, all its rounds together.
    pub warmup_s: f64,
    /// Rounds each run is split into, every target of a level taking its turn in each.
    pub rounds: u32,
    /// Every measured run, in the order run.
    pub runs: Vec<Measurement>,
    /// Ratios per concurrency level (with --compare).
    pub ratios: Vec<Ratios>,
    /// Onceward's best new-op throughput at any level against direct-postgres's best
    /// at any level (with --compare): what each design does at most on this machine.
    pub peak_new_vs_direct_postgres: Option<PeakRatio>,
    /// The p99 at half of peak (with --compare).
    pub half_peak: Option<HalfPeak>,
    /// The embedded sidecar's p99 at half of its peak (with --compare and
    /// --embedded-addr).
    pub half_peak_embedded: Option<HalfPeak>,
    /// The sidecar's memory (with --sidecar-pid or --spawn-sidecar).
    pub sidecar: Option<SidecarMemory>,
    /// The embedded sidecar's memory (with --spawn-embedded).
    pub embedded_sidecar: Option<SidecarMemory>,
    /// Fresh keys per batch (with --workload batch).
    pub batch_items: Option<u32>,
    /// Whether Connect duplicates were measured against gRPC's (--workload connect).
    pub connect_compared: bool,
    /// Whether the budget workload ran next to `new` (no policy).
    pub budget_compared: bool,
}

/// Two targets' best closed-loop throughput for one workload, whatever the level.
#[derive(Debug, Clone, Serialize)]
pub struct PeakRatio {
    /// Onceward's best, in operations per second.
    pub onceward: f64,
    /// The concurrency it was reached at.
    pub onceward_concurrency: u32,
    /// The baseline's best, in operations per second.
    pub baseline: f64,
    /// The concurrency it was reached at.
    pub baseline_concurrency: u32,
    /// `onceward / baseline`.
    pub ratio: f64,
}

impl Report {
    /// The best closed-loop run of `target` for `workload`.
    fn peak(&self, target: Target, workload: Workload) -> Option<&Measurement> {
        self.runs
            .iter()
            .filter(|r| r.mode == "closed" && r.target == target && r.workload == workload)
            .max_by(|a, b| a.throughput.total_cmp(&b.throughput))
    }

    /// The ratios at every concurrency level that has the runs they divide, and of
    /// the peaks.
    pub fn compute_ratios(&mut self) {
        self.peak_new_vs_direct_postgres = self
            .peak(Target::Onceward, Workload::New)
            .zip(self.peak(Target::DirectPostgres, Workload::New))
            .filter(|(_, baseline)| baseline.throughput > 0.0)
            .map(|(onceward, baseline)| PeakRatio {
                onceward: onceward.throughput,
                onceward_concurrency: onceward.concurrency,
                baseline: baseline.throughput,
                baseline_concurrency: baseline.concurrency,
                ratio: onceward.throughput / baseline.throughput,
            });
        let mut levels: Vec<u32> = self.runs.iter().map(|r| r.concurrency).collect();
        levels.dedup();
        self.ratios = levels
            .into_iter()
            .map(|concurrency| {
                let run = |target: Target, workload: Option<Workload>| {
                    self.runs.iter().find(|r| {
                        r.concurrency == concurrency
                            && r.mode == "closed"
                            && r.target == target
                            && workload.is_none_or(|w| r.workload == w)
                    })
                };
                let ratio = |a: Option<&Measurement>, b: Option<&Measurement>| match (a, b) {
                    (Some(a), Some(b)) if b.throughput > 0.0 => Some(a.throughput / b.throughput),
                    _ => None,
                };
                let new = run(Target::Onceward, Some(Workload::New));
                let duplicate = run(Target::Onceward, Some(Workload::Duplicate));
                let direct_postgres = run(Target::DirectPostgres, Some(Workload::New));
                let floor = run(Target::GrpcFloor, None);
                let embedded_new = run(Target::Embedded, Some(Workload::New));
                let embedded_duplicate = run(Target::Embedded, Some(Workload::Duplicate));
                Ratios {
                    concurrency,
                    new_vs_direct_postgres: ratio(new, direct_postgres),
                    duplicate_vs_grpc_floor: ratio(duplicate, floor),
                    new_vs_direct_redis: ratio(new, run(Target::DirectRedis, Some(Workload::New))),
                    duplicate_vs_direct_redis: ratio(
                        duplicate,
                        run(Target::DirectRedis, Some(Workload::Duplicate)),
                    ),
                    new_vs_direct_postgres_by_round: by_round(new, direct_postgres),
                    duplicate_vs_grpc_floor_by_round: by_round(duplicate, floor),
                    embedded_new_vs_onceward: ratio(embedded_new, new),
                    embedded_duplicate_vs_grpc_floor: ratio(embedded_duplicate, floor),
                    embedded_new_vs_direct_postgres: ratio(embedded_new, direct_postgres),
                    embedded_new_vs_onceward_by_round: by_round(embedded_new, new),
                    embedded_duplicate_vs_grpc_floor_by_round: by_round(embedded_duplicate, floor),
                }
            })
            .filter(|r| {
                r.new_vs_direct_postgres.is_some()
                    || r.duplicate_vs_grpc_floor.is_some()
                    || r.new_vs_direct_redis.is_some()
                    || r.duplicate_vs_direct_redis.is_some()
                    || r.embedded_new_vs_onceward.is_some()
                    || r.embedded_duplicate_vs_grpc_floor.is_some()
            })
            .collect();
    }

    /// The report as aligned text tables.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "onceward bench against {}: {} s per run after {} s of warm-up, in {} rounds \
             that every target of a level takes in turn; latency in ms",
            self.addr, self.duration_s, self.warmup_s, self.rounds
        );
        let _ = writeln!(out);
        let header = [
            "target", "workload", "conc", "loop", "ok ops", "ops/s", "p50", "p90", "p99", "p99.9",
            "max", "errors",
        ];
        let mut rows = vec![header.map(str::to_owned).to_vec()];
        let half_peak = self.half_peak.iter().map(|h| &h.run);
        for run in self.runs.iter().chain(half_peak) {
            let mode = match run.target_rate {
                Some(rate) => format!("open {rate:.0}/s"),
                None => run.mode.to_owned(),
            };
            let errors = if run.errors.is_empty() {
                "0".to_owned()
            } else {
                run.errors
                    .iter()
                    .map(|(label, n)| format!("{label}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            rows.push(vec![
                run.target.name().to_owned(),
                run.workload_label().to_owned(),
                format!("{}×{}", run.connections, run.in_flight),
                mode,
                run.ok.to_string(),
                format!("{:.0}", run.throughput),
                millis(run.latency_us.p50),
                millis(run.latency_us.p90),
                millis(run.latency_us.p99),
                millis(run.latency_us.p999),
                millis(run.latency_us.max),
                errors,
            ]);
        }
        out.push_str(&table(&rows));

        if !self.ratios.is_empty() {
            let _ = writeln!(out);
            let mut rows = vec![
                [
                    "conc",
                    "new: onceward/direct-postgres (bar ≥ 1.5)",
                    "duplicate: onceward/grpc-floor (bar ≥ 0.6)",
                    "new: onceward/direct-redis",
                    "duplicate: onceward/direct-redis",
                ]
                .map(str::to_owned)
                .to_vec(),
            ];
            for r in &self.ratios {
                rows.push(vec![
                    r.concurrency.to_string(),
                    against_bar(r.new_vs_direct_postgres, NEW_VS_POSTGRES_BAR)
                        + &spread(&r.new_vs_direct_postgres_by_round),
                    against_bar(r.duplicate_vs_grpc_floor, DUPLICATE_VS_FLOOR_BAR)
                        + &spread(&r.duplicate_vs_grpc_floor_by_round),
                    ratio_text(r.new_vs_direct_redis),
                    ratio_text(r.duplicate_vs_direct_redis),
                ]);
            }
            out.push_str(&table(&rows));
        }
        self.embedded_ratios_text(&mut out);
        self.batch_text(&mut out);
        self.connect_text(&mut out);
        self.budget_text(&mut out);
        if let Some(peak) = &self.peak_new_vs_direct_postgres {
            let _ = writeln!(
                out,
                "\npeak new ops/s: onceward {:.0} (at {}), direct-postgres {:.0} (at {}): {}",
                peak.onceward,
                peak.onceward_concurrency,
                peak.baseline,
                peak.baseline_concurrency,
                against_bar(Some(peak.ratio), NEW_VS_POSTGRES_BAR),
            );
        }
        let half_peaks = [
            ("onceward", &self.half_peak),
            ("embedded", &self.half_peak_embedded),
        ];
        for (name, half) in half_peaks {
            let Some(half) = half else { continue };
            let _ = writeln!(
                out,
                "\n{name} p99 at 50 % of peak: peak {:.0} new ops/s (closed loop); open loop at \
                 {:.0}/s achieved {:.0}/s with p50 {} ms, p99 {} ms, p99.9 {} ms",
                half.peak_throughput,
                half.run.target_rate.unwrap_or_default(),
                half.run.throughput,
                millis(half.run.latency_us.p50),
                millis(half.run.latency_us.p99),
                millis(half.run.latency_us.p999),
            );
        }
        let sidecars = [
            ("sidecar", &self.sidecar),
            ("embedded sidecar", &self.embedded_sidecar),
        ];
        for (name, memory) in sidecars {
            let Some(memory) = memory else { continue };
            let _ = writeln!(
                out,
                "\n{name} pid {}: peak RSS (VmHWM) {:.1} MiB, RSS at the end {:.1} MiB",
                memory.pid,
                memory.peak_rss_kib as f64 / 1024.0,
                memory.rss_kib as f64 / 1024.0
            );
        }
        out
    }

    /// The embedded sidecar's ratios, per level, if it was measured.
    fn embedded_ratios_text(&self, out: &mut String) {
        let measured = |r: &&Ratios| {
            r.embedded_new_vs_onceward.is_some() || r.embedded_duplicate_vs_grpc_floor.is_some()
        };
        if !self.ratios.iter().any(|r| measured(&r)) {
            return;
        }
        let _ = writeln!(out);
        let mut rows = vec![
            [
                "conc",
                "new: embedded/onceward (bar ≥ 1.0)",
                "duplicate: embedded/grpc-floor (bar ≥ 0.6)",
                "new: embedded/direct-postgres",
            ]
            .map(str::to_owned)
            .to_vec(),
        ];
        for r in self.ratios.iter().filter(measured) {
            rows.push(vec![
                r.concurrency.to_string(),
                against_bar(r.embedded_new_vs_onceward, EMBEDDED_NEW_VS_ONCEWARD_BAR)
                    + &spread(&r.embedded_new_vs_onceward_by_round),
                against_bar(r.embedded_duplicate_vs_grpc_floor, DUPLICATE_VS_FLOOR_BAR)
                    + &spread(&r.embedded_duplicate_vs_grpc_floor_by_round),
                ratio_text(r.embedded_new_vs_direct_postgres),
            ]);
        }
        out.push_str(&table(&rows));
    }
}

/// The ratio of each round of `a` to the same round of `b` (none unless both ran).
fn by_round(a: Option<&Measurement>, b: Option<&Measurement>) -> Vec<f64> {
    let (Some(a), Some(b)) = (a, b) else {
        return Vec::new();
    };
    a.round_throughputs
        .iter()
        .zip(&b.round_throughputs)
        .filter(|&(_, &b)| b > 0.0)
        .map(|(a, b)| a / b)
        .collect()
}

/// ` (rounds 1.41–1.70)`: the range of a ratio over the rounds, if there were several.
fn spread(by_round: &[f64]) -> String {
    if by_round.len() < 2 {
        return String::new();
    }
    let low = by_round.iter().copied().fold(f64::INFINITY, f64::min);
    let high = by_round.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(" (rounds {low:.2}–{high:.2})")
}

fn millis(micros: u64) -> String {
    format!("{:.2}", micros as f64 / 1000.0)
}

fn ratio_text(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"))
}

pub(super) fn against_bar(ratio: Option<f64>, bar: f64) -> String {
    match ratio {
        Some(r) if r >= bar => format!("{r:.2} met"),
        Some(r) => format!("{r:.2} MISSED"),
        None => "-".to_owned(),
    }
}

/// Columns padded to their widest cell; numbers would read better right-aligned, but
/// one rule for every column keeps the code and the output simple.
pub(super) fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, &width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
            let _ = writeln!(out, "{}", rule.join("  "));
        }
    }
    out
}
