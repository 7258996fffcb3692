//! Connect (unary, JSON and protobuf) and gRPC-Web on the gRPC port, over real HTTP/1.1
//! and HTTP/2 connections: every outcome and call, every error as a Connect error body,
//! tenants' tokens, TLS, and the RPC metric's protocol label. (The official Connect
//! clients are exercised by the TypeScript client's suite, `typescript`.)

mod errors;
mod grpc_web;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{HeaderMap, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use onceward::proto::{ClaimResponse, CompleteRequest, Outcome};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::harness::*;

/// The HTTP versions every Connect test runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http1,
    /// HTTP/2 with prior knowledge (h2c), as `curl --http2-prior-knowledge` speaks it.
    Http2,
}

pub const VERSIONS: [Version; 2] = [Version::Http1, Version::Http2];

/// One HTTP exchange, body read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("{error}: {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The Connect error code, asserting the body is a Connect error.
    pub fn error_code(&self) -> String {
        assert_eq!(
            self.headers["content-type"], "application/json",
            "a Connect error is JSON"
        );
        self.json()["code"].as_str().expect("a code").to_owned()
    }
}

/// Sends one request on a connection of its own over `version`.
pub async fn send(
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    version: Version,
    request: hyper::Request<Full<Bytes>>,
) -> Reply {
    let io = TokioIo::new(stream);
    let response = match version {
        Version::Http1 => {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("HTTP/1.1 handshake");
            tokio::spawn(connection);
            sender.send_request(request).await
        }
        Version::Http2 => {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .expect("HTTP/2 handshake");
            tokio::spawn(connection);
            sender.send_request(request).await
        }
    }
    .expect("an HTTP response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("the whole body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A Connect caller of one sidecar over one HTTP version, with a token or without.
pub struct Caller {
    pub addr: std::net::SocketAddr,
    pub version: Version,
    pub token: Option<String>,
}

impl Caller {
    pub fn new(app: &TestApp, version: Version) -> Self {
        Self {
            addr: app.addr,
            version,
            token: None,
        }
    }

    /// POSTs `body` to `path` with `content_type` and the extra `headers`.
    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<Bytes>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = hyper::Request::post(format!("http://{}{path}", self.addr))
            .header("content-type", content_type);
        if self.version == Version::Http1 {
            request = request.header("host", self.addr.to_string());
        }
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body.into())).expect("a request");
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        send(stream, self.version, request).await
    }

    /// A Connect JSON call of `onceward.v1.Onceward/{method}`.
    pub async fn json(&self, method: &str, body: Value) -> Reply {
        self.post(
            &format!("/onceward.v1.Onceward/{method}"),
            "application/json",
            body.to_string(),
            &[("connect-protocol-version", "1")],
        )
        .await
    }

    /// A Connect JSON call that must succeed; its reply.
    pub async fn ok(&self, method: &str, body: Value) -> Value {
        let reply = self.json(method, body).await;
        assert_eq!(reply.status, StatusCode::OK, "{method}: {reply:?}");
        assert_eq!(reply.headers["content-type"], "application/json");
        reply.json()
    }

    /// A Connect protobuf call of `onceward.v1.Onceward/{method}`.
    pub async fn proto<T: prost::Message + Default>(
        &self,
        method: &str,
        request: impl prost::Message,
    ) -> Result<T, Reply> {
        let reply = self
            .post(
                &format!("/onceward.v1.Onceward/{method}"),
                "application/proto",
                request.encode_to_vec(),
                &[("connect-protocol-version", "1")],
            )
            .await;
        if reply.status != StatusCode::OK {
            return Err(reply);
        }
        assert_eq!(reply.headers["content-type"], "application/proto");
        Ok(T::decode(reply.body).expect("a reply message"))
    }
}

fn token_of(reply: &Value) -> u64 {
    reply["fencingToken"]
        .as_str()
        .expect("uint64 is written as a string")
        .parse()
        .expect("a number")
}

