//! `ClaimBatch` and `CompleteBatch`: every item answered as its single RPC would be, in
//! request order, on every pairing of tiers; invalid batches refused whole, with the
//! item's index; a race of batches and single claims across two sidecars; Redis
//! flushed and Postgres cut in the middle of batches.

use std::collections::HashMap;
use std::time::Duration;

use onceward::proto::onceward_client::OncewardClient;
use onceward::proto::{
    ClaimBatchRequest, ClaimItem, ClaimResponse, CompleteBatchRequest, CompleteItem,
    CompleteResult, Outcome, RecordState, Tier,
};
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::*;

/// An item claiming `key` with `fingerprint`.
fn item(key: &str, fingerprint: &[u8]) -> ClaimItem {
    ClaimItem {
        key: key.to_owned(),
        fingerprint: fingerprint.to_vec(),
        ..Default::default()
    }
}

async fn claim_batch(
    client: &mut OncewardClient<Channel>,
    namespace: &str,
    items: Vec<ClaimItem>,
) -> Result<Vec<ClaimResponse>, tonic::Status> {
    let response = client
        .claim_batch(ClaimBatchRequest {
            namespace: namespace.to_owned(),
            items,
            lease: None,
        })
        .await?;
    Ok(response.into_inner().results)
}

async fn complete_batch(
    client: &mut OncewardClient<Channel>,
    namespace: &str,
    items: &[(&str, u64, &[u8])],
) -> Result<Vec<CompleteResult>, tonic::Status> {
    let items = items
        .iter()
        .map(|(key, token, response)| CompleteItem {
            key: (*key).to_owned(),
            fencing_token: *token,
            response: response.to_vec(),
        })
        .collect();
    let response = client
        .complete_batch(CompleteBatchRequest {
            namespace: namespace.to_owned(),
            items,
            retention: None,
        })
        .await?;
    Ok(response.into_inner().results)
}

on_every_pairing!(
    each_item_is_answered_as_its_single_claim_would_be_in_request_order,
    complete_batch_answers_each_item_and_refuses_only_the_stale_token,
);

async fn each_item_is_answered_as_its_single_claim_would_be_in_request_order(pairing: Pairing) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();
    let keys = ["a", "b", "c", "d", "e"];

    let first = claim_batch(
        &mut client,
        "batch",
        keys.map(|key| item(key, b"fp")).to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(first.len(), keys.len());
    assert!(
        first
            .iter()
            .all(|answer| outcome(answer) == Outcome::Acquired),
        "{first:?}"
    );
    let tokens: Vec<u64> = first.iter().map(|answer| answer.fencing_token).collect();
    let mut distinct = tokens.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        keys.len(),
        "one token per claim: {tokens:?}"
    );

    // The same keys from a single Claim: held.
    let single = claim_with(&mut client, "batch", "c", b"fp", None).await;
    assert_eq!(outcome(&single), Outcome::InProgress);

    // Complete two, then ask about all of them again, with one payload changed and a
    // new key, in a new order.
    complete(&mut client, "batch", "a", tokens[0], b"receipt-a")
        .await
        .unwrap();
    complete(&mut client, "batch", "d", tokens[3], b"receipt-d")
        .await
        .unwrap();
    let again = claim_batch(
        &mut client,
        "batch",
        vec![
            item("d", b"fp"),
            item("new", b"fp"),
            item("b", b"fp"),
            item("e", b"other"),
            item("a", b"fp"),
        ],
    )
    .await
    .unwrap();
    let outcomes: Vec<Outcome> = again.iter().map(outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Completed,
            Outcome::Acquired,
            Outcome::InProgress,
            Outcome::FingerprintMismatch,
            Outcome::Completed,
        ]
    );
    assert_eq!(again[0].response, b"receipt-d");
    assert_eq!(again[4].response, b"receipt-a");
    assert!(again[0].completed_at.is_some());
    assert!(again[2].retry_after.is_some());
    assert!(again[1].fencing_token > *tokens.iter().max().unwrap());
    for answer in &again {
        assert_ne!(answer.served_by, Tier::Unspecified as i32);
    }

    // Each answer is what a single Claim says now.
    for (key, fingerprint, expected) in [
        ("d", &b"fp"[..], Outcome::Completed),
        ("b", b"fp", Outcome::InProgress),
        ("e", b"other", Outcome::FingerprintMismatch),
    ] {
        let single = claim_with(&mut client, "batch", key, fingerprint, None).await;
        assert_eq!(outcome(&single), expected, "{key}");
    }
}

