//! A consumer's inbox: a batch of broker messages deduplicated by id, each applied at
//! most once however often the broker delivers it. `cargo run -p onceward-client
//! --example inbox -- 127.0.0.1:50051` (twice: the second run finds every message
//! done). The sidecar's integration test `tests/it/inbox.rs` runs [`apply`].

use std::sync::atomic::{AtomicU32, Ordering};

use onceward_client::{Client, ClientError, Inbox, Message, Verdict};

/// Applies each message of `batch` that no consumer applied before, and returns what
/// to tell the broker about each: ack, deliver again later, or dead-letter.
pub async fn apply(
    inbox: &Inbox,
    batch: &[Message<'_>],
    applied: &AtomicU32,
) -> Result<Vec<Verdict>, ClientError> {
    inbox
        .process(batch, |message| async move {
            // Apply the message here (e.g. in your own table); an Err leaves it for a
            // later delivery, and dead-letters it on its last.
            applied.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(format!("applied {}", message.id).into_bytes())
        })
        .await
}

#[allow(dead_code)] // the integration test includes this file for `apply` alone
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:50051".into());
    let inbox = Inbox::new(Client::connect(addr).await?, "orders-consumer", 5)?;
    // The broker delivered order-2 twice in one pull.
    let batch = [
        Message {
            id: "order-1",
            payload: b"{\"qty\":1}",
            deliveries: 1,
        },
        Message {
            id: "order-2",
            payload: b"{\"qty\":2}",
            deliveries: 1,
        },
        Message {
            id: "order-2",
            payload: b"{\"qty\":2}",
            deliveries: 2,
        },
    ];
    let applied = AtomicU32::new(0);
    for (message, verdict) in batch.iter().zip(apply(&inbox, &batch, &applied).await?) {
        println!("{}: {verdict:?} (ack: {})", message.id, verdict.is_ack());
    }
    println!("applied {} message(s)", applied.load(Ordering::SeqCst));
    Ok(())
}
