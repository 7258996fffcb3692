//! The load loop, the same for every target: `connections × in_flight` workers, each
//! running one operation at a time, closed loop or open loop, every latency recorded
//! in an HDR histogram and every failure counted by its label.
//!
//! The open loop follows the timetable, not the server: operation `i` is due at
//! `start + i / rate`, and its latency is measured from that due time. A server that
//! stalls therefore shows up in the latency of every operation that was due during
//! the stall, instead of quietly lowering the rate at which the client asks
//! ("coordinated omission").

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use hdrhistogram::Histogram;
use tokio::time::Instant;

use super::args::Pacing;

/// Highest latency the histogram tracks; slower operations are recorded as this.
const MAX_LATENCY_MICROS: u64 = 60_000_000;
/// tokio's timer has millisecond resolution and rounds sleeps up, so an open-loop
/// worker wakes up to this much early and starts on time rather than up to 1 ms late.
const TIMER_SLACK: Duration = Duration::from_millis(1);

/// One client of the system under test. Each worker runs one operation at a time.
#[async_trait]
pub trait Worker: Send {
    /// Runs operation number `seq` (unique within a run); an error is a short label
    /// such as a gRPC status code name.
    async fn call(&mut self, seq: u64) -> Result<(), String>;
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Latency of successful operations, in microseconds.
    pub latency: Histogram<u64>,
    /// Operations that succeeded.
    pub ok: u64,
    /// Failed operations by label.
    pub errors: BTreeMap<String, u64>,
    /// From the first start to the last finish.
    pub elapsed: Duration,
}

impl Default for Tally {
    /// Nothing measured yet.
    fn default() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3)
                .expect("valid histogram bounds"),
            ok: 0,
            errors: BTreeMap::new(),
            elapsed: Duration::ZERO,
        }
    }
}

impl Tally {
    fn record(&mut self, latency: Duration, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.ok += 1;
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                self.latency.saturating_record(micros.max(1));
            }
            Err(label) => *self.errors.entry(label).or_default() += 1,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.latency
            .add(&other.latency)
            .expect("histograms with the same bounds merge");
        for (label, count) in other.errors {
            *self.errors.entry(label).or_default() += count;
        }
    }

    /// Adds a later run to this one: its operations, latencies, errors and measured
    /// time, so the throughput is that of both runs together.
    pub fn absorb(&mut self, later: Tally) {
        self.elapsed += later.elapsed;
        self.merge(later);
    }

    /// Failed operations in total.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Successful operations per second.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Runs `workers` for `duration`, paced by `pacing`, and merges what they measured.
pub async fn drive(workers: Vec<Box<dyn Worker>>, duration: Duration, pacing: Pacing) -> Tally {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|worker| {
            let next = next.clone();
            tokio::spawn(async move {
                match pacing {
                    Pacing::Closed => closed_loop(worker, &next, deadline).await,
                    Pacing::Open { rate } => open_loop(worker, &next, start, deadline, rate).await,
                }
            })
        })
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        // A worker panics only on a bug in the bench itself: let it surface.
        total.merge(task.await.expect("a bench worker panicked"));
    }
    total.elapsed = start.elapsed();
    total
}

async fn closed_loop(mut worker: Box<dyn Worker>, next: &AtomicU64, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let seq = next.fetch_add(1, Ordering::Relaxed);
        let began = Instant::now();
        let result = worker.call(seq).await;
        tally.record(began.elapsed(), result);
    }
    tally
}

