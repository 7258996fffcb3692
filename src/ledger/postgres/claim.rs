//! The claim batch: the first claim of each key in one upsert, the rows that stood
//! read back in one select, and the rest (repeated keys, rows that changed in
//! between) in further rounds; and the release of a claim that committed after its
//! caller gave up.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgPool};

use super::guarded::guarded_round;
use super::sql::{CLAIM_BATCH, MARK_REENTERED, RELEASE_UNHELD, SELECT_RECORDS};
use super::{classify, db_now, delete_claim, fetch_all_retrying, key_order};
use crate::domain::{FencingToken, Record, RecordId};
use crate::ledger::batcher::BatchOutcome;
use crate::ledger::rows::{self, stored_fingerprint, stored_token};
use crate::ledger::{ClaimDecision, LedgerError, NewClaim, db_token, internal, micros, reentry};

/// How many times a claim re-reads when the row it conflicted with changed under it
/// (released, deleted, or its lease ran out between two statements).
const CLAIM_ATTEMPTS: usize = 4;

/// Releases a claim that committed after its caller gave up (its ledger timeout fired,
/// or its RPC was cancelled, while the batch ran): the caller was told UNAVAILABLE or
/// nothing, so nobody holds the claim, and without this its key would answer
/// IN_PROGRESS until the lease ran out (rule 5 of docs/PROTOCOL.md: never a claim in limbo). Unless
/// the caller's retry already had it back through its claimant: then it is held, and
/// stays. If this fails too, the lease runs out as it would have.
pub(super) async fn release_unheld_claim(pool: PgPool, id: RecordId, token: FencingToken) {
    let Some(db_token) = db_token(token) else {
        return;
    };
    let released = delete_claim(&pool, RELEASE_UNHELD, &id, db_token).await;
    crate::ledger::log_release_of_unheld(&id, token, released);
}

/// Runs one batch of claims: the first claim of each key in one upsert, the rows
/// that stood read back in one select, and the rest (repeated keys, rows that changed
/// in between) in further rounds.
pub(super) async fn claim_batch(
    connection: &mut PgConnection,
    claims: &[NewClaim],
) -> BatchOutcome<ClaimDecision> {
    let Rounds {
        decisions,
        last_seen,
        failed,
    } = claim_rounds(connection, claims).await;
    if let Some(error) = failed {
        // A later round failed. What an earlier one decided stands — an acquired claim
        // is committed, and answering it with the error would leave it held by nobody —
        // and the rest share the failure.
        if decisions.iter().all(Option::is_none) {
            return Err(error);
        }
        return Ok(decisions
            .into_iter()
            .map(|decided| decided.ok_or_else(|| error.for_another_caller()))
            .collect());
    }

    // Contention kept changing a row: report what stood last (the caller retries on
    // IN_PROGRESS) rather than spin.
    Ok(decisions
        .into_iter()
        .zip(last_seen)
        .map(|(decided, last_seen)| {
            decided
                .or(last_seen)
                .ok_or_else(|| internal("the claim kept conflicting with a row that vanished"))
        })
        .collect())
}

/// What the rounds of a claim batch decided.
struct Rounds {
    /// Each claim's decision, as its round made it.
    decisions: Vec<Option<ClaimDecision>>,
    /// For a claim that kept meeting a row that changed under it, what stood last.
    last_seen: Vec<Option<ClaimDecision>>,
    /// The failure that ended the rounds early: what was decided before it stands.
    failed: Option<LedgerError>,
}

/// The rounds of `claim_batch`: what each decided, and whether one failed.
async fn claim_rounds(connection: &mut PgConnection, claims: &[NewClaim]) -> Rounds {
    let mut decisions = vec![None; claims.len()];
    let mut last_seen = vec![None; claims.len()];
    let failed = run_rounds(connection, claims, &mut decisions, &mut last_seen)
        .await
        .err();
    Rounds {
        decisions,
        last_seen,
        failed,
    }
}

