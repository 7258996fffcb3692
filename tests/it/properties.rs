//! Property tests at the gRPC edge: arbitrary strings and bytes in every field give
//! OK, INVALID_ARGUMENT or FAILED_PRECONDITION (a made-up token) — never a panic,
//! INTERNAL or UNKNOWN — and every Claim answer is a known outcome. The same holds for
//! arbitrary bytes on the wire (random bodies, invalid UTF-8 in string fields, broken
//! gRPC framing), and a body that does not decode is INVALID_ARGUMENT.

use std::time::Duration;

use bytes::Bytes;
use onceward::proto::{self, Outcome};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use prost::Message as _;
use tonic::Code;

use crate::harness::*;
use crate::raw::{RawConnection, framed, onceward};

/// A namespace that is usually valid, sometimes not.
fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9._-]{1,64}",
        1 => any::<String>(),
        1 => "[A-Za-z0-9._-]{60,70}",
    ]
}

/// A key that is usually valid, sometimes long or full of control characters.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "\\PC{1,40}",
        1 => any::<String>(),
        1 => "\\PC{250,260}",
        1 => "[a-z\\x00-\\x1f\\x7f]{1,10}",
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn duration() -> impl Strategy<Value = Option<prost_types::Duration>> {
    proptest::option::of(
        (
            -5i64..4000,
            prop_oneof![
                Just(0i32),
                -2i32..2,
                0i32..1_000_000_000,
                Just(1_000_000_000)
            ],
        )
            .prop_map(|(seconds, nanos)| prost_types::Duration { seconds, nanos }),
    )
}

#[derive(Debug, Clone)]
struct Input {
    namespace: String,
    key: String,
    fingerprint: Vec<u8>,
    lease: Option<prost_types::Duration>,
    response: Vec<u8>,
    retention: Option<prost_types::Duration>,
    token: u64,
}

fn input() -> impl Strategy<Value = Input> {
    (
        namespace(),
        key(),
        bytes(80),
        duration(),
        bytes(700),
        duration(),
        any::<u64>(),
    )
        .prop_map(
            |(namespace, key, fingerprint, lease, response, retention, token)| Input {
                namespace,
                key,
                fingerprint,
                lease,
                response,
                retention,
                token,
            },
        )
}

fn allowed(rpc: &str, result: Result<(), tonic::Status>) -> Result<(), TestCaseError> {
    match result {
        Ok(()) => Ok(()),
        Err(status)
            if matches!(
                status.code(),
                Code::InvalidArgument | Code::FailedPrecondition
            ) =>
        {
            prop_assert!(
                !status.message().is_empty(),
                "{rpc}: a message names the problem"
            );
            Ok(())
        }
        Err(status) => Err(TestCaseError::fail(format!("{rpc} answered {status:?}"))),
    }
}

