//! What a holder does with its fencing token: release the key, extend the lease; what
//! a token that is no longer current gets; and `forget`, which makes any key new again.

use chrono::Utc;

use super::{onceward, rfc3339, token_of};
use crate::harness::*;

#[tokio::test]
async fn release_frees_the_key_for_a_new_claim_with_a_larger_token() {
    let app = TestApp::builder().spawn().await;

    let first = onceward(&app, &["claim", "jobs", "nightly"]).await;
    let first_token = token_of(first.assert_exit(0));
    let released = onceward(
        &app,
        &["release", "jobs", "nightly", "--token", &first_token],
    )
    .await;
    released.assert_exit(0);
    assert_eq!(released.line(), "RELEASED");

    let again = onceward(&app, &["claim", "jobs", "nightly", "--json"]).await;
    let json = again.assert_exit(0).json();
    assert_eq!(json["outcome"], "ACQUIRED");
    let second_token = json["fencing_token"].as_u64().expect("token");
    assert!(second_token > first_token.parse::<u64>().expect("token"));

    let released = onceward(
        &app,
        &[
            "release",
            "jobs",
            "nightly",
            "--token",
            &second_token.to_string(),
            "--json",
        ],
    )
    .await;
    assert_eq!(released.assert_exit(0).json()["outcome"], "RELEASED");
    onceward(&app, &["claim", "jobs", "nightly"])
        .await
        .assert_exit(0);
}

#[tokio::test]
async fn extend_pushes_the_lease_out_on_the_ledger_clock() {
    let app = TestApp::builder().spawn().await;

    let claimed = onceward(&app, &["claim", "jobs", "export", "--lease", "2s"]).await;
    let token = token_of(claimed.assert_exit(0));

    let extended = onceward(
        &app,
        &[
            "extend", "jobs", "export", "--token", &token, "--lease", "10m",
        ],
    )
    .await;
    extended.assert_exit(0);
    assert!(
        extended.line().starts_with("EXTENDED lease_expires_at="),
        "{}",
        extended.line()
    );

    let extended = onceward(
        &app,
        &[
            "extend", "jobs", "export", "--token", &token, "--lease", "5m", "--json",
        ],
    )
    .await;
    let json = extended.assert_exit(0).json();
    assert_eq!(json["outcome"], "EXTENDED");
    let lease_expires_at = rfc3339(&json["lease_expires_at"]);
    let in_five_minutes = Utc::now() + chrono::Duration::minutes(5);
    assert!((lease_expires_at - in_five_minutes).num_seconds().abs() < 60);

    let found = onceward(&app, &["lookup", "jobs", "export", "--json"]).await;
    let record = &found.assert_exit(0).json()["record"];
    assert_eq!(rfc3339(&record["lease_expires_at"]), lease_expires_at);
}

#[tokio::test]
async fn a_stale_token_is_failed_precondition_exit_4_for_complete_release_and_extend() {
    let app = TestApp::builder().spawn().await;

    let first = token_of(
        onceward(&app, &["claim", "jobs", "sync"])
            .await
            .assert_exit(0),
    );
    onceward(&app, &["release", "jobs", "sync", "--token", &first])
        .await
        .assert_exit(0);
    let current = token_of(
        onceward(&app, &["claim", "jobs", "sync"])
            .await
            .assert_exit(0),
    );
    assert_ne!(first, current);

    for command in ["complete", "release", "extend"] {
        let stale = onceward(&app, &[command, "jobs", "sync", "--token", &first]).await;
        stale.assert_exit(4);
        assert!(
            stale.stdout.is_empty(),
            "errors go to stderr without --json"
        );
        assert!(
            stale.stderr.contains("FAILED_PRECONDITION"),
            "{}",
            stale.stderr
        );

        let stale = onceward(
            &app,
            &[command, "jobs", "sync", "--token", &first, "--json"],
        )
        .await;
        let json = stale.assert_exit(4).json();
        assert_eq!(json["error"]["code"], "FAILED_PRECONDITION", "{command}");
        assert!(
            json["error"]["message"]
                .as_str()
                .expect("message")
                .contains("fencing_token")
        );
    }

    // The current holder was not disturbed.
    onceward(&app, &["complete", "jobs", "sync", "--token", &current])
        .await
        .assert_exit(0);
}

#[tokio::test]
async fn forget_makes_a_key_new_again_and_needs_force_for_a_live_claim() {
    let app = TestApp::builder().spawn().await;

    let held = onceward(&app, &["claim", "jobs", "stuck"]).await;
    let token = token_of(held.assert_exit(0));
    let refused = onceward(&app, &["forget", "jobs", "stuck"]).await;
    refused.assert_exit(4);
    assert!(refused.stderr.contains("force"), "{}", refused.stderr);

    let forced = onceward(&app, &["forget", "jobs", "stuck", "--force", "--json"]).await;
    assert_eq!(forced.assert_exit(0).json()["outcome"], "FORGOTTEN");
    let late = onceward(&app, &["release", "jobs", "stuck", "--token", &token]).await;
    late.assert_exit(4);
    onceward(&app, &["claim", "jobs", "stuck"])
        .await
        .assert_exit(0);

    let absent = onceward(&app, &["forget", "jobs", "never"]).await;
    absent.assert_exit(13);
    assert_eq!(absent.line(), "NOT_FOUND");
}
