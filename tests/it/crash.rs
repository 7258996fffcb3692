//! Durability of the embedded default under a crash: the real binary (SQLite ledger,
//! in-process hot tier, a data directory of its own) is killed with SIGKILL while 32
//! claims and completions are in flight, started again on the same directory, and
//! every ACQUIRED and Complete it acknowledged before it died must still be there.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use onceward::proto::{Outcome, RecordState};

use crate::harness::*;

/// Claims and completions in flight at once.
const IN_FLIGHT: usize = 32;
/// How long the load runs before the kill.
const LOAD: Duration = Duration::from_millis(1500);
/// Fewer acknowledgements than this means the test measured nothing.
const ENOUGH: usize = 100;

/// What the killed sidecar told its callers.
#[derive(Default)]
struct Acknowledged {
    /// Keys answered ACQUIRED, with the token.
    acquired: Vec<(String, u64)>,
    /// Keys whose Complete was answered OK, with the response stored.
    completed: Vec<(String, Vec<u8>)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_claim_and_completion_survives_a_sigkill_of_the_embedded_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (mut server, listen) = serve_embedded(&data_dir).await;

    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..IN_FLIGHT {
        let acknowledged = acknowledged.clone();
        let addr = listen.parse().unwrap();
        callers.spawn(async move {
            let mut client = TestApp::connect(addr).await;
            // Runs until the sidecar dies under it.
            for n in 0.. {
                let key = format!("k-{caller}-{n}");
                let Ok(held) = client
                    .claim(claim_request("crash", &key, b"", None))
                    .await
                    .map(tonic::Response::into_inner)
                else {
                    return;
                };
                assert_eq!(outcome(&held), Outcome::Acquired, "{key}");
                let token = held.fencing_token;
                acknowledged
                    .lock()
                    .unwrap()
                    .acquired
                    .push((key.clone(), token));
                let response = format!("done-{key}").into_bytes();
                if complete(&mut client, "crash", &key, token, &response)
                    .await
                    .is_err()
                {
                    return;
                }
                acknowledged.lock().unwrap().completed.push((key, response));
            }
        });
    }
    tokio::time::sleep(LOAD).await;
    // SIGKILL: no shutdown, no final checkpoint, nothing flushed but what was synced.
    server.start_kill().unwrap();
    let status = server.wait().await.unwrap();
    assert!(!status.success(), "killed, not stopped: {status:?}");
    tokio::time::timeout(Duration::from_secs(20), callers.join_all())
        .await
        .expect("every caller noticed the sidecar died");

    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    assert!(
        acknowledged.acquired.len() >= ENOUGH && acknowledged.completed.len() >= ENOUGH,
        "too little load to test: {} acquired, {} completed",
        acknowledged.acquired.len(),
        acknowledged.completed.len()
    );

    let (_restarted, listen) = serve_embedded(&data_dir).await;
    let mut client = TestApp::connect(listen.parse().unwrap()).await;
    for (key, _) in &acknowledged.acquired {
        let found = lookup(&mut client, "crash", key).await;
        assert!(found.found, "acknowledged ACQUIRED of {key} was lost");
    }
    for (key, response) in &acknowledged.completed {
        let record = lookup(&mut client, "crash", key)
            .await
            .record
            .unwrap_or_else(|| panic!("acknowledged Complete of {key} was lost"));
        assert_eq!(
            RecordState::try_from(record.state),
            Ok(RecordState::Completed),
            "{key}"
        );
        assert_eq!(&record.response, response, "{key}");
    }
}

/// Starts `onceward serve --data-dir <data_dir>` with no ledger or hot tier named (the
/// embedded default) on ports of its own, and waits until it listens.
async fn serve_embedded(data_dir: &Path) -> (tokio::process::Child, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let server = tokio::process::Command::new(env!("CARGO_BIN_EXE_onceward"))
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", &listen])
        .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
        .env_remove("ONCEWARD_DATABASE_URL")
        .env_remove("ONCEWARD_REDIS_URL")
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start onceward serve");
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    let listening = eventually(Duration::from_secs(20), || async move {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    assert!(listening, "the sidecar never listened on {listen}");
    (server, listen)
}
