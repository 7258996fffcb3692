//! Faults injected for real: Redis flushed, killed, restarted or never there; the
//! Postgres connection cut by a proxy. Correctness must not change (rules 6 and 7 of docs/PROTOCOL.md).

use std::time::Duration;

use onceward::proto::{Outcome, Tier};
use tokio::net::TcpListener;
use tonic::Code;

use crate::harness::*;

/// A sidecar on `db` and a `redis-server` of the test's own.
fn on_own_redis<'a>(redis: &RedisServer, db: &'a TestDatabase) -> TestAppBuilder<'a> {
    TestApp::builder()
        .ledger(Ledger::Postgres(db))
        .hot_tier(HotTier::Redis(redis.url()))
        .key_prefix("onceward:")
}

/// The near cache is off: these tests are about what happens when Redis loses keys,
/// and a sidecar's own copy of completed records would answer before the ledger is
/// asked (`the_near_cache_answers_completed_keys_that_redis_lost` covers that).
const NEAR_CACHE_OFF: &str = "--near-cache-max-bytes=0";

/// One completed key and one held key, the held key's token.
async fn completed_and_held(app: &TestApp) -> u64 {
    let mut client = app.client.clone();
    let done = claim_with(&mut client, "pay", "done", b"fp", None).await;
    complete(&mut client, "pay", "done", done.fencing_token, b"receipt-1")
        .await
        .unwrap();
    let held = claim_with(&mut client, "pay", "held", b"fp", None).await;
    assert_eq!(outcome(&held), Outcome::Acquired);
    held.fencing_token
}

/// After the hot tier forgot everything: completed keys replay from the ledger, held
/// keys are still in progress, nothing is acquired twice.
async fn assert_ledger_still_decides(app: &TestApp) {
    let mut client = app.client.clone();
    let replay = claim_with(&mut client, "pay", "done", b"fp", None).await;
    assert_eq!(outcome(&replay), Outcome::Completed);
    assert_eq!(replay.response, b"receipt-1");
    assert_eq!(tier(&replay), Tier::Ledger);
    for _ in 0..3 {
        let held = claim_with(&mut client, "pay", "held", b"fp", None).await;
        assert_eq!(
            outcome(&held),
            Outcome::InProgress,
            "never a second ACQUIRED"
        );
    }
    let mismatch = claim_with(&mut client, "pay", "done", b"other", None).await;
    assert_eq!(outcome(&mismatch), Outcome::FingerprintMismatch);
}

/// The hot tier answers again for the completed key.
async fn assert_cache_repopulates(app: &TestApp) {
    let client = app.client.clone();
    let repopulated = eventually(Duration::from_secs(10), || {
        let mut client = client.clone();
        async move {
            let replay = claim_with(&mut client, "pay", "done", b"fp", None).await;
            assert_eq!(outcome(&replay), Outcome::Completed);
            tier(&replay) == Tier::Cache
        }
    })
    .await;
    assert!(repopulated, "the hot tier never answered again");
}

#[tokio::test]
async fn after_flushall_completed_keys_replay_from_the_ledger_and_the_cache_refills() {
    let redis = RedisServer::start().await;
    let db = TestDatabase::create().await;
    let app = on_own_redis(&redis, &db)
        .args(&[NEAR_CACHE_OFF])
        .spawn()
        .await;
    let held_token = completed_and_held(&app).await;

    redis.flushall().await;
    assert_ledger_still_decides(&app).await;
    assert_cache_repopulates(&app).await;

    let mut client = app.client.clone();
    complete(&mut client, "pay", "held", held_token, b"receipt-2")
        .await
        .expect("holder unaffected");
    assert_eq!(db.scalar("SELECT count(*) FROM onceward_records").await, 2);
}

