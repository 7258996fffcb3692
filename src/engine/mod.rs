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
//! **The claimant** (docs/PROTOCOL.md) sits in steps 1 and 2. A Claim that names a
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
//!
//! # Layout
//! - `mod.rs` (here): [`Engine`], its commands and errors, and the three steps.
//! - `answers.rs`: the pure decisions: what a hot-tier [`Entry`] or a standing ledger
//!   record answers, and what the hot tier may keep of a ledger decision, for how long.
//! - `batch.rs`: `ClaimBatch` and `CompleteBatch`: the same steps for many keys, one
//!   round trip to each tier for all of them.
//! - `unanswered.rs`: the guard that releases an `ACQUIRED` whose caller went away.
//! - `policies.rs`: which namespaces have a spend-guard policy, to route their claims
//!   to the ledger's guarded path (the ledger decides them by the policy itself).
//! - `audit.rs`: the audit trail's writer, off the hot path.

mod answers;
mod audit;
mod batch;
pub mod policies;
mod unanswered;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use self::answers::{
    answer_from_cache, answer_from_record, completed_entry, confirmed_entry, time_left,
};
use self::audit::Audit;
use self::policies::PolicyBook;
use self::unanswered::Unanswered;
use crate::cache::{CacheError, Cached, Entry, HotTier};
use crate::domain::{
    ClaimAnswer, Claimant, Completion, FencingToken, Fingerprint, Limits, Outcome, Record,
    RecordId, Refusal, Spend, Subject, Tier,
};
use crate::ledger::{
    ClaimDecision, CompleteDecision, EventKind, Forgotten, Ledger, LedgerError, NewClaim,
};
use crate::metrics;

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

/// A claim on its way through the three steps.
struct Pending {
    /// What the ledger is asked to record.
    claim: NewClaim,
    /// The entry step 1 writes when the key is absent.
    tentative: Entry,
    /// Whether the caller named a claimant (its retry may be handed the claim back).
    reentrant: bool,
}

impl Pending {
    /// How long the tentative entry may live: never longer than the lease.
    fn tentative_ttl(&self) -> Duration {
        self.claim.lease.min(TENTATIVE_TTL)
    }
}

/// Who releases an `ACQUIRED` whose caller goes away before it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// The claim itself, while it writes the hot tier.
    Own,
    /// The batch it is part of, until the whole batch is answered.
    Batch,
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
    /// Whose spend it is, and how much.
    pub spend: Spend,
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
    /// A live claim holds the key, and only a forced forget deletes it.
    #[error("the key holds a live claim")]
    Held,
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
    policies: Arc<PolicyBook>,
    /// Re-reads the policies until the engine is dropped.
    refresher: tokio::task::JoinHandle<()>,
    audit: Audit,
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

impl Engine {
    /// An engine over `ledger` and `hot`; every ledger call is cut off after
    /// `ledger_timeout` and reported as unavailable. Starts reading the namespaces'
    /// policies and writing the audit trail (it must run inside a Tokio runtime).
    pub fn new(
        ledger: Arc<dyn Ledger>,
        hot: Arc<dyn HotTier>,
        limits: Limits,
        ledger_timeout: Duration,
    ) -> Self {
        let policies = Arc::new(PolicyBook::default());
        let refresher = policies.spawn_refresher(ledger.clone());
        let audit = Audit::spawn(ledger.clone(), limits.retention.default);
        Self {
            ledger,
            hot,
            limits,
            ledger_timeout,
            policies,
            refresher,
            audit,
        }
    }

    /// The limits requests are validated against.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The policies as this sidecar knows them.
    pub fn policies(&self) -> &PolicyBook {
        &self.policies
    }

    /// The ledger, for the Admin API.
    pub fn ledger(&self) -> &dyn Ledger {
        self.ledger.as_ref()
    }

    /// Claims a key: see the module docs for the three steps.
    pub async fn claim(&self, command: ClaimCommand) -> Result<ClaimAnswer, EngineError> {
        let pending = self.pending(command);
        let (id, tentative) = (&pending.claim.id, &pending.tentative);
        let looked = self.hot.claim(id, tentative, pending.tentative_ttl()).await;
        let hot = match self.read_hot(&pending, looked) {
            Ok(answer) => {
                self.audit_claim(&pending, &answer);
                return Ok(answer);
            }
            Err(hot) => hot,
        };
        let asked_at = Instant::now();
        match self
            .ledger_call("claim", self.ledger.claim(&pending.claim))
            .await
        {
            Ok(decision) => {
                let answer = self
                    .settle(&pending, hot, asked_at, decision, Guard::Own)
                    .await;
                self.audit_claim(&pending, &answer);
                Ok(answer)
            }
            Err(error) => {
                self.abandon(&pending, hot).await;
                Err(error)
            }
        }
    }

