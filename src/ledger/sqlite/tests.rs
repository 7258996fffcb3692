//! The SQLite ledger's own tests: its file, its write-ahead log, reopening it. The rules
//! every ledger keeps are the contract suite's (`tests/it/ledger.rs`), run on this ledger
//! too. Each test gives its ledger a file in a temporary directory of its own.

use super::*;
use crate::domain::{Claimant, Fingerprint, IdempotencyKey, Namespace};

const LEASE: Duration = Duration::from_secs(30);
const ABANDON: Duration = Duration::from_secs(3600);

/// A fresh ledger in its own directory; the directory lives as long as the guard.
async fn ledger() -> (SqliteLedger, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("ledger.db");
    let ledger = SqliteLedger::connect(path.to_str().unwrap(), &SqliteOptions::default())
        .await
        .unwrap();
    (ledger, dir)
}

fn id(key: &str) -> RecordId {
    RecordId {
        namespace: Namespace::try_from("test".to_owned()).unwrap(),
        key: IdempotencyKey::try_from(key.to_owned()).unwrap(),
    }
}

fn fp(bytes: &[u8]) -> Fingerprint {
    Fingerprint::try_from(bytes.to_vec()).unwrap()
}

fn new_claim(key: &str, fingerprint: &[u8], lease: Duration) -> NewClaim {
    NewClaim {
        id: id(key),
        fingerprint: fp(fingerprint),
        lease,
        abandon_after: ABANDON,
        claimant: Claimant::random(),
    }
}

/// Claims and expects to acquire; returns the token and whether it took over.
async fn acquire(ledger: &SqliteLedger, claim: &NewClaim) -> (FencingToken, bool) {
    match ledger.claim(claim).await.unwrap() {
        ClaimDecision::Acquired {
            token, takeover, ..
        } => (token, takeover),
        other => panic!("expected Acquired, got {other:?}"),
    }
}

async fn existing(ledger: &SqliteLedger, claim: &NewClaim) -> Record {
    match ledger.claim(claim).await.unwrap() {
        ClaimDecision::Existing { record, .. } => record,
        other => panic!("expected Existing, got {other:?}"),
    }
}

#[tokio::test]
async fn records_and_the_token_sequence_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let first = {
        let ledger = SqliteLedger::connect(&url, &SqliteOptions::default())
            .await
            .unwrap();
        let (token, _) = acquire(&ledger, &new_claim("k", b"", LEASE)).await;
        ledger.writer.close().await;
        ledger.reader.close().await;
        token
    };
    let ledger = SqliteLedger::connect(&url, &SqliteOptions::default())
        .await
        .unwrap();
    existing(&ledger, &new_claim("k", b"", LEASE)).await;
    let (token, _) = acquire(&ledger, &new_claim("other", b"", LEASE)).await;
    assert!(token > first);
}

#[tokio::test]
async fn acknowledged_writes_are_synced_to_a_write_ahead_log() {
    let (ledger, _dir) = ledger().await;
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(ledger.pool())
        .await
        .unwrap();
    // 2 = FULL: the WAL is synced at every commit, so a commit survives a crash.
    let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(ledger.pool())
        .await
        .unwrap();
    assert_eq!((journal.as_str(), synchronous), ("wal", 2));
}

#[tokio::test]
async fn an_in_memory_database_is_refused() {
    let error = SqliteLedger::connect("sqlite::memory:", &SqliteOptions::default())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("in-memory"), "{error}");
}
