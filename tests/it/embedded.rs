//! The embedded default: `onceward serve` with no flags on a bare machine (SQLite
//! under ./onceward-data, in-process hot tier), as the real binary.

use std::process::Stdio;
use std::time::Duration;

use onceward::proto::Outcome;

use crate::harness::*;

#[tokio::test]
async fn serve_with_no_flags_in_an_empty_directory_claims_completes_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_onceward"))
        .arg("serve")
        .current_dir(dir.path())
        // Only the ports come from the environment, so parallel tests do not collide;
        // every storage choice is the default.
        .env("ONCEWARD_LISTEN", &listen)
        .env(
            "ONCEWARD_METRICS_LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env_remove("ONCEWARD_DATABASE_URL")
        .env_remove("ONCEWARD_REDIS_URL")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start onceward serve");

    let addr = listen.parse().unwrap();
    let connected = eventually(Duration::from_secs(20), || async move {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    assert!(connected, "the sidecar never listened on {listen}");
    let mut client = TestApp::connect(addr).await;

    let held = claim(&mut client, "quickstart", "first-key").await;
    assert_eq!(outcome(&held), Outcome::Acquired);
    complete(
        &mut client,
        "quickstart",
        "first-key",
        held.fencing_token,
        b"hello",
    )
    .await
    .unwrap();
    let replay = claim(&mut client, "quickstart", "first-key").await;
    assert_eq!(outcome(&replay), Outcome::Completed);
    assert_eq!(replay.response, b"hello");
    assert!(dir.path().join("onceward-data/onceward.db").exists());

    let pid = server.id().expect("running").to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(signalled.success());
    let exited = tokio::time::timeout(Duration::from_secs(10), server.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    let mut log = String::new();
    use tokio::io::AsyncReadExt as _;
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .await
        .unwrap();
    assert!(exited.success(), "exit status {exited:?}; log:\n{log}");
    assert!(
        log.contains("embedded SQLite") && log.contains("single host only"),
        "{log}"
    );
    assert!(log.contains("hot tier: in-process"), "{log}");
}
