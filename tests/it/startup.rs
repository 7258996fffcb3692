//! What the server commands say, as the real binary: `migrate` reporting what it did,
//! `gc` refusing a ledger that is not there, and `serve` naming the cause and the flag
//! of whatever stops it — or, for Redis, warning and serving anyway — with its
//! settings logged once and every counter exported at zero from the start.

use std::process::{Output, Stdio};
use std::time::Duration;

use onceward::proto::Outcome;

use crate::harness::*;

/// Runs `onceward args…` in `dir` to its end, with no `ONCEWARD_*` setting inherited.
async fn onceward(dir: &std::path::Path, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_onceward"));
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("ONCEWARD_")) {
        command.env_remove(name);
    }
    let output = command
        .args(args)
        .current_dir(dir)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("onceward exits")
        .expect("run onceward")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The number of migrations the binary carries for `ledger` (`postgres`, `sqlite`).
fn migrations(ledger: &str) -> usize {
    let dir = format!("{}/migrations/{ledger}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_dir(dir).expect("migrations").count()
}

#[tokio::test]
async fn gc_refuses_an_embedded_ledger_that_does_not_exist_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let refused = onceward(dir.path(), &["gc"]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let message = stderr(&refused);
    assert!(
        message.contains("onceward-data/onceward.db")
            && message.contains("--data-dir")
            && message.contains("--database-url"),
        "{message}"
    );
    assert!(!dir.path().join("onceward-data").exists());

    let created = onceward(dir.path(), &["migrate"]).await;
    assert!(created.status.success(), "{}", stderr(&created));
    let cleaned = onceward(dir.path(), &["gc"]).await;
    assert!(cleaned.status.success(), "{}", stderr(&cleaned));
    assert_eq!(stdout(&cleaned), "deleted 0 expired records");
}

#[tokio::test]
async fn gc_refuses_a_postgres_ledger_that_was_never_migrated_and_migrates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let refused = onceward(dir.path(), &["gc", "--database-url", &db.url]).await;
    assert_eq!(refused.status.code(), Some(1));
    let message = stderr(&refused);
    assert!(
        message.contains(&format!("lacks {} migration(s)", migrations("postgres")))
            && message.contains("onceward migrate"),
        "{message}"
    );
    let tables = db
        .scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        .await;
    assert_eq!(tables, 0, "gc created tables");
}

#[tokio::test]
async fn migrate_says_what_it_created_and_applied_on_both_ledgers() {
    let dir = tempfile::tempdir().unwrap();
    let first = onceward(dir.path(), &["migrate", "--data-dir", "ledger"]).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let expected = format!(
        "created the SQLite ledger ledger/onceward.db and applied {} migration(s): ",
        migrations("sqlite")
    );
    assert!(stdout(&first).starts_with(&expected), "{}", stdout(&first));
    assert!(
        stdout(&first).contains("create records"),
        "{}",
        stdout(&first)
    );
    let again = onceward(dir.path(), &["migrate", "--data-dir", "ledger"]).await;
    assert_eq!(
        stdout(&again),
        "the SQLite ledger ledger/onceward.db is up to date; nothing to apply"
    );

    let db = TestDatabase::create().await;
    let first = onceward(dir.path(), &["migrate", "--database-url", &db.url]).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let expected = format!(
        "applied {} migration(s) to the Postgres ledger {}: ",
        migrations("postgres"),
        db.url
    );
    assert!(stdout(&first).starts_with(&expected), "{}", stdout(&first));
    let again = onceward(dir.path(), &["migrate", "--database-url", &db.url]).await;
    assert!(
        stdout(&again).ends_with("is up to date; nothing to apply"),
        "{}",
        stdout(&again)
    );
}

#[tokio::test]
async fn postgres_failures_keep_their_cause_and_say_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let closed = format!("postgres://postgres@127.0.0.1:{}/ledger", free_port());
    let refused = onceward(dir.path(), &["serve", "--database-url", &closed]).await;
    assert_eq!(refused.status.code(), Some(1));
    let message = stderr(&refused);
    assert_eq!(
        message.matches("Connection refused").count(),
        1,
        "{message}"
    );
    assert!(message.contains("is Postgres running"), "{message}");

    let missing = format!(
        "{}/{}",
        postgres_admin_url().rsplit_once('/').unwrap().0,
        unique("absent_")
    );
    let refused = onceward(dir.path(), &["migrate", "--database-url", &missing]).await;
    assert_eq!(refused.status.code(), Some(1));
    let message = stderr(&refused);
    assert_eq!(message.matches("does not exist").count(), 1, "{message}");
    assert!(message.contains("createdb"), "{message}");
}

