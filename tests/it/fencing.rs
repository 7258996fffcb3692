//! Rule 2 of docs/PROTOCOL.md seen from the outside: a holder paused past its lease (a GC pause, a
//! stalled VM) wakes up after a second holder took the key over. onceward refuses the
//! stale holder's Complete; a sink that checks fencing tokens refuses its write, even
//! when that write arrives after the new holder's.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use onceward::proto::{Outcome, RecordState};
use tonic::Code;

use crate::harness::*;

const LEASE: Duration = Duration::from_millis(200);
/// Longer than `LEASE`: the stale holder's pause.
const PAUSE: Duration = Duration::from_millis(350);

/// Holder A claims on the first sidecar with a short lease and "pauses" past it;
/// holder B claims on the second and takes over. Returns both tokens.
async fn stale_and_current_holder(first: &TestApp, second: &TestApp, key: &str) -> (u64, u64) {
    let mut a = first.client.clone();
    let mut b = second.client.clone();
    let stale = claim_with(&mut a, "pay", key, b"fp", Some(LEASE)).await;
    assert_eq!(outcome(&stale), Outcome::Acquired);
    tokio::time::sleep(PAUSE).await;
    let current = claim_with(&mut b, "pay", key, b"fp", None).await;
    assert_eq!(
        outcome(&current),
        Outcome::Acquired,
        "B takes the expired lease over"
    );
    assert!(
        current.fencing_token > stale.fencing_token,
        "tokens grow across sidecars: {} then {}",
        stale.fencing_token,
        current.fencing_token
    );
    (stale.fencing_token, current.fencing_token)
}

#[tokio::test]
async fn a_holder_paused_past_its_lease_cannot_complete_after_a_takeover() {
    let db = TestDatabase::create().await;
    let (first, second) = TestApp::builder()
        .ledger(Ledger::Postgres(&db))
        .spawn_two()
        .await;
    let (stale, current) = stale_and_current_holder(&first, &second, "paused").await;
    let mut a = first.client.clone();
    let mut b = second.client.clone();

    // A wakes up while B still holds the key: every write of A's is refused.
    let refused = complete(&mut a, "pay", "paused", stale, b"A's charge").await;
    assert_eq!(refused.unwrap_err().code(), Code::FailedPrecondition);
    let refused = extend(&mut a, "pay", "paused", stale, LEASE).await;
    assert_eq!(refused.unwrap_err().code(), Code::FailedPrecondition);
    let refused = release(&mut a, "pay", "paused", stale).await;
    assert_eq!(
        refused.unwrap_err().code(),
        Code::FailedPrecondition,
        "A cannot free B's claim"
    );

    complete(&mut b, "pay", "paused", current, b"B's charge")
        .await
        .expect("B still holds the key");
    let refused = complete(&mut a, "pay", "paused", stale, b"A's charge").await;
    assert_eq!(
        refused.unwrap_err().code(),
        Code::FailedPrecondition,
        "nor after B completed"
    );

    let record = lookup(&mut a, "pay", "paused")
        .await
        .record
        .expect("a record");
    assert_eq!(record.state(), RecordState::Completed);
    assert_eq!(record.response, b"B's charge");
    let replay = claim_with(&mut a, "pay", "paused", b"fp", None).await;
    assert_eq!(outcome(&replay), Outcome::Completed);
    assert_eq!(replay.response, b"B's charge");
    assert_eq!(
        first
            .metric("onceward_fencing_rejections_total", &[("rpc", "complete")])
            .await,
        2.0
    );
}

/// A downstream that keeps, per key, the highest fencing token it has seen, and
/// refuses any write with a lower one. (Fencing orders writes; it does not make them
/// unique: had the stale write arrived first, the new holder's would be accepted
/// too. That is why onceward's own Complete is the authority on the result.)
#[derive(Default)]
struct FencedSink {
    state: Mutex<SinkState>,
}

#[derive(Default)]
struct SinkState {
    highest: HashMap<String, u64>,
    accepted: Vec<(String, u64, String)>,
}

#[derive(Debug, PartialEq, Eq)]
struct StaleToken {
    offered: u64,
    highest: u64,
}

impl FencedSink {
    fn write(&self, key: &str, token: u64, value: &str) -> Result<(), StaleToken> {
        let mut state = self.state.lock().unwrap();
        let highest = state.highest.entry(key.to_owned()).or_default();
        if token < *highest {
            return Err(StaleToken {
                offered: token,
                highest: *highest,
            });
        }
        *highest = token;
        state
            .accepted
            .push((key.to_owned(), token, value.to_owned()));
        Ok(())
    }
}

#[tokio::test]
async fn a_fencing_aware_sink_refuses_the_stale_holders_write_that_arrives_late() {
    let db = TestDatabase::create().await;
    let (first, second) = TestApp::builder()
        .ledger(Ledger::Postgres(&db))
        .spawn_two()
        .await;
    let sink = FencedSink::default();
    let (stale, current) = stale_and_current_holder(&first, &second, "fenced").await;

    // B's write reaches the sink first; A's, delayed by its pause, arrives after.
    sink.write("fenced", current, "B's charge")
        .expect("the current holder writes");
    assert_eq!(
        sink.write("fenced", stale, "A's charge"),
        Err(StaleToken {
            offered: stale,
            highest: current
        })
    );
    let mut b = second.client.clone();
    complete(&mut b, "pay", "fenced", current, b"B's charge")
        .await
        .expect("B completes");
    let mut a = first.client.clone();
    let refused = complete(&mut a, "pay", "fenced", stale, b"A's charge").await;
    assert_eq!(refused.unwrap_err().code(), Code::FailedPrecondition);

    let accepted = sink.state.lock().unwrap().accepted.clone();
    assert_eq!(
        accepted,
        [("fenced".to_owned(), current, "B's charge".to_owned())]
    );
    let record = lookup(&mut a, "pay", "fenced")
        .await
        .record
        .expect("a record");
    assert_eq!(record.response, b"B's charge");
}
