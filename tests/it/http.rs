//! The HTTP layer end to end: a real sidecar, the `charge` example service on port 0,
//! a real HTTP client. However a request is repeated, the card is charged once; and
//! behind a sidecar with tenants and TLS, the layer's client brings the token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use onceward::proto::Outcome;
use onceward_client::{Client, ClientConfig};

use crate::harness::*;
use crate::secured::{Secured, TOKEN, file};

#[path = "../../clients/rust/examples/charge.rs"]
#[allow(dead_code, unreachable_pub)]
mod charge;

/// A sidecar, the charge service in front of it, and an HTTP client.
struct ChargeService {
    sidecar: Arc<TestApp>,
    addr: SocketAddr,
    processor: Arc<charge::Processor>,
    http: HttpClient<HttpConnector, Full<Bytes>>,
}

/// One HTTP exchange, body read.
struct Reply {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: String,
}

impl ChargeService {
    async fn start() -> Self {
        let sidecar = TestApp::builder().spawn().await;
        let client = Client::connect(sidecar.addr.to_string())
            .await
            .expect("connect");
        Self::in_front_of(Arc::new(sidecar), client).await
    }

    /// The charge service calling `sidecar` through `client`.
    async fn in_front_of(sidecar: Arc<TestApp>, client: Client) -> Self {
        let processor = Arc::new(charge::Processor::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = charge::app(client, processor.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            sidecar,
            addr,
            processor,
            http: HttpClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn post(&self, key: Option<&str>, body: &str) -> Reply {
        let mut request = Request::post(format!("http://{}/charge", self.addr));
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let response = self.http.request(request).await.expect("HTTP exchange");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8(body.to_vec()).expect("UTF-8 body"),
        }
    }

    /// Posts until the answer is not 409, sleeping `Retry-After` between tries, as a
    /// well-behaved client would.
    async fn post_until_settled(&self, key: &str, body: &str) -> Reply {
        for _ in 0..30 {
            let reply = self.post(Some(key), body).await;
            if reply.status != StatusCode::CONFLICT {
                return reply;
            }
            let seconds: u64 = reply.headers["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            tokio::time::sleep(Duration::from_secs(seconds)).await;
        }
        panic!("still 409 after 30 tries");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_double_submit_charges_once_and_the_second_gets_the_replayed_response() {
    let service = ChargeService::start().await;

    let first = service.post(Some("order-1"), "1000").await;
    let second = service.post(Some("order-1"), "1000").await;

    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.body, r#"{"charge":1,"amount":1000}"#);
    assert!(first.headers.get("idempotent-replayed").is_none());
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(second.body, first.body);
    assert_eq!(second.headers["idempotent-replayed"], "true");
    assert_eq!(second.headers["content-type"], "application/json");
    assert_eq!(second.headers["location"], "/charges/1");
    assert_eq!(service.processor.charges(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_racing_identical_requests_charge_once_and_all_end_with_that_charge() {
    let service = Arc::new(ChargeService::start().await);

    let racers = (0..20).map(|_| {
        let service = service.clone();
        tokio::spawn(async move { service.post_until_settled("order-race", "250").await })
    });
    let replies = join_all(racers).await;

    assert_eq!(service.processor.charges(), 1);
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::CREATED);
        assert_eq!(reply.body, r#"{"charge":1,"amount":250}"#);
    }
    let fresh = replies
        .iter()
        .filter(|reply| reply.headers.get("idempotent-replayed").is_none())
        .count();
    assert_eq!(fresh, 1, "exactly one response came from the handler");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_after_a_5xx_charges_because_the_failure_was_not_stored() {
    let service = ChargeService::start().await;

    service.processor.set_down(true);
    let failed = service.post(Some("order-5xx"), "700").await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY);
    assert_eq!(service.processor.charges(), 0);

    service.processor.set_down(false);
    let retried = service.post(Some("order-5xx"), "700").await;
    assert_eq!(retried.status, StatusCode::CREATED);
    assert!(retried.headers.get("idempotent-replayed").is_none());
    let again = service.post(Some("order-5xx"), "700").await;
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(service.processor.charges(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_4xx_is_stored_and_replayed_like_any_other_answer() {
    let service = ChargeService::start().await;

    let refused = service.post(Some("order-bad"), "ten dollars").await;
    let again = service.post(Some("order-bad"), "ten dollars").await;

    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body, refused.body);
    assert_eq!(service.processor.charges(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_without_a_key_is_refused_with_400_and_charges_nothing() {
    let service = ChargeService::start().await;

    let reply = service.post(None, "1000").await;

    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.headers["content-type"], "application/problem+json");
    assert!(
        reply.body.contains("Idempotency-Key is required"),
        "{}",
        reply.body
    );
    assert_eq!(service.processor.charges(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_in_progress_gets_409_with_retry_after_in_whole_seconds() {
    let service = ChargeService::start().await;
    let mut grpc = service.sidecar.client.clone();
    let held = claim(&mut grpc, "charges", "order-held").await;
    assert_eq!(outcome(&held), Outcome::Acquired);

    let reply = service.post(Some("order-held"), "1000").await;

    assert_eq!(reply.status, StatusCode::CONFLICT);
    let seconds: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&seconds), "Retry-After: {seconds}");
    assert_eq!(service.processor.charges(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_key_with_a_different_body_gets_422() {
    let service = ChargeService::start().await;

    let first = service.post(Some("order-2"), "1000").await;
    let changed = service.post(Some("order-2"), "9999").await;

    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(changed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(service.processor.charges(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn other_methods_pass_through_without_a_key() {
    let service = ChargeService::start().await;
    let request = Request::get(format!("http://{}/charge", service.addr))
        .body(Full::new(Bytes::new()))
        .unwrap();

    let response = service.http.request(request).await.unwrap();

    // The route only has POST: axum's own 405 shows the layer let it through.
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn behind_a_sidecar_with_tenants_and_tls_the_token_charges_once_and_its_absence_is_a_500() {
    let secured = Secured::spawn().await;
    let addr = secured.https_addr();
    let config = || ClientConfig::builder().tls_ca_certificate(secured.pem(file::CA));
    let with_token = Client::connect_with(&addr, config().auth_token(TOKEN).build())
        .await
        .expect("TLS connection");
    let without_token = Client::connect_with(&addr, config().build())
        .await
        .expect("TLS connection");
    let Secured { app, .. } = secured;
    let sidecar = Arc::new(app);
    let service = ChargeService::in_front_of(sidecar.clone(), with_token).await;
    let misconfigured = ChargeService::in_front_of(sidecar, without_token).await;

    let first = service.post(Some("order-tls"), "1200").await;
    let second = service.post(Some("order-tls"), "1200").await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(second.headers["idempotent-replayed"], "true");
    assert_eq!(service.processor.charges(), 1);

    // The sidecar refuses a service without the token: its own misconfiguration, not
    // the caller's, and not something a retry fixes. The handler never runs.
    let refused = misconfigured.post(Some("order-tls-2"), "1200").await;
    assert_eq!(refused.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(refused.headers.get("retry-after").is_none());
    assert!(refused.body.contains("misconfigured"), "{}", refused.body);
    assert_eq!(misconfigured.processor.charges(), 0);
}

async fn join_all<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        out.push(handle.await.expect("task"));
    }
    out
}
