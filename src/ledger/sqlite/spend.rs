//! Policies, spend and the audit trail in the embedded ledger, and the spend guard's
//! part of a claim: read in the claim's own write transaction, so the policy it
//! decides by and the debit it makes are the ones that commit with it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqliteRow};

use super::batch::Failure;
use super::json_rows::JsonRows;
use super::sql::{
    DEBIT, DELETE_POLICY, INSERT_EVENTS, REFUND, SELECT_EVENTS, SELECT_POLICIES, SELECT_POLICY,
    SELECT_SPENT, UPSERT_POLICY,
};
use super::{SqliteLedger, classify, clock_now, timestamp};
use crate::domain::{Budget, Limit, Namespace, Policy, Refusal, Spent, Subject};
use crate::ledger::rows::{self, PolicyRow, signed, unsigned};
use crate::ledger::{AuditEvent, LedgerError, NewClaim, SpendStore, internal, micros};

/// A new key's debit, decided before its insert and made after it.
pub(super) struct Debit {
    /// The window's start and end (Unix microseconds).
    window: (i64, i64),
    cost: i64,
}

impl Debit {
    /// The window start the record keeps, so a release refunds to it.
    pub(super) fn window_start(debit: &Option<Debit>) -> Option<i64> {
        debit.as_ref().map(|debit| debit.window.0)
    }
}

/// What the policy says of a claim that would acquire: `Err` refuses it; `Ok` lets it
/// through, with the debit to make for a new key (`new_key`) with a subject under a
/// budget.
pub(super) async fn guard(
    connection: &mut SqliteConnection,
    claim: &NewClaim,
    new_key: bool,
    now: i64,
) -> Result<Result<Option<Debit>, Refusal>, Failure> {
    let row = sqlx::query(SELECT_POLICY)
        .bind(claim.id.namespace.as_str())
        .fetch_optional(&mut *connection)
        .await?;
    let Some((_, policy)) = row.as_ref().map(rows::policy).transpose()? else {
        return Ok(Ok(None));
    };
    if policy.killswitch {
        return Ok(Err(Refusal::Blocked {
            reason: policy.killswitch_reason,
        }));
    }
    let Some(budget) = policy
        .budget
        .filter(|_| new_key && !claim.spend.subject.is_empty())
    else {
        return Ok(Ok(None));
    };
    let window = budget.window_at(now);
    let spent = sqlx::query(SELECT_SPENT)
        .bind(claim.id.namespace.as_str())
        .bind(claim.spend.subject.as_str())
        .bind(window.0)
        .fetch_optional(&mut *connection)
        .await?;
    let (cost, claims) = match spent {
        Some(row) => (
            row.try_get::<i64, _>("cost").map_err(internal)?,
            row.try_get::<i64, _>("claims").map_err(internal)?,
        ),
        None => (0, 0),
    };
    let over = |limit| -> Result<Result<Option<Debit>, Refusal>, Failure> {
        Ok(Err(Refusal::OverBudget {
            limit,
            window_end: timestamp(window.1)?,
        }))
    };
    let cost_after = u128::from(unsigned(cost)) + u128::from(claim.spend.cost);
    if budget.max_cost > 0 && cost_after > u128::from(budget.max_cost) {
        return over(Limit::MaxCost);
    }
    if budget.max_claims > 0 && unsigned(claims) + 1 > budget.max_claims {
        return over(Limit::MaxClaims);
    }
    Ok(Ok(Some(Debit {
        window,
        cost: signed(claim.spend.cost),
    })))
}

/// Debits a claim that was just inserted.
pub(super) async fn debit(
    connection: &mut SqliteConnection,
    claim: &NewClaim,
    debit: &Debit,
) -> Result<(), Failure> {
    sqlx::query(DEBIT)
        .bind(claim.id.namespace.as_str())
        .bind(claim.spend.subject.as_str())
        .bind(debit.window.0)
        .bind(debit.window.1)
        .bind(debit.cost)
        .execute(&mut *connection)
        .await?;
    crate::metrics::spent(&claim.id.namespace, debit.cost as f64);
    Ok(())
}

