//! The Rust guard (`Client::once`) against a real sidecar: every branch, a lease kept
//! alive past its length, a `Complete` retried through a cut connection, a retry
//! budget that stops an outage from becoming a retry storm, and a sidecar with tenants
//! and mutual TLS, reached with a bearer token and certificates.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use onceward::proto::{Outcome, RecordState};
use onceward_client::{Client, ClientConfig, ClientConfigBuilder, ClientError, Once, OnceError};

use crate::harness::*;
use crate::secured::{NAMESPACE, NOT_GRANTED, Secured, TOKEN, file};

const NS: &str = "guard";

/// An effect that counts its runs and returns `response`.
fn counted(
    runs: &Arc<AtomicU32>,
    response: &'static [u8],
) -> impl FnOnce(onceward_client::FencingToken) -> std::future::Ready<Result<Vec<u8>, Infallible>> + use<>
{
    let runs = runs.clone();
    move |_| {
        runs.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(response.to_vec()))
    }
}

async fn connect(app: &TestApp) -> Client {
    Client::connect(app.addr.to_string())
        .await
        .expect("connect")
}

#[tokio::test]
async fn the_first_call_runs_the_effect_and_stores_its_result() {
    let app = TestApp::builder().spawn().await;
    let client = connect(&app).await;
    let runs = Arc::new(AtomicU32::new(0));

    let result = client
        .once(NS, "k", b"fp", counted(&runs, b"receipt"))
        .await
        .unwrap();

    assert_eq!(result, Once::Ran(b"receipt".to_vec()));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let record = lookup(&mut app.client.clone(), NS, "k")
        .await
        .record
        .unwrap();
    assert_eq!(record.state, RecordState::Completed as i32);
    assert_eq!(record.response, b"receipt");
}

