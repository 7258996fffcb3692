//! The ledger: the authority on every key.
//!
//! A ledger is a table with a UNIQUE (namespace, key). Every `ACQUIRED` the engine
//! answers comes from [`Ledger::claim`] returning [`ClaimDecision::Acquired`], which a
//! ledger may only return after the INSERT (or the compare-and-set takeover of an
//! expired lease) has committed. All lease arithmetic uses the ledger's clock, and
//! every decision carries the ledger's `now()` it was made at, so what the engine
//! caches is timed on that clock too, never on the sidecar's.
//!
//! Every claim is stored with its claimant. A claim that meets a live claim stored
//! with the same claimant (and a compatible fingerprint) is `Acquired` again with the
//! same token and lease: the retry of a Claim whose reply was lost, or of a ledger
//! statement whose connection failed after it committed. Handing a claim back marks
//! it (`reentered`), in the same statement or transaction that decides it, and a
//! claim whose first caller gave up is only released while unmarked
//! ([`Ledger::release_unheld`]): the retry and the release never both win.
//!
//! # Layout
//! - here: the [`Ledger`] trait, its requests and decisions, and the rules both
//!   ledgers decide by (`reentry`, `completed_earlier`; the takeover's are on
//!   [`Record`]), which their SQL restates as guards;
//! - `rows`: stored rows parsed into domain values, once for both ledgers;
//! - [`schema`]: the migrations, and which of them a database has applied;
//! - `batcher`: group commit, one statement for the requests that queued meanwhile;
//! - [`postgres`], [`sqlite`]: the two ledgers, each with its SQL next to it.

mod audit;
mod batcher;
pub mod postgres;
mod rows;
pub mod schema;
pub mod sqlite;

pub use postgres::PostgresLedger;
pub use sqlite::SqliteLedger;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{
    Claimant, Completion, FencingToken, Fingerprint, Namespace, Policy, Record, RecordId, Refusal,
    Spend, Spent, Subject,
};

pub use self::audit::{AuditEvent, EventKind};

/// A claim the engine asks the ledger to record.
#[derive(Debug, Clone)]
pub struct NewClaim {
    /// The key to claim.
    pub id: RecordId,
    /// The request's fingerprint.
    pub fingerprint: Fingerprint,
    /// How long the claim holds the key.
    pub lease: Duration,
    /// How long an abandoned claim is kept after its lease runs out before cleanup
    /// may delete it.
    pub abandon_after: Duration,
    /// Who is claiming: the caller's claimant, or one the engine made up for a caller
    /// that sent none. Never empty.
    pub claimant: Claimant,
    /// Whose spend it is, and how much.
    pub spend: Spend,
    /// Whether the namespace may have a policy: the ledger then decides the claim by
    /// the policy it reads in the claim's own transaction (killswitch, budget).
    pub guarded: bool,
}

/// One completion of a batch: what [`Ledger::complete`] takes.
#[derive(Debug, Clone)]
pub struct BatchCompletion {
    /// The claimed key.
    pub id: RecordId,
    /// The holder's token.
    pub token: FencingToken,
    /// The side effect's result.
    pub response: Vec<u8>,
    /// How long to keep the completed record.
    pub retention: Duration,
}

/// What the ledger decided for a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimDecision {
    /// The claim was committed: the caller holds the key.
    Acquired {
        /// The new holder's token, larger than every token issued before.
        token: FencingToken,
        /// When the lease runs out (ledger clock).
        lease_expires_at: DateTime<Utc>,
        /// Whether this claim took the key over from a holder whose lease expired.
        takeover: bool,
        /// The fingerprint stored with the claim: the request's, or on a takeover by a
        /// request without one, the fingerprint the key already had.
        fingerprint: Fingerprint,
        /// The ledger's clock when it decided.
        now: DateTime<Utc>,
    },
    /// The namespace's policy refused a claim that would have acquired: nothing was
    /// stored or debited.
    Refused {
        /// Why.
        refusal: Refusal,
        /// The ledger's clock when it decided.
        now: DateTime<Utc>,
    },
    /// Someone else's record stands: a live claim, a completed record, or a record
    /// whose fingerprint differs from the request's.
    Existing {
        /// The standing record.
        record: Record,
        /// The ledger's clock when it was read, for `retry_after`.
        now: DateTime<Utc>,
    },
}