async fn complete_batch_answers_each_item_and_refuses_only_the_stale_token(pairing: Pairing) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();
    let held = claim_batch(
        &mut client,
        "done",
        vec![item("x", b""), item("y", b""), item("z", b"")],
    )
    .await
    .unwrap();
    let token = |index: usize| held[index].fencing_token;

    let results = complete_batch(
        &mut client,
        "done",
        &[
            ("x", token(0), b"rx"),
            ("y", token(1) + 1_000, b"ry"),
            ("z", token(2), b"rz"),
        ],
    )
    .await
    .unwrap();
    let codes: Vec<u32> = results.iter().map(|result| result.code).collect();
    assert_eq!(codes, [0, Code::FailedPrecondition as u32, 0]);
    assert!(results[0].expires_at.is_some() && results[2].expires_at.is_some());
    assert!(results[1].expires_at.is_none());
    assert!(results[1].message.contains("fencing_token"), "{results:?}");

    // A retry of the same batch changes nothing and answers the same.
    let retried = complete_batch(
        &mut client,
        "done",
        &[("x", token(0), b"other"), ("z", token(2), b"other")],
    )
    .await
    .unwrap();
    assert!(retried.iter().all(|result| result.code == 0));

    // Duplicates replay the first response; the refused key is still held.
    let replays = claim_batch(
        &mut client,
        "done",
        vec![item("x", b""), item("y", b""), item("z", b"")],
    )
    .await
    .unwrap();
    assert_eq!(replays[0].response, b"rx");
    assert_eq!(outcome(&replays[1]), Outcome::InProgress);
    assert_eq!(replays[2].response, b"rz");
    let record = lookup(&mut client, "done", "y").await.record.unwrap();
    assert_eq!(record.state, RecordState::InProgress as i32);
}

