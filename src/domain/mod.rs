//! The domain: validated identifiers, claimants, fencing tokens, records and claim
//! outcomes.
//!
//! Everything here is parsed once at the gRPC edge (`TryFrom`), so the engine, the
//! ledgers and the hot tiers never see an unchecked namespace, key or fingerprint. The
//! identifiers themselves (with their limits and the fingerprint rule) are the API's, so
//! they live in the client crate and are re-exported here.

mod claimant;
mod duration;
mod spend;

pub use claimant::Claimant;
pub use duration::{BoundedDuration, DurationBounds, format_duration, parse_duration};
pub use onceward_client::{FencingToken, Fingerprint, IdempotencyKey, Namespace, ValidationError};
pub use spend::{Budget, Limit, Policy, Refusal, Spend, Spent, Subject, units};

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The server's limits, shared by the engine and the gRPC edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Default and maximum lease.
    pub lease: DurationBounds,
    /// Default and maximum retention of completed records. An abandoned claim is kept
    /// for the default retention after its lease runs out.
    pub retention: DurationBounds,
    /// The largest `response` a `Complete` may store, in bytes.
    pub max_response_bytes: usize,
    /// The most items one `ClaimBatch` or `CompleteBatch` may carry.
    pub max_batch_items: usize,
}

/// The identity of a record: its namespace and key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordId {
    /// The namespace.
    pub namespace: Namespace,
    /// The key within the namespace.
    pub key: IdempotencyKey,
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.namespace, self.key)
    }
}

/// The state of a ledger record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordState {
    /// A claim holds the key.
    InProgress,
    /// The key was completed and its response stored.
    Completed,
}

/// A ledger record as the outside world may see it: no fencing token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's namespace and key.
    pub id: RecordId,
    /// In progress or completed.
    pub state: RecordState,
    /// The fingerprint stored with the claim.
    pub fingerprint: Fingerprint,
    /// The stored result (completed records only).
    pub response: Option<Vec<u8>>,
    /// When the key was first claimed.
    pub created_at: DateTime<Utc>,
    /// When the key was completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// When the current claim's lease expires (in-progress records only).
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// When the retention job may delete the record.
    pub expires_at: DateTime<Utc>,
}

impl Record {
    /// The end of this record's lease, if it is a claim whose lease still runs at `now`
    /// (the ledger's clock).
    pub fn live_lease(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.state {
            RecordState::InProgress => self.lease_expires_at.filter(|at| *at > now),
            RecordState::Completed => None,
        }
    }

    /// Whether a claim with `fingerprint` may take this record over at `now` (the
    /// ledger's clock): a claim whose lease ran out, with a compatible fingerprint. The
    /// ledgers' SQL restates this as the guard of their compare-and-set.
    pub fn takeable_by(&self, fingerprint: &Fingerprint, now: DateTime<Utc>) -> bool {
        self.state == RecordState::InProgress
            && self.lease_expires_at.is_some_and(|at| at <= now)
            && fingerprint.is_compatible_with(&self.fingerprint)
    }

    /// The fingerprint stored when a claim with `fingerprint` takes this record over:
    /// the claim's, or if it sent none, the one the key already had, so the key still
    /// mismatches whatever it mismatched before. The Postgres claim restates this in SQL.
    pub fn into_takeover_fingerprint(self, fingerprint: &Fingerprint) -> Fingerprint {
        if fingerprint.as_bytes().is_empty() {
            self.fingerprint
        } else {
            fingerprint.clone()
        }
    }
}

/// Which tier decided a claim's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// The hot tier answered without touching the ledger.
    Cache,
    /// The ledger answered.
    Ledger,
}

impl Tier {
    /// The metric label for this tier.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Cache => "cache",
            Tier::Ledger => "ledger",
        }
    }
}

/// What a `Claim` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The caller holds the key until `lease_expires_at` (ledger clock).
    Acquired {
        /// The holder's capability.
        token: FencingToken,
        /// When the lease runs out.
        lease_expires_at: DateTime<Utc>,
    },
    /// A live claim holds the key.
    InProgress {
        /// How long the caller should wait before claiming again.
        retry_after: Duration,
    },
    /// The key was completed; here is its stored result.
    Completed {
        /// The stored result, byte for byte.
        response: Vec<u8>,
        /// When the key was completed.
        completed_at: DateTime<Utc>,
    },
    /// The key exists with a different fingerprint.
    FingerprintMismatch,
    /// The namespace's killswitch is engaged: nothing stored or debited.
    Blocked {
        /// The killswitch's reason.
        reason: String,
    },
    /// The subject's budget would be exceeded: nothing stored or debited.
    OverBudget {
        /// Which limit.
        limit: Limit,
        /// The time until the subject's window resets.
        retry_after: Duration,
    },
}

impl Outcome {
    /// The metric label for this outcome.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Acquired { .. } => "acquired",
            Outcome::InProgress { .. } => "in_progress",
            Outcome::Completed { .. } => "completed",
            Outcome::FingerprintMismatch => "fingerprint_mismatch",
            Outcome::Blocked { .. } => "blocked",
            Outcome::OverBudget { .. } => "over_budget",
        }
    }
}

/// A `Claim` answer together with the tier that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimAnswer {
    /// What the caller should do.
    pub outcome: Outcome,
    /// Who decided.
    pub served_by: Tier,
}

/// The result of a successful `Complete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// When the key was completed (the first time, for a retried `Complete`).
    pub completed_at: DateTime<Utc>,
    /// When the completed record expires.
    pub expires_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(fingerprint: &[u8], lease_expires_at: DateTime<Utc>) -> Record {
        Record {
            id: RecordId {
                namespace: Namespace::try_from("ns".to_owned()).unwrap(),
                key: IdempotencyKey::try_from("k".to_owned()).unwrap(),
            },
            state: RecordState::InProgress,
            fingerprint: Fingerprint::try_from(fingerprint.to_vec()).unwrap(),
            response: None,
            created_at: lease_expires_at,
            completed_at: None,
            lease_expires_at: Some(lease_expires_at),
            expires_at: lease_expires_at,
        }
    }

    #[test]
    fn only_a_claim_whose_lease_ran_out_is_taken_over_and_only_with_a_compatible_fingerprint() {
        let now = DateTime::from_timestamp(1_000, 0).unwrap();
        let second = chrono::Duration::seconds(1);
        let a = Fingerprint::try_from(b"a".to_vec()).unwrap();
        let b = Fingerprint::try_from(b"b".to_vec()).unwrap();
        let ran_out = claim(b"a", now - second);
        assert!(ran_out.takeable_by(&a, now));
        assert!(ran_out.takeable_by(&Fingerprint::default(), now));
        assert!(!ran_out.takeable_by(&b, now));
        assert_eq!(ran_out.live_lease(now), None);

        let live = claim(b"a", now + second);
        assert!(!live.takeable_by(&a, now));
        assert_eq!(live.live_lease(now), Some(now + second));

        let done = Record {
            state: RecordState::Completed,
            lease_expires_at: None,
            ..ran_out
        };
        assert!(!done.takeable_by(&a, now));
        assert_eq!(done.live_lease(now), None);
    }
}
