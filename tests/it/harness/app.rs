//! The sidecar under test: built in-process from the same command line as
//! `onceward serve` (port 0 for gRPC and metrics), on a fresh ledger and Redis keys of
//! its own, on any of the four pairings of hot tier and ledger, stopped when dropped;
//! and its `/metrics`, scraped and read sample by sample.

use std::net::SocketAddr;

use clap::Parser as _;
use onceward::app::Application;
use onceward::command::{Cli, Command as Subcommand};
use onceward::config::ServeArgs;
use onceward::proto::onceward_client::OncewardClient;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use super::{TestDatabase, shared_redis_url, unique};

/// How a test wants its sidecar configured; `spawn` fills in the rest. `None` picks
/// the embedded tier (SQLite under `data_dir`, in-process cache).
pub struct AppConfig {
    pub database_url: String,
    pub redis_url: String,
    pub key_prefix: String,
    pub extra_args: Vec<String>,
}

/// One of the four combinations of hot tier and ledger; the semantic suite runs on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairing {
    PostgresRedis,
    PostgresMemory,
    SqliteRedis,
    SqliteMemory,
}

/// Where a paired test's ledger lives; held only so it is removed when the test ends.
pub enum TestLedger {
    Postgres(#[allow(dead_code)] TestDatabase),
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
}

/// A sidecar on the given pairing, its ledger fresh, its Redis keys its own.
pub struct PairedSetup {
    pub app: TestApp,
    pub ledger: TestLedger,
}

pub async fn spawn_pairing(pairing: Pairing) -> PairedSetup {
    let (ledger, database_url) = match pairing {
        Pairing::PostgresRedis | Pairing::PostgresMemory => {
            let db = TestDatabase::create().await;
            let url = db.url.clone();
            (TestLedger::Postgres(db), url)
        }
        Pairing::SqliteRedis | Pairing::SqliteMemory => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
            (TestLedger::Sqlite(dir), url)
        }
    };
    let redis_url = match pairing {
        Pairing::PostgresRedis | Pairing::SqliteRedis => Some(shared_redis_url()),
        Pairing::PostgresMemory | Pairing::SqliteMemory => None,
    };
    let app = TestApp::spawn_with(
        Some(database_url),
        redis_url,
        unique("onceward-test:") + ":",
        vec![],
    )
    .await;
    PairedSetup { app, ledger }
}

