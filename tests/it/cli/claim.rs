//! `onceward claim` and the `complete` that follows it: each outcome in the human and
//! the JSON output, the stored response replayed byte for byte, `--fingerprint-of`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::Utc;
use serde_json::Value;

use super::{file_with, onceward, onceward_stdin, rfc3339, token_of};
use crate::harness::*;

#[tokio::test]
async fn claim_acquires_then_answers_in_progress_and_after_complete_replays_the_exact_bytes() {
    let app = TestApp::builder().spawn().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let stored = b"\x00charge ch_123\n\xff trailing, no newline";
    let receipt = file_with(&dir, "receipt", stored);

    let acquired = onceward(&app, &["claim", "payments", "order-1"]).await;
    acquired.assert_exit(0);
    assert!(
        acquired.line().starts_with("ACQUIRED token="),
        "{}",
        acquired.line()
    );
    assert_eq!(acquired.field("served_by").as_deref(), Some("ledger"));
    let token = token_of(&acquired);
    assert!(token.parse::<u64>().expect("a number") > 0);

    let busy = onceward(&app, &["claim", "payments", "order-1"]).await;
    busy.assert_exit(10);
    assert!(
        busy.line().starts_with("IN_PROGRESS retry_after="),
        "{}",
        busy.line()
    );

    let done = onceward(
        &app,
        &["complete", "payments", "order-1", "--token", &token],
    )
    .await;
    done.assert_exit(0);
    // Without --response-file the stored response is empty: the header line alone.
    let replay = onceward(&app, &["claim", "payments", "order-1"]).await;
    replay.assert_exit(11);
    assert_eq!(replay.stdout, format!("{}\n", replay.line()).as_bytes());

    let acquired = onceward(&app, &["claim", "payments", "order-2"]).await;
    let token = token_of(acquired.assert_exit(0));
    let done = onceward(
        &app,
        &[
            "complete",
            "payments",
            "order-2",
            "--token",
            &token,
            "--response-file",
            &receipt,
            "--retention",
            "1h",
        ],
    )
    .await;
    done.assert_exit(0);
    assert!(
        done.line().starts_with("COMPLETED expires_at="),
        "{}",
        done.line()
    );
    let expires_at = rfc3339(&Value::from(done.field("expires_at").expect("expires_at")));
    let in_an_hour = Utc::now() + chrono::Duration::hours(1);
    assert!(
        (expires_at - in_an_hour).num_seconds().abs() < 60,
        "{expires_at}"
    );

    let replay = onceward(&app, &["claim", "payments", "order-2"]).await;
    replay.assert_exit(11);
    let header = replay.line();
    assert!(
        header.starts_with("COMPLETED served_by=cache completed_at="),
        "{header}"
    );
    let mut expected = format!("{header}\n").into_bytes();
    expected.extend_from_slice(stored);
    assert_eq!(
        replay.stdout, expected,
        "the header line, then the exact bytes"
    );
}

#[tokio::test]
async fn claim_json_reports_each_outcome_with_stable_fields_and_the_response_as_base64_and_text() {
    let app = TestApp::builder().spawn().await;

    let acquired = onceward(&app, &["claim", "mail", "welcome-7", "--json"]).await;
    let json = acquired.assert_exit(0).json();
    assert_eq!(json["outcome"], "ACQUIRED");
    assert_eq!(json["served_by"], "LEDGER");
    let token = json["fencing_token"].as_u64().expect("a numeric token");
    assert!(token > 0);
    assert!(json.get("response_base64").is_none());

    let busy = onceward(&app, &["claim", "mail", "welcome-7", "--json"]).await;
    let json = busy.assert_exit(10).json();
    assert_eq!(json["outcome"], "IN_PROGRESS");
    assert!(json["retry_after_ms"].as_u64().expect("retry_after_ms") > 0);
    assert!(
        json.get("fencing_token").is_none(),
        "a token only goes to its claimer"
    );

    // The response comes from stdin this time.
    let done = onceward_stdin(
        &app,
        &[
            "complete",
            "mail",
            "welcome-7",
            "--token",
            &token.to_string(),
            "--response-file",
            "-",
            "--json",
        ],
        "sent ✉ msg-9".as_bytes(),
    )
    .await;
    let json = done.assert_exit(0).json();
    assert_eq!(json["outcome"], "COMPLETED");
    assert!(rfc3339(&json["expires_at"]) > Utc::now());

    let replay = onceward(&app, &["claim", "mail", "welcome-7", "--json"]).await;
    let json = replay.assert_exit(11).json();
    assert_eq!(json["outcome"], "COMPLETED");
    assert_eq!(json["served_by"], "CACHE");
    assert_eq!(json["response"], "sent ✉ msg-9");
    let decoded = BASE64
        .decode(json["response_base64"].as_str().expect("base64"))
        .expect("valid base64");
    assert_eq!(decoded, "sent ✉ msg-9".as_bytes());
    assert!(rfc3339(&json["completed_at"]) <= Utc::now());

    // Bytes that are not UTF-8 come as base64 only.
    let token = onceward(&app, &["claim", "mail", "binary", "--json"])
        .await
        .json()["fencing_token"]
        .to_string();
    onceward_stdin(
        &app,
        &[
            "complete",
            "mail",
            "binary",
            "--token",
            &token,
            "--response-file",
            "-",
        ],
        b"\xff\x00",
    )
    .await
    .assert_exit(0);
    let json = onceward(&app, &["claim", "mail", "binary", "--json"])
        .await
        .json();
    assert_eq!(json["response_base64"], "/wA=");
    assert!(json.get("response").is_none(), "{json}");
}

#[tokio::test]
async fn a_different_file_behind_fingerprint_of_is_a_fingerprint_mismatch_and_the_same_bytes_are_not()
 {
    let app = TestApp::builder().spawn().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let first = file_with(&dir, "a.json", br#"{"amount":100}"#);
    let second = file_with(&dir, "b.json", br#"{"amount":999}"#);

    onceward(
        &app,
        &["claim", "payments", "order-5", "--fingerprint-of", &first],
    )
    .await
    .assert_exit(0);

    let mismatch = onceward(
        &app,
        &["claim", "payments", "order-5", "--fingerprint-of", &second],
    )
    .await;
    mismatch.assert_exit(12);
    assert!(
        mismatch.line().starts_with("FINGERPRINT_MISMATCH"),
        "{}",
        mismatch.line()
    );
    let json = onceward(
        &app,
        &[
            "claim",
            "payments",
            "order-5",
            "--fingerprint-of",
            &second,
            "--json",
        ],
    )
    .await;
    assert_eq!(
        json.assert_exit(12).json()["outcome"],
        "FINGERPRINT_MISMATCH"
    );

    // The same bytes on stdin hash the same as the file: a duplicate, not a mismatch.
    let same = onceward_stdin(
        &app,
        &["claim", "payments", "order-5", "--fingerprint-of", "-"],
        br#"{"amount":100}"#,
    )
    .await;
    same.assert_exit(10);

    // And the ledger stored the SHA-256 of the file.
    let found = onceward(&app, &["lookup", "payments", "order-5", "--json"]).await;
    let fingerprint = found.assert_exit(0).json()["record"]["fingerprint_hex"].clone();
    assert_eq!(fingerprint, sha256_hex(br#"{"amount":100}"#));
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
