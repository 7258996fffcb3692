//! Every metric onceward exports: names, help texts and label sets, in one place.
//!
//! The rest of the crate records through the functions below, never through the
//! `metrics` macros directly, so a name cannot drift between two call sites.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    Counter, Histogram, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::Namespace;

/// Claims answered, by `outcome` and the `tier` that decided.
pub const CLAIMS: &str = "onceward_claims_total";
/// Claims received that gave their retry attempt, by `namespace` and `attempt`
/// (`1`, `2`, `3`, `4+`).
pub const CLAIM_ATTEMPTS: &str = "onceward_claim_attempts_total";
/// Hot-tier lookups, by `result` (hit, miss, error, bypass).
pub const CACHE_LOOKUPS: &str = "onceward_cache_lookups_total";
/// Hot-tier commands that failed or timed out, by `op`.
pub const CACHE_ERRORS: &str = "onceward_cache_errors_total";
/// 1 while the hot tier's circuit breaker is open (per `shard`, a slot range, on a
/// Redis Cluster).
pub const CACHE_CIRCUIT_OPEN: &str = "onceward_cache_circuit_open";
/// Ledger call latency, by `op` and `result`.
pub const LEDGER_DURATION: &str = "onceward_ledger_duration_seconds";
/// Expired leases taken over by a new claim.
pub const TAKEOVERS: &str = "onceward_takeovers_total";
/// Complete/Release/ExtendLease calls refused for a token that is not the holder's, by `rpc`.
pub const FENCING_REJECTIONS: &str = "onceward_fencing_rejections_total";
/// Rows deleted by the retention job.
pub const CLEANUP_DELETED: &str = "onceward_cleanup_deleted_total";
/// RPC latency, by `method`, status `code` and `protocol` (`grpc`, `connect`, `grpc_web`).
pub const RPC_DURATION: &str = "onceward_rpc_duration_seconds";
/// Histogram: items in one `ClaimBatch` or `CompleteBatch`, by `rpc`.
pub const BATCH_ITEMS: &str = "onceward_batch_items";
/// Histogram: requests carried by one batched ledger statement.
pub const LEDGER_BATCH_SIZE: &str = "onceward_ledger_batch_size";
/// Histogram: time from sending one batched ledger statement to its commit.
pub const LEDGER_BATCH_DURATION: &str = "onceward_ledger_batch_duration_seconds";
/// Claims the spend guard refused, by `namespace` and `reason` (`killswitch`,
/// `max_cost`, `max_claims`).
pub const POLICY_REJECTIONS: &str = "onceward_policy_rejections_total";
/// Budget units debited by this sidecar's claims, net of its refunds, by `namespace`.
pub const SPENT: &str = "onceward_spent_total";
/// Audit events dropped because their writer fell behind.
pub const AUDIT_DROPPED: &str = "onceward_audit_dropped_total";

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs the process-wide Prometheus recorder (once; later calls share it) and
/// returns the handle that renders `/metrics`.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("latency buckets are not empty")
                .set_buckets_for_metric(Matcher::Full(LEDGER_BATCH_SIZE.into()), BATCH_SIZE_BUCKETS)
                .expect("batch size buckets are not empty")
                .set_buckets_for_metric(Matcher::Full(BATCH_ITEMS.into()), BATCH_ITEMS_BUCKETS)
                .expect("batch item buckets are not empty")
                .install_recorder()
                .expect("the metrics recorder is installed once per process");
            describe();
            export_at_zero();
            // Only now, with the recorder in place: handles taken before would be
            // no-ops for ever.
            let _ = HOT_PATH.set(HotPath::register());
            handle
        })
        .clone()
}

/// Every counter and gauge whose labels are known in advance, registered at zero, so
/// a `rate()` or an alert on it sees 0 from the start instead of no data until the
/// first event. (Claims and cache lookups are registered with the hot path's handles.)
fn export_at_zero() {
    counter!(TAKEOVERS).absolute(0);
    counter!(CLEANUP_DELETED).absolute(0);
    for rpc in ["complete", "release", "extend_lease"] {
        counter!(FENCING_REJECTIONS, "rpc" => rpc).absolute(0);
    }
    for op in CACHE_OPS {
        counter!(CACHE_ERRORS, "op" => op).absolute(0);
    }
    gauge!(CACHE_CIRCUIT_OPEN).set(0.0);
    counter!(AUDIT_DROPPED).absolute(0);
}

