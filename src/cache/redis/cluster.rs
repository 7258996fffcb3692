//! The hot tier on a Redis Cluster (or a Valkey cluster): the same entries, commands
//! and keys as on a single Redis (`mod.rs`), spread over the cluster's shards.
//!
//! - Every command touches one key (the replace script too), so any key may live on
//!   any shard. The client follows `MOVED`/`ASK` and, after a failover, reads the
//!   topology again on its own.
//! - A batch is grouped by hash slot (the client refuses a pipeline whose keys are in
//!   different slots), and every group is sent at once on the cluster connection's one
//!   multiplexed connection per node: one round trip to each shard, in parallel.
//! - One circuit breaker per shard (`shards.rs`): a dead shard opens only its own
//!   circuit, so only its keys go to the ledger; keys on the healthy shards keep their
//!   Redis answers. A failed command also has the slot ranges read again soon.
//! - The connection is made in the background: a cluster that is down when the sidecar
//!   starts only keeps every claim on the ledger until it answers.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::join_all;
use redis::ToRedisArgs as _;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;

use super::shards::{self, Shard, Shards};
use super::{
    CircuitBreaker, HotKey, REPLACE_SCRIPT, RedisHotTier, codec, no_delay, push_claim, ttl_millis,
};
use crate::cache::{CacheError, Cached, Entry, HotTier, Write};
use crate::domain::RecordId;
use crate::metrics;

/// How long the background connection attempt may take (it reads the topology from
/// the seed nodes and connects to every master).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach a Redis Cluster.
#[derive(Debug, Clone)]
pub struct RedisClusterOptions {
    /// Seed nodes, `host:port` or `redis://host:port`; the rest are discovered.
    pub nodes: Vec<String>,
    /// Prepended to every key, so several deployments (or tests) can share a cluster.
    pub key_prefix: String,
    /// The most any one command may take before it counts as a failure of its shard.
    pub timeout: Duration,
    /// How long a shard's circuit stays open after a failure.
    pub breaker_cooldown: Duration,
}

/// The Redis Cluster hot tier.
pub struct RedisClusterHotTier {
    client: ClusterClient,
    /// Set once the first connection attempt succeeds; the cluster client reconnects
    /// to nodes and follows the topology from then on.
    connection: Arc<OnceLock<ClusterConnection>>,
    /// Spaces out connection attempts while there is no connection.
    connecting: Arc<CircuitBreaker>,
    shards: Arc<Shards>,
    key_prefix: String,
    timeout: Duration,
}

impl RedisClusterHotTier {
    /// Sets up the client; nothing is connected until [`connect`](Self::connect) or the
    /// first command.
    pub fn new(options: &RedisClusterOptions) -> Result<Self, redis::RedisError> {
        let nodes = options
            .nodes
            .iter()
            .map(|node| match node.contains("://") {
                true => no_delay(node),
                false => no_delay(&format!("redis://{node}")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let client = ClusterClient::builder(nodes)
            .connection_timeout(options.timeout.max(Duration::from_millis(500)))
            .response_timeout(options.timeout)
            // One retry, quickly: a command the cluster moved is retried at once on the
            // new owner; one on a dead node fails within the timeout and opens its
            // shard's circuit.
            .retries(1)
            .min_retry_wait(5)
            .max_retry_wait(options.breaker_cooldown.as_millis() as u64)
            .build()?;
        Ok(Self {
            client,
            connection: Arc::new(OnceLock::new()),
            connecting: Arc::new(CircuitBreaker::new(options.breaker_cooldown)),
            shards: Arc::new(Shards::new(options.breaker_cooldown)),
            key_prefix: options.key_prefix.clone(),
            timeout: options.timeout,
        })
    }

    /// Connects now (at start, outside the breakers and the metrics) and reads the
    /// shards, which it returns for the startup log.
    pub async fn connect(&self) -> Result<Vec<Shard>, CacheError> {
        if self.connection.get().is_none() {
            let connection = Self::open(&self.client).await?;
            let _ = self.connection.set(connection);
        }
        let mut connection = self
            .connection
            .get()
            .cloned()
            .ok_or(CacheError::CircuitOpen)?;
        read_shards(&mut connection, &self.shards).await?;
        Ok(self.shards.list())
    }

    async fn open(client: &ClusterClient) -> Result<ClusterConnection, CacheError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_connection()).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(CacheError::Command(Box::new(error))),
            Err(_) => Err(CacheError::Timeout),
        }
    }

