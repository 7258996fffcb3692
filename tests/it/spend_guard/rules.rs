//! Each rule of the spend guard, on every pairing of ledger and hot tier.

use std::time::Duration;

use onceward::proto::{
    self, ClaimBatchRequest, ClaimItem, EventKind, Outcome, Policy, SetPolicyRequest,
};
use tonic::Code;

use super::*;

on_every_pairing!(
    duplicates_are_answered_first_and_never_debited,
    the_killswitch_blocks_new_keys_and_takeovers_but_not_replays,
    a_budget_caps_cost_and_claims_per_subject_and_window,
    a_release_refunds_and_a_takeover_does_not_debit_again,
    batch_items_spend_in_request_order,
    the_audit_trail_names_every_rejection_and_counts_duplicates,
);

async fn duplicates_are_answered_first_and_never_debited(pairing: Pairing) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();
    set_policy(
        &app,
        "sms",
        Policy {
            budget: budget(10, 1, HOUR),
            ..Policy::default()
        },
    )
    .await;

    // Every claim of the reminder sends its payload's fingerprint.
    let reminder = || proto::ClaimRequest {
        fingerprint: b"fp".to_vec(),
        ..spending("sms", "reminder-1", "alice", 10)
    };
    let first = client.claim(reminder()).await.unwrap().into_inner();
    assert_eq!(outcome(&first), Outcome::Acquired);
    // The budget is spent; the same key still gets its usual answers, never OVER_BUDGET.
    let held = client.claim(reminder()).await.unwrap().into_inner();
    assert_eq!(outcome(&held), Outcome::InProgress);
    complete(
        &mut client,
        "sms",
        "reminder-1",
        first.fencing_token,
        b"sent",
    )
    .await
    .unwrap();
    for _ in 0..3 {
        let replay = client.claim(reminder()).await.unwrap().into_inner();
        assert_eq!(outcome(&replay), Outcome::Completed);
        assert_eq!(replay.response, b"sent");
    }
    let mismatch = client
        .claim(proto::ClaimRequest {
            fingerprint: b"other".to_vec(),
            ..spending("sms", "reminder-1", "alice", 10)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome(&mismatch), Outcome::FingerprintMismatch);
    assert_eq!(spent(&app, "sms", "alice").await, (10, 1), "debited once");
    let over = claim_spending(&mut client, "sms", "reminder-2", "alice", 1).await;
    assert_eq!(outcome(&over), Outcome::OverBudget);
}

async fn the_killswitch_blocks_new_keys_and_takeovers_but_not_replays(pairing: Pairing) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();
    let done = claim(&mut client, "sms", "done").await;
    complete(&mut client, "sms", "done", done.fencing_token, b"sent")
        .await
        .unwrap();
    let short = claim_with(
        &mut client,
        "sms",
        "abandoned",
        b"",
        Some(Duration::from_millis(200)),
    )
    .await;
    assert_eq!(outcome(&short), Outcome::Acquired);

    killswitch(&app, "sms", Some("vendor outage")).await;
    let blocked = claim(&mut client, "sms", "new").await;
    assert_eq!(outcome(&blocked), Outcome::Blocked);
    assert_eq!(blocked.reason, "vendor outage");
    assert_eq!(blocked.fencing_token, 0);
    assert!(
        !lookup(&mut client, "sms", "new").await.found,
        "nothing stored"
    );
    let replay = claim(&mut client, "sms", "done").await;
    assert_eq!(
        outcome(&replay),
        Outcome::Completed,
        "replays keep answering"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let takeover = claim(&mut client, "sms", "abandoned").await;
    assert_eq!(
        outcome(&takeover),
        Outcome::Blocked,
        "a takeover is a new ACQUIRED"
    );
    // Another namespace is not affected.
    assert_eq!(
        outcome(&claim(&mut client, "email", "new").await),
        Outcome::Acquired
    );

    killswitch(&app, "sms", None).await;
    assert_eq!(
        outcome(&claim(&mut client, "sms", "new").await),
        Outcome::Acquired
    );
    let taken = claim(&mut client, "sms", "abandoned").await;
    assert_eq!(outcome(&taken), Outcome::Acquired);
    assert!(taken.fencing_token > short.fencing_token);
}

