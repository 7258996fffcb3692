//! The rules of docs/PROTOCOL.md, one at a time, on the happy paths and the
//! fencing paths.

use std::time::Duration;

use onceward::proto::{Outcome, RecordState, Tier};
use tonic::Code;

use crate::harness::*;

on_every_pairing!(
    a_new_key_is_acquired_a_held_key_is_in_progress_and_a_completed_key_replays_from_the_cache,
    an_expired_lease_is_taken_over_with_a_larger_token_and_the_old_holder_is_fenced_off,
    complete_after_the_lease_expired_still_succeeds_when_nobody_took_over,
    a_retried_complete_with_the_same_token_is_ok_and_changes_nothing,
    release_lets_the_next_claim_acquire_at_once_and_a_retried_release_is_refused,
    extend_lease_keeps_a_claim_from_being_taken_over,
    unknown_keys_and_made_up_tokens_are_refused_with_failed_precondition,
    a_different_fingerprint_is_a_mismatch_from_the_cache_and_from_the_ledger,
    the_same_key_in_two_namespaces_lives_two_independent_lives,
    lookup_reports_the_record_without_its_token,
    a_takeover_without_a_fingerprint_keeps_the_stored_one_in_both_tiers,
    concurrent_retries_of_one_complete_all_succeed_and_store_one_response,
    a_complete_right_after_the_claim_is_never_undone_by_the_claims_own_cache_write,
);

async fn a_new_key_is_acquired_a_held_key_is_in_progress_and_a_completed_key_replays_from_the_cache(
    pairing: Pairing,
) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();

    let first = claim(&mut client, "payments", "order-1").await;
    assert_eq!(outcome(&first), Outcome::Acquired);
    assert_eq!(tier(&first), Tier::Ledger);
    assert!(first.fencing_token > 0);

    let duplicate = claim(&mut client, "payments", "order-1").await;
    assert_eq!(outcome(&duplicate), Outcome::InProgress);
    assert_eq!(
        duplicate.fencing_token, 0,
        "a token only ever goes to its claimer"
    );
    let retry_after = duplicate.retry_after.expect("retry_after with IN_PROGRESS");
    assert!(retry_after.seconds > 0 || retry_after.nanos > 0);

    let stored = b"\x00charge ch_123 \xff".to_vec();
    let done = complete(
        &mut client,
        "payments",
        "order-1",
        first.fencing_token,
        &stored,
    )
    .await
    .expect("complete");
    assert!(done.expires_at.is_some());

    let replay = claim(&mut client, "payments", "order-1").await;
    assert_eq!(outcome(&replay), Outcome::Completed);
    assert_eq!(replay.response, stored, "the exact bytes");
    assert_eq!(tier(&replay), Tier::Cache);
    assert!(replay.completed_at.is_some());
}

async fn an_expired_lease_is_taken_over_with_a_larger_token_and_the_old_holder_is_fenced_off(
    pairing: Pairing,
) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();
    let lease = Duration::from_millis(200);

    let old = claim_with(&mut client, "jobs", "nightly", b"", Some(lease)).await;
    assert_eq!(outcome(&old), Outcome::Acquired);
    tokio::time::sleep(lease + Duration::from_millis(100)).await;

    let new = claim_with(
        &mut client,
        "jobs",
        "nightly",
        b"",
        Some(Duration::from_secs(30)),
    )
    .await;
    assert_eq!(outcome(&new), Outcome::Acquired, "takeover after expiry");
    assert!(new.fencing_token > old.fencing_token);

    let before = lookup(&mut client, "jobs", "nightly")
        .await
        .record
        .expect("record");
    fn code<T>(result: Result<T, tonic::Status>) -> Code {
        result.map(drop).unwrap_err().code()
    }
    assert_eq!(
        code(complete(&mut client, "jobs", "nightly", old.fencing_token, b"stale").await),
        Code::FailedPrecondition
    );
    assert_eq!(
        code(release(&mut client, "jobs", "nightly", old.fencing_token).await),
        Code::FailedPrecondition
    );
    assert_eq!(
        code(
            extend(
                &mut client,
                "jobs",
                "nightly",
                old.fencing_token,
                Duration::from_secs(60)
            )
            .await
        ),
        Code::FailedPrecondition
    );
    let after = lookup(&mut client, "jobs", "nightly")
        .await
        .record
        .expect("record");
    assert_eq!(before, after, "a fenced-off holder changes nothing");
    assert_eq!(after.state(), RecordState::InProgress);

    complete(&mut client, "jobs", "nightly", new.fencing_token, b"ran")
        .await
        .expect("the new holder completes");
    assert_eq!(app.metric("onceward_takeovers_total", &[]).await, 1.0);
    assert_eq!(
        app.metric("onceward_fencing_rejections_total", &[("rpc", "complete")])
            .await,
        1.0
    );
}