    /// A claim made ready for its three steps.
    fn pending(&self, command: ClaimCommand) -> Pending {
        metrics::claim_attempt(&command.id.namespace, command.attempt);
        let reentrant = !command.claimant.is_empty();
        let tentative = Entry::tentative(command.fingerprint.clone(), rand::random());
        let guarded = self.policies.guarded(&command.id.namespace);
        Pending {
            claim: NewClaim {
                id: command.id,
                fingerprint: command.fingerprint,
                lease: command.lease,
                abandon_after: self.limits.retention.default,
                claimant: if reentrant {
                    command.claimant
                } else {
                    Claimant::random()
                },
                spend: command.spend,
                guarded,
            },
            tentative,
            reentrant,
        }
    }

    /// Step 1's verdict on what the hot tier did: the answer, or how the ledger must
    /// be asked.
    fn read_hot(
        &self,
        pending: &Pending,
        looked: Result<Option<Cached>, CacheError>,
    ) -> Result<ClaimAnswer, HotLookup> {
        match looked {
            Ok(None) => {
                metrics::cache_lookup("miss");
                Err(HotLookup::WroteTentative)
            }
            Ok(Some(existing)) => {
                let fingerprint = &pending.claim.fingerprint;
                if let Some(outcome) = answer_from_cache(existing, fingerprint, pending.reentrant) {
                    metrics::cache_lookup("hit");
                    return Ok(answered(outcome, Tier::Cache));
                }
                metrics::cache_lookup("defer");
                Err(HotLookup::Deferred)
            }
            // An entry from a newer version stands: it answers nothing, but the key is
            // not ours either.
            Err(CacheError::UnknownKind) => {
                metrics::cache_lookup("defer");
                Err(HotLookup::Deferred)
            }
            Err(CacheError::CircuitOpen) => {
                metrics::cache_lookup("bypass");
                Err(HotLookup::Unreachable)
            }
            Err(error) => {
                metrics::cache_lookup("error");
                tracing::debug!(id = %pending.claim.id, error = %error, "hot tier lookup failed; asking the ledger");
                Err(HotLookup::Unreachable)
            }
        }
    }

    /// The ledger failed a claim: it fails closed, and its own tentative entry goes.
    async fn abandon(&self, pending: &Pending, hot: HotLookup) {
        if hot == HotLookup::WroteTentative {
            let _ = self
                .hot
                .replace(&pending.claim.id, &pending.tentative, None)
                .await;
        }
    }

