//! Sidecars sharing one ledger: a policy set through one reaches every other within a
//! second, concurrent claims through all of them never exceed a limit, and the Admin
//! service is for admin tenants only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use onceward::proto::{GetPolicyRequest, Outcome, Policy, SetPolicyRequest};
use sha2::Digest as _;
use tonic::{Code, Request};

use super::*;

/// `claims` distinct keys of one subject, all at once, half through each of two
/// sidecars on one Postgres: exactly the budget's `max_claims` acquire, and the
/// ledger's spend agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_through_two_sidecars_never_exceed_the_budget() {
    let db = TestDatabase::create().await;
    let (first, second) = TestApp::builder()
        .ledger(Ledger::Postgres(&db))
        .spawn_two()
        .await;
    set_policy(
        &first,
        "sms",
        Policy {
            budget: budget(370, 37, HOUR),
            ..Policy::default()
        },
    )
    .await;
    // The second sidecar routes by the policy once it has read it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acquired = Arc::new(AtomicU64::new(0));
    let claims: Vec<_> = (0..200)
        .map(|i| {
            let mut client = if i % 2 == 0 {
                first.client.clone()
            } else {
                second.client.clone()
            };
            let acquired = acquired.clone();
            tokio::spawn(async move {
                let answer =
                    claim_spending(&mut client, "sms", &format!("k{i}"), "alice", 10).await;
                match outcome(&answer) {
                    Outcome::Acquired => {
                        acquired.fetch_add(1, Ordering::SeqCst);
                    }
                    Outcome::OverBudget => {}
                    other => panic!("unexpected {other:?}"),
                }
            })
        })
        .collect();
    for claim in claims {
        claim.await.unwrap();
    }
    assert_eq!(acquired.load(Ordering::SeqCst), 37);
    assert_eq!(spent(&first, "sms", "alice").await, (370, 37));
    let stored = db
        .scalar("SELECT count(*) FROM onceward_records WHERE namespace = 'sms'")
        .await;
    assert_eq!(stored, 37, "an over-budget claim stores nothing");
}

/// The killswitch engaged through one sidecar stops new claims on the other within a
/// second, for a namespace that had no policy before (the hardest case: the other
/// sidecar routed its claims the plain way until then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_set_through_one_sidecar_reaches_the_other_within_a_second() {
    let db = TestDatabase::create().await;
    let (first, second) = TestApp::builder()
        .ledger(Ledger::Postgres(&db))
        .spawn_two()
        .await;
    let mut on_second = second.client.clone();
    assert_eq!(
        outcome(&claim(&mut on_second, "sms", "before").await),
        Outcome::Acquired
    );
    killswitch(&first, "sms", Some("stop")).await;
    let engaged = std::time::Instant::now();
    let mut key = 0;
    let blocked_after = loop {
        key += 1;
        let answer = claim(&mut on_second, "sms", &format!("k{key}")).await;
        if outcome(&answer) == Outcome::Blocked {
            break engaged.elapsed();
        }
        assert!(
            engaged.elapsed() < Duration::from_secs(1),
            "still acquiring after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!("blocked on the other sidecar {blocked_after:?} after the killswitch");
    killswitch(&first, "sms", None).await;
    let released = eventually(Duration::from_secs(1), || {
        let mut on_second = on_second.clone();
        async move { outcome(&claim(&mut on_second, "sms", "after").await) == Outcome::Acquired }
    })
    .await;
    assert!(
        released,
        "the release reached the other sidecar within a second"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_rpcs_need_an_admin_tenant_for_its_own_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tenants.toml");
    let sha = |token: &str| hex::encode(sha2::Sha256::digest(token.as_bytes()));
    std::fs::write(
        &config,
        format!(
            "[[tenants]]\nname = \"ops\"\ntoken_sha256 = \"{}\"\nnamespaces = [\"sms\"]\nadmin = true\n\n\
             [[tenants]]\nname = \"app\"\ntoken_sha256 = \"{}\"\nnamespaces = [\"sms\", \"mail\"]\n",
            sha("ops-token"),
            sha("app-token")
        ),
    )
    .unwrap();
    let app = TestApp::builder().tenants(&config).spawn().await;
    let mut admin = admin(&app).await;
    let as_tenant = |token: &str, namespace: &str| {
        let mut request = Request::new(SetPolicyRequest {
            namespace: namespace.to_owned(),
            policy: Some(Policy {
                killswitch: true,
                ..Policy::default()
            }),
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    };
    let not_admin = admin
        .set_policy(as_tenant("app-token", "sms"))
        .await
        .unwrap_err();
    assert_eq!(not_admin.code(), Code::PermissionDenied);
    let not_granted = admin
        .set_policy(as_tenant("ops-token", "mail"))
        .await
        .unwrap_err();
    assert_eq!(not_granted.code(), Code::PermissionDenied);
    let anonymous = admin
        .get_policy(GetPolicyRequest {
            namespace: "sms".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let set = admin
        .set_policy(as_tenant("ops-token", "sms"))
        .await
        .unwrap()
        .into_inner();
    assert!(set.killswitch);
}
