//! The chaos run's budgets: per customer, exactly what its operations cost, so the
//! run passes only if every operation was debited exactly once, whatever the faults.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use onceward::proto::admin_client::AdminClient;
use onceward::proto::{Budget, Policy, SetPolicyRequest};

use super::fleet::Sidecar;
use super::plan::{Op, SUBJECTS};

/// What each customer's operations cost in all: (units, claims).
pub struct Budgets {
    per_subject: BTreeMap<String, (u64, u64)>,
}

impl Budgets {
    pub fn of(ops: &[Arc<Op>]) -> Self {
        let mut per_subject: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for op in ops {
            let spend = per_subject.entry(op.subject()).or_default();
            spend.0 += op.cost();
            spend.1 += 1;
        }
        Self { per_subject }
    }

    /// Sets the namespace's budget through `sidecar`: every customer's limits are the
    /// most any one needs, so a customer with fewer operations has slack, and the
    /// spend check below is exact. Waits until every sidecar has read it.
    pub async fn set(&self, sidecar: &Sidecar) {
        let max_cost = self.per_subject.values().map(|s| s.0).max().unwrap_or(1);
        let max_claims = self.per_subject.values().map(|s| s.1).max().unwrap_or(1);
        let policy = Policy {
            budget: Some(Budget {
                max_cost,
                max_claims,
                window: Some(onceward::proto::duration(Duration::from_secs(24 * 3600))),
                require_subject: false,
            }),
            ..Policy::default()
        };
        let mut admin = AdminClient::connect(format!("http://{}", sidecar.addr))
            .await
            .expect("connect to the sidecar's Admin service");
        admin
            .set_policy(SetPolicyRequest {
                namespace: super::NAMESPACE.to_owned(),
                policy: Some(policy),
            })
            .await
            .expect("set the chaos namespace's budget");
        assert_eq!(self.per_subject.len(), SUBJECTS);
        // Every sidecar re-reads the policies every 250 ms.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }

    /// Each customer's spend in the ledger (summed over windows, should the run cross
    /// midnight) is exactly what its operations cost: one debit per operation.
    pub async fn check(
        &self,
        ledger: &mut sqlx::PgConnection,
        namespace: &str,
        problems: &mut Vec<String>,
    ) {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT subject, sum(cost)::bigint, sum(claims)::bigint FROM onceward_spend \
             WHERE namespace = $1 GROUP BY subject",
        )
        .bind(namespace)
        .fetch_all(ledger)
        .await
        .expect("read the spend");
        let spent: BTreeMap<String, (u64, u64)> = rows
            .into_iter()
            .map(|(subject, cost, claims)| (subject, (cost as u64, claims as u64)))
            .collect();
        for (subject, expected) in &self.per_subject {
            let actual = spent.get(subject).copied().unwrap_or_default();
            if actual != *expected {
                problems.push(format!(
                    "{subject} spent (cost, claims) {actual:?}, its operations cost {expected:?}"
                ));
            }
        }
    }
}
