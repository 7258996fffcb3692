//! Group commit on SQLite: the claims and completions that queued while the writer was
//! busy are written together. Those whose order cannot matter (`bulk`) go in one
//! statement, committed as it ends: usually the whole batch, with one WAL sync. The
//! rest run after it in one `BEGIN IMMEDIATE` transaction.
//!
//! The queue is the shared [`Batcher`] with one writer, as SQLite allows one at a time.
//! Inside that transaction the items run one after another in queue order, each decided
//! by the same rules as a transaction of its own would be, so the second item of a key
//! sees what the first did. Each item writes with one statement at most, which SQLite
//! applies whole or not at all: an item that fails on its own (a stored row that does
//! not decode, a constraint) leaves nothing behind and gets its own error, and the
//! others commit. (A completion's answer is read from the row it has just written; if
//! that fails, the transaction fails rather than commit a completion its caller was
//! not told of.) An error that may have cost the transaction itself (busy, I/O, a
//! full disk, no memory: SQLite may roll a transaction back on its own after those)
//! rolls everything back, and every caller is told UNAVAILABLE: nothing is `Acquired`
//! without a commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::SqliteConnection;

use super::bulk;
use super::connections::{TokenBlock, WriteLock, Writer};
use super::spend::{self, Debit};
use super::sql::{
    COMPLETE, COMPLETED_BY_TOKEN, INSERT_CLAIM, MARK_REENTERED, RECORD_EXISTS, RELEASE_UNHELD,
    RESERVE_TOKENS, SELECT_RECORD, TAKE_OVER,
};
use super::{classify, clock_now, delete_claim, timestamp};
use crate::domain::RecordId;
use crate::ledger::batcher::{BatchOutcome, Batcher};
use crate::ledger::rows::{self, stored_token};
use crate::ledger::{
    ClaimDecision, CompleteDecision, LedgerError, NewClaim, completed_earlier, internal, micros,
    reentry,
};

/// The most claims and completions one transaction carries: bounds how long a batch
/// holds the write lock, and so how long the next one queues. As large as the default
/// `--max-batch-items`, so a `ClaimBatch` or `CompleteBatch` of that size is one
/// transaction.
pub(super) const MAX_BATCH: usize = 1000;

/// A write waiting for its batch.
pub(super) enum Write {
    /// A claim the reader could not answer (a new key, an expired lease, a re-entry).
    Claim(NewClaim),
    /// A completion, with the token as stored.
    Complete {
        id: RecordId,
        token: i64,
        response: Vec<u8>,
        retention: Duration,
    },
}

/// What a write decided.
pub(super) enum Written {
    Claim(ClaimDecision),
    Complete(CompleteDecision),
}

/// The write queue: one writer, taking what queued while the last batch ran. A claim
/// whose caller gave up while its batch ran is released (`RELEASE_UNHELD`): nobody was
/// told of it, and it must not hold its key until the lease runs out (rule 5 of docs/PROTOCOL.md).
pub(super) fn spawn_writer(writer: Arc<Writer>) -> Batcher<Write, Written> {
    let release_writer = writer.clone();
    let undelivered = move |write: Write, written: Written| {
        if let (Write::Claim(claim), Written::Claim(ClaimDecision::Acquired { token, .. })) =
            (write, written)
        {
            tokio::spawn(release_unheld(release_writer.clone(), claim.id, token));
        }
    };
    let run = move |mut batch: Vec<Write>| {
        let writer = writer.clone();
        async move {
            let outcome = write_batch(&writer, &mut batch).await;
            (batch, outcome)
        }
    };
    Batcher::spawn("write", 1, MAX_BATCH, run, undelivered)
}

/// Releases a claim that committed after its caller gave up, unless its claimant has
/// had it back since. If this fails too, the lease runs out as it would have.
async fn release_unheld(writer: Arc<Writer>, id: RecordId, token: crate::domain::FencingToken) {
    let released = delete_claim(&writer, RELEASE_UNHELD, &id, token).await;
    crate::ledger::log_release_of_unheld(&id, token, released);
}

/// How one item failed.
pub(super) enum Failure {
    /// This item alone: nothing of it was written, the others go on.
    Item(LedgerError),
    /// The transaction: nothing commits.
    Transaction(LedgerError),
}

impl From<LedgerError> for Failure {
    fn from(error: LedgerError) -> Self {
        Failure::Item(error)
    }
}

