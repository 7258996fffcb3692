//! The budget workload's namespace: a budget its claims never exhaust, so every claim
//! takes the spend guard's whole path (the policy read, the debit, in the claim's
//! transaction) and is still `ACQUIRED`.

use std::time::Duration;

use anyhow::Context as _;

use super::workloads::BUDGET_NAMESPACE;
use crate::proto::admin_client::AdminClient;
use crate::proto::{Budget, Policy, SetPolicyRequest};

/// Sets the budget on the sidecar at `addr` (through its Admin service; a sidecar with
/// tenants needs an admin tenant's `ONCEWARD_AUTH_TOKEN`).
pub async fn set(addr: &str) -> anyhow::Result<()> {
    let endpoint = match addr.contains("://") {
        true => addr.to_owned(),
        false => format!("http://{addr}"),
    };
    let channel = tonic::transport::Endpoint::from_shared(endpoint)?
        .connect()
        .await
        .with_context(|| format!("cannot reach the sidecar at {addr} to set the bench budget"))?;
    let token = std::env::var("ONCEWARD_AUTH_TOKEN").ok();
    let mut admin =
        AdminClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
            if let Some(token) = &token {
                let value = format!("Bearer {token}").parse().map_err(|_| {
                    tonic::Status::invalid_argument("ONCEWARD_AUTH_TOKEN is not ASCII")
                })?;
                request.metadata_mut().insert("authorization", value);
            }
            Ok(request)
        });
    let policy = Policy {
        budget: Some(Budget {
            max_cost: i64::MAX as u64,
            max_claims: i64::MAX as u64,
            window: Some(crate::proto::duration(Duration::from_secs(31 * 24 * 3600))),
            require_subject: false,
        }),
        ..Policy::default()
    };
    admin
        .set_policy(SetPolicyRequest {
            namespace: BUDGET_NAMESPACE.to_owned(),
            policy: Some(policy),
        })
        .await
        .context("cannot set the bench budget")?;
    // Every other sidecar on the ledger reads it within a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    Ok(())
}
