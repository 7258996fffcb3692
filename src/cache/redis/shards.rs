//! Which shard of a Redis Cluster holds a key, and that shard's circuit breaker.
//!
//! A key's hash slot is computed here (CRC16/XMODEM of the key, or of its `{hash tag}`,
//! modulo 16384, as every cluster client does); the slot ranges come from
//! `CLUSTER SLOTS`. A shard is named by its slot range, not by its master's address:
//! when a master fails and its replica is promoted, the range stays and so does its
//! breaker, whose next probe then finds the new master and closes it. Before the ranges
//! are known (the cluster was down when the sidecar started) every key shares one
//! breaker, as with a single Redis.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::CircuitBreaker;

/// Hash slots in a Redis Cluster.
const SLOTS: u16 = 16384;

/// How often the slot ranges are read again while nothing fails (a resharding moves
/// slots between shards; a failover does not change the ranges).
const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// The least time between two reads of the slot ranges after failures.
const REFRESH_AFTER_FAILURE_EVERY: Duration = Duration::from_secs(1);

/// A key's hash slot.
pub fn slot(key: &[u8]) -> u16 {
    crc16_xmodem(hash_tag(key).unwrap_or(key)) % SLOTS
}

/// The part of the key between the first `{` and the next `}`, if not empty: keys
/// with one tag share a slot.
fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&byte| byte == b'{')?;
    let close = key[open + 1..].iter().position(|&byte| byte == b'}')?;
    (close > 0).then(|| &key[open + 1..open + 1 + close])
}

/// CRC16 with the XMODEM polynomial (0x1021), the one Redis Cluster hashes keys with.
fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// One shard: a slot range, the master that served it when last read, and its breaker.
#[derive(Debug, Clone)]
pub struct Shard {
    /// First slot of the range.
    pub start: u16,
    /// Last slot of the range (inclusive).
    pub end: u16,
    /// `host:port` of its master when the ranges were read.
    pub master: String,
    breaker: Arc<CircuitBreaker>,
}

impl Shard {
    /// The range as metrics and logs name the shard, e.g. `0-5460`.
    pub fn name(&self) -> String {
        format!("{}-{}", self.start, self.end)
    }
}

/// The slot ranges of a cluster and a breaker per range.
#[derive(Debug)]
pub struct Shards {
    cooldown: Duration,
    ranges: RwLock<Vec<Shard>>,
    /// For every key before the ranges are known, and for a slot no range covers.
    unmapped: Arc<CircuitBreaker>,
    epoch: Instant,
    /// When the ranges were last read (ms since `epoch`); 0: never.
    read_at_ms: AtomicU64,
    /// A read of the ranges is in flight.
    reading: AtomicBool,
}

impl Shards {
    /// No ranges known yet.
    pub fn new(cooldown: Duration) -> Self {
        Self {
            cooldown,
            ranges: RwLock::new(Vec::new()),
            unmapped: Arc::new(CircuitBreaker::new(cooldown)),
            epoch: Instant::now(),
            read_at_ms: AtomicU64::new(0),
            reading: AtomicBool::new(false),
        }
    }

    /// The breaker of the shard that holds `slot`.
    pub fn breaker(&self, slot: u16) -> Arc<CircuitBreaker> {
        let ranges = self.ranges.read().unwrap_or_else(|e| e.into_inner());
        let at = ranges.partition_point(|shard| shard.end < slot);
        match ranges.get(at) {
            Some(shard) if shard.start <= slot => shard.breaker.clone(),
            _ => self.unmapped.clone(),
        }
    }

