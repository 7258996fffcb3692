//! The sidecar under test, built in-process from the same command line as
//! `onceward serve` (port 0 for gRPC and metrics) and stopped when dropped; the one
//! builder every test starts it with; and its `/metrics`, scraped and read sample by
//! sample.
//!
//! ```ignore
//! let db = TestDatabase::create().await;
//! let app = TestApp::builder()
//!     .ledger(Ledger::Postgres(&db))     // default: a fresh database of its own
//!     .hot_tier(HotTier::InProcess)      // default: the shared Redis
//!     .args(&["--max-lease=1h"])
//!     .spawn()
//!     .await;
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser as _;
use onceward::app::Application;
use onceward::command::{Cli, Command as Subcommand};
use onceward::config::ServeArgs;
use onceward::proto::onceward_client::OncewardClient;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use super::{TcpProxy, TestDatabase, shared_redis_url, unique};

/// Where a test sidecar keeps its records.
#[derive(Clone, Copy)]
pub enum Ledger<'a> {
    /// A Postgres database of the sidecar's own, created fresh and dropped with it.
    /// The default.
    FreshPostgres,
    /// The embedded ledger, SQLite, in a fresh temporary directory of the sidecar's
    /// own, removed with it.
    FreshSqlite,
    /// A database the test holds: to look into it, or to share it between sidecars.
    Postgres(&'a TestDatabase),
    /// A database the test holds, reached through a proxy that can cut it off.
    PostgresThrough(&'a TestDatabase, &'a TcpProxy),
}

/// Where a test sidecar keeps its hot copies of records.
#[derive(Clone)]
pub enum HotTier {
    /// The shared Redis, under the sidecar's key prefix. The default.
    SharedRedis,
    /// The Redis at this URL: a [`RedisServer`](super::RedisServer) of the test's own,
    /// or something that only pretends to be one.
    Redis(String),
    /// A Redis Cluster, given by its seed nodes (`--redis-cluster`), e.g. a
    /// [`RedisCluster`](super::RedisCluster) of the test's own.
    RedisCluster(String),
    /// No Redis: the in-process cache.
    InProcess,
}

/// One of the four combinations of hot tier and ledger; the semantic suite runs on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairing {
    /// Postgres behind the shared Redis.
    PostgresRedis,
    /// Postgres behind the in-process cache.
    PostgresMemory,
    /// SQLite behind the shared Redis.
    SqliteRedis,
    /// SQLite behind the in-process cache: the embedded tier.
    SqliteMemory,
}

impl Pairing {
    /// This pairing's ledger, fresh.
    pub fn ledger(self) -> Ledger<'static> {
        match self {
            Pairing::PostgresRedis | Pairing::PostgresMemory => Ledger::FreshPostgres,
            Pairing::SqliteRedis | Pairing::SqliteMemory => Ledger::FreshSqlite,
        }
    }

    /// This pairing's hot tier.
    pub fn hot_tier(self) -> HotTier {
        match self {
            Pairing::PostgresRedis | Pairing::SqliteRedis => HotTier::SharedRedis,
            Pairing::PostgresMemory | Pairing::SqliteMemory => HotTier::InProcess,
        }
    }
}

/// How a test wants its sidecar, from [`TestApp::builder`]'s defaults (a fresh Postgres
/// database, the shared Redis under a fresh key prefix, plaintext, no tenants). Every
/// sidecar [`spawn`](Self::spawn)ed from one builder shares its key prefix, so two
/// spawned on one `Ledger::Postgres` are two pods of one deployment.
pub struct TestAppBuilder<'a> {
    ledger: Ledger<'a>,
    hot_tier: HotTier,
    key_prefix: String,
    args: Vec<String>,
    tls: bool,
    /// The keys its sidecars write to the shared Redis, deleted when the builder and
    /// every sidecar it spawned are gone.
    shared_keys: Arc<SharedRedisKeys>,
}