impl From<sqlx::Error> for Failure {
    /// A constraint or a value that does not decode is the item's; anything else
    /// SQLite or the connection reports may have ended the transaction.
    fn from(error: sqlx::Error) -> Self {
        // SQLITE_CONSTRAINT, as the low byte of an extended result code.
        const CONSTRAINT: i32 = 19;
        let item_only = match &error {
            sqlx::Error::Database(db) => db
                .code()
                .and_then(|code| code.parse::<i32>().ok())
                .is_some_and(|code| code & 0xff == CONSTRAINT),
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::Decode(_)
            | sqlx::Error::TypeNotFound { .. } => true,
            _ => false,
        };
        match item_only {
            true => Failure::Item(classify(error)),
            false => Failure::Transaction(transaction_failed(error)),
        }
    }
}

/// A transaction that did not commit: nothing of it was written, so every caller in
/// it may retry.
pub(super) fn transaction_failed(error: sqlx::Error) -> LedgerError {
    LedgerError::Unavailable(Box::new(error))
}

/// Runs `batch`: one result per item, in order, or the failure of the whole batch. The
/// order-free items go first, in one statement committed on its own (`bulk`); the
/// rest, one by one in queue order, in one transaction after it. If that transaction
/// fails, only its items fail: the bulk statement's have committed, and their answers
/// stand.
pub(super) async fn write_batch(writer: &Writer, batch: &mut [Write]) -> BatchOutcome<Written> {
    let mut writer = writer.lock().await?;
    let alone = alone_in_batch(batch);
    let mut results: Vec<Option<Result<Written, LedgerError>>> =
        (0..batch.len()).map(|_| None).collect();
    {
        let (connection, block) = writer.parts()?;
        if let Err(error) = bulk_writes(connection, batch, &alone, block, &mut results).await {
            // Nothing of the statement committed; a block it reserved did, but the
            // next batch may as well start afresh.
            block.retire();
            return Err(error);
        }
    }
    let rest: Vec<usize> = (0..batch.len())
        .filter(|&index| results[index].is_none())
        .collect();
    if !rest.is_empty() {
        // The claims decided one by one take tokens reserved for them alone, which
        // moves the sequence on from the block.
        if rest
            .iter()
            .any(|&index| matches!(batch[index], Write::Claim(_)))
        {
            writer.parts()?.1.retire();
        }
        if let Err(error) = one_by_one(&mut writer, batch, &rest, &mut results).await {
            for &index in &rest {
                results[index] = Some(Err(error.for_another_caller()));
            }
        }
    }
    Ok(results
        .into_iter()
        .map(|result| result.unwrap_or_else(|| Err(internal("a write went undecided"))))
        .collect())
}

/// Decides the items `rest` names one by one, in queue order, in one write transaction
/// (a key that stood, a repeated key, a guarded claim, a completion the bulk statement
/// did not match); the error if the transaction failed, and then nothing of it stands.
async fn one_by_one(
    writer: &mut WriteLock<'_>,
    batch: &mut [Write],
    rest: &[usize],
    results: &mut [Option<Result<Written, LedgerError>>],
) -> Result<(), LedgerError> {
    let mut tx = writer.begin().await?;
    let claims = rest
        .iter()
        .filter(|&&index| matches!(batch[index], Write::Claim(_)))
        .count();
    let mut tokens = TokenRange::reserve(&mut tx, claims).await?;
    for &index in rest {
        let written = match &mut batch[index] {
            Write::Claim(claim) => claim_one(&mut tx, claim, &mut tokens)
                .await
                .map(Written::Claim),
            Write::Complete {
                id,
                token,
                response,
                retention,
            } => complete_one(&mut tx, id, *token, std::mem::take(response), *retention)
                .await
                .map(Written::Complete),
        };
        results[index] = match written {
            Ok(written) => Some(Ok(written)),
            Err(Failure::Item(error)) => Some(Err(error)),
            // Dropping the transaction rolls it back.
            Err(Failure::Transaction(error)) => return Err(error),
        };
    }
    tx.commit().await.map_err(transaction_failed)
}

/// The items whose key no other item of the batch names: the order they run in
/// cannot matter, so the bulk statements may take them.
fn alone_in_batch(batch: &[Write]) -> Vec<bool> {
    fn id(write: &Write) -> &RecordId {
        match write {
            Write::Claim(claim) => &claim.id,
            Write::Complete { id, .. } => id,
        }
    }
    let mut count: HashMap<&RecordId, usize> = HashMap::with_capacity(batch.len());
    for write in batch {
        *count.entry(id(write)).or_default() += 1;
    }
    batch.iter().map(|write| count[id(write)] == 1).collect()
}

