//! The claimant (docs/PROTOCOL.md): a Claim retried with its own claimant after its
//! reply was lost is acquired again with the same token, on every pairing of hot tier
//! and ledger; nobody else's claimant, and no claimant at all, gets that far.

use std::time::Duration;

use onceward::proto::onceward_client::OncewardClient;
use onceward::proto::{ClaimRequest, ClaimResponse, Outcome, Tier};
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::*;

on_every_pairing!(
    a_claim_retried_with_its_own_claimant_is_acquired_again_with_the_same_token,
    a_claimant_is_no_use_once_its_lease_ran_out_or_with_another_fingerprint,
    a_claim_retried_after_it_was_completed_or_released_gets_what_anyone_would,
);

const CLAIMANT: &[u8] = b"0123456789abcdef";
const OTHER: &[u8] = b"fedcba9876543210";

fn as_claimant(key: &str, claimant: &[u8], fingerprint: &[u8], attempt: u32) -> ClaimRequest {
    ClaimRequest {
        claimant: claimant.to_vec(),
        attempt,
        ..claim_request("claimant", key, fingerprint, None)
    }
}

async fn claim_as(
    client: &mut OncewardClient<Channel>,
    key: &str,
    claimant: &[u8],
    fingerprint: &[u8],
) -> ClaimResponse {
    client
        .claim(as_claimant(key, claimant, fingerprint, 1))
        .await
        .expect("claim")
        .into_inner()
}

async fn a_claim_retried_with_its_own_claimant_is_acquired_again_with_the_same_token(
    pairing: Pairing,
) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();

    let first = claim_as(&mut client, "order-1", CLAIMANT, b"fp").await;
    assert_eq!(outcome(&first), Outcome::Acquired);
    // The first answer was "lost": the retry is the same claim, not a second holder.
    for fingerprint in [&b"fp"[..], b""] {
        let retry = claim_as(&mut client, "order-1", CLAIMANT, fingerprint).await;
        assert_eq!(outcome(&retry), Outcome::Acquired);
        assert_eq!(retry.fencing_token, first.fencing_token);
        assert_eq!(
            tier(&retry),
            Tier::Ledger,
            "the hot tier never says ACQUIRED"
        );
        assert_eq!(
            retry.retry_after, None,
            "the same lease, not a shortened one"
        );
    }
    // Anyone else waits, from whichever tier answers.
    for other in [OTHER, b""] {
        let waiting = claim_as(&mut client, "order-1", other, b"fp").await;
        assert_eq!(outcome(&waiting), Outcome::InProgress);
        assert_eq!(waiting.fencing_token, 0);
    }
    complete(
        &mut client,
        "claimant",
        "order-1",
        first.fencing_token,
        b"ok",
    )
    .await
    .expect("the one token completes");

    // The claimant is a capability: Lookup has no field for it, and it is refused
    // over 64 bytes, naming the field and the limit.
    let record = lookup(&mut client, "claimant", "order-1").await;
    assert!(record.found);
    let too_long = client
        .claim(as_claimant("order-2", &[7; 65], b"", 1))
        .await
        .expect_err("65 bytes");
    assert_eq!(too_long.code(), Code::InvalidArgument);
    assert!(
        too_long.message().contains("claimant") && too_long.message().contains("64"),
        "{}",
        too_long.message()
    );
}

async fn a_claimant_is_no_use_once_its_lease_ran_out_or_with_another_fingerprint(pairing: Pairing) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();

    let mismatch = claim_as(&mut client, "order-3", CLAIMANT, b"fp-a").await;
    assert_eq!(outcome(&mismatch), Outcome::Acquired);
    let other_body = claim_as(&mut client, "order-3", CLAIMANT, b"fp-b").await;
    assert_eq!(outcome(&other_body), Outcome::FingerprintMismatch);

    let lease = Duration::from_millis(300);
    let short = client
        .claim(ClaimRequest {
            claimant: CLAIMANT.to_vec(),
            ..claim_request("claimant", "order-4", b"", Some(lease))
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome(&short), Outcome::Acquired);
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    // After the lease, the usual takeover, whoever asks: a new, larger token.
    let after = claim_as(&mut client, "order-4", CLAIMANT, b"").await;
    assert_eq!(outcome(&after), Outcome::Acquired);
    assert!(after.fencing_token > short.fencing_token);
    let again = claim_as(&mut client, "order-4", CLAIMANT, b"").await;
    assert_eq!(again.fencing_token, after.fencing_token);
}

async fn a_claim_retried_after_it_was_completed_or_released_gets_what_anyone_would(
    pairing: Pairing,
) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();

    let done = claim_as(&mut client, "order-5", CLAIMANT, b"").await;
    complete(&mut client, "claimant", "order-5", done.fencing_token, b"r")
        .await
        .unwrap();
    let replay = claim_as(&mut client, "order-5", CLAIMANT, b"").await;
    assert_eq!(outcome(&replay), Outcome::Completed);
    assert_eq!(replay.response, b"r");

    let released = claim_as(&mut client, "order-6", CLAIMANT, b"").await;
    release(&mut client, "claimant", "order-6", released.fencing_token)
        .await
        .unwrap();
    let fresh = claim_as(&mut client, "order-6", CLAIMANT, b"").await;
    assert_eq!(outcome(&fresh), Outcome::Acquired);
    assert!(fresh.fencing_token > released.fencing_token);
}

#[tokio::test]
async fn claims_are_counted_by_namespace_and_attempt() {
    let app = TestApp::builder().spawn().await;
    let mut client = app.client.clone();
    for (key, attempt) in [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("a", 4), ("a", 9)] {
        client
            .claim(as_claimant(key, CLAIMANT, b"", attempt))
            .await
            .unwrap();
    }
    // Attempt 0 means "not given": not counted.
    client
        .claim(claim_request("claimant", "c", b"", None))
        .await
        .unwrap();
    let metrics = app.metrics().await;
    let count = |attempt: &str| {
        metric_value(
            &metrics,
            "onceward_claim_attempts_total",
            &[("namespace", "claimant"), ("attempt", attempt)],
        )
    };
    assert_eq!(
        [count("1"), count("2"), count("3"), count("4+")],
        [2.0, 1.0, 1.0, 2.0],
        "{metrics}"
    );
}
