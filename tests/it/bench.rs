//! `onceward bench` as the real binary against a real sidecar: a smoke test that the
//! load generator and a baseline run and report sane JSON. It checks that the bench
//! works, never how fast anything is: figures come from BENCHMARKS.md, not from CI.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

/// Runs `onceward bench <args> --json` for one short run and returns its report.
async fn bench(args: &[&str]) -> Value {
    bench_in(&std::env::temp_dir(), args).await
}

/// [`bench`], with `tmp` as its temporary directory.
async fn bench_in(tmp: &std::path::Path, args: &[&str]) -> Value {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_onceward"))
            .env("TMPDIR", tmp)
            .arg("bench")
            .args(["--duration", "1s", "--warmup", "200ms"])
            .args(["--connections", "2", "--in-flight", "2", "--keys", "50"])
            .args(args)
            .arg("--json")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the bench finishes")
    .expect("the bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed: {stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "bench printed no JSON ({error}): {}\n{stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The one run in `report`, checked to have done work without a single error.
fn only_run(report: &Value) -> &Value {
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1, "{report:#}");
    let run = &runs[0];
    assert!(run["ok"].as_u64().unwrap() > 0, "{run:#}");
    assert!(run["throughput"].as_f64().unwrap() > 0.0, "{run:#}");
    assert_eq!(run["errors_total"].as_u64(), Some(0), "{run:#}");
    assert!(run["latency_us"]["p99"].as_u64().unwrap() > 0, "{run:#}");
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_spreads_its_connections_over_a_fleet_of_sidecars_on_one_ledger() {
    let db = TestDatabase::create().await;
    let (one, two) = TestApp::builder()
        .ledger(Ledger::Postgres(&db))
        .spawn_two()
        .await;
    let fleet = format!("http://{},http://{}", one.addr, two.addr);
    let report = bench(&["--addr", &fleet, "--workload", "new"]).await;
    only_run(&report);
    assert_eq!(report["addr"], fleet.as_str());
    for sidecar in [&one, &two] {
        let acquired = sidecar
            .metric(
                "onceward_claims_total",
                &[("outcome", "acquired"), ("tier", "ledger")],
            )
            .await;
        assert!(acquired > 0.0, "every sidecar of the fleet took load");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_claims_and_completes_new_keys_without_errors() {
    let app = TestApp::builder().spawn().await;
    let addr = format!("http://{}", app.addr);
    let report = bench(&["--addr", &addr, "--workload", "new"]).await;
    let run = only_run(&report);
    assert_eq!(run["target"], "onceward");
    assert_eq!(run["workload"], "new");
    assert_eq!(run["concurrency"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_spawns_an_embedded_sidecar_measures_it_and_removes_its_data() {
    let tmp = tempfile::tempdir().unwrap();
    let addr = format!("http://127.0.0.1:{}", free_port());
    let args = [
        "--target",
        "embedded",
        "--embedded-addr",
        &addr,
        "--spawn-embedded",
    ];
    let report = bench_in(tmp.path(), &args).await;
    assert_eq!(only_run(&report)["target"], "embedded");
    assert!(report["embedded_sidecar"]["peak_rss_kib"].as_u64().unwrap() > 0);
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "the embedded sidecar's data was left: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_workload_runs_batches_and_single_pairs_in_the_same_rounds() {
    let app = TestApp::builder().spawn().await;
    let addr = format!("http://{}", app.addr);
    let report = bench(&[
        "--addr",
        &addr,
        "--workload",
        "batch",
        "--batch-items",
        "20",
    ])
    .await;
    let runs = report["runs"].as_array().expect("runs");
    let workloads: Vec<&str> = runs
        .iter()
        .map(|run| run["workload"].as_str().unwrap())
        .collect();
    assert_eq!(workloads, ["new", "batch"], "{report:#}");
    for run in runs {
        assert!(run["ok"].as_u64().unwrap() > 0, "{run:#}");
        assert_eq!(run["errors_total"].as_u64(), Some(0), "{run:#}");
    }
    assert_eq!(report["batch_items"].as_u64(), Some(20));
    // Every item of every batch was claimed and completed.
    let batches = runs[1]["ok"].as_u64().unwrap() as f64;
    let claimed = app
        .metric("onceward_batch_items_count", &[("rpc", "ClaimBatch")])
        .await;
    assert!(
        claimed >= batches,
        "{claimed} ClaimBatch calls for {batches} batches"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connect_workload_replays_over_connect_json_in_the_same_rounds_as_grpc() {
    let app = TestApp::builder().spawn().await;
    let addr = format!("http://{}", app.addr);
    let report = bench(&["--addr", &addr, "--workload", "connect"]).await;
    let runs = report["runs"].as_array().expect("runs");
    let workloads: Vec<&str> = runs
        .iter()
        .map(|run| run["workload"].as_str().unwrap())
        .collect();
    assert_eq!(workloads, ["duplicate", "connect"], "{report:#}");
    for run in runs {
        assert!(run["ok"].as_u64().unwrap() > 0, "{run:#}");
        assert_eq!(run["errors_total"].as_u64(), Some(0), "{run:#}");
    }
    let connect_calls = app
        .metric(
            "onceward_rpc_duration_seconds_count",
            &[("method", "Claim"), ("code", "OK"), ("protocol", "connect")],
        )
        .await;
    assert!(
        connect_calls >= runs[1]["ok"].as_f64().unwrap(),
        "{connect_calls}"
    );
}

/// The budget workload sets a budget it never reaches, so every one of its claims
/// takes the spend guard's path and is debited: the ledger's spend says how many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_workload_spends_a_budget_beside_new_keys_without_one_and_duplicates() {
    let db = TestDatabase::create().await;
    let app = TestApp::builder()
        .ledger(Ledger::Postgres(&db))
        .spawn()
        .await;
    let addr = format!("http://{}", app.addr);
    let report = bench(&["--addr", &addr, "--workload", "budget"]).await;
    let runs = report["runs"].as_array().expect("runs");
    let measured: Vec<(&str, &str)> = runs
        .iter()
        .map(|run| {
            (
                run["target"].as_str().unwrap(),
                run["workload"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        measured,
        [
            ("onceward", "new"),
            ("onceward", "budget"),
            ("onceward", "duplicate"),
            ("grpc-floor", "duplicate")
        ],
        "{report:#}"
    );
    for run in runs {
        assert_eq!(run["errors_total"].as_u64(), Some(0), "{run:#}");
    }
    let debited = db
        .scalar("SELECT COALESCE(sum(claims), 0)::bigint FROM onceward_spend WHERE namespace = 'bench-budget'")
        .await;
    let budget_ok = runs[1]["ok"].as_i64().unwrap();
    assert!(
        debited >= budget_ok && budget_ok > 0,
        "{debited} debits for {budget_ok} budget claims"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_replays_completed_keys_without_errors() {
    let app = TestApp::builder().spawn().await;
    let addr = format!("http://{}", app.addr);
    let report = bench(&["--addr", &addr, "--workload", "duplicate"]).await;
    assert_eq!(only_run(&report)["workload"], "duplicate");
}

/// The baseline at its most crowded (four operations in flight taking turns on one
/// connection, where --compare's smoke test gives each its own) never touches
/// onceward's records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_postgres_runs_in_a_schema_of_its_own_and_shares_fewer_connections_than_in_flight() {
    let db = TestDatabase::create().await;
    let app = TestApp::builder()
        .ledger(Ledger::Postgres(&db))
        .spawn()
        .await;
    let addr = format!("http://{}", app.addr);
    for workload in ["new", "duplicate"] {
        let report = bench(&[
            "--addr",
            &addr,
            "--target",
            "direct-postgres",
            "--database-url",
            &db.url,
            "--postgres-connections",
            "1",
            "--workload",
            workload,
        ])
        .await;
        let run = only_run(&report);
        assert_eq!(
            (&run["target"], &run["concurrency"]),
            (&"direct-postgres".into(), &4.into())
        );
    }
    let ledger_rows = db.scalar("SELECT count(*) FROM onceward_records").await;
    assert_eq!(
        ledger_rows, 0,
        "the baseline must not touch onceward's records"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_measures_every_target_and_reports_the_ratios_per_level_and_of_the_peaks() {
    let db = TestDatabase::create().await;
    let app = TestApp::builder()
        .ledger(Ledger::Postgres(&db))
        .spawn()
        .await;
    let addr = format!("http://{}", app.addr);
    let redis_url = shared_redis_url();
    let report = bench(&[
        "--addr",
        &addr,
        "--compare",
        "--sweep",
        "1,2",
        "--rounds",
        "2",
        "--database-url",
        &db.url,
        "--redis-url",
        &redis_url,
    ])
    .await;
    let runs = report["runs"].as_array().expect("runs");
    // Per level: onceward, direct-postgres and direct-redis for both workloads, and
    // the gRPC floor.
    assert_eq!(runs.len(), 2 * 7, "{report:#}");
    for run in runs {
        assert_eq!(run["errors_total"].as_u64(), Some(0), "{run:#}");
        // Each target measured in both rounds, and the run is the rounds together.
        let rounds: Vec<f64> = run["round_throughputs"]
            .as_array()
            .expect("round_throughputs")
            .iter()
            .map(|t| t.as_f64().unwrap())
            .collect();
        assert_eq!(rounds.len(), 2, "{run:#}");
        assert!(rounds.iter().all(|&t| t > 0.0), "{run:#}");
        let throughput = run["throughput"].as_f64().unwrap();
        let (low, high) = (rounds[0].min(rounds[1]), rounds[0].max(rounds[1]));
        assert!(
            low * 0.99 <= throughput && throughput <= high * 1.01,
            "{throughput} is not between its rounds' {rounds:?}"
        );
    }
    let ratios = report["ratios"].as_array().expect("ratios");
    assert_eq!(ratios.len(), 2);
    for level in ratios {
        for ratio in [
            "new_vs_direct_postgres",
            "duplicate_vs_grpc_floor",
            "new_vs_direct_redis",
            "duplicate_vs_direct_redis",
        ] {
            assert!(level[ratio].as_f64().unwrap() > 0.0, "{ratio}: {level:#}");
        }
        for by_round in [
            "new_vs_direct_postgres_by_round",
            "duplicate_vs_grpc_floor_by_round",
        ] {
            assert_eq!(
                level[by_round].as_array().map(Vec::len),
                Some(2),
                "{level:#}"
            );
        }
    }
    let peak = &report["peak_new_vs_direct_postgres"];
    let best = |target: &str| {
        runs.iter()
            .filter(|r| r["target"] == target && r["workload"] == "new")
            .map(|r| r["throughput"].as_f64().unwrap())
            .fold(0.0, f64::max)
    };
    assert_eq!(peak["onceward"].as_f64(), Some(best("onceward")));
    assert_eq!(peak["baseline"].as_f64(), Some(best("direct-postgres")));
    let half = &report["half_peak"];
    assert!(
        half["run"]["latency_us"]["p99"].as_u64().unwrap() > 0,
        "{half:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_measures_the_grpc_floor_with_a_health_check() {
    let app = TestApp::builder().spawn().await;
    let addr = format!("http://{}", app.addr);
    let report = bench(&["--addr", &addr, "--target", "grpc-floor"]).await;
    assert_eq!(only_run(&report)["target"], "grpc-floor");
}

#[tokio::test]
async fn rounds_too_short_to_measure_are_refused_before_anything_runs() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_onceward"))
        .args(["bench", "--addr", "http://127.0.0.1:9", "--duration", "1s"])
        .args(["--rounds", "50"])
        .kill_on_drop(true)
        .output()
        .await
        .expect("the bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("--rounds 50") && stderr.contains("at least 100ms"),
        "{stderr}"
    );
}