fn timestamp(value: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().expect("a timestamp string"))
        .expect("RFC 3339")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_and_call_works_over_connect_json_on_http1_and_http2() {
    let app = TestApp::builder().spawn().await;
    for version in VERSIONS {
        let connect = Caller::new(&app, version);
        let key = format!("order-{version:?}");
        let claim = |fingerprint: &str, claimant: &str| {
            json!({"namespace": "shop", "key": key, "fingerprint": fingerprint,
                   "lease": "30s", "claimant": claimant, "attempt": 1})
        };
        let acquired = connect
            .ok("Claim", claim("AQI=", "AAAAAAAAAAAAAAAAAAAAAQ=="))
            .await;
        assert_eq!(acquired["outcome"], "OUTCOME_ACQUIRED", "{version:?}");
        assert_eq!(acquired["servedBy"], "TIER_LEDGER");
        let token = token_of(&acquired);

        let retried = connect
            .ok("Claim", claim("AQI=", "AAAAAAAAAAAAAAAAAAAAAQ=="))
            .await;
        assert_eq!(retried["outcome"], "OUTCOME_ACQUIRED", "the same claimant");
        assert_eq!(token_of(&retried), token);
        let held = connect
            .ok("Claim", claim("AQI=", "AAAAAAAAAAAAAAAAAAAAAg=="))
            .await;
        assert_eq!(held["outcome"], "OUTCOME_IN_PROGRESS");
        let retry_after = held["retryAfter"].as_str().expect("a Duration string");
        assert!(retry_after.ends_with('s'), "{retry_after}");
        let mismatch = connect.ok("Claim", claim("CQk=", "")).await;
        assert_eq!(mismatch["outcome"], "OUTCOME_FINGERPRINT_MISMATCH");

        let extended = connect
            .ok(
                "ExtendLease",
                json!({"namespace": "shop", "key": key, "fencingToken": token, "lease": "60s"}),
            )
            .await;
        assert!(timestamp(&extended["leaseExpiresAt"]) > chrono::Utc::now());
        // uint64 as a JSON number here, as a string above.
        let completed = connect
            .ok(
                "Complete",
                json!({"namespace": "shop", "key": key, "fencingToken": token,
                       "response": "aGVsbG8=", "retention": "3600s"}),
            )
            .await;
        let expires_at = timestamp(&completed["expiresAt"]);
        assert!(expires_at > chrono::Utc::now() + chrono::Duration::minutes(59));

        let replay = connect.ok("Claim", claim("AQI=", "")).await;
        assert_eq!(replay["outcome"], "OUTCOME_COMPLETED");
        assert_eq!(replay["response"], "aGVsbG8=", "bytes are base64");
        timestamp(&replay["completedAt"]);
        assert!(replay.get("fencingToken").is_none(), "no token in a replay");

        let found = connect
            .ok("Lookup", json!({"namespace": "shop", "key": key}))
            .await;
        assert_eq!(found["found"], true);
        assert_eq!(found["record"]["state"], "RECORD_STATE_COMPLETED");
        assert_eq!(found["record"]["fingerprint"], "AQI=");
        assert_eq!(timestamp(&found["record"]["expiresAt"]), expires_at);
        let absent = connect
            .ok("Lookup", json!({"namespace": "shop", "key": "never"}))
            .await;
        assert_eq!(absent, json!({}), "found=false is the default, left out");

        let released_key = format!("released-{version:?}");
        let acquired = connect
            .ok("Claim", json!({"namespace": "shop", "key": released_key}))
            .await;
        let release = json!({"namespace": "shop", "key": released_key,
                             "fencingToken": acquired["fencingToken"]});
        assert_eq!(connect.ok("Release", release.clone()).await, json!({}));
        let again = connect.json("Release", release).await;
        assert_eq!(again.status, StatusCode::BAD_REQUEST);
        assert_eq!(again.error_code(), "failed_precondition");
        let reacquired = connect
            .ok("Claim", json!({"namespace": "shop", "key": released_key}))
            .await;
        assert_eq!(reacquired["outcome"], "OUTCOME_ACQUIRED");
        assert!(token_of(&reacquired) > token_of(&acquired));
    }
    let claims = async |protocol| {
        app.metric(
            "onceward_rpc_duration_seconds_count",
            &[("method", "Claim"), ("code", "OK"), ("protocol", protocol)],
        )
        .await
    };
    assert_eq!(
        claims("connect").await,
        2.0 * 7.0,
        "every Connect claim, labelled"
    );
    assert_eq!(claims("grpc").await, 0.0, "none counted as gRPC");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_protobuf_carries_the_same_calls_on_http1_and_http2() {
    let app = TestApp::builder().spawn().await;
    for version in VERSIONS {
        let connect = Caller::new(&app, version);
        let key = format!("proto-{version:?}");
        let request = claim_request("shop", &key, b"fp", None);
        let acquired: ClaimResponse = connect.proto("Claim", request.clone()).await.unwrap();
        assert_eq!(acquired.outcome(), Outcome::Acquired, "{version:?}");
        let complete = CompleteRequest {
            namespace: "shop".into(),
            key: key.clone(),
            fencing_token: acquired.fencing_token,
            response: b"receipt".to_vec(),
            ..Default::default()
        };
        let _: onceward::proto::CompleteResponse =
            connect.proto("Complete", complete.clone()).await.unwrap();
        let replay: ClaimResponse = connect.proto("Claim", request).await.unwrap();
        assert_eq!(replay.outcome(), Outcome::Completed);
        assert_eq!(replay.response, b"receipt");

        let stale = CompleteRequest {
            fencing_token: acquired.fencing_token + 1,
            ..complete
        };
        let refused = connect
            .proto::<onceward::proto::CompleteResponse>("Complete", stale)
            .await
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert_eq!(refused.error_code(), "failed_precondition");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_over_connect_is_the_same_claim_as_over_grpc() {
    let app = TestApp::builder().spawn().await;
    let mut grpc = app.client.clone();
    let acquired = claim(&mut grpc, "shop", "shared").await;
    let connect = Caller::new(&app, Version::Http1);
    let held = connect
        .ok("Claim", json!({"namespace": "shop", "key": "shared"}))
        .await;
    assert_eq!(held["outcome"], "OUTCOME_IN_PROGRESS");
    connect
        .ok(
            "Complete",
            json!({"namespace": "shop", "key": "shared",
                   "fencingToken": acquired.fencing_token.to_string(), "response": "b2s="}),
        )
        .await;
    let replay = claim(&mut grpc, "shop", "shared").await;
    assert_eq!(outcome(&replay), Outcome::Completed);
    assert_eq!(replay.response, b"ok");
}