async fn complete_after_the_lease_expired_still_succeeds_when_nobody_took_over(pairing: Pairing) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();
    let held = claim_with(
        &mut client,
        "jobs",
        "slow",
        b"",
        Some(Duration::from_millis(100)),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    complete(
        &mut client,
        "jobs",
        "slow",
        held.fencing_token,
        b"late but mine",
    )
    .await
    .expect("still the holder");
    let replay = claim(&mut client, "jobs", "slow").await;
    assert_eq!(outcome(&replay), Outcome::Completed);
    assert_eq!(replay.response, b"late but mine");
}

async fn a_retried_complete_with_the_same_token_is_ok_and_changes_nothing(pairing: Pairing) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();
    let held = claim(&mut client, "mail", "welcome-7").await;
    let first = complete(
        &mut client,
        "mail",
        "welcome-7",
        held.fencing_token,
        b"sent",
    )
    .await
    .expect("complete");
    let record = lookup(&mut client, "mail", "welcome-7")
        .await
        .record
        .expect("record");

    let retried = complete(
        &mut client,
        "mail",
        "welcome-7",
        held.fencing_token,
        b"something else",
    )
    .await
    .expect("a retry of a successful Complete is OK");
    assert_eq!(retried.expires_at, first.expires_at);
    let unchanged = lookup(&mut client, "mail", "welcome-7")
        .await
        .record
        .expect("record");
    assert_eq!(unchanged, record);
    assert_eq!(unchanged.response, b"sent");
    assert_eq!(unchanged.state(), RecordState::Completed);
}

async fn release_lets_the_next_claim_acquire_at_once_and_a_retried_release_is_refused(
    pairing: Pairing,
) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();
    let held = claim(&mut client, "sms", "otp-1").await;
    release(&mut client, "sms", "otp-1", held.fencing_token)
        .await
        .expect("release");

    let again = claim(&mut client, "sms", "otp-1").await;
    assert_eq!(
        outcome(&again),
        Outcome::Acquired,
        "no waiting for the old lease"
    );
    assert!(
        again.fencing_token > held.fencing_token,
        "tokens stay monotonic across Release"
    );

    let retried = release(&mut client, "sms", "otp-1", held.fencing_token).await;
    assert_eq!(
        retried.unwrap_err().code(),
        Code::FailedPrecondition,
        "not yours any more"
    );
    let record = lookup(&mut client, "sms", "otp-1").await;
    assert!(record.found, "the new holder's claim is untouched");
}

async fn extend_lease_keeps_a_claim_from_being_taken_over(pairing: Pairing) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();
    let lease = Duration::from_millis(300);
    let held = claim_with(&mut client, "jobs", "report", b"", Some(lease)).await;
    let extended = extend(
        &mut client,
        "jobs",
        "report",
        held.fencing_token,
        Duration::from_secs(30),
    )
    .await
    .expect("extend");
    assert!(extended.lease_expires_at.is_some());

    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let other = claim(&mut client, "jobs", "report").await;
    assert_eq!(outcome(&other), Outcome::InProgress);
    complete(&mut client, "jobs", "report", held.fencing_token, b"ok")
        .await
        .expect("still the holder");
}

