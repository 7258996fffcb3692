//! The ledger's schema: the migrations built into the binary, and which of them a
//! database has applied, so `migrate` can say what it did and `gc` can refuse a
//! ledger that `serve` never set up instead of quietly creating one.

use sqlx::migrate::Migrator;
use sqlx::{PgConnection, SqliteConnection};

/// The Postgres ledger's migrations.
pub static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");
/// The SQLite ledger's migrations.
pub static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");

/// What connecting does about migrations the database lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrations {
    /// Applies them: `serve` and `migrate`.
    Apply,
    /// Refuses to go on: `gc`, which must find the ledger a sidecar set up, never
    /// make one of its own.
    Require,
}

/// One migration, as reports name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Its version (the file name's timestamp).
    pub version: i64,
    /// What it does (the rest of the file name).
    pub description: String,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.version, self.description)
    }
}

/// The migrations of `migrator` whose version is not in `applied`, in order.
pub fn pending(migrator: &Migrator, applied: &[i64]) -> Vec<Step> {
    migrator
        .iter()
        .filter(|migration| migration.migration_type.is_up_migration())
        .filter(|migration| !applied.contains(&migration.version))
        .map(|migration| Step {
            version: migration.version,
            description: migration.description.to_string(),
        })
        .collect()
}

/// Fails, naming what is missing, unless `pending` is empty.
pub fn refuse_pending(ledger: &str, pending: &[Step]) -> anyhow::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let missing: Vec<String> = pending.iter().map(Step::to_string).collect();
    anyhow::bail!(
        "{ledger} lacks {} migration(s) ({}): run `onceward migrate` with the same \
         --database-url/--data-dir, or start a sidecar of this version, first",
        pending.len(),
        missing.join(", ")
    )
}

/// The versions a Postgres ledger has applied (none if it never ran a migration).
pub async fn applied_postgres(connection: &mut PgConnection) -> sqlx::Result<Vec<i64>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *connection)
        .await?;
    if !exists {
        return Ok(Vec::new());
    }
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(connection)
        .await
}

/// The versions a SQLite ledger has applied (none if it never ran a migration).
pub async fn applied_sqlite(connection: &mut SqliteConnection) -> sqlx::Result<Vec<i64>> {
    let exists: bool = sqlx::query_scalar(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(&mut *connection)
    .await?;
    if !exists {
        return Ok(Vec::new());
    }
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(connection)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_lists_what_a_database_lacks_in_order() {
        for migrator in [&POSTGRES, &SQLITE] {
            let all: Vec<i64> = migrator.iter().map(|m| m.version).collect();
            assert!(all.len() >= 2, "both ledgers have migrations");
            assert_eq!(pending(migrator, &[]).len(), all.len());
            assert!(pending(migrator, &all).is_empty());
            let rest = pending(migrator, &all[..1]);
            assert_eq!(
                rest.iter().map(|step| step.version).collect::<Vec<_>>(),
                all[1..]
            );
            assert!(!rest[0].to_string().is_empty());
        }
    }
}