    /// The connection, or `CircuitOpen` while there is none yet (a connection attempt
    /// is then started in the background, no more than once per cooldown).
    fn connection(&self) -> Result<ClusterConnection, CacheError> {
        if let Some(connection) = self.connection.get() {
            return Ok(connection.clone());
        }
        let connecting = self.connecting.clone();
        if connecting.admit() {
            let client = self.client.clone();
            let cell = self.connection.clone();
            let shards = self.shards.clone();
            tokio::spawn(async move {
                match Self::open(&client).await {
                    Ok(mut connection) => {
                        let _ = read_shards(&mut connection, &shards).await;
                        let _ = cell.set(connection);
                        connecting.record_success();
                        tracing::info!("Redis Cluster connected");
                    }
                    Err(error) => connecting.record_failure(&error),
                }
            });
        }
        Err(CacheError::CircuitOpen)
    }

    fn key<'a>(&'a self, id: &'a RecordId) -> HotKey<'a> {
        HotKey {
            prefix: &self.key_prefix,
            id,
        }
    }

    fn slot_of(&self, id: &RecordId) -> u16 {
        let arg = self.key(id).to_redis_args();
        shards::slot(arg.first().map(Vec::as_slice).unwrap_or_default())
    }

    /// Runs one command (or one slot's pipeline) through its shard's breaker and the
    /// timeout.
    async fn run<T, F, C>(&self, op: &'static str, slot: u16, command: C) -> Result<T, CacheError>
    where
        C: FnOnce(ClusterConnection) -> F,
        F: Future<Output = redis::RedisResult<T>>,
    {
        // The connection first: a breaker that admits this command may have handed it
        // the half-open probe, which must end in a success or a failure.
        let connection = self.connection()?;
        let breaker = self.shards.breaker(slot);
        if !breaker.admit() {
            return Err(CacheError::CircuitOpen);
        }
        self.read_shards_if_stale(&connection, false);
        match tokio::time::timeout(self.timeout, command(connection.clone())).await {
            Ok(Ok(value)) => {
                breaker.record_success();
                Ok(value)
            }
            Ok(Err(error)) => {
                breaker.record_failure(&error);
                metrics::cache_error(op);
                tracing::debug!(op, slot, error = %error, "hot tier command failed");
                self.read_shards_if_stale(&connection, true);
                Err(CacheError::Command(Box::new(error)))
            }
            Err(_) => {
                breaker.record_failure(&CacheError::Timeout);
                metrics::cache_error(op);
                tracing::debug!(op, slot, "hot tier command timed out");
                self.read_shards_if_stale(&connection, true);
                Err(CacheError::Timeout)
            }
        }
    }

    /// Reads the slot ranges again in the background when it is time to.
    fn read_shards_if_stale(&self, connection: &ClusterConnection, after_failure: bool) {
        if !self.shards.begin_read(after_failure) {
            return;
        }
        let mut connection = connection.clone();
        let shards = self.shards.clone();
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(CONNECT_TIMEOUT, read_shards(&mut connection, &shards)).await;
            shards.read_done();
        });
    }

    /// The writes of a batch grouped by slot: the index of each write, per slot.
    fn by_slot(&self, writes: &[Write<'_>]) -> Vec<(u16, Vec<usize>)> {
        let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
        let mut slots: Vec<(u16, usize)> = writes
            .iter()
            .enumerate()
            .map(|(at, write)| (self.slot_of(write.id), at))
            .collect();
        slots.sort_unstable();
        for (slot, at) in slots {
            match groups.last_mut() {
                Some((last, indexes)) if *last == slot => indexes.push(at),
                _ => groups.push((slot, vec![at])),
            }
        }
        groups
    }
}

/// Reads `CLUSTER SLOTS` from any node into `shards`.
async fn read_shards(
    connection: &mut ClusterConnection,
    shards: &Shards,
) -> Result<(), CacheError> {
    let reply: redis::Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(connection)
        .await
        .map_err(|error| CacheError::Command(Box::new(error)))?;
    let ranges = shards::parse_cluster_slots(&reply)
        .ok_or_else(|| CacheError::Corrupt("an unreadable CLUSTER SLOTS reply".into()))?;
    shards.update(ranges);
    Ok(())
}

#[async_trait]
impl HotTier for RedisClusterHotTier {
    async fn claim(
        &self,
        id: &RecordId,
        tentative: &Entry,
        ttl: Duration,
    ) -> Result<Option<Cached>, CacheError> {
        let mut pipeline = redis::pipe();
        push_claim(&mut pipeline, self.key(id), tentative, ttl);
        let sent_at = Instant::now();
        let (previous, left_ms): (Option<Vec<u8>>, i64) = self
            .run("claim", self.slot_of(id), |mut connection| async move {
                pipeline.query_async(&mut connection).await
            })
            .await?;
        RedisHotTier::standing(previous, left_ms, sent_at)
    }