#[tokio::test]
async fn with_redis_killed_and_restarted_every_answer_still_holds() {
    let mut redis = RedisServer::start().await;
    let db = TestDatabase::create().await;
    let app = on_own_redis(&redis, &db)
        .args(&[NEAR_CACHE_OFF])
        .spawn()
        .await;
    let held_token = completed_and_held(&app).await;

    redis.kill();
    assert_ledger_still_decides(&app).await;
    let mut client = app.client.clone();
    let fresh = claim(&mut client, "pay", "while-redis-is-down").await;
    assert_eq!(
        outcome(&fresh),
        Outcome::Acquired,
        "the ledger alone still serves claims"
    );
    let mut cache_errors = 0.0;
    for op in ["claim", "put", "replace", "remove"] {
        cache_errors += app
            .metric("onceward_cache_errors_total", &[("op", op)])
            .await;
    }
    assert!(cache_errors >= 1.0, "the dead Redis was noticed");

    redis.restart().await;
    assert_ledger_still_decides(&app).await;
    assert_cache_repopulates(&app).await;
    complete(&mut client, "pay", "held", held_token, b"receipt-2")
        .await
        .expect("holder unaffected");
}

#[tokio::test]
async fn with_redis_unresponsive_from_the_start_the_breaker_costs_one_timeout_not_one_per_request()
{
    // A "Redis" that accepts connections and never answers: every command would wait
    // out the full timeout.
    let black_hole = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = black_hole.local_addr().unwrap().port();
    let _accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = black_hole.accept().await {
            held.push(socket);
        }
    });
    let db = TestDatabase::create().await;
    let app = TestApp::builder()
        .ledger(Ledger::Postgres(&db))
        .hot_tier(HotTier::Redis(format!("redis://127.0.0.1:{port}")))
        .key_prefix("onceward:")
        .args(&["--redis-breaker-cooldown=10m", "--near-cache-max-bytes=0"])
        .spawn()
        .await;
    let mut client = app.client.clone();

    let held = claim_with(&mut client, "pay", "k", b"fp", None).await;
    assert_eq!(outcome(&held), Outcome::Acquired);
    assert_eq!(
        outcome(&claim_with(&mut client, "pay", "k", b"fp", None).await),
        Outcome::InProgress
    );
    assert_eq!(
        outcome(&claim_with(&mut client, "pay", "k", b"other", None).await),
        Outcome::FingerprintMismatch
    );
    complete(&mut client, "pay", "k", held.fencing_token, b"r")
        .await
        .unwrap();
    for i in 0..20 {
        let replay = claim_with(&mut client, "pay", "k", b"fp", None).await;
        assert_eq!(outcome(&replay), Outcome::Completed, "claim {i}");
        assert_eq!(tier(&replay), Tier::Ledger);
    }

    // Only the first command waited for the timeout; every later claim skipped Redis.
    let errors = app
        .metric("onceward_cache_errors_total", &[("op", "claim")])
        .await;
    let bypassed = app
        .metric("onceward_cache_lookups_total", &[("result", "bypass")])
        .await;
    assert_eq!(errors, 1.0);
    assert_eq!(bypassed, 22.0);
    assert_eq!(app.metric("onceward_cache_circuit_open", &[]).await, 1.0);
}