/// Runs the bulk statements for the items `alone` names (claims outside any policy,
/// and completions) and records what they decided; what they leave undecided goes one
/// by one afterwards.
async fn bulk_writes(
    connection: &mut SqliteConnection,
    batch: &mut [Write],
    alone: &[bool],
    block: &mut TokenBlock,
    results: &mut [Option<Result<Written, LedgerError>>],
) -> Result<(), LedgerError> {
    let now = clock_now();
    let mut claims = Vec::new();
    let mut completions = Vec::new();
    for (index, write) in batch.iter_mut().enumerate() {
        if !alone[index] {
            continue;
        }
        match write {
            Write::Claim(claim) if !claim.guarded => claims.push(bulk::BulkClaim {
                index,
                claim,
                token: 0,
            }),
            Write::Claim(_) => {}
            Write::Complete {
                id,
                token,
                response,
                retention,
            } => completions.push(bulk::BulkCompletion {
                index,
                id,
                token: *token,
                response: std::mem::take(response),
                retention: *retention,
            }),
        }
    }
    let mut sequence_end = 0;
    if !claims.is_empty() {
        let (first, last_reserved) = block.take(connection, claims.len()).await?;
        for (token, claim) in (first..).zip(claims.iter_mut()) {
            claim.token = token;
        }
        sequence_end = last_reserved;
    }
    let decided = bulk::write(connection, &claims, &mut completions, now, sequence_end).await?;
    for (index, decision) in decided.claims {
        results[index] = Some(Ok(Written::Claim(decision)));
    }
    let completed = decided.completions;
    let mut responses = Vec::new();
    for completion in completions {
        if !completed.contains_key(&completion.index) {
            responses.push((completion.index, completion.response));
        }
    }
    for (index, decision) in completed {
        results[index] = Some(Ok(Written::Complete(decision)));
    }
    drop(claims);
    // The completions that matched nothing are decided one by one: they need their
    // response back.
    for (index, response) in responses {
        if let Write::Complete { response: slot, .. } = &mut batch[index] {
            *slot = response;
        }
    }
    Ok(())
}

/// The fencing tokens a batch may hand out, reserved with one statement in its
/// transaction: one per claim, in queue order. A claim that acquires nothing leaves
/// its token unused, a gap in the sequence; tokens only need to increase.
struct TokenRange {
    next: i64,
    end: i64,
}

impl TokenRange {
    async fn reserve(
        connection: &mut SqliteConnection,
        claims: usize,
    ) -> Result<Self, LedgerError> {
        if claims == 0 {
            return Ok(Self { next: 0, end: 0 });
        }
        let count = i64::try_from(claims).map_err(internal)?;
        let last: i64 = sqlx::query_scalar(RESERVE_TOKENS)
            .bind(count)
            .fetch_one(&mut *connection)
            .await
            .map_err(transaction_failed)?;
        Ok(Self {
            next: last - count + 1,
            end: last + 1,
        })
    }

    /// The next unused token; it stays unused until [`Self::used`].
    fn peek(&self) -> Result<i64, LedgerError> {
        match self.next < self.end {
            true => Ok(self.next),
            false => Err(internal("a batch ran out of reserved fencing tokens")),
        }
    }

    fn used(&mut self) {
        self.next += 1;
    }
}

