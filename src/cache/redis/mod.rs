//! The Redis hot tier: one multiplexed connection shared by every request (commands
//! pipeline automatically), every command bounded by a timeout, and a circuit breaker.
//!
//! # Layout
//! - `mod.rs` (here): [`RedisHotTier`], its commands and keys, and [`no_delay`].
//! - `codec.rs`: how an [`Entry`] is stored, byte for byte as older sidecars sharing
//!   the Redis read it. Nothing outside this module sees the stored format.
//! - `cluster.rs`: [`RedisClusterHotTier`], the same commands on a Redis Cluster,
//!   batches split per slot, a circuit breaker per shard.
//! - `shards.rs`: a key's hash slot, the cluster's slot ranges and their breakers.

mod cluster;
mod codec;
mod shards;

pub use self::cluster::{RedisClusterHotTier, RedisClusterOptions};

use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{CacheError, Cached, CircuitBreaker, Entry, HotTier, Write};
use crate::domain::RecordId;
use crate::metrics;

/// Replaces the key's value only if it still holds the caller's tentative entry:
/// `ARGV[1]` expected, `ARGV[2]` replacement ("" deletes), `ARGV[3]` TTL in ms. It
/// compares encoded bytes, which is why the codec must write an entry the same way
/// every time.
const REPLACE_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[2] == '' then
    return redis.call('DEL', KEYS[1])
  end
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"#;

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://…` or `rediss://…`.
    pub url: String,
    /// Prepended to every key, so several deployments (or tests) can share a Redis.
    pub key_prefix: String,
    /// The most any one command may take before it counts as a failure.
    pub timeout: Duration,
    /// How long the circuit stays open after a failure.
    pub breaker_cooldown: Duration,
}

/// The Redis hot tier.
pub struct RedisHotTier {
    connection: ConnectionManager,
    key_prefix: String,
    timeout: Duration,
    breaker: CircuitBreaker,
    replace: redis::Script,
}

/// The connection settings of `url`, with Nagle's algorithm off: a command written
/// while the previous one is unacknowledged goes out at once instead of waiting for
/// the ACK (up to 40 ms of delayed ACK on Linux).
pub fn no_delay(url: &str) -> Result<redis::ConnectionInfo, redis::RedisError> {
    use redis::IntoConnectionInfo as _;
    let info = url.into_connection_info()?;
    let settings = info.tcp_settings().clone().set_nodelay(true);
    Ok(info.set_tcp_settings(settings))
}

impl RedisHotTier {
    /// Sets up the connection lazily: a Redis that is down at start only opens the
    /// circuit; the sidecar still serves from the ledger.
    pub fn new(options: &RedisOptions) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(no_delay(options.url.as_str())?)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(options.breaker_cooldown);
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            connection,
            key_prefix: options.key_prefix.clone(),
            timeout: options.timeout,
            breaker: CircuitBreaker::new(options.breaker_cooldown),
            replace: redis::Script::new(REPLACE_SCRIPT),
        })
    }

    /// One `PING`, bounded by the timeout, outside the breaker and the metrics: a
    /// check at start, not a request.
    pub async fn ping(&self) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        match tokio::time::timeout(
            self.timeout,
            redis::cmd("PING").query_async::<()>(&mut connection),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(CacheError::Command(Box::new(error))),
            Err(_) => Err(CacheError::Timeout),
        }
    }

    fn key<'a>(&'a self, id: &'a RecordId) -> HotKey<'a> {
        HotKey {
            prefix: &self.key_prefix,
            id,
        }
    }

    /// Runs one command through the breaker and the timeout.
    async fn run<T, F>(&self, op: &'static str, command: F) -> Result<T, CacheError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if !self.breaker.admit() {
            return Err(CacheError::CircuitOpen);
        }
        match tokio::time::timeout(self.timeout, command).await {
            Ok(Ok(value)) => {
                self.breaker.record_success();
                Ok(value)
            }
            Ok(Err(error)) => {
                self.breaker.record_failure(&error);
                metrics::cache_error(op);
                tracing::debug!(op, error = %error, "hot tier command failed");
                Err(CacheError::Command(Box::new(error)))
            }
            Err(_) => {
                self.breaker.record_failure(&CacheError::Timeout);
                metrics::cache_error(op);
                tracing::debug!(op, "hot tier command timed out");
                Err(CacheError::Timeout)
            }
        }
    }
}