#[tokio::test]
async fn with_postgres_cut_off_a_new_claim_fails_closed_and_service_recovers_when_it_returns() {
    let db = TestDatabase::create().await;
    // Migrate directly, then point the sidecar at Postgres through the proxy.
    let proxy = TcpProxy::start(postgres_addr()).await;
    let app = TestApp::builder()
        .ledger(Ledger::PostgresThrough(&db, &proxy))
        .args(&["--ledger-timeout=1s"])
        .spawn()
        .await;
    let mut client = app.client.clone();
    let paid = claim(&mut client, "pay", "paid").await;
    complete(&mut client, "pay", "paid", paid.fencing_token, b"receipt")
        .await
        .unwrap();
    let held = claim(&mut client, "pay", "held").await;

    proxy.cut();
    let refused = client.claim(claim_request("pay", "new", b"", None)).await;
    assert_eq!(
        refused.unwrap_err().code(),
        Code::Unavailable,
        "never ACQUIRED without the ledger"
    );
    let redis = redis::Client::open(shared_redis_url()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg(app.redis_key("pay", "new"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0, "the tentative cache entry was removed");

    // Completed records still in the cache may still be replayed.
    let replay = claim(&mut client, "pay", "paid").await;
    assert_eq!(
        (outcome(&replay), tier(&replay)),
        (Outcome::Completed, Tier::Cache)
    );
    let completing = complete(&mut client, "pay", "held", held.fencing_token, b"r").await;
    assert_eq!(completing.unwrap_err().code(), Code::Unavailable);
    assert!(
        app.metric(
            "onceward_rpc_duration_seconds_count",
            &[
                ("method", "Claim"),
                ("code", "UNAVAILABLE"),
                ("protocol", "grpc")
            ]
        )
        .await
            >= 1.0
    );

    proxy.restore();
    let recovered = eventually(Duration::from_secs(15), || {
        let mut client = client.clone();
        async move {
            match client.claim(claim_request("pay", "new", b"", None)).await {
                Ok(response) => {
                    assert_eq!(outcome(response.get_ref()), Outcome::Acquired);
                    true
                }
                Err(status) => {
                    assert_eq!(status.code(), Code::Unavailable);
                    false
                }
            }
        }
    })
    .await;
    assert!(recovered, "claims never recovered after Postgres came back");
    complete(&mut client, "pay", "held", held.fencing_token, b"r")
        .await
        .expect("the holder completes");
    assert_eq!(
        db.scalar("SELECT count(*) FROM onceward_records WHERE key = 'new'")
            .await,
        1
    );
}

#[tokio::test]
async fn the_near_cache_answers_completed_keys_that_redis_lost() {
    let redis = RedisServer::start().await;
    let db = TestDatabase::create().await;
    let app = on_own_redis(&redis, &db).spawn().await;
    completed_and_held(&app).await;

    redis.flushall().await;
    let mut client = app.client.clone();
    let replay = claim_with(&mut client, "pay", "done", b"fp", None).await;
    assert_eq!(
        (outcome(&replay), tier(&replay)),
        (Outcome::Completed, Tier::Cache)
    );
    assert_eq!(replay.response, b"receipt-1");
    let mismatch = claim_with(&mut client, "pay", "done", b"other", None).await;
    assert_eq!(outcome(&mismatch), Outcome::FingerprintMismatch);
    // Claims in progress are never kept near: the held key goes to the ledger.
    let held = claim_with(&mut client, "pay", "held", b"fp", None).await;
    assert_eq!(
        (outcome(&held), tier(&held)),
        (Outcome::InProgress, Tier::Ledger)
    );
}

/// The batch writers keep their Postgres connections between batches; one that sat
/// idle is tested before use, so connections Postgres dropped while the sidecar was
/// quiet (a restart, a proxy or firewall timing them out) cost no caller an error.
#[tokio::test]
async fn ledger_connections_lost_while_idle_cost_no_claim_or_complete_an_error() {
    let db = TestDatabase::create().await;
    let proxy = TcpProxy::start(postgres_addr()).await;
    let app = TestApp::builder()
        .ledger(Ledger::PostgresThrough(&db, &proxy))
        .spawn()
        .await;
    let mut client = app.client.clone();
    let before = claim(&mut client, "pay", "before").await;
    complete(&mut client, "pay", "before", before.fencing_token, b"r")
        .await
        .expect("complete before the cut");

    // Every connection through the proxy dies; new ones are let through again.
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.restore();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let after = client
        .claim(claim_request("pay", "after", b"", None))
        .await
        .expect("the first claim after the cut")
        .into_inner();
    assert_eq!(outcome(&after), Outcome::Acquired);
    complete(&mut client, "pay", "after", after.fencing_token, b"r")
        .await
        .expect("the first complete after the cut");
}

/// A claim whose caller gave up while its statement ran (here: waited on a lock until
/// the ledger timeout answered UNAVAILABLE) still commits once the lock goes. Nobody
/// holds that claim, so it is released at once: the caller's retry acquires instead of
/// meeting IN_PROGRESS for the rest of a 30 s lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_commits_after_its_caller_gave_up_is_released_not_left_held() {
    use sqlx::Connection as _;
    let db = TestDatabase::create().await;
    let app = TestApp::builder()
        .ledger(Ledger::Postgres(&db))
        .args(&["--ledger-timeout=300ms"])
        .spawn()
        .await;
    let mut client = app.client.clone();
    let warm = claim(&mut client, "slow", "warm").await;
    assert_eq!(outcome(&warm), Outcome::Acquired);

    let mut locker = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE onceward_records IN EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();
    let refused = client
        .claim(claim_request("slow", "stuck", b"", None))
        .await;
    assert_eq!(refused.unwrap_err().code(), Code::Unavailable);
    // The sidecar's claim statements still running, or only those waiting on a lock.
    let claims_running = async |db: &TestDatabase, on_a_lock: bool| {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'onceward' \
             AND state = 'active' AND query LIKE '%INSERT INTO onceward_records%' \
             AND (NOT $1 OR wait_event_type = 'Lock')",
        )
        .bind(on_a_lock)
        .fetch_one(&mut conn)
        .await
        .unwrap()
    };
    assert_eq!(
        claims_running(&db, true).await,
        1,
        "the claim's statement was sent and waits on the lock"
    );
    sqlx::query("COMMIT").execute(&mut locker).await.unwrap();
    let finished = eventually(Duration::from_secs(5), || async {
        claims_running(&db, false).await == 0
    })
    .await;
    assert!(finished, "the claim's statement ran to its commit");

    let released = eventually(Duration::from_secs(5), || {
        let mut client = client.clone();
        async move { !lookup(&mut client, "slow", "stuck").await.found }
    })
    .await;
    assert!(released, "the claim nobody was told about is not left held");
    let retry = claim(&mut client, "slow", "stuck").await;
    assert_eq!(outcome(&retry), Outcome::Acquired);
}

