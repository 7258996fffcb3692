//! `onceward drill key-loss`, the real binary against two sidecars on one Postgres and a
//! Redis of the test's own: every loss mode finds no duplicate, the drill cleans up
//! after itself and leaves other keys alone; and against a sidecar that lets a
//! duplicate through, it fails loudly.

use std::time::Duration;

use onceward::proto::onceward_server::{Onceward, OncewardServer};
use onceward::proto::{
    ClaimBatchRequest, ClaimBatchResponse, ClaimRequest, ClaimResponse, CompleteBatchRequest,
    CompleteBatchResponse, CompleteRequest, CompleteResponse, ExtendLeaseRequest,
    ExtendLeaseResponse, LookupRequest, LookupResponse, Outcome, ReleaseRequest, ReleaseResponse,
    Tier,
};
use serde_json::Value;
use tonic::{Request, Response, Status};

use crate::harness::*;

/// Runs `onceward drill key-loss <args> --json`: its exit code and report.
async fn drill(args: &[&str]) -> (i32, Value) {
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_onceward"))
            .args(["drill", "key-loss"])
            .args(args)
            .arg("--json")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the drill finishes")
    .expect("the drill runs");
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "no report ({error}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().expect("exited"), report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_loss_mode_on_two_sidecars_lets_no_duplicate_through_and_leaves_nothing() {
    let redis = RedisServer::start().await;
    let db = TestDatabase::create().await;
    let builder = TestApp::builder()
        .ledger(Ledger::Postgres(&db))
        .hot_tier(HotTier::Redis(redis.url()));
    let (first, second) = builder.spawn_two().await;
    let mut connection = redis.connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("not-the-drills")
        .arg("keep")
        .query_async(&mut connection)
        .await
        .unwrap();
    let addrs = format!("http://{},http://{}", first.addr, second.addr);

    for loss in ["flush-keys", "evict-fraction=0.5", "expire"] {
        let (code, report) = drill(&[
            "--addr",
            &addrs,
            "--redis-url",
            &redis.url(),
            "--redis-key-prefix",
            &first.key_prefix,
            "--keys",
            "200",
            "--concurrency",
            "8",
            "--loss",
            loss,
        ])
        .await;
        assert_eq!(code, 0, "{loss}: {report:#}");
        let during = &report["during"];
        assert_eq!(during["acquired"], 0, "{loss}: {report:#}");
        assert_eq!(during["replayed"], 100 * 8, "{loss}: {report:#}");
        assert_eq!(during["in_progress"], 100 * 8, "{loss}: {report:#}");
        assert_eq!(report["before"]["acquired"], 0);
        assert!(
            report["redis_keys_lost"].as_u64().unwrap() > 0,
            "{report:#}"
        );
        assert!(
            during["served_by_ledger"].as_u64().unwrap() > 0,
            "{report:#}"
        );
        assert_eq!(report["left_in_ledger"], 0);
        assert_eq!(report["left_in_redis"], 0);
        assert_eq!(report["passed"], true);
    }
    let kept: String = redis::cmd("GET")
        .arg("not-the-drills")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(kept, "keep", "the drill touches only its own keys");
    let ledger_rows = db.scalar("SELECT count(*) FROM onceward_records").await;
    assert_eq!(ledger_rows, 0, "the drill forgot every record it made");
}

/// A sidecar that answers every Claim ACQUIRED: what the drill exists to catch.
struct LetsDuplicatesThrough;

#[tonic::async_trait]
impl Onceward for LetsDuplicatesThrough {
    async fn claim(&self, _: Request<ClaimRequest>) -> Result<Response<ClaimResponse>, Status> {
        Ok(Response::new(ClaimResponse {
            outcome: Outcome::Acquired as i32,
            fencing_token: 1,
            served_by: Tier::Ledger as i32,
            ..Default::default()
        }))
    }

    async fn complete(
        &self,
        _: Request<CompleteRequest>,
    ) -> Result<Response<CompleteResponse>, Status> {
        Ok(Response::new(CompleteResponse::default()))
    }

    async fn release(
        &self,
        _: Request<ReleaseRequest>,
    ) -> Result<Response<ReleaseResponse>, Status> {
        Ok(Response::new(ReleaseResponse::default()))
    }

    async fn extend_lease(
        &self,
        _: Request<ExtendLeaseRequest>,
    ) -> Result<Response<ExtendLeaseResponse>, Status> {
        Ok(Response::new(ExtendLeaseResponse::default()))
    }

