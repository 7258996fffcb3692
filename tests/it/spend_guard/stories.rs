//! The stories of onceward's users, end to end through the Rust client: the layers
//! every paid side effect needs — killswitch, per-user budget, idempotency insert,
//! vendor call — each catching what a bug in another lets through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use onceward::proto::{Outcome, Policy};
use onceward_client::{Client, OnceError, Spend};

use super::*;

/// The vendor: counts what was sent to whom.
#[derive(Clone, Default)]
struct Vendor {
    sent: Arc<Mutex<HashMap<String, u32>>>,
}

impl Vendor {
    async fn send(&self, to: &str) -> Result<Vec<u8>, std::io::Error> {
        *self.sent.lock().unwrap().entry(to.to_owned()).or_default() += 1;
        Ok(b"sent".to_vec())
    }

    fn total(&self) -> u32 {
        self.sent.lock().unwrap().values().sum()
    }

    fn to(&self, who: &str) -> u32 {
        self.sent
            .lock()
            .unwrap()
            .get(who)
            .copied()
            .unwrap_or_default()
    }
}

async fn client(app: &TestApp) -> Client {
    Client::connect(format!("http://{}", app.addr))
        .await
        .unwrap()
}

/// One run of the cron job: a fresh process sends every due reminder once, keyed by
/// the reminder and its day.
async fn cron_run(
    app: &TestApp,
    vendor: &Vendor,
    due: &[(&str, &str)],
) -> Vec<Result<bool, String>> {
    let client = client(app).await;
    let mut results = Vec::new();
    for (reminder, user) in due {
        let key = format!("reminder:{reminder}:2026-12-07");
        let sent = client
            .once_spending("sms", &key, b"", Spend::new(*user, 5), |_| {
                vendor.send(user)
            })
            .await;
        results.push(match sent {
            Ok(once) => Ok(!once.was_replayed()),
            Err(error) => Err(error.to_string()),
        });
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_that_fires_twice_in_one_minute_sends_each_reminder_once() {
    let db = TestDatabase::create().await;
    let (first, second) = TestApp::builder()
        .ledger(Ledger::Postgres(&db))
        .spawn_two()
        .await;
    set_policy(
        &first,
        "sms",
        Policy {
            budget: budget(1000, 20, HOUR),
            ..Policy::default()
        },
    )
    .await;
    // The second sidecar learns of the new policy within a second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let vendor = Vendor::default();
    let due = [
        ("r1", "alice"),
        ("r2", "bob"),
        ("r3", "alice"),
        ("r4", "carol"),
    ];
    // The scheduler fired twice, in two pods, at once.
    let (one, two) = tokio::join!(
        cron_run(&first, &vendor, &due),
        cron_run(&second, &vendor, &due)
    );
    assert!(one.iter().chain(&two).all(Result::is_ok), "{one:?} {two:?}");
    assert_eq!(vendor.total(), 4, "each reminder sent once");
    assert_eq!(vendor.to("alice"), 2);
    assert_eq!(
        spent(&first, "sms", "alice").await,
        (10, 2),
        "the duplicates spent nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bug_that_claims_fifty_distinct_keys_for_one_user_is_stopped_by_the_budget() {
    let app = TestApp::builder().spawn().await;
    set_policy(
        &app,
        "sms",
        Policy {
            budget: budget(0, 5, HOUR),
            ..Policy::default()
        },
    )
    .await;
    let vendor = Vendor::default();
    let client = client(&app).await;
    let mut over_budget = 0;
    for attempt in 0..50 {
        // The bug: a fresh key on every loop, so idempotency cannot see the repeats.
        let key = format!("reminder:r1:attempt-{attempt}");
        match client
            .once_spending("sms", &key, b"", Spend::new("alice", 1), |_| {
                vendor.send("alice")
            })
            .await
        {
            Ok(_) => {}
            Err(OnceError::OverBudget {
                reason,
                retry_after,
            }) => {
                assert_eq!(reason, "max_claims");
                assert!(retry_after > Duration::ZERO && retry_after <= HOUR);
                over_budget += 1;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(vendor.to("alice"), 5, "the budget let five through");
    assert_eq!(over_budget, 45);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_duplicate_schedules_for_one_user_escalate_once_per_tick() {
    let app = TestApp::builder()
        .pairing(Pairing::PostgresRedis)
        .spawn()
        .await;
    let tick = Duration::from_secs(1);
    set_policy(
        &app,
        "escalations",
        Policy {
            budget: budget(0, 1, tick),
            ..Policy::default()
        },
    )
    .await;
    let vendor = Vendor::default();
    let client = client(&app).await;
    // Start just after a tick boundary (windows are aligned to the epoch).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    tokio::time::sleep(
        tick - Duration::from_nanos(u64::from(now.subsec_nanos())) + Duration::from_millis(50),
    )
    .await;
    for round in 0..3 {
        // Five schedules for one user, each with its own id, all firing this tick.
        let fired = (0..5).map(|schedule| {
            let (client, vendor) = (client.clone(), vendor.clone());
            async move {
                let key = format!("escalation:schedule-{schedule}:tick-{round}");
                client
                    .once_spending(
                        "escalations",
                        &key,
                        b"",
                        Spend::new("user-7", 0),
                        |_| async move { vendor.send("user-7").await },
                    )
                    .await
            }
        });
        let results = futures_util::future::join_all(fired).await;
        let sent = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(sent, 1, "tick {round}: {results:?}");
        tokio::time::sleep(tick).await;
    }
    assert_eq!(vendor.to("user-7"), 3, "one escalation per tick");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_killswitch_stops_a_running_sender_within_a_second_while_replays_keep_answering() {
    let db = TestDatabase::create().await;
    let (operator_side, sender_side) = TestApp::builder()
        .ledger(Ledger::Postgres(&db))
        .spawn_two()
        .await;
    let vendor = Vendor::default();
    let sender = client(&sender_side).await;
    let replayer = client(&sender_side).await;
    let done = replayer
        .once("sms", "sent-yesterday", b"", |_| vendor.send("dave"))
        .await
        .unwrap();
    assert!(!done.was_replayed());

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sends_after = Arc::new(Mutex::new(Vec::new()));
    let running = {
        let (sender, vendor, stop, sends_after) = (
            sender.clone(),
            vendor.clone(),
            stop.clone(),
            sends_after.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let result = sender
                    .once("sms", &format!("message-{n}"), b"", |_| vendor.send("erin"))
                    .await;
                sends_after
                    .lock()
                    .unwrap()
                    .push((std::time::Instant::now(), result.is_ok()));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    killswitch(&operator_side, "sms", Some("incident 42")).await;
    let engaged = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Replays of completed sends keep answering while it is engaged.
    let replay = replayer
        .once("sms", "sent-yesterday", b"", |_| vendor.send("dave"))
        .await
        .unwrap();
    assert!(replay.was_replayed());
    let blocked = replayer
        .once("sms", "new-one", b"", |_| vendor.send("dave"))
        .await;
    assert!(
        matches!(blocked, Err(OnceError::Blocked { ref reason }) if reason == "incident 42"),
        "{blocked:?}"
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    running.await.unwrap();
    let attempts = sends_after.lock().unwrap().clone();
    let late_sends = attempts
        .iter()
        .filter(|(at, sent)| *sent && at.duration_since(engaged) > Duration::from_secs(1))
        .count();
    assert!(
        attempts.iter().any(|(at, sent)| *sent && *at < engaged),
        "it was sending before"
    );
    assert_eq!(late_sends, 0, "sent more than 1 s after the killswitch");
    assert_eq!(vendor.to("dave"), 1);
}

/// Each layer catches what a bug in the one before lets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_layer_catches_a_bug_in_another() {
    let app = TestApp::builder()
        .pairing(Pairing::PostgresRedis)
        .spawn()
        .await;
    let mut raw = app.client.clone();
    // Idempotency catches a budget set far too high: the same reminder twice is
    // still one send.
    set_policy(
        &app,
        "layers",
        Policy {
            budget: budget(0, 1_000_000, HOUR),
            ..Policy::default()
        },
    )
    .await;
    let twice = [
        claim_spending(&mut raw, "layers", "r1", "u", 1).await,
        claim_spending(&mut raw, "layers", "r1", "u", 1).await,
    ];
    assert_eq!(
        twice.iter().map(outcome).collect::<Vec<_>>(),
        [Outcome::Acquired, Outcome::InProgress]
    );
    // The budget catches an idempotency bug (a new key per retry) and a cost bug (the
    // effect priced at 0): the claim count still caps it.
    set_policy(
        &app,
        "layers",
        Policy {
            budget: budget(10, 3, HOUR),
            ..Policy::default()
        },
    )
    .await;
    let retries: Vec<Outcome> =
        futures_util::future::join_all((0..10).map(|i| {
            let mut raw = raw.clone();
            async move {
                outcome(&claim_spending(&mut raw, "layers", &format!("retry-{i}"), "v", 0).await)
            }
        }))
        .await;
    assert_eq!(
        retries.iter().filter(|o| **o == Outcome::Acquired).count(),
        3
    );
    // The killswitch catches a budget that has no subject to limit (a caller that
    // forgot to send one): nothing new acquires once it is engaged.
    killswitch(&app, "layers", Some("runaway sender")).await;
    let unlimited: Vec<Outcome> = futures_util::future::join_all((0..10).map(|i| {
        let mut raw = raw.clone();
        async move { outcome(&claim(&mut raw, "layers", &format!("no-subject-{i}")).await) }
    }))
    .await;
    assert!(
        unlimited.iter().all(|o| *o == Outcome::Blocked),
        "{unlimited:?}"
    );
    // And idempotency still answers the send that happened.
    assert_eq!(
        outcome(&claim_spending(&mut raw, "layers", "r1", "u", 1).await),
        Outcome::InProgress
    );
}