/// Refunds what a released claim debited, read from its deleted row (`None`: nothing
/// was released). Returns the units refunded.
pub(super) async fn refund(
    connection: &mut SqliteConnection,
    namespace: &Namespace,
    released: Option<SqliteRow>,
) -> Result<i64, LedgerError> {
    let Some(row) = released else {
        return Ok(0);
    };
    let Some(window_start) = row
        .try_get::<Option<i64>, _>("debit_window")
        .map_err(internal)?
    else {
        return Ok(0);
    };
    let cost: i64 = row.try_get("cost").map_err(internal)?;
    sqlx::query(REFUND)
        .bind(namespace.as_str())
        .bind(row.try_get::<&str, _>("subject").map_err(internal)?)
        .bind(window_start)
        .bind(cost)
        .execute(&mut *connection)
        .await
        .map_err(classify)?;
    Ok(cost)
}

#[async_trait::async_trait]
impl SpendStore for SqliteLedger {
    async fn policies(&self) -> Result<Vec<(Namespace, Policy)>, LedgerError> {
        let rows = sqlx::query(SELECT_POLICIES)
            .fetch_all(&self.reader)
            .await
            .map_err(classify)?;
        rows.iter().map(rows::policy).collect()
    }

    async fn set_policy(
        &self,
        namespace: &Namespace,
        policy: &Policy,
        by: &str,
    ) -> Result<(), LedgerError> {
        let mut writer = self.writer.lock().await?;
        let mut tx = writer.begin().await?;
        let statement = if policy.is_empty() {
            sqlx::query(DELETE_POLICY).bind(namespace.as_str())
        } else {
            let row = PolicyRow::from(policy);
            sqlx::query(UPSERT_POLICY)
                .bind(namespace.as_str())
                .bind(row.killswitch)
                .bind(row.killswitch_reason)
                .bind(row.has_budget)
                .bind(row.max_cost)
                .bind(row.max_claims)
                .bind(row.window_micros)
                .bind(row.require_subject)
                .bind(by)
                .bind(clock_now())
        };
        statement.execute(&mut *tx).await.map_err(classify)?;
        tx.commit().await.map_err(classify)
    }

    async fn spent(
        &self,
        namespace: &Namespace,
        subject: &Subject,
        window: Duration,
    ) -> Result<Spent, LedgerError> {
        let budget = Budget {
            max_cost: 0,
            max_claims: 0,
            window,
            require_subject: false,
        };
        let (start, end) = budget.window_at(clock_now());
        let row = sqlx::query(SELECT_SPENT)
            .bind(namespace.as_str())
            .bind(subject.as_str())
            .bind(start)
            .fetch_optional(&self.reader)
            .await
            .map_err(classify)?;
        let (cost, claims) = match row {
            Some(row) => (
                row.try_get("cost").map_err(internal)?,
                row.try_get("claims").map_err(internal)?,
            ),
            None => (0, 0),
        };
        Ok(Spent {
            window_start: timestamp(start)?,
            window_end: timestamp(end)?,
            cost: unsigned(cost),
            claims: unsigned(claims),
        })
    }

    async fn record_events(
        &self,
        events: &[AuditEvent],
        retention: Duration,
    ) -> Result<(), LedgerError> {
        if events.is_empty() {
            return Ok(());
        }
        // One statement, committed as it ends: a second's counted duplicates can be
        // thousands of rows, and each statement is a hand-off to the writer's thread.
        let mut rows = JsonRows::with_capacity(events.len() * 128);
        for event in events {
            rows.row(|row| {
                row.text(event.namespace.as_str())?;
                row.integer(event.at.timestamp_micros());
                row.integer(event.minute().timestamp_micros());
                row.text(&event.key)?;
                row.text(event.subject.as_str())?;
                row.integer(i64::from(event.kind.code()));
                row.integer(signed(event.count));
                row.text(&event.detail)
            })?;
        }
        let mut writer = self.writer.lock().await?;
        sqlx::query(INSERT_EVENTS)
            .bind(rows.finish()?)
            .bind(clock_now().saturating_add(micros(retention)))
            .execute(writer.connection()?)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn events(
        &self,
        namespace: &Namespace,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, LedgerError> {
        let rows = sqlx::query(SELECT_EVENTS)
            .bind(namespace.as_str())
            .bind(since.map_or(i64::MIN, |since| since.timestamp_micros()))
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(classify)?;
        rows.iter().map(|row| rows::event(row, namespace)).collect()
    }
}
