//! The Rust guard in one screen: send a welcome e-mail at most once per user, however
//! often this runs. `cargo run -p onceward-client --example guard -- 127.0.0.1:50051` (twice: the second
//! run replays). The sidecar's integration test `tests/it/client.rs` runs [`send_welcome`].

use onceward_client::{Client, Once, OnceError};

/// Sends user 42's welcome e-mail unless some caller already did.
pub async fn send_welcome(client: &Client) -> Result<Once, OnceError<std::io::Error>> {
    client
        .once("emails", "welcome-user-42", b"", |token| async move {
            // Send the e-mail here (passing the fencing token along); an Err means it
            // was not sent, and the key is released for the next attempt.
            println!("sending with fencing token {}", token.get());
            Ok(b"message-id-1".to_vec())
        })
        .await
}

#[allow(dead_code)] // the integration test includes this file for `send_welcome` alone
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:50051".into());
    let client = Client::connect(addr).await?;
    match send_welcome(&client).await? {
        Once::Ran(id) => println!("sent {}", String::from_utf8_lossy(&id)),
        Once::Replayed(id) => println!("already sent {}", String::from_utf8_lossy(&id)),
    }
    Ok(())
}
