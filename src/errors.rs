//! Errors: which type to use where, and the one formatter for their cause chains.
//!
//! - Each boundary has a `thiserror` enum of its own, saying what a caller can act on:
//!   [`crate::domain::ValidationError`] (a request field out of bounds, naming the field
//!   and the limit), [`crate::ledger::LedgerError`] (unavailable: safe to retry; or
//!   internal), [`crate::cache::CacheError`] (every variant is a miss to the engine),
//!   [`crate::engine::EngineError`], [`crate::tenants::Refusal`], and at the gRPC edge
//!   [`crate::grpc::ApiError`], which the one `From<ApiError> for Status` turns into
//!   a status with a short message.
//! - `anyhow` only where a person reads the error: start-up (`app`, `config`), the CLI
//!   and the bench.
//! - Causes are logged whole, with [`chain`]; clients never see them (no SQL, no
//!   stack).

/// `error: cause: cause…`: an error with its whole source chain, for logs (the client
/// crate's, which logs its own connection errors the same way).
pub use onceward_client::chain;
