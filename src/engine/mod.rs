//! The two-tier logic behind every RPC: hot tier first for duplicates, the ledger as
//! the authority. No tonic here; the gRPC layer converts at the edge.
//!
//! A claim runs in three steps:
//! 1. `SET key tentative NX PX … GET` on the hot tier. An existing confirmed entry
//!    answers at once (`COMPLETED`, `IN_PROGRESS`, `FINGERPRINT_MISMATCH`); someone
//!    else's tentative entry may only answer `IN_PROGRESS`; anything else — absent,
//!    error, timeout, open circuit — falls through.
//! 2. The ledger claim (INSERT … ON CONFLICT, or compare-and-set takeover) decides.
//!    Only its committed `Acquired` becomes `ACQUIRED`. If the ledger fails, the claim
//!    fails closed with `UNAVAILABLE` and removes its own tentative entry.
//! 3. The decision is cached. A new holder keeps its tentative entry when it says
//!    what the ledger stored (it already answers duplicates `IN_PROGRESS`, and
//!    `Complete` replaces it), and writes its confirmed claim otherwise; an observer
//!    only replaces its *own* tentative entry, so it can never resurrect a claim that
//!    a concurrent `Release` just deleted.
//!
//! **The claimant** (SPEC section 10) sits in steps 1 and 2. A Claim that names a
//! claimant may be the retry of one whose `ACQUIRED` was lost on the way back, so
//! the hot tier, which never answers `ACQUIRED`, does not answer it `IN_PROGRESS`
//! either: it defers to the ledger, which recognises its own claimant on the live
//! claim and answers `ACQUIRED` with the same token. That is safe because the ledger
//! compares under the same row lock that decides every claim, and only a live claim
//! with a compatible fingerprint is handed back. A Claim without one gets a random
//! claimant of the engine's, so its own ledger statement can be run again after a
//! connection failure and find the row it wrote as its own; no caller can present it.
//!
//! **Time.** Every TTL written to the hot tier is the ledger's own reading of the time
//! left (`expires_at`/`lease_expires_at` less the ledger's `now()` it returned with
//! them), run down by the time since the ledger call was sent ([`time_left`]). This
//! host's wall clock is never read, so a sidecar with a skewed clock caches nothing
//! for longer than the ledger keeps it.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::cache::{CacheEntry, Cached, EntryKind, HotTier};
use crate::domain::{
    ClaimAnswer, Claimant, Completion, DurationBounds, FencingToken, Fingerprint, Outcome, Record,
    RecordId, RecordState, Tier,
};
use crate::ledger::{ClaimDecision, CompleteDecision, Ledger, LedgerError, NewClaim};
use crate::metrics;

/// The longest `retry_after` suggested for a live claim: holders usually complete
/// well before their lease runs out, so callers should look again sooner than that.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(1);
/// `retry_after` when a tentative entry answers: the claim behind it may be in its
/// ledger write, or already held.
const TENTATIVE_RETRY_AFTER: Duration = Duration::from_millis(25);
/// How long a tentative entry lives at most (never longer than the lease). It covers
/// the ledger write and then, for a new holder, the usual time to Complete; a sidecar
/// killed between the two steps leaves it behind for no longer.
const TENTATIVE_TTL: Duration = Duration::from_secs(2);

/// What step 1 of a claim left in the hot tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HotLookup {
    /// The key was absent: our tentative entry is there now.
    WroteTentative,
    /// Someone else's entry stands and could not answer on its own.
    Deferred,
    /// The hot tier failed, timed out, or its circuit is open.
    Unreachable,
}

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
}

/// A validated `Claim`.
#[derive(Debug, Clone)]
pub struct ClaimCommand {
    /// The key to claim.
    pub id: RecordId,
    /// The request's fingerprint.
    pub fingerprint: Fingerprint,
    /// The lease to hold it for.
    pub lease: Duration,
    /// The caller's claimant for this logical attempt; empty if it sent none.
    pub claimant: Claimant,
    /// The caller's retry attempt (1 = first try, 0 = not given); only counted.
    pub attempt: u32,
}