/// One claim, in the batch's transaction: the key's first claim is inserted; a key
/// that stands is re-entered by its own claimant, taken over if its lease ran out, or
/// reported.
async fn claim_one(
    connection: &mut SqliteConnection,
    claim: &NewClaim,
    tokens: &mut TokenRange,
) -> Result<ClaimDecision, Failure> {
    let (namespace, key) = (claim.id.namespace.as_str(), claim.id.key.as_str());
    let now = clock_now();
    let now_at = timestamp(now)?;
    let lease_expires_at = now.saturating_add(micros(claim.lease));
    let expires_at = lease_expires_at.saturating_add(micros(claim.abandon_after));
    // Checked before anything is written, so no answer fails after its write.
    let lease_expires = timestamp(lease_expires_at)?;
    let token = tokens.peek()?;

    // A namespace that may have a policy: a new key meets the killswitch and the
    // budget before its insert, and is debited with it.
    let mut debit = None;
    if claim.guarded && !record_exists(connection, claim).await? {
        match spend::guard(connection, claim, true, now).await? {
            Ok(new_debit) => debit = new_debit,
            Err(refusal) => {
                return Ok(ClaimDecision::Refused {
                    refusal,
                    now: now_at,
                });
            }
        }
    }

    let inserted = sqlx::query(INSERT_CLAIM)
        .bind(namespace)
        .bind(key)
        .bind(claim.fingerprint.as_bytes())
        .bind(token)
        .bind(now)
        .bind(lease_expires_at)
        .bind(expires_at)
        .bind(claim.claimant.as_bytes())
        .bind(claim.spend.subject.as_str())
        .bind(i64::try_from(claim.spend.cost).unwrap_or(i64::MAX))
        .bind(Debit::window_start(&debit))
        .execute(&mut *connection)
        .await?;
    if inserted.rows_affected() == 1 {
        if let Some(debit) = &debit {
            spend::debit(connection, claim, debit).await?;
        }
        tokens.used();
        return Ok(ClaimDecision::Acquired {
            token: stored_token(token)?,
            lease_expires_at: lease_expires,
            takeover: false,
            fingerprint: claim.fingerprint.clone(),
            now: now_at,
        });
    }

    let row = sqlx::query(SELECT_RECORD)
        .bind(namespace)
        .bind(key)
        .fetch_optional(&mut *connection)
        .await?
        .ok_or_else(|| internal("a conflicting row vanished under the write lock"))?;
    let record = rows::record(&row)?;
    let holder = rows::holder(&row)?;
    // The statements below name the holder's token as it is stored.
    let old_token: i64 = row.try_get("fencing_token").map_err(internal)?;
    if let Some(own) = reentry(&record, holder.token, holder.claimant, claim, now_at) {
        sqlx::query(MARK_REENTERED)
            .bind(namespace)
            .bind(key)
            .bind(old_token)
            .execute(&mut *connection)
            .await?;
        return Ok(own);
    }
    if !record.takeable_by(&claim.fingerprint, now_at) {
        return Ok(ClaimDecision::Existing {
            record,
            now: now_at,
        });
    }
    if claim.guarded {
        // A takeover is a new ACQUIRED: the killswitch blocks it; it debits nothing.
        if let Err(refusal) = spend::guard(connection, claim, false, now).await? {
            return Ok(ClaimDecision::Refused {
                refusal,
                now: now_at,
            });
        }
    }
    let fingerprint = record.into_takeover_fingerprint(&claim.fingerprint);
    let taken = sqlx::query(TAKE_OVER)
        .bind(namespace)
        .bind(key)
        .bind(old_token)
        .bind(token)
        .bind(fingerprint.as_bytes())
        .bind(lease_expires_at)
        .bind(expires_at)
        .bind(now)
        .bind(claim.claimant.as_bytes())
        .execute(&mut *connection)
        .await?;
    if taken.rows_affected() != 1 {
        return Err(internal("takeover lost a row held under the write lock").into());
    }
    tokens.used();
    Ok(ClaimDecision::Acquired {
        token: stored_token(token)?,
        lease_expires_at: lease_expires,
        takeover: true,
        fingerprint,
        now: now_at,
    })
}

/// Whether `claim`'s key has a record, read under the write lock.
async fn record_exists(
    connection: &mut SqliteConnection,
    claim: &NewClaim,
) -> Result<bool, Failure> {
    Ok(sqlx::query_scalar(RECORD_EXISTS)
        .bind(claim.id.namespace.as_str())
        .bind(claim.id.key.as_str())
        .fetch_one(&mut *connection)
        .await?)
}

/// One completion, in the batch's transaction: the claim held by `token` is completed,
/// or what the key holds decides (a retry of a completion that happened, or not the
/// holder's).
async fn complete_one(
    connection: &mut SqliteConnection,
    id: &RecordId,
    token: i64,
    response: Vec<u8>,
    retention: Duration,
) -> Result<CompleteDecision, Failure> {
    let now = clock_now();
    let now_at = timestamp(now)?;
    let expires_at = now.saturating_add(micros(retention));
    // Checked before anything is written, so no answer fails after its write.
    timestamp(expires_at)?;
    let completed = sqlx::query(COMPLETE)
        .bind(id.namespace.as_str())
        .bind(id.key.as_str())
        .bind(token)
        .bind(&response)
        .bind(now)
        .bind(expires_at)
        .fetch_optional(&mut *connection)
        .await?;
    if let Some(row) = completed {
        // The row is written: an answer that cannot be read from it (a stored
        // fingerprint no claim could have written) must not commit untold.
        return rows::completed(&row, response, now_at).map_err(Failure::Transaction);
    }
    let stored = sqlx::query(COMPLETED_BY_TOKEN)
        .bind(id.namespace.as_str())
        .bind(id.key.as_str())
        .bind(token)
        .fetch_optional(&mut *connection)
        .await?
        .map(|row| rows::stored_completion(&row, now_at))
        .transpose()?;
    Ok(completed_earlier(stored, token))
}
