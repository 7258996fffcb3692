//! `onceward drill key-loss`: a game day against a real deployment. It claims keys of
//! its own (half completed, half held), makes the sidecars' Redis lose them — only its
//! own keys, never anything else — fires concurrent duplicate claims at every sidecar,
//! and reports whether any duplicate was let through, which tier answered, the latency
//! before and during the loss, and how soon the cache refilled. Then it forgets
//! everything it made and exits 0 only if no duplicate got through and nothing was
//! left behind.
//!
//! **Near caches.** Held keys are never in a near cache (it keeps completed records
//! only), so every duplicate of a held key that Redis lost is the ledger's to answer.
//! A completed key is completed, and its duplicate before the loss asked, through the
//! same sidecar, whose near cache may keep replaying it (`served_by=cache`, counted);
//! during the loss its duplicates go to every sidecar, and the others never saw it, so
//! their first answer is the ledger's.
//!
//! # Layout
//! - here: the flags and the drill's steps;
//! - `report`: what it measured, as a table or JSON.

mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use futures_util::future::join_all;
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

use self::report::{Phase, Report};
use crate::proto::admin_client::AdminClient;
use crate::proto::onceward_client::OncewardClient;
use crate::proto::{self, ClaimRequest, CompleteRequest, ForgetRequest, LookupRequest, Outcome};

/// `onceward drill …`.
#[derive(Debug, Args)]
pub struct DrillArgs {
    /// The drill to run.
    #[command(subcommand)]
    pub drill: Drill,
}

/// The drills.
#[derive(Debug, Subcommand)]
pub enum Drill {
    /// Make Redis lose the drill's keys and show that no duplicate gets through.
    KeyLoss(KeyLossArgs),
}

/// `onceward drill key-loss`. With tenants configured, `ONCEWARD_AUTH_TOKEN` is the
/// token of an admin tenant granted every namespace (`namespaces = ["*"]`, as the
/// drill's has a random suffix): it calls `Forget` to clean up.
#[derive(Debug, Args)]
pub struct KeyLossArgs {
    /// The sidecars, comma-separated (`http://host:port`); duplicates go to all.
    #[arg(long, value_delimiter = ',', required = true)]
    pub addr: Vec<String>,

    /// The Redis the sidecars use.
    #[arg(long)]
    pub redis_url: String,

    /// The sidecars' --redis-key-prefix.
    #[arg(long, default_value = "onceward:")]
    pub redis_key_prefix: String,

    /// The namespace the drill's keys go in, with a random suffix per run.
    #[arg(long, default_value = "onceward-drill")]
    pub namespace: String,

    /// How many keys: half completed, half held.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(2..=100_000))]
    pub keys: u32,

    /// Duplicate claims per key, all at once, spread over the sidecars.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub concurrency: u32,

    /// How Redis loses the keys: `flush-keys` (all of the drill's), `evict-fraction=F`
    /// (a random share F of them), `expire` (their TTL cut to 1 ms), or `redis-down`
    /// (Redis answers nobody for --pause: `CLIENT PAUSE`, so every client of that Redis
    /// waits; only with --pause-redis, for a staging Redis).
    #[arg(long, default_value = "flush-keys", value_parser = parse_loss)]
    pub loss: Loss,

    /// Confirms that `--loss redis-down` may pause this Redis for every client.
    #[arg(long)]
    pub pause_redis: bool,

    /// How long `--loss redis-down` pauses Redis.
    #[arg(long, default_value = "5s", value_parser = crate::domain::parse_duration)]
    pub pause: Duration,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How Redis loses the drill's keys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// Every key deleted.
    FlushKeys,
    /// This share of the keys deleted, chosen at random.
    EvictFraction(f64),
    /// Every key's TTL cut to 1 ms.
    Expire,
    /// Redis answers nobody for a while; nothing is lost.
    RedisDown,
}

fn parse_loss(text: &str) -> Result<Loss, String> {
    match text {
        "flush-keys" => Ok(Loss::FlushKeys),
        "expire" => Ok(Loss::Expire),
        "redis-down" => Ok(Loss::RedisDown),
        other => {
            let fraction = other
                .strip_prefix("evict-fraction=")
                .and_then(|f| f.parse::<f64>().ok())
                .filter(|f| (0.0..=1.0).contains(f) && *f > 0.0)
                .ok_or_else(|| {
                    format!(
                        "{other:?}: use flush-keys, expire, redis-down or evict-fraction=F \
                         with F in (0, 1]"
                    )
                })?;
            Ok(Loss::EvictFraction(fraction))
        }
    }
}

/// A connection to a sidecar, with the bearer token when one is given.
type Sidecar = onceward_client::AuthorizedChannel;

/// A lease longer than any drill, so held keys stay held throughout.
const HELD_LEASE: Duration = Duration::from_secs(600);
/// Claims in flight at once while the storm runs.
const IN_FLIGHT: usize = 256;