/// A validated `Complete`.
#[derive(Debug, Clone)]
pub struct CompleteCommand {
    /// The claimed key.
    pub id: RecordId,
    /// The holder's token.
    pub token: FencingToken,
    /// The side effect's result.
    pub response: Vec<u8>,
    /// How long to keep the completed record.
    pub retention: Duration,
}

/// Why the engine could not carry out a command.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The token is not the current holder's (stale, released, completed, unknown).
    #[error("the fencing token is not the current holder's")]
    NotHolder,
    /// The ledger could not be reached in time: fail closed, the caller may retry.
    #[error("the ledger is unavailable")]
    Unavailable(#[source] LedgerError),
    /// The ledger failed unexpectedly.
    #[error("the ledger failed")]
    Internal(#[source] LedgerError),
}

impl From<LedgerError> for EngineError {
    fn from(error: LedgerError) -> Self {
        match error {
            LedgerError::Unavailable(_) => EngineError::Unavailable(error),
            LedgerError::Internal(_) => EngineError::Internal(error),
        }
    }
}

/// The claim/complete engine over one ledger and one hot tier.
pub struct Engine {
    ledger: Arc<dyn Ledger>,
    hot: Arc<dyn HotTier>,
    limits: Limits,
    ledger_timeout: Duration,
}

impl Engine {
    /// An engine over `ledger` and `hot`; every ledger call is cut off after
    /// `ledger_timeout` and reported as unavailable.
    pub fn new(
        ledger: Arc<dyn Ledger>,
        hot: Arc<dyn HotTier>,
        limits: Limits,
        ledger_timeout: Duration,
    ) -> Self {
        Self {
            ledger,
            hot,
            limits,
            ledger_timeout,
        }
    }

    /// The limits requests are validated against.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Claims a key: see the module docs for the three steps.
    pub async fn claim(&self, command: ClaimCommand) -> Result<ClaimAnswer, EngineError> {
        metrics::claim_attempt(&command.id.namespace, command.attempt);
        let reentrant = !command.claimant.is_empty();
        let claim = NewClaim {
            id: command.id,
            fingerprint: command.fingerprint,
            lease: command.lease,
            abandon_after: self.limits.retention.default,
            claimant: if reentrant {
                command.claimant
            } else {
                Claimant::random()
            },
        };
        let NewClaim {
            id,
            fingerprint,
            lease,
            ..
        } = &claim;

        // Step 1: the hot tier.
        let tentative = CacheEntry::tentative(fingerprint, rand::random());
        let hot = match self
            .hot
            .claim(id, &tentative, (*lease).min(TENTATIVE_TTL))
            .await
        {
            Ok(None) => {
                metrics::cache_lookup("miss");
                HotLookup::WroteTentative
            }
            Ok(Some(existing)) => {
                if let Some(outcome) = answer_from_cache(existing, fingerprint, reentrant) {
                    metrics::cache_lookup("hit");
                    return Ok(answered(outcome, Tier::Cache));
                }
                metrics::cache_lookup("defer");
                HotLookup::Deferred
            }
            Err(crate::cache::CacheError::CircuitOpen) => {
                metrics::cache_lookup("bypass");
                HotLookup::Unreachable
            }
            Err(error) => {
                metrics::cache_lookup("error");
                tracing::debug!(%id, error = %error, "hot tier lookup failed; asking the ledger");
                HotLookup::Unreachable
            }
        };

        // Step 2: the ledger decides.
        let asked_at = Instant::now();
        let decision = match self.ledger_call("claim", self.ledger.claim(&claim)).await {
            Ok(decision) => decision,
            Err(error) => {
                if hot == HotLookup::WroteTentative {
                    let _ = self.hot.replace(id, &tentative, None).await;
                }
                return Err(error);
            }
        };

        // Step 3: answer, and cache what the ledger confirmed.
        match decision {
            ClaimDecision::Acquired {
                token,
                lease_expires_at,
                takeover,
                fingerprint: stored,
                now,
            } => {
                if takeover {
                    metrics::takeover();
                    tracing::info!(%id, token = token.get(), "took over an expired lease");
                }
                let confirmed = CacheEntry::in_progress(&stored, lease_expires_at);
                // A lease already over by now is the ledger's to judge: nothing cached.
                let lease = time_left(lease_expires_at, now, asked_at).unwrap_or_default();
                match hot {
                    // Our own tentative entry already answers duplicates IN_PROGRESS
                    // for as long as a holder usually needs (past it, they ask the
                    // ledger and cache its answer): confirming it would cost every
                    // new operation one more hot-tier command.
                    HotLookup::WroteTentative if stored == *fingerprint => {}
                    // A takeover without a fingerprint kept the stored one, which the
                    // tentative entry does not carry. Off the reply path; replacing
                    // only our own tentative entry means a late write can never undo
                    // the holder's Complete or Release that overtook it.
                    HotLookup::WroteTentative => {
                        let (hot, id) = (self.hot.clone(), id.clone());
                        tokio::spawn(async move {
                            let _ = hot
                                .replace(&id, &tentative, Some((&confirmed, lease)))
                                .await;
                        });
                    }
                    HotLookup::Deferred | HotLookup::Unreachable => {
                        if !lease.is_zero() {
                            let held = Unanswered::new(self, id, token);
                            let _ = self.hot.put(id, &confirmed, lease).await;
                            held.answered();
                        }
                    }
                }
                Ok(answered(
                    Outcome::Acquired {
                        token,
                        lease_expires_at,
                    },
                    Tier::Ledger,
                ))
            }
            ClaimDecision::Existing { record, now } => {
                let outcome = answer_from_record(&record, fingerprint, now);
                let confirmed = confirmed_entry(&record, now, asked_at);
                let confirmed = confirmed.as_ref().map(|(entry, ttl)| (entry, *ttl));
                match (hot, confirmed) {
                    (HotLookup::WroteTentative, replacement) => {
                        let _ = self.hot.replace(id, &tentative, replacement).await;
                    }
                    // Someone else's entry stands: only a completed record may be
                    // written over it — it is immutable, so writing it cannot undo
                    // anyone else's change.
                    (HotLookup::Deferred, Some((entry, ttl)))
                        if entry.entry_kind() == EntryKind::Completed =>
                    {
                        let _ = self.hot.put(id, entry, ttl).await;
                    }
                    _ => {}
                }
                Ok(answered(outcome, Tier::Ledger))
            }
        }
    }

    /// Completes the claim held by `command.token`; a retry after success is a no-op.
    pub async fn complete(&self, command: CompleteCommand) -> Result<Completion, EngineError> {
        let asked_at = Instant::now();
        let decision = self
            .ledger_call(
                "complete",
                self.ledger.complete(
                    &command.id,
                    command.token,
                    command.response,
                    command.retention,
                ),
            )
            .await?;
        match decision {
            CompleteDecision::Completed {
                completion,
                fingerprint,
                response,
                now,
            } => {
                // Replace the cached claim with the completion; a completion that
                // has already expired must not leave the claim cached either.
                let _ = match time_left(completion.expires_at, now, asked_at) {
                    Some(ttl) => {
                        let entry = CacheEntry::completed(
                            &fingerprint,
                            &response,
                            completion.completed_at,
                            completion.expires_at,
                        );
                        self.hot.put(&command.id, &entry, ttl).await
                    }
                    None => self.hot.remove(&command.id).await,
                };
                Ok(completion)
            }
            CompleteDecision::NotHolder => {
                metrics::fencing_rejection("complete");
                Err(EngineError::NotHolder)
            }
        }
    }

    /// Deletes the claim held by `token`, so the next claim acquires at once.
    pub async fn release(&self, id: &RecordId, token: FencingToken) -> Result<(), EngineError> {
        let released = self
            .ledger_call("release", self.ledger.release(id, token))
            .await?;
        if !released {
            metrics::fencing_rejection("release");
            return Err(EngineError::NotHolder);
        }
        // The ledger row is gone; now the cached claim. Done after the commit, so a
        // concurrent observer's cache write cannot outlive it (see module docs).
        let _ = self.hot.remove(id).await;
        Ok(())
    }

    /// Extends the lease held by `token` to now + `lease` on the ledger's clock.
    pub async fn extend_lease(
        &self,
        id: &RecordId,
        token: FencingToken,
        lease: Duration,
    ) -> Result<DateTime<Utc>, EngineError> {
        let asked_at = Instant::now();
        let extended = self
            .ledger_call(
                "extend_lease",
                self.ledger
                    .extend_lease(id, token, lease, self.limits.retention.default),
            )
            .await?;
        let Some(extended) = extended else {
            metrics::fencing_rejection("extend_lease");
            return Err(EngineError::NotHolder);
        };
        let entry = CacheEntry::in_progress(&extended.fingerprint, extended.lease_expires_at);
        if let Some(left) = time_left(extended.lease_expires_at, extended.now, asked_at) {
            let _ = self.hot.put(id, &entry, left).await;
        }
        Ok(extended.lease_expires_at)
    }

    /// Reads the ledger's record for a key.
    pub async fn lookup(&self, id: &RecordId) -> Result<Option<Record>, EngineError> {
        self.ledger_call("lookup", self.ledger.lookup(id)).await
    }

    /// Runs one ledger call under the ledger timeout, recording its latency.
    async fn ledger_call<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, LedgerError>>,
    ) -> Result<T, EngineError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.ledger_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(LedgerError::Unavailable(
                format!("no answer within {:?}", self.ledger_timeout).into(),
            )),
        };
        let label = match &result {
            Ok(_) => "ok",
            Err(LedgerError::Unavailable(_)) => "unavailable",
            Err(LedgerError::Internal(_)) => "error",
        };
        metrics::ledger_call(op, label, started.elapsed());
        result.map_err(EngineError::from)
    }
}