    /// One pipeline per slot, all sent at once.
    async fn claim_many(&self, writes: &[Write<'_>]) -> Vec<Result<Option<Cached>, CacheError>> {
        let groups = self.by_slot(writes);
        let sent_at = Instant::now();
        let replies = join_all(groups.iter().map(|(slot, indexes)| {
            let mut pipeline = redis::pipe();
            for &at in indexes {
                let write = &writes[at];
                push_claim(&mut pipeline, self.key(write.id), write.entry, write.ttl);
            }
            self.run("claim", *slot, |mut connection| async move {
                let flat: Vec<redis::Value> = pipeline.query_async(&mut connection).await?;
                flat.chunks(2)
                    .map(|pair| {
                        redis::from_redis_value::<(Option<Vec<u8>>, i64)>(redis::Value::Array(
                            pair.to_vec(),
                        ))
                        .map_err(redis::RedisError::from)
                    })
                    .collect::<redis::RedisResult<Vec<_>>>()
            })
        }))
        .await;
        let mut results: Vec<Option<Result<Option<Cached>, CacheError>>> =
            writes.iter().map(|_| None).collect();
        for ((_, indexes), reply) in groups.iter().zip(replies) {
            match reply {
                Ok(pairs) if pairs.len() == indexes.len() => {
                    for (&at, (previous, left_ms)) in indexes.iter().zip(pairs) {
                        results[at] = Some(RedisHotTier::standing(previous, left_ms, sent_at));
                    }
                }
                Ok(pairs) => {
                    let error = format!("{} replies for {} keys", pairs.len(), indexes.len());
                    for &at in indexes {
                        results[at] = Some(Err(CacheError::Corrupt(error.clone().into())));
                    }
                }
                Err(error) => {
                    for &at in indexes {
                        results[at] = Some(Err(error.for_another_key()));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|result| result.unwrap_or(Err(CacheError::CircuitOpen)))
            .collect()
    }

    /// One pipeline per slot, all sent at once; an error if any slot's failed.
    async fn put_many(&self, writes: &[Write<'_>]) -> Result<(), CacheError> {
        let groups = self.by_slot(writes);
        let outcomes = join_all(groups.iter().map(|(slot, indexes)| {
            let mut pipeline = redis::pipe();
            for &at in indexes {
                let write = &writes[at];
                pipeline
                    .cmd("SET")
                    .arg(self.key(write.id))
                    .arg(codec::encode(write.entry))
                    .arg("PX")
                    .arg(ttl_millis(write.ttl))
                    .ignore();
            }
            self.run("put", *slot, |mut connection| async move {
                pipeline.query_async::<()>(&mut connection).await
            })
        }))
        .await;
        outcomes
            .into_iter()
            .collect::<Result<Vec<()>, _>>()
            .map(drop)
    }

    async fn put(&self, id: &RecordId, entry: &Entry, ttl: Duration) -> Result<(), CacheError> {
        let mut command = redis::cmd("SET");
        command
            .arg(self.key(id))
            .arg(codec::encode(entry))
            .arg("PX")
            .arg(ttl_millis(ttl));
        self.run("put", self.slot_of(id), |mut connection| async move {
            command.query_async::<()>(&mut connection).await
        })
        .await
    }

    /// `EVAL` rather than `EVALSHA`: loading a script into a cluster goes to every
    /// node, and must not depend on a shard that is down.
    async fn replace(
        &self,
        id: &RecordId,
        expected: &Entry,
        replacement: Option<(&Entry, Duration)>,
    ) -> Result<(), CacheError> {
        let (value, ttl) = match replacement {
            Some((entry, ttl)) => (codec::encode(entry), ttl_millis(ttl)),
            None => (Vec::new(), 0),
        };
        let mut command = redis::cmd("EVAL");
        command
            .arg(REPLACE_SCRIPT)
            .arg(1)
            .arg(self.key(id))
            .arg(codec::encode(expected))
            .arg(value)
            .arg(ttl);
        self.run("replace", self.slot_of(id), |mut connection| async move {
            command.query_async::<i64>(&mut connection).await
        })
        .await
        .map(drop)
    }

    async fn remove(&self, id: &RecordId) -> Result<(), CacheError> {
        let mut command = redis::cmd("DEL");
        command.arg(self.key(id));
        self.run("remove", self.slot_of(id), |mut connection| async move {
            command.query_async::<i64>(&mut connection).await
        })
        .await
        .map(drop)
    }
}
