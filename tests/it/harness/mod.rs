//! The test harness: a real sidecar on port 0 against a fresh Postgres database and an
//! isolated Redis (a key prefix of its own on the shared Redis, or a `redis-server` of
//! its own on a free port when the test kills or flushes it), plus a TCP proxy that can
//! cut a connection mid-run.
//!
//! Layout:
//! - `app`: every test sidecar is started one way, `TestApp::builder()` … `.spawn()`,
//!   choosing its `Ledger` (a fresh Postgres database by default, one the test holds,
//!   one behind a proxy, or SQLite), its `HotTier` (the shared Redis by default, a
//!   Redis of the test's own, or in-process), or a `Pairing` of the two, plus tenants,
//!   TLS and any other `serve` flags; and its `/metrics`, read sample by sample.
//! - `postgres`: a database per test, and where the Postgres server is.
//! - `redis`: the shared Redis, and a `redis-server` of a test's own.
//! - `nats`: a `nats-server -js` of a test's own, and its streams.
//! - `cluster`: a Redis Cluster of a test's own (three masters, three replicas).
//! - `pgbouncer`: a PgBouncer of a test's own in front of the test Postgres.
//! - `proxy`: the cutting TCP proxy, and free ports.
//! - `rpc`: one helper per RPC, and `eventually`.
//!
//! All of it is re-exported here, so a test needs only `use crate::harness::*;`.

mod app;
mod cluster;
mod nats;
mod pgbouncer;
mod postgres;
mod proxy;
mod redis;
mod rpc;

pub use app::*;
pub use cluster::*;
pub use nats::*;
pub use pgbouncer::*;
pub use postgres::*;
pub use proxy::*;
// `self::`: a bare `redis` would name the redis crate as well as this module.
pub use self::redis::*;
pub use rpc::*;

/// A random lowercase suffix for database names, key prefixes and keys.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{:016x}", rand::random::<u64>())
}
