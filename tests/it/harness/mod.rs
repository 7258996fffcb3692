//! The test harness: a real sidecar on port 0 against a fresh Postgres database and an
//! isolated Redis (a key prefix of its own on the shared Redis, or a `redis-server` of
//! its own on a free port when the test kills or flushes it), plus a TCP proxy that can
//! cut a connection mid-run.
//!
//! Layout: `postgres` (a database per test), `redis` (the shared Redis, and a
//! `redis-server` of a test's own), `proxy` (the cutting TCP proxy, free ports), `app`
//! (the sidecar on each pairing of hot tier and ledger, and its metrics), `rpc` (one
//! helper per RPC). All of it is re-exported here, so a test needs only
//! `use crate::harness::*;`.

mod app;
mod postgres;
mod proxy;
mod redis;
mod rpc;

pub use app::*;
pub use postgres::*;
pub use proxy::*;
// `self::`: a bare `redis` would name the redis crate as well as this module.
pub use self::redis::*;
pub use rpc::*;

/// A random lowercase suffix for database names, key prefixes and keys.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{:016x}", rand::random::<u64>())
}
