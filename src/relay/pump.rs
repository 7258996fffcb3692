//! The relay's loop: take a batch, publish it in order at `--max-rate`, mark what the
//! broker acknowledged, repeat; wait `--poll-interval` when there is nothing to do or
//! nothing got through.
//!
//! Why each step is safe:
//! - **At least once.** A row is marked published in the transaction that locked it,
//!   committed only after the broker's ack: a relay that dies before the commit leaves
//!   the row unpublished, and it is published again (same `Nats-Msg-Id`, so the
//!   broker's dedup window usually drops the copy; consumers dedup the rest).
//! - **No two relays at once.** Rows are taken `FOR UPDATE SKIP LOCKED` and stay
//!   locked until the marks commit.
//! - **Order.** Rows are sent in id order on one connection; a refused row is retried
//!   in a later round, after rows behind it (it would otherwise block them until it
//!   dies).
//! - **Attempts count refusals, not outages.** A broker that does not answer (down,
//!   restarting) costs no row an attempt, so an outage never kills a backlog: rows die
//!   only of the broker saying no `--max-attempts` times (e.g. no stream for a topic).
//! - **Drain.** Once told to stop, no more of the batch is sent; the acks of what was
//!   sent are awaited and marked, the transaction commits, and the loop ends. Rows not
//!   sent go back to the table unlocked, for the next relay.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::metrics;
use super::outbox::{self, Failure, TableName};
use super::publisher::{PublishError, Publisher};
use super::rate::TokenBucket;

/// What the loop needs besides its publisher and its database.
#[derive(Debug, Clone)]
pub struct PumpSettings {
    /// `--table`.
    pub table: TableName,
    /// `--batch`: rows per round (at most `max_rate`).
    pub batch: u32,
    /// `--max-rate`: publishes per second.
    pub max_rate: u32,
    /// `--max-attempts`: refusals before a row is dead.
    pub max_attempts: u32,
    /// `--poll-interval`: the wait when there is nothing to do.
    pub poll_interval: Duration,
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Rows taken and locked.
    pub taken: usize,
    /// Rows the broker acknowledged, now marked.
    pub published: usize,
    /// Rows the broker refused (an attempt each).
    pub refused: usize,
    /// Publishes the broker did not answer (no attempt counted).
    pub unavailable: usize,
    /// Rows that reached `--max-attempts` in this round.
    pub died: u64,
}

/// The relay's loop over one outbox table.
pub struct Pump {
    pool: PgPool,
    publisher: Arc<dyn Publisher>,
    settings: PumpSettings,
    bucket: TokenBucket,
}

impl Pump {
    /// A loop over `settings.table` in `pool`, publishing through `publisher`.
    pub fn new(pool: PgPool, publisher: Arc<dyn Publisher>, settings: PumpSettings) -> Self {
        let bucket = TokenBucket::new(settings.max_rate, tokio::time::Instant::now());
        Self {
            pool,
            publisher,
            settings,
            bucket,
        }
    }

    /// Runs rounds until `stop` is cancelled, then drains the batch in hand and returns.
    pub async fn run(mut self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            self.measure_backlog().await;
            if !self.publisher.is_connected() {
                self.wait(&stop).await;
                continue;
            }
            match self.round(&stop).await {
                // A full batch that got through: there is likely more, at once.
                Ok(round) if round.taken == self.batch_size() && round.published > 0 => {}
                Ok(_) => self.wait(&stop).await,
                Err(error) => {
                    tracing::warn!(error = %crate::errors::chain(&error), "outbox round failed; retrying");
                    self.wait(&stop).await;
                }
            }
        }
        self.measure_backlog().await;
        tracing::info!("relay stopped");
    }

    /// Rows taken per round: a batch, or a second's worth at `--max-rate` if that is
    /// fewer, so that no round holds its locks for much more than a second.
    fn batch_size(&self) -> usize {
        self.settings.batch.min(self.settings.max_rate).max(1) as usize
    }

    async fn wait(&self, stop: &CancellationToken) {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(self.settings.poll_interval) => {}
        }
    }

    /// One batch: take, send in order, await the acks, mark, commit.
    pub async fn round(&mut self, stop: &CancellationToken) -> Result<Round, sqlx::Error> {
        let table = &self.settings.table;
        let mut tx = self.pool.begin().await?;
        let rows = outbox::take(&mut tx, table, self.batch_size() as u32).await?;
        let mut round = Round {
            taken: rows.len(),
            ..Round::default()
        };
        let mut pending = Vec::with_capacity(rows.len());
        let mut failures = Vec::new();
        for row in &rows {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = self.bucket.take() => {}
            }
            match self.publisher.send(row).await {
                Ok(ack) => pending.push((row.id, ack)),
                Err(PublishError::Refused(error)) => failures.push(Failure { id: row.id, error }),
                Err(PublishError::Unavailable(error)) => {
                    tracing::warn!(%error, "broker unavailable; the rest of the batch waits");
                    round.unavailable += 1;
                    break;
                }
            }
        }
        let (ids, acks): (Vec<i64>, Vec<_>) = pending.into_iter().unzip();
        let mut published = Vec::with_capacity(ids.len());
        let mut duplicates = 0;
        for (id, answer) in ids.into_iter().zip(join_all(acks).await) {
            match answer {
                Ok(acked) => {
                    duplicates += u64::from(acked.duplicate);
                    published.push(id);
                }
                Err(PublishError::Refused(error)) => failures.push(Failure { id, error }),
                Err(PublishError::Unavailable(error)) => {
                    tracing::debug!(id, %error, "no ack");
                    round.unavailable += 1;
                }
            }
        }
        for failure in &failures {
            tracing::warn!(id = failure.id, error = %failure.error, "the broker refused an outbox row");
        }
        outbox::mark_published(&mut tx, table, &published).await?;
        round.died =
            outbox::record_failures(&mut tx, table, &failures, self.settings.max_attempts).await?;
        tx.commit().await?;

        round.published = published.len();
        round.refused = failures.len();
        metrics::published(round.published as u64, duplicates);
        metrics::publish_errors(round.refused as u64, round.unavailable as u64);
        if round.died > 0 {
            tracing::error!(
                rows = round.died,
                max_attempts = self.settings.max_attempts,
                "outbox rows refused --max-attempts times are dead (dead_at, last_error)"
            );
            metrics::dead(round.died);
        }
        Ok(round)
    }

    async fn measure_backlog(&self) {
        let measured = async {
            let mut conn = self.pool.acquire().await?;
            outbox::backlog(&mut conn, &self.settings.table).await
        }
        .await;
        match measured {
            Ok(backlog) => metrics::backlog(backlog.rows, backlog.lag_seconds),
            Err(error) => {
                tracing::warn!(error = %crate::errors::chain(&error), "cannot measure the outbox backlog")
            }
        }
    }
}