/// An `ACQUIRED` the ledger committed that its caller has not been handed yet. If the
/// claim's future is dropped in between (its RPC was cancelled), nobody holds the
/// claim, so it is released, from a task of its own — as the ledgers do for a claim
/// that commits after its caller gave up (SPEC rule 5: never a claim in limbo).
struct Unanswered {
    ledger: Arc<dyn Ledger>,
    hot: Arc<dyn HotTier>,
    held: Option<(RecordId, FencingToken)>,
}

impl Unanswered {
    fn new(engine: &Engine, id: &RecordId, token: FencingToken) -> Self {
        Self {
            ledger: engine.ledger.clone(),
            hot: engine.hot.clone(),
            held: Some((id.clone(), token)),
        }
    }

    /// The answer is on its way to the caller.
    fn answered(mut self) {
        self.held = None;
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        let Some((id, token)) = self.held.take() else {
            return;
        };
        let (ledger, hot) = (self.ledger.clone(), self.hot.clone());
        tokio::spawn(async move {
            if let Ok(true) = ledger.release(&id, token).await {
                let _ = hot.remove(&id).await;
                tracing::info!(%id, token = token.get(), "released a claim whose caller went away before its answer");
            }
        });
    }
}

fn answered(outcome: Outcome, served_by: Tier) -> ClaimAnswer {
    metrics::claim_answered(outcome.label(), served_by.as_str());
    ClaimAnswer { outcome, served_by }
}

