//! The Redis hot tier: one multiplexed connection shared by every request (commands
//! pipeline automatically), every command bounded by a timeout, and a circuit breaker.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use prost::Message as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{CacheEntry, CacheError, Cached, CircuitBreaker, HotTier};
use crate::domain::RecordId;
use crate::metrics;

/// Replaces the key's value only if it still holds the caller's tentative entry:
/// `ARGV[1]` expected, `ARGV[2]` replacement ("" deletes), `ARGV[3]` TTL in ms.
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
                self.breaker.record_failure();
                metrics::cache_error(op);
                tracing::debug!(op, error = %error, "hot tier command failed");
                Err(CacheError::Command(Box::new(error)))
            }
            Err(_) => {
                self.breaker.record_failure();
                metrics::cache_error(op);
                tracing::debug!(op, "hot tier command timed out");
                Err(CacheError::Timeout)
            }
        }
    }
}

#[async_trait]
impl HotTier for RedisHotTier {
    async fn claim(
        &self,
        id: &RecordId,
        tentative: &CacheEntry,
        ttl: Duration,
    ) -> Result<Option<Cached>, CacheError> {
        let mut connection = self.connection.clone();
        // The standing entry's time left comes with it, in the same round trip: every
        // TTL here was derived from the ledger's clock, so the near cache and the
        // engine can judge the entry without reading this host's wall clock.
        let mut pipeline = redis::pipe();
        pipeline
            .cmd("SET")
            .arg(self.key(id))
            .arg(tentative.encode_to_vec())
            .arg("NX")
            .arg("PX")
            .arg(ttl_millis(ttl))
            .arg("GET")
            .cmd("PTTL")
            .arg(self.key(id));
        let sent_at = Instant::now();
        let (previous, left_ms): (Option<Vec<u8>>, i64) = self
            .run("claim", pipeline.query_async(&mut connection))
            .await?;
        let Some(bytes) = previous else {
            return Ok(None);
        };
        let entry = CacheEntry::decode(bytes.as_slice()).map_err(CacheError::Corrupt)?;
        Ok(Some(Cached {
            entry,
            ttl: time_left(left_ms, sent_at),
        }))
    }

    async fn put(
        &self,
        id: &RecordId,
        entry: &CacheEntry,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("SET");
        command
            .arg(self.key(id))
            .arg(entry.encode_to_vec())
            .arg("PX")
            .arg(ttl_millis(ttl));
        self.run("put", command.query_async::<()>(&mut connection))
            .await
    }

    async fn replace(
        &self,
        id: &RecordId,
        expected: &CacheEntry,
        replacement: Option<(&CacheEntry, Duration)>,
    ) -> Result<(), CacheError> {
        let mut connection = self.connection.clone();
        let (value, ttl) = match replacement {
            Some((entry, ttl)) => (entry.encode_to_vec(), ttl_millis(ttl)),
            None => (Vec::new(), 0),
        };
        let mut invocation = self.replace.key(self.key(id));
        invocation.arg(expected.encode_to_vec()).arg(value).arg(ttl);
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
    use redis::ToRedisArgs as _;

    use super::*;
    use crate::domain::{IdempotencyKey, Namespace};

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