impl<'a> TestAppBuilder<'a> {
    /// Where the sidecar keeps its records (`--database-url`).
    pub fn ledger(mut self, ledger: Ledger<'a>) -> Self {
        self.ledger = ledger;
        self
    }

    /// Where the sidecar keeps its hot copies (`--redis-url`, `--redis-cluster`, or
    /// none).
    pub fn hot_tier(mut self, hot_tier: HotTier) -> Self {
        self.hot_tier = hot_tier;
        self
    }

    /// The ledger and hot tier of one pairing.
    pub fn pairing(self, pairing: Pairing) -> Self {
        self.ledger(pairing.ledger()).hot_tier(pairing.hot_tier())
    }

    /// The Redis key prefix, instead of a fresh one (`--redis-key-prefix`).
    pub fn key_prefix(mut self, key_prefix: &str) -> Self {
        key_prefix.clone_into(&mut self.key_prefix);
        self
    }

    /// Tenants and their tokens, from this TOML file (`--config`).
    pub fn tenants(mut self, config: impl AsRef<Path>) -> Self {
        self.args
            .push(format!("--config={}", config.as_ref().display()));
        self
    }

    /// Serve TLS with this certificate chain and key (`--tls-cert`, `--tls-key`). The
    /// sidecar's `client` is then not connected: the test makes its own TLS client.
    pub fn tls(mut self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        self.tls = true;
        self.args
            .push(format!("--tls-cert={}", cert.as_ref().display()));
        self.args
            .push(format!("--tls-key={}", key.as_ref().display()));
        self
    }

    /// Require client certificates signed by this CA: mutual TLS (`--tls-client-ca`).
    pub fn tls_client_ca(mut self, ca: impl AsRef<Path>) -> Self {
        self.args
            .push(format!("--tls-client-ca={}", ca.as_ref().display()));
        self
    }

    /// More `onceward serve` flags, e.g. `&["--max-lease=1h"]`; a flag the harness
    /// sets too (`--ledger-timeout`, `--redis-breaker-cooldown`) takes this value.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|arg| (*arg).to_owned()));
        self
    }

    /// Starts the sidecar and, unless it serves TLS, connects its `client`.
    pub async fn spawn(&self) -> TestApp {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let mut own = OwnLedger::default();
        let database_url = match self.ledger {
            Ledger::FreshPostgres => {
                let db = TestDatabase::create().await;
                let url = db.url.clone();
                own.database = Some(db);
                url
            }
            Ledger::FreshSqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
                own.dir = Some(dir);
                url
            }
            Ledger::Postgres(db) => db.url.clone(),
            Ledger::PostgresThrough(db, proxy) => db.url_through(proxy.addr),
        };
        let redis_flag = match &self.hot_tier {
            HotTier::SharedRedis => {
                self.shared_keys.track(&self.key_prefix);
                Some(format!("--redis-url={}", shared_redis_url()))
            }
            HotTier::Redis(url) => Some(format!("--redis-url={url}")),
            HotTier::RedisCluster(seeds) => Some(format!("--redis-cluster={seeds}")),
            HotTier::InProcess => None,
        };
        let mut argv = vec![
            "onceward".to_owned(),
            "serve".to_owned(),
            "--listen=127.0.0.1:0".to_owned(),
            "--metrics-listen=127.0.0.1:0".to_owned(),
            format!("--redis-key-prefix={}", self.key_prefix),
            "--ledger-timeout=2s".to_owned(),
            "--redis-breaker-cooldown=200ms".to_owned(),
            format!("--database-url={database_url}"),
        ];
        argv.extend(redis_flag);
        argv.extend(self.args.iter().cloned());
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
        let client = if self.tls {
            OncewardClient::new(
                Channel::from_shared(format!("http://{addr}"))
                    .expect("uri")
                    .connect_lazy(),
            )
        } else {
            TestApp::connect(addr).await
        };
        TestApp {
            addr,
            metrics_addr,
            client,
            hot,
            ledger,
            key_prefix: self.key_prefix.clone(),
            stop: Some(stop),
            server: Some(server),
            _own_ledger: own,
            _shared_keys: self.shared_keys.clone(),
        }
    }

    /// Two sidecars on one ledger and one Redis key space, as two pods would share
    /// them. The ledger must be one the test holds, or each would make its own.
    pub async fn spawn_two(&self) -> (TestApp, TestApp) {
        assert!(
            !matches!(self.ledger, Ledger::FreshPostgres | Ledger::FreshSqlite),
            "two sidecars share a ledger the test holds, e.g. Ledger::Postgres(&db)"
        );
        (self.spawn().await, self.spawn().await)
    }
}

