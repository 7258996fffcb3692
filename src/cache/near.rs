//! A near cache of completed records in front of a hot tier (Redis, or the in-process
//! tier).
//!
//! Completed records are immutable until they expire, so a sidecar may keep them in
//! its own memory and answer a duplicate without a network round trip: the answer is
//! the one Redis or the ledger would give. Only completed entries are kept here —
//! claims in progress change (complete, release, takeover) and stay in the shared
//! tier, where every sidecar sees the change. An entry lives here no longer than the
//! TTL the shared tier gave it — derived from the ledger's clock, run down on this
//! host's monotonic clock — so a key the retention job deletes is not replayed from
//! here afterwards, however wrong this host's wall clock is.
//!
//! Because what is kept never changes, the store needs no per-key serialisation,
//! only a bound: a plain [`quick_cache`] (S3-FIFO, weighed in bytes) whose entries
//! carry their own deadline, checked on every read. Every new operation writes one
//! entry here, so the store's cost is on the hot path: this one costs a fraction of
//! a general-purpose cache with timer wheels and per-key computations.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{CacheError, Cached, Entry, HotTier, Write};
use crate::domain::RecordId;

/// What every kept entry costs in memory besides its id, fingerprint and response:
/// its structs and allocations, the store's slot for it and its share of the store's
/// memory of recently evicted keys. Measured as the sidecar's RSS with the near cache
/// full and churning (4×64 new operations for 40 s: about 475 bytes per entry for the
/// bench's entries, an id of about 30 bytes, a 32-byte fingerprint and a 64-byte
/// response), so that the budget is what the process really grows by.
const ENTRY_OVERHEAD: u64 = 340;

/// What an entry like the bench's weighs: its ~135 bytes of id, fingerprint and
/// response, and the overhead.
const TYPICAL_WEIGHT: u64 = ENTRY_OVERHEAD + 135;

/// One kept record: the completed entry itself (nothing encoded), and when this host
/// stops answering from it.
#[derive(Clone)]
struct Kept {
    entry: Arc<Entry>,
    until: Instant,
}

/// Weighs a kept entry by roughly the bytes it takes in memory.
#[derive(Clone)]
struct MemoryWeight;

impl quick_cache::Weighter<RecordId, Kept> for MemoryWeight {
    fn weight(&self, id: &RecordId, kept: &Kept) -> u64 {
        let response = match kept.entry.as_ref() {
            Entry::Completed { response, .. } => response.len(),
            Entry::Tentative { .. } | Entry::InProgress { .. } => 0,
        };
        let data = id.namespace.as_str().len()
            + id.key.as_str().len()
            + response
            + kept.entry.fingerprint().as_bytes().len();
        data as u64 + ENTRY_OVERHEAD
    }
}

/// A shared hot tier with a bounded in-process cache of completed entries in front.
pub struct NearCache {
    near: quick_cache::sync::Cache<RecordId, Kept, MemoryWeight>,
    shared: Arc<dyn HotTier>,
}

impl NearCache {
    /// Keeps up to `max_bytes` of completed entries in front of `shared`.
    pub fn new(shared: Arc<dyn HotTier>, max_bytes: u64) -> Self {
        // The store sizes its memory of evicted keys by how many entries it expects;
        // the bound itself is in bytes.
        let expected = usize::try_from(max_bytes / TYPICAL_WEIGHT).unwrap_or(usize::MAX);
        Self {
            near: quick_cache::sync::Cache::with_weighter(expected.max(1), max_bytes, MemoryWeight),
            shared,
        }
    }

    /// The kept entry for `id`, if it is still good to answer from.
    fn kept(&self, id: &RecordId) -> Option<Cached> {
        let kept = self.near.get(id)?;
        let now = Instant::now();
        if kept.until <= now {
            // Only if it is still the expired one: another task may have kept a
            // fresh copy meanwhile.
            self.near.remove_if(id, |kept| kept.until <= now);
            return None;
        }
        Some(Cached {
            entry: kept.entry.as_ref().clone(),
            ttl: kept.until - now,
        })
    }

    /// Keeps `entry` near for `ttl` (what the shared tier keeps it for) if it is a
    /// completed record.
    fn keep(&self, id: &RecordId, entry: &Entry, ttl: Duration) {
        if !entry.is_completed() || ttl.is_zero() {
            return;
        }
        let kept = Kept {
            entry: Arc::new(entry.clone()),
            until: Instant::now() + ttl,
        };
        self.near.insert(id.clone(), kept);
    }
}

#[async_trait]
impl HotTier for NearCache {
    async fn claim(
        &self,
        id: &RecordId,
        tentative: &Entry,
        ttl: Duration,
    ) -> Result<Option<Cached>, CacheError> {
        if let Some(completed) = self.kept(id) {
            return Ok(Some(completed));
        }
        let existing = self.shared.claim(id, tentative, ttl).await?;
        if let Some(cached) = &existing {
            self.keep(id, &cached.entry, cached.ttl);
        }
        Ok(existing)
    }

    async fn put(&self, id: &RecordId, entry: &Entry, ttl: Duration) -> Result<(), CacheError> {
        self.keep(id, entry, ttl);
        self.shared.put(id, entry, ttl).await
    }

    async fn replace(
        &self,
        id: &RecordId,
        expected: &Entry,
        replacement: Option<(&Entry, Duration)>,
    ) -> Result<(), CacheError> {
        if let Some((entry, ttl)) = replacement {
            self.keep(id, entry, ttl);
        }
        self.shared.replace(id, expected, replacement).await
    }

    async fn remove(&self, id: &RecordId) -> Result<(), CacheError> {
        self.near.remove(id);
        self.shared.remove(id).await
    }

