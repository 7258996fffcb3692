//! `onceward policy get|set`, `spend` and `events`: the spend guard from a shell, and
//! `claim`'s exit codes 14 (blocked) and 15 (over budget).

use super::onceward;
use crate::harness::*;

#[tokio::test]
async fn an_operator_sets_a_budget_engages_the_killswitch_and_reads_the_trail() {
    let app = TestApp::builder().spawn().await;

    let empty = onceward(&app, &["policy", "get", "sms", "--json"]).await;
    let json = empty.assert_exit(0).json();
    assert_eq!(json["killswitch"], false);
    assert!(json.get("budget").is_none(), "{json}");

    let no_window = onceward(&app, &["policy", "set", "sms", "--max-claims", "2"]).await;
    no_window.assert_exit(3);
    assert!(
        no_window.stderr.contains("--window"),
        "{}",
        no_window.stderr
    );
    let set = onceward(
        &app,
        &[
            "policy",
            "set",
            "sms",
            "--max-claims",
            "2",
            "--max-cost",
            "150",
            "--window",
            "1h",
        ],
    )
    .await;
    set.assert_exit(0);
    assert_eq!(
        set.line(),
        "killswitch=off max_cost=150 max_claims=2 window=1h require_subject=false"
    );

    let claim = |key: &'static str, cost: &'static str| {
        let app = &app;
        async move {
            onceward(
                app,
                &["claim", "sms", key, "--subject", "u1", "--cost", cost],
            )
            .await
        }
    };
    claim("a", "100").await.assert_exit(0);
    let over_cost = claim("b", "100").await;
    over_cost.assert_exit(15);
    assert_eq!(over_cost.field("reason").as_deref(), Some("\"max_cost\""));
    claim("c", "50").await.assert_exit(0);
    let over_count = onceward(&app, &["claim", "sms", "d", "--subject", "u1", "--json"]).await;
    let json = over_count.assert_exit(15).json();
    assert_eq!(json["outcome"], "OVER_BUDGET");
    assert_eq!(json["reason"], "max_claims");
    assert!(json["retry_after_ms"].as_u64().unwrap() > 0);

    let spend = onceward(&app, &["spend", "sms", "u1", "--json"]).await;
    let json = spend.assert_exit(0).json();
    assert_eq!(
        (json["cost"].as_u64(), json["claims"].as_u64()),
        (Some(150), Some(2))
    );
    let no_budget = onceward(&app, &["spend", "email", "u1"]).await;
    no_budget.assert_exit(4);

    onceward(
        &app,
        &[
            "policy",
            "set",
            "sms",
            "--killswitch",
            "on",
            "--reason",
            "vendor down",
        ],
    )
    .await
    .assert_exit(0);
    let blocked = onceward(&app, &["claim", "sms", "e", "--subject", "u2"]).await;
    blocked.assert_exit(14);
    assert!(blocked.line().starts_with("BLOCKED"), "{}", blocked.line());
    assert!(
        blocked.line().ends_with("reason=\"vendor down\""),
        "{}",
        blocked.line()
    );
    // The budget stayed as it was; releasing the switch keeps it too.
    let released = onceward(
        &app,
        &["policy", "set", "sms", "--killswitch", "off", "--json"],
    )
    .await;
    let json = released.assert_exit(0).json();
    assert_eq!(json["killswitch"], false);
    assert_eq!(json["killswitch_reason"], "");
    assert_eq!(json["budget"]["max_claims"], 2);

    // The trail is written off the hot path: give its writer a moment.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let events = onceward(&app, &["events", "sms", "--since", "1h", "--json"]).await;
    let json = events.assert_exit(0).json();
    let kinds: Vec<&str> = json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["BLOCKED", "OVER_BUDGET", "OVER_BUDGET"], "{json}");
    let human = onceward(&app, &["events", "sms"]).await;
    assert!(
        human
            .line()
            .contains("BLOCKED key=\"e\" subject=\"u2\" detail=\"vendor down\""),
        "{}",
        human.line()
    );

    onceward(&app, &["policy", "set", "sms", "--no-budget"])
        .await
        .assert_exit(0);
    let cleared = onceward(&app, &["policy", "get", "sms"]).await;
    assert_eq!(cleared.line(), "killswitch=off budget=none");
}
