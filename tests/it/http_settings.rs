//! The HTTP layer's settings, end to end against a real sidecar: keys scoped per caller,
//! a key made from the request when none is sent, the status of a reused key, and which
//! responses are stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use http_body_util::BodyExt as _;
use onceward_client::Client;
use onceward_client::http::IdempotencyLayer;
use tower::ServiceExt as _;

use crate::harness::*;

/// A handler that counts its runs and answers `status` with the run's number and the
/// caller (`x-user`) in the body.
fn counting_app(layer: IdempotencyLayer, runs: Arc<AtomicU32>, status: StatusCode) -> Router {
    Router::new()
        .route(
            "/orders",
            post(move |request: Request<Body>| {
                let runs = runs.clone();
                async move {
                    let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                    let user = request
                        .headers()
                        .get("x-user")
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or("nobody")
                        .to_owned();
                    (status, format!("run {run} for {user}"))
                }
            }),
        )
        .layer(layer)
}

async fn idempotency(app: &TestApp, namespace: &str) -> IdempotencyLayer {
    let client = Client::connect(app.addr.to_string()).await.unwrap();
    IdempotencyLayer::new(client, namespace).unwrap()
}

async fn send(router: &Router, key: Option<&str>, user: &str, body: &str) -> (StatusCode, String) {
    let mut request = Request::post("/orders").header("x-user", user);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn keys_scoped_per_caller_never_show_one_caller_anothers_response() {
    let app = TestApp::builder().spawn().await;
    let runs = Arc::new(AtomicU32::new(0));
    let layer = idempotency(&app, "scoped").await.scope(|request| {
        request
            .headers
            .get("x-user")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    });
    let router = counting_app(layer, runs.clone(), StatusCode::CREATED);

    let alice = send(&router, Some("k-1"), "alice", "{}").await;
    let bob = send(&router, Some("k-1"), "bob", "{}").await;
    assert_eq!(alice, (StatusCode::CREATED, "run 1 for alice".to_owned()));
    assert_eq!(bob, (StatusCode::CREATED, "run 2 for bob".to_owned()));
    let alice_again = send(&router, Some("k-1"), "alice", "{}").await;
    assert_eq!(
        alice_again.1, "run 1 for alice",
        "alice's own response, replayed"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    // Unscoped, the same key would have been one operation.
    let runs = Arc::new(AtomicU32::new(0));
    let router = counting_app(
        idempotency(&app, "unscoped").await,
        runs.clone(),
        StatusCode::CREATED,
    );
    send(&router, Some("k-1"), "alice", "{}").await;
    let bob = send(&router, Some("k-1"), "bob", "{}").await;
    assert_eq!(bob.1, "run 1 for alice");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_key_made_from_the_request_dedupes_requests_that_send_none() {
    let app = TestApp::builder().spawn().await;
    let runs = Arc::new(AtomicU32::new(0));
    let layer = idempotency(&app, "derived")
        .await
        .key_from_request(|_, body| {
            let body = std::str::from_utf8(body).ok()?;
            body.strip_prefix("order=")
                .map(|order| format!("order-{order}"))
        });
    let router = counting_app(layer, runs.clone(), StatusCode::CREATED);

    let first = send(&router, None, "alice", "order=17").await;
    let again = send(&router, None, "alice", "order=17").await;
    let other = send(&router, None, "alice", "order=18").await;
    assert_eq!(first, (StatusCode::CREATED, "run 1 for alice".to_owned()));
    assert_eq!(again.1, "run 1 for alice");
    assert_eq!(other.1, "run 2 for alice");
    let refused = send(&router, None, "alice", "no order here").await;
    assert_eq!(
        refused.0,
        StatusCode::BAD_REQUEST,
        "no key to be made: required"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_reused_key_gets_the_configured_status_and_only_chosen_responses_are_stored() {
    let app = TestApp::builder().spawn().await;
    let runs = Arc::new(AtomicU32::new(0));
    let layer = idempotency(&app, "policy")
        .await
        .mismatch_status(StatusCode::CONFLICT)
        .store_when(|status| status.is_success());
    let router = counting_app(layer, runs.clone(), StatusCode::BAD_REQUEST);

    // A 400 is not stored here: the retry runs the handler again.
    send(&router, Some("k"), "alice", "a").await;
    let retried = send(&router, Some("k"), "alice", "a").await;
    assert_eq!(
        retried,
        (StatusCode::BAD_REQUEST, "run 2 for alice".to_owned())
    );

    let router = counting_app(
        idempotency(&app, "policy")
            .await
            .mismatch_status(StatusCode::CONFLICT),
        runs.clone(),
        StatusCode::CREATED,
    );
    send(&router, Some("stored"), "alice", "a").await;
    let reused = send(&router, Some("stored"), "alice", "b").await;
    assert_eq!(reused.0, StatusCode::CONFLICT);
    assert!(reused.1.contains("different request"), "{}", reused.1);
}
