//! The audit trail's writer: events are handed over without waiting, and written to
//! the ledger in batches off the hot path.
//!
//! A claim hands its event to a bounded queue and moves on. One task takes whatever
//! queued and writes it in one ledger call; whatever queues meanwhile is the next
//! batch. Rejections, takeovers, releases and forgets are written with the next batch.
//! Duplicates — the hot path's answers, tens of thousands a second — are counted in
//! memory per key per minute and written once a second ([`DUPLICATES_EVERY`]), so a
//! key replayed a thousand times in that second costs the ledger one row update, not
//! a thousand. When the queue is full — the writer has fallen behind, or the ledger is
//! down — events are dropped and counted in `onceward_audit_dropped_total`: claims
//! are never slowed by the trail.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::domain::{ClaimAnswer, Outcome, RecordId, Subject};
use crate::ledger::{AuditEvent, EventKind, Ledger};

/// Events waiting for the writer at most.
const QUEUE: usize = 16 * 1024;
/// Events the writer takes into one batch at most.
const BATCH: usize = 2048;
/// How often counted duplicates are written.
pub const DUPLICATES_EVERY: Duration = Duration::from_secs(1);
/// Counted duplicates (distinct keys) that are written at once rather than wait.
const MAX_COUNTED: usize = 50_000;

/// Where the engine hands its events.
#[derive(Debug, Clone)]
pub struct Audit {
    queue: mpsc::Sender<AuditEvent>,
}

impl Audit {
    /// A trail whose events go to `ledger`, each kept for `retention`; the writer runs
    /// until every handle is dropped.
    pub fn spawn(ledger: Arc<dyn Ledger>, retention: Duration) -> Self {
        let (queue, events) = mpsc::channel(QUEUE);
        tokio::spawn(write(events, ledger, retention));
        Self { queue }
    }

    /// Records that `kind` happened to `id` (for `subject`), without waiting.
    pub fn record(&self, id: &RecordId, subject: &Subject, kind: EventKind, detail: String) {
        let event = AuditEvent {
            namespace: id.namespace.clone(),
            at: Utc::now(),
            key: id.key.as_str().to_owned(),
            subject: subject.clone(),
            kind,
            count: 1,
            detail,
        };
        if self.queue.try_send(event).is_err() {
            crate::metrics::audit_dropped(1);
        }
    }
}

impl super::Engine {
    /// Records a claim's answer in the audit trail, if it is one the trail keeps:
    /// duplicates (counted per key per minute) and rejections.
    pub(super) fn audit_claim(&self, pending: &super::Pending, answer: &ClaimAnswer) {
        let (kind, detail) = match &answer.outcome {
            // A takeover is recorded where the ledger says so (`settle`).
            Outcome::Acquired { .. } => return,
            // Counted per key per minute, in progress or completed alike: no detail,
            // and no allocation for one on the hot path.
            Outcome::InProgress { .. } | Outcome::Completed { .. } => {
                (EventKind::Duplicate, String::new())
            }
            Outcome::FingerprintMismatch => (EventKind::FingerprintMismatch, String::new()),
            Outcome::Blocked { reason } => (EventKind::Blocked, reason.clone()),
            Outcome::OverBudget { limit, .. } => (EventKind::OverBudget, limit.as_str().to_owned()),
        };
        let id = &pending.claim.id;
        self.audit
            .record(id, &pending.claim.spend.subject, kind, detail);
    }
}

/// The writer: rejections and the like as they queue, duplicates counted and written
/// once a second, until every handle is dropped (then what it holds is written).
async fn write(
    mut events: mpsc::Receiver<AuditEvent>,
    ledger: Arc<dyn Ledger>,
    retention: Duration,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut counted = Duplicates::default();
    let mut flushed_at = tokio::time::Instant::now();
    loop {
        let next_flush = flushed_at + DUPLICATES_EVERY;
        let open = tokio::select! {
            received = events.recv_many(&mut batch, BATCH) => received > 0,
            _ = tokio::time::sleep_until(next_flush), if counted.len() > 0 => true,
        };
        let mut due = Vec::new();
        for event in batch.drain(..) {
            match event.kind {
                EventKind::Duplicate => counted.add(event),
                _ => due.push(event),
            }
        }
        let now = tokio::time::Instant::now();
        if !open || counted.len() >= MAX_COUNTED || now >= next_flush {
            due.extend(counted.take());
            flushed_at = now;
        }
        if !due.is_empty() {
            store(ledger.as_ref(), &due, retention).await;
        }
        if !open {
            return;
        }
    }
}

/// Writes `events`; if the ledger refuses them, they are dropped and counted.
async fn store(ledger: &dyn Ledger, events: &[AuditEvent], retention: Duration) {
    if let Err(error) = ledger.record_events(events, retention).await {
        let lost: u64 = events.iter().map(|event| event.count).sum();
        crate::metrics::audit_dropped(lost);
        tracing::warn!(
            error = %crate::errors::chain(&error), lost,
            "could not write audit events; dropped them"
        );
    }
}

/// Duplicates counted per key per minute until they are written.
#[derive(Default)]
struct Duplicates {
    by_minute: HashMap<(String, String, DateTime<Utc>), AuditEvent>,
}

impl Duplicates {
    fn add(&mut self, event: AuditEvent) {
        let slot = (
            event.namespace.as_str().to_owned(),
            event.key.clone(),
            event.minute(),
        );
        match self.by_minute.get_mut(&slot) {
            Some(counted) => counted.count += event.count,
            None => {
                self.by_minute.insert(slot, event);
            }
        }
    }

    fn len(&self) -> usize {
        self.by_minute.len()
    }

    /// Everything counted so far, oldest first.
    fn take(&mut self) -> Vec<AuditEvent> {
        let mut events: Vec<AuditEvent> = self.by_minute.drain().map(|(_, e)| e).collect();
        events.sort_by_key(|event| event.at);
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Namespace;

    fn event(key: &str, kind: EventKind, at: i64) -> AuditEvent {
        AuditEvent {
            namespace: Namespace::try_from("sms".to_owned()).unwrap(),
            at: DateTime::from_timestamp(at, 0).unwrap(),
            key: key.to_owned(),
            subject: Subject::default(),
            kind,
            count: 1,
            detail: String::new(),
        }
    }

    #[test]
    fn duplicates_are_counted_per_key_per_minute() {
        let mut counted = Duplicates::default();
        for (key, at) in [("a", 60), ("a", 119), ("a", 120), ("b", 61), ("a", 70)] {
            counted.add(event(key, EventKind::Duplicate, at));
        }
        let summary: Vec<(String, i64, u64)> = counted
            .take()
            .iter()
            .map(|e| (e.key.clone(), e.at.timestamp(), e.count))
            .collect();
        assert_eq!(
            summary,
            [
                ("a".to_owned(), 60, 3),
                ("b".to_owned(), 61, 1),
                ("a".to_owned(), 120, 1)
            ]
        );
        assert_eq!(counted.len(), 0);
    }
}
