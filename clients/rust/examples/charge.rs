//! `POST /charge`, made idempotent by `Idempotency-Key` with onceward's HTTP layer, in
//! front of a fake card processor that counts the charges it makes.
//!
//! ```sh
//! cargo run -- serve &                       # the sidecar on 127.0.0.1:50051
//! cargo run -p onceward-client --features http --example charge -- 127.0.0.1:50051 127.0.0.1:3000
//! curl -i -X POST localhost:3000/charge -H 'Idempotency-Key: order-1' -d 1000
//! curl -i -X POST localhost:3000/charge -H 'Idempotency-Key: order-1' -d 1000  # replayed
//! ```
//!
//! The sidecar's integration test `tests/it/http.rs` runs this very file's [`app`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use onceward_client::Client;
use onceward_client::http::IdempotencyLayer;

/// A stand-in for a card network: every call is a real (counted) charge.
#[derive(Debug, Default)]
pub struct Processor {
    charges: AtomicU64,
    down: AtomicBool,
}

impl Processor {
    /// How many charges were made.
    pub fn charges(&self) -> u64 {
        self.charges.load(Ordering::SeqCst)
    }

    /// Makes the processor fail (and charge nothing) until `up` is called.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    async fn charge(&self) -> Option<u64> {
        // The card network takes a while, which is when duplicates pile up.
        tokio::time::sleep(Duration::from_millis(50)).await;
        if self.down.load(Ordering::SeqCst) {
            return None;
        }
        Some(self.charges.fetch_add(1, Ordering::SeqCst) + 1)
    }
}

/// The service: `POST /charge` with the amount in cents as the body.
pub fn app(client: Client, processor: Arc<Processor>) -> Router {
    let idempotency = IdempotencyLayer::new(client, "charges")
        .expect("a valid namespace")
        .replay_header(header::LOCATION);
    Router::new()
        .route("/charge", post(charge))
        .layer(idempotency)
        .with_state(processor)
}

async fn charge(State(processor): State<Arc<Processor>>, body: String) -> impl IntoResponse {
    let Ok(amount) = body.trim().parse::<u64>() else {
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain")],
            "the body must be an amount in cents".to_owned(),
        )
            .into_response();
    };
    match processor.charge().await {
        Some(id) => (
            StatusCode::CREATED,
            [
                (header::CONTENT_TYPE, "application/json".to_owned()),
                (header::LOCATION, format!("/charges/{id}")),
            ],
            format!(r#"{{"charge":{id},"amount":{amount}}}"#),
        )
            .into_response(),
        None => (StatusCode::BAD_GATEWAY, "the card network is down").into_response(),
    }
}

#[allow(dead_code)] // the integration test includes this file for `app` alone
#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let sidecar = args.next().unwrap_or_else(|| "127.0.0.1:50051".to_owned());
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    match serve(&sidecar, &listen).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("charge: {}", onceward_client::chain(&*error));
            std::process::ExitCode::FAILURE
        }
    }
}

#[allow(dead_code)]
async fn serve(sidecar: &str, listen: &str) -> Result<(), Box<dyn std::error::Error>> {
    let client = connect_when_up(sidecar).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
    println!("POST http://{}/charge", listener.local_addr()?);
    axum::serve(listener, app(client, Arc::default())).await?;
    Ok(())
}

/// Connects to the sidecar, waiting up to a minute for one still starting (`cargo
/// run -- serve &` compiles first); any other error is returned at once.
#[allow(dead_code)]
async fn connect_when_up(sidecar: &str) -> Result<Client, onceward_client::ClientError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut said = false;
    loop {
        match Client::connect(sidecar).await {
            Err(onceward_client::ClientError::Connect { .. })
                if std::time::Instant::now() < deadline =>
            {
                if !std::mem::replace(&mut said, true) {
                    eprintln!("waiting for the sidecar at {sidecar}…");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            connected => return connected,
        }
    }
}
