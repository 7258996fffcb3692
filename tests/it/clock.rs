//! No cache outlives the ledger, whatever a sidecar's clock says (rules 6 and 8 of docs/PROTOCOL.md,
//! and "caches never outlive the ledger"): real sidecar processes run under
//! libfaketime with their wall clock an hour off, sharing one Postgres and one Redis
//! with a sidecar whose clock is right.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use onceward::proto::{self, Outcome};
use redis::AsyncCommands as _;

use crate::harness::*;

/// A completion's retention in these tests: short, so the test can outlive it.
const RETENTION: Duration = Duration::from_secs(3);

/// `onceward serve` against `db` and the shared Redis under `key_prefix`, its wall
/// clock moved by `offset` (libfaketime's syntax, e.g. `-1h`; its monotonic clock is
/// left alone, as a wrong NTP setting would), and its address once it listens.
async fn serve_with_clock(
    offset: &str,
    db: &TestDatabase,
    key_prefix: &str,
) -> (tokio::process::Child, SocketAddr) {
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // Preloaded into the sidecar itself (not through the `faketime` wrapper, which
    // would stand between the test and the process it must kill).
    let server = tokio::process::Command::new(env!("CARGO_BIN_EXE_onceward"))
        .env("LD_PRELOAD", libfaketime())
        .env("FAKETIME", offset)
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .arg("serve")
        .arg(format!("--listen={listen}"))
        .arg(format!("--metrics-listen=127.0.0.1:{}", free_port()))
        .arg(format!("--database-url={}", db.url))
        .arg(format!("--redis-url={}", shared_redis_url()))
        .arg(format!("--redis-key-prefix={key_prefix}"))
        .arg("--cleanup-interval=0s")
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start onceward serve");
    let listening = eventually(Duration::from_secs(20), || async move {
        tokio::net::TcpStream::connect(listen).await.is_ok()
    })
    .await;
    assert!(
        listening,
        "the sidecar with its clock at {offset} never listened"
    );
    (server, listen)
}

/// libfaketime's multi-threaded library, from Debian's `faketime` package.
fn libfaketime() -> std::path::PathBuf {
    std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|arch| arch.path().join("faketime/libfaketimeMT.so.1"))
        .find(|library| library.exists())
        .expect("libfaketime (apt-get install faketime; .ci/run installs it)")
}

async fn complete_for(
    client: &mut onceward::proto::onceward_client::OncewardClient<tonic::transport::Channel>,
    key: &str,
    token: u64,
    retention: Duration,
) {
    client
        .complete(proto::CompleteRequest {
            namespace: "clock".to_owned(),
            key: key.to_owned(),
            fencing_token: token,
            response: b"charged".to_vec(),
            retention: Some(proto_duration(retention)),
        })
        .await
        .expect("complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_an_hour_behind_caches_a_completion_no_longer_than_the_ledger_keeps_it() {
    let db = TestDatabase::create().await;
    let prefix = unique("onceward-test:") + ":";
    let (_behind, behind_addr) = serve_with_clock("-1h", &db, &prefix).await;
    let (_right, right_addr) = serve_with_clock("+0", &db, &prefix).await;
    let mut behind = TestApp::connect(behind_addr).await;
    let mut right = TestApp::connect(right_addr).await;

    let held = claim(&mut behind, "clock", "charge-1").await;
    assert_eq!(outcome(&held), Outcome::Acquired);
    complete_for(&mut behind, "charge-1", held.fencing_token, RETENTION).await;

    // Redis keeps it for what the ledger said, not for an hour more.
    let mut redis = redis::Client::open(shared_redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let left_ms: i64 = redis.pttl(format!("{prefix}clock:charge-1")).await.unwrap();
    assert!(
        (1..=RETENTION.as_millis() as i64).contains(&left_ms),
        "Redis keeps the completion for {left_ms} ms; the ledger keeps it for {RETENTION:?}"
    );

    // Both sidecars replay it now, from their caches (the near caches keep it too).
    for client in [&mut behind, &mut right] {
        for _ in 0..2 {
            let replay = claim(client, "clock", "charge-1").await;
            assert_eq!(outcome(&replay), Outcome::Completed);
        }
    }

    // The record expires on the ledger's clock and the retention job deletes it: the
    // key is new again everywhere (rule 8), and nothing replays it while a fresh
    // claim holds it (rule 6).
    tokio::time::sleep(RETENTION + Duration::from_millis(300)).await;
    let deleted = db.ledger().await.purge_expired(100).await.unwrap();
    assert_eq!(deleted, 1, "the ledger's clock says the record expired");
    let fresh = claim(&mut right, "clock", "charge-1").await;
    assert_eq!(
        outcome(&fresh),
        Outcome::Acquired,
        "a deleted key is new again"
    );
    let meanwhile = claim(&mut behind, "clock", "charge-1").await;
    assert_eq!(
        outcome(&meanwhile),
        Outcome::InProgress,
        "the sidecar an hour behind must not replay what the ledger deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_an_hour_behind_caches_a_claim_no_longer_than_its_lease() {
    let db = TestDatabase::create().await;
    let prefix = unique("onceward-test:") + ":";
    let (_behind, behind_addr) = serve_with_clock("-1h", &db, &prefix).await;
    let (_ahead, ahead_addr) = serve_with_clock("+1h", &db, &prefix).await;
    let mut behind = TestApp::connect(behind_addr).await;
    let mut ahead = TestApp::connect(ahead_addr).await;

    // A claim acquired through one skewed sidecar and observed through the other:
    // both answer IN_PROGRESS while the lease lives, and once it ran out on the
    // ledger's clock the next claim takes it over, from either.
    let lease = Duration::from_millis(1_500);
    let held = claim_with(&mut ahead, "clock", "job-1", b"", Some(lease)).await;
    assert_eq!(outcome(&held), Outcome::Acquired);
    let waiting = claim(&mut behind, "clock", "job-1").await;
    assert_eq!(outcome(&waiting), Outcome::InProgress);

    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let taken = claim(&mut behind, "clock", "job-1").await;
    assert_eq!(outcome(&taken), Outcome::Acquired, "the lease ran out");
    assert!(taken.fencing_token > held.fencing_token);
}