/// The hot tier's commands, as `cache_errors_total` labels them.
pub const CACHE_OPS: [&str; 4] = ["claim", "put", "replace", "remove"];

/// Powers of four up to the default `--max-batch-items` and past it.
const BATCH_ITEMS_BUCKETS: &[f64] = &[1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0];

/// Powers of two up to the largest batch.
const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

fn describe() {
    describe_counter!(
        CLAIMS,
        "Claims answered, by outcome and the tier that decided."
    );
    describe_counter!(
        CLAIM_ATTEMPTS,
        "Claims received that gave their retry attempt (ClaimRequest.attempt), by namespace and attempt (1, 2, 3, 4+)."
    );
    describe_counter!(
        CACHE_LOOKUPS,
        "Hot-tier lookups by claims, by result: hit (answered), miss (fell through to the ledger), error (failed or timed out), bypass (circuit open)."
    );
    describe_counter!(
        CACHE_ERRORS,
        "Hot-tier commands that failed or timed out, by op."
    );
    describe_gauge!(
        CACHE_CIRCUIT_OPEN,
        "1 while the hot tier's circuit breaker is open."
    );
    describe_histogram!(
        LEDGER_DURATION,
        metrics::Unit::Seconds,
        "Ledger call latency, by op and result (ok, unavailable, error)."
    );
    describe_counter!(
        TAKEOVERS,
        "Claims that took a key over from a holder whose lease expired."
    );
    describe_counter!(
        FENCING_REJECTIONS,
        "Complete/Release/ExtendLease calls refused because the token was not the current holder's, by rpc."
    );
    describe_counter!(
        CLEANUP_DELETED,
        "Expired records deleted by the retention job."
    );
    describe_histogram!(
        LEDGER_BATCH_SIZE,
        "Requests carried by one batched ledger statement, by op (claim, complete)."
    );
    describe_histogram!(
        BATCH_ITEMS,
        "Items in one ClaimBatch or CompleteBatch, by rpc (claims_total counts each claimed item)."
    );
    describe_histogram!(
        LEDGER_BATCH_DURATION,
        metrics::Unit::Seconds,
        "Time from sending one batched ledger statement to its commit, by op."
    );
    describe_counter!(
        POLICY_REJECTIONS,
        "Claims the spend guard refused, by namespace and reason (killswitch, max_cost, max_claims)."
    );
    describe_gauge!(
        SPENT,
        "Budget units debited by this sidecar's claims, net of the refunds of its releases, by namespace."
    );
    describe_counter!(
        AUDIT_DROPPED,
        "Audit events dropped because the audit writer fell behind (claims are never slowed by it)."
    );
    describe_histogram!(
        RPC_DURATION,
        metrics::Unit::Seconds,
        "RPC latency, by method, status code and protocol (grpc, connect, grpc_web)."
    );
}

const OUTCOMES: [&str; 6] = [
    "acquired",
    "in_progress",
    "completed",
    "fingerprint_mismatch",
    "blocked",
    "over_budget",
];
const TIERS: [&str; 2] = ["cache", "ledger"];
const LOOKUP_RESULTS: [&str; 5] = ["hit", "miss", "defer", "error", "bypass"];
const METHODS: [&str; 5] = ["Claim", "Complete", "Release", "ExtendLease", "Lookup"];
/// The protocols calls arrive in; a call outside [`with_protocol`] is `grpc`.
const PROTOCOLS: [&str; 3] = ["grpc", "connect", "grpc_web"];
const LEDGER_OPS: [&str; 5] = ["claim", "complete", "release", "extend_lease", "lookup"];

/// Handles of the series every request records, registered once: looking a series up
/// by name and labels on each call costs more than the rest of a cached duplicate's
/// bookkeeping (BENCHMARKS.md).
struct HotPath {
    claims: [[Counter; 2]; 6],
    cache_lookups: [Counter; 5],
    rpc_ok: [[Histogram; 5]; 3],
    ledger_ok: [Histogram; 5],
}