    /// Drops the near copy, and whatever copy the tier behind keeps of its own (the
    /// in-process tier does; Redis keeps none).
    fn evict_local(&self, id: &RecordId) {
        self.near.remove(id);
        self.shared.evict_local(id);
    }

    fn evict_all_local(&self) {
        self.near.clear();
        self.shared.evict_all_local();
    }

    async fn claim_many(&self, writes: &[Write<'_>]) -> Vec<Result<Option<Cached>, CacheError>> {
        let mut results: Vec<Option<Result<Option<Cached>, CacheError>>> = writes
            .iter()
            .map(|write| self.kept(write.id).map(|completed| Ok(Some(completed))))
            .collect();
        let asked: Vec<Write<'_>> = writes
            .iter()
            .zip(&results)
            .filter(|(_, near)| near.is_none())
            .map(|(write, _)| *write)
            .collect();
        let mut answers = self.shared.claim_many(&asked).await.into_iter();
        for (write, result) in writes.iter().zip(results.iter_mut()) {
            if result.is_some() {
                continue;
            }
            let answer = answers.next().unwrap_or(Err(CacheError::UnknownKind));
            if let Ok(Some(cached)) = &answer {
                self.keep(write.id, &cached.entry, cached.ttl);
            }
            *result = Some(answer);
        }
        results.into_iter().flatten().collect()
    }

    async fn put_many(&self, writes: &[Write<'_>]) -> Result<(), CacheError> {
        for write in writes {
            self.keep(write.id, write.entry, write.ttl);
        }
        self.shared.put_many(writes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Fingerprint, IdempotencyKey, Namespace};

    /// A shared tier that has lost everything and answers nothing: what is left is
    /// what the near cache kept.
    struct Forgetful;

    #[async_trait]
    impl HotTier for Forgetful {
        async fn claim(
            &self,
            _: &RecordId,
            _: &Entry,
            _: Duration,
        ) -> Result<Option<Cached>, CacheError> {
            Ok(None)
        }
        async fn put(&self, _: &RecordId, _: &Entry, _: Duration) -> Result<(), CacheError> {
            Ok(())
        }
        async fn replace(
            &self,
            _: &RecordId,
            _: &Entry,
            _: Option<(&Entry, Duration)>,
        ) -> Result<(), CacheError> {
            Ok(())
        }
        async fn remove(&self, _: &RecordId) -> Result<(), CacheError> {
            Ok(())
        }
    }

    fn id(key: &str) -> RecordId {
        RecordId {
            namespace: Namespace::try_from("test".to_owned()).unwrap(),
            key: IdempotencyKey::try_from(key.to_owned()).unwrap(),
        }
    }

    fn completed(expires_in: chrono::Duration) -> Entry {
        let now = chrono::Utc::now();
        let response = b"done".to_vec();
        Entry::completed(Fingerprint::default(), response, now, now + expires_in)
    }

    /// What a claim on `id` finds near.
    async fn near_entry(cache: &NearCache, id: &RecordId) -> Option<Entry> {
        let tentative = Entry::tentative(Fingerprint::default(), 1);
        let hour = Duration::from_secs(3600);
        let found = cache.claim(id, &tentative, hour).await.unwrap();
        found.map(|cached| cached.entry)
    }

    #[tokio::test]
    async fn completed_entries_are_answered_near_and_nothing_else_is() {
        let cache = NearCache::new(Arc::new(Forgetful), 1 << 20);
        let hour = Duration::from_secs(3600);
        let done = completed(chrono::Duration::hours(1));
        cache.put(&id("done"), &done, hour).await.unwrap();
        let in_progress = Entry::in_progress(
            Fingerprint::default(),
            chrono::Utc::now() + chrono::Duration::hours(1),
        );
        cache.put(&id("held"), &in_progress, hour).await.unwrap();

        assert_eq!(near_entry(&cache, &id("done")).await, Some(done));
        assert_eq!(
            near_entry(&cache, &id("held")).await,
            None,
            "claims in progress stay shared"
        );

        cache.remove(&id("done")).await.unwrap();
        assert_eq!(near_entry(&cache, &id("done")).await, None);
    }

    #[tokio::test]
    async fn a_kept_record_lives_its_ttl_whatever_its_expiry_says_on_this_clock() {
        let cache = NearCache::new(Arc::new(Forgetful), 1 << 20);
        // Written by a sidecar whose clock runs an hour behind the ledger's, or read
        // on one: the record's expires_at says an hour more than the ledger keeps it.
        // The TTL, derived from the ledger's clock, is what counts.
        let skewed = completed(chrono::Duration::hours(1));
        cache
            .put(&id("brief"), &skewed, Duration::from_millis(300))
            .await
            .unwrap();
        assert!(near_entry(&cache, &id("brief")).await.is_some());

        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(near_entry(&cache, &id("brief")).await, None);
    }

    /// The process's resident memory, in bytes (each test runs in its own process
    /// under nextest, the README's test command).
    fn resident_bytes() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib * 1024
    }

    #[tokio::test]
    async fn the_near_cache_stays_near_its_byte_budget() {
        const BUDGET: u64 = 8 << 20;
        let cache = NearCache::new(Arc::new(Forgetful), BUDGET);
        let entry = completed(chrono::Duration::hours(1));
        let hour = Duration::from_secs(3600);
        let before = resident_bytes();
        // Small entries, as most are: a uuid-sized key, a 4-byte response.
        for n in 0..200_000u32 {
            let key = format!("{n:08x}-0000-4000-8000-000000000000");
            cache.put(&id(&key), &entry, hour).await.unwrap();
        }
        let grown = resident_bytes().saturating_sub(before);
        assert!(
            grown < BUDGET * 3 / 2,
            "{} MiB resident for a {} MiB near cache",
            grown >> 20,
            BUDGET >> 20
        );
    }
}
