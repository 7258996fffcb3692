//! Exponential backoff with full jitter: the n-th retry sleeps a uniformly random time
//! in `[0, min(max, initial * 2^n)]`. Full jitter spreads callers that failed together
//! so they do not come back together (the "thundering herd" after an outage).

use std::time::Duration;

use rand::RngExt as _;

/// The ceiling of the `retry`-th retry's sleep (0-based).
pub(crate) fn ceiling(initial: Duration, max: Duration, retry: u32) -> Duration {
    let factor = 2u32.saturating_pow(retry.min(31));
    initial.saturating_mul(factor).min(max)
}

/// A uniformly random duration in `[0, ceiling]`.
pub(crate) fn full_jitter(ceiling: Duration) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_up_to_the_maximum() {
        let initial = Duration::from_millis(50);
        let max = Duration::from_secs(1);
        assert_eq!(ceiling(initial, max, 0), Duration::from_millis(50));
        assert_eq!(ceiling(initial, max, 2), Duration::from_millis(200));
        assert_eq!(ceiling(initial, max, 5), max);
        assert_eq!(ceiling(initial, max, 1000), max);
    }

    #[test]
    fn jitter_stays_within_the_ceiling() {
        let ceiling = Duration::from_millis(10);
        for _ in 0..100 {
            assert!(full_jitter(ceiling) <= ceiling);
        }
        assert_eq!(full_jitter(Duration::ZERO), Duration::ZERO);
    }
}
