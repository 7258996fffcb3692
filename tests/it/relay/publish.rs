//! What the relay publishes, and how fast: subjects, headers, order, dedup ids, dead
//! rows, many relays on one table, `--max-rate`, and its metrics.

use std::collections::HashMap;
use std::time::Duration;

use super::*;

const WINDOW: Duration = Duration::from_secs(120);

#[tokio::test]
async fn rows_are_published_in_order_with_their_headers_and_marked_after_the_ack() {
    let db = outbox_database().await;
    let nats = NatsServer::start().await;
    let stream = nats.create_stream("ORDERS", &["orders.>"], WINDOW).await;
    db.execute(
        "INSERT INTO onceward_outbox (topic, message_key, payload, headers) VALUES \
         ('orders.created', 'order-1', 'one', '{\"trace-id\":\"t1\",\"n\":7}'), \
         ('orders.paid', 'order-1', 'two', '{}'), \
         ('orders.created', 'order-2', 'three', '{}')",
    )
    .await;
    let relay = Relay::start(&db, &nats, &[]).await;

    assert!(
        eventually(Duration::from_secs(10), || async {
            published_rows(&db).await == 3
        })
        .await,
        "every row is marked published"
    );
    let messages = messages(&stream).await;
    let ids: Vec<i64> = sqlx_ids(&db).await;
    assert_eq!(messages.len(), 3);
    let subjects: Vec<&str> = messages.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects,
        ["orders.created", "orders.paid", "orders.created"]
    );
    let payloads: Vec<&[u8]> = messages.iter().map(|m| m.payload.as_ref()).collect();
    assert_eq!(payloads, [&b"one"[..], b"two", b"three"], "in id order");
    for (message, id) in messages.iter().zip(&ids) {
        assert_eq!(header(message, "Nats-Msg-Id"), Some(id.to_string()));
        assert_eq!(header(message, "Onceward-Outbox-Id"), Some(id.to_string()));
    }
    assert_eq!(
        header(&messages[0], "Onceward-Message-Key").as_deref(),
        Some("order-1")
    );
    assert_eq!(
        header(&messages[2], "Onceward-Message-Key").as_deref(),
        Some("order-2")
    );
    assert_eq!(header(&messages[0], "trace-id").as_deref(), Some("t1"));
    assert_eq!(header(&messages[0], "n").as_deref(), Some("7"));
    assert_eq!(header(&messages[1], "trace-id"), None);
    assert_eq!(relay.metric(PUBLISHED, &[]).await, 3.0);
}

async fn sqlx_ids(db: &TestDatabase) -> Vec<i64> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query_scalar("SELECT id FROM onceward_outbox ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .expect("ids")
}

#[tokio::test]
async fn a_row_published_again_is_dropped_by_the_broker_by_its_msg_id() {
    let db = outbox_database().await;
    let nats = NatsServer::start().await;
    let stream = nats.create_stream("ORDERS", &["orders.>"], WINDOW).await;
    insert_rows(&db, "orders.created", 1).await;
    let relay = Relay::start(&db, &nats, &[]).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            published_rows(&db).await == 1
        })
        .await
    );

    // As if the mark had been lost: the relay publishes the row a second time.
    db.execute("UPDATE onceward_outbox SET published_at = NULL")
        .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            published_rows(&db).await == 1
        })
        .await
    );
    assert_eq!(relay.metric(PUBLISHED, &[]).await, 2.0);
    assert_eq!(
        relay.metric(DUPLICATES, &[]).await,
        1.0,
        "the broker saw the same id"
    );
    assert_eq!(stored(&stream).await, 1, "and stored it once");
}

#[tokio::test]
async fn a_topic_no_stream_covers_dies_after_max_attempts_and_blocks_nothing() {
    let db = outbox_database().await;
    let nats = NatsServer::start().await;
    let stream = nats.create_stream("ORDERS", &["orders.>"], WINDOW).await;
    insert_rows(&db, "orders.created", 3).await;
    let poison = insert_rows(&db, "nowhere.created", 1).await[0];
    insert_rows(&db, "orders.created", 6).await;
    let relay = Relay::start(&db, &nats, &["--max-attempts", "3"]).await;

    assert!(
        eventually(Duration::from_secs(15), || async {
            db.scalar("SELECT count(*) FROM onceward_outbox WHERE dead_at IS NOT NULL")
                .await
                == 1
        })
        .await,
        "the poison row dies"
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            published_rows(&db).await == 9
        })
        .await
    );
    assert_eq!(stored(&stream).await, 9, "every other row went through");
    let (attempts, error, published): (i32, String, bool) = {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_as(
            "SELECT attempts, last_error, published_at IS NOT NULL FROM onceward_outbox WHERE id = $1",
        )
        .bind(poison)
        .fetch_one(&mut conn)
        .await
        .unwrap()
    };
    assert_eq!(attempts, 3);
    assert!(error.contains("no stream"), "{error}");
    assert!(!published);
    assert_eq!(relay.metric(DEAD, &[]).await, 1.0);
    assert_eq!(relay.metric(REFUSALS, &[]).await, 3.0);
    assert_eq!(relay.metric(ERRORS, &[]).await, 3.0);
    assert!(
        eventually(Duration::from_secs(5), || async {
            relay.metric(BACKLOG, &[]).await == 0.0
        })
        .await,
        "a dead row is no backlog"
    );

    let names: Vec<String> = {
        use futures_util::StreamExt as _;
        nats.jetstream()
            .await
            .stream_names()
            .map(|n| n.unwrap())
            .collect()
            .await
    };
    assert_eq!(names, ["ORDERS"], "the relay never creates a stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_one_table_never_publish_a_row_twice() {
    let db = outbox_database().await;
    let nats = NatsServer::start().await;
    // No dedup window to speak of: a row published twice would be stored twice.
    let stream = nats
        .create_stream("ORDERS", &["orders.>"], Duration::from_millis(100))
        .await;
    let args = ["--batch", "50", "--max-rate", "1000"];
    let one = Relay::start(&db, &nats, &args).await;
    let two = Relay::start(&db, &nats, &args).await;
    let ids = insert_rows(&db, "orders.created", 3000).await;

    assert!(
        eventually(Duration::from_secs(30), || async {
            published_rows(&db).await == 3000
        })
        .await
    );
    let by_one = one.metric(PUBLISHED, &[]).await;
    let by_two = two.metric(PUBLISHED, &[]).await;
    assert_eq!(by_one + by_two, 3000.0, "each row published once");
    assert!(
        by_one > 0.0 && by_two > 0.0,
        "both relays worked: {by_one} + {by_two}"
    );
    let mut seen: HashMap<String, u32> = HashMap::new();
    for message in messages(&stream).await {
        *seen
            .entry(header(&message, "Nats-Msg-Id").unwrap())
            .or_default() += 1;
    }
    assert_eq!(seen.len(), ids.len());
    assert!(seen.values().all(|&n| n == 1), "no row stored twice");
}

