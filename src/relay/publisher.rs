//! Where the relay publishes: a small trait, so that RabbitMQ (publisher confirms) or
//! Kafka (a producer's delivery futures) can follow NATS JetStream, the one there is.
//!
//! A publish has two halves, so that a batch can be pipelined: [`Publisher::send`]
//! puts the message on the wire (in the order of the calls), and the [`PendingAck`]
//! it returns resolves when the broker has stored it. The relay marks a row published
//! only after its ack.

use std::future::{Future, IntoFuture as _};
use std::pin::Pin;
use std::str::FromStr as _;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_trait::async_trait;

use super::outbox::OutboxRow;

/// The broker's answer to one message, still to come.
pub type PendingAck = Pin<Box<dyn Future<Output = Result<Acked, PublishError>> + Send>>;

/// The broker stored the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    /// The broker had stored a message with this id already (its dedup window caught a
    /// re-publish): stored once, all the same.
    pub duplicate: bool,
}

/// Why a message was not stored.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    /// The broker answered and refused this message (no stream covers its subject, a
    /// limit, a header it cannot carry): a failed attempt of this row.
    #[error("refused: {0}")]
    Refused(String),
    /// The broker did not answer (unreachable, restarting, too slow): nothing is
    /// known about this row, and no attempt is counted against it.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// A broker the relay publishes outbox rows to.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Whether the broker is reachable now: while it is not, the relay takes no rows.
    fn is_connected(&self) -> bool;

    /// Sends one row's message; its ack is awaited separately.
    async fn send(&self, row: &OutboxRow) -> Result<PendingAck, PublishError>;
}

/// The headers every message carries besides the row's own.
pub mod headers {
    /// The broker's dedup id (JetStream's duplicate window): the outbox row's id.
    pub const MSG_ID: &str = "Nats-Msg-Id";
    /// The outbox row's id.
    pub const OUTBOX_ID: &str = "Onceward-Outbox-Id";
    /// The row's `message_key`.
    pub const MESSAGE_KEY: &str = "Onceward-Message-Key";
}

/// NATS JetStream: subject = the row's topic.
pub struct JetStream {
    client: async_nats::Client,
    context: async_nats::jetstream::Context,
}

/// The longest a reconnect attempt waits after the previous one failed.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

impl JetStream {
    /// Connects (waiting for a broker that is not up yet, and reconnecting for ever
    /// after) and waits at most `ack_timeout` for each ack.
    pub async fn connect(
        url: &str,
        ack_timeout: Duration,
    ) -> Result<Self, async_nats::ConnectError> {
        let client = async_nats::ConnectOptions::new()
            .name("onceward-relay")
            .retry_on_initial_connect()
            .max_reconnects(None)
            // A short, capped delay: the default backs off to seconds, and the backlog
            // grows while the relay waits.
            .reconnect_delay_callback(|attempts| {
                (Duration::from_millis(100) * attempts.min(10) as u32).min(MAX_RECONNECT_DELAY)
            })
            .event_callback(|event| async move {
                tracing::info!(%event, "NATS connection");
            })
            .connect(url)
            .await?;
        let context = async_nats::jetstream::ContextBuilder::new()
            .timeout(ack_timeout)
            .build(client.clone());
        Ok(Self { client, context })
    }
}

#[async_trait]
impl Publisher for JetStream {
    fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    async fn send(&self, row: &OutboxRow) -> Result<PendingAck, PublishError> {
        let headers = message_headers(row).map_err(PublishError::Refused)?;
        let pending = self
            .context
            .publish_with_headers(row.topic.clone(), headers, row.payload.clone().into())
            .await
            .map_err(|error| classify(error.kind(), &error))?;
        Ok(Box::pin(async move {
            match pending.into_future().await {
                Ok(ack) => Ok(Acked {
                    duplicate: ack.duplicate,
                }),
                Err(error) => Err(classify(error.kind(), &error)),
            }
        }))
    }
}

/// A broker error as the relay treats it: refused by the broker, or no answer.
fn classify(kind: PublishErrorKind, error: &dyn std::fmt::Display) -> PublishError {
    match kind {
        PublishErrorKind::TimedOut
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::MaxAckPending => PublishError::Unavailable(error.to_string()),
        PublishErrorKind::StreamNotFound => {
            PublishError::Refused(format!("no stream covers this topic ({error})"))
        }
        _ => PublishError::Refused(error.to_string()),
    }
}

/// The message's headers: the row's own (its `headers` JSON object; a string value as
/// it is, any other as JSON text), then the relay's three, which a row cannot override.
fn message_headers(row: &OutboxRow) -> Result<async_nats::HeaderMap, String> {
    let mut map = async_nats::HeaderMap::new();
    let own: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&row.headers)
        .map_err(|error| format!("headers must be a JSON object: {error}"))?;
    let id = row.id.to_string();
    let relay_headers = [
        (headers::MSG_ID, id.as_str()),
        (headers::OUTBOX_ID, id.as_str()),
        (headers::MESSAGE_KEY, row.message_key.as_str()),
    ];
    for (name, value) in &own {
        if relay_headers
            .iter()
            .any(|(reserved, _)| reserved.eq_ignore_ascii_case(name))
        {
            continue;
        }
        let value = match value {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        insert(&mut map, name, &value)?;
    }
    for (name, value) in relay_headers {
        insert(&mut map, name, value)?;
    }
    Ok(map)
}

fn insert(map: &mut async_nats::HeaderMap, name: &str, value: &str) -> Result<(), String> {
    let valid_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    if !valid_name || value.contains(['\r', '\n']) {
        return Err(format!("header {name:?} cannot be carried by NATS"));
    }
    let header_name = async_nats::header::HeaderName::from_str(name)
        .map_err(|error| format!("header {name:?}: {error}"))?;
    map.insert(header_name, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(headers: &str) -> OutboxRow {
        OutboxRow {
            id: 42,
            topic: "charges.created".to_owned(),
            message_key: "charge-7".to_owned(),
            payload: b"{}".to_vec(),
            headers: headers.to_owned(),
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_message_carries_the_rows_headers_and_the_relays_three() {
        let map = message_headers(&row(r#"{"trace":"abc","n":3}"#)).expect("valid");
        let get = |name: &str| map.get(name).map(|value| value.as_str().to_owned());
        assert_eq!(get("Nats-Msg-Id").as_deref(), Some("42"));
        assert_eq!(get("Onceward-Outbox-Id").as_deref(), Some("42"));
        assert_eq!(get("Onceward-Message-Key").as_deref(), Some("charge-7"));
        assert_eq!(get("trace").as_deref(), Some("abc"));
        assert_eq!(get("n").as_deref(), Some("3"));
    }

    #[test]
    fn a_row_cannot_override_the_dedup_id() {
        let map = message_headers(&row(r#"{"nats-msg-id":"1"}"#)).expect("valid");
        assert_eq!(map.get("Nats-Msg-Id").map(|v| v.as_str()), Some("42"));
    }

    #[test]
    fn headers_nats_cannot_carry_are_a_refusal() {
        for bad in [r#"{"a b":"x"}"#, r#"{"x":"line\nbreak"}"#, "[1]"] {
            assert!(message_headers(&row(bad)).is_err(), "{bad}");
        }
    }
}
