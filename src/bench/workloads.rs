//! The workloads against onceward itself, and the keys every target uses.
//!
//! One `new` operation is what a caller does for one side effect: `Claim` a fresh key
//! (it must be `ACQUIRED`), then `Complete` it. One `duplicate` operation is a retry:
//! `Claim` of a key completed before the run (it must come back `COMPLETED`). Any
//! other answer counts as an error, so a fast but wrong server cannot look good.

use std::sync::Arc;

use async_trait::async_trait;
use tonic::transport::Channel;

use super::args::Workload;
use super::driver::Worker;
use crate::proto::onceward_client::OncewardClient;
use crate::proto::{
    ClaimBatchRequest, ClaimItem, ClaimRequest, CompleteBatchRequest, CompleteItem,
    CompleteRequest, Outcome,
};

/// The namespace every bench key lives in.
pub const NAMESPACE: &str = "bench";
/// The namespace of the budget workload, which has a budget.
pub const BUDGET_NAMESPACE: &str = "bench-budget";
/// The subjects the budget workload's claims spend for.
const BUDGET_SUBJECTS: u64 = 1000;
/// A fingerprint the size of a SHA-256, the same for every operation so duplicates
/// match it.
pub const FINGERPRINT: &[u8; 32] = b"onceward-bench-fingerprint-32-by";

/// Which keys a run's operations use.
#[derive(Debug, Clone)]
pub struct KeyPlan {
    /// The workload.
    pub workload: Workload,
    /// Share of duplicates in the mixed workload.
    pub duplicate_ratio: f64,
    /// Prefix of this run's fresh keys; unique per run, so no run meets another's keys.
    pub fresh_prefix: String,
    /// Prefix of the completed keys duplicates repeat.
    pub completed_prefix: String,
    /// How many completed keys there are.
    pub completed_keys: u64,
    /// The response each completion stores.
    pub response: Arc<[u8]>,
    /// Fresh keys per batch (the batch workload).
    pub batch_items: u32,
}

/// One operation's key and whether it repeats a completed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A key nobody has claimed.
    Fresh(String),
    /// A key completed before the run.
    Completed(String),
}

impl KeyPlan {
    /// The key of operation `seq`.
    pub fn key(&self, seq: u64) -> Key {
        let duplicate = match self.workload {
            Workload::New | Workload::Batch | Workload::Budget => false,
            Workload::Duplicate | Workload::Connect => true,
            Workload::Mixed => unit_interval(seq) < self.duplicate_ratio,
        };
        if duplicate {
            Key::Completed(self.completed_key(spread(seq) % self.completed_keys))
        } else {
            Key::Fresh(format!("{}-{seq}", self.fresh_prefix))
        }
    }

    /// The `index`-th completed key.
    pub fn completed_key(&self, index: u64) -> String {
        format!("{}-{index}", self.completed_prefix)
    }
}

/// A fresh random prefix for a run's keys.
pub fn unique_prefix(label: &str) -> String {
    format!("{label}-{:012x}", rand::random::<u64>() >> 16)
}

/// splitmix64: spreads consecutive sequence numbers over the whole range, so the mixed
/// workload interleaves its two kinds and duplicates hit keys in no fixed order.
fn spread(seq: u64) -> u64 {
    let mut z = seq.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn unit_interval(seq: u64) -> f64 {
    (spread(seq) >> 11) as f64 / (1u64 << 53) as f64
}

/// The standard name of a gRPC status code, as errors are reported.
pub fn code_name(status: &tonic::Status) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    let code = status.code() as usize;
    NAMES.get(code).copied().unwrap_or("UNKNOWN").to_owned()
}

/// A caller of onceward on one HTTP/2 connection (shared with other workers).
pub struct OncewardWorker {
    client: OncewardClient<Channel>,
    plan: Arc<KeyPlan>,
    /// Complete every key, whatever the workload says: used to fill the completed set.
    populate: bool,
}

impl OncewardWorker {
    /// A worker running `plan` over `channel`.
    pub fn new(channel: Channel, plan: Arc<KeyPlan>) -> Self {
        Self {
            client: OncewardClient::new(channel),
            plan,
            populate: false,
        }
    }

    /// A worker that claims and completes completed key number `seq`.
    pub fn populating(channel: Channel, plan: Arc<KeyPlan>) -> Self {
        Self {
            populate: true,
            ..Self::new(channel, plan)
        }
    }

    async fn claim(&mut self, key: String) -> Result<crate::proto::ClaimResponse, String> {
        self.claim_spending(NAMESPACE, key, String::new()).await
    }