/// What the ledger did with a `Complete`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompleteDecision {
    /// The record is completed with this token (now, or by an earlier retry).
    Completed {
        /// When and until when.
        completion: Completion,
        /// The stored fingerprint, so the hot tier can cache the record.
        fingerprint: Fingerprint,
        /// The stored response (the first one, for a retry).
        response: Vec<u8>,
        /// The ledger's clock when it decided.
        now: DateTime<Utc>,
    },
    /// The token is not the current holder's.
    NotHolder,
}

/// The outcome of a successful `ExtendLease`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendedLease {
    /// When the extended lease runs out (ledger clock).
    pub lease_expires_at: DateTime<Utc>,
    /// The stored fingerprint, so the hot tier can cache the claim.
    pub fingerprint: Fingerprint,
    /// The ledger's clock when it extended the lease.
    pub now: DateTime<Utc>,
}

/// What [`Ledger::forget`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgotten {
    /// The record was deleted.
    Deleted,
    /// There was no record.
    Absent,
    /// A live claim holds the key and `force` was not given: nothing deleted.
    Held,
}

/// Called for each record another sidecar forgot (`Some`), or with `None` when
/// notifications may have been missed, so every in-memory copy must go.
pub type ForgetHook = std::sync::Arc<dyn Fn(Option<RecordId>) + Send + Sync>;

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The ledger could not be reached or did not answer in time; safe to retry.
    #[error("ledger unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The ledger answered with something onceward did not expect.
    #[error("ledger failed")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl LedgerError {
    /// The same failure, for another caller of the same batched statement.
    pub fn for_another_caller(&self) -> Self {
        let cause = std::error::Error::source(self)
            .map(crate::errors::chain)
            .unwrap_or_default();
        match self {
            LedgerError::Unavailable(_) => LedgerError::Unavailable(cause.into()),
            LedgerError::Internal(_) => LedgerError::Internal(cause.into()),
        }
    }
}

/// The spend guard's and the audit trail's storage, kept by every ledger next to its
/// records: the namespaces' policies, the subjects' spend, the events.
#[async_trait]
pub trait SpendStore: Send + Sync {
    /// Every namespace's policy.
    async fn policies(&self) -> Result<Vec<(Namespace, Policy)>, LedgerError>;

    /// Replaces `namespace`'s policy (an empty one deletes it), recording `by` who.
    async fn set_policy(
        &self,
        namespace: &Namespace,
        policy: &Policy,
        by: &str,
    ) -> Result<(), LedgerError>;

    /// What `subject` spent in `namespace`'s current budget window of `window`.
    async fn spent(
        &self,
        namespace: &Namespace,
        subject: &Subject,
        window: Duration,
    ) -> Result<Spent, LedgerError>;

    /// Appends audit events (duplicates added to their key's minute), each kept for
    /// `retention`.
    async fn record_events(
        &self,
        events: &[AuditEvent],
        retention: Duration,
    ) -> Result<(), LedgerError>;

    /// The newest `limit` audit events of `namespace` at or after `since`, newest first.
    async fn events(
        &self,
        namespace: &Namespace,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, LedgerError>;
}

/// The authority. Implementations must be safe to share between any number of
/// sidecars pointed at the same database.
#[async_trait]
pub trait Ledger: SpendStore + Send + Sync + 'static {
    /// Inserts a new claim, takes over an expired one by compare-and-set on its token,
    /// or reports the record that stands. Returns `Acquired` only after commit.
    async fn claim(&self, claim: &NewClaim) -> Result<ClaimDecision, LedgerError>;

    /// Completes the claim held by `token`, storing `response` until now + `retention`.
    /// A retry with the token that already completed the record is `Completed` and
    /// changes nothing.
    async fn complete(
        &self,
        id: &RecordId,
        token: FencingToken,
        response: Vec<u8>,
        retention: Duration,
    ) -> Result<CompleteDecision, LedgerError>;

