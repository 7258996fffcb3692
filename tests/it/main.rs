//! onceward's integration tests: a real sidecar over loopback gRPC, real Postgres,
//! real Redis. See `harness` for how each test is isolated.

/// Runs each named `async fn(Pairing)` as a test of its own on every pairing of hot
/// tier and ledger: `<module>::postgres_redis::<name>` and so on.
macro_rules! on_every_pairing {
    ($($test:ident),+ $(,)?) => {
        on_every_pairing!(@pairing postgres_redis, PostgresRedis, $($test),+);
        on_every_pairing!(@pairing postgres_memory, PostgresMemory, $($test),+);
        on_every_pairing!(@pairing sqlite_redis, SqliteRedis, $($test),+);
        on_every_pairing!(@pairing sqlite_memory, SqliteMemory, $($test),+);
    };
    (@pairing $module:ident, $pairing:ident, $($test:ident),+) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(crate::harness::Pairing::$pairing).await
                }
            )+
        }
    };
}

mod batches;
mod batching;
mod bench;
mod chaos;
mod claimant;
mod cli;
mod client;
mod clock;
mod cluster;
mod concurrency;
mod connect;
mod crash;
mod deploy;
mod drill;
mod edge;
mod embedded;
mod faults;
mod fencing;
mod forget;
mod harness;
mod http;
mod http_settings;
mod hygiene;
mod inbox;
mod ledger;
mod payment_path;
mod pgbouncer;
mod php;
mod properties;
mod python;
mod raw;
mod readme;
mod relay;
mod retention;
mod retry_after;
mod secured;
mod security;
mod semantics;
mod spend_guard;
mod startup;
mod transport;
mod typescript;
mod walkthrough;
