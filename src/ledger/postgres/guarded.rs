//! The claims of namespaces that may have a policy: decided one after another, in
//! the order they queued, by `onceward_claim_guarded` (the spend guard's migration),
//! which reads the policy in the same transaction as each insert and debit. The
//! rows that stood go back to the claim rounds, which read them as for any claim.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};

use super::sql::CLAIM_GUARDED;
use super::{db_now, fetch_all_retrying};
use crate::domain::{Limit, Refusal};
use crate::ledger::rows::{stored_fingerprint, stored_token};
use crate::ledger::{ClaimDecision, LedgerError, NewClaim, internal, micros};

/// The function's verdicts.
const ACQUIRED: i16 = 1;
const STOOD: i16 = 2;
const BLOCKED: i16 = 3;
const OVER_MAX_COST: i16 = 4;
const OVER_MAX_CLAIMS: i16 = 5;

/// Decides the claims of `round` (distinct keys, in queue order) and records what
/// was decided; returns the claims whose row stood, for the caller to read.
pub(super) async fn guarded_round(
    connection: &mut PgConnection,
    claims: &[NewClaim],
    round: &[usize],
    decisions: &mut [Option<ClaimDecision>],
) -> Result<Vec<usize>, LedgerError> {
    if round.is_empty() {
        return Ok(Vec::new());
    }
    let each = |field: fn(&NewClaim) -> &str| -> Vec<&str> {
        round.iter().map(|&i| field(&claims[i])).collect()
    };
    let namespaces = each(|c| c.id.namespace.as_str());
    let keys = each(|c| c.id.key.as_str());
    let subjects = each(|c| c.spend.subject.as_str());
    let fingerprints: Vec<&[u8]> = round
        .iter()
        .map(|&i| claims[i].fingerprint.as_bytes())
        .collect();
    let claimants: Vec<&[u8]> = round
        .iter()
        .map(|&i| claims[i].claimant.as_bytes())
        .collect();
    let leases: Vec<i64> = round.iter().map(|&i| micros(claims[i].lease)).collect();
    let abandon_after: Vec<i64> = round
        .iter()
        .map(|&i| micros(claims[i].abandon_after))
        .collect();
    // Validated at the edge to fit; saturating keeps a stray one over every limit.
    let costs: Vec<i64> = round
        .iter()
        .map(|&i| i64::try_from(claims[i].spend.cost).unwrap_or(i64::MAX))
        .collect();
    let rows = fetch_all_retrying(connection, || {
        sqlx::query(CLAIM_GUARDED)
            .bind(&namespaces)
            .bind(&keys)
            .bind(&fingerprints)
            .bind(&leases)
            .bind(&abandon_after)
            .bind(&claimants)
            .bind(&subjects)
            .bind(&costs)
    })
    .await?;

    let mut stood = Vec::new();
    for row in rows {
        let item: i32 = row.try_get("item").map_err(internal)?;
        let i = usize::try_from(item - 1)
            .ok()
            .and_then(|position| round.get(position).copied())
            .ok_or_else(|| internal("the guarded claim returned an item it was not sent"))?;
        match decide(&row)? {
            Some((decision, debited)) => {
                if debited > 0 {
                    crate::metrics::spent(&claims[i].id.namespace, debited as f64);
                }
                decisions[i] = Some(decision);
            }
            None => stood.push(i),
        }
    }
    Ok(stood)
}

/// What one row of the function decided, with the units it debited; `None`: a row
/// stood.
fn decide(row: &PgRow) -> Result<Option<(ClaimDecision, i64)>, LedgerError> {
    let now = db_now(row)?;
    let verdict: i16 = row.try_get("verdict").map_err(internal)?;
    let refused = |refusal| Ok(Some((ClaimDecision::Refused { refusal, now }, 0)));
    let window_end =
        || -> Result<DateTime<Utc>, LedgerError> { row.try_get("window_ends").map_err(internal) };
    match verdict {
        ACQUIRED => Ok(Some((
            ClaimDecision::Acquired {
                token: stored_token(row.try_get("token").map_err(internal)?)?,
                lease_expires_at: row.try_get("lease_ends").map_err(internal)?,
                takeover: row.try_get("took_over").map_err(internal)?,
                fingerprint: stored_fingerprint(
                    row.try_get("stored_fingerprint").map_err(internal)?,
                )?,
                now,
            },
            row.try_get("debited").map_err(internal)?,
        ))),
        STOOD => Ok(None),
        BLOCKED => refused(Refusal::Blocked {
            reason: row.try_get("detail").map_err(internal)?,
        }),
        OVER_MAX_COST => refused(Refusal::OverBudget {
            limit: Limit::MaxCost,
            window_end: window_end()?,
        }),
        OVER_MAX_CLAIMS => refused(Refusal::OverBudget {
            limit: Limit::MaxClaims,
            window_end: window_end()?,
        }),
        other => Err(internal(format!(
            "the guarded claim returned verdict {other}"
        ))),
    }
}
