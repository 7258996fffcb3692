//! The test harness: a real sidecar on port 0 against a fresh Postgres database and an
//! isolated Redis (a key prefix of its own on the shared Redis, or a `redis-server` of
//! its own on a free port when the test kills or flushes it), plus a TCP proxy that can
//! cut a connection mid-run.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser as _;
use onceward::app::Application;
use onceward::config::{Cli, Command as Subcommand, ServeArgs};
use onceward::proto::onceward_client::OncewardClient;
use onceward::proto::{self, ClaimRequest, ClaimResponse, Outcome, Tier};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Postgres server the tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("ONCEWARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The socket address of that Postgres server, for a [`TcpProxy`] in front of it.
pub fn postgres_addr() -> SocketAddr {
    use std::net::ToSocketAddrs as _;
    let url = postgres_admin_url();
    let (_, rest) = url.split_once("://").expect("a URL");
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    host_port
        .to_socket_addrs()
        .expect("resolve the Postgres host")
        .next()
        .expect("an address for the Postgres host")
}

/// The shared Redis the tests isolate themselves on by key prefix.
pub fn shared_redis_url() -> String {
    std::env::var("ONCEWARD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A random lowercase suffix for database names, key prefixes and keys.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{:016x}", rand::random::<u64>())
}

/// A database of its own, dropped when the test ends.
pub struct TestDatabase {
    pub url: String,
    name: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let name = unique("onceward_test_");
        let admin = postgres_admin_url();
        let mut conn = connect_admin(&admin).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let base = admin.rsplit_once('/').expect("database URL has a path").0;
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }

    /// This database's URL with its host and port replaced by `addr`, e.g. a
    /// [`TcpProxy`] in front of the server.
    pub fn url_through(&self, addr: SocketAddr) -> String {
        let (scheme, rest) = self.url.split_once("://").expect("a URL");
        let (authority, path) = rest.split_once('/').expect("a database path");
        let userinfo = authority
            .rsplit_once('@')
            .map_or(String::new(), |(user, _)| format!("{user}@"));
        format!("{scheme}://{userinfo}{addr}/{path}")
    }

    /// Runs one SQL statement on this database and returns the first column of the
    /// first row as an i64 (for counts).
    pub async fn scalar(&self, sql: &'static str) -> i64 {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&self.url)
            .await
            .expect("connect");
        sqlx::query_scalar(sql)
            .fetch_one(&mut conn)
            .await
            .expect("query")
    }
}

impl TestDatabase {
    /// Runs one SQL statement on this database.
    pub async fn execute(&self, sql: &str) {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&self.url)
            .await
            .expect("connect");
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .expect("statement");
    }

    /// The Postgres ledger on this database, for driving the retention job directly.
    pub async fn ledger(&self) -> std::sync::Arc<dyn onceward::ledger::Ledger> {
        let options = onceward::ledger::postgres::PostgresOptions {
            max_connections: 4,
            acquire_timeout: Duration::from_secs(5),
            allow_async_commit: false,
            batch_writers: onceward::ledger::postgres::DEFAULT_BATCH_WRITERS,
        };
        let ledger = onceward::ledger::PostgresLedger::connect(&self.url, &options)
            .await
            .expect("ledger");
        std::sync::Arc::new(ledger)
    }

    /// Inserts `count` completed records in `namespace` that expired a day ago.
    pub async fn insert_expired(&self, namespace: &str, count: u32) {
        self.execute(&format!(
            "INSERT INTO onceward_records (namespace, key, state, fingerprint, fencing_token, \
             response, created_at, completed_at, lease_expires_at, expires_at) \
             SELECT '{namespace}', 'k' || g, 2, '', nextval('onceward_fencing_tokens'), 'r', \
             now() - interval '2 days', now() - interval '2 days', NULL, now() - interval '1 day' \
             FROM generate_series(1, {count}) g"
        ))
        .await;
    }
}

async fn connect_admin(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection as _;
    sqlx::PgConnection::connect(url)
        .await
        .expect("the tests need Postgres: set ONCEWARD_TEST_DATABASE_URL")
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = postgres_admin_url();
        // Drop runs outside any runtime's async context: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let mut conn = connect_admin(&admin).await;
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await;
            });
        })
        .join();
    }
}

