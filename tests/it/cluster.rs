//! The hot tier on a Redis Cluster (`--redis-cluster`): three masters and three
//! replicas of the test's own, real sidecars on a fresh Postgres database. Every claim
//! rule holds with batches spread over the shards, in a race of two sidecars, after
//! `FLUSHALL` on every master, while a master is SIGKILLed mid-load and its replica
//! promoted, and with one whole shard down — where the keys of the healthy shards keep
//! their Redis answers.
//!
//! The sidecars run without the near cache (`--near-cache-max-bytes=0`), so a
//! `served_by` of `TIER_CACHE` means Redis answered.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use onceward::proto::onceward_client::OncewardClient;
use onceward::proto::{
    ClaimBatchRequest, ClaimItem, ClaimResponse, CompleteBatchRequest, CompleteItem, Outcome, Tier,
};
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::*;

/// A sidecar builder on `cluster`, with the hot tier's every answer coming from Redis.
fn on_cluster<'a>(cluster: &RedisCluster, ledger: Ledger<'a>) -> TestAppBuilder<'a> {
    TestApp::builder()
        .ledger(ledger)
        .hot_tier(HotTier::RedisCluster(cluster.seeds()))
        // A busy test machine must not open a healthy shard's circuit.
        .args(&["--near-cache-max-bytes=0", "--redis-timeout=1s"])
}

/// The Redis key slot of (namespace, key) for `app`.
async fn slot_of(cluster: &RedisCluster, app: &TestApp, namespace: &str, key: &str) -> u16 {
    cluster.slot(&app.redis_key(namespace, key)).await
}

async fn claim_batch(
    client: &mut OncewardClient<Channel>,
    namespace: &str,
    keys: &[String],
) -> Vec<ClaimResponse> {
    let items = keys
        .iter()
        .map(|key| ClaimItem {
            key: key.clone(),
            ..Default::default()
        })
        .collect();
    client
        .claim_batch(ClaimBatchRequest {
            namespace: namespace.to_owned(),
            items,
            lease: None,
        })
        .await
        .expect("claim batch")
        .into_inner()
        .results
}

async fn complete_batch(
    client: &mut OncewardClient<Channel>,
    namespace: &str,
    done: &[(String, u64)],
) {
    let items = done
        .iter()
        .map(|(key, token)| CompleteItem {
            key: key.clone(),
            fencing_token: *token,
            response: format!("done:{key}").into_bytes(),
        })
        .collect();
    let results = client
        .complete_batch(CompleteBatchRequest {
            namespace: namespace.to_owned(),
            items,
            retention: None,
        })
        .await
        .expect("complete batch")
        .into_inner()
        .results;
    assert!(results.iter().all(|result| result.code == 0), "{results:?}");
}

