//! `Admin.Forget`: a record deleted from the ledger and every cache, so the key is new
//! again on every sidecar within a second; a live claim only with `force`; the Admin
//! service only for admin tenants, in their own namespaces.

use std::time::Duration;

use onceward::proto::admin_client::AdminClient;
use onceward::proto::{ForgetRequest, Outcome, Tier};
use sha2::Digest as _;
use tonic::transport::Channel;
use tonic::{Code, Request};

use crate::harness::*;

async fn admin(app: &TestApp) -> AdminClient<Channel> {
    AdminClient::connect(format!("http://{}", app.addr))
        .await
        .expect("connect")
}

fn forget_request(namespace: &str, key: &str, force: bool) -> ForgetRequest {
    ForgetRequest {
        namespace: namespace.to_owned(),
        key: key.to_owned(),
        force,
    }
}

on_every_pairing!(a_forgotten_completed_key_is_new_again_and_a_live_claim_needs_force,);

async fn a_forgotten_completed_key_is_new_again_and_a_live_claim_needs_force(pairing: Pairing) {
    let app = TestApp::builder().pairing(pairing).spawn().await;
    let (mut client, mut admin) = (app.client.clone(), admin(&app).await);

    let done = claim(&mut client, "forget", "done").await;
    complete(&mut client, "forget", "done", done.fencing_token, b"r")
        .await
        .unwrap();
    let replay = claim(&mut client, "forget", "done").await;
    assert_eq!(outcome(&replay), Outcome::Completed);
    let forgotten = admin
        .forget(forget_request("forget", "done", false))
        .await
        .unwrap()
        .into_inner();
    assert!(forgotten.found);
    let again = claim(&mut client, "forget", "done").await;
    assert_eq!(
        outcome(&again),
        Outcome::Acquired,
        "new again, in every tier"
    );

    let held = claim(&mut client, "forget", "held").await;
    let refused = admin
        .forget(forget_request("forget", "held", false))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("force"), "{refused:?}");
    assert!(
        lookup(&mut client, "forget", "held").await.found,
        "nothing deleted"
    );
    let forced = admin
        .forget(forget_request("forget", "held", true))
        .await
        .unwrap()
        .into_inner();
    assert!(forced.found);
    let late = complete(&mut client, "forget", "held", held.fencing_token, b"late").await;
    assert_eq!(late.unwrap_err().code(), Code::FailedPrecondition);
    assert_eq!(
        outcome(&claim(&mut client, "forget", "held").await),
        Outcome::Acquired
    );

    let absent = admin
        .forget(forget_request("forget", "never-claimed", false))
        .await
        .unwrap()
        .into_inner();
    assert!(!absent.found);
}

/// Two sidecars on one Postgres, each with `hot_tier`: a completed key replayed by the
/// second, forgotten through the first, is new on the second within a second.
async fn every_sidecar_drops_its_copy(hot_tier: HotTier) {
    let db = TestDatabase::create().await;
    let builder = TestApp::builder()
        .ledger(Ledger::Postgres(&db))
        .hot_tier(hot_tier);
    let (first, second) = builder.spawn_two().await;
    let (mut on_first, mut on_second) = (first.client.clone(), second.client.clone());
    let done = claim(&mut on_first, "fleet", "k").await;
    complete(&mut on_first, "fleet", "k", done.fencing_token, b"r")
        .await
        .unwrap();
    // The second sidecar answers it from memory now (its near cache, or its own
    // in-process tier once the ledger told it).
    for _ in 0..2 {
        let replay = claim(&mut on_second, "fleet", "k").await;
        assert_eq!(outcome(&replay), Outcome::Completed);
    }
    let replay = claim(&mut on_second, "fleet", "k").await;
    assert_eq!(
        tier(&replay),
        Tier::Cache,
        "the second sidecar holds a copy"
    );

    let forgotten = admin(&first)
        .await
        .forget(forget_request("fleet", "k", false))
        .await
        .unwrap()
        .into_inner();
    assert!(forgotten.found);
    let started = std::time::Instant::now();
    let new_again = eventually(Duration::from_secs(1), || {
        let mut on_second = on_second.clone();
        async move {
            let answer = claim_with(&mut on_second, "fleet", "k", b"", None).await;
            outcome(&answer) == Outcome::Acquired
        }
    })
    .await;
    assert!(
        new_again,
        "the second sidecar still answered from its copy after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forget_reaches_another_sidecars_near_cache_within_a_second() {
    every_sidecar_drops_its_copy(HotTier::SharedRedis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forget_reaches_another_sidecars_in_process_tier_within_a_second() {
    every_sidecar_drops_its_copy(HotTier::InProcess).await;
}

#[tokio::test]
async fn only_an_admin_tenant_may_forget_and_only_in_its_own_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let hash = |token: &str| hex::encode(sha2::Sha256::digest(token));
    let config = dir.path().join("tenants.toml");
    std::fs::write(
        &config,
        format!(
            "[[tenants]]\nname = \"ops\"\ntoken_sha256 = \"{}\"\nnamespaces = [\"payments\"]\nadmin = true\n\n\
             [[tenants]]\nname = \"app\"\ntoken_sha256 = \"{}\"\nnamespaces = [\"payments\", \"mail\"]\n",
            hash("ops-token"),
            hash("app-token"),
        ),
    )
    .unwrap();
    let app = TestApp::builder().tenants(&config).spawn().await;
    let mut admin = admin(&app).await;
    let forget_as = |token: &str, namespace: &str| {
        let mut request = Request::new(forget_request(namespace, "k", false));
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    };
    let not_admin = admin
        .forget(forget_as("app-token", "payments"))
        .await
        .unwrap_err();
    assert_eq!(not_admin.code(), Code::PermissionDenied);
    assert!(
        not_admin.message().contains("admin = true"),
        "{not_admin:?}"
    );
    let not_granted = admin
        .forget(forget_as("ops-token", "mail"))
        .await
        .unwrap_err();
    assert_eq!(not_granted.code(), Code::PermissionDenied);
    let anonymous = admin
        .forget(forget_request("payments", "k", false))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let allowed = admin
        .forget(forget_as("ops-token", "payments"))
        .await
        .unwrap();
    assert!(!allowed.into_inner().found);
}
