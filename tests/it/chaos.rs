//! Effectively-once under faults: 1000 logical operations driven through two real
//! `onceward serve` processes (one Postgres database, one `redis-server`) while the
//! run flushes, kills and pauses Redis, cuts Postgres off, SIGKILLs and restarts the
//! sidecars, loses replies, fails vendor calls and lets workers die holding a claim.
//!
//! At the end, the vendor's own table must show exactly one charge that took effect
//! per operation, the ledger must hold every operation completed with that charge's
//! response, no acknowledged Complete may be lost, and the sidecars' claim metrics
//! must account for every Claim answer the workers saw.
//!
//! The seed (`CHAOS_SEED`, random when unset) is printed first; it fixes each
//! operation's plan and the fault schedule, so a failure can be replayed (the exact
//! interleaving depends on timing). Sidecar logs go to `$CARGO_TARGET_TMPDIR`.
//!
//! The namespace has a spend guard: every operation spends its customer's budget, and
//! each budget is exactly what its customer's operations cost, so any second debit of
//! one operation would refuse another (OVER_BUDGET fails it) and show in the spend.
//!
//! Layout: `fleet` (the sidecar processes and the scrape gate), `vendor` (the fake
//! payment vendor), `plan` (each operation and what goes wrong in it), `worker` (the
//! honest clients), `report` (what the workers saw), `faults` (the schedule and the
//! evidence), `spend_guard` (the budgets and their check).

mod faults;
mod fleet;
mod plan;
mod report;
mod spend_guard;
mod vendor;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use onceward::proto::{Outcome, Tier};
use sqlx::Connection as _;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::harness::{RedisServer, TcpProxy, TestDatabase, postgres_addr};
use fleet::{Scrape, Sidecar};
use plan::Op;
use report::{OpReport, WorkerEnd};
use vendor::Vendor;
use worker::Ctx;

/// Logical operations per run.
const OPERATIONS: usize = 1000;
/// Sidecar processes sharing the database and Redis.
const SIDECARS: usize = 2;
/// Operations start evenly over this window, and the faults fall inside it.
const WINDOW: Duration = Duration::from_secs(28);
/// At most this many operations run at once: a closed population of clients, so a
/// slow moment (a fault, a busy CI machine) cannot pile up an unbounded crowd of
/// retrying workers and tip the sidecars into overload they never leave.
const MAX_OPS_IN_FLIGHT: usize = 64;
/// The whole run must finish within this, or it fails (a hung worker is a finding).
const DEADLINE: Duration = Duration::from_secs(150);
const NAMESPACE: &str = "payments";

/// `onceward_claims_total` by (outcome, tier) label values.
pub type ClaimCounts = BTreeMap<(&'static str, &'static str), u64>;
/// Every `outcome` label value.
pub const OUTCOME_LABELS: [&str; 4] = [
    "acquired",
    "in_progress",
    "completed",
    "fingerprint_mismatch",
];
/// Every `tier` label value.
pub const TIER_LABELS: [&str; 2] = ["cache", "ledger"];

/// The metric label of a proto outcome (as `src/domain` names it).
pub fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Acquired => "acquired",
        Outcome::InProgress => "in_progress",
        Outcome::Completed => "completed",
        Outcome::FingerprintMismatch => "fingerprint_mismatch",
        Outcome::Blocked => "blocked",
        Outcome::OverBudget => "over_budget",
        Outcome::Unspecified => "unspecified",
    }
}

