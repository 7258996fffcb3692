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
//! - [`command`]: the command line: the binary's roles, parsed in one pass.
//! - [`config`]: the sidecar's flags and their environment fallbacks.
//! - [`retention`]: the cleanup job that deletes expired records.
//! - [`shutdown`], [`telemetry`]: SIGTERM/SIGINT as a future; logging.
//! - [`cli`]: the command-line client (`onceward claim …`) and its exit codes.
//! - [`metrics`]: every metric's name and help text.
//! - [`bench`]: `onceward bench`, the load generator and its baselines.
//! - [`drill`]: `onceward drill key-loss`, a game day against a real deployment.
//! - [`relay`]: `onceward relay`, the outbox relay to NATS JetStream.
//! - [`proto`]: the generated `onceward.v1` service, over the client crate's messages
//!   and wire helpers (durations, timestamps, status-code labels).
//! - [`errors`]: the cause-chain formatter, and which error type to use where.

//!
//! The Rust client, the `once` guard and the HTTP `Idempotency-Key` layer are the
//! `onceward-client` crate (`clients/rust`), which a service depends on without
//! compiling any of this.

#![forbid(unsafe_code)]

pub mod app;
pub mod bench;
pub mod cache;
pub mod cli;
pub mod command;
pub mod config;
pub mod domain;
pub mod drill;
pub mod engine;
pub mod errors;
pub mod grpc;
pub mod ledger;
pub mod metrics;
pub mod proto;
pub mod relay;
pub mod retention;
pub mod shutdown;
pub mod telemetry;
pub mod tenants;
