//! The ledger consumer: pulls `payments.charged` from JetStream, deduplicates each
//! batch with the inbox helper (`ClaimBatch`/`CompleteBatch` on the message id),
//! applies each charge to its own `ledger_entries` table, and moves a message its
//! handler keeps failing on to the DLQ stream after `--max-deliveries`.
//!
//! Two nets, in this order: the inbox (a redelivery or a re-publish is answered from
//! the sidecar, the handler does not run), then the table's primary key on the message
//! id (a consumer killed after its effect but before its `CompleteBatch` sees the
//! message again once its claim's lease runs out: the insert finds the entry and does
//! nothing). Each is counted, so the proof shows which net caught what.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, AckKind, consumer, stream};
use futures_util::StreamExt as _;
use metrics::counter;
use onceward_client::{Client, ClientConfig, Inbox, Message, Verdict};
use sqlx::PgPool;

/// Effects applied: ledger entries written. The consumer's effect counter.
pub const APPLIED: &str = "payment_ledger_applied_total";
/// Messages handled before, answered by the inbox without running the handler.
pub const INBOX_DUPLICATES: &str = "payment_ledger_inbox_duplicates_total";
/// Messages whose handler ran again but found its entry written (the second net).
pub const TABLE_DUPLICATES: &str = "payment_ledger_table_duplicates_total";
/// Messages moved to the DLQ stream.
pub const DEAD_LETTERED: &str = "payment_ledger_dead_lettered_total";
/// Messages received, redeliveries included.
pub const DELIVERIES: &str = "payment_ledger_deliveries_total";

/// The stream of charges, and its dead-letter stream.
pub const STREAM: &str = "PAYMENTS";
pub const DLQ_STREAM: &str = "PAYMENTS_DLQ";
const DLQ_SUBJECT: &str = "dlq.payments.charged";
/// Why a message was dead-lettered, on its DLQ copy.
const DLQ_REASON: &str = "Dlq-Reason";
const DURABLE: &str = "ledger";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The onceward sidecar (gRPC).
    #[arg(long, default_value = "127.0.0.1:50051")]
    sidecar: String,
    /// The consumer's Postgres (its ledger table).
    #[arg(long, env = "PAYMENT_DATABASE_URL")]
    database_url: String,
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    #[arg(long, default_value_t = crate::metrics_addr(9471))]
    metrics_listen: SocketAddr,
    /// Deliveries after which a message whose handler fails goes to the DLQ.
    #[arg(long, default_value_t = 3)]
    max_deliveries: u32,
    /// Messages per pull.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// How long the inbox's claims last, and how long JetStream waits for an ack before
    /// delivering again (e.g. 2s).
    #[arg(long, default_value = "5s", value_parser = onceward::domain::parse_duration)]
    lease: Duration,
}

/// Consumes until `shutdown` (finishing the batch in hand).
pub async fn run(
    args: Args,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    crate::telemetry::serve_metrics(args.metrics_listen).await?;
    for name in [
        APPLIED,
        INBOX_DUPLICATES,
        TABLE_DUPLICATES,
        DEAD_LETTERED,
        DELIVERIES,
    ] {
        counter!(name).absolute(0);
    }
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&args.database_url)
        .await
        .context("cannot connect to --database-url")?;
    let client = connect_sidecar(&args.sidecar, args.lease).await?;
    let inbox = Inbox::new(client, "ledger-consumer", args.max_deliveries)?;
    let nats = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| Duration::from_millis(100 * attempts.min(10) as u64))
        .connect(&args.nats_url)
        .await
        .context("cannot connect to --nats-url")?;
    let js = jetstream::new(nats);
    let consumer = streams_and_consumer(&js, args.lease).await?;
    tracing::info!("consuming {STREAM}");

    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown.await;
            stop.cancel();
        }
    });
    while !stop.is_cancelled() {
        let batch = match pull(&consumer, args.batch).await {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(%error, "pull failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if let Err(error) = handle(&inbox, &pool, &js, &batch).await {
            tracing::warn!(error = %format!("{error:#}"), "batch not handled; it will be delivered again");
        }
    }
    Ok(())
}

