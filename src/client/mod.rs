//! A Rust client for the sidecar, and the guard most callers want:
//!
//! ```no_run
//! # async fn charge(_: u64) -> Result<Vec<u8>, std::io::Error> { Ok(vec![]) }
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let client = onceward::client::Client::connect("127.0.0.1:50051").await?;
//! let receipt = client
//!     .once("payments", "order-42", b"", |token| charge(token.get()))
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - `rpc`: [`Client`], its connection and the one retry loop (backoff with full
//!   jitter, an attempt cap, the retry budget); gRPC statuses become errors there.
//! - `guard`: [`Client::once`], claim → effect → complete or release.
//! - `lease`: [`Lease`], a held claim kept alive while the effect runs.
//! - `budget`, `backoff`: the retry budget's token bucket and the jittered backoff.
//! - `config`: [`ClientConfig`] and its builder.
//! - `error`: [`ClientError`] and [`OnceError`].

mod backoff;
mod budget;
mod config;
mod error;
mod guard;
mod lease;
mod rpc;

pub use crate::domain::FencingToken;
pub use config::{ClientConfig, ClientConfigBuilder};
pub use error::{ClientError, OnceError};
pub use guard::Once;
pub use lease::Lease;
pub use rpc::{Claim, Client};
