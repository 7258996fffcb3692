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
//!
//! # Layout
//! - [`HotTier`], [`Cached`], [`CacheError`] (here): what every tier offers the engine.
//! - `entry.rs`: [`Entry`], what a tier keeps per key, in the engine's terms.
//! - `redis/`: [`RedisHotTier`], the shared tier (`mod.rs`), and `codec.rs`, the
//!   protobuf an [`Entry`] is stored as, private to it and readable by older sidecars;
//!   [`RedisClusterHotTier`] (`cluster.rs`, `shards.rs`), the same on a Redis Cluster.
//! - `memory.rs`: [`MemoryHotTier`], the in-process tier when no Redis is configured.
//! - `near.rs`: [`NearCache`], completed entries kept in memory in front of Redis.
//! - `breaker.rs`: [`CircuitBreaker`], so a dead Redis (or cluster shard) costs one
//!   timeout, not one per request.

mod breaker;
mod entry;
mod memory;
mod near;
mod redis;

pub use self::breaker::CircuitBreaker;
pub use self::entry::Entry;
pub use self::memory::{MemoryHotTier, MemoryOptions};
pub use self::near::NearCache;
pub use self::redis::{
    RedisClusterHotTier, RedisClusterOptions, RedisHotTier, RedisOptions, no_delay,
};

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
    Corrupt(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The key holds an entry of a kind this version does not know (written by a newer
    /// version sharing the tier): nothing was written over it, and it answers nothing.
    #[error("hot tier entry of an unknown kind")]
    UnknownKind,
}

/// An entry that stood in the hot tier, and how long the tier keeps it from now.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    /// The entry.
    pub entry: Entry,
    /// Its time left in the tier (a TTL derived from the ledger's clock, run down on
    /// this host's monotonic clock); never more than the ledger keeps what it says.
    pub ttl: Duration,
}

/// One write of a batch: the key, its entry and the entry's TTL.
#[derive(Debug, Clone, Copy)]
pub struct Write<'a> {
    /// The key.
    pub id: &'a RecordId,
    /// The entry to write.
    pub entry: &'a Entry,
    /// How long the tier keeps it.
    pub ttl: Duration,
}

impl CacheError {
    /// The same failure, for another key of the same batch.
    pub fn for_another_key(&self) -> Self {
        match self {
            CacheError::CircuitOpen => CacheError::CircuitOpen,
            CacheError::Timeout => CacheError::Timeout,
            CacheError::Command(error) => CacheError::Command(error.to_string().into()),
            CacheError::Corrupt(error) => CacheError::Corrupt(error.to_string().into()),
            CacheError::UnknownKind => CacheError::UnknownKind,
        }
    }
}

/// A cache of ledger decisions, keyed by record.
#[async_trait]
pub trait HotTier: Send + Sync + 'static {
    /// Writes `tentative` with `ttl` if the key is absent (`SET NX PX GET`, one round
    /// trip). `None`: it was written. `Some(cached)`: the entry already there, with its
    /// time left. [`CacheError::UnknownKind`]: an entry already there that this version
    /// cannot read.
    async fn claim(
        &self,
        id: &RecordId,
        tentative: &Entry,
        ttl: Duration,
    ) -> Result<Option<Cached>, CacheError>;

    /// Writes `entry` with `ttl`, whatever was there.
    async fn put(&self, id: &RecordId, entry: &Entry, ttl: Duration) -> Result<(), CacheError>;

    /// If the key still holds exactly `expected`, replaces it with `replacement`
    /// (or deletes it when `None`); otherwise leaves it alone.
    async fn replace(
        &self,
        id: &RecordId,
        expected: &Entry,
        replacement: Option<(&Entry, Duration)>,
    ) -> Result<(), CacheError>;

    /// Deletes the key.
    async fn remove(&self, id: &RecordId) -> Result<(), CacheError>;

    /// Drops this sidecar's own copy of the key (another sidecar forgot the record);
    /// a tier shared between sidecars keeps nothing of its own.
    fn evict_local(&self, id: &RecordId) {
        let _ = id;
    }

    /// Drops every copy this sidecar keeps of its own (it may have missed a forget).
    fn evict_all_local(&self) {}

    /// [`claim`](Self::claim) for several keys, each writing its tentative entry;
    /// one result per write, in order. A tier over the network does it in one round
    /// trip; the default, for a tier in memory, one key after another.
    async fn claim_many(&self, writes: &[Write<'_>]) -> Vec<Result<Option<Cached>, CacheError>> {
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            results.push(self.claim(write.id, write.entry, write.ttl).await);
        }
        results
    }

    /// [`put`](Self::put) for several keys (one round trip over the network).
    async fn put_many(&self, writes: &[Write<'_>]) -> Result<(), CacheError> {
        let mut outcome = Ok(());
        for write in writes {
            if let Err(error) = self.put(write.id, write.entry, write.ttl).await {
                outcome = Err(error);
            }
        }
        outcome
    }
}
