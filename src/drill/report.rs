//! What a key-loss drill measured, as a table a person reads in a post-mortem or as
//! JSON for CI.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{KeyLossArgs, Loss};
use crate::proto::{ClaimResponse, Outcome, Tier};

/// A line of the text report: its name, and its value for a phase.
type Row = (&'static str, fn(&Phase) -> String);

/// The answers of one phase of duplicates.
#[derive(Debug, Default, Serialize)]
pub struct Phase {
    /// Claims sent.
    pub claims: u64,
    /// Answered ACQUIRED: a duplicate let through. Must be 0.
    pub acquired: u64,
    /// COMPLETED with the stored bytes, exactly.
    pub replayed: u64,
    /// COMPLETED with other bytes, or for a key that was never completed. Must be 0.
    pub wrong_replays: u64,
    /// IN_PROGRESS for a held key.
    pub in_progress: u64,
    /// Any other answer (a mismatch, IN_PROGRESS for a completed key).
    pub other: u64,
    /// Calls that failed (a status, not an answer), by gRPC code.
    pub errors: u64,
    /// Answers by the tier that decided them.
    pub served_by_cache: u64,
    /// Answers the ledger decided.
    pub served_by_ledger: u64,
    /// Latency of the answered calls, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// How long the whole phase took, in milliseconds.
    pub elapsed_ms: f64,
}

impl Phase {
    pub(super) fn new(elapsed: Duration) -> Self {
        Self {
            elapsed_ms: elapsed.as_secs_f64() * 1e3,
            ..Self::default()
        }
    }

    /// One duplicate's answer, for a key that stored `completed` (`None`: held).
    pub(super) fn record(
        &mut self,
        completed: Option<&[u8]>,
        answer: Result<ClaimResponse, tonic::Status>,
    ) {
        self.claims += 1;
        let Ok(answer) = answer else {
            self.errors += 1;
            return;
        };
        match Tier::try_from(answer.served_by) {
            Ok(Tier::Cache) => self.served_by_cache += 1,
            Ok(Tier::Ledger) => self.served_by_ledger += 1,
            _ => {}
        }
        match (Outcome::try_from(answer.outcome), completed) {
            (Ok(Outcome::Acquired), _) => self.acquired += 1,
            (Ok(Outcome::Completed), Some(stored)) if answer.response == stored => {
                self.replayed += 1
            }
            (Ok(Outcome::Completed), _) => self.wrong_replays += 1,
            (Ok(Outcome::InProgress), None) => self.in_progress += 1,
            _ => self.other += 1,
        }
    }

    pub(super) fn latency(&mut self, histogram: &Histogram<u64>) {
        self.p50_ms = histogram.value_at_quantile(0.5) as f64 / 1e3;
        self.p99_ms = histogram.value_at_quantile(0.99) as f64 / 1e3;
    }
}

/// The whole drill.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The drill's namespace (random per run).
    pub namespace: String,
    /// The sidecars.
    pub sidecars: Vec<String>,
    /// Keys: half completed, half held.
    pub keys: u32,
    /// Duplicates per key during the loss.
    pub concurrency: u32,
    /// How Redis lost the keys.
    pub loss: String,
    /// The drill's keys Redis held before the loss.
    pub redis_keys_before: usize,
    /// How many it lost.
    pub redis_keys_lost: usize,
    /// One duplicate per key, before the loss.
    pub before: Phase,
    /// `concurrency` duplicates per key, after the loss.
    pub during: Phase,
    /// The drill's keys back in Redis when the watcher stopped.
    pub redis_keys_after: usize,
    /// How long after the loss Redis held as many of the drill's keys as before
    /// (`None`: not by the end of the storm).
    pub refilled_after_ms: Option<f64>,
    #[serde(skip)]
    pub(super) refilled_after: Option<Duration>,
    /// Records of the drill still in the ledger after its cleanup. Must be 0.
    pub left_in_ledger: usize,
    /// Keys of the drill still in Redis after its cleanup. Must be 0.
    pub left_in_redis: usize,
    /// Keys the cleanup could not forget, and why.
    pub cleanup_errors: Vec<String>,
    /// Whether the drill passed.
    pub passed: bool,
}