async fn a_budget_caps_cost_and_claims_per_subject_and_window(pairing: Pairing) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();
    set_policy(
        &app,
        "shop",
        Policy {
            budget: budget(100, 3, HOUR),
            ..Policy::default()
        },
    )
    .await;

    let answers = [
        claim_spending(&mut client, "shop", "a", "s1", 60).await,
        claim_spending(&mut client, "shop", "b", "s1", 50).await,
        claim_spending(&mut client, "shop", "c", "s1", 40).await,
        claim_spending(&mut client, "shop", "d", "s1", 0).await,
        claim_spending(&mut client, "shop", "e", "s1", 0).await,
    ];
    let outcomes: Vec<Outcome> = answers.iter().map(outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Acquired,
            Outcome::OverBudget,
            Outcome::Acquired,
            Outcome::Acquired,
            Outcome::OverBudget
        ]
    );
    assert_eq!(answers[1].reason, "max_cost");
    assert_eq!(answers[4].reason, "max_claims");
    let retry_after = answers[1]
        .retry_after
        .expect("retry_after with OVER_BUDGET");
    assert!(retry_after.seconds <= 3600 && (retry_after.seconds > 0 || retry_after.nanos > 0));
    assert!(
        !lookup(&mut client, "shop", "b").await.found,
        "nothing stored"
    );
    assert_eq!(spent(&app, "shop", "s1").await, (100, 3));

    // Another subject has its own budget; a cost above max_cost never fits; no subject
    // is not limited.
    assert_eq!(
        outcome(&claim_spending(&mut client, "shop", "f", "s2", 100).await),
        Outcome::Acquired
    );
    let huge = claim_spending(&mut client, "shop", "g", "s3", 101).await;
    assert_eq!(
        (outcome(&huge), huge.reason.as_str()),
        (Outcome::OverBudget, "max_cost")
    );
    assert_eq!(
        outcome(&claim_spending(&mut client, "shop", "h", "", 1000).await),
        Outcome::Acquired
    );

    // Fixed windows: a 1 s window resets.
    set_policy(
        &app,
        "tick",
        Policy {
            budget: budget(0, 1, Duration::from_secs(1)),
            ..Policy::default()
        },
    )
    .await;
    let mut acquired_in_window = 0;
    let started = std::time::Instant::now();
    let mut key = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        key += 1;
        let answer = claim_spending(&mut client, "tick", &format!("k{key}"), "u", 0).await;
        if outcome(&answer) == Outcome::Acquired {
            acquired_in_window += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        (2..=4).contains(&acquired_in_window),
        "one per 1 s window (2.5 s spans 3 or 4), got {acquired_in_window}"
    );
}

