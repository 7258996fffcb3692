//! Policies, spend and the audit trail on Postgres.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::sql::{
    DELETE_POLICY, INSERT_EVENTS, SELECT_EVENTS, SELECT_POLICIES, SELECT_SPENT, UPSERT_POLICY,
};
use super::{PostgresLedger, once_more_if_the_connection_fails};
use crate::domain::{Namespace, Policy, Spent, Subject};
use crate::ledger::rows::{self, PolicyRow, signed, unsigned};
use crate::ledger::{AuditEvent, LedgerError, SpendStore, internal, micros};

#[async_trait::async_trait]
impl SpendStore for PostgresLedger {
    async fn policies(&self) -> Result<Vec<(Namespace, Policy)>, LedgerError> {
        let rows = once_more_if_the_connection_fails(|| {
            sqlx::query(SELECT_POLICIES).fetch_all(&self.pool)
        })
        .await?;
        rows.iter().map(rows::policy).collect()
    }

    async fn set_policy(
        &self,
        namespace: &Namespace,
        policy: &Policy,
        by: &str,
    ) -> Result<(), LedgerError> {
        if policy.is_empty() {
            once_more_if_the_connection_fails(|| {
                sqlx::query(DELETE_POLICY)
                    .bind(namespace.as_str())
                    .execute(&self.pool)
            })
            .await?;
            return Ok(());
        }
        let row = PolicyRow::from(policy);
        once_more_if_the_connection_fails(|| {
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
                .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    async fn spent(
        &self,
        namespace: &Namespace,
        subject: &Subject,
        window: Duration,
    ) -> Result<Spent, LedgerError> {
        let row = once_more_if_the_connection_fails(|| {
            sqlx::query(SELECT_SPENT)
                .bind(namespace.as_str())
                .bind(subject.as_str())
                .bind(micros(window).max(1))
                .fetch_one(&self.pool)
        })
        .await?;
        Ok(Spent {
            window_start: row.try_get("window_start").map_err(internal)?,
            window_end: row.try_get("window_end").map_err(internal)?,
            cost: unsigned(row.try_get("cost").map_err(internal)?),
            claims: unsigned(row.try_get("claims").map_err(internal)?),
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
        let namespaces: Vec<&str> = events.iter().map(|e| e.namespace.as_str()).collect();
        let ats: Vec<DateTime<Utc>> = events.iter().map(|e| e.at).collect();
        let minutes: Vec<DateTime<Utc>> = events.iter().map(AuditEvent::minute).collect();
        let keys: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
        let subjects: Vec<&str> = events.iter().map(|e| e.subject.as_str()).collect();
        let kinds: Vec<i16> = events.iter().map(|e| e.kind.code()).collect();
        let counts: Vec<i64> = events.iter().map(|e| signed(e.count)).collect();
        let details: Vec<&str> = events.iter().map(|e| e.detail.as_str()).collect();
        once_more_if_the_connection_fails(|| {
            sqlx::query(INSERT_EVENTS)
                .bind(&namespaces)
                .bind(&ats)
                .bind(&minutes)
                .bind(&keys)
                .bind(&subjects)
                .bind(&kinds)
                .bind(&counts)
                .bind(&details)
                .bind(micros(retention))
                .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    async fn events(
        &self,
        namespace: &Namespace,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>, LedgerError> {
        let rows = once_more_if_the_connection_fails(|| {
            sqlx::query(SELECT_EVENTS)
                .bind(namespace.as_str())
                .bind(since)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
        })
        .await?;
        rows.iter().map(|row| rows::event(row, namespace)).collect()
    }
}