/// A `redis-server` of the test's own, on a free port, that the test may kill,
/// restart and flush. Killed when dropped.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> Self {
        let port = free_port();
        let mut server = Self { port, child: None };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port, empty, and waits until it answers PING.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be on PATH");
        self.child = Some(child);
        for _ in 0..200 {
            if self.connection().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// SIGKILLs the server.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A connection of the test's own. Its replies may take up to 5 s (the client's
    /// default is 500 ms): on a busy machine, or behind `CLIENT PAUSE`, a test's own
    /// command must wait, not fail.
    pub async fn connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.url())?;
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(5)));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    pub async fn flushall(&self) {
        let mut conn = self.connection().await.expect("redis connection");
        let _: () = redis::cmd("FLUSHALL")
            .query_async(&mut conn)
            .await
            .expect("FLUSHALL");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A TCP proxy in front of a server. `cut` closes every open connection and refuses
/// new ones (each is closed at once) until `restore`.
pub struct TcpProxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    cut_now: Arc<Notify>,
    task: JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let cut = Arc::new(AtomicBool::new(false));
        let cut_now = Arc::new(Notify::new());
        let task = tokio::spawn({
            let cut = cut.clone();
            let cut_now = cut_now.clone();
            async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        return;
                    };
                    if cut.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let cut_now = cut_now.clone();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let cut_signal = cut_now.notified();
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut_signal => {}
                        }
                    });
                }
            }
        });
        Self {
            addr,
            cut,
            cut_now,
            task,
        }
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.cut_now.notify_waiters();
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

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

// ---- request helpers ---------------------------------------------------------------

pub fn claim_request(
    namespace: &str,
    key: &str,
    fingerprint: &[u8],
    lease: Option<Duration>,
) -> ClaimRequest {
    ClaimRequest {
        namespace: namespace.to_owned(),
        key: key.to_owned(),
        fingerprint: fingerprint.to_vec(),
        lease: lease.map(proto_duration),
        ..Default::default()
    }
}

pub use onceward::grpc::proto_duration;

pub async fn claim(
    client: &mut OncewardClient<Channel>,
    namespace: &str,
    key: &str,
) -> ClaimResponse {
    claim_with(client, namespace, key, b"", None).await
}

pub async fn claim_with(
    client: &mut OncewardClient<Channel>,
    namespace: &str,
    key: &str,
    fingerprint: &[u8],
    lease: Option<Duration>,
) -> ClaimResponse {
    client
        .claim(claim_request(namespace, key, fingerprint, lease))
        .await
        .expect("claim")
        .into_inner()
}

pub async fn complete(
    client: &mut OncewardClient<Channel>,
    namespace: &str,
    key: &str,
    token: u64,
    response: &[u8],
) -> Result<proto::CompleteResponse, tonic::Status> {
    client
        .complete(proto::CompleteRequest {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            fencing_token: token,
            response: response.to_vec(),
            retention: None,
        })
        .await
        .map(tonic::Response::into_inner)
}

pub async fn release(
    client: &mut OncewardClient<Channel>,
    namespace: &str,
    key: &str,
    token: u64,
) -> Result<(), tonic::Status> {
    client
        .release(proto::ReleaseRequest {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            fencing_token: token,
        })
        .await
        .map(drop)
}

pub async fn extend(
    client: &mut OncewardClient<Channel>,
    namespace: &str,
    key: &str,
    token: u64,
    lease: Duration,
) -> Result<proto::ExtendLeaseResponse, tonic::Status> {
    client
        .extend_lease(proto::ExtendLeaseRequest {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            fencing_token: token,
            lease: Some(proto_duration(lease)),
        })
        .await
        .map(tonic::Response::into_inner)
}

pub async fn lookup(
    client: &mut OncewardClient<Channel>,
    namespace: &str,
    key: &str,
) -> proto::LookupResponse {
    client
        .lookup(proto::LookupRequest {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
        })
        .await
        .expect("lookup")
        .into_inner()
}

pub fn outcome(response: &ClaimResponse) -> Outcome {
    Outcome::try_from(response.outcome).expect("a known outcome")
}

pub fn tier(response: &ClaimResponse) -> Tier {
    Tier::try_from(response.served_by).expect("a known tier")
}

/// Retries `check` every 20 ms until it returns true, for at most `within`.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
