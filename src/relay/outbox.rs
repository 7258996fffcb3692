//! The outbox table in the service's own Postgres: its name, its schema (`--migrate`),
//! and the statements the relay runs on it.
//!
//! A round takes the oldest unpublished rows with `FOR UPDATE SKIP LOCKED` inside one
//! transaction and holds their locks while it publishes them: another relay on the same
//! table skips them, so no row is published by two relays at the same time. The
//! transaction commits the marks (`published_at`, or a failed attempt) after the
//! broker's acks; a relay killed before that commit leaves its rows unpublished, and
//! the next round publishes them again, under the same `Nats-Msg-Id`.

use std::fmt;

use sqlx::{PgConnection, Postgres, Transaction};

/// The longest identifier Postgres keeps whole.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// The outbox table's name, checked to be a plain (optionally schema-qualified)
/// lowercase identifier, so that it can be written into SQL as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName(String);

impl TableName {
    /// Parses `--table`: `name` or `schema.name`, each `[a-z_][a-z0-9_]*`, at most 63
    /// bytes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let valid_part = |part: &str| {
            !part.is_empty()
                && part.len() <= MAX_IDENTIFIER_BYTES
                && part.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        let parts: Vec<&str> = text.split('.').collect();
        if parts.len() <= 2 && parts.iter().all(|part| valid_part(part)) {
            Ok(Self(text.to_owned()))
        } else {
            Err(format!(
                "{text:?} is not a table name: use lowercase letters, digits and _ \
                 (not starting with a digit, at most {MAX_IDENTIFIER_BYTES} bytes), \
                 optionally after a schema and a dot, like onceward_outbox or app.outbox"
            ))
        }
    }

    /// The name as written in SQL.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name of the partial index of unpublished rows.
    fn pending_index(&self) -> String {
        let table = self.0.rsplit('.').next().unwrap_or(&self.0);
        let mut name = format!("{table}_pending");
        name.truncate(MAX_IDENTIFIER_BYTES);
        name
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One row taken for publishing.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    /// The row's id: the message's `Nats-Msg-Id` and `Onceward-Outbox-Id`.
    pub id: i64,
    /// The subject it is published on.
    pub topic: String,
    /// The service's key for it (`Onceward-Message-Key`).
    pub message_key: String,
    /// The message body.
    pub payload: Vec<u8>,
    /// The row's `headers` jsonb, as JSON text.
    pub headers: String,
    /// When the service wrote it (the database's clock).
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A row whose publish failed, and why.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The row.
    pub id: i64,
    /// What the broker said, kept in `last_error`.
    pub error: String,
}

/// The unpublished, live rows: how many, and how old the oldest is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backlog {
    /// Unpublished rows that are not dead.
    pub rows: i64,
    /// The oldest one's age, in seconds (0 when there is none).
    pub lag_seconds: f64,
}

/// Creates the table (and its partial index of unpublished rows) if it is missing.
pub async fn migrate(conn: &mut PgConnection, table: &TableName) -> sqlx::Result<()> {
    let statements = [
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (\
             id bigserial PRIMARY KEY, \
             topic text NOT NULL, \
             message_key text NOT NULL, \
             payload bytea NOT NULL, \
             headers jsonb NOT NULL DEFAULT '{{}}', \
             created_at timestamptz NOT NULL DEFAULT now(), \
             published_at timestamptz, \
             attempts int NOT NULL DEFAULT 0, \
             last_error text, \
             dead_at timestamptz)"
        ),
        // The relay's every query reads the unpublished rows in id order: once most rows
        // are published, this index is all it touches.
        format!(
            "CREATE INDEX IF NOT EXISTS {index} ON {table} (id) \
             WHERE published_at IS NULL AND dead_at IS NULL",
            index = table.pending_index()
        ),
    ];
    for statement in statements {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Whether the table exists, so that a relay started before `--migrate` says so.
pub async fn exists(conn: &mut PgConnection, table: &TableName) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table.as_str())
        .fetch_one(conn)
        .await
}

/// Locks and returns up to `limit` of the oldest unpublished rows that no other relay
/// holds.
pub async fn take(
    tx: &mut Transaction<'_, Postgres>,
    table: &TableName,
    limit: u32,
) -> sqlx::Result<Vec<OutboxRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, topic, message_key, payload, headers::text AS headers, created_at \
         FROM {table} WHERE published_at IS NULL AND dead_at IS NULL \
         ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
    )))
    .bind(i64::from(limit))
    .fetch_all(&mut **tx)
    .await
}

/// Marks rows the broker acknowledged.
pub async fn mark_published(
    tx: &mut Transaction<'_, Postgres>,
    table: &TableName,
    ids: &[i64],
) -> sqlx::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {table} SET published_at = now() WHERE id = ANY($1)"
    )))
    .bind(ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Counts a failed attempt for each row and stamps `dead_at` on those that reached
/// `max_attempts`; returns how many died.
pub async fn record_failures(
    tx: &mut Transaction<'_, Postgres>,
    table: &TableName,
    failures: &[Failure],
    max_attempts: u32,
) -> sqlx::Result<u64> {
    if failures.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = failures.iter().map(|failure| failure.id).collect();
    let errors: Vec<&str> = failures
        .iter()
        .map(|failure| failure.error.as_str())
        .collect();
    let died: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "WITH failed AS (\
           UPDATE {table} AS o SET attempts = o.attempts + 1, last_error = f.error, \
             dead_at = CASE WHEN o.attempts + 1 >= $3 THEN now() END \
           FROM unnest($1::bigint[], $2::text[]) AS f(id, error) \
           WHERE o.id = f.id RETURNING o.dead_at) \
         SELECT count(*) FILTER (WHERE dead_at IS NOT NULL) FROM failed"
    )))
    .bind(&ids)
    .bind(&errors)
    .bind(i64::from(max_attempts))
    .fetch_one(&mut **tx)
    .await?;
    Ok(died.max(0) as u64)
}

/// How many rows wait to be published, and the age of the oldest, on the database's
/// clock (zero when none wait).
pub async fn backlog(conn: &mut PgConnection, table: &TableName) -> sqlx::Result<Backlog> {
    let (rows, lag_seconds): (i64, f64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*), \
         COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 \
         FROM {table} WHERE published_at IS NULL AND dead_at IS NULL"
    )))
    .fetch_one(conn)
    .await?;
    Ok(Backlog {
        rows,
        lag_seconds: lag_seconds.max(0.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_name_is_a_plain_identifier_or_schema_and_identifier() {
        for good in ["onceward_outbox", "_x", "app.outbox", "o2"] {
            assert!(TableName::parse(good).is_ok(), "{good}");
        }
        let long = "a".repeat(64);
        for bad in [
            "",
            "Outbox",
            "2outbox",
            "outbox; DROP TABLE x",
            "a.b.c",
            "a.",
            "\"quoted\"",
            long.as_str(),
        ] {
            let error = TableName::parse(bad).expect_err(bad);
            assert!(error.contains("is not a table name"), "{error}");
        }
    }

    #[test]
    fn the_pending_index_is_named_after_the_table_without_its_schema() {
        let table = TableName::parse("app.outbox").expect("valid");
        assert_eq!(table.pending_index(), "outbox_pending");
    }
}