impl RedisHotTier {
    /// The standing entry a claim's `SET … GET` returned, with its `PTTL`.
    fn standing(
        previous: Option<Vec<u8>>,
        left_ms: i64,
        sent_at: Instant,
    ) -> Result<Option<Cached>, CacheError> {
        let Some(bytes) = previous else {
            return Ok(None);
        };
        let entry = codec::decode(&bytes)
            .map_err(|error| CacheError::Corrupt(Box::new(error)))?
            .ok_or(CacheError::UnknownKind)?;
        Ok(Some(Cached {
            entry,
            ttl: time_left(left_ms, sent_at),
        }))
    }
}

#[async_trait]
impl HotTier for RedisHotTier {
    async fn claim(
        &self,
        id: &RecordId,
        tentative: &Entry,
        ttl: Duration,
    ) -> Result<Option<Cached>, CacheError> {
        let mut connection = self.connection.clone();
        let mut pipeline = redis::pipe();
        push_claim(&mut pipeline, self.key(id), tentative, ttl);
        let sent_at = Instant::now();
        let (previous, left_ms): (Option<Vec<u8>>, i64) = self
            .run("claim", pipeline.query_async(&mut connection))
            .await?;
        Self::standing(previous, left_ms, sent_at)
    }

    /// One pipeline of `SET NX PX GET` and `PTTL` per key: one round trip.
    async fn claim_many(&self, writes: &[Write<'_>]) -> Vec<Result<Option<Cached>, CacheError>> {
        let mut connection = self.connection.clone();
        let mut pipeline = redis::pipe();
        for write in writes {
            push_claim(&mut pipeline, self.key(write.id), write.entry, write.ttl);
        }
        let sent_at = Instant::now();
        let replies: Result<Vec<(Option<Vec<u8>>, i64)>, CacheError> = self
            .run("claim", async {
                let flat: Vec<redis::Value> = pipeline.query_async(&mut connection).await?;
                flat.chunks(2)
                    .map(|pair| {
                        redis::from_redis_value(redis::Value::Array(pair.to_vec()))
                            .map_err(redis::RedisError::from)
                    })
                    .collect()
            })
            .await;
        match replies {
            Ok(replies) if replies.len() == writes.len() => replies
                .into_iter()
                .map(|(previous, left_ms)| Self::standing(previous, left_ms, sent_at))
                .collect(),
            Ok(replies) => {
                let error = format!("{} replies for {} keys", replies.len(), writes.len());
                writes
                    .iter()
                    .map(|_| Err(CacheError::Corrupt(error.clone().into())))
                    .collect()
            }
            Err(error) => writes
                .iter()
                .map(|_| Err(error.for_another_key()))
                .collect(),
        }
    }

    /// One pipeline of `SET PX` per key: one round trip.
    async fn put_many(&self, writes: &[Write<'_>]) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        let mut pipeline = redis::pipe();
        for write in writes {
            pipeline
                .cmd("SET")
                .arg(self.key(write.id))
                .arg(codec::encode(write.entry))
                .arg("PX")
                .arg(ttl_millis(write.ttl))
                .ignore();
        }
        self.run("put", pipeline.query_async::<()>(&mut connection))
            .await
    }

    async fn put(&self, id: &RecordId, entry: &Entry, ttl: Duration) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("SET");
        command
            .arg(self.key(id))
            .arg(codec::encode(entry))
            .arg("PX")
            .arg(ttl_millis(ttl));
        self.run("put", command.query_async::<()>(&mut connection))
            .await
    }

    async fn replace(
        &self,
        id: &RecordId,
        expected: &Entry,
        replacement: Option<(&Entry, Duration)>,
    ) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        let (value, ttl) = match replacement {
            Some((entry, ttl)) => (codec::encode(entry), ttl_millis(ttl)),
            None => (Vec::new(), 0),
        };
        let mut invocation = self.replace.key(self.key(id));
        invocation.arg(codec::encode(expected)).arg(value).arg(ttl);
        self.run("replace", invocation.invoke_async::<i64>(&mut connection))
            .await
            .map(drop)
    }

