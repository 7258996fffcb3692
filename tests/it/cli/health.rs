//! `onceward health`, the probe for images without curl: exit 0 while the sidecar
//! answers SERVING, 5 once it is gone or silent, 7 for a TLS mistake; over TLS with
//! the same flags as every client command.

use std::time::{Duration, Instant};

use super::{onceward, onceward_env};
use crate::harness::*;
use crate::secured::{Secured, file};

#[tokio::test]
async fn health_is_exit_0_while_the_sidecar_serves_and_5_once_it_is_stopped() {
    let app = TestApp::builder().spawn().await;

    let serving = onceward(&app, &["health"]).await;
    serving.assert_exit(0);
    assert_eq!(serving.stdout, b"SERVING\n");
    let json = onceward(&app, &["health", "--json"]).await;
    assert_eq!(
        json.assert_exit(0).json(),
        serde_json::json!({"status": "SERVING"})
    );

    let addr = format!("http://{}", app.addr);
    app.stop().await;
    let stopped = onceward_env(&addr, &["health"], &[], None).await;
    stopped.assert_exit(5);
    assert!(stopped.stdout.is_empty());
    assert!(stopped.stderr.contains("UNAVAILABLE"), "{}", stopped.stderr);
}

#[tokio::test]
async fn health_is_exit_5_when_the_address_accepts_but_never_answers() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", silent.local_addr().unwrap());
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });

    let started = Instant::now();
    let hung = onceward_env(&addr, &["health", "--timeout", "500ms"], &[], None).await;
    hung.assert_exit(5);
    assert!(hung.stderr.contains("no answer"), "{}", hung.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    holder.abort();
}

#[tokio::test]
async fn health_speaks_mutual_tls_with_the_client_flags_and_a_plaintext_probe_is_exit_7() {
    let sidecar = Secured::spawn_mutual().await;
    let (ca, cert, key) = (
        sidecar.path(file::CA),
        sidecar.path(file::CLIENT_CERT),
        sidecar.path(file::CLIENT_KEY),
    );

    // Health needs no bearer token: it stays open with tenants configured.
    let serving = onceward_env(
        &sidecar.https_addr(),
        &[
            "health",
            "--ca-cert",
            &ca,
            "--client-cert",
            &cert,
            "--client-key",
            &key,
        ],
        &[],
        None,
    )
    .await;
    serving.assert_exit(0);
    assert_eq!(serving.stdout, b"SERVING\n");

    let plaintext = onceward_env(&sidecar.plaintext_addr(), &["health"], &[], None).await;
    plaintext.assert_exit(7);
}