/// The metric label of a proto tier.
pub fn tier_label(tier: Tier) -> &'static str {
    match tier {
        Tier::Cache => "cache",
        Tier::Ledger => "ledger",
        Tier::Unspecified => "unspecified",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_operations_take_effect_exactly_once_through_every_fault() {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .map(|seed| seed.parse::<u64>().expect("CHAOS_SEED is a u64"))
        .unwrap_or_else(rand::random);
    println!("CHAOS_SEED={seed}  (set it to replay this run)");

    let db = TestDatabase::create().await;
    // Connected up front: at the end the shared Postgres may have no slot to spare.
    let mut audit = sqlx::PgConnection::connect(&db.url)
        .await
        .expect("audit connection");
    let mut redis = RedisServer::start().await;
    let proxy = TcpProxy::start(postgres_addr()).await;
    let proxied = db.url_through(proxy.addr);
    let mut fleet = Vec::with_capacity(SIDECARS);
    // One at a time: the first applies the migrations.
    for index in 0..SIDECARS {
        fleet.push(Sidecar::start(index, &proxied, &redis.url(), seed).await);
    }
    let ops: Vec<Arc<Op>> = (0..OPERATIONS)
        .map(|i| Arc::new(Op::new(seed, i)))
        .collect();
    let budgets = spend_guard::Budgets::of(&ops);
    budgets.set(&fleet[0]).await;
    let failures: Vec<u32> = ops.iter().map(|op| op.plan.vendor_failures).collect();
    let ctx = Arc::new(Ctx {
        fleet,
        vendor: Vendor::create(&db.url, &failures).await,
        namespace: NAMESPACE.to_owned(),
        tally: Mutex::default(),
        postgres_cut: AtomicBool::new(false),
        unavailable_during_cut: AtomicU64::new(0),
        ops_done: AtomicU64::new(0),
    });
    let schedule = faults::schedule(seed, SIDECARS, WINDOW);

    let started = Instant::now();
    let workers = tokio::spawn({
        let ctx = ctx.clone();
        async move {
            let mut running = JoinSet::new();
            let pace = WINDOW / OPERATIONS as u32;
            let slots = Arc::new(tokio::sync::Semaphore::new(MAX_OPS_IN_FLIGHT));
            for (i, op) in ops.into_iter().enumerate() {
                tokio::time::sleep_until(started + pace * i as u32).await;
                let slot = slots.clone().acquire_owned().await.expect("never closed");
                let ctx = ctx.clone();
                running.spawn(async move {
                    let report = worker::run_op(ctx, op).await;
                    drop(slot);
                    report
                });
            }
            running.join_all().await
        }
    });
    let progress = tokio::spawn({
        let ctx = ctx.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let sent = ctx.tally.lock().unwrap().events.get("sent: Claim").copied();
                println!(
                    "[{:>6.2}s] {} operations done, {} claims sent",
                    started.elapsed().as_secs_f64(),
                    ctx.ops_done.load(std::sync::atomic::Ordering::Relaxed),
                    sent.unwrap_or(0)
                );
            }
        }
    });
    let evidence = faults::inject(&ctx, &mut redis, &proxy, &schedule, started).await;
    let mut problems = Vec::new();
    let workers_abort = workers.abort_handle();
    let reports =
        match tokio::time::timeout(DEADLINE.saturating_sub(started.elapsed()), workers).await {
            Ok(reports) => reports.expect("the workers did not panic"),
            Err(_) => {
                // Report what was seen so far rather than just hang up.
                workers_abort.abort();
                problems.push(format!("the workers did not finish within {DEADLINE:?}"));
                Vec::new()
            }
        };
    let ran_for = started.elapsed();
    progress.abort();

    let mut metrics = Scrape::default();
    for scrape in &evidence.last_scrapes {
        metrics.add(scrape);
    }
    for sidecar in &ctx.fleet {
        metrics.add(&sidecar.final_scrape().await);
    }
    let ledger: Vec<LedgerRow> = sqlx::query_as(
        "SELECT key, state, response, fencing_token FROM onceward_records WHERE namespace = $1",
    )
    .bind(NAMESPACE)
    .fetch_all(&mut audit)
    .await
    .expect("read the ledger");
    let calls = ctx.vendor.calls().await;
    let tally = std::mem::take(&mut *ctx.tally.lock().unwrap());

    check_effects(&reports, &calls, &ledger, &mut problems);
    budgets.check(&mut audit, NAMESPACE, &mut problems).await;
    check_claim_metrics(&tally, &metrics, &mut problems);
    check_faults(
        &schedule,
        &evidence,
        &tally,
        &reports,
        &metrics,
        &mut problems,
    );
    if tally.lost_acquired.other_token_within_lease > 0 {
        problems.push(format!(
            "{} lost ACQUIRED answers were not given back to their claimant while their lease ran",
            tally.lost_acquired.other_token_within_lease
        ));
    }
    let failed_on_purpose = calls.iter().filter(|c| c.failed_on_purpose).count() as u64;
    let declined = tally
        .events
        .get("vendor failure (on purpose)")
        .copied()
        .unwrap_or(0);
    if failed_on_purpose != declined {
        problems.push(format!(
            "the vendor recorded {failed_on_purpose} failed calls, the workers saw {declined}"
        ));
    }

    println!(
        "{}",
        summary(seed, ran_for, &reports, &calls, &tally, &metrics, &evidence)
    );
    assert!(
        problems.is_empty(),
        "CHAOS_SEED={seed}: {} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// One row of `onceward_records`.
#[derive(Debug, sqlx::FromRow)]
struct LedgerRow {
    key: String,
    state: i16,
    response: Option<Vec<u8>>,
    fencing_token: i64,
}

/// Exactly one charge took effect per operation, the ledger holds it, and every
/// acknowledged Complete and every replay agrees with the ledger.
fn check_effects(
    reports: &[OpReport],
    calls: &[vendor::VendorCall],
    ledger: &[LedgerRow],
    problems: &mut Vec<String>,
) {
    let mut effective: HashMap<&str, Vec<&vendor::VendorCall>> = HashMap::new();
    for call in calls.iter().filter(|c| !c.failed_on_purpose) {
        effective
            .entry(call.op_key.as_str())
            .or_default()
            .push(call);
    }
    let effective_total: usize = effective.values().map(Vec::len).sum();
    if effective_total != OPERATIONS {
        problems.push(format!(
            "{effective_total} vendor calls took effect, expected {OPERATIONS}"
        ));
    }
    let ledger: HashMap<&str, &LedgerRow> = ledger.iter().map(|r| (r.key.as_str(), r)).collect();
    if ledger.len() != OPERATIONS {
        problems.push(format!(
            "the ledger holds {} records, expected {OPERATIONS}",
            ledger.len()
        ));
    }
    for report in reports {
        let key = report.key.as_str();
        let charges = effective.get(key).map(Vec::as_slice).unwrap_or_default();
        let [charge] = charges else {
            let tokens: Vec<i64> = charges.iter().map(|c| c.fencing_token).collect();
            problems.push(format!(
                "{key}: {} vendor calls took effect (tokens {tokens:?}), expected exactly one",
                charges.len()
            ));
            continue;
        };
        let expected = format!("charge:{}", charge.id);
        match ledger.get(key) {
            None => problems.push(format!("{key}: no ledger record")),
            Some(row) if row.state != 2 => {
                problems.push(format!(
                    "{key}: ledger state {} is not COMPLETED",
                    row.state
                ));
            }
            Some(row) => {
                let stored = String::from_utf8_lossy(row.response.as_deref().unwrap_or_default());
                if stored != expected {
                    problems.push(format!(
                        "{key}: ledger response {stored:?}, the charge was {expected:?}"
                    ));
                }
                if row.fencing_token != charge.fencing_token {
                    problems.push(format!(
                        "{key}: completed with token {}, the charge was made with {}",
                        row.fencing_token, charge.fencing_token
                    ));
                }
            }
        }
        for end in &report.ends {
            match end {
                // An acknowledged Complete: the ledger must hold exactly it.
                WorkerEnd::Completed { token, response }
                    if *response != expected || *token as i64 != charge.fencing_token =>
                {
                    problems.push(format!(
                        "{key}: Complete with token {token} acknowledged {response:?}, the ledger holds {expected:?} from token {}",
                        charge.fencing_token
                    ));
                }
                WorkerEnd::Replayed { response } if *response != expected => {
                    problems.push(format!(
                        "{key}: a replay said {response:?}, the ledger says {expected:?}"
                    ));
                }
                WorkerEnd::Failed(why) => problems.push(why.clone()),
                _ => {}
            }
        }
        if !report
            .ends
            .iter()
            .any(|end| matches!(end, WorkerEnd::Completed { .. }))
        {
            problems.push(format!("{key}: no worker's Complete was acknowledged"));
        }
        for abandoned in &report.abandoned_tokens {
            if *abandoned as i64 >= charge.fencing_token {
                problems.push(format!(
                    "{key}: abandoned token {abandoned} is not older than the charge's {}",
                    charge.fencing_token
                ));
            }
        }
    }
}

/// For every (outcome, tier): the Claim answers the workers saw, and what the
/// sidecars' `onceward_claims_total` counted.
fn claims_seen_and_counted<'a>(
    tally: &'a report::Tally,
    metrics: &'a Scrape,
) -> impl Iterator<Item = (&'static str, &'static str, u64, u64)> + 'a {
    OUTCOME_LABELS.into_iter().flat_map(move |outcome| {
        TIER_LABELS.into_iter().map(move |tier| {
            let seen = tally
                .live_claims
                .get(&(outcome, tier))
                .copied()
                .unwrap_or(0);
            let counted = metrics.claims.get(&(outcome, tier)).copied().unwrap_or(0);
            (outcome, tier, seen, counted)
        })
    })
}