/// A blip — a proxy or PgBouncer restarted, a failover — kills every open ledger
/// connection while the sidecar is busy. Once the database answers again, not one
/// request fails: a statement whose connection failed runs once more on another, and
/// kept connections last checked before the failure are checked before their next
/// batch. Three blips, each followed at once by every kind of ledger call at the same
/// time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_blip_not_one_request_fails_once_the_database_answers_again() {
    let db = TestDatabase::create().await;
    let proxy = TcpProxy::start(postgres_addr()).await;
    let app = TestApp::builder()
        .ledger(Ledger::PostgresThrough(&db, &proxy))
        // Two writers per kind: two kept connections each, both stale after a blip.
        .args(&["--ledger-batch-writers=2"])
        .spawn()
        .await;

    let mut calls = 0;
    for blip in 0..3 {
        // Held claims for this round's releases and extensions, written before the
        // blip so their connections are among those it kills.
        let mut held = Vec::new();
        for i in 0..8 {
            let key = format!("held-{blip}-{i}");
            let claimed = claim(&mut app.client.clone(), "blip", &key).await;
            assert_eq!(outcome(&claimed), Outcome::Acquired);
            held.push((key, claimed.fencing_token));
        }

        proxy.cut();
        tokio::time::sleep(Duration::from_millis(50)).await;
        proxy.restore();

        let mut work = tokio::task::JoinSet::new();
        for i in 0..16 {
            let mut client = app.client.clone();
            work.spawn(async move {
                let key = format!("new-{blip}-{i}");
                let claimed = client
                    .claim(claim_request("blip", &key, b"", None))
                    .await
                    .map_err(|status| format!("claim {key}: {status:?}"))?
                    .into_inner();
                assert_eq!(outcome(&claimed), Outcome::Acquired);
                complete(&mut client, "blip", &key, claimed.fencing_token, b"r")
                    .await
                    .map_err(|status| format!("complete {key}: {status:?}"))?;
                Ok::<_, String>(2)
            });
        }
        for (i, (key, token)) in held.into_iter().enumerate() {
            let mut client = app.client.clone();
            work.spawn(async move {
                if i % 2 == 0 {
                    release(&mut client, "blip", &key, token)
                        .await
                        .map_err(|status| format!("release {key}: {status:?}"))?;
                } else {
                    extend(&mut client, "blip", &key, token, Duration::from_secs(30))
                        .await
                        .map_err(|status| format!("extend {key}: {status:?}"))?;
                }
                client
                    .lookup(onceward::proto::LookupRequest {
                        namespace: "blip".to_owned(),
                        key: key.clone(),
                    })
                    .await
                    .map_err(|status| format!("lookup {key}: {status:?}"))?;
                Ok(2)
            });
        }
        while let Some(done) = work.join_next().await {
            match done.expect("no panic") {
                Ok(count) => calls += count,
                Err(failed) => panic!("after blip {blip}, a request failed: {failed}"),
            }
        }
    }
    assert_eq!(calls, 3 * (16 * 2 + 8 * 2));
}
