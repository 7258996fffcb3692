//! The in-process hot tier: the embedded default when no Redis is configured.
//!
//! A bounded [`moka`] cache whose entries each expire after their own TTL. It is only
//! shared by the tasks of one sidecar, so it never errors and never needs a breaker;
//! losing it (a restart, an eviction) only sends more claims to the ledger.
//!
//! Every write goes through moka's per-key `and_compute_with`, which serialises the
//! computations on one key. That is what makes `claim` a `SET NX GET` and `replace` a
//! compare-and-swap: a plain `insert` would not wait for a computation in flight, and
//! could land between its read and its write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::ops::compute::{CompResult, Op};
use moka::sync::Cache;

use super::{CacheError, Cached, Entry, HotTier};
use crate::domain::RecordId;

/// The shortest TTL an entry gets: like Redis's `PX`, a zero TTL rounds up rather than
/// writing an entry that is gone before anyone can read it.
const MIN_TTL: Duration = Duration::from_millis(1);

/// How to size the in-process hot tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryOptions {
    /// The most keys held at once; beyond it the least useful entries are evicted.
    pub max_entries: u64,
}

impl Default for MemoryOptions {
    /// 100 000 keys: a few tens of megabytes for typical responses.
    fn default() -> Self {
        Self {
            max_entries: 100_000,
        }
    }
}

/// One stored key: the entry itself (nothing encoded) behind an `Arc`, so reads do
/// not copy a large response inside the cache, the TTL it was written with, which
/// [`PerEntryTtl`] reads, and when that TTL runs out, which a read reports as the
/// entry's time left.
#[derive(Debug, Clone)]
struct Stored {
    entry: Arc<Entry>,
    ttl: Duration,
    until: Instant,
}

impl Stored {
    fn new(entry: &Entry, ttl: Duration) -> Self {
        let ttl = ttl.max(MIN_TTL);
        Self {
            entry: Arc::new(entry.clone()),
            ttl,
            until: Instant::now() + ttl,
        }
    }

    fn cached(&self) -> Cached {
        Cached {
            entry: self.entry.as_ref().clone(),
            ttl: self.until.saturating_duration_since(Instant::now()),
        }
    }
}

/// Expires each entry `ttl` after it was last written, whatever it replaced; reads
/// keep the default (they do not extend the entry's life).
struct PerEntryTtl;

impl moka::Expiry<RecordId, Stored> for PerEntryTtl {
    fn expire_after_create(&self, _: &RecordId, value: &Stored, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _: &RecordId,
        value: &Stored,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// The in-process hot tier.
#[derive(Clone)]
pub struct MemoryHotTier {
    cache: Cache<RecordId, Stored>,
}

impl std::fmt::Debug for MemoryHotTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryHotTier")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl MemoryHotTier {
    /// An empty cache holding at most `options.max_entries` keys.
    pub fn new(options: &MemoryOptions) -> Self {
        let cache = Cache::builder()
            .expire_after(PerEntryTtl)
            .max_capacity(options.max_entries)
            .build();
        Self { cache }
    }
}

#[async_trait]
impl HotTier for MemoryHotTier {
    async fn claim(
        &self,
        id: &RecordId,
        tentative: &Entry,
        ttl: Duration,
    ) -> Result<Option<Cached>, CacheError> {
        // moka hides expired entries from the computation, so "absent or expired"
        // is simply `None` here.
        let result = self
            .cache
            .entry_by_ref(id)
            .and_compute_with(|existing| match existing {
                Some(_) => Op::Nop,
                None => Op::Put(Stored::new(tentative, ttl)),
            });
        Ok(match result {
            CompResult::Unchanged(existing) => Some(existing.value().cached()),
            _ => None,
        })
    }

    async fn put(&self, id: &RecordId, entry: &Entry, ttl: Duration) -> Result<(), CacheError> {
        self.cache
            .entry_by_ref(id)
            .and_compute_with(|_| Op::Put(Stored::new(entry, ttl)));
        Ok(())
    }

    async fn replace(
        &self,
        id: &RecordId,
        expected: &Entry,
        replacement: Option<(&Entry, Duration)>,
    ) -> Result<(), CacheError> {
        self.cache
            .entry_by_ref(id)
            .and_compute_with(|existing| match existing {
                Some(current) if *current.value().entry == *expected => match replacement {
                    Some((entry, ttl)) => Op::Put(Stored::new(entry, ttl)),
                    None => Op::Remove,
                },
                _ => Op::Nop,
            });
        Ok(())
    }

    async fn remove(&self, id: &RecordId) -> Result<(), CacheError> {
        self.cache.entry_by_ref(id).and_compute_with(|_| Op::Remove);
        Ok(())
    }

    fn evict_local(&self, id: &RecordId) {
        self.cache.invalidate(id);
    }

    fn evict_all_local(&self) {
        self.cache.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Fingerprint, IdempotencyKey, Namespace};

    fn id(key: &str) -> RecordId {
        RecordId {
            namespace: Namespace::try_from("test".to_owned()).unwrap(),
            key: IdempotencyKey::try_from(key.to_owned()).unwrap(),
        }
    }

    fn tier() -> MemoryHotTier {
        MemoryHotTier::new(&MemoryOptions::default())
    }