async fn unknown_keys_and_made_up_tokens_are_refused_with_failed_precondition(pairing: Pairing) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();
    for token in [0, 1, 42, u64::MAX] {
        let refused = complete(&mut client, "payments", "never-claimed", token, b"x").await;
        assert_eq!(refused.unwrap_err().code(), Code::FailedPrecondition);
    }
    let held = claim(&mut client, "payments", "claimed").await;
    let wrong = complete(
        &mut client,
        "payments",
        "claimed",
        held.fencing_token + 1,
        b"x",
    )
    .await;
    assert_eq!(wrong.unwrap_err().code(), Code::FailedPrecondition);
    assert!(!lookup(&mut client, "payments", "never-claimed").await.found);
}

async fn a_different_fingerprint_is_a_mismatch_from_the_cache_and_from_the_ledger(
    pairing: Pairing,
) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();
    let held = claim_with(&mut client, "payments", "order-9", b"amount=10", None).await;

    assert_mismatch_until_cached(&app, "payments", "order-9", b"amount=99").await;

    complete(
        &mut client,
        "payments",
        "order-9",
        held.fencing_token,
        b"ok",
    )
    .await
    .expect("complete");
    let cached = claim_with(&mut client, "payments", "order-9", b"amount=99", None).await;
    assert_eq!(outcome(&cached), Outcome::FingerprintMismatch);
    assert_eq!(tier(&cached), Tier::Cache);

    // Forget the key in the hot tier: the ledger must say the same.
    app.forget("payments", "order-9").await;
    let from_ledger = claim_with(&mut client, "payments", "order-9", b"amount=99", None).await;
    assert_eq!(outcome(&from_ledger), Outcome::FingerprintMismatch);
    assert_eq!(tier(&from_ledger), Tier::Ledger);

    // An empty fingerprint, sent or stored, never mismatches.
    let empty = claim_with(&mut client, "payments", "order-9", b"", None).await;
    assert_eq!(outcome(&empty), Outcome::Completed);
    let record = lookup(&mut client, "payments", "order-9")
        .await
        .record
        .unwrap();
    assert_eq!(
        record.fingerprint, b"amount=10",
        "a mismatch changes nothing"
    );
    assert_eq!(record.response, b"ok");
}

async fn the_same_key_in_two_namespaces_lives_two_independent_lives(pairing: Pairing) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();
    let a = claim(&mut client, "team-a", "same-key").await;
    let b = claim(&mut client, "team-b", "same-key").await;
    assert_eq!(outcome(&a), Outcome::Acquired);
    assert_eq!(outcome(&b), Outcome::Acquired);
    complete(&mut client, "team-a", "same-key", a.fencing_token, b"a")
        .await
        .unwrap();
    assert_eq!(
        outcome(&claim(&mut client, "team-b", "same-key").await),
        Outcome::InProgress
    );
}

async fn lookup_reports_the_record_without_its_token(pairing: Pairing) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();
    assert!(!lookup(&mut client, "payments", "nothing").await.found);
    let held = claim_with(
        &mut client,
        "payments",
        "order-2",
        b"fp",
        Some(Duration::from_secs(30)),
    )
    .await;
    let in_progress = lookup(&mut client, "payments", "order-2")
        .await
        .record
        .unwrap();
    assert_eq!(in_progress.state(), RecordState::InProgress);
    assert!(in_progress.lease_expires_at.is_some() && in_progress.completed_at.is_none());
    assert_eq!(in_progress.namespace, "payments");
    assert_eq!(in_progress.key, "order-2");

    complete(
        &mut client,
        "payments",
        "order-2",
        held.fencing_token,
        b"done",
    )
    .await
    .unwrap();
    let done = lookup(&mut client, "payments", "order-2")
        .await
        .record
        .unwrap();
    assert_eq!(done.state(), RecordState::Completed);
    assert_eq!(done.response, b"done");
    assert!(done.completed_at.is_some() && done.lease_expires_at.is_none());
    let expires = done.expires_at.unwrap().seconds - done.completed_at.unwrap().seconds;
    assert!(
        (86_399..=86_401).contains(&expires),
        "default retention is 24 h, got {expires}s"
    );
}

