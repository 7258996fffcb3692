//! Rule 1 of docs/PROTOCOL.md: any number of concurrent claims, from any number of sidecars, yield
//! exactly one ACQUIRED per lease.

use onceward::proto::Outcome;
use tokio::task::JoinSet;

use crate::harness::*;

on_every_pairing!(
    fifty_concurrent_claims_on_one_key_yield_exactly_one_acquired,
    concurrent_claims_after_an_expired_lease_take_it_over_exactly_once,
);

const RACERS: usize = 50;

/// Fires `RACERS` claims for one key at once, each on a connection of its own, spread
/// round-robin over `addrs`, and returns their outcomes.
async fn race(addrs: &[std::net::SocketAddr], key: &str) -> Vec<Outcome> {
    let mut clients = Vec::with_capacity(RACERS);
    for i in 0..RACERS {
        clients.push(TestApp::connect(addrs[i % addrs.len()]).await);
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(RACERS));
    let mut racers = JoinSet::new();
    for mut client in clients {
        let start = start.clone();
        let key = key.to_owned();
        racers.spawn(async move {
            start.wait().await;
            outcome(&claim(&mut client, "race", &key).await)
        });
    }
    racers.join_all().await
}

async fn fifty_concurrent_claims_on_one_key_yield_exactly_one_acquired(pairing: Pairing) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let outcomes = race(&[app.addr], "one-key").await;
    let acquired = outcomes.iter().filter(|o| **o == Outcome::Acquired).count();
    assert_eq!(acquired, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Acquired | Outcome::InProgress))
    );
    let mut client = app.client.clone();
    let record = lookup(&mut client, "race", "one-key")
        .await
        .record
        .expect("one record");
    assert_eq!(record.state(), onceward::proto::RecordState::InProgress);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_claims_across_two_sidecars_yield_exactly_one_acquired() {
    let db = TestDatabase::create().await;
    let (first, second) = TestApp::builder()
        .ledger(Ledger::Postgres(&db))
        .spawn_two()
        .await;
    for round in 0..5 {
        let outcomes = race(&[first.addr, second.addr], &format!("shared-{round}")).await;
        let acquired = outcomes.iter().filter(|o| **o == Outcome::Acquired).count();
        assert_eq!(acquired, 1, "round {round}: {outcomes:?}");
    }
}

async fn concurrent_claims_after_an_expired_lease_take_it_over_exactly_once(pairing: Pairing) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();
    let lease = std::time::Duration::from_millis(150);
    let abandoned = claim_with(&mut client, "race", "abandoned", b"", Some(lease)).await;
    assert_eq!(outcome(&abandoned), Outcome::Acquired);
    tokio::time::sleep(lease * 2).await;
    let outcomes = race(&[app.addr], "abandoned").await;
    let acquired = outcomes.iter().filter(|o| **o == Outcome::Acquired).count();
    assert_eq!(acquired, 1, "{outcomes:?}");
    assert_eq!(app.metric("onceward_takeovers_total", &[]).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_two_sidecars_keep_growing_across_release() {
    let db = TestDatabase::create().await;
    let (first, second) = TestApp::builder()
        .ledger(Ledger::Postgres(&db))
        .spawn_two()
        .await;
    let mut clients = [first.client.clone(), second.client.clone()];
    let mut last = 0;
    for round in 0..20 {
        let client = &mut clients[round % 2];
        let held = claim(client, "order", "same-key").await;
        assert_eq!(outcome(&held), Outcome::Acquired, "round {round}");
        assert!(
            held.fencing_token > last,
            "round {round}: {} after {last}",
            held.fencing_token
        );
        last = held.fencing_token;
        // Another key claimed in between must not break the order either.
        claim(client, "order", &format!("other-{round}")).await;
        release(client, "order", "same-key", held.fencing_token)
            .await
            .unwrap();
    }
}
