//! What the hot tier keeps per key, as the engine and every tier see it: a domain
//! enum, one variant per kind of entry. How a tier stores it is the tier's own
//! business (the Redis tier's protobuf lives in `redis/codec.rs`; the in-process tier
//! and the near cache keep the enum itself).

use chrono::{DateTime, SubsecRound as _, Utc};

use crate::domain::Fingerprint;

/// One cached key: whether the ledger confirmed it, and what it says.
///
/// Times are kept to the millisecond, the precision the shared tier stores, so that
/// every tier answers a duplicate with the same `completed_at`: build entries with
/// [`Entry::tentative`], [`Entry::in_progress`] and [`Entry::completed`], which round
/// them down. An entry of a kind this version does not know (one written by a newer
/// version to a shared tier) is no `Entry` at all: the tier reports it as
/// [`super::CacheError::UnknownKind`], a miss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Written by a claim before its ledger insert committed: may only say
    /// IN_PROGRESS (to a compatible request), never FINGERPRINT_MISMATCH or COMPLETED.
    Tentative {
        /// The fingerprint the claim requested (not yet the one the ledger stored).
        fingerprint: Fingerprint,
        /// A random value that makes the entry its writer's own, so only the writer
        /// can replace it.
        nonce: u64,
    },
    /// The ledger holds a live claim. Whether its lease still runs is told by the
    /// entry's TTL alone, never by `lease_expires_at` against this host's clock.
    InProgress {
        /// The fingerprint the ledger stored with the claim.
        fingerprint: Fingerprint,
        /// When the lease runs out (ledger clock). Not read by this version; written
        /// for sidecars of an older version sharing the Redis, which judge by it.
        lease_expires_at: DateTime<Utc>,
    },
    /// The ledger holds a completed record, immutable until it expires.
    Completed {
        /// The fingerprint the ledger stored with the record.
        fingerprint: Fingerprint,
        /// The stored response.
        response: Vec<u8>,
        /// When the record was completed.
        completed_at: DateTime<Utc>,
        /// When the record expires (ledger clock). Not read by this version (it judges
        /// the entry by its TTL); written for older sidecars sharing the Redis. Read
        /// back from an entry an older version wrote without it: the Unix epoch.
        expires_at: DateTime<Utc>,
    },
}

impl Entry {
    /// A claim's placeholder before the ledger decided.
    pub fn tentative(fingerprint: Fingerprint, nonce: u64) -> Self {
        Self::Tentative { fingerprint, nonce }
    }

    /// A live claim the ledger confirmed.
    pub fn in_progress(fingerprint: Fingerprint, lease_expires_at: DateTime<Utc>) -> Self {
        Self::InProgress {
            fingerprint,
            lease_expires_at: lease_expires_at.trunc_subsecs(3),
        }
    }

    /// A completed record the ledger confirmed.
    pub fn completed(
        fingerprint: Fingerprint,
        response: Vec<u8>,
        completed_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Self {
        Self::Completed {
            fingerprint,
            response,
            completed_at: completed_at.trunc_subsecs(3),
            expires_at: expires_at.trunc_subsecs(3),
        }
    }

    /// The stored (or, for a tentative entry, requested) fingerprint.
    pub fn fingerprint(&self) -> &Fingerprint {
        match self {
            Self::Tentative { fingerprint, .. }
            | Self::InProgress { fingerprint, .. }
            | Self::Completed { fingerprint, .. } => fingerprint,
        }
    }

    /// Whether this is a completed record (immutable, so safe to keep near and to
    /// write over someone else's entry).
    pub fn is_completed(&self) -> bool {
        matches!(self, Self::Completed { .. })
    }

    /// Whether a request with fingerprint `requested` may use this entry's key.
    pub fn is_compatible_with(&self, requested: &Fingerprint) -> bool {
        requested.is_compatible_with(self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_kept_to_the_millisecond_as_the_shared_tier_stores_them() {
        let precise = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        let stored = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        let fingerprint = Fingerprint::default();
        assert_eq!(
            Entry::completed(fingerprint.clone(), Vec::new(), precise, precise),
            Entry::Completed {
                fingerprint: fingerprint.clone(),
                response: Vec::new(),
                completed_at: stored,
                expires_at: stored,
            }
        );
        assert_eq!(
            Entry::in_progress(fingerprint.clone(), precise),
            Entry::InProgress {
                fingerprint,
                lease_expires_at: stored,
            }
        );
    }
}
