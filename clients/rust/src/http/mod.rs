//! HTTP `Idempotency-Key` middleware on top of the sidecar: a tower layer that makes
//! POST (and PATCH) handlers idempotent per the IETF Idempotency-Key draft.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Router, routing::post};
//! use onceward_client::{Client, http::IdempotencyLayer};
//!
//! let client = Client::connect("127.0.0.1:50051").await?;
//! let app: Router = Router::new()
//!     .route("/charge", post(|| async { "charged" }))
//!     .layer(IdempotencyLayer::new(client, "charges")?);
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - `layer`: [`IdempotencyLayer`] and its settings.
//! - `service`: [`Idempotent`], the per-request flow and the status mapping.
//! - `stored`: how a response is encoded into the ledger's `response` bytes.

mod layer;
mod service;
mod stored;

pub use layer::IdempotencyLayer;
pub use service::{BoxError, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, Idempotent};
