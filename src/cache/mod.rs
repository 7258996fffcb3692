//! The hot tier: a cache in front of the ledger that answers most duplicates.
//!
//! It may lose any entry at any time and correctness must not change, so it only ever
//! says "no": a confirmed entry (one the ledger decided) may answer `COMPLETED`,
//! `IN_PROGRESS` or `FINGERPRINT_MISMATCH`; a tentative entry (written by a claim whose
//! ledger insert has not committed) may only answer `IN_PROGRESS` or defer to the
//! ledger. Every miss, error, timeout or open circuit falls through to the ledger.
//!
//! No entry outlives what the ledger said: every TTL an entry is written with is
//! derived from the ledger's clock (the `expires_at`/`lease_expires_at` it returned
//! and its `now()` at that moment), never from this host's wall clock, and what a
//! read reports as time left ([`Cached::ttl`]) is that TTL run down on this host's
//! monotonic clock. A sidecar whose wall clock is wrong therefore caches nothing for
//! longer than the ledger keeps it.

mod breaker;
mod entry;
mod memory;
mod near;
mod redis;

pub use self::breaker::CircuitBreaker;
pub use self::entry::{CacheEntry, EntryKind};
pub use self::memory::{MemoryHotTier, MemoryOptions};
pub use self::near::NearCache;
pub use self::redis::{RedisHotTier, RedisOptions, no_delay};

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::RecordId;

/// Why the hot tier did not answer. The engine treats every variant as a miss.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The circuit breaker is open: the tier was not even asked.
    #[error("hot tier circuit open")]
    CircuitOpen,
    /// The command did not answer within the configured timeout.
    #[error("hot tier timed out")]
    Timeout,
    /// The command failed.
    #[error("hot tier command failed")]
    Command(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored entry could not be decoded.
    #[error("hot tier entry undecodable")]
    Corrupt(#[source] prost::DecodeError),
}

/// An entry that stood in the hot tier, and how long the tier keeps it from now.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    /// The entry.
    pub entry: CacheEntry,
    /// Its time left in the tier (a TTL derived from the ledger's clock, run down on
    /// this host's monotonic clock); never more than the ledger keeps what it says.
    pub ttl: Duration,
}

/// A cache of ledger decisions, keyed by record.
#[async_trait]
pub trait HotTier: Send + Sync + 'static {
    /// Writes `tentative` with `ttl` if the key is absent (`SET NX PX GET`, one round
    /// trip). `None`: it was written. `Some(cached)`: the entry already there, with its
    /// time left.
    async fn claim(
        &self,
        id: &RecordId,
        tentative: &CacheEntry,
        ttl: Duration,
    ) -> Result<Option<Cached>, CacheError>;

    /// Writes `entry` with `ttl`, whatever was there.
    async fn put(&self, id: &RecordId, entry: &CacheEntry, ttl: Duration)
    -> Result<(), CacheError>;

    /// If the key still holds exactly `expected`, replaces it with `replacement`
    /// (or deletes it when `None`); otherwise leaves it alone.
    async fn replace(
        &self,
        id: &RecordId,
        expected: &CacheEntry,
        replacement: Option<(&CacheEntry, Duration)>,
    ) -> Result<(), CacheError>;

    /// Deletes the key.
    async fn remove(&self, id: &RecordId) -> Result<(), CacheError>;
}
