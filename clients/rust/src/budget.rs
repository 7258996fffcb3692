//! The retry budget: a token bucket shared by every call of one client.
//!
//! Per-call attempt caps alone do not stop a retry storm: during an outage every
//! caller retries its full quota and the load on the recovering sidecar multiplies.
//! A budget caps retries at a fraction of the requests actually made (each request
//! deposits `retry_ratio` tokens, each retry withdraws one), plus a small time-based
//! allowance so a quiet client can still retry a blip. When the bucket is empty,
//! calls fail fast instead of retrying.

use std::sync::Mutex;
use std::time::Instant;

/// A token bucket of retries.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    ratio: f64,
    per_second: f64,
    max: f64,
    // A std Mutex: the critical section is a few float operations and never awaits.
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    refilled_at: Instant,
}

impl RetryBudget {
    /// A full bucket.
    pub(crate) fn new(ratio: f64, per_second: f64, max: f64) -> Self {
        Self {
            ratio,
            per_second,
            max,
            state: Mutex::new(State {
                tokens: max,
                refilled_at: Instant::now(),
            }),
        }
    }

    /// Records a first attempt, which earns `ratio` of a retry.
    pub(crate) fn deposit(&self) {
        let mut state = self.lock();
        self.refill(&mut state);
        state.tokens = (state.tokens + self.ratio).min(self.max);
    }

    /// Takes one retry out of the bucket; false if there is none left.
    pub(crate) fn withdraw(&self) -> bool {
        let mut state = self.lock();
        self.refill(&mut state);
        // Tolerance: ten deposits of 0.1 add up to 0.999… in floating point.
        if state.tokens >= 1.0 - 1e-9 {
            state.tokens = (state.tokens - 1.0).max(0.0);
            true
        } else {
            false
        }
    }

    fn refill(&self, state: &mut State) {
        let now = Instant::now();
        let elapsed = now.duration_since(state.refilled_at).as_secs_f64();
        state.tokens = (state.tokens + elapsed * self.per_second).min(self.max);
        state.refilled_at = now;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the bucket inconsistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_capped_at_the_ratio_of_requests_once_the_bucket_is_drained() {
        let budget = RetryBudget::new(0.1, 0.0, 2.0);
        assert!(budget.withdraw());
        assert!(budget.withdraw());
        assert!(!budget.withdraw(), "the bucket started with two");
        for _ in 0..10 {
            budget.deposit();
        }
        assert!(budget.withdraw(), "ten requests earn one retry");
        assert!(!budget.withdraw());
    }

    #[test]
    fn deposits_never_exceed_the_bucket_size() {
        let budget = RetryBudget::new(1.0, 0.0, 1.0);
        for _ in 0..100 {
            budget.deposit();
        }
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
    }
}