/// A running sidecar.
pub struct TestApp {
    pub addr: SocketAddr,
    hot: std::sync::Arc<dyn onceward::cache::HotTier>,
    ledger: std::sync::Arc<dyn onceward::ledger::Ledger>,
    pub metrics_addr: SocketAddr,
    pub client: OncewardClient<Channel>,
    pub key_prefix: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The usual test setup: one sidecar, a fresh database, the shared Redis under a key
/// prefix of the test's own.
pub struct Setup {
    pub app: TestApp,
    pub db: TestDatabase,
}

pub async fn spawn_app() -> Setup {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(extra_args: &[&str]) -> Setup {
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(AppConfig {
        database_url: db.url.clone(),
        redis_url: shared_redis_url(),
        key_prefix: unique("onceward-test:") + ":",
        extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
    })
    .await;
    Setup { app, db }
}

/// Two sidecars on one database and one Redis key space, as several pods
/// would share them.
pub async fn two_sidecars(db: &TestDatabase) -> (TestApp, TestApp) {
    let prefix = unique("onceward-test:") + ":";
    let config = || AppConfig {
        database_url: db.url.clone(),
        redis_url: shared_redis_url(),
        key_prefix: prefix.clone(),
        extra_args: vec![],
    };
    (
        TestApp::spawn(config()).await,
        TestApp::spawn(config()).await,
    )
}

impl TestApp {
    pub async fn spawn(config: AppConfig) -> Self {
        Self::spawn_with(
            Some(config.database_url),
            Some(config.redis_url),
            config.key_prefix,
            config.extra_args,
        )
        .await
    }

    pub async fn spawn_with(
        database_url: Option<String>,
        redis_url: Option<String>,
        key_prefix: String,
        extra_args: Vec<String>,
    ) -> Self {
        Self::spawn_inner(database_url, redis_url, key_prefix, extra_args, true).await
    }

    async fn spawn_inner(
        database_url: Option<String>,
        redis_url: Option<String>,
        key_prefix: String,
        extra_args: Vec<String>,
        plaintext: bool,
    ) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let mut argv = vec![
            "onceward".to_owned(),
            "serve".to_owned(),
            "--listen=127.0.0.1:0".to_owned(),
            "--metrics-listen=127.0.0.1:0".to_owned(),
            format!("--redis-key-prefix={key_prefix}"),
            "--ledger-timeout=2s".to_owned(),
            "--redis-breaker-cooldown=200ms".to_owned(),
        ];
        argv.extend(database_url.map(|url| format!("--database-url={url}")));
        argv.extend(redis_url.map(|url| format!("--redis-url={url}")));
        argv.extend(extra_args);
        let args: ServeArgs = match Cli::try_parse_from(&argv)
            .expect("valid test flags")
            .command
        {
            Subcommand::Serve(args) => *args,
            _ => unreachable!("built a serve command line"),
        };
        let application = Application::build(&args).await.expect("build the sidecar");
        let addr = application.local_addr();
        let metrics_addr = application.metrics_addr();
        let hot = application.hot_tier();
        let ledger = application.ledger();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(application.run_until(async {
            let _ = stopped.await;
        }));
        let client = if plaintext {
            Self::connect(addr).await
        } else {
            OncewardClient::new(
                Channel::from_shared(format!("http://{addr}"))
                    .expect("uri")
                    .connect_lazy(),
            )
        };
        Self {
            addr,
            metrics_addr,
            client,
            hot,
            ledger,
            key_prefix,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Like `spawn`, for a sidecar serving TLS: its `client` is not connected (the
    /// test makes its own TLS client).
    pub async fn spawn_tls(config: AppConfig) -> Self {
        Self::spawn_inner(
            Some(config.database_url),
            Some(config.redis_url),
            config.key_prefix,
            config.extra_args,
            false,
        )
        .await
    }

    /// A client on a connection of its own.
    pub async fn connect(addr: SocketAddr) -> OncewardClient<Channel> {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect to the sidecar");
        OncewardClient::new(channel)
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server ran cleanly");
        }
    }

    /// The sidecar's ledger, whichever it is, for driving the retention job directly.
    pub fn ledger(&self) -> std::sync::Arc<dyn onceward::ledger::Ledger> {
        self.ledger.clone()
    }

    /// Makes the hot tier forget a key, whichever tier it is.
    pub async fn forget(&self, namespace: &str, key: &str) {
        let id = onceward::domain::RecordId {
            namespace: namespace.to_owned().try_into().expect("namespace"),
            key: key.to_owned().try_into().expect("key"),
        };
        self.hot.remove(&id).await.expect("hot tier reachable");
    }

    /// The Redis key this sidecar uses for (namespace, key).
    pub fn redis_key(&self, namespace: &str, key: &str) -> String {
        format!("{}{namespace}:{key}", self.key_prefix)
    }

    /// `/metrics` as text.
    pub async fn metrics(&self) -> String {
        scrape_metrics(self.metrics_addr).await
    }

    /// The value of one sample, e.g. `onceward_claims_total{outcome="acquired",tier="ledger"}`;
    /// 0 if absent. Labels are matched as a set, in any order.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics().await, name, labels)
    }
}

/// `GET /metrics` from a sidecar's metrics listener, as text.
pub async fn scrape_metrics(metrics_addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut socket = TcpStream::connect(metrics_addr).await.expect("metrics");
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .expect("write");
    let mut reply = String::new();
    socket.read_to_string(&mut reply).await.expect("read");
    reply
}

/// The value of one sample in a scrape; 0 if absent. Labels are matched as a set.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
                && rest.matches('=').count() == labels.len()
        })
        .map(|(_, value)| value.parse::<f64>().expect("a number"))
        .sum()
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
