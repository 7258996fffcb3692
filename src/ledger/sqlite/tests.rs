//! The SQLite ledger's own tests: its file, its write-ahead log, reopening it. The rules
//! every ledger keeps are the contract suite's (`tests/it/ledger.rs`), run on this ledger
//! too. Each test gives its ledger a file in a temporary directory of its own.

use super::batch::{self, Write, Written};
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
        spend: Default::default(),
        guarded: false,
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
    let mut writer = ledger.writer.lock().await.unwrap();
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(writer.connection().unwrap())
        .await
        .unwrap();
    // 2 = FULL: the WAL is synced at every commit, so a commit survives a crash.
    let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(writer.connection().unwrap())
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

/// A ledger with `options` in its own directory, and its file's path.
async fn ledger_with(
    options: SqliteOptions,
) -> (SqliteLedger, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let ledger = SqliteLedger::connect(path.to_str().unwrap(), &options)
        .await
        .unwrap();
    (ledger, path, dir)
}

/// Another process's connection to the same file, holding SQLite's write lock (with a
/// write of its own in flight) until it is dropped or committed.
async fn hold_the_write_lock(path: &std::path::Path) -> sqlx::SqliteConnection {
    use sqlx::Connection as _;

    let options = SqliteConnectOptions::new().filename(path);
    let mut other = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::raw_sql(
        "BEGIN IMMEDIATE; \
         UPDATE onceward_fencing_tokens SET last_value = last_value + 1 WHERE id = 1",
    )
    .execute(&mut other)
    .await
    .unwrap();
    other
}

/// Frames in the write-ahead log: each commit appends at least one per page it changed.
fn wal_frames(path: &std::path::Path) -> u64 {
    const HEADER: u64 = 32;
    const FRAME: u64 = 24 + 4096;
    let wal = path.with_extension("db-wal");
    let bytes = std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0);
    bytes.saturating_sub(HEADER) / FRAME
}

#[tokio::test]
async fn a_lookup_and_a_duplicate_claim_answer_while_another_connection_holds_the_write_lock() {
    let (ledger, path, _dir) = ledger_with(SqliteOptions::default()).await;
    let done = new_claim("done", b"fp", LEASE);
    let (token, _) = acquire(&ledger, &done).await;
    ledger
        .complete(&done.id, token, b"charged".to_vec(), ABANDON)
        .await
        .unwrap();
    let held = new_claim("held", b"fp", LEASE);
    acquire(&ledger, &held).await;

    let other = hold_the_write_lock(&path).await;
    let quickly = Duration::from_secs(1);
    let record = tokio::time::timeout(quickly, ledger.lookup(&done.id))
        .await
        .expect("a lookup does not wait for the writer")
        .unwrap()
        .expect("found");
    assert_eq!(record.response.as_deref(), Some(&b"charged"[..]));
    let duplicate = new_claim("done", b"fp", LEASE);
    let replayed = tokio::time::timeout(quickly, ledger.claim(&duplicate))
        .await
        .expect("a duplicate does not wait for the writer")
        .unwrap();
    assert!(
        matches!(replayed, ClaimDecision::Existing { record, .. } if record.response.as_deref() == Some(&b"charged"[..]))
    );
    let in_progress = tokio::time::timeout(quickly, ledger.claim(&new_claim("held", b"fp", LEASE)))
        .await
        .expect("a claim on a live lease does not wait for the writer")
        .unwrap();
    assert!(matches!(in_progress, ClaimDecision::Existing { .. }));
    // A new key must write, so it does wait: the lock really is held.
    let fresh = new_claim("new", b"", LEASE);
    let waited = tokio::time::timeout(Duration::from_millis(300), ledger.claim(&fresh));
    assert!(
        waited.await.is_err(),
        "a new key was acquired without the write lock"
    );
    drop(other);
    acquire(&ledger, &new_claim("after", b"", LEASE)).await;
}