/// Runs a drill; the process exit code: 0 passed, 1 failed (a duplicate got through, a
/// replay was wrong, or something was left behind).
pub async fn run(args: DrillArgs) -> anyhow::Result<i32> {
    match args.drill {
        Drill::KeyLoss(args) => {
            let json = args.json;
            let report = key_loss(args).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
            Ok(if report.passed() { 0 } else { 1 })
        }
    }
}

/// One key of the drill.
struct DrillKey {
    key: String,
    /// The stored response, for a completed key; `None` for a held one.
    response: Option<Vec<u8>>,
}

async fn key_loss(args: KeyLossArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.loss != Loss::RedisDown || args.pause_redis,
        "--loss redis-down pauses this Redis for every client (CLIENT PAUSE): \
         confirm with --pause-redis, and only on a Redis you may stop"
    );
    let namespace = format!("{}-{:08x}", args.namespace, rand::random::<u32>());
    // The token of an admin tenant, for a sidecar with tenants; `https://` addresses
    // trust the system's roots.
    let mut config = onceward_client::ClientConfig::builder();
    if let Ok(token) = std::env::var("ONCEWARD_AUTH_TOKEN") {
        config = config.auth_token(token.trim().to_owned());
    }
    let config = config.build();
    let mut channels = Vec::with_capacity(args.addr.len());
    for addr in &args.addr {
        let channel = config
            .connect_channel(addr)
            .await
            .with_context(|| format!("cannot connect to the sidecar at {addr}"))?;
        channels.push(channel);
    }
    let sidecars: Vec<OncewardClient<Sidecar>> =
        channels.iter().cloned().map(OncewardClient::new).collect();
    let redis = redis::Client::open(crate::cache::no_delay(&args.redis_url)?)?
        .get_multiplexed_async_connection()
        .await
        .context("cannot connect to --redis-url")?;
    let mut report = Report::new(&namespace, &args);

    // 1. Keys of the drill's own: even ones completed, odd ones held.
    let mut keys = Vec::with_capacity(args.keys as usize);
    for index in 0..args.keys {
        let key = format!("k{index}");
        let mut client = sidecars[index as usize % sidecars.len()].clone();
        let claimed = client
            .claim(claim_request(&namespace, &key, Some(HELD_LEASE)))
            .await
            .context("setting up the drill's keys")?
            .into_inner();
        anyhow::ensure!(
            claimed.outcome == Outcome::Acquired as i32,
            "the drill's fresh key {key} was not ACQUIRED: the namespace is not fresh"
        );
        let response = (index % 2 == 0).then(|| format!("drill-{namespace}-{index}").into_bytes());
        if let Some(response) = &response {
            client
                .complete(CompleteRequest {
                    namespace: namespace.clone(),
                    key: key.clone(),
                    fencing_token: claimed.fencing_token,
                    response: response.clone(),
                    retention: None,
                })
                .await
                .context("completing the drill's keys")?;
        }
        keys.push(DrillKey { key, response });
    }
    let keys = Arc::new(keys);

    // 2. The duplicates' latency before the loss: one duplicate per key.
    report.before = storm(&sidecars, &namespace, &keys, 1, 0).await;

    // 3. Redis loses the drill's keys, and only those.
    let pattern = format!("{}{namespace}:*", args.redis_key_prefix);
    let stored = scan(&redis, &pattern).await?;
    report.redis_keys_before = stored.len();
    let lost_at = Instant::now();
    let paused_until = match args.loss {
        Loss::RedisDown => Some(pause(&redis, args.pause).await?),
        _ => {
            report.redis_keys_lost = lose(&redis, &stored, args.loss).await?;
            None
        }
    };

    // 4. The storm: `concurrency` duplicates per key, at every sidecar at once.
    // Meanwhile, a watcher counts the drill's keys back in Redis, until all are.
    let (stop_watching, stopped) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(watch_refill(
        redis.clone(),
        pattern.clone(),
        stored.len(),
        lost_at,
        stopped,
    ));
    report.during = storm(&sidecars, &namespace, &keys, args.concurrency, 1).await;
    if let Some(until) = paused_until {
        tokio::time::sleep_until((until + Duration::from_millis(200)).into()).await;
    }

    // 5. How soon the cache held every key again (the answers write back what the
    // ledger decided), given a moment after the storm.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_watching.send(());
    let (refilled_after, back) = watcher.await.context("the refill watcher")??;
    report.refilled_after = refilled_after;
    report.redis_keys_after = back;

    // 6. Forget everything the drill made, and check nothing is left.
    let mut admin = AdminClient::new(channels[0].clone());
    let mut client = sidecars[0].clone();
    for key in keys.iter() {
        let forgotten = admin
            .forget(ForgetRequest {
                namespace: namespace.clone(),
                key: key.key.clone(),
                force: true,
            })
            .await;
        if let Err(status) = forgotten {
            report
                .cleanup_errors
                .push(format!("{}: {}", key.key, status.message()));
        }
    }
    for key in keys.iter() {
        let found = client
            .lookup(LookupRequest {
                namespace: namespace.clone(),
                key: key.key.clone(),
            })
            .await
            .map(|answer| answer.into_inner().found)
            .unwrap_or(true);
        if found {
            report.left_in_ledger += 1;
        }
    }
    // Forgetting also deletes the Redis keys; a sidecar's late write is given a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    report.left_in_redis = scan(&redis, &pattern).await?.len();
    report.finish();
    Ok(report)
}

