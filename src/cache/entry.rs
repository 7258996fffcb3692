//! What the hot tier stores per key: a small protobuf message, so the format can grow
//! fields without breaking sidecars of an older version sharing the same Redis.

use chrono::{DateTime, Utc};

use crate::domain::Fingerprint;

/// Whether an entry was confirmed by the ledger, and what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum EntryKind {
    /// Unknown (an entry from a newer version); treated as a miss.
    Unspecified = 0,
    /// Written by a claim before its ledger insert committed: may only say IN_PROGRESS.
    Tentative = 1,
    /// The ledger holds a live claim.
    InProgress = 2,
    /// The ledger holds a completed record.
    Completed = 3,
}

/// One cached key.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CacheEntry {
    /// See [`EntryKind`].
    #[prost(enumeration = "EntryKind", tag = "1")]
    pub kind: i32,
    /// The stored (or, for a tentative entry, requested) fingerprint.
    #[prost(bytes = "vec", tag = "2")]
    pub fingerprint: Vec<u8>,
    /// Completed entries: the stored response.
    #[prost(bytes = "vec", tag = "3")]
    pub response: Vec<u8>,
    /// Completed entries: completion time, Unix milliseconds.
    #[prost(int64, tag = "4")]
    pub completed_at_ms: i64,
    /// In-progress entries: lease expiry (ledger clock), Unix milliseconds. This
    /// version judges an entry by its TTL alone (never against its own wall clock);
    /// the field is still written for sidecars of an older version sharing the Redis.
    #[prost(int64, tag = "5")]
    pub lease_expires_at_ms: i64,
    /// Tentative entries: a random value that makes the entry its writer's own, so
    /// only the writer can replace it.
    #[prost(uint64, tag = "6")]
    pub nonce: u64,
    /// Completed entries: when the record expires (ledger clock), Unix milliseconds;
    /// 0 if unknown (an entry written by an older version). Like `lease_expires_at_ms`,
    /// written for older sidecars sharing the Redis; this version reads the TTL.
    #[prost(int64, tag = "7")]
    pub expires_at_ms: i64,
}

impl CacheEntry {
    /// A claim's placeholder before the ledger decided.
    pub fn tentative(fingerprint: &Fingerprint, nonce: u64) -> Self {
        Self {
            kind: EntryKind::Tentative as i32,
            fingerprint: fingerprint.as_bytes().to_vec(),
            nonce,
            ..Self::default()
        }
    }

    /// A live claim the ledger confirmed.
    pub fn in_progress(fingerprint: &Fingerprint, lease_expires_at: DateTime<Utc>) -> Self {
        Self {
            kind: EntryKind::InProgress as i32,
            fingerprint: fingerprint.as_bytes().to_vec(),
            lease_expires_at_ms: lease_expires_at.timestamp_millis(),
            ..Self::default()
        }
    }

    /// A completed record the ledger confirmed.
    pub fn completed(
        fingerprint: &Fingerprint,
        response: &[u8],
        completed_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Self {
        Self {
            kind: EntryKind::Completed as i32,
            fingerprint: fingerprint.as_bytes().to_vec(),
            response: response.to_vec(),
            completed_at_ms: completed_at.timestamp_millis(),
            expires_at_ms: expires_at.timestamp_millis(),
            ..Self::default()
        }
    }

    /// The entry's kind; unknown kinds read as `Unspecified`.
    pub fn entry_kind(&self) -> EntryKind {
        EntryKind::try_from(self.kind).unwrap_or(EntryKind::Unspecified)
    }

    /// Whether a request with fingerprint `requested` may use this entry's key.
    pub fn is_compatible_with(&self, requested: &Fingerprint) -> bool {
        Fingerprint::compatible(requested.as_bytes(), &self.fingerprint)
    }
}