/// The sidecars' `onceward_claims_total`, summed over every process that ran, equals
/// the Claim answers the workers tallied from processes that were scraped afterwards.
fn check_claim_metrics(tally: &report::Tally, metrics: &Scrape, problems: &mut Vec<String>) {
    for (outcome, tier, seen, counted) in claims_seen_and_counted(tally, metrics) {
        if seen != counted {
            problems.push(format!(
                "claims_total{{outcome={outcome},tier={tier}}}: the sidecars counted {counted}, the workers saw {seen}"
            ));
        }
    }
    for event in [
        "Claim: transport error from a live sidecar",
        "Claim: INTERNAL from a live sidecar",
        "Complete refused after the vendor call",
    ] {
        if let Some(n) = tally.events.get(event) {
            problems.push(format!("{event}: {n} times"));
        }
    }
}

/// Every fault was injected and showed its effect; every kind of client misfortune
/// happened at least once.
fn check_faults(
    schedule: &[(Duration, faults::Fault)],
    evidence: &faults::Evidence,
    tally: &report::Tally,
    reports: &[OpReport],
    metrics: &Scrape,
    problems: &mut Vec<String>,
) {
    let mut planned: BTreeMap<&str, u32> = BTreeMap::new();
    for (_, fault) in schedule {
        *planned.entry(fault.name()).or_default() += 1;
    }
    for (name, count) in planned {
        let (injected, showed) = evidence.injected.get(name).copied().unwrap_or_default();
        if injected != count || showed != count {
            problems.push(format!(
                "{name}: planned {count}, injected {injected}, showed its effect {showed}"
            ));
        }
    }
    problems.extend(evidence.notes.iter().cloned());
    for event in [
        "lost reply: Claim",
        "lost reply: Complete",
        "lost reply: Release",
        "vendor failure (on purpose)",
        "worker died after ACQUIRED, before the vendor call",
        "wait: IN_PROGRESS",
        "Claim failed closed: UNAVAILABLE",
    ] {
        if tally.events.get(event).copied().unwrap_or(0) == 0 {
            problems.push(format!("never happened: {event}"));
        }
    }
    if tally.claims_refused_while_dead == 0 {
        problems.push("no Claim was refused by a killed sidecar".into());
    }
    if metrics.takeovers == 0.0 || metrics.cache_bypasses == 0.0 || metrics.cache_errors == 0.0 {
        problems.push(format!(
            "expected takeovers, cache errors and open-circuit bypasses, got {} / {} / {}",
            metrics.takeovers, metrics.cache_errors, metrics.cache_bypasses
        ));
    }
    let died = reports
        .iter()
        .flat_map(|r| &r.ends)
        .filter(|end| matches!(end, WorkerEnd::Died))
        .count();
    if died == 0 {
        problems.push("no worker died holding a claim".into());
    }
}