    async fn lookup(&self, _: Request<LookupRequest>) -> Result<Response<LookupResponse>, Status> {
        Ok(Response::new(LookupResponse::default()))
    }

    async fn claim_batch(
        &self,
        _: Request<ClaimBatchRequest>,
    ) -> Result<Response<ClaimBatchResponse>, Status> {
        Err(Status::unimplemented("not this sidecar"))
    }

    async fn complete_batch(
        &self,
        _: Request<CompleteBatchRequest>,
    ) -> Result<Response<CompleteBatchResponse>, Status> {
        Err(Status::unimplemented("not this sidecar"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_that_lets_a_duplicate_through_fails_the_drill() {
    let redis = RedisServer::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(OncewardServer::new(LetsDuplicatesThrough))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let (code, report) = drill(&[
        "--addr",
        &format!("http://{addr}"),
        "--redis-url",
        &redis.url(),
        "--keys",
        "20",
        "--concurrency",
        "4",
    ])
    .await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["passed"], false);
    assert_eq!(report["during"]["acquired"], 20 * 4, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tenants_the_drill_runs_on_an_admin_token_and_not_without_one() {
    use sha2::Digest as _;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tenants.toml");
    std::fs::write(
        &config,
        format!(
            "[[tenants]]\nname = \"ops\"\ntoken_sha256 = \"{}\"\nnamespaces = [\"*\"]\nadmin = true\n",
            hex::encode(sha2::Sha256::digest("ops-drill-token"))
        ),
    )
    .unwrap();
    let redis = RedisServer::start().await;
    let app = TestApp::builder()
        .hot_tier(HotTier::Redis(redis.url()))
        .tenants(&config)
        .spawn()
        .await;
    let args = |token: Option<&str>| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_onceward"));
        command
            .args([
                "drill",
                "key-loss",
                "--keys",
                "20",
                "--concurrency",
                "2",
                "--json",
            ])
            .args(["--addr", &format!("http://{}", app.addr)])
            .args([
                "--redis-url",
                &redis.url(),
                "--redis-key-prefix",
                &app.key_prefix,
            ])
            .env_remove("ONCEWARD_AUTH_TOKEN")
            .kill_on_drop(true);
        if let Some(token) = token {
            command.env("ONCEWARD_AUTH_TOKEN", token);
        }
        command
    };
    let passed = args(Some("ops-drill-token")).output().await.unwrap();
    assert!(
        passed.status.success(),
        "{}",
        String::from_utf8_lossy(&passed.stderr)
    );
    let refused = args(None).output().await.unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("UNAUTHENTICATED")
            || String::from_utf8_lossy(&refused.stderr).contains("bearer token"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_paused_the_ledger_answers_and_no_duplicate_gets_through() {
    let redis = RedisServer::start().await;
    let app = TestApp::builder()
        .hot_tier(HotTier::Redis(redis.url()))
        .spawn()
        .await;
    let addr = format!("http://{}", app.addr);
    let redis_url = redis.url();
    let common = [
        "--addr",
        addr.as_str(),
        "--keys",
        "40",
        "--concurrency",
        "4",
        "--loss",
        "redis-down",
    ];
    let unconfirmed = tokio::process::Command::new(env!("CARGO_BIN_EXE_onceward"))
        .args(["drill", "key-loss"])
        .args(common)
        .args([
            "--redis-url",
            &redis.url(),
            "--redis-key-prefix",
            &app.key_prefix,
        ])
        .output()
        .await
        .unwrap();
    assert!(!unconfirmed.status.success());
    assert!(
        String::from_utf8_lossy(&unconfirmed.stderr).contains("--pause-redis"),
        "{}",
        String::from_utf8_lossy(&unconfirmed.stderr)
    );

    let mut args = common.to_vec();
    args.extend(["--pause-redis", "--pause", "2s"]);
    args.extend([
        "--redis-url",
        &redis_url,
        "--redis-key-prefix",
        &app.key_prefix,
    ]);
    let (code, report) = drill(&args).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["during"]["acquired"], 0);
    assert!(
        report["during"]["served_by_ledger"].as_u64().unwrap() >= 20 * 4,
        "every duplicate of a held key, at least, went to the ledger: {report:#}"
    );
    assert_eq!(report["left_in_redis"], 0);
}