static HOT_PATH: OnceLock<HotPath> = OnceLock::new();

impl HotPath {
    fn register() -> Self {
        Self {
            claims: OUTCOMES.map(|outcome| {
                TIERS.map(|tier| counter!(CLAIMS, "outcome" => outcome, "tier" => tier))
            }),
            cache_lookups: LOOKUP_RESULTS.map(|result| counter!(CACHE_LOOKUPS, "result" => result)),
            rpc_ok: PROTOCOLS.map(|protocol| {
                METHODS.map(|method| {
                    histogram!(RPC_DURATION, "method" => method, "code" => "OK", "protocol" => protocol)
                })
            }),
            ledger_ok: LEDGER_OPS
                .map(|op| histogram!(LEDGER_DURATION, "op" => op, "result" => "ok")),
        }
    }
}

/// The handle of `handles` registered for the label `name`, `names` being the labels
/// they were registered for, in order; `None` for a label off the hot path.
fn registered<'h, T>(handles: &'h [T], names: &[&str], name: &str) -> Option<&'h T> {
    handles.get(names.iter().position(|candidate| *candidate == name)?)
}

/// A claim was answered.
pub fn claim_answered(outcome: &'static str, tier: &'static str) {
    let handle = HOT_PATH
        .get()
        .and_then(|hot| registered(registered(&hot.claims, &OUTCOMES, outcome)?, &TIERS, tier));
    match handle {
        Some(handle) => handle.increment(1),
        None => counter!(CLAIMS, "outcome" => outcome, "tier" => tier).increment(1),
    }
}

/// The labels of `attempt`, in order: 1, 2, 3, and everything after.
const ATTEMPTS: [&str; 4] = ["1", "2", "3", "4+"];

/// A claim arrived saying which retry `attempt` it is (0: it did not say, not counted).
/// Each namespace's four series are looked up once and kept: namespaces are few and
/// long-lived (each is a Prometheus series anyway), and a look-up by name and labels
/// on every claim would cost more than the rest of a cached duplicate's bookkeeping.
pub fn claim_attempt(namespace: &Namespace, attempt: u32) {
    type PerNamespace = std::sync::RwLock<HashMap<Namespace, [Counter; 4]>>;
    static SERIES: OnceLock<PerNamespace> = OnceLock::new();
    let Some(index) = (attempt as usize).checked_sub(1) else {
        return;
    };
    let index = index.min(ATTEMPTS.len() - 1);
    let series = SERIES.get_or_init(Default::default);
    let read = series
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(counters) = read.get(namespace) {
        counters[index].increment(1);
        return;
    }
    drop(read);
    let mut write = series
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let counters = write.entry(namespace.clone()).or_insert_with(|| {
        ATTEMPTS.map(|label| {
            counter!(CLAIM_ATTEMPTS, "namespace" => namespace.as_str().to_owned(), "attempt" => label)
        })
    });
    counters[index].increment(1);
}

/// A claim consulted the hot tier.
pub fn cache_lookup(result: &'static str) {
    let handle = HOT_PATH
        .get()
        .and_then(|hot| registered(&hot.cache_lookups, &LOOKUP_RESULTS, result));
    match handle {
        Some(handle) => handle.increment(1),
        None => counter!(CACHE_LOOKUPS, "result" => result).increment(1),
    }
}

/// A hot-tier command failed.
pub fn cache_error(op: &'static str) {
    counter!(CACHE_ERRORS, "op" => op).increment(1);
}

/// The hot tier's circuit opened or closed: the single Redis's (`shard` is `None`) or
/// one Redis Cluster shard's.
pub fn cache_circuit_open(shard: Option<&str>, open: bool) {
    let value = if open { 1.0 } else { 0.0 };
    match shard {
        None => gauge!(CACHE_CIRCUIT_OPEN).set(value),
        Some(shard) => gauge!(CACHE_CIRCUIT_OPEN, "shard" => shard.to_owned()).set(value),
    }
}