    async fn remove(&self, id: &RecordId) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("DEL");
        command.arg(self.key(id));
        self.run("remove", command.query_async::<i64>(&mut connection))
            .await
            .map(drop)
    }
}

/// A claim's two commands: `SET key tentative NX PX ttl GET`, then `PTTL key`, so the
/// standing entry's time left comes with it in the same round trip (every TTL here was
/// derived from the ledger's clock, so the near cache and the engine can judge the
/// entry without reading this host's wall clock).
fn push_claim(pipeline: &mut redis::Pipeline, key: HotKey<'_>, tentative: &Entry, ttl: Duration) {
    pipeline
        .cmd("SET")
        .arg(&key)
        .arg(codec::encode(tentative))
        .arg("NX")
        .arg("PX")
        .arg(ttl_millis(ttl))
        .arg("GET")
        .cmd("PTTL")
        .arg(&key);
}

/// A record's Redis key, `{prefix}{namespace}:{key}`, written straight into the
/// command that carries it rather than assembled in a `String` of its own first.
struct HotKey<'a> {
    prefix: &'a str,
    id: &'a RecordId,
}

impl redis::ToRedisArgs for HotKey<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write as _;
        let mut arg = out.writer_for_next_arg();
        for part in [
            self.prefix,
            self.id.namespace.as_str(),
            ":",
            self.id.key.as_str(),
        ] {
            // The writer appends to the command's own buffer, which cannot fail.
            let _ = arg.write_all(part.as_bytes());
        }
    }
}

/// An entry's time left from its `PTTL` reply, counted from when the command was sent
/// (Redis read it later, so this errs short). `PTTL` says -2 for a key that expired
/// between the two commands, and -1 for one without a TTL, which onceward never
/// writes: both count as no time left.
fn time_left(pttl_ms: i64, sent_at: Instant) -> Duration {
    u64::try_from(pttl_ms)
        .map(Duration::from_millis)
        .unwrap_or_default()
        .saturating_sub(sent_at.elapsed())
}

