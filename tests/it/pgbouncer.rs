//! onceward behind PgBouncer, the pooler a fleet of sidecars puts between itself and
//! Postgres: every claim rule, batches, and a race of two sidecars whose every
//! statement goes through a PgBouncer of the test's own (in transaction mode with
//! fewer server connections than the sidecars' pools).
//!
//! Transaction mode needs PgBouncer 1.21 or later (`max_prepared_statements`): sqlx
//! prepares every statement by name, and an older PgBouncer hands a connection's
//! statements to whichever client gets that server connection next ("prepared
//! statement "sqlx_s_1" already exists"). With an older PgBouncer the suite runs in
//! session mode and says so.

use std::collections::HashMap;

use onceward::proto::{ClaimBatchRequest, ClaimItem, Outcome};
use tonic::Code;

use crate::harness::*;

/// The pool mode the installed PgBouncer can serve onceward in, or `None` (with the
/// reason printed) when there is no PgBouncer.
fn pool_mode() -> Option<PoolMode> {
    let Some(version) = PgBouncer::installed_version() else {
        println!("skipped: pgbouncer is not installed (apt-get install -y pgbouncer)");
        return None;
    };
    if version >= (1, 21) {
        return Some(PoolMode::Transaction);
    }
    println!(
        "pgbouncer {}.{} keeps no prepared statements in transaction mode (1.21+ does, \
         with max_prepared_statements): running in session mode",
        version.0, version.1
    );
    Some(PoolMode::Session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_claim_rule_holds_with_the_ledger_behind_pgbouncer() {
    let Some(mode) = pool_mode() else {
        return;
    };
    let db = TestDatabase::create().await;
    // Migrations take a session-level advisory lock: they run against Postgres itself.
    drop(
        TestApp::builder()
            .ledger(Ledger::Postgres(&db))
            .spawn()
            .await,
    );
    // Transaction mode shares 6 server connections among the sidecars' 16; session
    // mode lends one per client connection for good, so it needs as many.
    let server_connections = match mode {
        PoolMode::Transaction => 6,
        PoolMode::Session => 20,
    };
    let bouncer = PgBouncer::start(mode, server_connections).await;
    let through = format!("--database-url={}", db.url_through(bouncer.addr));
    let (one, two) = TestApp::builder()
        .ledger(Ledger::Postgres(&db))
        .args(&[&through, "--database-max-connections=8"])
        .spawn_two()
        .await;
    let mut client = one.client.clone();

    let first = claim_with(&mut client, "pgb", "order-1", b"fp-a", None).await;
    assert_eq!(outcome(&first), Outcome::Acquired);
    let mut other = two.client.clone();
    let busy = claim_with(&mut other, "pgb", "order-1", b"fp-a", None).await;
    assert_eq!(
        outcome(&busy),
        Outcome::InProgress,
        "the other sidecar sees the claim"
    );
    let stale = complete(&mut other, "pgb", "order-1", first.fencing_token + 1, b"x").await;
    assert_eq!(stale.unwrap_err().code(), Code::FailedPrecondition);
    complete(
        &mut client,
        "pgb",
        "order-1",
        first.fencing_token,
        b"receipt",
    )
    .await
    .expect("complete");
    let replay = claim_with(&mut other, "pgb", "order-1", b"fp-a", None).await;
    assert_eq!(outcome(&replay), Outcome::Completed);
    assert_eq!(replay.response, b"receipt");
    let mismatch = claim_with(&mut other, "pgb", "order-1", b"fp-b", None).await;
    assert_eq!(outcome(&mismatch), Outcome::FingerprintMismatch);

    let held = claim(&mut client, "pgb", "order-2").await;
    release(&mut client, "pgb", "order-2", held.fencing_token)
        .await
        .expect("release");
    let again = claim(&mut other, "pgb", "order-2").await;
    assert_eq!(outcome(&again), Outcome::Acquired);
    assert!(again.fencing_token > held.fencing_token);

    // A race of single claims and batches through both sidecars: one ACQUIRED a key.
    let keys: Vec<String> = (0..30).map(|at| format!("race-{at}")).collect();
    let mut tasks = Vec::new();
    for claimant in 0..12 {
        let mut client = if claimant % 2 == 0 {
            one.client.clone()
        } else {
            two.client.clone()
        };
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            if claimant % 3 == 0 {
                let items = keys
                    .iter()
                    .map(|key| ClaimItem {
                        key: key.clone(),
                        ..Default::default()
                    })
                    .collect();
                client
                    .claim_batch(ClaimBatchRequest {
                        namespace: "pgb".to_owned(),
                        items,
                        lease: None,
                    })
                    .await
                    .expect("claim batch")
                    .into_inner()
                    .results
            } else {
                let mut answers = Vec::new();
                for key in &keys {
                    answers.push(claim(&mut client, "pgb", key).await);
                }
                answers
            }
        }));
    }
    let mut acquired: HashMap<String, usize> = HashMap::new();
    for task in tasks {
        for (key, answer) in keys.iter().zip(task.await.expect("claimant")) {
            match outcome(&answer) {
                Outcome::Acquired => *acquired.entry(key.clone()).or_default() += 1,
                Outcome::InProgress => {}
                other => panic!("{key}: {other:?}"),
            }
        }
    }
    for key in &keys {
        assert_eq!(acquired.get(key), Some(&1), "{key}");
    }
    println!("ran behind pgbouncer in {mode:?} mode");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_pgbouncer_that_loses_prepared_statements_the_sidecar_refuses_to_start() {
    use clap::Parser as _;
    let Some(version) = PgBouncer::installed_version() else {
        println!("skipped: pgbouncer is not installed (apt-get install -y pgbouncer)");
        return;
    };
    if version >= (1, 21) {
        println!(
            "skipped: pgbouncer {}.{} keeps prepared statements",
            version.0, version.1
        );
        return;
    }
    let db = TestDatabase::create().await;
    drop(
        TestApp::builder()
            .ledger(Ledger::Postgres(&db))
            .spawn()
            .await,
    );
    // One server connection: the pool's first statement meets the one the sidecar's
    // first connection prepared under the same name.
    let bouncer = PgBouncer::start(PoolMode::Transaction, 1).await;
    let cli = onceward::command::Cli::try_parse_from([
        "onceward".to_owned(),
        "serve".to_owned(),
        "--listen=127.0.0.1:0".to_owned(),
        "--metrics-listen=127.0.0.1:0".to_owned(),
        "--ledger-timeout=2s".to_owned(),
        format!("--database-url={}", db.url_through(bouncer.addr)),
    ])
    .expect("flags");
    let onceward::command::Command::Serve(args) = cli.command else {
        unreachable!("a serve command line")
    };
    let Err(error) = onceward::app::Application::build(&args).await else {
        panic!("a sidecar started behind a pooler that loses its prepared statements");
    };
    let message = format!("{error:#}");
    assert!(message.contains("PgBouncer before 1.21"), "{message}");
}