#[tokio::test]
async fn invalid_batches_are_refused_whole_naming_the_item_and_nothing_is_done() {
    let app = TestApp::builder()
        .hot_tier(HotTier::InProcess)
        .args(&["--max-batch-items=3", "--max-response-bytes=8"])
        .spawn()
        .await;
    let mut client = app.client.clone();
    let cases: Vec<(Vec<ClaimItem>, &str)> = vec![
        (vec![], "items: must hold 1 to 3 items"),
        (
            vec![
                item("k1", b""),
                item("k2", b""),
                item("k3", b""),
                item("k4", b""),
            ],
            "got 4",
        ),
        (
            vec![item("k1", b""), item("k2", b""), item("k1", b"")],
            "items[2].key",
        ),
        (vec![item("k1", b""), item("", b"")], "items[1].key"),
        (
            vec![item("k1", b""), item("k2", &[7; 65])],
            "items[1].fingerprint",
        ),
        (
            vec![
                item("k1", b""),
                ClaimItem {
                    cost: u64::MAX,
                    ..item("k2", b"")
                },
            ],
            "items[1].cost",
        ),
    ];
    for (items, expected) in cases {
        let refused = claim_batch(&mut client, "v", items).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(
            refused.message().contains(expected),
            "{expected:?} in {:?}",
            refused.message()
        );
    }
    let found = lookup(&mut client, "v", "k1").await;
    assert!(!found.found, "a refused batch claims nothing");

    let held = claim(&mut client, "v", "k1").await;
    let refused = complete_batch(
        &mut client,
        "v",
        &[
            ("k1", held.fencing_token, b"ok"),
            ("k2", 1, b"far too long"),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("items[1].response"),
        "{refused:?}"
    );
    let record = lookup(&mut client, "v", "k1").await.record.unwrap();
    assert_eq!(
        record.state,
        RecordState::InProgress as i32,
        "nothing completed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_and_single_claims_racing_across_two_sidecars_acquire_each_key_once() {
    let db = TestDatabase::create().await;
    let builder = TestApp::builder().ledger(Ledger::Postgres(&db));
    let (left, right) = builder.spawn_two().await;
    let keys: Vec<String> = (0..60).map(|i| format!("race-{i}")).collect();
    let mut racers = Vec::new();
    for (round, app) in [&left, &right, &left, &right].into_iter().enumerate() {
        let mut client = app.client.clone();
        let mut order = keys.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        racers.push(tokio::spawn(async move {
            let items = order.iter().map(|key| item(key, b"")).collect();
            let answers = claim_batch(&mut client, "race", items).await.unwrap();
            order.into_iter().zip(answers).collect::<Vec<_>>()
        }));
        for key in keys.iter().skip(round).step_by(4) {
            let (mut client, key) = (app.client.clone(), key.clone());
            racers.push(tokio::spawn(async move {
                vec![(key.clone(), claim(&mut client, "race", &key).await)]
            }));
        }
    }
    let mut acquired: HashMap<String, usize> = HashMap::new();
    for racer in racers {
        for (key, answer) in racer.await.unwrap() {
            if outcome(&answer) == Outcome::Acquired {
                *acquired.entry(key).or_default() += 1;
            }
        }
    }
    for key in &keys {
        assert_eq!(acquired.get(key), Some(&1), "{key}: {acquired:?}");
    }
}

#[tokio::test]
async fn a_flushed_redis_between_batches_lets_no_second_acquire_through() {
    let redis = RedisServer::start().await;
    let db = TestDatabase::create().await;
    let app = TestApp::builder()
        .ledger(Ledger::Postgres(&db))
        .hot_tier(HotTier::Redis(redis.url()))
        .args(&["--near-cache-max-bytes=0"])
        .spawn()
        .await;
    let mut client = app.client.clone();
    for round in 0..5 {
        let keys: Vec<String> = (0..40).map(|i| format!("r{round}-{i}")).collect();
        let items = || keys.iter().map(|key| item(key, b"fp")).collect::<Vec<_>>();
        let held = claim_batch(&mut client, "flush", items()).await.unwrap();
        let completing: Vec<(&str, u64, &[u8])> = keys
            .iter()
            .zip(&held)
            .step_by(2)
            .map(|(key, answer)| (key.as_str(), answer.fencing_token, &b"done"[..]))
            .collect();
        redis.flushall().await;
        let results = complete_batch(&mut client, "flush", &completing)
            .await
            .unwrap();
        assert!(results.iter().all(|result| result.code == 0));
        redis.flushall().await;
        let again = claim_batch(&mut client, "flush", items()).await.unwrap();
        for (index, answer) in again.iter().enumerate() {
            let expected = if index % 2 == 0 {
                Outcome::Completed
            } else {
                Outcome::InProgress
            };
            assert_eq!(outcome(answer), expected, "round {round}, item {index}");
            assert_eq!(
                tier(answer),
                Tier::Ledger,
                "Redis lost it: the ledger answered"
            );
        }
    }
}

#[tokio::test]
async fn a_postgres_cut_fails_a_batch_whole_and_leaves_no_claim_held() {
    let db = TestDatabase::create().await;
    let proxy = std::sync::Arc::new(TcpProxy::start(postgres_addr()).await);
    let app = TestApp::builder()
        .ledger(Ledger::PostgresThrough(&db, &proxy))
        .hot_tier(HotTier::InProcess)
        .args(&["--ledger-timeout=1s"])
        .spawn()
        .await;
    let mut client = app.client.clone();
    let done = claim_batch(&mut client, "cut", vec![item("before", b"")])
        .await
        .unwrap();
    complete_batch(
        &mut client,
        "cut",
        &[("before", done[0].fencing_token, b"r")],
    )
    .await
    .unwrap();

    // Batches of fresh keys back to back while the connection is cut under them.
    let cutter = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            proxy.cut();
        })
    };
    let batch_keys = |round: usize| (0..10).map(move |i| format!("during-{round}-{i}"));
    // Each batch names a claimant, as a consumer retrying it would: a batch whose
    // statement committed but whose answer was lost in the cut is handed back to it.
    let batch = |round: usize| -> Vec<ClaimItem> {
        batch_keys(round)
            .map(|key| ClaimItem {
                claimant: format!("consumer-{round}").into_bytes(),
                ..item(&key, b"")
            })
            .collect()
    };
    let mut answered: Vec<String> = Vec::new();
    let mut failed = 0;
    let mut rounds = 0;
    while failed < 2 {
        match claim_batch(&mut client, "cut", batch(rounds)).await {
            Ok(answers) => {
                assert!(
                    answers
                        .iter()
                        .all(|answer| outcome(answer) == Outcome::Acquired)
                );
                answered.extend(batch_keys(rounds));
            }
            Err(refused) => {
                assert_eq!(
                    refused.code(),
                    Code::Unavailable,
                    "never ACQUIRED without the ledger"
                );
                failed += 1;
            }
        }
        rounds += 1;
    }
    cutter.await.unwrap();
    let refused = complete_batch(&mut client, "cut", &[("before", 1, b"x")])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);

    proxy.restore();
    let recovered = eventually(Duration::from_secs(15), || {
        let mut client = client.clone();
        async move {
            claim_batch(&mut client, "cut", vec![item("after", b"")])
                .await
                .is_ok()
        }
    })
    .await;
    assert!(recovered);
    // A batch that failed, retried as its consumer would, is acquired whole: its keys
    // were released, or are handed back to their claimant. Answered keys stay held
    // against anyone else.
    for round in 0..rounds {
        let keys: Vec<String> = batch_keys(round).collect();
        if answered.contains(&keys[0]) {
            let others = keys.iter().map(|key| item(key, b"")).collect();
            let now = claim_batch(&mut client, "cut", others).await.unwrap();
            assert!(
                now.iter()
                    .all(|answer| outcome(answer) == Outcome::InProgress)
            );
        } else {
            let retried = claim_batch(&mut client, "cut", batch(round)).await.unwrap();
            assert!(
                retried
                    .iter()
                    .all(|answer| outcome(answer) == Outcome::Acquired),
                "round {round}: {retried:?}"
            );
        }
    }
}