/// Redis rejects `PX 0`; sub-millisecond TTLs round up.
fn ttl_millis(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use redis::AsyncCommands as _;
    use redis::ToRedisArgs as _;

    use super::*;
    use crate::domain::{Fingerprint, IdempotencyKey, Namespace};

    const LONG: Duration = Duration::from_secs(60);

    fn id(key: &str) -> RecordId {
        RecordId {
            namespace: Namespace::try_from("test".to_owned()).unwrap(),
            key: IdempotencyKey::try_from(key.to_owned()).unwrap(),
        }
    }

    fn tentative(nonce: u64) -> Entry {
        Entry::tentative(Fingerprint::try_from(b"sha:1".to_vec()).unwrap(), nonce)
    }

    /// A tier on the test Redis (`ONCEWARD_TEST_REDIS_URL`, like the integration
    /// tests) under a key prefix of its own, and a plain connection beside it to read
    /// and write the stored bytes.
    struct TestRedis {
        hot: RedisHotTier,
        raw: redis::aio::MultiplexedConnection,
        prefix: String,
    }

    impl TestRedis {
        async fn new() -> Self {
            let url = std::env::var("ONCEWARD_TEST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
            let prefix = format!("onceward-unit:{:016x}:", rand::random::<u64>());
            let hot = RedisHotTier::new(&RedisOptions {
                url: url.clone(),
                key_prefix: prefix.clone(),
                timeout: Duration::from_secs(5),
                breaker_cooldown: Duration::from_secs(1),
            })
            .unwrap();
            let raw = redis::Client::open(url)
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .expect("the test Redis");
            Self { hot, raw, prefix }
        }

        /// The bytes stored for `id(key)`.
        async fn stored(&self, key: &str) -> Option<Vec<u8>> {
            let raw_key = format!("{}test:{key}", self.prefix);
            self.raw.clone().get(raw_key).await.unwrap()
        }

        /// Stores `bytes` for `id(key)`, as another sidecar might have.
        async fn store(&self, key: &str, bytes: &[u8]) {
            let raw_key = format!("{}test:{key}", self.prefix);
            let () = self.raw.clone().set_ex(raw_key, bytes, 60).await.unwrap();
        }
    }

    /// Needs the test Redis.
    #[tokio::test]
    async fn what_is_stored_is_the_codecs_bytes_and_replace_compares_them() {
        let redis = TestRedis::new().await;
        let hot = &redis.hot;
        assert_eq!(
            hot.claim(&id("k"), &tentative(1), LONG).await.unwrap(),
            None
        );
        assert_eq!(redis.stored("k").await, Some(codec::encode(&tentative(1))));

        let stood = hot
            .claim(&id("k"), &tentative(2), LONG)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stood.entry, tentative(1));
        assert!(
            stood.ttl <= LONG && stood.ttl > LONG / 2,
            "time left {:?}",
            stood.ttl
        );

        // Someone else's tentative entry (another nonce) is left alone.
        let confirmed = Entry::in_progress(tentative(1).fingerprint().clone(), chrono::Utc::now());
        hot.replace(&id("k"), &tentative(2), Some((&confirmed, LONG)))
            .await
            .unwrap();
        assert_eq!(redis.stored("k").await, Some(codec::encode(&tentative(1))));

        hot.replace(&id("k"), &tentative(1), Some((&confirmed, LONG)))
            .await
            .unwrap();
        assert_eq!(redis.stored("k").await, Some(codec::encode(&confirmed)));
        hot.replace(&id("k"), &confirmed, None).await.unwrap();
        assert_eq!(redis.stored("k").await, None);
    }

    /// Needs the test Redis.
    #[tokio::test]
    async fn an_entry_of_a_kind_this_version_does_not_know_stands_and_answers_nothing() {
        let redis = TestRedis::new().await;
        // Kind 4, from a newer version.
        let newer = [0x08, 0x04, 0x12, 0x02, b'f', b'p'];
        redis.store("newer", &newer).await;
        assert!(matches!(
            redis.hot.claim(&id("newer"), &tentative(1), LONG).await,
            Err(CacheError::UnknownKind)
        ));
        assert_eq!(
            redis.stored("newer").await,
            Some(newer.to_vec()),
            "the claim wrote nothing over it"
        );

        // Bytes that are no entry at all are an error, not a miss.
        redis.store("garbage", &[0x08]).await;
        assert!(matches!(
            redis.hot.claim(&id("garbage"), &tentative(1), LONG).await,
            Err(CacheError::Corrupt(_))
        ));
    }

    #[test]
    fn a_hot_key_is_one_argument_of_prefix_namespace_and_key() {
        let id = RecordId {
            namespace: Namespace::try_from("payments".to_owned()).unwrap(),
            key: IdempotencyKey::try_from("order-7".to_owned()).unwrap(),
        };
        let key = HotKey {
            prefix: "ow:",
            id: &id,
        };
        assert_eq!(key.to_redis_args(), [b"ow:payments:order-7".to_vec()]);
    }
}
