//! The ledger the storage flags name, opened three ways: by `serve`, which migrates
//! it; by `migrate`, which says what it created and applied; and by `gc`, which
//! refuses a ledger that is not there or not set up — a cron job started in the wrong
//! directory must fail, not clean a new empty ledger and report success.

use std::path::PathBuf;
use std::str::FromStr as _;
use std::sync::Arc;

use anyhow::Context as _;
use sqlx::ConnectOptions as _;
use sqlx::sqlite::SqliteConnectOptions;

use crate::config::{GcArgs, StorageArgs};
use crate::ledger::postgres::PostgresOptions;
use crate::ledger::schema::{self, Migrations, Step};
use crate::ledger::sqlite::SqliteOptions;
use crate::ledger::{Ledger, PostgresLedger, SqliteLedger};
use crate::retention::Retention;

/// Where the storage flags put the ledger.
enum Location {
    Postgres { url: String },
    Sqlite { url: String, path: PathBuf },
}

impl Location {
    fn of(storage: &StorageArgs) -> anyhow::Result<Self> {
        let Some(url) = storage.database_url.as_deref() else {
            let path = storage.data_dir.join("onceward.db");
            let url = format!("sqlite://{}", path.display());
            return Ok(Self::Sqlite { url, path });
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres {
                url: url.to_owned(),
            })
        } else if url.starts_with("sqlite:") {
            let path = SqliteConnectOptions::from_str(url)
                .context("invalid SQLite URL in --database-url")?
                .get_filename()
                .to_owned();
            Ok(Self::Sqlite {
                url: url.to_owned(),
                path,
            })
        } else {
            anyhow::bail!(
                "unsupported --database-url {:?}: expected postgres://… or sqlite://…",
                redact(url)
            )
        }
    }

    /// How reports name the ledger (without a password).
    fn describe(&self) -> String {
        match self {
            Self::Postgres { url } => format!("the Postgres ledger {}", redact(url)),
            Self::Sqlite { path, .. } => format!("the SQLite ledger {}", path.display()),
        }
    }
}

/// A ledger, opened, and what opening it did.
struct Opened {
    ledger: Arc<dyn Ledger>,
    location: Location,
    /// Whether the ledger's file did not exist before (SQLite only).
    created: bool,
    /// The migrations applied while opening it.
    applied: Vec<Step>,
}

/// Connects the ledger named by the storage flags, applying its migrations: what
/// `serve` runs.
pub async fn connect_ledger(storage: &StorageArgs) -> anyhow::Result<Arc<dyn Ledger>> {
    Ok(open(storage, Migrations::Apply).await?.ledger)
}

/// `onceward migrate`: applies what the ledger lacks and says what that was.
pub async fn migrate(storage: &StorageArgs) -> anyhow::Result<String> {
    let opened = open(storage, Migrations::Apply).await?;
    let ledger = opened.location.describe();
    let applied: Vec<String> = opened.applied.iter().map(Step::to_string).collect();
    Ok(match (opened.created, applied.is_empty()) {
        (true, _) => format!(
            "created {ledger} and applied {} migration(s): {}",
            applied.len(),
            applied.join(", ")
        ),
        (false, false) => format!(
            "applied {} migration(s) to {ledger}: {}",
            applied.len(),
            applied.join(", ")
        ),
        (false, true) => format!("{ledger} is up to date; nothing to apply"),
    })
}

/// `onceward gc`: one retention pass over an existing, migrated ledger; the number of
/// records it deleted.
pub async fn gc(args: &GcArgs) -> anyhow::Result<u64> {
    let opened = open(&args.storage, Migrations::Require).await?;
    let retention = Retention::new(opened.ledger, args.cleanup_batch_size);
    let deleted = retention
        .run_once(&tokio_util::sync::CancellationToken::new())
        .await?;
    Ok(deleted)
}

async fn open(storage: &StorageArgs, migrations: Migrations) -> anyhow::Result<Opened> {
    let location = Location::of(storage)?;
    match &location {
        Location::Postgres { url } => {
            tracing::info!(url = %redact(url), "ledger: Postgres");
            let options = PostgresOptions {
                max_connections: storage.database_max_connections,
                acquire_timeout: storage.ledger_timeout,
                allow_async_commit: storage.allow_async_commit,
                batch_writers: storage.ledger_batch_writers,
                migrations,
            };
            let (ledger, applied) = PostgresLedger::connect_reporting(url, &options).await?;
            Ok(Opened {
                ledger: Arc::new(ledger),
                location,
                created: false,
                applied,
            })
        }
        Location::Sqlite { url, path } => {
            let created = !path.exists();
            if created && migrations == Migrations::Require {
                anyhow::bail!(
                    "there is no ledger at {}: `onceward gc` cleans the ledger a sidecar \
                     uses and never creates one; give it the sidecar's --data-dir (or \
                     --database-url)",
                    path.display()
                );
            }
            let pending = if created {
                schema::pending(&schema::SQLITE, &[])
            } else {
                let mut connection = SqliteConnectOptions::new()
                    .filename(path)
                    .connect()
                    .await
                    .with_context(|| format!("cannot open the SQLite ledger {}", path.display()))?;
                let applied = schema::applied_sqlite(&mut connection)
                    .await
                    .context("cannot read which migrations the SQLite ledger has applied")?;
                schema::pending(&schema::SQLITE, &applied)
            };
            if migrations == Migrations::Require {
                schema::refuse_pending(&location.describe(), &pending)?;
            }
            tracing::info!(
                path = %path.display(),
                "ledger: embedded SQLite (single host only; use --database-url postgres://… \
                 to share one ledger between sidecars)"
            );
            let options = SqliteOptions {
                acquire_timeout: storage.ledger_timeout,
                ..SqliteOptions::default()
            };
            let ledger =
                SqliteLedger::connect(url.strip_prefix("sqlite://").unwrap_or(url), &options)
                    .await?;
            Ok(Opened {
                ledger: Arc::new(ledger),
                location,
                created,
                applied: pending,
            })
        }
    }
}

/// `text` with the password of every URL in it replaced, for logs and errors.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let (before, after) = rest.split_at(scheme_end + 3);
        out.push_str(before);
        let authority_end = after
            .find(['/', '"', ' ', ',', ')', '}', '?', '#'])
            .unwrap_or(after.len());
        let (authority, tail) = after.split_at(authority_end);
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                match userinfo.split_once(':') {
                    Some((user, _password)) => out.push_str(&format!("{user}:***")),
                    None => out.push_str(userinfo),
                }
                out.push('@');
                out.push_str(host);
            }
            None => out.push_str(authority),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/ledger"),
            "postgres://app:***@db:5432/ledger"
        );
        assert_eq!(
            redact("redis://:s3cret@cache:6379"),
            "redis://:***@cache:6379"
        );
        assert_eq!(redact("redis://cache:6379"), "redis://cache:6379");
        assert_eq!(
            redact(r#"{ a: Some("postgres://u:p@db/x"), b: "redis://:q@r:1", c: 5s }"#),
            r#"{ a: Some("postgres://u:***@db/x"), b: "redis://:***@r:1", c: 5s }"#
        );
    }
}