fn keys(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|at| format!("{prefix}-{at}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_claim_rule_holds_on_a_redis_cluster_with_batches_across_shards() {
    let cluster = RedisCluster::start().await;
    let app = on_cluster(&cluster, Ledger::FreshPostgres).spawn().await;
    let mut client = app.client.clone();

    let first = claim_with(&mut client, "c", "order-1", b"fp-a", None).await;
    assert_eq!(outcome(&first), Outcome::Acquired);
    assert_eq!(tier(&first), Tier::Ledger);
    let busy = claim_with(&mut client, "c", "order-1", b"fp-a", None).await;
    assert_eq!(outcome(&busy), Outcome::InProgress);
    complete(&mut client, "c", "order-1", first.fencing_token, b"receipt")
        .await
        .expect("complete");
    complete(&mut client, "c", "order-1", first.fencing_token, b"receipt")
        .await
        .expect("a retried Complete is OK");
    let stale = complete(&mut client, "c", "order-1", first.fencing_token + 1, b"x").await;
    assert_eq!(stale.unwrap_err().code(), Code::FailedPrecondition);
    let replay = claim_with(&mut client, "c", "order-1", b"fp-a", None).await;
    assert_eq!(outcome(&replay), Outcome::Completed);
    assert_eq!(replay.response, b"receipt");
    assert_eq!(
        tier(&replay),
        Tier::Cache,
        "the duplicate came from the cluster"
    );
    let mismatch = claim_with(&mut client, "c", "order-1", b"fp-b", None).await;
    assert_eq!(outcome(&mismatch), Outcome::FingerprintMismatch);

    let held = claim(&mut client, "c", "order-2").await;
    release(&mut client, "c", "order-2", held.fencing_token)
        .await
        .expect("release");
    let again = claim(&mut client, "c", "order-2").await;
    assert_eq!(outcome(&again), Outcome::Acquired);
    assert!(again.fencing_token > held.fencing_token);

    // One batch whose keys live on every shard.
    let shards = cluster.shards().await;
    assert_eq!(shards.len(), 3, "{shards:?}");
    let batch = keys("msg", 30);
    let mut shards_hit = std::collections::HashSet::new();
    for key in &batch {
        let slot = slot_of(&cluster, &app, "c", key).await;
        shards_hit.insert(shards.iter().position(|shard| shard.holds(slot)));
    }
    assert_eq!(shards_hit.len(), 3, "the batch spans every shard");

    let acquired = claim_batch(&mut client, "c", &batch).await;
    assert!(acquired.iter().all(|a| outcome(a) == Outcome::Acquired));
    let busy = claim_batch(&mut client, "c", &batch).await;
    assert!(busy.iter().all(|a| outcome(a) == Outcome::InProgress));
    let done: Vec<(String, u64)> = batch
        .iter()
        .cloned()
        .zip(acquired.iter().map(|a| a.fencing_token))
        .collect();
    complete_batch(&mut client, "c", &done).await;
    let replays = claim_batch(&mut client, "c", &batch).await;
    for (key, replay) in batch.iter().zip(&replays) {
        assert_eq!(outcome(replay), Outcome::Completed, "{key}");
        assert_eq!(replay.response, format!("done:{key}").as_bytes());
        assert_eq!(tier(replay), Tier::Cache, "{key} came from the cluster");
    }
    for shard in &shards {
        assert!(
            cluster.keys_on(shard.master).await > 0,
            "the master of {}-{} holds keys",
            shard.start,
            shard.end
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claimants_through_two_sidecars_on_a_cluster_acquire_each_key_once() {
    let cluster = RedisCluster::start().await;
    let db = TestDatabase::create().await;
    let (one, two) = on_cluster(&cluster, Ledger::Postgres(&db))
        .spawn_two()
        .await;
    let race = keys("race", 40);
    let mut tasks = Vec::new();
    for claimant in 0..16 {
        let mut client = if claimant % 2 == 0 {
            one.client.clone()
        } else {
            two.client.clone()
        };
        let race = race.clone();
        tasks.push(tokio::spawn(async move {
            if claimant % 4 < 2 {
                claim_batch(&mut client, "race", &race).await
            } else {
                let mut answers = Vec::new();
                for key in &race {
                    answers.push(claim(&mut client, "race", key).await);
                }
                answers
            }
        }));
    }
    let mut acquired: HashMap<&str, usize> = HashMap::new();
    for task in tasks {
        for (key, answer) in race.iter().zip(task.await.expect("claimant")) {
            match outcome(&answer) {
                Outcome::Acquired => *acquired.entry(key).or_default() += 1,
                Outcome::InProgress => {}
                other => panic!("{key}: {other:?}"),
            }
        }
    }
    for key in &race {
        assert_eq!(acquired.get(key.as_str()), Some(&1), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_on_every_master_still_deduplicates_through_the_ledger() {
    let cluster = RedisCluster::start().await;
    let app = on_cluster(&cluster, Ledger::FreshPostgres).spawn().await;
    let mut client = app.client.clone();
    let completed = keys("done", 20);
    let held = keys("held", 20);
    let first = claim_batch(&mut client, "f", &completed).await;
    let done: Vec<(String, u64)> = completed
        .iter()
        .cloned()
        .zip(first.iter().map(|a| a.fencing_token))
        .collect();
    complete_batch(&mut client, "f", &done).await;
    claim_batch(&mut client, "f", &held).await;

    cluster.flush_every_master().await;
    for shard in cluster.shards().await {
        assert_eq!(cluster.keys_on(shard.master).await, 0);
    }

    for round in ["from the ledger", "from the cluster again"] {
        let replays = claim_batch(&mut client, "f", &completed).await;
        for (key, replay) in completed.iter().zip(&replays) {
            assert_eq!(outcome(replay), Outcome::Completed, "{key} {round}");
            assert_eq!(replay.response, format!("done:{key}").as_bytes());
        }
        for key in &held {
            let answer = claim(&mut client, "f", key).await;
            assert_eq!(outcome(&answer), Outcome::InProgress, "{key} {round}");
        }
        if round == "from the ledger" {
            assert!(replays.iter().all(|r| tier(r) == Tier::Ledger));
        } else {
            assert!(replays.iter().all(|r| tier(r) == Tier::Cache));
        }
    }
}

/// What the load saw: per key, the tokens that acquired it and every replay's response.
#[derive(Default)]
struct Seen {
    acquired: HashMap<String, Vec<u64>>,
    replayed: Vec<(String, Vec<u8>)>,
    errors: Vec<String>,
}

/// Claims (and completes) `keys` over and over through `clients` until `stop`.
async fn load(
    clients: Vec<OncewardClient<Channel>>,
    keys: Vec<String>,
    stop: Arc<AtomicBool>,
) -> Seen {
    let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
    let workers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(worker, mut client)| {
            let (keys, stop, seen) = (keys.clone(), stop.clone(), seen.clone());
            tokio::spawn(async move {
                let mut at = worker * 7;
                while !stop.load(Ordering::Relaxed) {
                    let key = &keys[at % keys.len()];
                    at += 1;
                    let answer = match client.claim(claim_request("load", key, b"", None)).await {
                        Ok(answer) => answer.into_inner(),
                        Err(status) => {
                            seen.lock()
                                .unwrap()
                                .errors
                                .push(format!("claim {key}: {status}"));
                            continue;
                        }
                    };
                    match outcome(&answer) {
                        Outcome::Acquired => {
                            let token = answer.fencing_token;
                            seen.lock()
                                .unwrap()
                                .acquired
                                .entry(key.clone())
                                .or_default()
                                .push(token);
                            let response = format!("{key}:{token}");
                            if let Err(status) =
                                complete(&mut client, "load", key, token, response.as_bytes()).await
                            {
                                seen.lock()
                                    .unwrap()
                                    .errors
                                    .push(format!("complete {key}: {status}"));
                            }
                        }
                        Outcome::Completed => seen
                            .lock()
                            .unwrap()
                            .replayed
                            .push((key.clone(), answer.response)),
                        Outcome::InProgress => {}
                        other => seen
                            .lock()
                            .unwrap()
                            .errors
                            .push(format!("{key}: {other:?}")),
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("load worker");
    }
    Arc::into_inner(seen).unwrap().into_inner().unwrap()
}

/// Each key acquired exactly once, every replay the acquirer's response, no errors.
fn assert_every_rule_held(seen: &Seen, keys: &[String]) {
    assert!(
        seen.errors.is_empty(),
        "{:?}",
        &seen.errors[..seen.errors.len().min(5)]
    );
    for key in keys {
        let tokens = seen
            .acquired
            .get(key)
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert_eq!(tokens.len(), 1, "{key} acquired by {tokens:?}");
    }
    for (key, response) in &seen.replayed {
        let token = seen.acquired[key][0];
        assert_eq!(response, format!("{key}:{token}").as_bytes(), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_mid_load_and_its_replica_promoted_breaks_no_rule() {
    let mut cluster = RedisCluster::start().await;
    let db = TestDatabase::create().await;
    let (one, two) = on_cluster(&cluster, Ledger::Postgres(&db))
        .args(&["--redis-timeout=300ms"])
        .spawn_two()
        .await;
    let keyspace = keys("k", 150);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = (0..8)
        .map(|at| {
            if at % 2 == 0 {
                one.client.clone()
            } else {
                two.client.clone()
            }
        })
        .collect();
    let running = tokio::spawn(load(clients, keyspace.clone(), stop.clone()));

    tokio::time::sleep(Duration::from_millis(500)).await;
    let victim_key = &keyspace[0];
    let slot = slot_of(&cluster, &one, "load", victim_key).await;
    let shard = cluster
        .shards()
        .await
        .into_iter()
        .find(|shard| shard.holds(slot))
        .unwrap();
    cluster.kill(shard.master);
    let promoted = cluster.wait_for_new_master(slot, shard.master).await;
    assert_ne!(promoted, shard.master);
    // Keep the load on for a while with the new master serving.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = running.await.expect("load");
    assert_every_rule_held(&seen, &keyspace);

    // Replays of the failed-over shard's keys come from Redis again (the replica).
    let mut client = one.client.clone();
    let from_redis = eventually(Duration::from_secs(10), || {
        let mut client = client.clone();
        async move { tier(&claim(&mut client, "load", victim_key).await) == Tier::Cache }
    })
    .await;
    assert!(from_redis, "replays of {victim_key} came from Redis again");
    let replay = claim(&mut client, "load", victim_key).await;
    assert_eq!(outcome(&replay), Outcome::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_whole_shard_down_sends_only_its_keys_to_the_ledger() {
    let mut cluster = RedisCluster::start().await;
    let app = on_cluster(&cluster, Ledger::FreshPostgres)
        .args(&["--redis-timeout=300ms"])
        .spawn()
        .await;
    let mut client = app.client.clone();
    let done_keys = keys("done", 60);
    let first = claim_batch(&mut client, "s", &done_keys).await;
    let done: Vec<(String, u64)> = done_keys
        .iter()
        .cloned()
        .zip(first.iter().map(|a| a.fencing_token))
        .collect();
    complete_batch(&mut client, "s", &done).await;

    let shards = cluster.shards().await;
    let dead = shards[1].clone();
    cluster.kill(dead.master);
    for replica in &dead.replicas {
        cluster.kill(*replica);
    }
    let mut on_dead_shard = HashMap::new();
    for key in &done_keys {
        let slot = slot_of(&cluster, &app, "s", key).await;
        on_dead_shard.insert(key.clone(), dead.holds(slot));
    }
    assert!(on_dead_shard.values().any(|&dead| dead));
    assert!(on_dead_shard.values().any(|&dead| !dead));

    // Twice: once while the dead shard's circuit opens, once with it open.
    for round in 0..2 {
        for key in &done_keys {
            let replay = claim(&mut client, "s", key).await;
            assert_eq!(outcome(&replay), Outcome::Completed, "{key} round {round}");
            assert_eq!(replay.response, format!("done:{key}").as_bytes());
            if on_dead_shard[key] {
                assert_eq!(tier(&replay), Tier::Ledger, "{key} round {round}");
            } else {
                assert_eq!(tier(&replay), Tier::Cache, "{key} round {round}");
            }
        }
        let batch = claim_batch(&mut client, "s", &done_keys).await;
        for (key, replay) in done_keys.iter().zip(&batch) {
            assert_eq!(outcome(replay), Outcome::Completed, "{key} batch {round}");
            let expected = if on_dead_shard[key] {
                Tier::Ledger
            } else {
                Tier::Cache
            };
            assert_eq!(tier(replay), expected, "{key} batch {round}");
        }
    }

    // New keys still follow every rule, whichever shard they hash to.
    let fresh = keys("fresh", 30);
    let acquired = claim_batch(&mut client, "s", &fresh).await;
    assert!(acquired.iter().all(|a| outcome(a) == Outcome::Acquired));
    let busy = claim_batch(&mut client, "s", &fresh).await;
    assert!(busy.iter().all(|a| outcome(a) == Outcome::InProgress));
    let done: Vec<(String, u64)> = fresh
        .iter()
        .cloned()
        .zip(acquired.iter().map(|a| a.fencing_token))
        .collect();
    complete_batch(&mut client, "s", &done).await;
    let replays = claim_batch(&mut client, "s", &fresh).await;
    assert!(replays.iter().all(|r| outcome(r) == Outcome::Completed));

    let dead_name = format!("{}-{}", dead.start, dead.end);
    assert_eq!(
        app.metric("onceward_cache_circuit_open", &[("shard", &dead_name)])
            .await,
        1.0
    );
    for healthy in shards.iter().filter(|shard| shard.start != dead.start) {
        let name = format!("{}-{}", healthy.start, healthy.end);
        assert_eq!(
            app.metric("onceward_cache_circuit_open", &[("shard", &name)])
                .await,
            0.0,
            "{name}"
        );
    }
}

#[test]
fn a_redis_url_and_a_redis_cluster_together_are_refused_naming_both() {
    use clap::Parser as _;
    let Err(error) = onceward::command::Cli::try_parse_from([
        "onceward",
        "serve",
        "--redis-url=redis://127.0.0.1:6379",
        "--redis-cluster=127.0.0.1:7000,127.0.0.1:7001",
    ]) else {
        panic!("both flags were accepted");
    };
    let message = error.to_string();
    assert!(
        message.contains("--redis-url") && message.contains("--redis-cluster"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_is_down_at_start_leaves_every_claim_to_the_ledger() {
    let nowhere = format!("127.0.0.1:{},127.0.0.1:{}", free_port(), free_port());
    let app = TestApp::builder()
        .hot_tier(HotTier::RedisCluster(nowhere))
        .spawn()
        .await;
    let mut client = app.client.clone();
    let first = claim(&mut client, "down", "k").await;
    assert_eq!(outcome(&first), Outcome::Acquired);
    complete(&mut client, "down", "k", first.fencing_token, b"r")
        .await
        .expect("complete");
    let replay = claim(&mut client, "down", "k").await;
    assert_eq!(outcome(&replay), Outcome::Completed);
    assert_eq!(replay.response, b"r");
}
