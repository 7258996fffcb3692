//! Every refusal over Connect is a Connect error body under Connect's HTTP status —
//! malformed bodies `invalid_argument`, never `internal` — and tenants' tokens work
//! as over gRPC, with TLS too.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::json;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, pem::PemObject as _};

use super::{Caller, VERSIONS, Version};
use crate::harness::*;
use crate::secured::{NAMESPACE, NOT_GRANTED, Secured, TOKEN, credentials, file};

/// What is wrong, the content type, the body and the headers.
type Case<'a> = (&'a str, &'a str, Vec<u8>, &'a [(&'a str, &'a str)]);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_request_is_an_invalid_argument_connect_error() {
    let app = TestApp::builder().spawn().await;
    for version in VERSIONS {
        let connect = Caller::new(&app, version);
        let claim = "/onceward.v1.Onceward/Claim";
        let v1 = [("connect-protocol-version", "1")];
        let cases: [Case; 8] = [
            (
                "unknown field",
                "application/json",
                br#"{"namespace":"a","key":"k","color":"red"}"#.to_vec(),
                &v1,
            ),
            (
                "not JSON",
                "application/json",
                b"{\"namespace\":".to_vec(),
                &v1,
            ),
            (
                "invalid UTF-8",
                "application/json",
                b"{\"key\":\"\xff\xfe\"}".to_vec(),
                &v1,
            ),
            (
                "a bad Duration",
                "application/json",
                br#"{"namespace":"a","key":"k","lease":"soon"}"#.to_vec(),
                &v1,
            ),
            (
                "base64 that is not",
                "application/json",
                br#"{"namespace":"a","key":"k","fingerprint":"%%%"}"#.to_vec(),
                &v1,
            ),
            (
                "no protobuf",
                "application/proto",
                vec![0xff, 0xff, 0xff],
                &v1,
            ),
            (
                "an invalid namespace",
                "application/json",
                br#"{"namespace":"no spaces","key":"k"}"#.to_vec(),
                &v1,
            ),
            (
                "another protocol version",
                "application/json",
                br#"{"namespace":"a","key":"k"}"#.to_vec(),
                &[("connect-protocol-version", "2")],
            ),
        ];
        for (case, content_type, body, headers) in cases {
            let reply = connect.post(claim, content_type, body, headers).await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{case} ({version:?}): {reply:?}"
            );
            assert_eq!(reply.error_code(), "invalid_argument", "{case}");
            assert!(
                !reply.json()["message"].as_str().unwrap().is_empty(),
                "{case}"
            );
        }
        let namespace = connect
            .json("Claim", json!({"namespace": "no spaces", "key": "k"}))
            .await;
        assert!(
            namespace.json()["message"]
                .as_str()
                .unwrap()
                .contains("namespace"),
            "the message names the field: {namespace:?}"
        );
        let unknown = connect
            .post("/onceward.v1.Onceward/Nope", "application/json", "{}", &v1)
            .await;
        assert_eq!(unknown.status, StatusCode::NOT_IMPLEMENTED);
        assert_eq!(unknown.error_code(), "unimplemented");
    }
    assert_eq!(
        app.metric(
            "onceward_rpc_duration_seconds_count",
            &[
                ("method", "Claim"),
                ("code", "INVALID_ARGUMENT"),
                ("protocol", "connect")
            ],
        )
        .await,
        // All but the undecodable protobuf, which tonic's codec refuses before any
        // handler runs: uncounted over gRPC too.
        2.0 * 8.0,
        "refusals are counted like answers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_transport_limit_is_resource_exhausted() {
    let app = TestApp::builder()
        .args(&["--max-response-bytes=1024"])
        .spawn()
        .await;
    let connect = Caller::new(&app, Version::Http1);
    // The transport limit is the largest response plus 64 KiB; a JSON body may be
    // twice that.
    let response = base64_of_zeros(300 * 1024);
    let reply = connect
        .json(
            "Complete",
            json!({"namespace": "a", "key": "k", "fencingToken": "1", "response": response}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{reply:?}");
    assert_eq!(reply.error_code(), "resource_exhausted");
}

fn base64_of_zeros(bytes: usize) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(vec![0u8; bytes])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_deadline_is_the_calls_deadline() {
    let app = TestApp::builder().spawn().await;
    let connect = Caller::new(&app, Version::Http1);
    let headers = [
        ("connect-protocol-version", "1"),
        ("connect-timeout-ms", "soon"),
    ];
    let reply = connect
        .post(
            "/onceward.v1.Onceward/Lookup",
            "application/json",
            "{}",
            &headers,
        )
        .await;
    assert_eq!(reply.error_code(), "invalid_argument", "{reply:?}");
    let headers = [
        ("connect-protocol-version", "1"),
        ("connect-timeout-ms", "5000"),
    ];
    let reply = connect
        .post(
            "/onceward.v1.Onceward/Lookup",
            "application/json",
            r#"{"namespace":"a","key":"k"}"#,
            &headers,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_token_is_required_and_scoped_over_connect() {
    let credentials = credentials();
    let app = TestApp::builder()
        .tenants(credentials.path().join("tenants.toml"))
        .spawn()
        .await;
    for version in VERSIONS {
        let mut connect = Caller::new(&app, version);
        let claim = json!({"namespace": NAMESPACE, "key": format!("k-{version:?}")});
        let anonymous = connect.json("Claim", claim.clone()).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{anonymous:?}");
        assert_eq!(anonymous.error_code(), "unauthenticated");

        connect.token = Some("not-a-token".into());
        let wrong = connect.json("Claim", claim.clone()).await;
        assert_eq!(wrong.error_code(), "unauthenticated");

        connect.token = Some(TOKEN.into());
        let acquired = connect.ok("Claim", claim).await;
        assert_eq!(acquired["outcome"], "OUTCOME_ACQUIRED");
        let elsewhere = connect
            .json("Claim", json!({"namespace": NOT_GRANTED, "key": "k"}))
            .await;
        assert_eq!(elsewhere.status, StatusCode::FORBIDDEN);
        assert_eq!(elsewhere.error_code(), "permission_denied");
    }
    // Health stays open, over Connect too.
    let health = Caller::new(&app, Version::Http1)
        .post(
            "/grpc.health.v1.Health/Check",
            "application/json",
            "{}",
            &[],
        )
        .await;
    assert_eq!(health.json(), json!({"status": "SERVING"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_over_tls_works_on_http1_and_http2_with_a_token() {
    let secured = Secured::spawn().await;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&secured.pem(file::CA)).unwrap())
        .unwrap();
    for (version, alpn) in [(Version::Http1, &b"http/1.1"[..]), (Version::Http2, b"h2")] {
        let mut config = tokio_rustls::rustls::ClientConfig::builder()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let tcp = tokio::net::TcpStream::connect(secured.app.addr)
            .await
            .unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("TLS offers both ALPN protocols");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
        let request = hyper::Request::post(format!(
            "https://localhost:{}/onceward.v1.Onceward/Claim",
            secured.app.addr.port()
        ))
        .header("host", format!("localhost:{}", secured.app.addr.port()))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(
            json!({"namespace": NAMESPACE, "key": format!("tls-{version:?}")}).to_string(),
        )))
        .unwrap();
        let reply = super::send(tls, version, request).await;
        assert_eq!(reply.status, StatusCode::OK, "{version:?}: {reply:?}");
        assert_eq!(reply.json()["outcome"], "OUTCOME_ACQUIRED");
    }
}