async fn open_loop(
    mut worker: Box<dyn Worker>,
    next: &AtomicU64,
    start: Instant,
    deadline: Instant,
    rate: f64,
) -> Tally {
    let mut tally = Tally::default();
    loop {
        // Whichever worker is free takes the next slot of the timetable, so a slow
        // operation delays the slots only once every worker is busy, and then the
        // delay is charged to them.
        let seq = next.fetch_add(1, Ordering::Relaxed);
        let due = start + Duration::from_secs_f64(seq as f64 / rate);
        if due >= deadline {
            return tally;
        }
        if due > Instant::now() + TIMER_SLACK {
            tokio::time::sleep_until(due - TIMER_SLACK).await;
        }
        let began = Instant::now();
        let result = worker.call(seq).await;
        // Late: measured from the due time. Early (timer slack): from the real start.
        tally.record(began.min(due).elapsed(), result);
    }
}

/// Runs operations `0..count` across `workers` once each, e.g. to complete the keys
/// the duplicate workload will repeat; fails on the first error.
pub async fn run_each(workers: Vec<Box<dyn Worker>>, count: u64) -> Result<(), String> {
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut worker| {
            let next = next.clone();
            tokio::spawn(async move {
                loop {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    if seq >= count {
                        return Ok::<(), String>(());
                    }
                    worker.call(seq).await?;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a bench worker panicked")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers after a fixed delay; every `fail_every`-th call fails.
    struct Sleeper {
        delay: Duration,
        fail_every: u64,
    }

    #[async_trait]
    impl Worker for Sleeper {
        async fn call(&mut self, seq: u64) -> Result<(), String> {
            tokio::time::sleep(self.delay).await;
            if seq % self.fail_every == self.fail_every - 1 {
                Err("UNAVAILABLE".into())
            } else {
                Ok(())
            }
        }
    }

    fn sleepers(n: usize, delay: Duration) -> Vec<Box<dyn Worker>> {
        (0..n)
            .map(|_| {
                Box::new(Sleeper {
                    delay,
                    fail_every: 10,
                }) as Box<dyn Worker>
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_loop_counts_successes_and_failures_by_label() {
        let tally = drive(
            sleepers(4, Duration::from_millis(10)),
            Duration::from_secs(1),
            Pacing::Closed,
        )
        .await;
        let total = tally.ok + tally.error_count();
        assert_eq!(total, 400, "4 workers × 100 calls of 10 ms");
        assert_eq!(tally.errors["UNAVAILABLE"], 40);
        assert_eq!(tally.latency.len(), tally.ok);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_loop_charges_a_slow_server_for_the_queue_it_causes() {
        // 2 workers, 100 ms per call, asked for 40 per second: the server manages 20,
        // so operations queue up, and their latency grows far past 100 ms.
        let tally = drive(
            sleepers(2, Duration::from_millis(100)),
            Duration::from_secs(2),
            Pacing::Open { rate: 40.0 },
        )
        .await;
        assert_eq!(
            tally.ok + tally.error_count(),
            80,
            "every due operation ran"
        );
        assert!(
            tally.latency.value_at_quantile(0.99) > 900_000,
            "p99 {} µs hides the queue",
            tally.latency.value_at_quantile(0.99)
        );
        assert!(tally.elapsed > Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn absorbed_rounds_add_up_their_operations_and_their_time() {
        let mut total = Tally::default();
        for delay in [10, 20] {
            let round = drive(
                sleepers(2, Duration::from_millis(delay)),
                Duration::from_secs(1),
                Pacing::Closed,
            )
            .await;
            total.absorb(round);
        }
        // 200 + 100 operations over 2 s, not over the last round's 1 s.
        assert_eq!(total.ok + total.error_count(), 300);
        assert_eq!(total.elapsed, Duration::from_secs(2));
        assert_eq!(total.throughput(), total.ok as f64 / 2.0);
        assert_eq!(total.errors["UNAVAILABLE"], 30);
    }

    #[tokio::test]
    async fn run_each_runs_every_operation_once_and_stops_at_the_first_error() {
        let done = run_each(sleepers(3, Duration::ZERO), 9).await;
        assert_eq!(done, Ok(()));
        let failed = run_each(sleepers(3, Duration::ZERO), 100).await;
        assert_eq!(failed, Err("UNAVAILABLE".to_owned()));
    }
}
