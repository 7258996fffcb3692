//! `onceward relay` as the real binary, against a Postgres database and a
//! `nats-server -js` of each test's own: what it publishes (`publish`), and how it
//! behaves when things break (`faults`).
//!
//! Each test creates its own stream (the relay never does), inserts outbox rows
//! directly, starts relays as processes (killed when dropped) and reads the stream
//! back, the table, and the relay's `/metrics`.

mod faults;
mod publish;

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::Stream;
use tokio::process::{Child, Command};

use crate::harness::*;

/// The relay's metrics, by the names it defines them under.
pub use onceward::relay::metrics::{
    BACKLOG_ROWS as BACKLOG, BROKER_DUPLICATES as DUPLICATES, DEAD, LAG_SECONDS as LAG,
    PUBLISH_ERRORS as ERRORS, PUBLISH_REFUSALS as REFUSALS, PUBLISHED,
};

/// A fresh database with the outbox table, made by `onceward relay --migrate`.
pub async fn outbox_database() -> TestDatabase {
    let db = TestDatabase::create().await;
    let migrated = Command::new(env!("CARGO_BIN_EXE_onceward"))
        .args(["relay", "--migrate", "--source-url", &db.url])
        .output()
        .await
        .expect("run onceward relay --migrate");
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    db
}

/// Inserts `count` rows on `topic` (payload `p<n>`, key `k<n>`) and returns their ids.
pub async fn insert_rows(db: &TestDatabase, topic: &str, count: u32) -> Vec<i64> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query_scalar(
        "INSERT INTO onceward_outbox (topic, message_key, payload) \
         SELECT $1, 'k' || g, convert_to('p' || g, 'UTF8') FROM generate_series(1, $2) g \
         RETURNING id",
    )
    .bind(topic)
    .bind(i64::from(count))
    .fetch_all(&mut conn)
    .await
    .expect("insert outbox rows")
}

/// A relay process on `db`'s outbox and `nats`, polling every 100 ms and waiting 2 s
/// for an ack, plus `args`; killed (SIGKILL) when dropped.
pub struct Relay {
    child: Child,
    pub metrics_addr: SocketAddr,
}

impl Relay {
    pub async fn start(db: &TestDatabase, nats: &NatsServer, args: &[&str]) -> Self {
        let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_onceward"))
            .args(["relay", "--source-url", &db.url, "--nats-url", &nats.url()])
            .args(["--poll-interval", "100ms", "--ack-timeout", "2s"])
            .arg(format!("--metrics-listen={metrics_addr}"))
            .args(args)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start onceward relay");
        let relay = Self {
            child,
            metrics_addr,
        };
        assert!(
            eventually(Duration::from_secs(10), || async {
                tokio::net::TcpStream::connect(metrics_addr).await.is_ok()
            })
            .await,
            "the relay never served its metrics"
        );
        relay
    }

    pub async fn metrics(&self) -> String {
        scrape_metrics(self.metrics_addr).await
    }

    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics().await, name, labels)
    }

    /// SIGKILL, and wait for the process to be gone.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("running").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(sent.success());
    }

    /// Waits for the process to exit, at most `within`.
    pub async fn exited(&mut self, within: Duration) -> ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("the relay exits in time")
            .expect("wait")
    }
}

/// Every message in `stream`, in stream order.
pub async fn messages(stream: &Stream) -> Vec<StreamMessage> {
    let state = stream.get_info().await.expect("stream info").state;
    let mut messages = Vec::with_capacity(state.messages as usize);
    if state.messages == 0 {
        return messages;
    }
    for sequence in state.first_sequence..=state.last_sequence {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            messages.push(message);
        }
    }
    messages
}

/// How many messages `stream` holds.
pub async fn stored(stream: &Stream) -> u64 {
    stream.get_info().await.expect("stream info").state.messages
}

/// A header of a stream message, as text.
pub fn header(message: &StreamMessage, name: &str) -> Option<String> {
    message
        .headers
        .get(name)
        .map(|value| value.as_str().to_owned())
}

/// Rows marked published.
pub async fn published_rows(db: &TestDatabase) -> i64 {
    db.scalar("SELECT count(*) FROM onceward_outbox WHERE published_at IS NOT NULL")
        .await
}

/// The most messages in any one-second window, and the seconds from first to last.
pub fn busiest_second(times: &[i128]) -> (usize, f64) {
    let mut busiest = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= 1_000_000_000 {
            start += 1;
        }
        busiest = busiest.max(end - start + 1);
    }
    let span = (times[times.len() - 1] - times[0]) as f64 / 1e9;
    (busiest, span)
}
