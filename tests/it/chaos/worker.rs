//! The workers: honest clients driving one logical operation each through
//! Claim → vendor call → Complete (Release when the vendor fails), with retries.
//!
//! Honest means: the vendor is called only with the token of an `ACQUIRED` this worker
//! received, and a claim whose `Complete` was refused (`FAILED_PRECONDITION`) is never
//! used for a vendor call again. Everything a worker sees is tallied, so the run can
//! hold the sidecars' metrics against it.
//!
//! The inherent window: a holder that made the vendor call and then dies (or stalls
//! past its lease) before `Complete` would be taken over, and its successor would call
//! the vendor a second time — only a fencing-aware vendor can close that (see
//! `fencing.rs`). So the workers here that die, die BEFORE the vendor call, as the
//! issue asks, and live holders get a lease ([`super::fleet::DEFAULT_LEASE`]) longer
//! than any fault they can be stuck behind.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use onceward::proto::{self, ClaimRequest, ClaimResponse, Outcome};
use rand::RngExt as _;
use rand::rngs::StdRng;
use tokio::task::JoinSet;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::fleet::{Phase, Sidecar};
use super::plan::{Op, op_rng};
use super::report::{OpReport, Tally, WorkerEnd};
use super::vendor::Vendor;
use super::{outcome_label, tier_label};
use crate::harness::claim_request;

/// The lease of a claim whose holder is going to vanish (a dying worker), so its
/// takeover comes quickly.
const SHORT_LEASE: Duration = Duration::from_millis(400);
/// The vendor takes up to this long per call.
const VENDOR_LATENCY_MS: u64 = 30;
/// Backoff: full jitter over `BASE · 2^attempt`, capped.
const BACKOFF_BASE: Duration = Duration::from_millis(10);
const BACKOFF_CAP: Duration = Duration::from_secs(1);
/// Claims one worker may make before it gives up (and the run fails). At the cap
/// this is over a minute: longer than any lease plus any fault.
const MAX_CLAIM_ATTEMPTS: u32 = 200;
/// Attempts of one Complete or Release.
const MAX_RPC_ATTEMPTS: u32 = 100;
/// What the server says when it fails closed (see `src/grpc/error.rs`).
const LEDGER_UNAVAILABLE: &str = "the ledger is unavailable";
/// Everything the workers share.
pub struct Ctx {
    /// The sidecars.
    pub fleet: Vec<Sidecar>,
    /// The fake payment vendor.
    pub vendor: Vendor,
    /// The namespace of every key.
    pub namespace: String,
    /// What the workers saw.
    pub tally: Mutex<Tally>,
    /// True while the Postgres proxy is cut.
    pub postgres_cut: AtomicBool,
    /// Claims answered UNAVAILABLE by a sidecar while Postgres was cut.
    pub unavailable_during_cut: AtomicU64,
    /// Operations finished, for the progress line.
    pub ops_done: AtomicU64,
}

