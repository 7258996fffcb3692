//! The payment path (`examples/payment-path`) as real processes: a sidecar, the charge
//! API, `onceward relay`, the ledger consumer, a `nats-server -js` of the test's own
//! and a Postgres database of its own; driven by the example's own retrying client.
//!
//! - `proof`: 1000 logical charges through every fault, counted from metrics.
//! - `backlog`: a broker outage with 18 000 charges waiting, drained at `--max-rate`.

mod backlog;
mod proof;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::harness::*;
use crate::relay::Relay;

/// The example's retrying client, as a caller of `POST /charge` uses it.
#[allow(dead_code)]
#[path = "../../../examples/payment-path/client.rs"]
pub mod client;

/// The charge API's metrics (`examples/payment-path/charge_api.rs`).
pub mod charge_api {
    pub const REQUESTS: &str = "payment_charge_requests_total";
    pub const CHARGES: &str = "payment_charges_created_total";
}

/// The consumer's metrics (`examples/payment-path/consumer.rs`).
pub mod consumer {
    pub const APPLIED: &str = "payment_ledger_applied_total";
    pub const INBOX_DUPLICATES: &str = "payment_ledger_inbox_duplicates_total";
    pub const TABLE_DUPLICATES: &str = "payment_ledger_table_duplicates_total";
    pub const DEAD_LETTERED: &str = "payment_ledger_dead_lettered_total";
}

/// The example binary, built by `cargo test`/`cargo nextest run` next to the tests.
fn example_binary() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_onceward"));
    let path = bin
        .parent()
        .expect("the binary's directory")
        .join("examples/payment-path");
    assert!(
        path.exists(),
        "{} is missing: `cargo build --example payment-path` (cargo test builds it)",
        path.display()
    );
    path
}

/// One of the example's services as a process: killed (SIGKILL) when dropped.
pub struct Service {
    child: Child,
    pub metrics_addr: SocketAddr,
    args: Vec<String>,
}

impl Service {
    /// `payment-path <args> --metrics-listen <free port>`, once its metrics answer.
    pub async fn start(args: &[String]) -> Self {
        let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(example_binary())
            .args(args)
            .arg(format!("--metrics-listen={metrics_addr}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start payment-path");
        assert!(
            eventually(Duration::from_secs(15), || async {
                tokio::net::TcpStream::connect(metrics_addr).await.is_ok()
            })
            .await,
            "payment-path {args:?} never served its metrics"
        );
        Self {
            child,
            metrics_addr,
            args: args.to_vec(),
        }
    }

    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics().await, name, labels)
    }

    /// One scrape of `/metrics` (asking the server to close: the example's axum keeps
    /// connections alive otherwise).
    pub async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut socket = tokio::net::TcpStream::connect(self.metrics_addr)
            .await
            .expect("metrics");
        socket
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut reply = String::new();
        socket.read_to_string(&mut reply).await.expect("read");
        reply
    }

    /// SIGKILL.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// The same service again, in a new process.
    pub async fn restart(&mut self) {
        self.kill().await;
        *self = Self::start(&self.args).await;
    }
}

/// Everything on the path, started in order: sidecar, tables, streams (the consumer
/// owns them), charge API, relay.
/// Its fields drop in this order: the processes first, the database last.
pub struct PaymentPath {
    pub relay: Relay,
    pub consumer: Service,
    pub api: Service,
    pub api_url: String,
    pub sidecar: TestApp,
    pub nats: NatsServer,
    pub db: TestDatabase,
    relay_args: Vec<String>,
}

impl PaymentPath {
    pub async fn start(relay_args: &[&str], consumer_args: &[&str]) -> Self {
        let db = TestDatabase::create().await;
        let nats = NatsServer::start().await;
        let sidecar = TestApp::builder().spawn().await;
        let setup = Command::new(example_binary())
            .args(["setup", "--database-url", &db.url])
            .output()
            .await
            .expect("payment-path setup");
        assert!(
            setup.status.success(),
            "{}",
            String::from_utf8_lossy(&setup.stderr)
        );

        let sidecar_addr = sidecar.addr.to_string();
        let mut args: Vec<String> = [
            "consumer",
            "--sidecar",
            &sidecar_addr,
            "--database-url",
            &db.url,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(["--nats-url".to_owned(), nats.url()]);
        args.extend(consumer_args.iter().map(|s| (*s).to_owned()));
        let consumer = Service::start(&args).await;
        let js = nats.jetstream().await;
        assert!(
            eventually(Duration::from_secs(15), || async {
                js.get_stream("PAYMENTS").await.is_ok()
            })
            .await,
            "the consumer made its stream"
        );

        let api_port = free_port();
        let api = Service::start(&[
            "charge-api".to_owned(),
            "--sidecar".to_owned(),
            sidecar_addr,
            "--database-url".to_owned(),
            db.url.clone(),
            format!("--listen=127.0.0.1:{api_port}"),
        ])
        .await;
        let api_url = format!("http://127.0.0.1:{api_port}");
        assert!(
            eventually(Duration::from_secs(15), || async {
                tokio::net::TcpStream::connect(("127.0.0.1", api_port))
                    .await
                    .is_ok()
            })
            .await,
            "the charge API listens"
        );
        let relay = Relay::start(&db, &nats, relay_args).await;
        Self {
            db,
            nats,
            sidecar,
            api,
            api_url,
            consumer,
            relay,
            relay_args: relay_args.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// A new relay process in place of the (dead) one.
    pub async fn restart_relay(&mut self) {
        self.relay.kill().await;
        let args: Vec<&str> = self.relay_args.iter().map(String::as_str).collect();
        self.relay = Relay::start(&self.db, &self.nats, &args).await;
    }

    /// Messages in a stream.
    pub async fn stream_messages(&self, name: &str) -> u64 {
        let stream = self
            .nats
            .jetstream()
            .await
            .get_stream(name)
            .await
            .expect("stream");
        crate::relay::stored(&stream).await
    }
}

/// Waits until a session of this database waits on an advisory lock: a process held
/// at the point a test's trigger holds it.
pub async fn held_at_lock(db: &TestDatabase, within: Duration) -> bool {
    eventually(within, || async {
        db.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
        )
        .await
            > 0
    })
    .await
}

/// Ends the sessions held at an advisory lock, as if the database had noticed their
/// process die: what a held statement would have written is not written.
pub async fn end_held_sessions(db: &TestDatabase) {
    db.scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event = 'advisory'",
    )
    .await;
}