/// Runs the rounds, recording each claim's decision as it is made (so that a failing
/// round cannot take back what an earlier one committed), and for a claim that keeps
/// meeting a changing row, what stood last.
async fn run_rounds(
    connection: &mut PgConnection,
    claims: &[NewClaim],
    decisions: &mut [Option<ClaimDecision>],
    last_seen: &mut [Option<ClaimDecision>],
) -> Result<(), LedgerError> {
    let mut pending: Vec<usize> = (0..claims.len()).collect();
    let mut per_key: HashMap<&RecordId, usize> = HashMap::new();
    for claim in claims {
        *per_key.entry(&claim.id).or_default() += 1;
    }
    let most_repeated = per_key.values().copied().max().unwrap_or(1);
    let mut rounds_left = CLAIM_ATTEMPTS + most_repeated;

    while !pending.is_empty() && rounds_left > 0 {
        rounds_left -= 1;
        // One row per key and statement: an upsert may not touch a row twice.
        let mut seen = HashSet::new();
        let (round, later): (Vec<usize>, Vec<usize>) =
            pending.iter().partition(|&&i| seen.insert(&claims[i].id));
        // Claims in a namespace that may have a policy are decided by it, in the
        // order they queued (a batch's items one after another); the rest in one upsert.
        let (guarded, plain): (Vec<usize>, Vec<usize>) =
            round.into_iter().partition(|&i| claims[i].guarded);
        let mut stood = upsert_round(connection, claims, plain, decisions).await?;
        stood.extend(guarded_round(connection, claims, &guarded, decisions).await?);

        // The rows that stood, read in a new statement (a new snapshot): one that was
        // released, deleted, or whose lease ran out meanwhile is claimed again.
        let mut retry = Vec::new();
        let mut reentries = Vec::new();
        if !stood.is_empty() {
            let standing = read_records(connection, stood.iter().map(|&i| &claims[i].id)).await?;
            for i in stood {
                let claim = &claims[i];
                match standing.get(&claim.id) {
                    None => retry.push(i),
                    Some(standing) => {
                        if let Some(own) = standing.reentered_by(claim) {
                            reentries.push((i, own));
                            continue;
                        }
                        let Standing { record, now, .. } = standing;
                        let existing = ClaimDecision::Existing {
                            record: record.clone(),
                            now: *now,
                        };
                        if record.takeable_by(&claim.fingerprint, *now) {
                            last_seen[i] = Some(existing);
                            retry.push(i);
                        } else {
                            decisions[i] = Some(existing);
                        }
                    }
                }
            }
        }
        retry.extend(mark_reentered(connection, claims, reentries, decisions).await?);
        pending = retry.into_iter().chain(later).collect();
    }
    Ok(())
}

/// The claims of `round` (distinct keys) in one upsert: each new key inserted, each
/// expired lease taken over, and those that acquired decided. Returns the claims whose
/// row stood.
async fn upsert_round(
    connection: &mut PgConnection,
    claims: &[NewClaim],
    mut round: Vec<usize>,
    decisions: &mut [Option<ClaimDecision>],
) -> Result<Vec<usize>, LedgerError> {
    if round.is_empty() {
        return Ok(Vec::new());
    }
    round.sort_by(|&a, &b| key_order(&claims[a].id).cmp(&key_order(&claims[b].id)));
    let namespaces: Vec<&str> = round
        .iter()
        .map(|&i| claims[i].id.namespace.as_str())
        .collect();
    let keys: Vec<&str> = round.iter().map(|&i| claims[i].id.key.as_str()).collect();
    let fingerprints: Vec<&[u8]> = round
        .iter()
        .map(|&i| claims[i].fingerprint.as_bytes())
        .collect();
    let leases: Vec<i64> = round.iter().map(|&i| micros(claims[i].lease)).collect();
    let abandon_after: Vec<i64> = round
        .iter()
        .map(|&i| micros(claims[i].abandon_after))
        .collect();
    let claimants: Vec<&[u8]> = round
        .iter()
        .map(|&i| claims[i].claimant.as_bytes())
        .collect();
    let rows = fetch_all_retrying(connection, || {
        sqlx::query(CLAIM_BATCH)
            .bind(&namespaces)
            .bind(&keys)
            .bind(&fingerprints)
            .bind(&leases)
            .bind(&abandon_after)
            .bind(&claimants)
    })
    .await?;
    // Each returned row is a claim of this round that acquired its key, found in the
    // round by key (it is sorted); the claims left over stood.
    let mut acquired = vec![false; round.len()];
    for row in rows {
        let key = (
            row.try_get::<&str, _>("namespace").map_err(internal)?,
            row.try_get::<&str, _>("key").map_err(internal)?,
        );
        let position = round
            .binary_search_by(|&i| key_order(&claims[i].id).cmp(&key))
            .map_err(|_| internal("the claim batch returned a key it was not sent"))?;
        acquired[position] = true;
        decisions[round[position]] = Some(ClaimDecision::Acquired {
            token: stored_token(row.try_get("fencing_token").map_err(internal)?)?,
            lease_expires_at: row.try_get("lease_expires_at").map_err(internal)?,
            takeover: row.try_get("takeover").map_err(internal)?,
            fingerprint: stored_fingerprint(row.try_get("fingerprint").map_err(internal)?)?,
            now: db_now(&row)?,
        });
    }
    Ok(round
        .iter()
        .zip(&acquired)
        .filter(|(_, acquired)| !**acquired)
        .map(|(&i, _)| i)
        .collect())
}