#[tokio::test]
async fn claims_that_queue_while_a_transaction_waits_share_the_next_commit() {
    let (ledger, path, _dir) = ledger_with(SqliteOptions::default()).await;
    acquire(&ledger, &new_claim("warm", b"", LEASE)).await;
    let frames_before = wal_frames(&path);

    // The first claim takes the writer and waits for the lock; the rest queue behind.
    let other = hold_the_write_lock(&path).await;
    let mut claims = tokio::task::JoinSet::new();
    for i in 0..40 {
        let ledger = ledger.clone();
        claims
            .spawn(async move { acquire(&ledger, &new_claim(&format!("k{i}"), b"", LEASE)).await });
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut { other })
        .await
        .unwrap();
    let mut tokens: Vec<FencingToken> = claims
        .join_all()
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 40, "every claim has a token of its own");

    // One commit per claim would append at least 40 frames.
    let frames = wal_frames(&path) - frames_before;
    assert!(frames < 20, "40 claims appended {frames} WAL frames");
}

#[tokio::test]
async fn writes_of_one_key_in_one_batch_are_decided_in_queue_order() {
    let (ledger, _dir) = ledger().await;
    let first = new_claim("k", b"fp", LEASE);
    let retry = NewClaim {
        claimant: first.claimant.clone(),
        ..first.clone()
    };
    let other = new_claim("k", b"fp", LEASE);
    let mismatch = new_claim("k", b"other", LEASE);
    let mut batch = vec![
        Write::Claim(first),
        Write::Claim(retry),
        Write::Claim(other),
        Write::Claim(mismatch),
    ];
    let results = batch::write_batch(&ledger.writer, &mut batch)
        .await
        .unwrap();
    let decisions: Vec<ClaimDecision> = results
        .into_iter()
        .map(|r| match r.unwrap() {
            Written::Claim(decision) => decision,
            Written::Complete(_) => panic!("a claim answered as a completion"),
        })
        .collect();
    let ClaimDecision::Acquired { token, .. } = &decisions[0] else {
        panic!("the first claim acquires: {:?}", decisions[0]);
    };
    assert!(
        matches!(&decisions[1], ClaimDecision::Acquired { token: again, takeover: false, .. } if again == token),
        "the claimant's retry gets the same token: {:?}",
        decisions[1]
    );
    for later in &decisions[2..] {
        assert!(matches!(later, ClaimDecision::Existing { .. }), "{later:?}");
    }

    // A completion, then a claim of the same key, in one batch.
    let token = *token;
    let mut batch = vec![
        Write::Complete {
            id: id("k"),
            token: db_token(token).unwrap(),
            response: b"done".to_vec(),
            retention: ABANDON,
        },
        Write::Claim(new_claim("k", b"fp", LEASE)),
    ];
    let mut results = batch::write_batch(&ledger.writer, &mut batch)
        .await
        .unwrap()
        .into_iter();
    assert!(matches!(
        results.next(),
        Some(Ok(Written::Complete(CompleteDecision::Completed { .. })))
    ));
    match results.next() {
        Some(Ok(Written::Claim(ClaimDecision::Existing { record, .. }))) => {
            assert_eq!(
                record.response.as_deref(),
                Some(&b"done"[..]),
                "the claim saw the completion before it"
            );
        }
        _ => panic!("the claim after the completion replays it"),
    }
}

#[tokio::test]
async fn an_item_that_fails_alone_fails_alone() {
    let (ledger, _dir) = ledger().await;
    // A row no claim could have written: its fingerprint is longer than a request may send.
    sqlx::query(
        "INSERT INTO onceward_records (namespace, key, state, fingerprint, fencing_token, \
         created_at, lease_expires_at, expires_at) VALUES ('test', 'bad', 1, ?1, 1, 0, 1, 1)",
    )
    .bind(vec![7u8; 100])
    .execute(ledger.writer.lock().await.unwrap().connection().unwrap())
    .await
    .unwrap();
    let mut batch = vec![
        Write::Claim(new_claim("before", b"", LEASE)),
        Write::Claim(new_claim("bad", b"", LEASE)),
        Write::Claim(new_claim("after", b"", LEASE)),
    ];
    let results = batch::write_batch(&ledger.writer, &mut batch)
        .await
        .unwrap();
    assert!(matches!(
        results[0],
        Ok(Written::Claim(ClaimDecision::Acquired { .. }))
    ));
    assert!(matches!(results[1], Err(LedgerError::Internal(_))));
    assert!(matches!(
        results[2],
        Ok(Written::Claim(ClaimDecision::Acquired { .. }))
    ));
    for key in ["before", "after"] {
        assert!(
            ledger.lookup(&id(key)).await.unwrap().is_some(),
            "{key} committed"
        );
    }
}

