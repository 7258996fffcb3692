//! The fake payment vendor: every call it receives becomes a row of its own table in
//! the test database. No UNIQUE constraint, on purpose: a second charge for one
//! operation must show up as a second row, not be hidden by the vendor.
//!
//! It talks to Postgres directly, not through the proxy the sidecars use: the vendor
//! is another company's service, and cutting onceward's ledger must not cut it.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

const CREATE_TABLE: &str = r#"
CREATE TABLE vendor_calls (
    id bigserial PRIMARY KEY,
    op_key text NOT NULL,
    fencing_token bigint NOT NULL,
    caller text NOT NULL,
    failed_on_purpose boolean NOT NULL,
    called_at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"#;

const RECORD_CALL: &str = r#"
INSERT INTO vendor_calls (op_key, fencing_token, caller, failed_on_purpose)
VALUES ($1, $2, $3, $4)
RETURNING id
"#;

/// The vendor declined the charge (on purpose); nothing took effect.
#[derive(Debug)]
pub struct Declined;

/// One vendor call as the vendor recorded it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VendorCall {
    /// The vendor's id for the call; the response stored in the ledger names it.
    pub id: i64,
    /// The caller's idempotency key.
    pub op_key: String,
    /// The caller's fencing token.
    pub fencing_token: i64,
    /// Whether the vendor failed this call on purpose (it took no effect).
    pub failed_on_purpose: bool,
}

/// The vendor, with the failures it will inject per operation.
pub struct Vendor {
    pool: PgPool,
    failures_left: Vec<AtomicU32>,
}

impl Vendor {
    /// Creates the vendor's table; operation `i` will see its first `failures[i]`
    /// calls fail.
    pub async fn create(database_url: &str, failures: &[u32]) -> Self {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(database_url)
            .await
            .expect("the vendor connects to the test database");
        sqlx::query(CREATE_TABLE)
            .execute(&pool)
            .await
            .expect("create vendor_calls");
        Self {
            pool,
            failures_left: failures.iter().map(|n| AtomicU32::new(*n)).collect(),
        }
    }

    /// Charges operation `op` (index `op_index`) on behalf of the holder of `token`,
    /// taking `latency` first: a real vendor is slow, and a holder that takes a while
    /// is what gives a wrong takeover a chance to show up as a second charge.
    /// Returns the call's id, or `Declined` if this call was chosen to fail.
    pub async fn charge(
        &self,
        op_index: usize,
        op_key: &str,
        token: u64,
        caller: &str,
        latency: std::time::Duration,
    ) -> Result<i64, Declined> {
        tokio::time::sleep(latency).await;
        let fail = self.failures_left[op_index]
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        let id: i64 = sqlx::query_scalar(RECORD_CALL)
            .bind(op_key)
            .bind(i64::try_from(token).expect("tokens fit in bigint"))
            .bind(caller)
            .bind(fail)
            .fetch_one(&self.pool)
            .await
            .expect("the vendor records every call");
        if fail { Err(Declined) } else { Ok(id) }
    }

    /// Every call the vendor received.
    pub async fn calls(&self) -> Vec<VendorCall> {
        sqlx::query_as(
            "SELECT id, op_key, fencing_token, failed_on_purpose FROM vendor_calls ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .expect("read vendor_calls")
    }
}