/// Hands claims back to their claimants: marks each row (so no release of an unheld
/// claim deletes it afterwards, see `RELEASE_UNHELD`) and records the decision. Returns
/// the claims whose row changed since it was read, to be decided again.
async fn mark_reentered(
    connection: &mut PgConnection,
    claims: &[NewClaim],
    mut reentries: Vec<(usize, ClaimDecision)>,
    decisions: &mut [Option<ClaimDecision>],
) -> Result<Vec<usize>, LedgerError> {
    if reentries.is_empty() {
        return Ok(Vec::new());
    }
    reentries.sort_by(|(a, _), (b, _)| key_order(&claims[*a].id).cmp(&key_order(&claims[*b].id)));
    let mut namespaces = Vec::with_capacity(reentries.len());
    let mut keys = Vec::with_capacity(reentries.len());
    let mut tokens = Vec::with_capacity(reentries.len());
    for (i, own) in &reentries {
        let ClaimDecision::Acquired { token, .. } = own else {
            return Err(internal("a claim handed back is not acquired"));
        };
        namespaces.push(claims[*i].id.namespace.as_str());
        keys.push(claims[*i].id.key.as_str());
        tokens.push(token.get() as i64);
    }
    let rows = fetch_all_retrying(connection, || {
        sqlx::query(MARK_REENTERED)
            .bind(&namespaces)
            .bind(&keys)
            .bind(&tokens)
    })
    .await?;
    let mut marked = HashMap::with_capacity(rows.len());
    for row in rows {
        let key = (
            row.try_get::<String, _>("namespace").map_err(internal)?,
            row.try_get::<String, _>("key").map_err(internal)?,
        );
        marked.insert(key, db_now(&row)?);
    }
    let mut changed = Vec::new();
    for (i, mut own) in reentries {
        let id = &claims[i].id;
        let key = (id.namespace.as_str().to_owned(), id.key.as_str().to_owned());
        match (marked.get(&key), &mut own) {
            (Some(marked_at), ClaimDecision::Acquired { now, .. }) => {
                *now = *marked_at;
                decisions[i] = Some(own);
            }
            _ => changed.push(i),
        }
    }
    Ok(changed)
}

/// A row that stood in a claim's way, as the claim path reads it.
struct Standing {
    record: Record,
    token: FencingToken,
    claimant: Vec<u8>,
    /// The database clock when it was read.
    now: DateTime<Utc>,
}

impl Standing {
    /// `Acquired` again, with the same token and lease, if this is a live claim that
    /// `claim`'s own claimant made (a retry whose first answer was lost) and the
    /// fingerprints agree; `None` otherwise.
    fn reentered_by(&self, claim: &NewClaim) -> Option<ClaimDecision> {
        reentry(&self.record, self.token, &self.claimant, claim, self.now)
    }
}

/// Reads the records of `ids` in one statement, with the database clock.
async fn read_records<'a>(
    connection: &mut PgConnection,
    ids: impl Iterator<Item = &'a RecordId>,
) -> Result<HashMap<RecordId, Standing>, LedgerError> {
    let (namespaces, keys): (Vec<&str>, Vec<&str>) = ids
        .map(|id| (id.namespace.as_str(), id.key.as_str()))
        .unzip();
    let rows = sqlx::query(SELECT_RECORDS)
        .bind(namespaces)
        .bind(keys)
        .fetch_all(connection)
        .await
        .map_err(classify)?;
    let mut records = HashMap::with_capacity(rows.len());
    for row in rows {
        let holder = rows::holder(&row)?;
        let standing = Standing {
            record: rows::record(&row)?,
            token: holder.token,
            claimant: holder.claimant.to_vec(),
            now: db_now(&row)?,
        };
        records.insert(standing.record.id.clone(), standing);
    }
    Ok(records)
}