/// A ledger call finished.
pub fn ledger_call(op: &'static str, result: &'static str, elapsed: Duration) {
    let hot = HOT_PATH.get().filter(|_| result == "ok");
    record_latency(
        elapsed,
        hot.and_then(|hot| registered(&hot.ledger_ok, &LEDGER_OPS, op)),
        || histogram!(LEDGER_DURATION, "op" => op, "result" => result),
    );
}

/// A `ClaimBatch` or `CompleteBatch` (`rpc`) carried `items`.
pub fn batch_items(rpc: &'static str, items: usize) {
    histogram!(BATCH_ITEMS, "rpc" => rpc).record(items as f64);
}

/// A batched ledger statement of `size` requests ran for `elapsed`.
pub fn ledger_batch(op: &'static str, size: usize, elapsed: Duration) {
    histogram!(LEDGER_BATCH_SIZE, "op" => op).record(size as f64);
    histogram!(LEDGER_BATCH_DURATION, "op" => op).record(elapsed.as_secs_f64());
}

/// A claim took over an expired lease.
pub fn takeover() {
    counter!(TAKEOVERS).increment(1);
}

/// The spend guard refused a claim in `namespace` for `reason`.
pub fn policy_rejection(namespace: &Namespace, reason: &'static str) {
    counter!(POLICY_REJECTIONS, "namespace" => namespace.as_str().to_owned(), "reason" => reason)
        .increment(1);
}

/// A claim in `namespace` debited `cost` units (or a release refunded them: negative).
pub fn spent(namespace: &Namespace, cost: f64) {
    gauge!(SPENT, "namespace" => namespace.as_str().to_owned()).increment(cost);
}

/// A namespace got a policy: its spend-guard series start at zero.
pub fn policy_set(namespace: &Namespace) {
    for reason in ["killswitch", "max_cost", "max_claims"] {
        counter!(POLICY_REJECTIONS, "namespace" => namespace.as_str().to_owned(), "reason" => reason)
            .increment(0);
    }
    gauge!(SPENT, "namespace" => namespace.as_str().to_owned()).increment(0.0);
}

/// `count` audit events were dropped.
pub fn audit_dropped(count: u64) {
    counter!(AUDIT_DROPPED).increment(count);
}

/// A token was refused.
pub fn fencing_rejection(rpc: &'static str) {
    counter!(FENCING_REJECTIONS, "rpc" => rpc).increment(1);
}

/// The retention job deleted rows.
pub fn cleanup_deleted(rows: u64) {
    counter!(CLEANUP_DELETED).increment(rows);
}

tokio::task_local! {
    /// The protocol of the call being served, set by the edge that translated it.
    static PROTOCOL: &'static str;
}

/// Runs `call` as a call in `protocol` (one of `connect`, `grpc_web`): the RPCs it
/// records are labelled so. A task-local, because the handler that records runs
/// inside `call` and knows nothing of the protocol its request arrived in.
pub async fn with_protocol<F: std::future::Future>(protocol: &'static str, call: F) -> F::Output {
    PROTOCOL.scope(protocol, call).await
}

/// An RPC finished with status `code` (e.g. `OK`, `UNAVAILABLE`).
pub fn rpc_finished(method: &'static str, code: &'static str, elapsed: Duration) {
    let protocol = PROTOCOL.try_with(|protocol| *protocol).unwrap_or("grpc");
    let hot = HOT_PATH.get().filter(|_| code == "OK");
    record_latency(
        elapsed,
        hot.and_then(|hot| {
            registered(
                registered(&hot.rpc_ok, &PROTOCOLS, protocol)?,
                &METHODS,
                method,
            )
        }),
        || histogram!(RPC_DURATION, "method" => method, "code" => code, "protocol" => protocol),
    );
}

/// Records a call's latency in its `registered` handle, or, for a label set off the
/// hot path, in the series `look_up` finds.
fn record_latency(
    elapsed: Duration,
    registered: Option<&Histogram>,
    look_up: impl FnOnce() -> Histogram,
) {
    match registered {
        Some(handle) => handle.record(elapsed.as_secs_f64()),
        None => look_up().record(elapsed.as_secs_f64()),
    }
}