async fn a_release_refunds_and_a_takeover_does_not_debit_again(pairing: Pairing) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();
    set_policy(
        &app,
        "pay",
        Policy {
            budget: budget(100, 2, HOUR),
            ..Policy::default()
        },
    )
    .await;

    let first = claim_spending(&mut client, "pay", "charge-1", "shop", 70).await;
    assert_eq!(spent(&app, "pay", "shop").await, (70, 1));
    release(&mut client, "pay", "charge-1", first.fencing_token)
        .await
        .unwrap();
    assert_eq!(spent(&app, "pay", "shop").await, (0, 0), "refunded whole");
    let again = claim_spending(&mut client, "pay", "charge-1", "shop", 70).await;
    assert_eq!(outcome(&again), Outcome::Acquired);

    let lapsing = client
        .claim(proto::ClaimRequest {
            lease: Some(proto_duration(Duration::from_millis(200))),
            ..spending("pay", "charge-2", "shop", 30)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome(&lapsing), Outcome::Acquired);
    assert_eq!(spent(&app, "pay", "shop").await, (100, 2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let takeover = claim_spending(&mut client, "pay", "charge-2", "shop", 30).await;
    assert_eq!(
        outcome(&takeover),
        Outcome::Acquired,
        "a takeover fits: it debits nothing"
    );
    assert_eq!(spent(&app, "pay", "shop").await, (100, 2));
    complete(
        &mut client,
        "pay",
        "charge-2",
        takeover.fencing_token,
        b"ok",
    )
    .await
    .unwrap();
    assert_eq!(
        spent(&app, "pay", "shop").await,
        (100, 2),
        "Complete keeps the debit"
    );
    // A stale token releases nothing and refunds nothing.
    let stale = release(&mut client, "pay", "charge-2", lapsing.fencing_token).await;
    assert_eq!(stale.unwrap_err().code(), Code::FailedPrecondition);
    assert_eq!(spent(&app, "pay", "shop").await, (100, 2));
    let metric = app
        .metric("onceward_spent_total", &[("namespace", "pay")])
        .await;
    assert_eq!(metric, 100.0, "debited 70 + 70 + 30, refunded 70");
}

async fn batch_items_spend_in_request_order(pairing: Pairing) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();
    set_policy(
        &app,
        "inbox",
        Policy {
            budget: budget(0, 2, HOUR),
            ..Policy::default()
        },
    )
    .await;
    let items: Vec<ClaimItem> = ["m1", "m2", "m3", "m4"]
        .iter()
        .zip(["u", "u", "u", "v"])
        .map(|(key, subject)| ClaimItem {
            key: (*key).to_owned(),
            subject: subject.to_owned(),
            cost: 1,
            ..ClaimItem::default()
        })
        .collect();
    let results = client
        .claim_batch(ClaimBatchRequest {
            namespace: "inbox".to_owned(),
            items,
            lease: None,
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let outcomes: Vec<Outcome> = results.iter().map(outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Acquired,
            Outcome::Acquired,
            Outcome::OverBudget,
            Outcome::Acquired
        ]
    );
    assert_eq!(spent(&app, "inbox", "u").await, (2, 2));

    // A subject too long is refused whole, naming the item.
    let refused = client
        .claim_batch(ClaimBatchRequest {
            namespace: "inbox".to_owned(),
            items: vec![ClaimItem {
                key: "x".to_owned(),
                subject: "s".repeat(129),
                ..ClaimItem::default()
            }],
            lease: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("items[0].subject"),
        "{refused:?}"
    );
}

async fn the_audit_trail_names_every_rejection_and_counts_duplicates(pairing: Pairing) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let mut client = app.client.clone();
    set_policy(
        &app,
        "audit",
        Policy {
            budget: budget(0, 1, HOUR),
            ..Policy::default()
        },
    )
    .await;
    let held = claim_spending(&mut client, "audit", "k1", "alice", 0).await;
    for _ in 0..5 {
        claim_spending(&mut client, "audit", "k1", "alice", 0).await;
    }
    claim_spending(&mut client, "audit", "k2", "alice", 0).await;
    killswitch(&app, "audit", Some("fraud spike")).await;
    claim_spending(&mut client, "audit", "k3", "bob", 0).await;
    release(&mut client, "audit", "k1", held.fencing_token)
        .await
        .unwrap();

    let events = events(&app, "audit", 4).await;
    let kinds: Vec<(EventKind, &str, u64)> = events
        .iter()
        .map(|e| {
            (
                EventKind::try_from(e.kind).unwrap(),
                e.key.as_str(),
                e.count,
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (EventKind::Release, "k1", 1),
            (EventKind::Blocked, "k3", 1),
            (EventKind::OverBudget, "k2", 1),
            (EventKind::Duplicate, "k1", 5),
        ],
        "{events:#?}"
    );
    assert_eq!(events[1].detail, "fraud spike");
    assert_eq!(events[1].subject, "bob");
    assert_eq!(events[2].detail, "max_claims");
    assert_eq!(
        app.metric(
            "onceward_policy_rejections_total",
            &[("namespace", "audit"), ("reason", "killswitch")]
        )
        .await,
        1.0
    );
    assert_eq!(
        app.metric(
            "onceward_policy_rejections_total",
            &[("namespace", "audit"), ("reason", "max_claims")]
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_names_the_field_out_of_bounds_and_require_subject_refuses_claims_without_one() {
    let app = TestApp::builder().spawn().await;
    let mut admin = admin(&app).await;
    let set = |policy: Policy| SetPolicyRequest {
        namespace: "sms".to_owned(),
        policy: Some(policy),
    };
    for (policy, field) in [
        (
            Policy {
                budget: budget(1, 0, Duration::from_millis(10)),
                ..Policy::default()
            },
            "policy.budget.window",
        ),
        (
            Policy {
                budget: budget(1, 0, Duration::from_secs(40 * 86400)),
                ..Policy::default()
            },
            "policy.budget.window",
        ),
        (
            Policy {
                budget: budget(u64::MAX, 0, HOUR),
                ..Policy::default()
            },
            "policy.budget.max_cost",
        ),
        (
            Policy {
                killswitch_reason: "x".repeat(300),
                ..Policy::default()
            },
            "policy.killswitch_reason",
        ),
    ] {
        let refused = admin.set_policy(set(policy)).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(refused.message().contains(field), "{field}: {refused:?}");
    }
    let mut required = Policy {
        budget: budget(0, 5, HOUR),
        ..Policy::default()
    };
    required.budget.as_mut().unwrap().require_subject = true;
    admin.set_policy(set(required)).await.unwrap();
    let mut client = app.client.clone();
    let refused = client
        .claim(claim_request("sms", "k", b"", None))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("subject"), "{refused:?}");
    assert_eq!(
        outcome(&claim_spending(&mut client, "sms", "k", "u", 0).await),
        Outcome::Acquired
    );
    let huge_cost = client
        .claim(spending("sms", "k2", "u", u64::MAX))
        .await
        .unwrap_err();
    assert!(huge_cost.message().contains("cost"), "{huge_cost:?}");

    let no_budget = admin
        .get_spend(proto::GetSpendRequest {
            namespace: "email".to_owned(),
            subject: "u".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(no_budget.code(), Code::FailedPrecondition);
    let too_many = admin
        .list_events(proto::ListEventsRequest {
            namespace: "sms".to_owned(),
            since: None,
            limit: 1001,
        })
        .await
        .unwrap_err();
    assert!(too_many.message().contains("limit"), "{too_many:?}");
    // An empty policy is no policy.
    let cleared = admin
        .set_policy(set(Policy::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cleared, Policy::default());
    assert_eq!(
        outcome(&claim(&mut client, "sms", "k3").await),
        Outcome::Acquired
    );
}
