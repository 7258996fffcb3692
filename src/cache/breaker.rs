//! A circuit breaker for the hot tier, so a dead Redis costs one timeout, not one per
//! request: the first failure opens the circuit for a cooldown, during which requests
//! skip the cache and go straight to the ledger; then a single probe decides whether
//! to close it again.
//!
//! Lock-free on purpose: `admit` runs on every request. A Redis Cluster has one breaker
//! per shard ([`CircuitBreaker::for_shard`]), so a dead shard sends only its own keys to
//! the ledger.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::metrics;

/// Closed, open until a deadline, or half-open with one probe in flight.
#[derive(Debug)]
pub struct CircuitBreaker {
    epoch: Instant,
    cooldown: Duration,
    /// Milliseconds since `epoch` until which the circuit stays open; 0 when closed.
    open_until_ms: AtomicU64,
    /// Whether the half-open probe has been handed out.
    probing: AtomicBool,
    /// The cluster shard this breaker guards (its slot range), as metrics label it;
    /// `None` for a single Redis.
    shard: Option<String>,
}

impl CircuitBreaker {
    /// A closed breaker that stays open for `cooldown` after a failure.
    pub fn new(cooldown: Duration) -> Self {
        Self::guarding(cooldown, None)
    }

    /// A closed breaker for one shard of a Redis Cluster (`shard` names its slot
    /// range, e.g. `0-5460`), reported in the circuit gauge's `shard` label.
    pub fn for_shard(cooldown: Duration, shard: String) -> Self {
        Self::guarding(cooldown, Some(shard))
    }

    fn guarding(cooldown: Duration, shard: Option<String>) -> Self {
        metrics::cache_circuit_open(shard.as_deref(), false);
        Self {
            epoch: Instant::now(),
            cooldown,
            open_until_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            shard,
        }
    }

    /// Whether a request may use the hot tier now.
    pub fn admit(&self) -> bool {
        let open_until = self.open_until_ms.load(Ordering::Acquire);
        if open_until == 0 {
            return true;
        }
        if self.now_ms() < open_until {
            return false;
        }
        // Cooldown over: exactly one caller becomes the probe.
        self.probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// A command succeeded: close the circuit — unless the cooldown is still running,
    /// in which case the command was sent before the failure that opened it and says
    /// nothing about the tier now; only the probe after the cooldown may close it.
    pub fn record_success(&self) {
        let open_until = self.open_until_ms.load(Ordering::Acquire);
        if open_until == 0 || self.now_ms() < open_until {
            return;
        }
        if self
            .open_until_ms
            .compare_exchange(open_until, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.probing.store(false, Ordering::Release);
            metrics::cache_circuit_open(self.shard.as_deref(), false);
            tracing::info!(
                shard = self.shard.as_deref(),
                "hot tier answered again; circuit closed"
            );
        }
    }

    /// A command failed or timed out (`cause`): open the circuit for the cooldown.
    pub fn record_failure(&self, cause: &dyn std::fmt::Display) {
        let until = self.now_ms() + self.cooldown.as_millis() as u64;
        let was = self.open_until_ms.swap(until.max(1), Ordering::AcqRel);
        self.probing.store(false, Ordering::Release);
        if was == 0 {
            metrics::cache_circuit_open(self.shard.as_deref(), true);
            tracing::warn!(
                shard = self.shard.as_deref(),
                cooldown = ?self.cooldown,
                error = %cause,
                "hot tier failing; circuit open, claims go to the ledger"
            );
        }
    }

    /// Whether the circuit is open (or half-open).
    #[cfg(test)]
    fn is_open(&self) -> bool {
        self.open_until_ms.load(Ordering::Acquire) != 0
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_opens_the_circuit_until_one_probe_after_the_cooldown() {
        let breaker = CircuitBreaker::new(Duration::from_millis(30));
        assert!(breaker.admit());
        breaker.record_failure(&"test failure");
        assert!(!breaker.admit(), "open right after a failure");
        std::thread::sleep(Duration::from_millis(40));
        assert!(
            breaker.admit(),
            "the first caller after the cooldown probes"
        );
        assert!(!breaker.admit(), "only one probe at a time");
        breaker.record_success();
        assert!(
            breaker.admit() && breaker.admit(),
            "closed after a good probe"
        );
    }

    #[test]
    fn a_late_success_from_before_the_failure_does_not_close_the_circuit() {
        let breaker = CircuitBreaker::new(Duration::from_secs(60));
        breaker.record_failure(&"test failure");
        breaker.record_success();
        assert!(breaker.is_open());
        assert!(!breaker.admit());
    }

    #[test]
    fn a_failed_probe_reopens_the_circuit() {
        let breaker = CircuitBreaker::new(Duration::from_millis(20));
        breaker.record_failure(&"test failure");
        std::thread::sleep(Duration::from_millis(30));
        assert!(breaker.admit());
        breaker.record_failure(&"test failure");
        assert!(!breaker.admit());
        assert!(breaker.is_open());
    }
}
