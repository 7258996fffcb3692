//! The relay's metrics: names, help texts, and the recorder of the relay's own process
//! (served on its own `--metrics-listen`). Like [`crate::metrics`] for the sidecar,
//! everything records through the functions below, so a name cannot drift.

use std::sync::OnceLock;

use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Gauge: unpublished rows that are not dead.
pub const BACKLOG_ROWS: &str = "onceward_outbox_backlog_rows";
/// Gauge: age of the oldest unpublished row that is not dead, in seconds (0 when none).
pub const LAG_SECONDS: &str = "onceward_outbox_lag_seconds";
/// Rows the broker acknowledged.
pub const PUBLISHED: &str = "onceward_relay_published_total";
/// Publishes that failed, whatever the cause (the name and shape SPEC section 16 gives).
pub const PUBLISH_ERRORS: &str = "onceward_relay_publish_errors_total";
/// Of those, the ones the broker refused (no stream for the topic, …): each counts an
/// attempt towards `--max-attempts`. The rest had no answer and count none.
pub const PUBLISH_REFUSALS: &str = "onceward_relay_publish_refusals_total";
/// Rows that reached `--max-attempts` and were stamped `dead_at`.
pub const DEAD: &str = "onceward_relay_dead_total";
/// Acks that said the broker had the message already (its dedup window caught a
/// re-publish, e.g. after a relay died between the ack and the mark).
pub const BROKER_DUPLICATES: &str = "onceward_relay_broker_duplicates_total";

/// Installs the relay's Prometheus recorder (once per process) with every metric at
/// zero, and returns the handle that renders `/metrics`.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .install_recorder()
                .expect("the metrics recorder is installed once per process");
            describe_gauge!(
                BACKLOG_ROWS,
                "Outbox rows not yet published (dead rows excluded)."
            );
            describe_gauge!(
                LAG_SECONDS,
                "Age of the oldest unpublished outbox row, in seconds (0 when none)."
            );
            describe_counter!(PUBLISHED, "Outbox rows the broker acknowledged.");
            describe_counter!(PUBLISH_ERRORS, "Failed publishes, whatever the cause.");
            describe_counter!(
                PUBLISH_REFUSALS,
                "Failed publishes the broker refused (each counts an attempt towards --max-attempts)."
            );
            describe_counter!(DEAD, "Outbox rows given up on after --max-attempts.");
            describe_counter!(
                BROKER_DUPLICATES,
                "Acks for messages the broker had already stored (its dedup window)."
            );
            // At zero from the start, so rates and alerts see 0 rather than no data.
            gauge!(BACKLOG_ROWS).set(0.0);
            gauge!(LAG_SECONDS).set(0.0);
            counter!(PUBLISHED).absolute(0);
            counter!(PUBLISH_ERRORS).absolute(0);
            counter!(PUBLISH_REFUSALS).absolute(0);
            counter!(DEAD).absolute(0);
            counter!(BROKER_DUPLICATES).absolute(0);
            handle
        })
        .clone()
}

/// The backlog as last measured.
pub fn backlog(rows: i64, lag_seconds: f64) {
    gauge!(BACKLOG_ROWS).set(rows as f64);
    gauge!(LAG_SECONDS).set(lag_seconds);
}

/// Rows acknowledged, of which `duplicates` the broker had already.
pub fn published(rows: u64, duplicates: u64) {
    counter!(PUBLISHED).increment(rows);
    counter!(BROKER_DUPLICATES).increment(duplicates);
}

/// Publishes that failed: `refused` by the broker, and `unanswered`.
pub fn publish_errors(refused: u64, unanswered: u64) {
    counter!(PUBLISH_ERRORS).increment(refused + unanswered);
    counter!(PUBLISH_REFUSALS).increment(refused);
}

/// Rows that died.
pub fn dead(rows: u64) {
    counter!(DEAD).increment(rows);
}