#[test]
fn arbitrary_requests_get_ok_or_a_client_error_never_an_internal_one() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (app, client) = runtime.block_on(async {
        let app = TestApp::builder()
            .args(&["--max-response-bytes=512", "--max-lease=1h"])
            .spawn()
            .await;
        let client = app.client.clone();
        (app, client)
    });

    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(&input(), |input| {
        let mut client = client.clone();
        runtime.block_on(async move {
            let claimed = client
                .claim(proto::ClaimRequest {
                    namespace: input.namespace.clone(),
                    key: input.key.clone(),
                    fingerprint: input.fingerprint.clone(),
                    lease: input.lease,
                    ..Default::default()
                })
                .await;
            let mut token = input.token;
            match claimed {
                Ok(response) => {
                    let response = response.into_inner();
                    let outcome = Outcome::try_from(response.outcome);
                    prop_assert!(
                        matches!(outcome, Ok(o) if o != Outcome::Unspecified),
                        "a known outcome: {response:?}"
                    );
                    if outcome == Ok(Outcome::Acquired) {
                        token = response.fencing_token;
                    }
                }
                Err(status) => allowed("Claim", Err(status))?,
            }
            let complete = client
                .complete(proto::CompleteRequest {
                    namespace: input.namespace.clone(),
                    key: input.key.clone(),
                    fencing_token: token,
                    response: input.response.clone(),
                    retention: input.retention,
                })
                .await;
            allowed("Complete", complete.map(drop))?;
            let extend = client
                .extend_lease(proto::ExtendLeaseRequest {
                    namespace: input.namespace.clone(),
                    key: input.key.clone(),
                    fencing_token: input.token,
                    lease: input.lease,
                })
                .await;
            allowed("ExtendLease", extend.map(drop))?;
            let release = client
                .release(proto::ReleaseRequest {
                    namespace: input.namespace.clone(),
                    key: input.key.clone(),
                    fencing_token: input.token,
                })
                .await;
            allowed("Release", release.map(drop))?;
            let lookup = client
                .lookup(proto::LookupRequest {
                    namespace: input.namespace,
                    key: input.key,
                })
                .await;
            allowed("Lookup", lookup.map(drop))
        })
    });
    runtime.block_on(async {
        // Stopping drops the sidecar's database too, before any failure is reported.
        tokio::time::timeout(Duration::from_secs(10), app.stop())
            .await
            .expect("stops");
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

const METHODS: [&str; 5] = ["Claim", "Complete", "Release", "ExtendLease", "Lookup"];

/// A request body as a hostile or broken client might send it.
fn wire_body() -> impl Strategy<Value = Bytes> {
    let string_field =
        (1u8..=2, bytes(20), any::<bool>()).prop_map(|(field, mut text, break_it)| {
            // A length-delimited field (namespace or key) whose bytes are, if asked, no UTF-8.
            if break_it || text.is_empty() {
                text.push(0xff);
            }
            let mut message = vec![field << 3 | 2, text.len() as u8];
            message.extend_from_slice(&text);
            framed(&message)
        });
    prop_oneof![
        3 => bytes(300).prop_map(|message| framed(&message)),
        2 => string_field,
        1 => bytes(40).prop_map(Bytes::from),
    ]
}

/// Whether the sidecar could read `body` as one `method` request: one uncompressed
/// gRPC message that decodes.
fn decodes(method: &str, body: &[u8]) -> bool {
    if body.len() < 5 || body[0] != 0 {
        return false;
    }
    let declared = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    let message = &body[5..];
    declared == message.len()
        && match method {
            "Claim" => proto::ClaimRequest::decode(message).is_ok(),
            "Complete" => proto::CompleteRequest::decode(message).is_ok(),
            "Release" => proto::ReleaseRequest::decode(message).is_ok(),
            "ExtendLease" => proto::ExtendLeaseRequest::decode(message).is_ok(),
            _ => proto::LookupRequest::decode(message).is_ok(),
        }
}

#[test]
fn arbitrary_bytes_on_the_wire_are_never_internal_and_undecodable_ones_invalid_argument() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (app, wire) = runtime.block_on(async {
        let app = TestApp::builder()
            .args(&["--max-response-bytes=512"])
            .spawn()
            .await;
        let wire = RawConnection::open(app.addr).await;
        (app, std::sync::Arc::new(tokio::sync::Mutex::new(wire)))
    });

    let mut runner = TestRunner::new(Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(&(0..METHODS.len(), wire_body()), |(method, body)| {
        let method = METHODS[method];
        let wire = wire.clone();
        runtime.block_on(async move {
            let answer = wire
                .lock()
                .await
                .call(&onceward(method), body.clone(), &[])
                .await;
            prop_assert!(
                matches!(
                    answer.code,
                    Code::Ok | Code::InvalidArgument | Code::FailedPrecondition
                ),
                "{method} {body:?}: {answer:?}"
            );
            if !decodes(method, &body) {
                prop_assert_eq!(answer.code, Code::InvalidArgument, "{} {:?}", method, body);
                prop_assert!(
                    answer.message.starts_with("malformed request body: "),
                    "{}",
                    answer.message
                );
            }
            Ok(())
        })
    });
    runtime.block_on(async {
        // Stopping drops the sidecar's database too, before any failure is reported.
        tokio::time::timeout(Duration::from_secs(10), app.stop())
            .await
            .expect("stops");
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}
