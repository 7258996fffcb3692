//! A near cache of completed records in front of a shared hot tier (Redis).
//!
//! Completed records are immutable until they expire, so a sidecar may keep them in
//! its own memory and answer a duplicate without a network round trip: the answer is
//! the one Redis or the ledger would give. Only completed entries are kept here —
//! claims in progress change (complete, release, takeover) and stay in the shared
//! tier, where every sidecar sees the change. An entry lives until its record's
//! `expires_at`, less a margin for clock skew between this host and the ledger, so a
//! key the retention job deletes is not replayed from here afterwards.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{CacheEntry, CacheError, EntryKind, HotTier, MemoryHotTier, MemoryOptions};
use crate::domain::RecordId;

/// How much earlier than its record a near entry expires: room for this host's clock
/// to run behind the ledger's.
const CLOCK_SKEW_MARGIN: Duration = Duration::from_secs(2);

/// A shared hot tier with a bounded in-process cache of completed entries in front.
pub struct NearCache {
    near: MemoryHotTier,
    shared: Arc<dyn HotTier>,
}

impl NearCache {
    /// Keeps up to `max_bytes` of completed entries in front of `shared`.
    pub fn new(shared: Arc<dyn HotTier>, max_bytes: u64) -> Self {
        Self {
            near: MemoryHotTier::new(&MemoryOptions {
                max_entries: 0,
                max_bytes: Some(max_bytes),
            }),
            shared,
        }
    }

    /// Keeps `entry` near if it is a completed record with a known expiry.
    async fn keep(&self, id: &RecordId, entry: &CacheEntry) {
        if entry.entry_kind() != EntryKind::Completed {
            return;
        }
        let Some(expires_at) = DateTime::from_timestamp_millis(entry.expires_at_ms) else {
            return;
        };
        let left = (expires_at - Utc::now())
            .to_std()
            .ok()
            .and_then(|left| left.checked_sub(CLOCK_SKEW_MARGIN));
        if let Some(ttl) = left.filter(|ttl| !ttl.is_zero()) {
            let _ = self.near.put(id, entry, ttl).await;
        }
    }
}

#[async_trait]
impl HotTier for NearCache {
    async fn claim(
        &self,
        id: &RecordId,
        tentative: &CacheEntry,
        ttl: Duration,
    ) -> Result<Option<CacheEntry>, CacheError> {
        if let Some(completed) = self.near.get(id) {
            return Ok(Some(completed.as_ref().clone()));
        }
        let existing = self.shared.claim(id, tentative, ttl).await?;
        if let Some(entry) = &existing {
            self.keep(id, entry).await;
        }
        Ok(existing)
    }

    async fn put(
        &self,
        id: &RecordId,
        entry: &CacheEntry,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        self.keep(id, entry).await;
        self.shared.put(id, entry, ttl).await
    }

    async fn replace(
        &self,
        id: &RecordId,
        expected: &CacheEntry,
        replacement: Option<(&CacheEntry, Duration)>,
    ) -> Result<(), CacheError> {
        if let Some((entry, _)) = replacement {
            self.keep(id, entry).await;
        }
        self.shared.replace(id, expected, replacement).await
    }

    async fn remove(&self, id: &RecordId) -> Result<(), CacheError> {
        let _ = self.near.remove(id).await;
        self.shared.remove(id).await
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
            _: &CacheEntry,
            _: Duration,
        ) -> Result<Option<CacheEntry>, CacheError> {
            Ok(None)
        }
        async fn put(&self, _: &RecordId, _: &CacheEntry, _: Duration) -> Result<(), CacheError> {
            Ok(())
        }
        async fn replace(
            &self,
            _: &RecordId,
            _: &CacheEntry,
            _: Option<(&CacheEntry, Duration)>,
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

    fn completed(expires_in: chrono::Duration) -> CacheEntry {
        let now = Utc::now();
        CacheEntry::completed(&Fingerprint::default(), b"done", now, now + expires_in)
    }

    #[tokio::test]
    async fn completed_entries_are_answered_near_and_nothing_else_is() {
        let cache = NearCache::new(Arc::new(Forgetful), 1 << 20);
        let tentative = CacheEntry::tentative(&Fingerprint::default(), 1);
        let hour = Duration::from_secs(3600);
        cache
            .put(&id("done"), &completed(chrono::Duration::hours(1)), hour)
            .await
            .unwrap();
        let in_progress = CacheEntry::in_progress(
            &Fingerprint::default(),
            Utc::now() + chrono::Duration::hours(1),
        );
        cache.put(&id("held"), &in_progress, hour).await.unwrap();

        let near = cache.claim(&id("done"), &tentative, hour).await.unwrap();
        assert_eq!(near.map(|e| e.response), Some(b"done".to_vec()));
        assert_eq!(
            cache.claim(&id("held"), &tentative, hour).await.unwrap(),
            None,
            "claims in progress stay shared"
        );

        cache.remove(&id("done")).await.unwrap();
        assert_eq!(
            cache.claim(&id("done"), &tentative, hour).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_record_about_to_expire_is_not_kept() {
        let cache = NearCache::new(Arc::new(Forgetful), 1 << 20);
        let tentative = CacheEntry::tentative(&Fingerprint::default(), 1);
        let soon = completed(chrono::Duration::milliseconds(500));
        cache
            .put(&id("soon"), &soon, Duration::from_millis(500))
            .await
            .unwrap();
        assert_eq!(
            cache
                .claim(&id("soon"), &tentative, Duration::from_secs(1))
                .await
                .unwrap(),
            None
        );
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