#[tokio::test]
async fn a_duplicate_gets_the_stored_result_as_replayed_without_running_the_effect() {
    let app = TestApp::builder().spawn().await;
    let client = connect(&app).await;
    let runs = Arc::new(AtomicU32::new(0));

    client
        .once(NS, "k", b"fp", counted(&runs, b"receipt"))
        .await
        .unwrap();
    let again = client
        .once(NS, "k", b"fp", counted(&runs, b"second"))
        .await
        .unwrap();

    assert_eq!(again, Once::Replayed(b"receipt".to_vec()));
    assert!(again.was_replayed());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_caller_waits_while_another_holds_the_key_and_returns_the_holders_result() {
    let app = TestApp::builder().spawn().await;
    let mut raw = app.client.clone();
    let held = claim(&mut raw, NS, "k").await;
    assert_eq!(outcome(&held), Outcome::Acquired);
    let client = connect(&app).await;
    let runs = Arc::new(AtomicU32::new(0));

    let waiter = tokio::spawn({
        let effect = counted(&runs, b"mine");
        async move { client.once(NS, "k", b"", effect).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the guard waits for the holder");
    complete(&mut raw, NS, "k", held.fencing_token, b"theirs")
        .await
        .unwrap();

    let result = waiter.await.unwrap().unwrap();
    assert_eq!(result, Once::Replayed(b"theirs".to_vec()));
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_different_fingerprint_is_a_typed_error_and_runs_nothing() {
    let app = TestApp::builder().spawn().await;
    let client = connect(&app).await;
    let runs = Arc::new(AtomicU32::new(0));
    client
        .once(NS, "k", b"fp-1", counted(&runs, b"receipt"))
        .await
        .unwrap();

    let mismatch = client
        .once(NS, "k", b"fp-2", counted(&runs, b"other"))
        .await;

    assert!(matches!(mismatch, Err(OnceError::FingerprintMismatch)));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[derive(Debug, thiserror::Error)]
#[error("card declined")]
struct Declined;

#[tokio::test]
async fn an_effect_that_did_not_happen_releases_the_key_and_the_next_caller_acquires_it() {
    let app = TestApp::builder().spawn().await;
    let client = connect(&app).await;

    let failed = client
        .once(NS, "k", b"", |_| async { Err::<Vec<u8>, _>(Declined) })
        .await;
    assert!(matches!(failed, Err(OnceError::Effect(Declined))));

    let next = claim(&mut app.client.clone(), NS, "k").await;
    assert_eq!(
        outcome(&next),
        Outcome::Acquired,
        "released, not left to expire"
    );
    let retried = client
        .once(NS, "k2", b"", |_| async {
            Ok::<_, Declined>(b"ok".to_vec())
        })
        .await
        .unwrap();
    assert_eq!(retried, Once::Ran(b"ok".to_vec()));
}

#[tokio::test]
async fn an_effect_longer_than_its_lease_keeps_the_key_and_no_second_caller_acquires() {
    let app = TestApp::builder().spawn().await;
    let lease = Duration::from_millis(600);
    let client = Client::connect_with(
        app.addr.to_string(),
        ClientConfig::builder().lease(lease).build(),
    )
    .await
    .unwrap();
    let raw = app.client.clone();

    let result = client
        .once(NS, "k", b"", |_| async move {
            let mut raw = raw;
            // Three and more leases long; a competitor keeps trying the whole time.
            let until = tokio::time::Instant::now() + lease * 3;
            while tokio::time::Instant::now() < until {
                let competitor = claim(&mut raw, NS, "k").await;
                assert_eq!(outcome(&competitor), Outcome::InProgress, "taken over");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok::<_, Infallible>(b"slow".to_vec())
        })
        .await
        .unwrap();

    assert_eq!(result, Once::Ran(b"slow".to_vec()));
}

#[tokio::test]
async fn a_complete_that_hits_a_cut_connection_is_retried_until_it_lands() {
    let app = TestApp::builder().spawn().await;
    let proxy = Arc::new(TcpProxy::start(app.addr).await);
    let client = Client::connect_with(
        proxy.addr.to_string(),
        ClientConfig::builder()
            .initial_backoff(Duration::from_millis(20))
            .max_backoff(Duration::from_millis(100))
            .build(),
    )
    .await
    .unwrap();

    let result = client
        .once(NS, "k", b"", |_| {
            let proxy = proxy.clone();
            async move {
                // The effect happened; now the network fails right before Complete.
                proxy.cut();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    proxy.restore();
                });
                Ok::<_, Infallible>(b"charged".to_vec())
            }
        })
        .await
        .unwrap();

    assert_eq!(result, Once::Ran(b"charged".to_vec()));
    let record = lookup(&mut app.client.clone(), NS, "k")
        .await
        .record
        .unwrap();
    assert_eq!(record.state, RecordState::Completed as i32);
    assert_eq!(record.response, b"charged");
}

#[tokio::test]
async fn an_unreachable_sidecar_exhausts_the_retry_budget_after_a_bounded_number_of_attempts() {
    let app = TestApp::builder().spawn().await;
    let proxy = TcpProxy::start(app.addr).await;
    let client = Client::connect_with(
        proxy.addr.to_string(),
        ClientConfig::builder()
            .max_retry_tokens(3.0)
            .min_retries_per_second(0.0)
            .max_attempts(100)
            .initial_backoff(Duration::from_millis(10))
            .max_backoff(Duration::from_millis(50))
            .build(),
    )
    .await
    .unwrap();
    proxy.cut();
    let runs = Arc::new(AtomicU32::new(0));

    let first = client.once(NS, "k", b"", counted(&runs, b"x")).await;
    // The budget is the client's, not the call's: the next call may not retry at all.
    let second = client.once(NS, "k", b"", counted(&runs, b"x")).await;

    match first {
        Err(OnceError::Client(ClientError::RetryBudgetExhausted { attempts, .. })) => {
            assert_eq!(attempts, 4, "the first attempt and the three saved retries")
        }
        other => panic!("expected the budget to stop retries, got {other:?}"),
    }
    assert!(matches!(
        second,
        Err(OnceError::Client(ClientError::RetryBudgetExhausted {
            attempts: 1,
            ..
        }))
    ));
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[path = "../../clients/rust/examples/guard.rs"]
#[allow(dead_code)]
mod guard_example;

#[tokio::test]
async fn the_readme_guard_example_sends_once_and_then_replays() {
    let app = TestApp::builder().spawn().await;
    let client = connect(&app).await;

    let first = guard_example::send_welcome(&client).await.unwrap();
    let second = guard_example::send_welcome(&client).await.unwrap();

    assert_eq!(first, Once::Ran(b"message-id-1".to_vec()));
    assert_eq!(second, Once::Replayed(b"message-id-1".to_vec()));
}

/// A TCP proxy that forwards a client's bytes at once but can hold the server's
/// replies back: a reply lost (or late) on the way, after the server acted.
struct ReplyHoldingProxy {
    addr: std::net::SocketAddr,
    hold: tokio::sync::watch::Sender<bool>,
}

impl ReplyHoldingProxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (hold, held) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let outbound = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let (mut client_read, mut client_write) = inbound.into_split();
                let (mut server_read, mut server_write) = outbound.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let mut held = held.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                    let mut buffer = vec![0; 64 * 1024];
                    loop {
                        let Ok(n) = server_read.read(&mut buffer).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        // Replies wait here while held, in order, then go on.
                        let _ = held.wait_for(|holding| !holding).await;
                        if client_write.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { addr, hold }
    }

    fn hold_replies(&self, hold: bool) {
        self.hold.send_replace(hold);
    }
}

#[tokio::test]
async fn a_claim_whose_reply_came_too_late_is_retried_with_its_claimant_and_acquired() {
    let app = TestApp::builder().spawn().await;
    let proxy = ReplyHoldingProxy::start(app.addr).await;
    let config = ClientConfig::builder()
        .rpc_timeout(Duration::from_millis(300))
        .build();
    let client = Client::connect_with(proxy.addr.to_string(), config)
        .await
        .expect("connect");
    // The connection is up; from now on the sidecar acts but its replies are late.
    proxy.hold_replies(true);
    let release = tokio::spawn({
        let proxy_hold = proxy.hold.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(450)).await;
            proxy_hold.send_replace(false);
        }
    });
    // The first try times out after the sidecar acquired; the retry, sent with the
    // same claimant, is the same claim.
    let claimed = client.claim(NS, "late-reply", b"").await.expect("claim");
    release.await.unwrap();
    let onceward_client::Claim::Acquired(lease) = claimed else {
        panic!("a retry with its claimant must be ACQUIRED, got {claimed:?}");
    };
    let attempts = |attempt: &'static str| {
        let app = &app;
        async move {
            app.metric(
                "onceward_claim_attempts_total",
                &[("namespace", NS), ("attempt", attempt)],
            )
            .await
        }
    };
    assert_eq!(attempts("1").await, 1.0);
    assert!(attempts("2").await >= 1.0, "the retry says it is one");
    let mut direct = app.client.clone();
    let record = lookup(&mut direct, NS, "late-reply").await;
    assert_eq!(
        record.record.map(|r| r.state),
        Some(RecordState::InProgress as i32)
    );
    complete(&mut direct, NS, "late-reply", lease.token().get(), b"done")
        .await
        .expect("the token the client holds is the claim's");
}

/// TLS settings for a [`Secured`] sidecar: its CA, and the client certificate it asks
/// for with mutual TLS.
fn tls_for(sidecar: &Secured) -> ClientConfigBuilder {
    ClientConfig::builder()
        .tls_ca_certificate(sidecar.pem(file::CA))
        .tls_client_identity(
            sidecar.pem(file::CLIENT_CERT),
            sidecar.pem(file::CLIENT_KEY),
        )
}

#[tokio::test]
async fn once_runs_against_a_sidecar_with_tenants_and_mutual_tls_given_the_token_and_certificates()
{
    let sidecar = Secured::spawn_mutual().await;
    let config = tls_for(&sidecar).auth_token(TOKEN).build();
    assert!(
        !format!("{config:?}").contains(TOKEN),
        "the token stays out of Debug"
    );
    let client = Client::connect_with(sidecar.https_addr(), config)
        .await
        .expect("a TLS connection");
    let runs = Arc::new(AtomicU32::new(0));

    let first = client
        .once(NAMESPACE, "k", b"fp", counted(&runs, b"receipt"))
        .await
        .unwrap();
    let again = client
        .once(NAMESPACE, "k", b"fp", counted(&runs, b"other"))
        .await
        .unwrap();

    assert_eq!(first, Once::Ran(b"receipt".to_vec()));
    assert_eq!(again, Once::Replayed(b"receipt".to_vec()));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn without_the_token_or_outside_its_namespaces_once_fails_unauthorized_and_runs_nothing() {
    let sidecar = Secured::spawn_mutual().await;
    let runs = Arc::new(AtomicU32::new(0));
    let anonymous = Client::connect_with(sidecar.https_addr(), tls_for(&sidecar).build())
        .await
        .expect("TLS alone connects");

    let refused = anonymous
        .once(NAMESPACE, "k", b"", counted(&runs, b"x"))
        .await;
    match refused {
        Err(OnceError::Client(
            error @ ClientError::Unauthorized {
                code: "UNAUTHENTICATED",
                ..
            },
        )) => assert!(error.to_string().contains("UNAUTHENTICATED"), "{error}"),
        other => panic!("expected UNAUTHENTICATED, got {other:?}"),
    }

    let tenant = Client::connect_with(
        sidecar.https_addr(),
        tls_for(&sidecar).auth_token(TOKEN).build(),
    )
    .await
    .unwrap();
    let denied = tenant
        .once(NOT_GRANTED, "k", b"", counted(&runs, b"x"))
        .await;
    assert!(
        matches!(
            denied,
            Err(OnceError::Client(ClientError::Unauthorized {
                code: "PERMISSION_DENIED",
                ..
            }))
        ),
        "{denied:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn tls_that_cannot_work_is_a_config_error_and_only_an_absent_sidecar_a_connect_error() {
    let sidecar = Secured::spawn().await;
    let with_ca = |ca: &str| {
        ClientConfig::builder()
            .auth_token(TOKEN)
            .tls_ca_certificate(sidecar.pem(ca))
            .build()
    };

    let wrong_ca = Client::connect_with(sidecar.https_addr(), with_ca(file::OTHER_CA)).await;
    assert!(
        matches!(&wrong_ca, Err(ClientError::Config { message, .. }) if message.contains("TLS handshake failed")),
        "{:?}",
        wrong_ca.err()
    );
    // TLS settings with a plain address would send the token in clear.
    let plaintext = Client::connect_with(sidecar.plaintext_addr(), with_ca(file::CA)).await;
    assert!(
        matches!(plaintext, Err(ClientError::Config { .. })),
        "{:?}",
        plaintext.err()
    );
    let absent = Client::connect_with(
        format!("https://localhost:{}", free_port()),
        with_ca(file::CA),
    )
    .await;
    assert!(
        matches!(absent, Err(ClientError::Connect { .. })),
        "{:?}",
        absent.err()
    );
}

#[path = "../../clients/rust/examples/secured.rs"]
#[allow(dead_code)]
mod secured_example;

#[tokio::test]
async fn the_readme_tls_example_connects_with_the_token_and_certificate_files() {
    let sidecar = Secured::spawn_mutual().await;
    let (ca, cert, key) = (
        sidecar.path(file::CA),
        sidecar.path(file::CLIENT_CERT),
        sidecar.path(file::CLIENT_KEY),
    );
    let client = secured_example::connect_secured(
        &sidecar.https_addr(),
        TOKEN,
        std::path::Path::new(&ca),
        Some((std::path::Path::new(&cert), std::path::Path::new(&key))),
    )
    .await
    .expect("a mutual-TLS connection with the token");
    let runs = Arc::new(AtomicU32::new(0));
    let once = client
        .once(NAMESPACE, "readme-tls", b"fp", counted(&runs, b"receipt"))
        .await
        .unwrap();
    assert_eq!(once, Once::Ran(b"receipt".to_vec()));

    let wrong = secured_example::connect_secured(
        &sidecar.https_addr(),
        "not-a-tenant-token",
        std::path::Path::new(&ca),
        Some((std::path::Path::new(&cert), std::path::Path::new(&key))),
    )
    .await
    .expect("the token is only checked per call");
    let refused = wrong
        .once(NAMESPACE, "readme-tls-2", b"fp", counted(&runs, b"x"))
        .await;
    assert!(
        matches!(
            refused,
            Err(OnceError::Client(ClientError::Unauthorized { .. }))
        ),
        "{refused:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}