/// Runs every worker of `op`: the dying one first (so it is the one that holds the
/// key when it dies), then the others concurrently.
pub async fn run_op(ctx: Arc<Ctx>, op: Arc<Op>) -> OpReport {
    let abandoned = Arc::new(Mutex::new(Vec::new()));
    let mut ends = Vec::new();
    if op.plan.dying_worker {
        ends.push(worker(&ctx, &op, 0, Role::Dying, &abandoned).await);
    }
    let mut workers = JoinSet::new();
    for n in 1..=op.plan.workers {
        let role = if n == 1 && op.plan.drops_claim_reply {
            Role::DropsFirstClaimReply
        } else {
            Role::Honest
        };
        let (ctx, op, abandoned) = (ctx.clone(), op.clone(), abandoned.clone());
        workers.spawn(async move { worker(&ctx, &op, n, role, &abandoned).await });
    }
    ends.extend(workers.join_all().await);
    if op.plan.mismatch_probe {
        ends.push(mismatch_probe(&ctx, &op).await);
    }
    let abandoned_tokens = abandoned.lock().unwrap().clone();
    ctx.ops_done.fetch_add(1, Ordering::Relaxed);
    OpReport {
        key: op.key.clone(),
        ends,
        abandoned_tokens,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Honest,
    /// Claims with a short lease and dies as soon as it holds the key.
    Dying,
    /// Drops the first answer to its claim, whatever it was, and retries it with the
    /// same claimant. It claims with the usual lease: only the claimant can resolve a
    /// lost ACQUIRED before that lease runs out.
    DropsFirstClaimReply,
}

async fn worker(
    ctx: &Ctx,
    op: &Op,
    n: usize,
    role: Role,
    abandoned: &Mutex<Vec<u64>>,
) -> WorkerEnd {
    let mut rng = op_rng(op.seed, op.index, n as u64);
    let caller = format!("{}#{n}", op.key);
    let mut drop_next_claim_reply = role == Role::DropsFirstClaimReply;
    let mut drop_complete_reply = op.plan.drops_complete_reply;
    let mut drop_release_reply = op.plan.drops_release_reply;
    // One claimant for every retry of this worker's claim, as every onceward client
    // sends (the claimant, docs/PROTOCOL.md); a new one once a claim it held was refused.
    let mut claimant = rng.random::<[u8; 16]>().to_vec();
    // A dropped ACQUIRED: its token, and when it was dropped.
    let mut lost: Option<(u64, tokio::time::Instant)> = None;
    for attempt in 0..MAX_CLAIM_ATTEMPTS {
        let short = role == Role::Dying;
        let request = ClaimRequest {
            claimant: claimant.clone(),
            attempt: attempt + 1,
            subject: op.subject(),
            cost: op.cost(),
            ..claim_request(
                &ctx.namespace,
                &op.key,
                &op.fingerprint,
                short.then_some(SHORT_LEASE),
            )
        };
        let reply = match ctx.claim(request, &mut rng).await {
            Ok(reply) => reply,
            Err(status) if retryable(&status) => {
                ctx.event("retry: Claim after an error");
                backoff(attempt, &mut rng).await;
                continue;
            }
            Err(status) => return WorkerEnd::Failed(format!("{caller}: Claim: {status}")),
        };
        let outcome = Outcome::try_from(reply.outcome).expect("a known outcome");
        if drop_next_claim_reply {
            // The server acted; the answer never reached the worker. Its retry, with
            // the same claimant, must get the same claim back.
            drop_next_claim_reply = false;
            ctx.event("lost reply: Claim");
            if outcome == Outcome::Acquired {
                ctx.event("lost reply: Claim ACQUIRED");
                lost = Some((reply.fencing_token, tokio::time::Instant::now()));
            }
            backoff(attempt, &mut rng).await;
            continue;
        }
        if let Some((token, at)) = lost.take_if(|_| outcome != Outcome::InProgress) {
            ctx.resolved_lost_acquired(token, at, &reply, abandoned);
        }
        match outcome {
            Outcome::Acquired if role == Role::Dying => {
                ctx.event("worker died after ACQUIRED, before the vendor call");
                abandoned.lock().unwrap().push(reply.fencing_token);
                return WorkerEnd::Died;
            }
            Outcome::Acquired => {
                let token = reply.fencing_token;
                let latency = Duration::from_millis(rng.random_range(0..=VENDOR_LATENCY_MS));
                let charged = ctx
                    .vendor
                    .charge(op.index, &op.key, token, &caller, latency)
                    .await;
                match charged {
                    Ok(call_id) => {
                        let response = format!("charge:{call_id}");
                        let drop_reply = std::mem::take(&mut drop_complete_reply);
                        match ctx
                            .complete(op, token, &response, drop_reply, &mut rng)
                            .await
                        {
                            Ok(true) => return WorkerEnd::Completed { token, response },
                            // Not ours any more: this claim must never reach the vendor
                            // again. Claim anew (the run then shows any second charge).
                            Ok(false) => {
                                ctx.event("Complete refused after the vendor call");
                                claimant = rng.random::<[u8; 16]>().to_vec();
                            }
                            Err(why) => return WorkerEnd::Failed(format!("{caller}: {why}")),
                        }
                    }
                    Err(_declined) => {
                        ctx.event("vendor failure (on purpose)");
                        let drop_reply = std::mem::take(&mut drop_release_reply);
                        if let Err(why) = ctx.release(op, token, drop_reply, &mut rng).await {
                            return WorkerEnd::Failed(format!("{caller}: {why}"));
                        }
                    }
                }
                backoff(attempt, &mut rng).await;
            }
            Outcome::InProgress => {
                ctx.event("wait: IN_PROGRESS");
                let retry_after = reply.retry_after.map_or(Duration::ZERO, |d| {
                    Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32)
                });
                backoff_at_least(attempt, retry_after, &mut rng).await;
            }
            Outcome::Completed => {
                return WorkerEnd::Replayed {
                    response: String::from_utf8_lossy(&reply.response).into_owned(),
                };
            }
            other => {
                return WorkerEnd::Failed(format!(
                    "{caller}: unexpected {other:?} {}",
                    reply.reason
                ));
            }
        }
    }
    WorkerEnd::Failed(format!(
        "{caller}: gave up after {MAX_CLAIM_ATTEMPTS} claims"
    ))
}