    async fn claim_spending(
        &mut self,
        namespace: &str,
        key: String,
        subject: String,
    ) -> Result<crate::proto::ClaimResponse, String> {
        let cost = u64::from(!subject.is_empty());
        self.client
            .claim(ClaimRequest {
                namespace: namespace.to_owned(),
                key,
                fingerprint: FINGERPRINT.to_vec(),
                lease: None,
                claimant: rand::random::<[u8; 16]>().to_vec(),
                attempt: 1,
                subject,
                cost,
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| code_name(&status))
    }

    async fn claim_and_complete(&mut self, key: String) -> Result<(), String> {
        self.spend_and_complete(NAMESPACE, key, String::new()).await
    }

    /// Claims `key` in `namespace` for `subject` (none: empty), then completes it.
    async fn spend_and_complete(
        &mut self,
        namespace: &str,
        key: String,
        subject: String,
    ) -> Result<(), String> {
        let claimed = self.claim_spending(namespace, key.clone(), subject).await?;
        expect_outcome(claimed.outcome, Outcome::Acquired)?;
        self.client
            .complete(CompleteRequest {
                namespace: namespace.to_owned(),
                key,
                fencing_token: claimed.fencing_token,
                response: self.plan.response.to_vec(),
                retention: None,
            })
            .await
            .map(drop)
            .map_err(|status| code_name(&status))
    }
}

impl OncewardWorker {
    /// One `ClaimBatch` of the batch's fresh keys (every one must be `ACQUIRED`), then
    /// one `CompleteBatch` of them (every one must be stored).
    async fn batch(&mut self, seq: u64) -> Result<(), String> {
        let keys: Vec<String> = (0..self.plan.batch_items)
            .map(|i| format!("{}-{seq}-{i}", self.plan.fresh_prefix))
            .collect();
        let claimed = self
            .client
            .claim_batch(ClaimBatchRequest {
                namespace: NAMESPACE.to_owned(),
                items: keys
                    .iter()
                    .map(|key| ClaimItem {
                        key: key.clone(),
                        fingerprint: FINGERPRINT.to_vec(),
                        claimant: rand::random::<[u8; 16]>().to_vec(),
                        attempt: 1,
                        ..Default::default()
                    })
                    .collect(),
                lease: None,
            })
            .await
            .map_err(|status| code_name(&status))?
            .into_inner();
        let mut items = Vec::with_capacity(keys.len());
        for (key, answer) in keys.into_iter().zip(&claimed.results) {
            expect_outcome(answer.outcome, Outcome::Acquired)?;
            items.push(CompleteItem {
                key,
                fencing_token: answer.fencing_token,
                response: self.plan.response.to_vec(),
            });
        }
        let completed = self
            .client
            .complete_batch(CompleteBatchRequest {
                namespace: NAMESPACE.to_owned(),
                items,
                retention: None,
            })
            .await
            .map_err(|status| code_name(&status))?
            .into_inner();
        match completed.results.iter().find(|result| result.code != 0) {
            Some(refused) => Err(format!("CompleteBatch item code {}", refused.code)),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Worker for OncewardWorker {
    async fn call(&mut self, seq: u64) -> Result<(), String> {
        if self.populate {
            let key = self.plan.completed_key(seq);
            return self.claim_and_complete(key).await;
        }
        if self.plan.workload == Workload::Batch {
            return self.batch(seq).await;
        }
        if self.plan.workload == Workload::Budget {
            let Key::Fresh(key) = self.plan.key(seq) else {
                return Err("the budget workload claims fresh keys only".to_owned());
            };
            let subject = format!("bench-subject-{}", spread(seq) % BUDGET_SUBJECTS);
            return self
                .spend_and_complete(BUDGET_NAMESPACE, key, subject)
                .await;
        }
        match self.plan.key(seq) {
            Key::Fresh(key) => self.claim_and_complete(key).await,
            Key::Completed(key) => {
                let replay = self.claim(key).await?;
                expect_outcome(replay.outcome, Outcome::Completed)
            }
        }
    }
}

fn expect_outcome(answer: i32, expected: Outcome) -> Result<(), String> {
    if answer == expected as i32 {
        return Ok(());
    }
    let got = Outcome::try_from(answer)
        .map(|outcome| outcome.as_str_name())
        .unwrap_or("an unknown outcome");
    Err(format!("{got} (expected {})", expected.as_str_name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(workload: Workload, ratio: f64) -> KeyPlan {
        KeyPlan {
            workload,
            duplicate_ratio: ratio,
            fresh_prefix: "f".into(),
            completed_prefix: "c".into(),
            completed_keys: 100,
            response: Arc::from(&b"r"[..]),
            batch_items: 100,
        }
    }

    #[test]
    fn the_mixed_workload_repeats_completed_keys_at_the_asked_ratio() {
        let plan = plan(Workload::Mixed, 0.9);
        let duplicates = (0..10_000)
            .filter(|&seq| matches!(plan.key(seq), Key::Completed(_)))
            .count();
        assert!((8_800..9_200).contains(&duplicates), "{duplicates}");
    }

    #[test]
    fn new_keys_are_never_repeated_and_duplicates_stay_in_the_completed_set() {
        let new = plan(Workload::New, 0.0);
        assert_eq!(new.key(7), Key::Fresh("f-7".into()));
        assert_ne!(new.key(7), new.key(8));
        let duplicate = plan(Workload::Duplicate, 0.0);
        for seq in 0..1_000 {
            let Key::Completed(key) = duplicate.key(seq) else {
                panic!("a duplicate workload only repeats");
            };
            let index: u64 = key.strip_prefix("c-").unwrap().parse().unwrap();
            assert!(index < 100);
        }
    }
}
