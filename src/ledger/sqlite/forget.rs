//! Forgetting a record in the embedded ledger. It is one sidecar's, so nobody else
//! holds copies to drop.

use super::sql::{FORGET, RECORD_EXISTS};
use super::{SqliteLedger, clock_now};
use crate::domain::RecordId;
use crate::ledger::{Forgotten, LedgerError};

impl SqliteLedger {
    pub(super) async fn forget_record(
        &self,
        id: &RecordId,
        force: bool,
    ) -> Result<Forgotten, LedgerError> {
        let mut writer = self.writer.lock().await?;
        let mut tx = writer.begin().await?;
        let deleted = sqlx::query(FORGET)
            .bind(id.namespace.as_str())
            .bind(id.key.as_str())
            .bind(force)
            .bind(clock_now())
            .execute(&mut *tx)
            .await
            .map_err(super::classify)?
            .rows_affected();
        let exists: bool = if deleted == 0 {
            sqlx::query_scalar(RECORD_EXISTS)
                .bind(id.namespace.as_str())
                .bind(id.key.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(super::classify)?
        } else {
            true
        };
        tx.commit().await.map_err(super::classify)?;
        Ok(match (deleted, exists) {
            (0, true) => Forgotten::Held,
            (0, false) => Forgotten::Absent,
            _ => Forgotten::Deleted,
        })
    }
}