#[tokio::test]
async fn on_the_embedded_ledger_a_batch_is_one_write_transaction() {
    let app = TestApp::builder()
        .ledger(Ledger::FreshSqlite)
        .hot_tier(HotTier::InProcess)
        .spawn()
        .await;
    let mut client = app.client.clone();
    let transactions = || app.metric("onceward_ledger_batch_size_count", &[("op", "write")]);
    let items_written = || app.metric("onceward_ledger_batch_size_sum", &[("op", "write")]);
    let (before, items_before) = (transactions().await, items_written().await);

    let keys: Vec<String> = (0..100).map(|i| format!("one-tx-{i}")).collect();
    let held = claim_batch(
        &mut client,
        "sqlite",
        keys.iter().map(|key| item(key, b"")).collect(),
    )
    .await
    .unwrap();
    assert!(
        held.iter()
            .all(|answer| outcome(answer) == Outcome::Acquired)
    );
    assert_eq!(
        transactions().await - before,
        1.0,
        "one transaction for the claims"
    );
    assert_eq!(items_written().await - items_before, 100.0);

    let items: Vec<(&str, u64, &[u8])> = keys
        .iter()
        .zip(&held)
        .map(|(key, answer)| (key.as_str(), answer.fencing_token, &b"r"[..]))
        .collect();
    let done = complete_batch(&mut client, "sqlite", &items).await.unwrap();
    assert!(done.iter().all(|result| result.code == 0));
    assert_eq!(
        transactions().await - before,
        2.0,
        "and one for the completions"
    );
}
