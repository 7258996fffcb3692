//! The ledger contract: the rules every ledger keeps, one suite run on Postgres and on
//! SQLite, each driven directly (no sidecar, no hot tier in between). A ledger that
//! joins them runs this suite too; what only one ledger has (SQLite's file and its
//! write-ahead log, Postgres's batch writers) is tested next to it.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use onceward::domain::{
    Claimant, FencingToken, Fingerprint, IdempotencyKey, Namespace, Record, RecordId, RecordState,
};
use onceward::ledger::{ClaimDecision, CompleteDecision, Ledger, NewClaim, SqliteLedger};

/// Runs each named `async fn(Shared)` as a test of its own on each ledger:
/// `ledger::postgres::<name>` and `ledger::sqlite::<name>`.
macro_rules! on_both_ledgers {
    ($($test:ident),+ $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let db = crate::harness::TestDatabase::create().await;
                    super::$test(db.ledger().await).await
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let (ledger, _dir) = super::sqlite_ledger().await;
                    super::$test(ledger).await
                }
            )+
        }
    };
}

on_both_ledgers!(
    a_new_key_is_acquired_and_recorded_in_progress,
    a_duplicate_claim_on_a_live_lease_reports_the_standing_record,
    an_expired_lease_is_taken_over_with_a_larger_token,
    complete_stores_the_response_and_a_retry_returns_it_unchanged,
    complete_with_an_empty_response_round_trips,
    a_completed_record_answers_only_the_token_that_completed_it,
    only_the_current_token_is_the_holder,
    complete_after_the_lease_ran_out_succeeds_if_nobody_took_over,
    release_frees_the_key_for_a_claim_with_a_larger_token,
    extend_lease_moves_the_lease_and_the_abandonment_horizon,
    fingerprints_must_match_unless_one_side_is_empty,
    fifty_concurrent_claims_on_one_key_acquire_exactly_once,
    tokens_increase_across_keys_and_releases,
    an_unheld_claim_is_released_unless_its_claimant_has_it_back,
);

/// Every ledger, as the engine holds it.
type Shared = Arc<dyn Ledger>;

const LEASE: Duration = Duration::from_secs(30);
const ABANDON: Duration = Duration::from_secs(3600);
const RETENTION: Duration = Duration::from_secs(86_400);

/// A fresh SQLite ledger in a directory of its own, which lives as long as the guard.
async fn sqlite_ledger() -> (Shared, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let ledger = SqliteLedger::connect(path.to_str().unwrap(), &Default::default())
        .await
        .unwrap();
    (Arc::new(ledger), dir)
}

fn id(key: &str) -> RecordId {
    RecordId {
        namespace: Namespace::try_from("test".to_owned()).unwrap(),
        key: IdempotencyKey::try_from(key.to_owned()).unwrap(),
    }
}

fn fp(bytes: &[u8]) -> Fingerprint {
    Fingerprint::try_from(bytes.to_vec()).unwrap()
}

fn new_claim(key: &str, fingerprint: &[u8], lease: Duration) -> NewClaim {
    NewClaim {
        id: id(key),
        fingerprint: fp(fingerprint),
        lease,
        abandon_after: ABANDON,
        claimant: Claimant::random(),
        spend: Default::default(),
        guarded: false,
    }
}

/// Claims and expects to acquire; returns the token and whether it took over.
async fn acquire(ledger: &Shared, claim: &NewClaim) -> (FencingToken, bool) {
    match ledger.claim(claim).await.unwrap() {
        ClaimDecision::Acquired {
            token, takeover, ..
        } => (token, takeover),
        other => panic!("expected Acquired, got {other:?}"),
    }
}

async fn existing(ledger: &Shared, claim: &NewClaim) -> Record {
    match ledger.claim(claim).await.unwrap() {
        ClaimDecision::Existing { record, .. } => record,
        other => panic!("expected Existing, got {other:?}"),
    }
}