/// What a hot-tier entry may answer on its own, or `None` to ask the ledger.
/// `reentrant`: the request names a claimant, so a claim in progress may be its own.
fn answer_from_cache(
    cached: Cached,
    fingerprint: &Fingerprint,
    reentrant: bool,
) -> Option<Outcome> {
    let Cached { entry, ttl } = cached;
    let compatible = entry.is_compatible_with(fingerprint);
    match entry.entry_kind() {
        EntryKind::Completed if compatible => Some(Outcome::Completed {
            completed_at: DateTime::from_timestamp_millis(entry.completed_at_ms)?,
            response: entry.response,
        }),
        EntryKind::Completed => Some(Outcome::FingerprintMismatch),
        // A lease that ran out may be taken over: only the ledger may decide that. The
        // entry's TTL is the lease's time left on the ledger's clock.
        EntryKind::InProgress if ttl.is_zero() => None,
        EntryKind::InProgress if !compatible => Some(Outcome::FingerprintMismatch),
        // Only the ledger can tell whether the claim is this claimant's own.
        EntryKind::InProgress | EntryKind::Tentative if reentrant => None,
        EntryKind::InProgress => Some(Outcome::InProgress {
            retry_after: retry_after(ttl),
        }),
        // Not confirmed by the ledger: it may only say "wait", never "mismatch".
        EntryKind::Tentative if compatible => Some(Outcome::InProgress {
            retry_after: TENTATIVE_RETRY_AFTER,
        }),
        EntryKind::Tentative | EntryKind::Unspecified => None,
    }
}

