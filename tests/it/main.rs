//! onceward's integration tests: a real sidecar over loopback gRPC, real Postgres,
//! real Redis. See `harness` for how each test is isolated.

mod cli;
mod concurrency;
mod edge;
mod faults;
mod harness;
mod semantics;