/// A lease short enough to run out within a test without a long sleep.
async fn expired_claim(ledger: &Shared, key: &str, fingerprint: &[u8]) -> FencingToken {
    let (token, _) = acquire(
        ledger,
        &new_claim(key, fingerprint, Duration::from_millis(1)),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    token
}

async fn a_new_key_is_acquired_and_recorded_in_progress(ledger: Shared) {
    let before = Utc::now();
    let decision = ledger.claim(&new_claim("k", b"fp", LEASE)).await.unwrap();
    let ClaimDecision::Acquired {
        token,
        lease_expires_at,
        takeover,
        ..
    } = decision
    else {
        panic!("expected Acquired, got {decision:?}");
    };
    assert!(token.get() > 0);
    assert!(!takeover);
    assert!(
        lease_expires_at
            >= before + chrono::Duration::seconds(30) - chrono::Duration::milliseconds(1)
    );

    let record = ledger.lookup(&id("k")).await.unwrap().unwrap();
    assert_eq!(record.state, RecordState::InProgress);
    assert_eq!(record.fingerprint, fp(b"fp"));
    assert_eq!(record.lease_expires_at, Some(lease_expires_at));
    assert_eq!(
        record.expires_at,
        lease_expires_at + chrono::Duration::seconds(3600)
    );
    assert_eq!(record.response, None);
    assert_eq!(ledger.lookup(&id("unknown")).await.unwrap(), None);
}

async fn a_duplicate_claim_on_a_live_lease_reports_the_standing_record(ledger: Shared) {
    acquire(&ledger, &new_claim("k", b"fp", LEASE)).await;
    let decision = ledger.claim(&new_claim("k", b"fp", LEASE)).await.unwrap();
    let ClaimDecision::Existing { record, now } = decision else {
        panic!("expected Existing, got {decision:?}");
    };
    assert_eq!(record.state, RecordState::InProgress);
    assert!(record.lease_expires_at.unwrap() > now);
}

async fn an_expired_lease_is_taken_over_with_a_larger_token(ledger: Shared) {
    let first = expired_claim(&ledger, "k", b"fp").await;
    let created_at = ledger.lookup(&id("k")).await.unwrap().unwrap().created_at;

    let (second, takeover) = acquire(&ledger, &new_claim("k", b"fp", LEASE)).await;
    assert!(second > first);
    assert!(takeover);
    let record = ledger.lookup(&id("k")).await.unwrap().unwrap();
    assert_eq!(
        record.created_at, created_at,
        "a takeover keeps the key's age"
    );

    // The old holder lost the key: none of its writes land.
    assert!(!ledger.release(&id("k"), first).await.unwrap());
    assert_eq!(
        ledger
            .extend_lease(&id("k"), first, LEASE, ABANDON)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        ledger
            .complete(&id("k"), first, b"late".to_vec(), RETENTION)
            .await
            .unwrap(),
        CompleteDecision::NotHolder
    );
}

async fn complete_stores_the_response_and_a_retry_returns_it_unchanged(ledger: Shared) {
    let (token, _) = acquire(&ledger, &new_claim("k", b"fp", LEASE)).await;

    let first = ledger
        .complete(&id("k"), token, b"charged".to_vec(), RETENTION)
        .await
        .unwrap();
    let CompleteDecision::Completed {
        completion,
        fingerprint,
        response,
        now: first_now,
    } = first.clone()
    else {
        panic!("expected Completed, got {first:?}");
    };
    assert_eq!(fingerprint, fp(b"fp"));
    assert_eq!(response, b"charged");
    assert_eq!(
        completion.expires_at - completion.completed_at,
        chrono::Duration::seconds(86_400)
    );

    let retry = ledger
        .complete(
            &id("k"),
            token,
            b"different".to_vec(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    // A retry changes nothing (only the clock it was answered at differs).
    let at_first_clock = match retry {
        CompleteDecision::Completed {
            completion,
            fingerprint,
            response,
            ..
        } => CompleteDecision::Completed {
            completion,
            fingerprint,
            response,
            now: first_now,
        },
        other => other,
    };
    assert_eq!(at_first_clock, first, "a retry changes nothing");

    let record = ledger.lookup(&id("k")).await.unwrap().unwrap();
    assert_eq!(record.state, RecordState::Completed);
    assert_eq!(record.response.as_deref(), Some(&b"charged"[..]));
    assert_eq!(record.lease_expires_at, None);
    assert_eq!(record.completed_at, Some(completion.completed_at));

    // A completed record is never taken over, released or extended.
    assert_eq!(
        existing(&ledger, &new_claim("k", b"fp", LEASE)).await.state,
        RecordState::Completed
    );
    assert!(!ledger.release(&id("k"), token).await.unwrap());
    assert_eq!(
        ledger
            .extend_lease(&id("k"), token, LEASE, ABANDON)
            .await
            .unwrap(),
        None
    );
}

async fn complete_with_an_empty_response_round_trips(ledger: Shared) {
    let (token, _) = acquire(&ledger, &new_claim("k", b"", LEASE)).await;
    let done = ledger
        .complete(&id("k"), token, b"".to_vec(), RETENTION)
        .await
        .unwrap();
    assert!(matches!(
        done,
        CompleteDecision::Completed { ref response, ref fingerprint, .. }
            if response.is_empty() && fingerprint.as_bytes().is_empty()
    ));
    let record = ledger.lookup(&id("k")).await.unwrap().unwrap();
    assert_eq!(record.response.unwrap_or_default(), Vec::<u8>::new());
}

async fn a_completed_record_answers_only_the_token_that_completed_it(ledger: Shared) {
    let first = expired_claim(&ledger, "k", b"").await;
    let (second, _) = acquire(&ledger, &new_claim("k", b"", LEASE)).await;
    assert!(matches!(
        ledger
            .complete(&id("k"), second, b"done".to_vec(), RETENTION)
            .await
            .unwrap(),
        CompleteDecision::Completed { .. }
    ));

    // The holder it was taken over from, and any later token, is not the holder.
    for stranger in [first, FencingToken::new(second.get() + 1)] {
        assert_eq!(
            ledger
                .complete(&id("k"), stranger, b"late".to_vec(), RETENTION)
                .await
                .unwrap(),
            CompleteDecision::NotHolder
        );
    }
    let record = ledger.lookup(&id("k")).await.unwrap().unwrap();
    assert_eq!(record.response.as_deref(), Some(&b"done"[..]));
}

async fn only_the_current_token_is_the_holder(ledger: Shared) {
    let (token, _) = acquire(&ledger, &new_claim("k", b"", LEASE)).await;
    let strangers = [
        FencingToken::new(0),
        FencingToken::new(token.get() + 1),
        FencingToken::new(i64::MAX as u64 + 1),
        FencingToken::new(u64::MAX),
    ];
    for stranger in strangers {
        assert_eq!(
            ledger
                .complete(&id("k"), stranger, b"x".to_vec(), RETENTION)
                .await
                .unwrap(),
            CompleteDecision::NotHolder
        );
        assert!(!ledger.release(&id("k"), stranger).await.unwrap());
        assert_eq!(
            ledger
                .extend_lease(&id("k"), stranger, LEASE, ABANDON)
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(
        ledger
            .complete(&id("unknown"), token, b"x".to_vec(), RETENTION)
            .await
            .unwrap(),
        CompleteDecision::NotHolder
    );
    // The holder was untouched by all of that.
    assert!(matches!(
        ledger
            .complete(&id("k"), token, b"x".to_vec(), RETENTION)
            .await
            .unwrap(),
        CompleteDecision::Completed { .. }
    ));
}

async fn complete_after_the_lease_ran_out_succeeds_if_nobody_took_over(ledger: Shared) {
    let token = expired_claim(&ledger, "k", b"").await;
    assert!(matches!(
        ledger
            .complete(&id("k"), token, b"ok".to_vec(), RETENTION)
            .await
            .unwrap(),
        CompleteDecision::Completed { .. }
    ));
}

async fn release_frees_the_key_for_a_claim_with_a_larger_token(ledger: Shared) {
    let (first, _) = acquire(&ledger, &new_claim("k", b"", LEASE)).await;
    assert!(ledger.release(&id("k"), first).await.unwrap());
    assert_eq!(ledger.lookup(&id("k")).await.unwrap(), None);
    assert!(
        !ledger.release(&id("k"), first).await.unwrap(),
        "a retried release is not the holder any more"
    );

    let (second, takeover) = acquire(&ledger, &new_claim("k", b"", LEASE)).await;
    assert!(second > first);
    assert!(!takeover);
}

async fn extend_lease_moves_the_lease_and_the_abandonment_horizon(ledger: Shared) {
    let (token, _) = acquire(&ledger, &new_claim("k", b"fp", Duration::from_secs(1))).await;
    let before = ledger.lookup(&id("k")).await.unwrap().unwrap();

    let extended = ledger
        .extend_lease(&id("k"), token, Duration::from_secs(600), ABANDON)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(extended.fingerprint, fp(b"fp"));
    assert!(extended.lease_expires_at > before.lease_expires_at.unwrap());

    let after = ledger.lookup(&id("k")).await.unwrap().unwrap();
    assert_eq!(after.lease_expires_at, Some(extended.lease_expires_at));
    assert_eq!(
        after.expires_at,
        extended.lease_expires_at + chrono::Duration::seconds(3600)
    );

    // A shorter extension moves the lease back but never the abandonment horizon.
    let shorter = ledger
        .extend_lease(
            &id("k"),
            token,
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .await
        .unwrap()
        .unwrap();
    let last = ledger.lookup(&id("k")).await.unwrap().unwrap();
    assert_eq!(last.lease_expires_at, Some(shorter.lease_expires_at));
    assert_eq!(last.expires_at, after.expires_at);

    // An extended lease is live: a duplicate claim does not take it over.
    existing(&ledger, &new_claim("k", b"fp", LEASE)).await;
}

async fn fingerprints_must_match_unless_one_side_is_empty(ledger: Shared) {
    // An expired lease under another fingerprint is not taken over.
    expired_claim(&ledger, "k", b"a").await;
    let standing = existing(&ledger, &new_claim("k", b"b", LEASE)).await;
    assert_eq!(standing.fingerprint, fp(b"a"));

    // An empty request fingerprint takes over and keeps the stored one.
    let (_, takeover) = acquire(&ledger, &new_claim("k", b"", Duration::from_millis(1))).await;
    assert!(takeover);
    assert_eq!(
        ledger.lookup(&id("k")).await.unwrap().unwrap().fingerprint,
        fp(b"a")
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    existing(&ledger, &new_claim("k", b"b", LEASE)).await;

    // An empty stored fingerprint takes the request's on takeover.
    expired_claim(&ledger, "empty", b"").await;
    acquire(&ledger, &new_claim("empty", b"c", LEASE)).await;
    assert_eq!(
        ledger
            .lookup(&id("empty"))
            .await
            .unwrap()
            .unwrap()
            .fingerprint,
        fp(b"c")
    );
}

async fn fifty_concurrent_claims_on_one_key_acquire_exactly_once(ledger: Shared) {
    let claims: Vec<_> = (0..50)
        .map(|_| {
            let ledger = ledger.clone();
            tokio::spawn(async move { ledger.claim(&new_claim("k", b"fp", LEASE)).await })
        })
        .collect();
    let mut acquired = 0;
    for claim in claims {
        match claim.await.unwrap() {
            Ok(ClaimDecision::Acquired { .. }) => acquired += 1,
            Ok(ClaimDecision::Existing { .. }) => {}
            Ok(refused @ ClaimDecision::Refused { .. }) => panic!("no policy, yet {refused:?}"),
            Err(error) => panic!("a concurrent claim failed: {error:?}"),
        }
    }
    assert_eq!(acquired, 1);
}

async fn tokens_increase_across_keys_and_releases(ledger: Shared) {
    let mut last = FencingToken::new(0);
    for round in 0..5 {
        for key in ["a", "b", "c"] {
            let (token, _) = acquire(&ledger, &new_claim(key, b"", LEASE)).await;
            assert!(
                token > last,
                "round {round} key {key}: {token:?} after {last:?}"
            );
            last = token;
            assert!(ledger.release(&id(key), token).await.unwrap());
        }
    }

    // Concurrent claims on distinct keys never share a token.
    let claims: Vec<_> = (0..40)
        .map(|n| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                acquire(&ledger, &new_claim(&format!("k{n}"), b"", LEASE))
                    .await
                    .0
            })
        })
        .collect();
    let mut tokens = Vec::new();
    for claim in claims {
        tokens.push(claim.await.unwrap());
    }
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 40);
    assert!(tokens[0] > last);
}

/// The claimant's retry and the release of a claim that committed after its first
/// caller gave up never both win: once a claim was handed back to its claimant,
/// somebody holds it, and the release leaves it alone.
async fn an_unheld_claim_is_released_unless_its_claimant_has_it_back(ledger: Shared) {
    // Nobody came back for this one: released.
    let alone = new_claim("alone", b"", LEASE);
    let (token, _) = acquire(&ledger, &alone).await;
    assert!(ledger.release_unheld(&alone.id, token).await.unwrap());
    assert!(ledger.lookup(&alone.id).await.unwrap().is_none());

    // Its claimant's retry got it back first: it stays held.
    let first = new_claim("retried", b"", LEASE);
    let (token, _) = acquire(&ledger, &first).await;
    assert_eq!(
        acquire(&ledger, &first).await,
        (token, false),
        "the same claim back"
    );
    assert!(!ledger.release_unheld(&first.id, token).await.unwrap());
    assert!(ledger.lookup(&first.id).await.unwrap().is_some());
    // Its holder can still release it as usual.
    assert!(ledger.release(&first.id, token).await.unwrap());
}