/// The ledger a sidecar made for itself; held only so it is removed with the sidecar.
#[derive(Default)]
struct OwnLedger {
    database: Option<TestDatabase>,
    dir: Option<tempfile::TempDir>,
}

/// A running sidecar.
pub struct TestApp {
    pub addr: SocketAddr,
    hot: Arc<dyn onceward::cache::HotTier>,
    ledger: Arc<dyn onceward::ledger::Ledger>,
    pub metrics_addr: SocketAddr,
    pub client: OncewardClient<Channel>,
    pub key_prefix: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    // Last, so the ledger outlives the rest of the sidecar's fields.
    _own_ledger: OwnLedger,
    _shared_keys: Arc<SharedRedisKeys>,
}

/// The key prefixes sidecars used on the shared Redis. When the last holder goes, their
/// keys are deleted, so the suite leaves no records behind on a Redis it shares with
/// other work (they would live for their retention, a day by default).
#[derive(Default)]
pub struct SharedRedisKeys {
    prefixes: std::sync::Mutex<Vec<String>>,
}

impl SharedRedisKeys {
    /// The most keys a Redis may hold for the cleanup to walk it: a `SCAN` visits every
    /// key, and a Redis that holds millions is shared with something else entirely.
    pub const MAX_KEYS_TO_SCAN: u64 = 1_000_000;

    fn track(&self, prefix: &str) {
        let mut prefixes = self.prefixes.lock().unwrap_or_else(|e| e.into_inner());
        if !prefixes.iter().any(|known| known == prefix) {
            prefixes.push(prefix.to_owned());
        }
    }

    fn delete(prefix: &str) -> redis::RedisResult<()> {
        let client = redis::Client::open(shared_redis_url())?;
        let mut connection = client.get_connection_with_timeout(Duration::from_secs(2))?;
        connection.set_read_timeout(Some(Duration::from_secs(10)))?;
        let keys: u64 = redis::cmd("DBSIZE").query(&mut connection)?;
        if keys > Self::MAX_KEYS_TO_SCAN {
            return Ok(());
        }
        let pattern = format!("{prefix}*");
        let mut cursor = 0u64;
        loop {
            let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(10_000)
                .query(&mut connection)?;
            if !found.is_empty() {
                redis::cmd("UNLINK").arg(&found).exec(&mut connection)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

impl Drop for SharedRedisKeys {
    fn drop(&mut self) {
        let prefixes = std::mem::take(self.prefixes.get_mut().unwrap_or_else(|e| e.into_inner()));
        for prefix in prefixes
            .iter()
            .filter(|prefix| prefix.starts_with("onceward-test:"))
        {
            let _ = Self::delete(prefix);
        }
    }
}

impl TestApp {
    /// A sidecar to configure and [`spawn`](TestAppBuilder::spawn): a fresh Postgres
    /// database, the shared Redis under a fresh key prefix, plaintext, no tenants.
    pub fn builder<'a>() -> TestAppBuilder<'a> {
        TestAppBuilder {
            ledger: Ledger::FreshPostgres,
            hot_tier: HotTier::SharedRedis,
            key_prefix: unique("onceward-test:") + ":",
            args: Vec::new(),
            tls: false,
            shared_keys: Arc::default(),
        }
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
    pub fn ledger(&self) -> Arc<dyn onceward::ledger::Ledger> {
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