#[tokio::test]
async fn max_rate_bounds_the_rate_the_broker_receives() {
    const RATE: usize = 200;
    const ROWS: usize = 600;
    let db = outbox_database().await;
    let nats = NatsServer::start().await;
    let stream = nats.create_stream("ORDERS", &["orders.>"], WINDOW).await;
    insert_rows(&db, "orders.created", ROWS as u32).await;
    let _relay = Relay::start(&db, &nats, &["--max-rate", &RATE.to_string()]).await;

    assert!(
        eventually(Duration::from_secs(20), || async {
            published_rows(&db).await == ROWS as i64
        })
        .await
    );
    // When the broker stored each message, in nanoseconds.
    let times: Vec<i128> = messages(&stream)
        .await
        .iter()
        .map(|m| m.time.unix_timestamp_nanos())
        .collect();
    assert_eq!(times.len(), ROWS);
    let (busiest, span) = busiest_second(&times);
    eprintln!("busiest second: {busiest} messages; {ROWS} took {span:.2} s at --max-rate {RATE}");
    // The bucket's burst is 1 % of the rate; the rest of the 5 % allows for the
    // broker's own timestamps (it stores messages a few milliseconds apart unevenly).
    assert!(
        busiest <= RATE + RATE / 20,
        "{busiest} messages in one second at --max-rate {RATE}"
    );
    assert!(
        span >= (ROWS - RATE / 100) as f64 / RATE as f64 * 0.95,
        "{span} s"
    );
}

#[tokio::test]
async fn metrics_show_the_backlog_its_lag_and_the_publishes_from_zero() {
    let db = outbox_database().await;
    let nats = NatsServer::start().await;
    let relay = Relay::start(&db, &nats, &["--max-attempts", "1000"]).await;
    let text = relay.metrics().await;
    for name in [BACKLOG, LAG, PUBLISHED, ERRORS, REFUSALS, DEAD] {
        assert!(
            text.contains(&format!("\n{name}")),
            "{name} is exported at zero:\n{text}"
        );
    }
    assert_eq!(metric_value(&text, PUBLISHED, &[]), 0.0);

    // Five rows, half a minute old, on a topic no stream covers yet.
    db.execute(
        "INSERT INTO onceward_outbox (topic, message_key, payload, created_at) \
         SELECT 'late.created', 'k' || g, 'p', now() - interval '30 seconds' \
         FROM generate_series(1, 5) g",
    )
    .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            let text = relay.metrics().await;
            metric_value(&text, BACKLOG, &[]) == 5.0
                && metric_value(&text, LAG, &[]) >= 30.0
                && metric_value(&text, REFUSALS, &[]) >= 5.0
                && metric_value(&text, ERRORS, &[]) >= 5.0
        })
        .await,
        "{}",
        relay.metrics().await
    );

    let _stream = nats.create_stream("LATE", &["late.>"], WINDOW).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            let text = relay.metrics().await;
            metric_value(&text, PUBLISHED, &[]) == 5.0
                && metric_value(&text, BACKLOG, &[]) == 0.0
                && metric_value(&text, LAG, &[]) == 0.0
        })
        .await,
        "{}",
        relay.metrics().await
    );
    assert_eq!(relay.metric(DEAD, &[]).await, 0.0);
}

#[tokio::test]
async fn a_relay_without_its_table_says_how_to_create_it() {
    let db = TestDatabase::create().await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_onceward"))
        .args([
            "relay",
            "--source-url",
            &db.url,
            "--nats-url",
            "nats://127.0.0.1:1",
        ])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("onceward_outbox does not exist") && stderr.contains("--migrate"),
        "{stderr}"
    );
}