    fn tentative(nonce: u64) -> Entry {
        Entry::tentative(Fingerprint::default(), nonce)
    }

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn claim_writes_only_when_the_key_is_absent_and_returns_what_stood() {
        let hot = tier();
        assert_eq!(
            hot.claim(&id("k"), &tentative(1), LONG)
                .await
                .unwrap()
                .map(|c| c.entry),
            None
        );
        assert_eq!(
            hot.claim(&id("k"), &tentative(2), LONG)
                .await
                .unwrap()
                .map(|c| c.entry),
            Some(tentative(1))
        );
        // The second claim did not overwrite the first.
        assert_eq!(
            hot.claim(&id("k"), &tentative(3), LONG)
                .await
                .unwrap()
                .map(|c| c.entry),
            Some(tentative(1))
        );
        assert_eq!(
            hot.claim(&id("other"), &tentative(4), LONG)
                .await
                .unwrap()
                .map(|c| c.entry),
            None
        );
    }

    #[tokio::test]
    async fn each_entry_expires_after_its_own_ttl() {
        let hot = tier();
        hot.claim(&id("short"), &tentative(1), Duration::from_millis(50))
            .await
            .unwrap();
        hot.claim(&id("long"), &tentative(2), LONG).await.unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(
            hot.claim(&id("short"), &tentative(3), LONG)
                .await
                .unwrap()
                .map(|c| c.entry),
            None,
            "an expired entry counts as absent"
        );
        assert_eq!(
            hot.claim(&id("long"), &tentative(4), LONG)
                .await
                .unwrap()
                .map(|c| c.entry),
            Some(tentative(2))
        );
    }

    #[tokio::test]
    async fn a_read_reports_the_time_the_entry_has_left() {
        let hot = tier();
        hot.claim(&id("k"), &tentative(1), Duration::from_secs(10))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let left = hot
            .claim(&id("k"), &tentative(2), LONG)
            .await
            .unwrap()
            .unwrap()
            .ttl;
        assert!(
            left < Duration::from_millis(9_960) && left > Duration::from_secs(5),
            "time left {left:?}"
        );
    }

    #[tokio::test]
    async fn put_overwrites_and_restarts_the_ttl() {
        let hot = tier();
        hot.claim(&id("k"), &tentative(1), LONG).await.unwrap();
        let done = Entry::completed(
            Fingerprint::default(),
            b"ok".to_vec(),
            chrono::Utc::now(),
            chrono::Utc::now(),
        );
        hot.put(&id("k"), &done, Duration::from_millis(50))
            .await
            .unwrap();
        let stood = hot
            .claim(&id("k"), &tentative(2), LONG)
            .await
            .unwrap()
            .unwrap();
        assert!(stood.entry.is_completed(), "{:?}", stood.entry);
        assert!(
            stood.ttl <= Duration::from_millis(50),
            "time left {:?}",
            stood.ttl
        );
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(
            hot.claim(&id("k"), &tentative(3), LONG)
                .await
                .unwrap()
                .map(|c| c.entry),
            None
        );
    }

    #[tokio::test]
    async fn replace_swaps_only_the_exact_expected_entry() {
        let hot = tier();
        let confirmed = Entry::in_progress(Fingerprint::default(), chrono::Utc::now());
        hot.claim(&id("k"), &tentative(1), LONG).await.unwrap();

        // Someone else's tentative entry (another nonce) is left alone.
        hot.replace(&id("k"), &tentative(2), Some((&confirmed, LONG)))
            .await
            .unwrap();
        assert_eq!(
            hot.claim(&id("k"), &tentative(9), LONG)
                .await
                .unwrap()
                .map(|c| c.entry),
            Some(tentative(1))
        );

        hot.replace(&id("k"), &tentative(1), Some((&confirmed, LONG)))
            .await
            .unwrap();
        assert_eq!(
            hot.claim(&id("k"), &tentative(9), LONG)
                .await
                .unwrap()
                .map(|c| c.entry),
            Some(confirmed.clone())
        );

        // Deleting on a match, and nothing to replace on a missing key.
        hot.replace(&id("k"), &confirmed, None).await.unwrap();
        hot.replace(&id("gone"), &confirmed, Some((&confirmed, LONG)))
            .await
            .unwrap();
        assert_eq!(
            hot.claim(&id("k"), &tentative(5), LONG)
                .await
                .unwrap()
                .map(|c| c.entry),
            None
        );
        assert_eq!(
            hot.claim(&id("gone"), &tentative(6), LONG)
                .await
                .unwrap()
                .map(|c| c.entry),
            None
        );
    }

    #[tokio::test]
    async fn remove_deletes_the_key() {
        let hot = tier();
        hot.claim(&id("k"), &tentative(1), LONG).await.unwrap();
        hot.remove(&id("k")).await.unwrap();
        hot.remove(&id("never-written")).await.unwrap();
        assert_eq!(
            hot.claim(&id("k"), &tentative(2), LONG)
                .await
                .unwrap()
                .map(|c| c.entry),
            None
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
    async fn concurrent_claims_on_one_key_write_exactly_once() {
        let hot = tier();
        let claims: Vec<_> = (0..64u64)
            .map(|nonce| {
                let hot = hot.clone();
                tokio::spawn(async move { hot.claim(&id("k"), &tentative(nonce), LONG).await })
            })
            .collect();
        let mut written = 0;
        let mut seen = Vec::new();
        for claim in claims {
            match claim.await.unwrap().unwrap() {
                None => written += 1,
                Some(cached) => seen.push(cached.entry),
            }
        }
        assert_eq!(written, 1);
        // Every loser saw the one winner's entry.
        assert_eq!(seen.len(), 63);
        assert!(seen.windows(2).all(|pair| pair[0] == pair[1]));
    }
}
