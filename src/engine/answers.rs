//! The engine's pure decisions: what a hot-tier entry or a standing ledger record
//! answers, and what the hot tier may keep of a ledger decision and for how long. No
//! I/O, and no clock but this host's monotonic one ([`time_left`]), so they are tested
//! without a ledger or a hot tier.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::cache::{Cached, Entry};
use crate::domain::{Completion, Fingerprint, Outcome, Record, RecordState};

/// The longest `retry_after` suggested for a live claim: holders usually complete
/// well before their lease runs out, so callers should look again sooner than that.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(1);
/// `retry_after` when a tentative entry answers: the claim behind it may be in its
/// ledger write, or already held.
const TENTATIVE_RETRY_AFTER: Duration = Duration::from_millis(25);

/// What a hot-tier entry may answer on its own, or `None` to ask the ledger. (An
/// entry of a kind this version does not know never gets here: the tier reports it as
/// `CacheError::UnknownKind`, and the engine asks the ledger.)
/// `reentrant`: the request names a claimant, so a claim in progress may be its own.
pub(super) fn answer_from_cache(
    cached: Cached,
    fingerprint: &Fingerprint,
    reentrant: bool,
) -> Option<Outcome> {
    let Cached { entry, ttl } = cached;
    let compatible = entry.is_compatible_with(fingerprint);
    match entry {
        Entry::Completed {
            response,
            completed_at,
            ..
        } if compatible => Some(Outcome::Completed {
            response,
            completed_at,
        }),
        Entry::Completed { .. } => Some(Outcome::FingerprintMismatch),
        // A lease that ran out may be taken over: only the ledger may decide that. The
        // entry's TTL is the lease's time left on the ledger's clock.
        Entry::InProgress { .. } if ttl.is_zero() => None,
        Entry::InProgress { .. } if !compatible => Some(Outcome::FingerprintMismatch),
        // Only the ledger can tell whether the claim is this claimant's own.
        Entry::InProgress { .. } | Entry::Tentative { .. } if reentrant => None,
        Entry::InProgress { .. } => Some(Outcome::InProgress {
            retry_after: retry_after(ttl),
        }),
        // Not confirmed by the ledger: it may only say "wait", never "mismatch".
        Entry::Tentative { .. } if compatible => Some(Outcome::InProgress {
            retry_after: TENTATIVE_RETRY_AFTER,
        }),
        Entry::Tentative { .. } => None,
    }
}

/// What a standing ledger record answers to a claim that did not acquire it.
pub(super) fn answer_from_record(
    record: &Record,
    fingerprint: &Fingerprint,
    now: DateTime<Utc>,
) -> Outcome {
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
pub(super) fn confirmed_entry(
    record: &Record,
    now: DateTime<Utc>,
    asked_at: Instant,
) -> Option<(Entry, Duration)> {
    match record.state {
        RecordState::Completed => Some((
            Entry::completed(
                record.fingerprint.clone(),
                record.response.clone().unwrap_or_default(),
                record.completed_at.unwrap_or(record.created_at),
                record.expires_at,
            ),
            time_left(record.expires_at, now, asked_at)?,
        )),
        RecordState::InProgress => {
            let lease_expires_at = record.lease_expires_at?;
            Some((
                Entry::in_progress(record.fingerprint.clone(), lease_expires_at),
                time_left(lease_expires_at, now, asked_at)?,
            ))
        }
    }
}

/// Time left until `at`, or `None` if it has passed.
fn remaining(at: DateTime<Utc>, now: DateTime<Utc>) -> Option<Duration> {
    (at - now).to_std().ok().filter(|left| !left.is_zero())
}

/// What the hot tier keeps of a completion the ledger stored at `now`: the completed
/// entry and its time left, or `None` when it has already expired (then the claim it
/// replaces must not stay cached either).
pub(super) fn completed_entry(
    completion: &Completion,
    fingerprint: Fingerprint,
    response: Vec<u8>,
    now: DateTime<Utc>,
    asked_at: Instant,
) -> Option<(Entry, Duration)> {
    let ttl = time_left(completion.expires_at, now, asked_at)?;
    let entry = Entry::completed(
        fingerprint,
        response,
        completion.completed_at,
        completion.expires_at,
    );
    Some((entry, ttl))
}

/// How long from now, on this host's monotonic clock, until the ledger's instant `at`:
/// the ledger's own reading of the time left (`at - ledger_now`, both on its clock),
/// less everything since the call that read it was sent at `asked_at` — so it errs
/// short, never long. `None` if nothing is left.
pub(super) fn time_left(
    at: DateTime<Utc>,
    ledger_now: DateTime<Utc>,
    asked_at: Instant,
) -> Option<Duration> {
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

    fn cached(entry: &Entry, ttl: Duration) -> Cached {
        Cached {
            entry: entry.clone(),
            ttl,
        }
    }

    const LIVE: Duration = Duration::from_secs(10);

    #[test]
    fn a_tentative_entry_never_answers_mismatch_or_completed() {
        let tentative = Entry::tentative(fp(b"a"), 7);
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
        let claim = Entry::in_progress(fp(b"a"), Utc::now() + chrono::Duration::hours(1));
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
        let claim = Entry::in_progress(fp(b"a"), Utc::now());
        let tentative = Entry::tentative(fp(b"a"), 7);
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
        let done = Entry::completed(fp(b"a"), b"charged".to_vec(), at, at);
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
