//! How an [`Entry`] is stored in Redis: a small protobuf message, so the format can
//! grow fields without breaking sidecars of an older version sharing the same Redis.
//!
//! The bytes are a contract with those sidecars: every tag below keeps its number and
//! meaning, and the fields this version no longer reads are still written. The golden
//! bytes in the tests pin it.

use chrono::{DateTime, Utc};
use prost::Message as _;

use crate::cache::Entry;
use crate::domain::{Fingerprint, ValidationError};

/// The kind of a stored entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
enum EntryKind {
    /// Unknown (an entry from a newer version); decodes as a miss.
    Unspecified = 0,
    /// [`Entry::Tentative`].
    Tentative = 1,
    /// [`Entry::InProgress`].
    InProgress = 2,
    /// [`Entry::Completed`].
    Completed = 3,
}

/// One stored key, field for field as every version writes it.
#[derive(Clone, PartialEq, prost::Message)]
struct CacheEntry {
    /// See [`EntryKind`].
    #[prost(enumeration = "EntryKind", tag = "1")]
    kind: i32,
    /// The stored (or, for a tentative entry, requested) fingerprint.
    #[prost(bytes = "vec", tag = "2")]
    fingerprint: Vec<u8>,
    /// Completed entries: the stored response.
    #[prost(bytes = "vec", tag = "3")]
    response: Vec<u8>,
    /// Completed entries: completion time, Unix milliseconds.
    #[prost(int64, tag = "4")]
    completed_at_ms: i64,
    /// In-progress entries: lease expiry (ledger clock), Unix milliseconds. This
    /// version judges an entry by its TTL alone (never against its own wall clock);
    /// the field is still written for sidecars of an older version sharing the Redis.
    #[prost(int64, tag = "5")]
    lease_expires_at_ms: i64,
    /// Tentative entries: a random value that makes the entry its writer's own, so
    /// only the writer can replace it.
    #[prost(uint64, tag = "6")]
    nonce: u64,
    /// Completed entries: when the record expires (ledger clock), Unix milliseconds;
    /// 0 if unknown (an entry written by an older version). Like `lease_expires_at_ms`,
    /// written for older sidecars sharing the Redis; this version reads the TTL.
    #[prost(int64, tag = "7")]
    expires_at_ms: i64,
}

