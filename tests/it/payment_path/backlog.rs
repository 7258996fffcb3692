//! Backlog without a thundering herd: the broker is down while 18 000 charges pile up
//! in the outbox; when it is back, the relay drains them at `--max-rate` — the
//! consumer never applies more than that in any second — the lag returns to zero,
//! nothing is dead-lettered, and the clients, who never needed the broker, did not
//! retry beyond their budget.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use sqlx::Connection as _;

use super::client::ChargeClient;
use super::*;
use crate::relay::{BACKLOG, LAG, busiest_second};

const BACKLOG_ROWS: i64 = 18_000;
/// Charges made through the API during the outage; the rest are inserted directly.
const THROUGH_THE_API: i64 = 200;
/// 18 000 rows at 1000/s: 18 s of draining.
const MAX_RATE: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_after_a_broker_outage_drains_at_max_rate_without_a_retry_storm() {
    let mut path = PaymentPath::start(
        &["--max-rate", &MAX_RATE.to_string(), "--batch", "100"],
        &["--lease", "5s", "--batch", "200"],
    )
    .await;
    path.nats.kill();

    let client = Arc::new(ChargeClient::new(&path.api_url));
    let answers: Vec<_> = futures_util::stream::iter(0..THROUGH_THE_API)
        .map(|n| {
            let client = client.clone();
            async move {
                client
                    .charge(&format!("outage-{n}"), &format!("order-{n}"), 100 + n, None)
                    .await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(
        answers
            .iter()
            .all(|a| matches!(a, Ok(c) if c.status == 201))
    );
    let db = &path.db;
    db.execute(&format!(
        "WITH c AS (INSERT INTO charges (idempotency_key, order_id, amount_cents) \
           SELECT 'bulk-' || g, 'order-' || g, 100 + g FROM generate_series(1, {}) g \
           RETURNING id, idempotency_key, order_id, amount_cents) \
         INSERT INTO onceward_outbox (topic, message_key, payload, headers) \
         SELECT 'payments.charged', idempotency_key, convert_to(json_build_object(\
           'charge', id, 'key', idempotency_key, 'order', order_id, \
           'amount_cents', amount_cents)::text, 'UTF8'), '{{}}' FROM c",
        BACKLOG_ROWS - THROUGH_THE_API
    ))
    .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            path.relay.metric(BACKLOG, &[]).await == BACKLOG_ROWS as f64
        })
        .await,
        "the relay sees the backlog"
    );
    assert!(path.relay.metric(LAG, &[]).await > 0.0);

    let back = Instant::now();
    path.nats.restart().await;
    assert!(
        eventually(Duration::from_secs(40), || async {
            let text = scrape_metrics(path.relay.metrics_addr).await;
            metric_value(&text, BACKLOG, &[]) == 0.0 && metric_value(&text, LAG, &[]) == 0.0
        })
        .await,
        "the backlog drains and the lag returns to zero"
    );
    let drained = back.elapsed();
    assert!(
        eventually(Duration::from_secs(20), || async {
            db.scalar("SELECT count(*) FROM ledger_entries").await == BACKLOG_ROWS
        })
        .await,
        "every charge reached the ledger"
    );

    // What the consumer was offered: when the broker stored each message it received.
    let (busiest, span) = busiest_second(&entry_times(db, "published_at").await);
    // What it did with it: a pull consumer that fell behind (its own reconnect) catches
    // up at its own pace, which may be faster.
    let (busiest_applied, _) = busiest_second(&entry_times(db, "applied_at").await);
    let retries = client
        .counts
        .retries
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "{BACKLOG_ROWS} rows drained in {:.1} s at --max-rate {MAX_RATE}: the consumer \
         received them over {span:.1} s, at most {busiest} in any second (it applied at most \
         {busiest_applied} in a second); client retries {retries} (budget allowed {:.0})",
        drained.as_secs_f64(),
        client.retry_allowance()
    );
    // The bucket's burst is 1 % of the rate; the rest of the 5 % allows for the
    // broker's own timestamps (it stores messages a few milliseconds apart unevenly).
    assert!(
        busiest <= MAX_RATE + MAX_RATE / 20,
        "{busiest} effects in one second at --max-rate {MAX_RATE}"
    );
    assert!(
        drained.as_secs_f64() >= (BACKLOG_ROWS as f64 / MAX_RATE as f64) * 0.95,
        "drained in {drained:?}: faster than --max-rate allows"
    );
    assert_eq!(
        path.stream_messages("PAYMENTS_DLQ").await,
        0,
        "nothing dead-lettered"
    );
    assert_eq!(path.relay.metric(crate::relay::DEAD, &[]).await, 0.0);
    assert_eq!(
        path.consumer.metric(consumer::APPLIED, &[]).await,
        BACKLOG_ROWS as f64
    );
    assert!(retries as f64 <= client.retry_allowance());
    assert_eq!(
        client
            .counts
            .budget_refusals
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

/// A timestamp column of every ledger entry, in nanoseconds, in order.
async fn entry_times(db: &TestDatabase, column: &str) -> Vec<i128> {
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let seconds: Vec<f64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT EXTRACT(EPOCH FROM {column})::float8 FROM ledger_entries ORDER BY {column}"
    )))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    seconds.into_iter().map(|s| (s * 1e9) as i128).collect()
}