async fn connect_sidecar(sidecar: &str, lease: Duration) -> anyhow::Result<Client> {
    let deadline = tokio::time::Instant::now() + crate::SIDECAR_WAIT;
    let config = ClientConfig::builder().lease(lease).build();
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

/// The streams (this service owns them; the relay never creates one) and the durable
/// pull consumer.
async fn streams_and_consumer(
    js: &jetstream::Context,
    ack_wait: Duration,
) -> anyhow::Result<consumer::PullConsumer> {
    let charges = js
        .get_or_create_stream(stream::Config {
            name: STREAM.to_owned(),
            subjects: vec!["payments.>".to_owned()],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .context("cannot create the stream")?;
    js.get_or_create_stream(stream::Config {
        name: DLQ_STREAM.to_owned(),
        subjects: vec!["dlq.payments.>".to_owned()],
        ..Default::default()
    })
    .await
    .context("cannot create the DLQ stream")?;
    charges
        .get_or_create_consumer(
            DURABLE,
            consumer::pull::Config {
                durable_name: Some(DURABLE.to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait,
                ..Default::default()
            },
        )
        .await
        .context("cannot create the consumer")
}

async fn pull(
    consumer: &consumer::PullConsumer,
    batch: usize,
) -> anyhow::Result<Vec<jetstream::Message>> {
    let mut messages = consumer
        .fetch()
        .max_messages(batch)
        .expires(Duration::from_millis(500))
        .messages()
        .await?;
    let mut batch = Vec::new();
    while let Some(message) = messages.next().await {
        batch.push(message.map_err(|error| anyhow::anyhow!(error))?);
    }
    Ok(batch)
}

/// One pulled batch: dedup, apply, then ack, nak or dead-letter each message.
async fn handle(
    inbox: &Inbox,
    pool: &PgPool,
    js: &jetstream::Context,
    batch: &[jetstream::Message],
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    counter!(DELIVERIES).increment(batch.len() as u64);
    let ids: Vec<String> = batch
        .iter()
        .map(|message| {
            let info = message.info().ok();
            message
                .headers
                .as_ref()
                .and_then(|headers| headers.get("Nats-Msg-Id"))
                .map(|id| id.as_str().to_owned())
                .unwrap_or_else(|| format!("seq-{}", info.map_or(0, |i| i.stream_sequence)))
        })
        .collect();
    let messages: Vec<Message<'_>> = batch
        .iter()
        .zip(&ids)
        .map(|(message, id)| Message {
            id,
            payload: &message.payload,
            deliveries: message
                .info()
                .map_or(1, |info| info.delivered.max(1) as u32),
        })
        .collect();
    // When the broker stored each message, in seconds since the epoch.
    let published: std::collections::HashMap<&str, f64> = batch
        .iter()
        .zip(&ids)
        .filter_map(|(message, id)| {
            let info = message.info().ok()?;
            Some((
                id.as_str(),
                info.published.unix_timestamp_nanos() as f64 / 1e9,
            ))
        })
        .collect();
    let verdicts = inbox
        .process(&messages, |message| {
            let published = published.get(message.id).copied();
            apply(
                pool,
                message.id.to_owned(),
                message.payload.to_vec(),
                published,
            )
        })
        .await
        .context("the sidecar did not answer")?;
    for ((message, verdict), id) in batch.iter().zip(verdicts).zip(&ids) {
        let acked = match verdict {
            Verdict::Done { .. } => message.ack().await,
            Verdict::Duplicate { .. } => {
                counter!(INBOX_DUPLICATES).increment(1);
                message.ack().await
            }
            Verdict::Retry { after, .. } => message.ack_with(AckKind::Nak(Some(after))).await,
            Verdict::DeadLetter { reason } => {
                dead_letter(js, message, &reason).await?;
                counter!(DEAD_LETTERED).increment(1);
                tracing::warn!(id, %reason, "dead-lettered");
                message.ack_with(AckKind::Term).await
            }
        };
        if let Err(error) = acked {
            tracing::warn!(id, %error, "ack lost; the message will come again (the inbox dedups it)");
        }
    }
    Ok(())
}

/// The effect: one ledger entry per charge message.
async fn apply(
    pool: &PgPool,
    id: String,
    payload: Vec<u8>,
    published: Option<f64>,
) -> Result<Vec<u8>, String> {
    #[derive(serde::Deserialize)]
    struct Charged {
        key: String,
        amount_cents: i64,
    }
    let charged: Charged = serde_json::from_slice(&payload)
        .map_err(|error| format!("not a charge message: {error}"))?;
    if charged.amount_cents <= 0 {
        return Err(format!("amount {} is not a charge", charged.amount_cents));
    }
    let written = sqlx::query(
        "INSERT INTO ledger_entries (message_id, charge_key, amount_cents, published_at) \
         VALUES ($1, $2, $3, to_timestamp($4)) ON CONFLICT (message_id) DO NOTHING",
    )
    .bind(&id)
    .bind(&charged.key)
    .bind(charged.amount_cents)
    .bind(published)
    .execute(pool)
    .await
    .map_err(|error| format!("ledger write failed: {error}"))?
    .rows_affected();
    if written == 1 {
        counter!(APPLIED).increment(1);
    } else {
        counter!(TABLE_DUPLICATES).increment(1);
    }
    Ok(format!("ledger entry for {}", charged.key).into_bytes())
}

/// Publishes a copy of `message` to the DLQ stream (with why), and waits for its ack.
async fn dead_letter(
    js: &jetstream::Context,
    message: &jetstream::Message,
    reason: &str,
) -> anyhow::Result<()> {
    let mut headers = message.headers.clone().unwrap_or_default();
    headers.insert(DLQ_REASON, reason.replace(['\r', '\n'], " ").as_str());
    // It keeps its Nats-Msg-Id: a consumer killed between this publish and the Term
    // below dead-letters it again, and the DLQ's own dedup window drops the copy.
    js.publish_with_headers(DLQ_SUBJECT, headers, message.payload.clone())
        .await?
        .await
        .context("the DLQ did not ack")?;
    Ok(())
}
