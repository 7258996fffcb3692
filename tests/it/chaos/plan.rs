//! Each logical operation and what goes wrong in it, drawn from the run's seed, so an
//! operation's plan (and its workers' choices, through [`op_rng`]) replays with the seed.

use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};

/// What one logical operation does wrong, decided by the seed.
#[derive(Debug, Clone)]
pub struct OpPlan {
    /// Concurrent workers on the operation, besides a dying one.
    pub workers: usize,
    /// A worker claims first, with a short lease, and dies before the vendor call.
    pub dying_worker: bool,
    /// One worker drops the reply of its first answered Claim.
    pub drops_claim_reply: bool,
    /// The worker that completes drops the reply of its first Complete and retries.
    pub drops_complete_reply: bool,
    /// A worker whose vendor call failed drops the reply of its first Release.
    pub drops_release_reply: bool,
    /// How many vendor calls fail on purpose before one succeeds.
    pub vendor_failures: u32,
    /// After the operation, a client with a different fingerprint claims its key.
    pub mismatch_probe: bool,
}

impl OpPlan {
    /// The plan for operation `index` under `seed`.
    pub fn new(seed: u64, index: usize) -> Self {
        let mut rng = op_rng(seed, index, u64::MAX);
        Self {
            workers: rng.random_range(2..=4),
            dying_worker: rng.random_bool(0.05),
            drops_claim_reply: rng.random_bool(0.05),
            drops_complete_reply: rng.random_bool(0.10),
            drops_release_reply: rng.random_bool(0.5),
            vendor_failures: if rng.random_bool(0.08) {
                rng.random_range(1..=2)
            } else {
                0
            },
            mismatch_probe: rng.random_bool(0.03),
        }
    }
}

/// One logical operation.
#[derive(Debug)]
pub struct Op {
    /// Its position among the operations.
    pub index: usize,
    /// Its idempotency key.
    pub key: String,
    /// The fingerprint every honest worker sends.
    pub fingerprint: Vec<u8>,
    /// What goes wrong.
    pub plan: OpPlan,
    /// The run's seed, which each of the operation's workers draws its choices from.
    pub(super) seed: u64,
}

/// The customers whose budgets the operations spend (the namespace has a budget).
pub const SUBJECTS: usize = 40;

impl Op {
    /// Whose spend this operation is.
    pub fn subject(&self) -> String {
        format!("customer-{}", self.index % SUBJECTS)
    }

    /// What it costs, in the namespace's budget units.
    pub fn cost(&self) -> u64 {
        1 + (self.index % 7) as u64
    }

    /// Operation `index` of a run seeded with `seed`.
    pub fn new(seed: u64, index: usize) -> Self {
        Self {
            index,
            key: format!("op-{index:04}"),
            fingerprint: format!("charge {index} EUR {}", 100 + index).into_bytes(),
            plan: OpPlan::new(seed, index),
            seed,
        }
    }
}

/// The seeded generator for one operation's worker `n`, so an operation's plan and
/// choices replay with the seed (the interleaving with the faults does not: it
/// depends on timing).
pub(super) fn op_rng(seed: u64, index: usize, n: u64) -> StdRng {
    StdRng::seed_from_u64(
        seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ n.wrapping_mul(0xD6E8_FEB8_6659_FD93),
    )
}