fn claim_request(namespace: &str, key: &str, lease: Option<Duration>) -> ClaimRequest {
    ClaimRequest {
        namespace: namespace.to_owned(),
        key: key.to_owned(),
        fingerprint: b"onceward-drill".to_vec(),
        lease: lease.map(proto::duration),
        // Every duplicate is a different caller.
        claimant: rand::random::<[u8; 16]>().to_vec(),
        attempt: 1,
        ..ClaimRequest::default()
    }
}

/// `per_key` duplicate claims of every key, the `n`-th of key `i` to sidecar
/// `i + n + offset` (so with offset 0 the first goes to the sidecar that made the key),
/// at most [`IN_FLIGHT`] at once; what they answered.
async fn storm(
    sidecars: &[OncewardClient<Sidecar>],
    namespace: &str,
    keys: &Arc<Vec<DrillKey>>,
    per_key: u32,
    offset: usize,
) -> Phase {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let started = Instant::now();
    let calls = keys
        .iter()
        .enumerate()
        .flat_map(|(index, key)| (0..per_key).map(move |copy| (index, key, copy as usize)));
    let answers = join_all(calls.map(|(index, key, copy)| {
        let mut client = sidecars[(index + copy + offset) % sidecars.len()].clone();
        let permits = permits.clone();
        async move {
            let _permit = permits.acquire().await.expect("the semaphore stays open");
            let sent = Instant::now();
            let answer = client.claim(claim_request(namespace, &key.key, None)).await;
            (key, answer.map(tonic::Response::into_inner), sent.elapsed())
        }
    }))
    .await;
    let mut phase = Phase::new(started.elapsed());
    let mut latency = Histogram::<u64>::new(3).expect("three significant figures");
    for (key, answer, elapsed) in answers {
        let _ = latency.record(elapsed.as_micros() as u64);
        phase.record(key.response.as_deref(), answer);
    }
    phase.latency(&latency);
    phase
}

/// Every key matching `pattern` (a drill's prefix and namespace).
async fn scan(
    redis: &redis::aio::MultiplexedConnection,
    pattern: &str,
) -> anyhow::Result<Vec<String>> {
    let mut redis = redis.clone();
    let mut cursor = 0u64;
    let mut keys = Vec::new();
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut redis)
            .await
            .context("SCAN")?;
        keys.extend(found);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Counts the keys matching `pattern` every 50 ms until there are `expected` of them
/// (then: how long after `lost_at`) or until `stop`; with the last count it read.
async fn watch_refill(
    redis: redis::aio::MultiplexedConnection,
    pattern: String,
    expected: usize,
    lost_at: Instant,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<(Option<Duration>, usize)> {
    let mut back = 0;
    loop {
        // A Redis that does not answer (paused, failing over) is counted again later.
        if let Ok(keys) = scan(&redis, &pattern).await {
            back = keys.len();
            if back >= expected {
                return Ok((Some(lost_at.elapsed()), back));
            }
        }
        tokio::select! {
            _ = &mut stop => return Ok((None, back)),
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// Pauses every client of Redis for `length` (`CLIENT PAUSE … ALL`); when it ends.
async fn pause(
    redis: &redis::aio::MultiplexedConnection,
    length: Duration,
) -> anyhow::Result<Instant> {
    let mut redis = redis.clone();
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(length.as_millis().max(1) as u64)
        .arg("ALL")
        .query_async::<()>(&mut redis)
        .await
        .context("CLIENT PAUSE")?;
    Ok(Instant::now() + length)
}

/// Makes Redis lose `keys` as `loss` says; how many it lost.
async fn lose(
    redis: &redis::aio::MultiplexedConnection,
    keys: &[String],
    loss: Loss,
) -> anyhow::Result<usize> {
    let mut redis = redis.clone();
    let chosen: Vec<&String> = match loss {
        Loss::EvictFraction(fraction) => keys
            .iter()
            .filter(|_| rand::random::<f64>() < fraction)
            .collect(),
        Loss::FlushKeys | Loss::Expire => keys.iter().collect(),
        Loss::RedisDown => Vec::new(),
    };
    for chunk in chosen.chunks(1000) {
        let mut pipeline = redis::pipe();
        for key in chunk {
            match loss {
                Loss::Expire => pipeline.cmd("PEXPIRE").arg(*key).arg(1).ignore(),
                Loss::FlushKeys | Loss::EvictFraction(_) | Loss::RedisDown => {
                    pipeline.cmd("UNLINK").arg(*key).ignore()
                }
            };
        }
        pipeline
            .query_async::<()>(&mut redis)
            .await
            .context("making Redis lose the drill's keys")?;
    }
    if loss == Loss::Expire {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(chosen.len())
}