    /// Deletes the in-progress claim held by `token`. `false`: not the holder.
    async fn release(&self, id: &RecordId, token: FencingToken) -> Result<bool, LedgerError>;

    /// Deletes the in-progress claim held by `token` unless it was handed back to its
    /// claimant (`Acquired` again for a retry): the release of a claim that committed
    /// after its caller gave up. Once the claimant has it back, somebody holds it, so
    /// the two can never both win. `false`: nothing deleted.
    async fn release_unheld(&self, id: &RecordId, token: FencingToken)
    -> Result<bool, LedgerError>;

    /// Sets the lease of the claim held by `token` to now + `lease`. `None`: not the holder.
    async fn extend_lease(
        &self,
        id: &RecordId,
        token: FencingToken,
        lease: Duration,
        abandon_after: Duration,
    ) -> Result<Option<ExtendedLease>, LedgerError>;

    /// Reads a record.
    async fn lookup(&self, id: &RecordId) -> Result<Option<Record>, LedgerError>;

    /// [`claim`](Self::claim) for several claims of distinct keys, decided as if one
    /// after another; one result per claim, in order. The default asks for them all
    /// at once, so a ledger that groups concurrent writes (both do) commits them
    /// together.
    async fn claim_many(&self, claims: &[NewClaim]) -> Vec<Result<ClaimDecision, LedgerError>> {
        futures_util::future::join_all(claims.iter().map(|claim| self.claim(claim))).await
    }

    /// [`complete`](Self::complete) for several completions of distinct keys; one
    /// result per completion, in order (asked all at once, as for `claim_many`).
    async fn complete_many(
        &self,
        completions: Vec<BatchCompletion>,
    ) -> Vec<Result<CompleteDecision, LedgerError>> {
        futures_util::future::join_all(completions.into_iter().map(|completion| async move {
            self.complete(
                &completion.id,
                completion.token,
                completion.response,
                completion.retention,
            )
            .await
        }))
        .await
    }

    /// Deletes the record of `id` — a live claim only with `force` — and tells every
    /// sidecar watching this ledger ([`watch_forgotten`](Self::watch_forgotten)).
    async fn forget(&self, id: &RecordId, force: bool) -> Result<Forgotten, LedgerError>;

    /// Calls `hook` for every record forgotten through another sidecar sharing this
    /// ledger, until the returned task is aborted. `None`: this ledger is never shared
    /// (one host, one sidecar), so there is nothing to watch.
    fn watch_forgotten(&self, hook: ForgetHook) -> Option<tokio::task::JoinHandle<()>> {
        let _ = hook;
        None
    }

    /// Deletes up to `limit` expired records: completed records past `expires_at`, and
    /// abandoned claims past `expires_at` whose lease has also run out. Never a live
    /// claim or an unexpired record; rows another cleaner or a claim holds are skipped,
    /// not waited for. Also deletes up to `limit` spend windows that have ended and
    /// audit events past their retention. Returns how many rows it deleted.
    async fn purge_expired(&self, limit: u32) -> Result<u64, LedgerError>;
}

/// Logs what became of the release of a claim that committed after its caller gave up
/// (both ledgers release such claims the same way).
pub(crate) fn log_release_of_unheld(
    id: &RecordId,
    token: FencingToken,
    released: Result<bool, LedgerError>,
) {
    match released {
        Ok(released) => tracing::info!(
            %id, token = token.get(), released,
            "a claim committed after its caller gave up; released it"
        ),
        Err(error) => tracing::warn!(
            %id, token = token.get(), error = %crate::errors::chain(&error),
            "a claim committed after its caller gave up and could not be released; \
             its lease will run out"
        ),
    }
}