/// A buggy client reusing the key for another request: it must get
/// FINGERPRINT_MISMATCH and change nothing.
async fn mismatch_probe(ctx: &Ctx, op: &Op) -> WorkerEnd {
    let mut rng = op_rng(op.seed, op.index, u64::MAX - 1);
    for attempt in 0..MAX_RPC_ATTEMPTS {
        let request = claim_request(&ctx.namespace, &op.key, b"another request", None);
        match ctx.claim(request, &mut rng).await {
            Ok(reply) if reply.outcome == Outcome::FingerprintMismatch as i32 => {
                return WorkerEnd::Mismatched;
            }
            Ok(reply) => {
                return WorkerEnd::Failed(format!(
                    "{}: a mismatching fingerprint got {:?}",
                    op.key,
                    Outcome::try_from(reply.outcome)
                ));
            }
            Err(status) if retryable(&status) => backoff(attempt, &mut rng).await,
            Err(status) => return WorkerEnd::Failed(format!("{}: probe: {status}", op.key)),
        }
    }
    WorkerEnd::Failed(format!("{}: probe gave up", op.key))
}

impl Ctx {
    /// Records what became of an ACQUIRED answer that was dropped at `at`, now that
    /// the worker's claim was answered `reply` (not IN_PROGRESS).
    fn resolved_lost_acquired(
        &self,
        token: u64,
        at: tokio::time::Instant,
        reply: &ClaimResponse,
        abandoned: &Mutex<Vec<u64>>,
    ) {
        let waited = at.elapsed();
        let mut tally = self.tally.lock().unwrap();
        let lost = &mut tally.lost_acquired;
        if reply.outcome == Outcome::Acquired as i32 && reply.fencing_token == token {
            lost.same_token.push(waited);
            return;
        }
        // The lost claim's token was never used: it is abandoned.
        abandoned.lock().unwrap().push(token);
        let lease = onceward::domain::parse_duration(super::fleet::DEFAULT_LEASE).unwrap();
        if waited < lease {
            lost.other_token_within_lease += 1;
        } else {
            lost.outlived_its_lease += 1;
        }
    }

    /// Counts one occurrence of `event`.
    pub fn event(&self, event: &'static str) {
        *self.tally.lock().unwrap().events.entry(event).or_default() += 1;
    }

