//! The exit codes a script branches on: lookup's 0 (found) and 13 (not found), 3 for a
//! caller's mistake, 2 for a malformed command line, 5 when no sidecar answers.

use chrono::Utc;

use super::{onceward, onceward_at, onceward_stdin, rfc3339, token_of};
use crate::harness::*;

#[tokio::test]
async fn bad_input_is_exit_3_naming_the_field_and_a_malformed_command_line_is_exit_2() {
    let app = TestApp::builder().spawn().await;

    let bad_namespace = onceward(&app, &["claim", "has space", "k"]).await;
    bad_namespace.assert_exit(3);
    assert!(
        bad_namespace.stderr.contains("INVALID_ARGUMENT: namespace"),
        "{}",
        bad_namespace.stderr
    );

    let json = onceward(&app, &["lookup", "has space", "k", "--json"]).await;
    let json = json.assert_exit(3).json();
    assert_eq!(json["error"]["code"], "INVALID_ARGUMENT");
    assert!(
        json["error"]["message"]
            .as_str()
            .expect("message")
            .starts_with("namespace:")
    );

    // Over the sidecar's --max-lease (1h by default).
    let long_lease = onceward(&app, &["claim", "ns", "k", "--lease", "2h", "--json"]).await;
    let json = long_lease.assert_exit(3).json();
    assert!(
        json["error"]["message"]
            .as_str()
            .expect("message")
            .starts_with("lease:")
    );

    // An unreadable input file is the caller's mistake too, found before connecting.
    let missing = onceward(
        &app,
        &[
            "claim",
            "ns",
            "k",
            "--fingerprint-of",
            "/nonexistent/payload",
            "--json",
        ],
    )
    .await;
    let json = missing.assert_exit(3).json();
    assert_eq!(json["error"]["code"], "INVALID_ARGUMENT");
    onceward(&app, &["lookup", "ns", "k"]).await.assert_exit(13);

    // clap's usage errors: a duration it cannot parse, a missing --token.
    onceward(&app, &["claim", "ns", "k", "--lease", "soon"])
        .await
        .assert_exit(2);
    onceward(&app, &["complete", "ns", "k"])
        .await
        .assert_exit(2);
}

#[tokio::test]
async fn lookup_is_exit_0_with_the_record_when_found_and_13_when_not() {
    let app = TestApp::builder().spawn().await;

    let missing = onceward(&app, &["lookup", "payments", "order-9"]).await;
    missing.assert_exit(13);
    assert_eq!(missing.stdout, b"NOT_FOUND\n");
    let json = onceward(&app, &["lookup", "payments", "order-9", "--json"]).await;
    assert_eq!(
        json.assert_exit(13).json(),
        serde_json::json!({"outcome": "NOT_FOUND"})
    );

    let token = token_of(
        onceward(&app, &["claim", "payments", "order-9"])
            .await
            .assert_exit(0),
    );
    let held = onceward(&app, &["lookup", "payments", "order-9"]).await;
    held.assert_exit(0);
    assert!(
        held.line()
            .starts_with("FOUND state=IN_PROGRESS created_at="),
        "{}",
        held.line()
    );
    assert!(held.field("lease_expires_at").is_some());
    let json = onceward(&app, &["lookup", "payments", "order-9", "--json"]).await;
    let json = json.assert_exit(0).json();
    assert_eq!(json["outcome"], "FOUND");
    assert_eq!(json["record"]["state"], "IN_PROGRESS");
    assert_eq!(json["record"]["namespace"], "payments");
    assert_eq!(json["record"]["key"], "order-9");
    assert!(
        json["record"].get("fencing_token").is_none(),
        "never the token"
    );

    onceward_stdin(
        &app,
        &[
            "complete",
            "payments",
            "order-9",
            "--token",
            &token,
            "--response-file",
            "-",
        ],
        b"receipt-9",
    )
    .await
    .assert_exit(0);
    let done = onceward(&app, &["lookup", "payments", "order-9"]).await;
    done.assert_exit(0);
    assert!(
        done.line().starts_with("FOUND state=COMPLETED"),
        "{}",
        done.line()
    );
    assert!(done.stdout.ends_with(b"\nreceipt-9"));
    let json = onceward(&app, &["lookup", "payments", "order-9", "--json"]).await;
    let record = &json.assert_exit(0).json()["record"];
    assert_eq!(record["state"], "COMPLETED");
    assert_eq!(record["response"], "receipt-9");
    assert!(rfc3339(&record["completed_at"]) <= Utc::now());
}

#[tokio::test]
async fn nothing_listening_on_addr_is_unavailable_exit_5() {
    let addr = format!("http://127.0.0.1:{}", free_port());

    let human = onceward_at(&addr, &["claim", "payments", "order-1"], None).await;
    human.assert_exit(5);
    assert!(human.stdout.is_empty());
    assert!(
        human.stderr.contains("UNAVAILABLE: cannot connect"),
        "{}",
        human.stderr
    );

    let json = onceward_at(&addr, &["lookup", "payments", "order-1", "--json"], None).await;
    let json = json.assert_exit(5).json();
    assert_eq!(json["error"]["code"], "UNAVAILABLE");
}