fn summary(
    seed: u64,
    ran_for: Duration,
    reports: &[OpReport],
    calls: &[vendor::VendorCall],
    tally: &report::Tally,
    metrics: &Scrape,
    evidence: &faults::Evidence,
) -> String {
    let mut out = String::new();
    let failed = calls.iter().filter(|c| c.failed_on_purpose).count();
    let workers: usize = reports.iter().map(|r| r.ends.len()).sum();
    let _ = writeln!(
        out,
        "== chaos summary (CHAOS_SEED={seed}, {:.1}s) ==",
        ran_for.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "operations {}, workers {workers}, vendor calls {} ({} took effect, {failed} failed on purpose)",
        reports.len(),
        calls.len(),
        calls.len() - failed
    );
    let _ = writeln!(out, "faults injected (injected / showed its effect):");
    for (name, (injected, showed)) in &evidence.injected {
        let _ = writeln!(out, "  {name:<28} {injected} / {showed}");
    }
    let _ = writeln!(out, "worker events:");
    for (event, n) in &tally.events {
        let _ = writeln!(out, "  {event:<55} {n}");
    }
    let lost = &tally.lost_acquired;
    let mut waits = lost.same_token.clone();
    waits.sort();
    let ms = |at: f64| {
        let index = ((waits.len() as f64 - 1.0) * at).round() as usize;
        waits.get(index).map_or(0, Duration::as_millis)
    };
    let _ = writeln!(
        out,
        "lost ACQUIRED answers: {} given back to their claimant with the same token (waited p50 {} ms, max {} ms; the lease is {}), {} given another token within the lease, {} outlived their lease",
        lost.same_token.len(),
        ms(0.5),
        ms(1.0),
        fleet::DEFAULT_LEASE,
        lost.other_token_within_lease,
        lost.outlived_its_lease
    );
    let _ = writeln!(out, "claim outcomes (workers saw / sidecars counted):");
    for (outcome, tier, seen, counted) in claims_seen_and_counted(tally, metrics) {
        if seen + counted > 0 {
            let _ = writeln!(out, "  {outcome:>20} {tier:<6} {seen:>6} / {counted}");
        }
    }
    let scraped: u64 = tally.scraped_claims.values().sum();
    let _ = writeln!(
        out,
        "claims between a sidecar's last scrape and its SIGKILL: {scraped} answered {:?}, {} lost without a reply",
        tally.scraped_claims, tally.claims_lost_to_kill
    );
    let _ = writeln!(
        out,
        "claims refused by a killed sidecar: {}; takeovers {}, cache errors {}, circuit bypasses {}",
        tally.claims_refused_while_dead,
        metrics.takeovers,
        metrics.cache_errors,
        metrics.cache_bypasses
    );
    out
}