    /// One Claim, through the gate of a sidecar picked at random (skipping one that
    /// is being scraped, killed or restarted). The answer is tallied before the gate
    /// opens, so a scrape never falls between the two.
    async fn claim(
        &self,
        request: ClaimRequest,
        rng: &mut StdRng,
    ) -> Result<ClaimResponse, Status> {
        let first = rng.random_range(0..self.fleet.len());
        let gate = loop {
            let open = (0..self.fleet.len())
                .find_map(|i| self.fleet[(first + i) % self.fleet.len()].enter());
            match open {
                Some(gate) => break gate,
                None => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        };
        self.event("sent: Claim");
        let result = gate
            .client
            .clone()
            .claim(request)
            .await
            .map(tonic::Response::into_inner);
        let mut tally = self.tally.lock().unwrap();
        match (&result, gate.phase) {
            (Ok(reply), Phase::Live) => {
                *tally.live_claims.entry(labels(reply)).or_default() += 1;
            }
            (Ok(reply), Phase::Scraped) => {
                *tally.scraped_claims.entry(labels(reply)).or_default() += 1;
            }
            (Ok(_), Phase::Dead) => panic!("a killed sidecar answered a Claim"),
            (Err(status), phase) if is_ledger_unavailable(status) => {
                *tally
                    .events
                    .entry("Claim failed closed: UNAVAILABLE")
                    .or_default() += 1;
                if self.postgres_cut.load(Ordering::SeqCst) {
                    self.unavailable_during_cut.fetch_add(1, Ordering::SeqCst);
                }
                assert_ne!(phase, Phase::Dead, "a killed sidecar answered a Claim");
            }
            (Err(_), Phase::Scraped) => tally.claims_lost_to_kill += 1,
            (Err(_), Phase::Dead) => tally.claims_refused_while_dead += 1,
            (Err(status), Phase::Live) => {
                let event = match status.code() {
                    Code::Internal => "Claim: INTERNAL from a live sidecar",
                    _ => "Claim: transport error from a live sidecar",
                };
                *tally.events.entry(event).or_default() += 1;
            }
        }
        drop(tally);
        drop(gate);
        result
    }

    /// A client of a sidecar picked at random, for an ungated RPC.
    async fn client(
        &self,
        rng: &mut StdRng,
    ) -> onceward::proto::onceward_client::OncewardClient<Channel> {
        let first = rng.random_range(0..self.fleet.len());
        loop {
            let found = (0..self.fleet.len())
                .find_map(|i| self.fleet[(first + i) % self.fleet.len()].client());
            match found {
                Some(client) => return client,
                None => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    /// Completes `op` with `token` until acknowledged (`Ok(true)`) or refused
    /// (`Ok(false)`). With `drop_first_reply`, the first call's answer is ignored, as
    /// if the connection had died after the server acted.
    async fn complete(
        &self,
        op: &Op,
        token: u64,
        response: &str,
        drop_first_reply: bool,
        rng: &mut StdRng,
    ) -> Result<bool, String> {
        let request = proto::CompleteRequest {
            namespace: self.namespace.clone(),
            key: op.key.clone(),
            fencing_token: token,
            response: response.as_bytes().to_vec(),
            retention: None,
        };
        if drop_first_reply {
            self.event("sent: Complete");
            let _ = self.client(rng).await.complete(request.clone()).await;
            self.event("lost reply: Complete");
        }
        for attempt in 0..MAX_RPC_ATTEMPTS {
            self.event("sent: Complete");
            match self.client(rng).await.complete(request.clone()).await {
                Ok(_) => return Ok(true),
                Err(status) if status.code() == Code::FailedPrecondition => return Ok(false),
                Err(status) if retryable(&status) => {
                    self.event("retry: Complete after an error");
                    backoff(attempt, rng).await;
                }
                Err(status) => return Err(format!("Complete: {status}")),
            }
        }
        Err(format!(
            "Complete gave up after {MAX_RPC_ATTEMPTS} attempts"
        ))
    }

    /// Releases `op`'s claim held by `token`. `FAILED_PRECONDITION` ends it too: an
    /// earlier attempt whose answer was lost (or timed out) had already released it.
    async fn release(
        &self,
        op: &Op,
        token: u64,
        drop_first_reply: bool,
        rng: &mut StdRng,
    ) -> Result<(), String> {
        let request = proto::ReleaseRequest {
            namespace: self.namespace.clone(),
            key: op.key.clone(),
            fencing_token: token,
        };
        if drop_first_reply {
            self.event("sent: Release");
            let _ = self.client(rng).await.release(request.clone()).await;
            self.event("lost reply: Release");
        }
        for attempt in 0..MAX_RPC_ATTEMPTS {
            self.event("sent: Release");
            match self.client(rng).await.release(request.clone()).await {
                Ok(_) => return Ok(()),
                Err(status) if status.code() == Code::FailedPrecondition => {
                    self.event("Release retried after it had acted: FAILED_PRECONDITION");
                    return Ok(());
                }
                Err(status) if retryable(&status) => {
                    self.event("retry: Release after an error");
                    backoff(attempt, rng).await;
                }
                Err(status) => return Err(format!("Release: {status}")),
            }
        }
        Err(format!("Release gave up after {MAX_RPC_ATTEMPTS} attempts"))
    }
}

/// UNAVAILABLE (failing closed, or no connection) and transport failures are worth
/// another try; so is INTERNAL, which a connection torn by a SIGKILL can produce.
fn retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal
    )
}

fn is_ledger_unavailable(status: &Status) -> bool {
    status.code() == Code::Unavailable && status.message().starts_with(LEDGER_UNAVAILABLE)
}

fn labels(reply: &ClaimResponse) -> (&'static str, &'static str) {
    (
        outcome_label(Outcome::try_from(reply.outcome).expect("a known outcome")),
        tier_label(proto::Tier::try_from(reply.served_by).expect("a known tier")),
    )
}

/// Exponential backoff with full jitter.
async fn backoff(attempt: u32, rng: &mut StdRng) {
    backoff_at_least(attempt, Duration::ZERO, rng).await;
}

/// Exponential backoff with full jitter, over at least the server's `retry_after`
/// hint: a crowd of waiters polling faster than that only adds load, and under a
/// fault the load of retries is what turns a slow sidecar into a stuck one.
async fn backoff_at_least(attempt: u32, retry_after: Duration, rng: &mut StdRng) {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1 << attempt.min(16))
        .max(retry_after)
        .min(BACKOFF_CAP);
    let sleep = rng.random_range(0..=ceiling.as_millis() as u64);
    tokio::time::sleep(Duration::from_millis(sleep)).await;
}
