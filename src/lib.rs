//! onceward: an idempotency sidecar. Callers `Claim` a key before a paid or
//! irreversible side effect and `Complete` it with the result; every duplicate gets
//! the stored result back instead of a second side effect.
//!
//! # Layout
//! - [`domain`]: validated identifiers, fencing tokens, records, outcomes.
//! - [`engine`]: the two-tier Claim/Complete/Release/ExtendLease/Lookup logic.
//! - [`cache`]: the hot tier (Redis or in-process), which may forget anything and only
//!   says "no".
//! - [`ledger`]: the authority (Postgres or SQLite), a table with a UNIQUE (namespace, key).
//! - [`grpc`]: the tonic edge: parse requests, call the engine, map errors once.
//! - [`tenants`]: who may call, which namespaces each may use, and how fast.
//! - [`app`]: build (connect, migrate, bind) and run until shutdown.
//! - [`config`]: the command line and its environment fallbacks.
//! - [`retention`]: the cleanup job that deletes expired records.
//! - [`shutdown`], [`telemetry`]: SIGTERM/SIGINT as a future; logging.
//! - [`cli`]: the command-line client (`onceward claim …`) and its exit codes.
//! - [`metrics`]: every metric's name and help text.
//! - [`client`]: a Rust client and the `once` guard (claim, run, complete or release).
//! - [`http`]: a tower layer that makes POST handlers idempotent by `Idempotency-Key`.
//! - [`bench`]: `onceward bench`, the load generator and its baselines.
//! - [`proto`]: the generated `onceward.v1` types, client and server, and the wire
//!   helpers (durations, timestamps, status-code labels) the edge and the clients share.
//! - [`errors`]: the cause-chain formatter, and which error type to use where.

#![forbid(unsafe_code)]

pub mod app;
pub mod bench;
pub mod cache;
pub mod cli;
pub mod client;
pub mod config;
pub mod domain;
pub mod engine;
pub mod errors;
pub mod grpc;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod proto;
pub mod retention;
pub mod shutdown;
pub mod telemetry;
pub mod tenants;