#[tokio::test]
async fn durations_need_a_unit_and_take_fractions() {
    let dir = tempfile::tempdir().unwrap();
    let refused = onceward(dir.path(), &["serve", "--redis-timeout", "100"]).await;
    assert_eq!(refused.status.code(), Some(2));
    let message = stderr(&refused);
    assert!(
        message.contains("--redis-timeout") && message.contains("100ms"),
        "{message}"
    );

    let held = onceward(
        dir.path(),
        &[
            "claim",
            "ns",
            "k",
            "--lease",
            "1.5",
            "--addr",
            "http://127.0.0.1:1",
        ],
    )
    .await;
    assert_eq!(held.status.code(), Some(2), "{}", stderr(&held));
    assert!(stderr(&held).contains("1.5s"), "{}", stderr(&held));
}

#[tokio::test]
async fn listen_errors_name_their_flag() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let free = format!("127.0.0.1:{}", free_port());
    for (flag, other) in [
        ("--listen", "--metrics-listen"),
        ("--metrics-listen", "--listen"),
    ] {
        let data_dir = unique("data-");
        let args = ["serve", "--data-dir", &data_dir, flag, &taken, other, &free];
        let refused = onceward(dir.path(), &args).await;
        assert_eq!(refused.status.code(), Some(1));
        let message = stderr(&refused);
        assert!(
            message.contains(&format!("cannot listen on {taken}")) && message.contains(flag),
            "{message}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_redis_is_named_at_start_and_the_sidecar_serves_from_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let redis = format!("redis://app:redis-pw-not-logged@127.0.0.1:{}", free_port());
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_onceward"))
        .args(["serve", "--listen", &listen, "--metrics-listen", &metrics])
        .args(["--redis-url", &redis])
        .current_dir(dir.path())
        .env_remove("ONCEWARD_DATABASE_URL")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    let listening = eventually(Duration::from_secs(20), || async move {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    assert!(listening);
    let mut client = TestApp::connect(addr).await;
    let held = claim(&mut client, "startup", "redis-down").await;
    assert_eq!(outcome(&held), Outcome::Acquired);
    assert_eq!(held.served_by, onceward::proto::Tier::Ledger as i32);

    server.start_kill().unwrap();
    let log =
        String::from_utf8_lossy(&server.wait_with_output().await.unwrap().stderr).into_owned();
    let warning = log
        .lines()
        .find(|line| line.contains("Redis does not answer"))
        .unwrap_or_else(|| panic!("no warning about Redis:\n{log}"));
    assert!(
        warning.contains(&redis.replace("redis-pw-not-logged", "***"))
            && warning.contains("Connection refused"),
        "{warning}"
    );
    assert!(!log.contains("redis-pw-not-logged"), "{log}");
    assert_eq!(log.matches("settings=").count(), 1, "{log}");
    assert!(
        log.contains(&format!(
            "serving Prometheus metrics on http://{metrics}/metrics"
        )),
        "{log}"
    );
}

#[tokio::test]
async fn every_counter_and_gauge_is_exported_at_zero_from_the_start() {
    let app = TestApp::builder().spawn().await;
    let scrape = app.metrics().await;
    for series in [
        "onceward_takeovers_total 0",
        "onceward_cleanup_deleted_total 0",
        "onceward_cache_circuit_open 0",
        "onceward_fencing_rejections_total{rpc=\"complete\"} 0",
        "onceward_fencing_rejections_total{rpc=\"release\"} 0",
        "onceward_fencing_rejections_total{rpc=\"extend_lease\"} 0",
        "onceward_cache_errors_total{op=\"claim\"} 0",
        "onceward_cache_lookups_total{result=\"miss\"} 0",
        "onceward_claims_total{outcome=\"acquired\",tier=\"ledger\"} 0",
    ] {
        assert!(
            scrape.lines().any(|line| line == series),
            "{series} is not exported:\n{scrape}"
        );
    }
}
