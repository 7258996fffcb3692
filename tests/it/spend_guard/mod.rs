//! The spend guard (docs/PROTOCOL.md, "Spend guard"): a namespace's killswitch and
//! per-subject budget, decided in the claim's own ledger transaction.
//!
//! - `rules`: each rule on every pairing: duplicates first, the killswitch, the budget
//!   and its refunds, batches, validation, the Admin API, the audit trail, metrics;
//! - `fleet`: sidecars sharing a ledger: a policy reaches every one within a second,
//!   and concurrent claims through all of them never exceed a limit;
//! - `stories`: the users' own stories, end to end.

mod fleet;
mod rules;
mod stories;

use std::time::Duration;

use onceward::proto::admin_client::AdminClient;
use onceward::proto::onceward_client::OncewardClient;
use onceward::proto::{self, Budget, ClaimRequest, ClaimResponse, Policy, SetPolicyRequest};
use tonic::transport::Channel;

use crate::harness::*;

pub async fn admin(app: &TestApp) -> AdminClient<Channel> {
    AdminClient::connect(format!("http://{}", app.addr))
        .await
        .expect("connect")
}

/// A budget of `max_cost` units and `max_claims` claims per subject per `window`.
pub fn budget(max_cost: u64, max_claims: u64, window: Duration) -> Option<Budget> {
    Some(Budget {
        max_cost,
        max_claims,
        window: Some(proto_duration(window)),
        require_subject: false,
    })
}

pub async fn set_policy(app: &TestApp, namespace: &str, policy: Policy) -> Policy {
    admin(app)
        .await
        .set_policy(SetPolicyRequest {
            namespace: namespace.to_owned(),
            policy: Some(policy),
        })
        .await
        .expect("set the policy")
        .into_inner()
}

/// The killswitch engaged (`reason`) or released (`None`), the budget as it was.
pub async fn killswitch(app: &TestApp, namespace: &str, reason: Option<&str>) {
    let mut current = admin(app)
        .await
        .get_policy(proto::GetPolicyRequest {
            namespace: namespace.to_owned(),
        })
        .await
        .expect("get the policy")
        .into_inner();
    current.killswitch = reason.is_some();
    current.killswitch_reason = reason.unwrap_or_default().to_owned();
    set_policy(app, namespace, current).await;
}

/// A claim of `key` spending `cost` of `subject`'s budget.
pub fn spending(namespace: &str, key: &str, subject: &str, cost: u64) -> ClaimRequest {
    ClaimRequest {
        subject: subject.to_owned(),
        cost,
        ..claim_request(namespace, key, b"", None)
    }
}

pub async fn claim_spending(
    client: &mut OncewardClient<Channel>,
    namespace: &str,
    key: &str,
    subject: &str,
    cost: u64,
) -> ClaimResponse {
    client
        .claim(spending(namespace, key, subject, cost))
        .await
        .expect("claim")
        .into_inner()
}

/// What `subject` spent in `namespace`'s current window: (cost, claims).
pub async fn spent(app: &TestApp, namespace: &str, subject: &str) -> (u64, u64) {
    let spend = admin(app)
        .await
        .get_spend(proto::GetSpendRequest {
            namespace: namespace.to_owned(),
            subject: subject.to_owned(),
        })
        .await
        .expect("get the spend")
        .into_inner();
    (spend.cost, spend.claims)
}

/// The audit trail of `namespace`, newest first, once the writer has caught up.
pub async fn events(app: &TestApp, namespace: &str, at_least: usize) -> Vec<proto::Event> {
    let mut admin = admin(app).await;
    let mut events = Vec::new();
    for _ in 0..50 {
        events = admin
            .list_events(proto::ListEventsRequest {
                namespace: namespace.to_owned(),
                since: None,
                limit: 1000,
            })
            .await
            .expect("list events")
            .into_inner()
            .events;
        if events.len() >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    events
}

/// A window long enough that no test crosses into the next one by accident, aligned
/// so that a test started near the end of one still has most of it: 1 hour.
pub const HOUR: Duration = Duration::from_secs(3600);
