//! A Rust client for the onceward sidecar, and the guard most callers want:
//!
//! ```no_run
//! # async fn charge(_: u64) -> Result<Vec<u8>, std::io::Error> { Ok(vec![]) }
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let client = onceward_client::Client::connect("127.0.0.1:50051").await?;
//! let receipt = client
//!     .once("payments", "order-42", b"", |token| charge(token.get()))
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Against a sidecar with tenants and TLS, the configuration carries the bearer token
//! and the PEMs, and the address is `https://`:
//!
//! ```no_run
//! # async fn example(ca_pem: Vec<u8>) -> Result<(), onceward_client::ClientError> {
//! use onceward_client::{Client, ClientConfig};
//!
//! let config = ClientConfig::builder()
//!     .auth_token("the tenant's token")
//!     .tls_ca_certificate(ca_pem)
//!     .build();
//! let client = Client::connect_with("https://onceward.internal:50051", config).await?;
//! # Ok(()) }
//! ```
//!
//! This crate is all a service that calls onceward needs: it pulls in no part of the
//! server (no database or cache drivers, no tonic server).
//!
//! # Layout
//! - `rpc`: [`Client`], its connection and the one retry loop (backoff with full
//!   jitter, an attempt cap, the retry budget); gRPC statuses become errors there.
//! - `guard`: [`Client::once`], claim → effect → complete or release.
//! - `lease`: [`Lease`], a held claim kept alive while the effect runs.
//! - [`inbox`]: [`Inbox`], for consumers: a batch of broker messages deduplicated with
//!   one `ClaimBatch` and stored with one `CompleteBatch`, and a verdict per message.
//! - `budget`, `backoff`: the retry budget's token bucket and the jittered backoff.
//! - `config`: [`ClientConfig`] and its builder.
//! - `connection`: the address, TLS and the bearer token: how every connection is
//!   made ([`ClientConfig::connect_channel`] for the generated API), and how its
//!   failures are told apart (unreachable, or misconfigured).
//! - `error`: [`ClientError`] and [`OnceError`], and [`chain`] for logging either.
//! - `identifiers`: [`Namespace`], [`IdempotencyKey`], [`Fingerprint`] and
//!   [`FencingToken`], parsed with the limits the sidecar enforces.
//! - [`proto`]: the generated `onceward.v1` messages and client, and the wire helpers.
//! - [`http`] (feature `http`): a tower layer that makes POST handlers idempotent by
//!   `Idempotency-Key`.

#![forbid(unsafe_code)]

mod backoff;
mod budget;
mod config;
mod connection;
mod error;
mod guard;
#[cfg(feature = "http")]
pub mod http;
mod identifiers;
pub mod inbox;
mod lease;
pub mod proto;
mod rpc;

pub use config::{ClientConfig, ClientConfigBuilder};
pub use connection::{Authorization, AuthorizedChannel, tls_failure};
pub use error::{ClientError, OnceError, chain};
pub use guard::Once;
pub use identifiers::{FencingToken, Fingerprint, IdempotencyKey, Namespace, ValidationError};
pub use inbox::{Inbox, Message, Verdict};
pub use lease::Lease;
pub use rpc::{Claim, Client, Spend};