#[tokio::test]
async fn when_the_one_by_one_transaction_fails_only_its_items_fail() {
    let (ledger, _dir) = ledger().await;
    // A live claim whose completion's answer cannot be read back from its row: the
    // fingerprint is longer than a request may send.
    sqlx::query(
        "INSERT INTO onceward_records (namespace, key, state, fingerprint, fencing_token, \
         created_at, lease_expires_at, expires_at) \
         VALUES ('test', 'bad', 1, ?1, 1, 0, 9000000000000000, 9000000000000000)",
    )
    .bind(vec![7u8; 100])
    .execute(ledger.writer.lock().await.unwrap().connection().unwrap())
    .await
    .unwrap();
    let mut batch = vec![
        // Alone in the batch: the bulk statement decides it, and commits it.
        Write::Claim(new_claim("fresh", b"", LEASE)),
        // Named twice: decided one by one, where the completion fails the transaction.
        Write::Complete {
            id: id("bad"),
            token: 1,
            response: b"r".to_vec(),
            retention: ABANDON,
        },
        Write::Claim(new_claim("bad", b"", LEASE)),
    ];
    let results = batch::write_batch(&ledger.writer, &mut batch)
        .await
        .unwrap();
    assert!(
        matches!(
            results[0],
            Ok(Written::Claim(ClaimDecision::Acquired { .. }))
        ),
        "the committed claim keeps its answer"
    );
    assert!(results[1].is_err() && results[2].is_err());
    assert!(ledger.lookup(&id("fresh")).await.unwrap().is_some());
    let state: i64 = sqlx::query_scalar("SELECT state FROM onceward_records WHERE key = 'bad'")
        .fetch_one(ledger.writer.lock().await.unwrap().connection().unwrap())
        .await
        .unwrap();
    assert_eq!(state, 1, "the failed completion was rolled back");
}

#[tokio::test]
async fn a_transaction_that_fails_fails_every_caller_in_it_and_acquires_nothing() {
    let options = SqliteOptions {
        busy_timeout: Duration::from_millis(200),
        ..SqliteOptions::default()
    };
    let (ledger, path, _dir) = ledger_with(options).await;
    let other = hold_the_write_lock(&path).await;
    let mut claims = tokio::task::JoinSet::new();
    for key in ["a", "b", "c"] {
        let ledger = ledger.clone();
        claims.spawn(async move { ledger.claim(&new_claim(key, b"", LEASE)).await });
    }
    for result in claims.join_all().await {
        assert!(
            matches!(result, Err(LedgerError::Unavailable(_))),
            "{result:?}"
        );
    }
    drop(other);
    for key in ["a", "b", "c"] {
        assert!(
            ledger.lookup(&id(key)).await.unwrap().is_none(),
            "{key} was written"
        );
    }
    acquire(&ledger, &new_claim("a", b"", LEASE)).await;
}

#[tokio::test]
async fn tokens_stay_above_a_reservation_made_by_another_process() {
    let (ledger, path, _dir) = ledger_with(SqliteOptions::default()).await;
    // The first claim reserves a block of tokens for this process.
    acquire(&ledger, &new_claim("first", b"", LEASE)).await;
    // Another process on the same file reserves past the block.
    let mut other = hold_the_write_lock(&path).await;
    let reserved: i64 = sqlx::query_scalar(
        "UPDATE onceward_fencing_tokens SET last_value = last_value + 1000000 WHERE id = 1 \
         RETURNING last_value",
    )
    .fetch_one(&mut other)
    .await
    .unwrap();
    sqlx::raw_sql("COMMIT").execute(&mut other).await.unwrap();

    for key in ["second", "third"] {
        let (token, _) = acquire(&ledger, &new_claim(key, b"", LEASE)).await;
        let token = db_token(token).unwrap();
        assert!(
            token > reserved,
            "token {token} is not above the other process's {reserved}"
        );
    }
}

