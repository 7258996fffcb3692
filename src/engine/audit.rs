//! The audit trail's writer: events are handed over without waiting, and written to
//! the ledger in batches off the hot path.
//!
//! A claim hands its event to a bounded queue and moves on. One task takes whatever
//! queued, folds duplicates into one event per key per minute with their count, and
//! writes the batch in one ledger call; whatever queues meanwhile is the next batch.
//! When the queue is full — the writer has fallen behind, or the ledger is down —
//! events are dropped and counted in `onceward_audit_dropped_total`: claims are
//! never slowed by the trail.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::domain::{RecordId, Subject};
use crate::ledger::{AuditEvent, EventKind, Ledger};

/// Events waiting for the writer at most.
const QUEUE: usize = 16 * 1024;
/// Events the writer takes into one batch at most.
const BATCH: usize = 2048;

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

/// The writer: batches of whatever queued, duplicates folded, one ledger call each.
async fn write(
    mut events: mpsc::Receiver<AuditEvent>,
    ledger: Arc<dyn Ledger>,
    retention: Duration,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while events.recv_many(&mut batch, BATCH).await > 0 {
        let folded = fold_duplicates(std::mem::take(&mut batch));
        if let Err(error) = ledger.record_events(&folded, retention).await {
            let lost: u64 = folded.iter().map(|event| event.count).sum();
            crate::metrics::audit_dropped(lost);
            tracing::warn!(
                error = %crate::errors::chain(&error), lost,
                "could not write audit events; dropped them"
            );
        }
    }
}

/// One event per key per minute for duplicates, counting them; every other event as
/// it came.
fn fold_duplicates(batch: Vec<AuditEvent>) -> Vec<AuditEvent> {
    let mut folded: Vec<AuditEvent> = Vec::with_capacity(batch.len());
    let mut minutes: HashMap<(String, String, DateTime<Utc>), usize> = HashMap::new();
    for event in batch {
        if event.kind != EventKind::Duplicate {
            folded.push(event);
            continue;
        }
        let slot = (
            event.namespace.as_str().to_owned(),
            event.key.clone(),
            event.minute(),
        );
        match minutes.get(&slot) {
            Some(&index) => folded[index].count += event.count,
            None => {
                minutes.insert(slot, folded.len());
                folded.push(event);
            }
        }
    }
    folded
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
    fn duplicates_fold_per_key_per_minute_and_the_rest_stay_apart() {
        let folded = fold_duplicates(vec![
            event("a", EventKind::Duplicate, 60),
            event("a", EventKind::Duplicate, 119),
            event("a", EventKind::Duplicate, 120),
            event("b", EventKind::Duplicate, 61),
            event("a", EventKind::Blocked, 62),
            event("a", EventKind::Blocked, 63),
        ]);
        let summary: Vec<(&str, EventKind, u64)> = folded
            .iter()
            .map(|e| (e.key.as_str(), e.kind, e.count))
            .collect();
        assert_eq!(
            summary,
            [
                ("a", EventKind::Duplicate, 2),
                ("a", EventKind::Duplicate, 1),
                ("b", EventKind::Duplicate, 1),
                ("a", EventKind::Blocked, 1),
                ("a", EventKind::Blocked, 1),
            ]
        );
    }
}
