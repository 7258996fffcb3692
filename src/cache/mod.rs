//! The hot tier: a cache in front of the ledger that answers most duplicates.
//!
//! It may lose any entry at any time and correctness must not change, so it only ever
//! says "no": a confirmed entry (one the ledger decided) may answer `COMPLETED`,
//! `IN_PROGRESS` or `FINGERPRINT_MISMATCH`; a tentative entry (written by a claim whose
//! ledger insert has not committed) may only answer `IN_PROGRESS` or defer to the
//! ledger. Every miss, error, timeout or open circuit falls through to the ledger.

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

/// A cache of ledger decisions, keyed by record.
#[async_trait]
pub trait HotTier: Send + Sync + 'static {
    /// Writes `tentative` with `ttl` if the key is absent (`SET NX PX GET`, one round
    /// trip). `None`: it was written. `Some(entry)`: the entry already there.
    async fn claim(
        &self,
        id: &RecordId,
        tentative: &CacheEntry,
        ttl: Duration,
    ) -> Result<Option<CacheEntry>, CacheError>;

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