    /// Step 3: the answer to the ledger's `decision`, with what the ledger confirmed
    /// cached. `guard` says who releases an `ACQUIRED` whose caller goes away before
    /// it is answered.
    async fn settle(
        &self,
        pending: &Pending,
        hot: HotLookup,
        asked_at: Instant,
        decision: ClaimDecision,
        guard: Guard,
    ) -> ClaimAnswer {
        let Pending {
            claim, tentative, ..
        } = pending;
        let (id, fingerprint) = (&claim.id, &claim.fingerprint);
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
                    self.audit.record(
                        id,
                        &claim.spend.subject,
                        EventKind::Takeover,
                        format!("token {}", token.get()),
                    );
                    tracing::info!(%id, token = token.get(), "took over an expired lease");
                }
                let confirmed = Entry::in_progress(stored, lease_expires_at);
                // A lease already over by now is the ledger's to judge: nothing cached.
                let lease = time_left(lease_expires_at, now, asked_at).unwrap_or_default();
                match hot {
                    // Our own tentative entry already answers duplicates IN_PROGRESS
                    // for as long as a holder usually needs (past it, they ask the
                    // ledger and cache its answer): confirming it would cost every
                    // new operation one more hot-tier command.
                    HotLookup::WroteTentative if confirmed.fingerprint() == fingerprint => {}
                    // A takeover without a fingerprint kept the stored one, which the
                    // tentative entry does not carry. Off the reply path; replacing
                    // only our own tentative entry means a late write can never undo
                    // the holder's Complete or Release that overtook it.
                    HotLookup::WroteTentative => {
                        let (hot, id, tentative) =
                            (self.hot.clone(), id.clone(), tentative.clone());
                        tokio::spawn(async move {
                            let _ = hot
                                .replace(&id, &tentative, Some((&confirmed, lease)))
                                .await;
                        });
                    }
                    HotLookup::Deferred | HotLookup::Unreachable => {
                        if !lease.is_zero() {
                            let held =
                                (guard == Guard::Own).then(|| Unanswered::new(self, id, token));
                            let _ = self.hot.put(id, &confirmed, lease).await;
                            if let Some(held) = held {
                                held.answered();
                            }
                        }
                    }
                }
                answered(
                    Outcome::Acquired {
                        token,
                        lease_expires_at,
                    },
                    Tier::Ledger,
                )
            }
            ClaimDecision::Refused { refusal, now } => {
                // Nothing was stored: the key is as free as it was.
                self.abandon(pending, hot).await;
                metrics::policy_rejection(&id.namespace, refusal.label());
                let outcome = match refusal {
                    Refusal::Blocked { reason } => Outcome::Blocked { reason },
                    Refusal::OverBudget { limit, window_end } => Outcome::OverBudget {
                        limit,
                        retry_after: time_left(window_end, now, asked_at).unwrap_or_default(),
                    },
                };
                answered(outcome, Tier::Ledger)
            }
            ClaimDecision::Existing { record, now } => {
                let outcome = answer_from_record(&record, fingerprint, now);
                let confirmed = confirmed_entry(&record, now, asked_at);
                let confirmed = confirmed.as_ref().map(|(entry, ttl)| (entry, *ttl));
                match (hot, confirmed) {
                    (HotLookup::WroteTentative, replacement) => {
                        let _ = self.hot.replace(id, tentative, replacement).await;
                    }
                    // Someone else's entry stands: only a completed record may be
                    // written over it — it is immutable, so writing it cannot undo
                    // anyone else's change.
                    (HotLookup::Deferred, Some((entry, ttl))) if entry.is_completed() => {
                        let _ = self.hot.put(id, entry, ttl).await;
                    }
                    _ => {}
                }
                answered(outcome, Tier::Ledger)
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
                let _ = match completed_entry(&completion, fingerprint, response, now, asked_at) {
                    Some((entry, ttl)) => self.hot.put(&command.id, &entry, ttl).await,
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
        self.audit.record(
            id,
            &Subject::default(),
            EventKind::Release,
            format!("token {}", token.get()),
        );
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
        if let Some(left) = time_left(extended.lease_expires_at, extended.now, asked_at) {
            let entry = Entry::in_progress(extended.fingerprint, extended.lease_expires_at);
            let _ = self.hot.put(id, &entry, left).await;
        }
        Ok(extended.lease_expires_at)
    }

    /// Deletes the record of `id` (a live claim only with `force`) from the ledger and
    /// then from the hot tier; other sidecars drop their copies on the ledger's word.
    /// `false`: there was no record.
    pub async fn forget(&self, id: &RecordId, force: bool) -> Result<bool, EngineError> {
        let forgotten = self
            .ledger_call("forget", self.ledger.forget(id, force))
            .await?;
        match forgotten {
            Forgotten::Held => Err(EngineError::Held),
            Forgotten::Absent | Forgotten::Deleted => {
                // After the ledger, and once more when every claim that read the record
                // before it went has written what it read (each within the ledger
                // timeout), so no cached copy outlives the record.
                let _ = self.hot.remove(id).await;
                self.hot.evict_local(id);
                let (hot, id_again, settle) = (self.hot.clone(), id.clone(), self.ledger_timeout);
                tokio::spawn(async move {
                    tokio::time::sleep(settle).await;
                    let _ = hot.remove(&id_again).await;
                    hot.evict_local(&id_again);
                });
                if forgotten == Forgotten::Deleted {
                    tracing::info!(%id, force, "forgot a record");
                    let detail = if force { "forced" } else { "" };
                    self.audit.record(
                        id,
                        &Subject::default(),
                        EventKind::Forget,
                        detail.to_owned(),
                    );
                }
                Ok(forgotten == Forgotten::Deleted)
            }
        }
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

fn answered(outcome: Outcome, served_by: Tier) -> ClaimAnswer {
    metrics::claim_answered(outcome.label(), served_by.as_str());
    ClaimAnswer { outcome, served_by }
}
