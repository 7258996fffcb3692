//! A Postgres database of each test's own, created fresh and dropped when the test
//! ends, and where the Postgres server is (`ONCEWARD_TEST_DATABASE_URL`).

use std::net::SocketAddr;
use std::time::Duration;

use super::unique;

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
            migrations: onceward::ledger::schema::Migrations::Apply,
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
