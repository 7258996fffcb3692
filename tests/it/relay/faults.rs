//! The relay when things break: the broker killed and restarted, the relay SIGKILLed
//! between the broker's ack and its mark, and SIGTERM in the middle of a backlog.

use std::time::Duration;

use super::*;

const WINDOW: Duration = Duration::from_secs(120);

#[tokio::test]
async fn a_killed_broker_costs_no_attempts_and_the_relay_resumes_when_it_is_back() {
    let db = outbox_database().await;
    let mut nats = NatsServer::start().await;
    let stream_name = "ORDERS";
    nats.create_stream(stream_name, &["orders.>"], WINDOW).await;
    let relay = Relay::start(&db, &nats, &[]).await;
    insert_rows(&db, "orders.created", 50).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            published_rows(&db).await == 50
        })
        .await
    );

    nats.kill();
    insert_rows(&db, "orders.created", 50).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        published_rows(&db).await,
        50,
        "nothing is marked while the broker is down"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM onceward_outbox WHERE attempts > 0 OR dead_at IS NOT NULL")
            .await,
        0,
        "an outage is no row's fault"
    );
    assert_eq!(relay.metric(BACKLOG, &[]).await, 50.0);

    nats.restart().await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            published_rows(&db).await == 100
        })
        .await,
        "the relay resumes"
    );
    let stream = nats
        .jetstream()
        .await
        .get_stream(stream_name)
        .await
        .unwrap();
    assert_eq!(stored(&stream).await, 100);
    assert_eq!(relay.metric(DEAD, &[]).await, 0.0);
}

#[tokio::test]
async fn a_relay_killed_between_the_ack_and_the_mark_publishes_again_with_the_same_msg_id() {
    let db = outbox_database().await;
    let nats = NatsServer::start().await;
    // A dedup window shorter than the restart, so the second publish is stored too and
    // the test can read both copies' ids.
    let stream = nats
        .create_stream("ORDERS", &["orders.>"], Duration::from_millis(100))
        .await;
    let id = insert_rows(&db, "orders.created", 1).await[0];

    // The mark waits for an advisory lock the test holds: the relay is held between
    // the broker's ack and its UPDATE.
    db.execute(
        "CREATE FUNCTION hold_mark() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM pg_advisory_xact_lock(4242); RETURN NEW; END $$",
    )
    .await;
    db.execute(
        "CREATE TRIGGER hold_mark BEFORE UPDATE ON onceward_outbox \
         FOR EACH ROW EXECUTE FUNCTION hold_mark()",
    )
    .await;
    use sqlx::Connection as _;
    let mut holder = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(4242)")
        .execute(&mut holder)
        .await
        .unwrap();

    let mut first = Relay::start(&db, &nats, &[]).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            stored(&stream).await == 1
        })
        .await,
        "published"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(published_rows(&db).await, 0, "acked but not marked");
    first.kill().await;
    // Let the dead relay's transaction go, then the trigger.
    holder.close().await.unwrap();
    db.execute("DROP TRIGGER hold_mark ON onceward_outbox")
        .await;

    let second = Relay::start(&db, &nats, &[]).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            published_rows(&db).await == 1
        })
        .await
    );
    assert_eq!(second.metric(PUBLISHED, &[]).await, 1.0, "published again");
    let copies = messages(&stream).await;
    assert_eq!(copies.len(), 2);
    for copy in &copies {
        assert_eq!(header(copy, "Nats-Msg-Id"), Some(id.to_string()));
        assert_eq!(header(copy, "Onceward-Outbox-Id"), Some(id.to_string()));
    }
}

#[tokio::test]
async fn sigterm_mid_backlog_marks_everything_it_sent_and_exits_zero() {
    let db = outbox_database().await;
    let nats = NatsServer::start().await;
    let stream = nats.create_stream("ORDERS", &["orders.>"], WINDOW).await;
    insert_rows(&db, "orders.created", 1000).await;
    let mut relay = Relay::start(&db, &nats, &["--max-rate", "200", "--batch", "100"]).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            published_rows(&db).await >= 150
        })
        .await
    );

    relay.terminate();
    let status = relay.exited(Duration::from_secs(5)).await;
    assert!(status.success(), "{status:?}");
    let marked = published_rows(&db).await;
    assert!(marked < 1000, "it stopped ({marked} marked)");
    assert_eq!(
        stored(&stream).await as i64,
        marked,
        "every message the broker stored is marked: nothing sent was left unmarked"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM onceward_outbox WHERE attempts > 0")
            .await,
        0
    );
}