#[tokio::test]
async fn completing_fresh_claims_rewrites_the_pages_they_were_claimed_on() {
    let (ledger, path, _dir) = ledger_with(SqliteOptions::default()).await;
    // A table much larger than one batch, its keys spread over many pages.
    sqlx::raw_sql(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) \
         INSERT INTO onceward_records (namespace, key, state, fingerprint, fencing_token, \
         response, created_at, completed_at, expires_at) \
         SELECT 'test', hex(randomblob(16)), 2, x'', i, randomblob(40), 0, 0, 9000000000000000 \
         FROM n",
    )
    .execute(ledger.writer.lock().await.unwrap().connection().unwrap())
    .await
    .unwrap();
    let keys: Vec<String> = (0..100u64)
        .map(|i| format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        .collect();
    let mut claims: Vec<Write> = keys
        .iter()
        .map(|key| Write::Claim(new_claim(key, b"fp", LEASE)))
        .collect();
    let claimed = batch::write_batch(&ledger.writer, &mut claims)
        .await
        .unwrap();
    let mut completions: Vec<Write> = keys
        .iter()
        .zip(claimed)
        .map(|(key, claimed)| match claimed.unwrap() {
            Written::Claim(ClaimDecision::Acquired { token, .. }) => Write::Complete {
                id: id(key),
                token: db_token(token).unwrap(),
                response: b"done".to_vec(),
                retention: ABANDON,
            },
            _ => panic!("a fresh key was not acquired"),
        })
        .collect();

    let frames_before = wal_frames(&path);
    for completed in batch::write_batch(&ledger.writer, &mut completions)
        .await
        .unwrap()
    {
        assert!(matches!(
            completed.unwrap(),
            Written::Complete(CompleteDecision::Completed { .. })
        ));
    }
    // Stored by key, 100 random keys would sit on about as many pages, each written
    // again; stored in claim order, they share the table's last few.
    let frames = wal_frames(&path) - frames_before;
    assert!(
        frames < 20,
        "completing 100 claims appended {frames} WAL frames"
    );
}

#[tokio::test]
async fn a_ledger_from_before_claim_order_keeps_its_records_and_tokens() {
    use sqlx::Connection as _;

    // A ledger made by the migrations before the records were stored in claim order.
    let dir = tempfile::tempdir().unwrap();
    let earlier = dir.path().join("migrations");
    std::fs::create_dir(&earlier).unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for entry in std::fs::read_dir(&all).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name.as_str() < "20261207000002" {
            std::fs::copy(entry.path(), earlier.join(&name)).unwrap();
        }
    }
    let path = dir.path().join("ledger.db");
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let mut connection = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(earlier.as_path())
        .await
        .unwrap()
        .run(&mut connection)
        .await
        .unwrap();
    sqlx::raw_sql(
        "INSERT INTO onceward_records (namespace, key, state, fingerprint, fencing_token, \
         response, created_at, completed_at, lease_expires_at, expires_at, claimant) VALUES \
         ('test', 'done', 2, x'6670', 7, x'636861726765', 1, 2, NULL, 9000000000000000, x''), \
         ('test', 'held', 1, x'6670', 8, NULL, 1, NULL, 9000000000000000, 9000000000000000, \
          x''); \
         UPDATE onceward_fencing_tokens SET last_value = 8 WHERE id = 1",
    )
    .execute(&mut connection)
    .await
    .unwrap();
    connection.close().await.unwrap();

    let ledger = SqliteLedger::connect(path.to_str().unwrap(), &SqliteOptions::default())
        .await
        .unwrap();
    let done = existing(&ledger, &new_claim("done", b"fp", LEASE)).await;
    assert_eq!(done.response.as_deref(), Some(&b"charge"[..]));
    existing(&ledger, &new_claim("held", b"fp", LEASE)).await;
    let completed = ledger
        .complete(&id("held"), FencingToken::new(8), b"ok".to_vec(), ABANDON)
        .await
        .unwrap();
    assert!(matches!(completed, CompleteDecision::Completed { .. }));
    let (token, _) = acquire(&ledger, &new_claim("new", b"", LEASE)).await;
    assert!(db_token(token).unwrap() > 8, "a token was handed out twice");
    // The table is a rowid table now.
    sqlx::query("SELECT rowid FROM onceward_records LIMIT 1")
        .fetch_optional(ledger.writer.lock().await.unwrap().connection().unwrap())
        .await
        .unwrap();
}
