//! A PgBouncer of the test's own in front of the test Postgres: on a free port of
//! 127.0.0.1, trusting every user (as the test Postgres does), any database passed
//! through, killed when dropped. PgBouncer refuses to run as root, so as root it is
//! started as `nobody`, with its files in a directory `nobody` can write.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, postgres_addr};

/// How PgBouncer lends server connections to its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection per client connection, for as long as it stays open.
    Session,
    /// A server connection per transaction (or per statement outside one).
    Transaction,
}

/// The running PgBouncer.
pub struct PgBouncer {
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl PgBouncer {
    /// The installed PgBouncer's version (`pgbouncer --version`), or `None` when it is
    /// not installed.
    pub fn installed_version() -> Option<(u32, u32)> {
        let output = Command::new("pgbouncer").arg("--version").output().ok()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let version = text.lines().next()?.strip_prefix("PgBouncer ")?;
        let mut parts = version.split('.').map(|part| part.parse::<u32>().ok());
        Some((parts.next()??, parts.next()??))
    }

    /// Starts PgBouncer in `mode` with at most `pool_size` server connections per
    /// database and user, and waits until it accepts connections. From 1.21 on it
    /// keeps clients' prepared statements (`max_prepared_statements`).
    pub async fn start(mode: PoolMode, pool_size: u32) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let postgres = postgres_addr();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let mode_name = match mode {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        };
        let config = format!(
            "[databases]\n\
             * = host={host} port={pg_port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {users}\n\
             pool_mode = {mode_name}\n\
             default_pool_size = {pool_size}\n\
             max_client_conn = 500\n\
             {prepared}             ignore_startup_parameters = extra_float_digits,options\n\
             logfile = {log}\n\
             pidfile = {pid}\n",
            // Only 1.21+ knows the setting (older ones refuse the file).
            prepared = match Self::installed_version() {
                Some(version) if version >= (1, 21) => "max_prepared_statements = 200\n",
                _ => "",
            },
            host = postgres.ip(),
            pg_port = postgres.port(),
            users = path("users.txt"),
            log = path("pgbouncer.log"),
            pid = path("pgbouncer.pid"),
        );
        std::fs::write(path("pgbouncer.ini"), config).expect("pgbouncer.ini");
        std::fs::write(path("users.txt"), "\"postgres\" \"\"\n").expect("users.txt");
        let mut command = Command::new("pgbouncer");
        if is_root() {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
                .expect("chmod");
            command.args(["-u", "nobody"]);
        }
        let child = command
            .arg(path("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgbouncer is installed");
        let log_path = path("pgbouncer.log");
        let bouncer = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            _dir: dir,
        };
        for _ in 0..250 {
            if tokio::net::TcpStream::connect(bouncer.addr).await.is_ok() {
                return bouncer;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        panic!("pgbouncer did not start on {}: {log}", bouncer.addr);
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}
