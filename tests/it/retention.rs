//! Rule 8 of docs/PROTOCOL.md: the retention job deletes expired records — never a live claim or an
//! unexpired record — in small batches, without blocking claims, and several cleaners
//! at once do no double work.

use std::time::Duration;

use onceward::proto::{Outcome, RecordState};
use onceward::retention::Retention;
use tokio_util::sync::CancellationToken;

use crate::harness::*;

fn one_pass(ledger: std::sync::Arc<dyn onceward::ledger::Ledger>, batch: u32) -> Retention {
    Retention::new(ledger, batch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_records_are_deleted_and_live_ones_never_are_even_under_concurrent_claims() {
    let db = TestDatabase::create().await;
    let app = TestApp::builder()
        .ledger(Ledger::Postgres(&db))
        .args(&["--cleanup-interval=0"])
        .spawn()
        .await;
    let mut client = app.client.clone();

    let done = claim(&mut client, "r", "expired-done").await;
    client
        .complete(onceward::proto::CompleteRequest {
            namespace: "r".into(),
            key: "expired-done".into(),
            fencing_token: done.fencing_token,
            response: b"old".to_vec(),
            retention: Some(proto_duration(Duration::from_millis(1))),
        })
        .await
        .unwrap();
    let kept = claim(&mut client, "r", "live-done").await;
    complete(&mut client, "r", "live-done", kept.fencing_token, b"kept")
        .await
        .unwrap();
    let held = claim(&mut client, "r", "held").await;
    claim_with(
        &mut client,
        "r",
        "abandoned",
        b"",
        Some(Duration::from_millis(1)),
    )
    .await;
    db.execute("UPDATE onceward_records SET expires_at = now() - interval '1 second' WHERE key = 'abandoned'").await;
    // A live lease protects a claim even if its expiry were somehow in the past.
    claim(&mut client, "r", "held-odd").await;
    db.execute("UPDATE onceward_records SET expires_at = now() - interval '1 second' WHERE key = 'held-odd'").await;
    tokio::time::sleep(Duration::from_millis(20)).await;

    // Claims keep flowing on other keys while the cleaner runs.
    let traffic = {
        let mut client = app.client.clone();
        tokio::spawn(async move {
            for i in 0..100 {
                let got = claim(&mut client, "r", &format!("busy-{i}")).await;
                assert_eq!(outcome(&got), Outcome::Acquired);
            }
        })
    };
    let deleted = one_pass(db.ledger().await, 10)
        .run_once(&CancellationToken::new())
        .await
        .unwrap();
    traffic.await.unwrap();
    assert_eq!(deleted, 2, "the expired completion and the abandoned claim");

    for (key, state) in [
        ("live-done", RecordState::Completed),
        ("held", RecordState::InProgress),
        ("held-odd", RecordState::InProgress),
    ] {
        let record = lookup(&mut client, "r", key)
            .await
            .record
            .unwrap_or_else(|| panic!("{key} kept"));
        assert_eq!(record.state(), state);
    }
    for key in ["expired-done", "abandoned"] {
        assert!(!lookup(&mut client, "r", key).await.found, "{key} deleted");
    }
    // A deleted key is new again.
    let again = claim(&mut client, "r", "expired-done").await;
    assert_eq!(outcome(&again), Outcome::Acquired);
    complete(&mut client, "r", "held", held.fencing_token, b"ok")
        .await
        .expect("the live holder is unaffected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cleaners_at_once_delete_every_row_exactly_once() {
    let db = TestDatabase::create().await;
    let ledger = db.ledger().await;
    db.insert_expired("bulk", 20_000).await;
    let first = one_pass(ledger.clone(), 500);
    let second = one_pass(ledger.clone(), 500);
    let stop = CancellationToken::new();
    let (a, b) = tokio::join!(first.run_once(&stop), second.run_once(&stop));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a + b,
        20_000,
        "no row deleted twice, none left behind ({a} + {b})"
    );
    assert_eq!(db.scalar("SELECT count(*) FROM onceward_records").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_100k_expired_rows_is_emptied_in_bounded_batches_while_claims_are_served() {
    let db = TestDatabase::create().await;
    let ledger = db.ledger().await;
    db.insert_expired("bulk", 100_000).await;

    // Each batch is bounded by its limit.
    assert_eq!(ledger.purge_expired(1_000).await.unwrap(), 1_000);

    let app = TestApp::builder()
        .ledger(Ledger::Postgres(&db))
        .args(&["--cleanup-interval=1s", "--cleanup-batch-size=1000"])
        .spawn()
        .await;
    let mut client = app.client.clone();
    let mut served = 0;
    let emptied = eventually(Duration::from_secs(60), || {
        let mut client = client.clone();
        served += 1;
        let key = format!("during-{served}");
        let db = &db;
        async move {
            let got = claim(&mut client, "live", &key).await;
            assert_eq!(
                outcome(&got),
                Outcome::Acquired,
                "claims are served during cleanup"
            );
            db.scalar("SELECT count(*) FROM onceward_records WHERE namespace = 'bulk'")
                .await
                == 0
        }
    })
    .await;
    assert!(emptied, "the backlog was not emptied");
    assert_eq!(
        app.metric("onceward_cleanup_deleted_total", &[]).await,
        99_000.0
    );
    let live = db
        .scalar("SELECT count(*) FROM onceward_records WHERE namespace = 'live'")
        .await;
    assert!(live >= 1);
    assert_eq!(
        outcome(&claim(&mut client, "live", "during-1").await),
        Outcome::InProgress
    );
}

#[tokio::test]
async fn onceward_gc_runs_one_pass_and_prints_what_it_deleted() {
    let db = TestDatabase::create().await;
    db.ledger().await; // migrate
    db.insert_expired("bulk", 2_500).await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_onceward"))
        .args([
            "gc",
            "--database-url",
            &db.url,
            "--cleanup-batch-size",
            "1000",
        ])
        .output()
        .await
        .expect("run onceward gc");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "deleted 2500 expired records"
    );
    assert_eq!(db.scalar("SELECT count(*) FROM onceward_records").await, 0);
}

#[tokio::test]
async fn the_sqlite_ledger_is_cleaned_too_and_live_records_stay() {
    let app = TestApp::builder()
        .ledger(Ledger::FreshSqlite)
        .hot_tier(HotTier::InProcess)
        .spawn()
        .await;
    let mut client = app.client.clone();
    for i in 0..30 {
        let key = format!("old-{i}");
        let held = claim(&mut client, "r", &key).await;
        client
            .complete(onceward::proto::CompleteRequest {
                namespace: "r".into(),
                key,
                fencing_token: held.fencing_token,
                response: b"old".to_vec(),
                retention: Some(proto_duration(Duration::from_millis(1))),
            })
            .await
            .unwrap();
    }
    let kept = claim(&mut client, "r", "kept").await;
    complete(&mut client, "r", "kept", kept.fencing_token, b"new")
        .await
        .unwrap();
    claim(&mut client, "r", "held").await;
    tokio::time::sleep(Duration::from_millis(20)).await;

    let deleted = one_pass(app.ledger(), 7)
        .run_once(&CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(deleted, 30, "in batches of 7 until one came back short");
    assert!(!lookup(&mut client, "r", "old-0").await.found);
    assert!(lookup(&mut client, "r", "kept").await.found);
    assert!(lookup(&mut client, "r", "held").await.found);
}