    /// The shards as last read.
    pub fn list(&self) -> Vec<Shard> {
        self.ranges
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Takes the ranges `CLUSTER SLOTS` returned; a range that was there before keeps
    /// its breaker (and so its open or closed state).
    pub fn update(&self, mut read: Vec<(u16, u16, String)>) {
        read.sort_unstable_by_key(|(start, _, _)| *start);
        let mut ranges = self.ranges.write().unwrap_or_else(|e| e.into_inner());
        let next = read
            .into_iter()
            .map(|(start, end, master)| {
                let breaker = ranges
                    .iter()
                    .find(|known| known.start == start && known.end == end)
                    .map(|known| known.breaker.clone())
                    .unwrap_or_else(|| {
                        Arc::new(CircuitBreaker::for_shard(
                            self.cooldown,
                            format!("{start}-{end}"),
                        ))
                    });
                Shard {
                    start,
                    end,
                    master,
                    breaker,
                }
            })
            .collect();
        *ranges = next;
        self.read_at_ms.store(self.now_ms(), Ordering::Release);
    }

    /// Whether it is time to read the ranges again (after a failure, at most once a
    /// second; otherwise every 30 s), claiming the read if so: the caller must then
    /// call [`read_done`](Self::read_done).
    pub fn begin_read(&self, after_failure: bool) -> bool {
        let read_at = self.read_at_ms.load(Ordering::Acquire);
        let every = if after_failure || read_at == 0 {
            REFRESH_AFTER_FAILURE_EVERY
        } else {
            REFRESH_EVERY
        };
        if read_at != 0 && self.now_ms().saturating_sub(read_at) < every.as_millis() as u64 {
            return false;
        }
        self.reading
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The read [`begin_read`](Self::begin_read) claimed is over; a failed one is
    /// retried no sooner than a successful one would be.
    pub fn read_done(&self) {
        self.read_at_ms.store(self.now_ms(), Ordering::Release);
        self.reading.store(false, Ordering::Release);
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }
}

/// The `(start, end, master)` of every range in a `CLUSTER SLOTS` reply: an array of
/// `[start, end, [host, port, id, …], replicas…]`.
pub fn parse_cluster_slots(reply: &redis::Value) -> Option<Vec<(u16, u16, String)>> {
    use redis::Value;
    fn int(value: &Value) -> Option<i64> {
        match value {
            Value::Int(int) => Some(*int),
            _ => None,
        }
    }
    fn text(value: &Value) -> Option<String> {
        match value {
            Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
            Value::SimpleString(text) => Some(text.clone()),
            _ => None,
        }
    }
    let Value::Array(entries) = reply else {
        return None;
    };
    entries
        .iter()
        .map(|entry| {
            let Value::Array(fields) = entry else {
                return None;
            };
            let start = u16::try_from(int(fields.first()?)?).ok()?;
            let end = u16::try_from(int(fields.get(1)?)?).ok()?;
            let Value::Array(master) = fields.get(2)? else {
                return None;
            };
            let host = text(master.first()?)?;
            let port = int(master.get(1)?)?;
            Some((start, end, format!("{host}:{port}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_those_redis_computes() {
        // From the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31c3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_eq!(slot(b"foo{}{bar}"), crc16_xmodem(b"foo{}{bar}") % SLOTS);
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
    }

    #[test]
    fn a_range_keeps_its_breaker_across_reads_and_unknown_slots_share_one() {
        let shards = Shards::new(Duration::from_secs(60));
        assert!(Arc::ptr_eq(&shards.breaker(0), &shards.breaker(16383)));
        shards.update(vec![
            (5461, 10922, "b:2".into()),
            (0, 5460, "a:1".into()),
            (10923, 16383, "c:3".into()),
        ]);
        let first = shards.breaker(100);
        first.record_failure(&"test failure");
        assert!(
            !shards.breaker(5460).admit(),
            "one shard's keys share its breaker"
        );
        assert!(
            shards.breaker(5461).admit(),
            "another shard's keys are still admitted"
        );

        // The master changed (a failover); the range did not.
        shards.update(vec![
            (0, 5460, "d:4".into()),
            (5461, 10922, "b:2".into()),
            (10923, 16383, "c:3".into()),
        ]);
        assert!(Arc::ptr_eq(&first, &shards.breaker(0)));
        assert_eq!(shards.list()[0].master, "d:4");
        assert_eq!(shards.list()[0].name(), "0-5460");
    }

    #[test]
    fn a_cluster_slots_reply_gives_each_range_and_its_master() {
        use redis::Value;
        let node = |host: &str, port: i64| {
            Value::Array(vec![
                Value::BulkString(host.into()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(5460),
            node("127.0.0.1", 7000),
            node("127.0.0.1", 7003),
        ])]);
        assert_eq!(
            parse_cluster_slots(&reply),
            Some(vec![(0, 5460, "127.0.0.1:7000".to_owned())])
        );
        assert_eq!(parse_cluster_slots(&Value::Nil), None);
    }
}
