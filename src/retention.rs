//! The retention job (rule 8 of docs/PROTOCOL.md): deletes expired records in small batches.
//!
//! Batches come back-to-back while they come back full (there is a backlog), and the
//! loop sleeps for the interval only once a batch comes back short. Each batch is one
//! `DELETE … LIMIT n … SKIP LOCKED`, so cleanup never blocks claims for long and any
//! number of sidecars can run it at once without deleting the same row twice.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::ledger::{Ledger, LedgerError};
use crate::metrics;

/// Default rows per batch: small enough that each DELETE holds its row locks briefly.
pub const DEFAULT_BATCH_SIZE: u32 = 1_000;

/// The cleanup job over one ledger.
pub struct Retention {
    ledger: Arc<dyn Ledger>,
    batch_size: u32,
}

impl Retention {
    /// Cleans `ledger` in batches of `batch_size` rows.
    pub fn new(ledger: Arc<dyn Ledger>, batch_size: u32) -> Self {
        Self {
            ledger,
            batch_size: batch_size.max(1),
        }
    }

    /// One pass: deletes batches until one comes back short, or `stop` is cancelled
    /// between two batches. Returns the rows deleted.
    pub async fn run_once(&self, stop: &CancellationToken) -> Result<u64, LedgerError> {
        let mut deleted = 0;
        loop {
            let batch = self.ledger.purge_expired(self.batch_size).await?;
            deleted += batch;
            metrics::cleanup_deleted(batch);
            if batch < u64::from(self.batch_size) || stop.is_cancelled() {
                return Ok(deleted);
            }
        }
    }

    /// Runs a pass every `interval` until `stop` is cancelled. Errors are logged and
    /// the next pass tries again: an unreachable ledger must not end the job.
    pub async fn run(self, interval: Duration, stop: CancellationToken) {
        loop {
            match self.run_once(&stop).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "retention: deleted expired records"),
                Err(error) => tracing::warn!(
                    error = %crate::errors::chain(&error),
                    "retention pass failed; will retry"
                ),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}
