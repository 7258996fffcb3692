//! Stored rows read back. Timestamps are stored as Unix microseconds; a row that does
//! not parse is an internal error, never a guess.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::domain::{Fingerprint, Record};
use crate::ledger::{LedgerError, internal, stored_fingerprint, stored_identity};

/// A stored Unix-microsecond timestamp.
pub(super) fn timestamp(micros: i64) -> Result<DateTime<Utc>, LedgerError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| internal(format!("timestamp {micros} out of range")))
}

fn optional_timestamp(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>, LedgerError> {
    row.try_get::<Option<i64>, _>(column)
        .map_err(internal)?
        .map(timestamp)
        .transpose()
}

pub(super) fn record_from_row(row: &SqliteRow) -> Result<Record, LedgerError> {
    let (id, state) = stored_identity(
        row.try_get("namespace").map_err(internal)?,
        row.try_get("key").map_err(internal)?,
        row.try_get("state").map_err(internal)?,
    )?;
    Ok(Record {
        id,
        state,
        fingerprint: fingerprint_from_row(row)?,
        response: row.try_get("response").map_err(internal)?,
        created_at: timestamp(row.try_get("created_at").map_err(internal)?)?,
        completed_at: optional_timestamp(row, "completed_at")?,
        lease_expires_at: optional_timestamp(row, "lease_expires_at")?,
        expires_at: timestamp(row.try_get("expires_at").map_err(internal)?)?,
    })
}

pub(super) fn fingerprint_from_row(row: &SqliteRow) -> Result<Fingerprint, LedgerError> {
    stored_fingerprint(row.try_get("fingerprint").map_err(internal)?)
}
