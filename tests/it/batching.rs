//! The Postgres ledger's group commit: claims and completions that arrive together
//! are written in batches (one statement and one commit per batch), and each caller
//! still gets its own answer, the right one.
//!
//! These tests drive the ledger directly on a current-thread runtime, so that the
//! writes a test starts together are all queued before the batch writers run.

use std::time::Duration;

use onceward::domain::{Claimant, FencingToken, Fingerprint, IdempotencyKey, Namespace, RecordId};
use onceward::ledger::{ClaimDecision, CompleteDecision, Ledger, NewClaim};

use crate::harness::*;

const RETENTION: Duration = Duration::from_secs(3600);

fn id(key: &str) -> RecordId {
    RecordId {
        namespace: Namespace::try_from("batching".to_owned()).unwrap(),
        key: IdempotencyKey::try_from(key.to_owned()).unwrap(),
    }
}

fn new_claim(key: &str, lease: Duration) -> NewClaim {
    NewClaim {
        id: id(key),
        fingerprint: Fingerprint::default(),
        lease,
        abandon_after: RETENTION,
        claimant: Claimant::random(),
        spend: Default::default(),
        guarded: false,
    }
}

async fn acquire(ledger: &dyn Ledger, key: &str, lease: Duration) -> FencingToken {
    match ledger.claim(&new_claim(key, lease)).await.expect("claim") {
        ClaimDecision::Acquired { token, .. } => token,
        other => panic!("{key} not acquired: {other:?}"),
    }
}

#[tokio::test]
async fn many_claims_and_completions_queued_together_each_get_their_own_answer() {
    let db = TestDatabase::create().await;
    let ledger = db.ledger().await;
    let mut held = Vec::new();
    for i in 0..20 {
        let key = format!("held-{i}");
        let token = acquire(&*ledger, &key, Duration::from_secs(30)).await;
        held.push((key, token));
    }
    // Queued together (spawned tasks run in turn before the writer): a completion of
    // each held key, every third with a token that is not the holder's; a claim of a
    // new key for each; and a duplicate claim of each.
    let mut completions = tokio::task::JoinSet::new();
    let mut claims = tokio::task::JoinSet::new();
    for (i, (key, token)) in held.iter().enumerate() {
        let token = match i % 3 {
            0 => FencingToken::new(token.get() + 1_000_000),
            _ => *token,
        };
        let (completer, completed) = (ledger.clone(), id(key));
        completions.spawn(async move {
            let response = completed.key.as_str().as_bytes().to_vec();
            let result = completer.complete(&completed, token, response, RETENTION);
            (i, result.await)
        });
        let (ledger, key) = (ledger.clone(), key.clone());
        claims.spawn(async move {
            let fresh = ledger
                .claim(&new_claim(&format!("fresh-{i}"), Duration::from_secs(30)))
                .await;
            let duplicate = ledger
                .claim(&new_claim(&key, Duration::from_secs(30)))
                .await;
            (fresh, duplicate)
        });
    }

    for (i, result) in completions.join_all().await {
        let key = &held[i].0;
        match (i % 3, result.expect("complete")) {
            (0, decision) => assert_eq!(decision, CompleteDecision::NotHolder, "{key}"),
            (_, CompleteDecision::Completed { response, .. }) => {
                assert_eq!(response, key.as_bytes())
            }
            (_, other) => panic!("{key}: {other:?}"),
        }
    }
    for (fresh, duplicate) in claims.join_all().await {
        assert!(
            matches!(fresh, Ok(ClaimDecision::Acquired { .. })),
            "{fresh:?}"
        );
        assert!(
            matches!(duplicate, Ok(ClaimDecision::Existing { .. })),
            "a held or completed key stands: {duplicate:?}"
        );
    }
    for (i, (key, _)) in held.iter().enumerate() {
        let record = ledger.lookup(&id(key)).await.unwrap().expect("record");
        let expected = (i % 3 != 0).then_some(key.as_bytes());
        assert_eq!(record.response.as_deref(), expected, "{key}");
    }
}

#[tokio::test]
async fn a_takeover_racing_the_old_holders_completion_lets_exactly_one_of_them_win() {
    let db = TestDatabase::create().await;
    let ledger = db.ledger().await;
    let old = acquire(&*ledger, "contested", Duration::from_millis(20)).await;
    tokio::time::sleep(Duration::from_millis(40)).await;

    let takeover = new_claim("contested", Duration::from_secs(30));
    let (completed, claimed) = tokio::join!(
        ledger.complete(&takeover.id, old, b"late".to_vec(), RETENTION),
        ledger.claim(&takeover),
    );

    let record = ledger
        .lookup(&id("contested"))
        .await
        .unwrap()
        .expect("record");
    match (completed.expect("complete"), claimed.expect("claim")) {
        (
            CompleteDecision::NotHolder,
            ClaimDecision::Acquired {
                token, takeover, ..
            },
        ) => {
            assert!(takeover && token > old);
            assert_eq!(record.response, None, "the taken-over claim stays open");
        }
        (CompleteDecision::Completed { .. }, ClaimDecision::Existing { record: seen, .. }) => {
            assert_eq!(seen.response.as_deref(), Some(&b"late"[..]));
            assert_eq!(record.response.as_deref(), Some(&b"late"[..]));
        }
        (completed, claimed) => panic!("both or neither won: {completed:?} / {claimed:?}"),
    }
}

#[tokio::test]
async fn a_batch_that_fails_after_a_claim_committed_still_answers_that_claim_acquired() {
    let db = TestDatabase::create().await;
    let ledger = db.ledger().await;
    // Two claims of one key in one batch take two rounds (an upsert may touch a row
    // only once). This trigger fails the second: it refuses a key that already exists.
    db.execute(
        "CREATE FUNCTION refuse_existing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF EXISTS (SELECT 1 FROM onceward_records \
                      WHERE namespace = NEW.namespace AND key = NEW.key) THEN \
             RAISE EXCEPTION 'injected failure'; \
           END IF; \
           RETURN NEW; \
         END $$",
    )
    .await;
    db.execute(
        "CREATE TRIGGER refuse_existing BEFORE INSERT ON onceward_records \
         FOR EACH ROW EXECUTE FUNCTION refuse_existing()",
    )
    .await;

    let twice = new_claim("twice", Duration::from_secs(30));
    let (first, second) = tokio::join!(ledger.claim(&twice), ledger.claim(&twice));

    let record = ledger.lookup(&twice.id).await.unwrap();
    assert!(record.is_some(), "the first round committed its claim");
    let acquired: Vec<_> = [&first, &second]
        .into_iter()
        .filter(|result| matches!(result, Ok(ClaimDecision::Acquired { .. })))
        .collect();
    assert_eq!(
        acquired.len(),
        1,
        "the committed claim is answered, not lost in the batch's failure: {first:?} / {second:?}"
    );
    assert!(
        first.is_err() || second.is_err(),
        "the failed round's claim is told so"
    );
}