/// What a standing ledger record answers to a claim that did not acquire it.
fn answer_from_record(record: &Record, fingerprint: &Fingerprint, now: DateTime<Utc>) -> Outcome {
    if !fingerprint.is_compatible_with(&record.fingerprint) {
        return Outcome::FingerprintMismatch;
    }
    match record.state {
        RecordState::Completed => Outcome::Completed {
            response: record.response.clone().unwrap_or_default(),
            completed_at: record.completed_at.unwrap_or(record.created_at),
        },
        RecordState::InProgress => Outcome::InProgress {
            retry_after: retry_after(
                record
                    .lease_expires_at
                    .and_then(|at| remaining(at, now))
                    .unwrap_or_default(),
            ),
        },
    }
}

/// The hot-tier entry for a record the ledger confirmed at `now` (its clock) in a call
/// sent at `asked_at`, and how long it may live.
fn confirmed_entry(
    record: &Record,
    now: DateTime<Utc>,
    asked_at: Instant,
) -> Option<(CacheEntry, Duration)> {
    match record.state {
        RecordState::Completed => Some((
            CacheEntry::completed(
                &record.fingerprint,
                record.response.as_deref().unwrap_or_default(),
                record.completed_at.unwrap_or(record.created_at),
                record.expires_at,
            ),
            time_left(record.expires_at, now, asked_at)?,
        )),
        RecordState::InProgress => {
            let lease_expires_at = record.lease_expires_at?;
            Some((
                CacheEntry::in_progress(&record.fingerprint, lease_expires_at),
                time_left(lease_expires_at, now, asked_at)?,
            ))
        }
    }
}

/// Time left until `at`, or `None` if it has passed.
fn remaining(at: DateTime<Utc>, now: DateTime<Utc>) -> Option<Duration> {
    (at - now).to_std().ok().filter(|left| !left.is_zero())
}

/// How long from now, on this host's monotonic clock, until the ledger's instant `at`:
/// the ledger's own reading of the time left (`at - ledger_now`, both on its clock),
/// less everything since the call that read it was sent at `asked_at` — so it errs
/// short, never long. `None` if nothing is left.
fn time_left(at: DateTime<Utc>, ledger_now: DateTime<Utc>, asked_at: Instant) -> Option<Duration> {
    remaining(at, ledger_now)?
        .checked_sub(asked_at.elapsed())
        .filter(|left| !left.is_zero())
}

