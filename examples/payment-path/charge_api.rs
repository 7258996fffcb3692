//! `POST /charge`: the client crate's `IdempotencyLayer` in front of a handler that
//! writes the charge and its outbox row in one Postgres transaction.
//!
//! The body is `{"order":"…","amount_cents":N}` and the request carries an
//! `Idempotency-Key`. A duplicate gets the stored response (`Idempotent-Replayed`), a
//! concurrent one 409 with `Retry-After`, the key reused for another body 422. Each
//! request runs to its end even when its caller hangs up (a lost response must not
//! leave half a charge or a claim held until its lease runs out).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use metrics::counter;
use onceward_client::http::{IDEMPOTENCY_KEY, IdempotencyLayer};
use onceward_client::{Client, ClientConfig};
use sqlx::PgPool;

use crate::schema::{CHARGED_TOPIC, OUTBOX};

/// Requests answered, by `status`.
pub const REQUESTS: &str = "payment_charge_requests_total";
/// Charges written (one per logical charge): the API's effect.
pub const CHARGES: &str = "payment_charges_created_total";
/// Requests that reached the handler for a charge already written (the layer let a
/// retry through after a lost Complete): answered from the table, nothing written.
pub const CHARGES_FOUND: &str = "payment_charges_found_total";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The onceward sidecar (gRPC).
    #[arg(long, default_value = "127.0.0.1:50051")]
    sidecar: String,
    /// The service's Postgres (charges and the outbox).
    #[arg(long, env = "PAYMENT_DATABASE_URL")]
    database_url: String,
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    #[arg(long, default_value_t = crate::metrics_addr(9470))]
    metrics_listen: SocketAddr,
}

/// Serves until `shutdown`.
pub async fn run(
    args: Args,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    crate::telemetry::serve_metrics(args.metrics_listen).await?;
    for status in ["201", "409", "422", "503"] {
        counter!(REQUESTS, "status" => status).absolute(0);
    }
    counter!(CHARGES).absolute(0);
    counter!(CHARGES_FOUND).absolute(0);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(16)
        .connect(&args.database_url)
        .await
        .context("cannot connect to --database-url")?;
    let client = connect(&args.sidecar).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on --listen {}", args.listen))?;
    tracing::info!("POST http://{}/charge", listener.local_addr()?);
    axum::serve(listener, app(client, pool)?)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Connects to the sidecar, waiting for one still starting.
pub async fn connect(sidecar: &str) -> anyhow::Result<Client> {
    let deadline = tokio::time::Instant::now() + crate::SIDECAR_WAIT;
    // A short lease: a charge takes milliseconds, and a claim left by a crash should
    // not hold its retries off for long.
    let config = ClientConfig::builder()
        .lease(Duration::from_secs(5))
        .build();
    loop {
        match Client::connect_with(sidecar, config.clone()).await {
            Ok(client) => return Ok(client),
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::info!(%error, "waiting for the sidecar");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => return Err(error).context("cannot connect to --sidecar"),
        }
    }
}

/// The service: `POST /charge`.
pub fn app(client: Client, pool: PgPool) -> anyhow::Result<Router> {
    let idempotency = IdempotencyLayer::new(client, "charges")?;
    Ok(Router::new()
        .route("/charge", post(charge))
        .layer(idempotency)
        .layer(middleware::from_fn(count_and_detach))
        .with_state(pool))
}

/// Runs the request in a task of its own, so that a caller hanging up does not cancel
/// it halfway, and counts the answer by status.
async fn count_and_detach(request: Request, next: Next) -> Response {
    let response = match tokio::spawn(next.run(request)).await {
        Ok(response) => response,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let status = response.status().as_u16().to_string();
    counter!(REQUESTS, "status" => status).increment(1);
    response
}

#[derive(Debug, serde::Deserialize)]
struct ChargeBody {
    order: String,
    amount_cents: i64,
}

async fn charge(State(pool): State<PgPool>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(key) = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
    else {
        return (StatusCode::BAD_REQUEST, "Idempotency-Key is required").into_response();
    };
    let Ok(body) = serde_json::from_slice::<ChargeBody>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            r#"the body must be {"order":"…","amount_cents":N}"#,
        )
            .into_response();
    };
    match write_charge(&pool, &key, &body).await {
        Ok(id) => (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/json")],
            format!(r#"{{"charge":{id},"amount_cents":{}}}"#, body.amount_cents),
        )
            .into_response(),
        // A 5xx is not stored: the layer releases the key and a retry runs again.
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "charge not written");
            (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
        }
    }
}

/// Writes the charge and announces it, in one transaction: both or neither.
async fn write_charge(pool: &PgPool, key: &str, body: &ChargeBody) -> anyhow::Result<i64> {
    let mut tx = pool.begin().await?;
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO charges (idempotency_key, order_id, amount_cents) VALUES ($1, $2, $3) \
         ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
    )
    .bind(key)
    .bind(&body.order)
    .bind(body.amount_cents)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = inserted else {
        let id = sqlx::query_scalar("SELECT id FROM charges WHERE idempotency_key = $1")
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        counter!(CHARGES_FOUND).increment(1);
        return Ok(id);
    };
    let payload = serde_json::json!({
        "charge": id,
        "key": key,
        "order": body.order,
        "amount_cents": body.amount_cents,
    });
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {OUTBOX} (topic, message_key, payload, headers) VALUES ($1, $2, $3, $4::jsonb)"
    )))
    .bind(CHARGED_TOPIC)
    .bind(key)
    .bind(payload.to_string().into_bytes())
    .bind(r#"{"content-type":"application/json"}"#)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    counter!(CHARGES).increment(1);
    Ok(id)
}