async fn a_takeover_without_a_fingerprint_keeps_the_stored_one_in_both_tiers(pairing: Pairing) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();
    let lease = Duration::from_millis(100);
    let first = claim_with(&mut client, "pay", "k", b"amount=10", Some(lease)).await;
    assert_eq!(outcome(&first), Outcome::Acquired);
    tokio::time::sleep(lease * 2).await;

    let takeover = claim_with(&mut client, "pay", "k", b"", None).await;
    assert_eq!(outcome(&takeover), Outcome::Acquired);
    assert_mismatch_until_cached(&app, "pay", "k", b"amount=99").await;
    app.forget("pay", "k").await;
    let other = claim_with(&mut client, "pay", "k", b"amount=99", None).await;
    assert_eq!(
        (outcome(&other), tier(&other)),
        (Outcome::FingerprintMismatch, Tier::Ledger)
    );
}

/// Claims with a mismatching fingerprint until the hot tier answers: every answer must
/// be a mismatch, from whichever tier. (The holder confirms its claim in the hot tier
/// off the reply path, so the first duplicates may still be decided by the ledger.)
async fn assert_mismatch_until_cached(
    app: &TestApp,
    namespace: &str,
    key: &str,
    fingerprint: &[u8],
) {
    let client = app.client.clone();
    let cached = eventually(Duration::from_secs(5), || {
        let mut client = client.clone();
        async move {
            let answer = claim_with(&mut client, namespace, key, fingerprint, None).await;
            assert_eq!(outcome(&answer), Outcome::FingerprintMismatch);
            tier(&answer) == Tier::Cache
        }
    })
    .await;
    assert!(cached, "the hot tier never answered the mismatch");
}

async fn concurrent_retries_of_one_complete_all_succeed_and_store_one_response(pairing: Pairing) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();
    let held = claim(&mut client, "mail", "digest").await;
    let mut retries = tokio::task::JoinSet::new();
    for attempt in 0..20u8 {
        let mut client = app.client.clone();
        retries.spawn(async move {
            complete(
                &mut client,
                "mail",
                "digest",
                held.fencing_token,
                &[attempt],
            )
            .await
            .expect("every retry of the holder's Complete is OK")
            .expires_at
        });
    }
    let expiries = retries.join_all().await;
    assert!(
        expiries.windows(2).all(|pair| pair[0] == pair[1]),
        "{expiries:?}"
    );
    let stored = lookup(&mut client, "mail", "digest")
        .await
        .record
        .unwrap()
        .response;
    assert_eq!(stored.len(), 1, "one of the responses, stored once");
    let replay = claim(&mut client, "mail", "digest").await;
    assert_eq!(replay.response, stored);
}

/// The holder's hot-tier entry outlives its reply (its tentative entry, or a confirmed
/// claim written off the reply path); the Complete right after must replace it, so
/// every later duplicate sees the completion.
async fn a_complete_right_after_the_claim_is_never_undone_by_the_claims_own_cache_write(
    pairing: Pairing,
) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();
    for i in 0..50 {
        let key = format!("quick-{i}");
        let held = claim(&mut client, "pay", &key).await;
        complete(&mut client, "pay", &key, held.fencing_token, b"done")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        for _ in 0..2 {
            let replay = claim(&mut client, "pay", &key).await;
            assert_eq!(outcome(&replay), Outcome::Completed, "{key}");
        }
    }
}