fn retry_after(lease_left: Duration) -> Duration {
    lease_left.clamp(Duration::from_millis(1), MAX_RETRY_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(bytes: &[u8]) -> Fingerprint {
        Fingerprint::try_from(bytes.to_vec()).unwrap()
    }

    fn cached(entry: &CacheEntry, ttl: Duration) -> Cached {
        Cached {
            entry: entry.clone(),
            ttl,
        }
    }

    const LIVE: Duration = Duration::from_secs(10);

    #[test]
    fn a_tentative_entry_never_answers_mismatch_or_completed() {
        let tentative = CacheEntry::tentative(&fp(b"a"), 7);
        assert_eq!(
            answer_from_cache(cached(&tentative, LIVE), &fp(b"a"), false),
            Some(Outcome::InProgress {
                retry_after: TENTATIVE_RETRY_AFTER
            })
        );
        assert_eq!(
            answer_from_cache(cached(&tentative, LIVE), &fp(b"b"), false),
            None
        );
    }

    #[test]
    fn a_confirmed_claim_whose_lease_ran_out_defers_to_the_ledger() {
        // The entry's own lease_expires_at is never read against this host's clock:
        // its TTL, derived from the ledger's, says whether the lease is live.
        let claim = CacheEntry::in_progress(&fp(b"a"), Utc::now() + chrono::Duration::hours(1));
        assert_eq!(
            answer_from_cache(cached(&claim, Duration::ZERO), &fp(b"a"), false),
            None
        );
        assert_eq!(
            answer_from_cache(cached(&claim, LIVE), &fp(b"a"), false),
            Some(Outcome::InProgress {
                retry_after: MAX_RETRY_AFTER
            })
        );
        assert_eq!(
            answer_from_cache(cached(&claim, Duration::from_millis(40)), &fp(b"a"), false),
            Some(Outcome::InProgress {
                retry_after: Duration::from_millis(40)
            })
        );
        assert_eq!(
            answer_from_cache(cached(&claim, LIVE), &fp(b"b"), false),
            Some(Outcome::FingerprintMismatch)
        );
    }

    #[test]
    fn a_claim_with_a_claimant_asks_the_ledger_whether_a_claim_in_progress_is_its_own() {
        let claim = CacheEntry::in_progress(&fp(b"a"), Utc::now());
        let tentative = CacheEntry::tentative(&fp(b"a"), 7);
        assert_eq!(
            answer_from_cache(cached(&claim, LIVE), &fp(b"a"), true),
            None
        );
        assert_eq!(
            answer_from_cache(cached(&tentative, LIVE), &fp(b"a"), true),
            None
        );
        // A mismatch is a mismatch whoever asks; the ledger would say the same.
        assert_eq!(
            answer_from_cache(cached(&claim, LIVE), &fp(b"b"), true),
            Some(Outcome::FingerprintMismatch)
        );
    }

    #[test]
    fn a_completed_entry_replays_or_reports_a_mismatch() {
        let now = Utc::now();
        let at = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap();
        let done = CacheEntry::completed(&fp(b"a"), b"charged", at, at);
        for reentrant in [false, true] {
            assert_eq!(
                answer_from_cache(cached(&done, LIVE), &Fingerprint::default(), reentrant),
                Some(Outcome::Completed {
                    response: b"charged".to_vec(),
                    completed_at: at
                })
            );
            assert_eq!(
                answer_from_cache(cached(&done, LIVE), &fp(b"b"), reentrant),
                Some(Outcome::FingerprintMismatch)
            );
        }
    }

    #[test]
    fn time_left_is_the_ledgers_reading_run_down_on_this_hosts_monotonic_clock() {
        // Whatever this host's wall clock says: only the ledger's two instants count.
        let ledger_now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let at = ledger_now + chrono::Duration::seconds(3);
        let asked_at = Instant::now();
        let left = time_left(at, ledger_now, asked_at).unwrap();
        assert!(left <= Duration::from_secs(3) && left > Duration::from_millis(2_900));

        let long_ago = Instant::now() - Duration::from_secs(4);
        assert_eq!(time_left(at, ledger_now, long_ago), None);
        assert_eq!(time_left(ledger_now, at, asked_at), None);
    }
}