impl Report {
    pub(super) fn new(namespace: &str, args: &KeyLossArgs) -> Self {
        Self {
            namespace: namespace.to_owned(),
            sidecars: args.addr.clone(),
            keys: args.keys,
            concurrency: args.concurrency,
            loss: match args.loss {
                Loss::FlushKeys => "flush-keys".to_owned(),
                Loss::Expire => "expire".to_owned(),
                Loss::EvictFraction(fraction) => format!("evict-fraction={fraction}"),
                Loss::RedisDown => format!("redis-down for {:?}", args.pause),
            },
            redis_keys_before: 0,
            redis_keys_lost: 0,
            redis_keys_after: 0,
            before: Phase::default(),
            during: Phase::default(),
            refilled_after_ms: None,
            refilled_after: None,
            left_in_ledger: 0,
            left_in_redis: 0,
            cleanup_errors: Vec::new(),
            passed: false,
        }
    }

    /// No duplicate let through, every replay exact, every call answered, nothing left.
    pub fn passed(&self) -> bool {
        [&self.before, &self.during]
            .iter()
            .all(|phase| phase.acquired == 0 && phase.wrong_replays == 0 && phase.errors == 0)
            && self.left_in_ledger == 0
            && self.left_in_redis == 0
            && self.cleanup_errors.is_empty()
    }

    /// Fills in what is derived from the rest, once the drill is over.
    pub(super) fn finish(&mut self) {
        self.refilled_after_ms = self.refilled_after.map(|after| after.as_secs_f64() * 1e3);
        self.passed = self.passed();
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let (passed, refilled) = (self.passed(), self.refilled_after_ms);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "key-loss drill in namespace {} on {} sidecar(s): {} keys (half completed, half held), loss {}",
            self.namespace,
            self.sidecars.len(),
            self.keys,
            self.loss
        );
        let _ = writeln!(
            out,
            "Redis lost {} of the drill's {} keys",
            self.redis_keys_lost, self.redis_keys_before
        );
        let _ = writeln!(
            out,
            "\n{:<24}{:>16}{:>16}",
            "", "before loss", "during loss"
        );
        let rows: [Row; 11] = [
            ("duplicate claims", |p| p.claims.to_string()),
            ("ACQUIRED (must be 0)", |p| p.acquired.to_string()),
            ("exact replays", |p| p.replayed.to_string()),
            ("wrong replays", |p| p.wrong_replays.to_string()),
            ("IN_PROGRESS (held)", |p| p.in_progress.to_string()),
            ("other answers", |p| p.other.to_string()),
            ("failed calls", |p| p.errors.to_string()),
            ("served by cache", |p| p.served_by_cache.to_string()),
            ("served by ledger", |p| p.served_by_ledger.to_string()),
            ("latency p50 / p99 ms", |p| {
                format!("{:.2} / {:.2}", p.p50_ms, p.p99_ms)
            }),
            ("phase took ms", |p| format!("{:.0}", p.elapsed_ms)),
        ];
        for (name, value) in rows {
            let _ = writeln!(
                out,
                "{name:<24}{:>16}{:>16}",
                value(&self.before),
                value(&self.during)
            );
        }
        let _ = writeln!(
            out,
            "\ncache refilled: {}",
            match refilled {
                Some(ms) => format!(
                    "all {} of the drill's keys back in Redis {ms:.0} ms after the loss",
                    self.redis_keys_before
                ),
                None => format!(
                    "not yet: {} of {} keys back in Redis after the duplicates",
                    self.redis_keys_after, self.redis_keys_before
                ),
            }
        );
        let _ = writeln!(
            out,
            "left behind: {} in the ledger, {} in Redis{}",
            self.left_in_ledger,
            self.left_in_redis,
            if self.cleanup_errors.is_empty() {
                String::new()
            } else {
                format!(
                    "; cleanup failed for {} key(s), e.g. {}",
                    self.cleanup_errors.len(),
                    self.cleanup_errors[0]
                )
            }
        );
        let _ = writeln!(out, "{}", if passed { "PASSED" } else { "FAILED" });
        out
    }
}
