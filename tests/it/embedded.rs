//! The embedded default: `onceward serve` with no flags on a bare machine (SQLite
//! under ./onceward-data, in-process hot tier), as the real binary.

use std::process::Stdio;
use std::time::Duration;

use onceward::proto::Outcome;

use crate::harness::*;

#[tokio::test]
async fn serve_with_no_flags_in_an_empty_directory_claims_completes_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, listen) = serve_in(dir.path(), &[]).await;
    claims_completes_and_replays(&listen, "quickstart", "first-key", b"hello").await;
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

/// Starts `onceward serve` in `dir` with `args` and only its ports set (from the
/// environment, so parallel tests do not collide; every storage choice is the
/// default), and waits until it listens. Its log is on its piped stderr.
async fn serve_in(dir: &std::path::Path, args: &[&str]) -> (tokio::process::Child, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let server = tokio::process::Command::new(env!("CARGO_BIN_EXE_onceward"))
        .arg("serve")
        .args(args)
        .current_dir(dir)
        .env("ONCEWARD_LISTEN", &listen)
        .env(
            "ONCEWARD_METRICS_LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env_remove("ONCEWARD_DATABASE_URL")
        .env_remove("ONCEWARD_REDIS_URL")
        .env_remove("ONCEWARD_WORKER_THREADS")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start onceward serve");
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    let connected = eventually(Duration::from_secs(20), || async move {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    assert!(connected, "the sidecar never listened on {listen}");
    (server, listen)
}

/// Claims a fresh key on the sidecar at `listen`, completes it with `response`, and
/// checks that a second claim replays it.
async fn claims_completes_and_replays(listen: &str, namespace: &str, key: &str, response: &[u8]) {
    let mut client = TestApp::connect(listen.parse().unwrap()).await;
    let held = claim(&mut client, namespace, key).await;
    assert_eq!(outcome(&held), Outcome::Acquired);
    complete(&mut client, namespace, key, held.fencing_token, response)
        .await
        .unwrap();
    let replay = claim(&mut client, namespace, key).await;
    assert_eq!(outcome(&replay), Outcome::Completed);
    assert_eq!(replay.response, response);
}

/// The threads of a running process that are tokio worker threads.
fn runtime_workers(process: &tokio::process::Child) -> usize {
    let pid = process.id().expect("running");
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("tokio-rt-worker"))
        .count()
}

#[tokio::test]
async fn serve_runs_on_one_thread_by_default_and_on_as_many_as_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let (default, _) = serve_in(dir.path(), &[]).await;
    assert_eq!(
        runtime_workers(&default),
        0,
        "one thread: the main thread runs every task"
    );
    drop(default);

    let dir = tempfile::tempdir().unwrap();
    let (threaded, listen) = serve_in(dir.path(), &["--worker-threads", "3"]).await;
    assert_eq!(runtime_workers(&threaded), 3);
    claims_completes_and_replays(&listen, "threads", "key", b"r").await;

    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_onceward"))
        .args(["serve", "--worker-threads", "0"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--worker-threads"), "{stderr}");
}
