//! gRPC-Web, binary and base64 text, over HTTP/1.1: messages and the status come back
//! in the body, trailers framed as gRPC-Web frames them.

use base64::Engine as _;
use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use hyper::StatusCode;
use onceward::proto::{ClaimResponse, CompleteRequest, Outcome};
use prost::Message as _;

use super::{Caller, Version};
use crate::harness::*;

const CLAIM: &str = "/onceward.v1.Onceward/Claim";

fn frame(message: &impl prost::Message) -> Bytes {
    let message = message.encode_to_vec();
    let mut framed = BytesMut::new();
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.extend_from_slice(&message);
    framed.freeze()
}

/// The message (if any) and the trailers of a gRPC-Web reply body.
fn unframe(mut body: Bytes) -> (Option<Bytes>, String) {
    let mut message = None;
    let mut trailers = String::new();
    while body.has_remaining() {
        let flag = body.get_u8();
        let length = body.get_u32() as usize;
        let payload = body.split_to(length);
        if flag & 0x80 != 0 {
            trailers = String::from_utf8(payload.to_vec()).expect("text trailers");
        } else {
            message = Some(payload);
        }
    }
    (message, trailers.to_ascii_lowercase())
}

/// A grpc-web-text body: each frame base64-encoded on its own, padding and all.
fn decode_text(text: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::new();
    let mut chunk_start = 0;
    for (at, byte) in text.iter().enumerate() {
        let chunk_ends = *byte == b'=' && text.get(at + 1) != Some(&b'=');
        if chunk_ends || at + 1 == text.len() {
            let chunk = &text[chunk_start..=at];
            decoded.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(chunk)
                    .expect("base64 text"),
            );
            chunk_start = at + 1;
        }
    }
    decoded
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_binary_and_text_carry_calls_and_statuses_over_http1() {
    let app = TestApp::builder().spawn().await;
    let web = Caller::new(&app, Version::Http1);
    let request = claim_request("web", "k", b"", None);

    let reply = web
        .post(CLAIM, "application/grpc-web+proto", frame(&request), &[])
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.headers["content-type"], "application/grpc-web+proto");
    let (message, trailers) = unframe(reply.body);
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    let acquired = ClaimResponse::decode(message.expect("a message")).unwrap();
    assert_eq!(acquired.outcome(), Outcome::Acquired);

    let text = base64::engine::general_purpose::STANDARD.encode(frame(&request));
    let reply = web
        .post(
            CLAIM,
            "application/grpc-web-text",
            text,
            &[("accept", "application/grpc-web-text")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(
        reply.headers["content-type"],
        "application/grpc-web-text+proto"
    );
    let body = decode_text(&reply.body);
    let (message, _) = unframe(body.into());
    let held = ClaimResponse::decode(message.expect("a message")).unwrap();
    assert_eq!(held.outcome(), Outcome::InProgress);

    let stale = CompleteRequest {
        namespace: "web".into(),
        key: "k".into(),
        fencing_token: acquired.fencing_token + 100,
        ..Default::default()
    };
    let reply = web
        .post(
            "/onceward.v1.Onceward/Complete",
            "application/grpc-web+proto",
            frame(&stale),
            &[],
        )
        .await;
    let status = reply
        .headers
        .get("grpc-status")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_else(|| unframe(reply.body.clone()).1);
    assert!(
        status.contains('9'),
        "FAILED_PRECONDITION: {status} {reply:?}"
    );

    let reply = web
        .post(
            CLAIM,
            "application/grpc-web+proto",
            &b"\x00\x00\x00\x00\x09abc"[..],
            &[],
        )
        .await;
    let status = reply
        .headers
        .get("grpc-status")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_else(|| unframe(reply.body.clone()).1);
    assert!(
        status.contains('3'),
        "a cut-short message is INVALID_ARGUMENT: {status} {reply:?}"
    );

    let counted = async |method, code| {
        app.metric(
            "onceward_rpc_duration_seconds_count",
            &[("method", method), ("code", code), ("protocol", "grpc_web")],
        )
        .await
    };
    assert_eq!(counted("Claim", "OK").await, 2.0);
    assert_eq!(counted("Complete", "FAILED_PRECONDITION").await, 1.0);
    assert_eq!(counted("Claim", "INVALID_ARGUMENT").await, 1.0);
}
