//! `--max-rate`: a token bucket that paces the relay's publishes, so a backlog left by a
//! broker outage drains at a steady rate instead of as one burst into consumers that
//! are only just back themselves.
//!
//! The bucket refills at `rate` tokens per second and holds at most a hundredth of a
//! second's worth (at least one): small enough that no one-second window sees more
//! than 1 % over the rate, large enough that the timer's millisecond granularity does
//! not slow the relay below it (a wake-up up to 10 ms late finds the tokens it missed).

use std::time::Duration;

use tokio::time::Instant;

/// The fraction of a second's tokens the bucket can hold.
const BURST_DIVISOR: u32 = 100;

/// A token bucket of publishes.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A bucket that allows `rate` publishes per second, starting with one token.
    pub fn new(rate: u32, now: Instant) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            rate,
            capacity: (rate / f64::from(BURST_DIVISOR)).max(1.0),
            tokens: 1.0,
            refilled_at: now,
        }
    }

    /// The most publishes that may go out back to back.
    pub fn capacity(&self) -> u32 {
        self.capacity as u32
    }

    /// Takes one token if there is one at `now`; otherwise says how long until there is.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    /// Waits for a token and takes it.
    pub async fn take(&mut self) {
        while let Err(wait) = self.try_take(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Publishes allowed in `window` by a bucket asked as often as it allows.
    fn allowed_in(bucket: &mut TokenBucket, start: Instant, window: Duration) -> u32 {
        let mut now = start;
        let mut allowed = 0;
        while now < start + window {
            match bucket.try_take(now) {
                Ok(()) => allowed += 1,
                Err(wait) => now += wait,
            }
        }
        allowed
    }

    #[test]
    fn a_second_allows_the_rate_and_at_most_the_burst_more() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1000, start);
        let allowed = allowed_in(&mut bucket, start, Duration::from_secs(1));
        assert!((1000..=1001).contains(&allowed), "allowed {allowed}");
    }

    #[test]
    fn an_idle_bucket_saves_up_only_its_capacity() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1000, start);
        let later = start + Duration::from_secs(60);
        let mut burst = 0;
        while bucket.try_take(later).is_ok() {
            burst += 1;
        }
        assert_eq!(burst, 10, "a hundredth of a second's worth");
        assert_eq!(bucket.capacity(), 10);
    }

    #[test]
    fn an_empty_bucket_says_how_long_until_the_next_token() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, start);
        assert_eq!(bucket.try_take(start), Ok(()));
        let wait = bucket.try_take(start).expect_err("empty");
        assert!(
            (Duration::from_millis(99)..=Duration::from_millis(101)).contains(&wait),
            "{wait:?}"
        );
        assert_eq!(bucket.try_take(start + wait), Ok(()));
    }

    #[test]
    fn a_slow_rate_still_allows_one_at_a_time() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1, start);
        assert_eq!(bucket.capacity(), 1);
        let allowed = allowed_in(&mut bucket, start, Duration::from_secs(10));
        assert!((10..=11).contains(&allowed), "allowed {allowed}");
    }
}
