//! The service's tables. The charge API and the relay share the service's database
//! (the outbox must be written in the charge's transaction); the consumer's ledger is
//! its own table (in production, its own database).

use anyhow::Context as _;
use sqlx::Connection as _;

/// Where the relay finds the outbox.
pub const OUTBOX: &str = "onceward_outbox";
/// The subject a charge is announced on.
pub const CHARGED_TOPIC: &str = "payments.charged";

/// Creates every table the path needs, if missing.
pub async fn setup(database_url: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(database_url)
        .await
        .context("cannot connect to --database-url")?;
    let outbox = onceward::relay::TableName::parse(OUTBOX).map_err(anyhow::Error::msg)?;
    onceward::relay::outbox::migrate(&mut conn, &outbox).await?;
    for statement in [
        // One row per logical charge: the key is UNIQUE, so a retry that reaches the
        // handler again (a lease taken over) cannot charge twice.
        "CREATE TABLE IF NOT EXISTS charges (\
           id bigserial PRIMARY KEY, \
           idempotency_key text NOT NULL UNIQUE, \
           order_id text NOT NULL, \
           amount_cents bigint NOT NULL, \
           created_at timestamptz NOT NULL DEFAULT now())",
        // The consumer's effect: one entry per message id, with when the broker stored
        // the message (what the consumer was offered when) and when it was applied. The UNIQUE is the last net
        // under the inbox (a consumer killed after its effect, before its
        // CompleteBatch, gets the message again).
        "CREATE TABLE IF NOT EXISTS ledger_entries (\
           message_id text PRIMARY KEY, \
           charge_key text NOT NULL, \
           amount_cents bigint NOT NULL, \
           published_at timestamptz, \
           applied_at timestamptz NOT NULL DEFAULT now())",
    ] {
        sqlx::query(statement).execute(&mut conn).await?;
    }
    println!("payment path tables are ready");
    Ok(())
}