/// `Acquired` again, with the same token and lease, if the standing `record` (its
/// holder's `token` and `stored_claimant` read with it at `now`, the ledger's clock) is a
/// live claim that `claim`'s own claimant made — a retry whose first answer was lost —
/// and the fingerprints agree; `None` otherwise. The rule of both ledgers.
pub(crate) fn reentry(
    record: &Record,
    token: FencingToken,
    stored_claimant: &[u8],
    claim: &NewClaim,
    now: DateTime<Utc>,
) -> Option<ClaimDecision> {
    let lease_expires_at = record.live_lease(now)?;
    let own = claim.claimant.matches(stored_claimant)
        && claim.fingerprint.is_compatible_with(&record.fingerprint);
    own.then(|| ClaimDecision::Acquired {
        token,
        lease_expires_at,
        takeover: false,
        fingerprint: record.fingerprint.clone(),
        now,
    })
}

/// What a key holds, read back for a `Complete` whose update matched nothing.
#[derive(Debug)]
pub(crate) struct StoredCompletion {
    /// The stored fencing token, as stored.
    pub(crate) token: i64,
    /// When the record was completed and until when; `None` while it is in progress.
    pub(crate) completion: Option<Completion>,
    /// The stored fingerprint.
    pub(crate) fingerprint: Fingerprint,
    /// The stored response (empty while in progress).
    pub(crate) response: Vec<u8>,
    /// The ledger's clock when it was read.
    pub(crate) now: DateTime<Utc>,
}

/// What a `Complete` by `token` (as the ledger stores it, see [`db_token`]) answers
/// when its update matched nothing — the key was not in progress under `token` — from
/// what the key holds (`None`: nothing). A record completed by this same token is
/// `Completed` again, with its stored response and times, and nothing changes: the
/// retry of a `Complete` whose answer was lost. Anything else (no record, another
/// holder's, a claim still in progress) is `NotHolder`. The rule of both ledgers; their
/// `COMPLETED_BY_TOKEN` restates it as its guard.
pub(crate) fn completed_earlier(stored: Option<StoredCompletion>, token: i64) -> CompleteDecision {
    match stored {
        Some(StoredCompletion {
            token: stored_token,
            completion: Some(completion),
            fingerprint,
            response,
            now,
        }) if stored_token == token => CompleteDecision::Completed {
            completion,
            fingerprint,
            response,
            now,
        },
        _ => CompleteDecision::NotHolder,
    }
}

/// Tokens are a signed 64-bit integer in every ledger, starting at 1: a token of 0 or
/// above `i64::MAX` was never issued, so it is never the holder's.
pub(crate) fn db_token(token: FencingToken) -> Option<i64> {
    i64::try_from(token.get()).ok().filter(|t| *t > 0)
}

/// A duration in whole microseconds, the ledgers' time unit; saturates rather than
/// wraps, so an absurd duration can only mean "far away".
pub(crate) fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// Wraps an unexpected failure.
pub(crate) fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> LedgerError {
    LedgerError::Internal(error.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(token: i64, completion: Option<Completion>) -> StoredCompletion {
        StoredCompletion {
            token,
            completion,
            fingerprint: Fingerprint::default(),
            response: b"charged".to_vec(),
            now: DateTime::from_timestamp(1_000, 0).unwrap(),
        }
    }

    #[test]
    fn only_a_record_completed_by_the_same_token_answers_a_complete_that_changed_nothing() {
        let at = DateTime::from_timestamp(900, 0).unwrap();
        let completion = Completion {
            completed_at: at,
            expires_at: at,
        };
        assert_eq!(
            completed_earlier(Some(stored(7, Some(completion))), 7),
            CompleteDecision::Completed {
                completion,
                fingerprint: Fingerprint::default(),
                response: b"charged".to_vec(),
                now: DateTime::from_timestamp(1_000, 0).unwrap(),
            }
        );
        assert_eq!(
            completed_earlier(Some(stored(8, Some(completion))), 7),
            CompleteDecision::NotHolder,
            "completed by another holder"
        );
        assert_eq!(
            completed_earlier(Some(stored(7, None)), 7),
            CompleteDecision::NotHolder,
            "still in progress"
        );
        assert_eq!(completed_earlier(None, 7), CompleteDecision::NotHolder);
    }
}
