//! onceward's integration tests: a real sidecar over loopback gRPC, real Postgres,
//! real Redis. See `harness` for how each test is isolated.

mod chaos;
mod concurrency;
mod edge;
mod faults;
mod fencing;
mod harness;
mod semantics;