/// Why stored bytes are not an entry (of a kind this version knows).
#[derive(Debug, thiserror::Error)]
pub(super) enum Undecodable {
    /// Not a protobuf message of this shape.
    #[error("not a cache entry")]
    Protobuf(#[from] prost::DecodeError),
    /// The fingerprint is not one any sidecar accepts.
    #[error("stored fingerprint invalid")]
    Fingerprint(#[from] ValidationError),
    /// A completed entry's completion time is beyond what a timestamp can hold.
    #[error("completion time {0} ms out of range")]
    CompletedAt(i64),
}

/// The bytes stored for `entry`: exactly what every earlier version writes for it.
pub(super) fn encode(entry: &Entry) -> Vec<u8> {
    let stored = match entry {
        Entry::Tentative { fingerprint, nonce } => CacheEntry {
            kind: EntryKind::Tentative as i32,
            fingerprint: fingerprint.as_bytes().to_vec(),
            nonce: *nonce,
            ..CacheEntry::default()
        },
        Entry::InProgress {
            fingerprint,
            lease_expires_at,
        } => CacheEntry {
            kind: EntryKind::InProgress as i32,
            fingerprint: fingerprint.as_bytes().to_vec(),
            lease_expires_at_ms: lease_expires_at.timestamp_millis(),
            ..CacheEntry::default()
        },
        Entry::Completed {
            fingerprint,
            response,
            completed_at,
            expires_at,
        } => CacheEntry {
            kind: EntryKind::Completed as i32,
            fingerprint: fingerprint.as_bytes().to_vec(),
            response: response.clone(),
            completed_at_ms: completed_at.timestamp_millis(),
            expires_at_ms: expires_at.timestamp_millis(),
            ..CacheEntry::default()
        },
    };
    stored.encode_to_vec()
}

/// The entry stored as `bytes`; `None` if it is of a kind this version does not know
/// (written by a newer one), which is a miss.
///
/// Only what this version reads must make sense: the expiry fields it writes for
/// older sidecars but never reads (`lease_expires_at_ms`, `expires_at_ms`) read as
/// the Unix epoch when they are absent or out of range.
pub(super) fn decode(bytes: &[u8]) -> Result<Option<Entry>, Undecodable> {
    let stored = CacheEntry::decode(bytes)?;
    let unread = |ms| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    Ok(Some(match EntryKind::try_from(stored.kind) {
        Ok(EntryKind::Tentative) => Entry::Tentative {
            fingerprint: Fingerprint::try_from(stored.fingerprint)?,
            nonce: stored.nonce,
        },
        Ok(EntryKind::InProgress) => Entry::InProgress {
            fingerprint: Fingerprint::try_from(stored.fingerprint)?,
            lease_expires_at: unread(stored.lease_expires_at_ms),
        },
        Ok(EntryKind::Completed) => Entry::Completed {
            fingerprint: Fingerprint::try_from(stored.fingerprint)?,
            response: stored.response,
            completed_at: DateTime::from_timestamp_millis(stored.completed_at_ms)
                .ok_or(Undecodable::CompletedAt(stored.completed_at_ms))?,
            expires_at: unread(stored.expires_at_ms),
        },
        Ok(EntryKind::Unspecified) | Err(_) => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden bytes: what this codec's predecessor (the prost message the engine built
    /// itself) wrote for each kind. Older sidecars read exactly these.
    const TENTATIVE: &[u8] = &[
        0x08, 0x01, // 1 kind: TENTATIVE
        0x12, 0x05, b's', b'h', b'a', b':', b'1', // 2 fingerprint
        0x30, 0xef, 0x9b, 0xaf, 0xcd, 0xf8, 0xac, 0xd1, 0x91, 0x01, // 6 nonce
    ];
    const TENTATIVE_WITHOUT_FINGERPRINT: &[u8] = &[
        0x08, 0x01, // 1 kind: TENTATIVE; an empty fingerprint and a zero nonce are omitted
    ];
    const IN_PROGRESS: &[u8] = &[
        0x08, 0x02, // 1 kind: IN_PROGRESS
        0x12, 0x05, b's', b'h', b'a', b':', b'1', // 2 fingerprint
        0x28, 0xfb, 0xd0, 0x95, 0xff, 0xbc, 0x31, // 5 lease_expires_at_ms: 1_700_000_000_123
    ];
    const COMPLETED: &[u8] = &[
        0x08, 0x03, // 1 kind: COMPLETED
        0x12, 0x05, b's', b'h', b'a', b':', b'1', // 2 fingerprint
        0x1a, 0x07, b'c', b'h', b'a', b'r', b'g', b'e', b'd', // 3 response
        0x20, 0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31, // 4 completed_at_ms: 1_700_000_000_000
        0x38, 0x80, 0x88, 0xaf, 0xa8, 0xbd, 0x31, // 7 expires_at_ms: 1_700_086_400_000
    ];
    const COMPLETED_EMPTY: &[u8] = &[
        0x08, 0x03, // 1 kind: COMPLETED; no fingerprint, an empty response
        0x20, 0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31, // 4 completed_at_ms: 1_700_000_000_000
        0x38, 0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31, // 7 expires_at_ms: 1_700_000_000_000
    ];

    fn fingerprint() -> Fingerprint {
        Fingerprint::try_from(b"sha:1".to_vec()).unwrap()
    }

    fn at_ms(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    fn golden() -> [(&'static str, Entry, &'static [u8]); 5] {
        // A lease end with sub-millisecond digits, as a ledger returns it: stored to
        // the millisecond, as before.
        let lease = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        [
            (
                "tentative",
                Entry::tentative(fingerprint(), 0x0123_4567_89ab_cdef),
                TENTATIVE,
            ),
            (
                "tentative without fingerprint",
                Entry::tentative(Fingerprint::default(), 0),
                TENTATIVE_WITHOUT_FINGERPRINT,
            ),
            (
                "in progress",
                Entry::in_progress(fingerprint(), lease),
                IN_PROGRESS,
            ),
            (
                "completed",
                Entry::completed(
                    fingerprint(),
                    b"charged".to_vec(),
                    at_ms(1_700_000_000_000),
                    at_ms(1_700_086_400_000),
                ),
                COMPLETED,
            ),
            (
                "completed, empty",
                Entry::completed(
                    Fingerprint::default(),
                    Vec::new(),
                    at_ms(1_700_000_000_000),
                    at_ms(1_700_000_000_000),
                ),
                COMPLETED_EMPTY,
            ),
        ]
    }

    #[test]
    fn every_kind_is_written_byte_for_byte_as_older_sidecars_read_it() {
        for (name, entry, bytes) in golden() {
            assert_eq!(encode(&entry), bytes, "{name}");
        }
    }

    #[test]
    fn every_kind_reads_back_as_the_entry_it_was_written_from() {
        for (name, entry, bytes) in golden() {
            let decoded = decode(bytes).unwrap();
            assert_eq!(decoded, Some(entry), "{name}");
        }
    }

    #[test]
    fn an_entry_of_a_kind_this_version_does_not_know_is_a_miss() {
        // A kind from a newer version, with fields this version would understand.
        let newer: &[u8] = &[0x08, 0x04, 0x12, 0x02, b'f', b'p'];
        assert_eq!(decode(newer).unwrap(), None);
        // No kind at all (UNSPECIFIED), as an empty value reads.
        assert_eq!(decode(&[]).unwrap(), None);
    }

    #[test]
    fn a_completed_entry_without_an_expiry_from_an_older_version_still_reads() {
        // COMPLETED less its field 7: the expiry is not read, the entry still answers.
        let older = &COMPLETED[..COMPLETED.len() - 7];
        assert_eq!(
            decode(older).unwrap(),
            Some(Entry::Completed {
                fingerprint: fingerprint(),
                response: b"charged".to_vec(),
                completed_at: at_ms(1_700_000_000_000),
                expires_at: DateTime::UNIX_EPOCH,
            })
        );
    }

    #[test]
    fn bytes_that_are_no_entry_are_undecodable() {
        // A truncated message.
        assert!(matches!(
            decode(&IN_PROGRESS[..4]),
            Err(Undecodable::Protobuf(_))
        ));
        // A fingerprint longer than any sidecar accepts.
        let mut long = vec![0x08, 0x03, 0x12, 65];
        long.extend([0xaa; 65]);
        assert!(matches!(decode(&long), Err(Undecodable::Fingerprint(_))));
    }
}
