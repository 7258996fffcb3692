//! A single-threaded runtime on its own OS thread, for the ledger's database I/O.
//!
//! A batch writer's loop is the critical path of every new operation: take a batch,
//! send it, wait for the commit, answer the callers. Each step is a task wake-up, and
//! on the server's runtime each wake-up queues behind every gRPC stream that is ready
//! to run, so under load the loop spent most of its time waiting to be polled rather
//! than waiting for Postgres (BENCHMARKS.md). On a thread of its own — the writers and
//! the connection tasks of their pool, nothing else — a wake-up is the operating
//! system's to schedule, at once.

use std::future::Future;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

use super::LedgerError;

/// The thread and its runtime; the thread stops when this is dropped.
pub struct IoThread {
    handle: Handle,
    _stop: oneshot::Sender<()>,
}

impl IoThread {
    /// Starts the thread `name` with an idle runtime.
    pub fn start(name: &str) -> std::io::Result<Self> {
        let runtime = Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                // Runs until the owner is dropped; the runtime, and every task still
                // on it, is dropped here, outside any other runtime.
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Self {
            handle,
            _stop: stop,
        })
    }

    /// Runs `work` on the thread and waits for its output.
    pub async fn run<F>(&self, work: F) -> Result<F::Output, LedgerError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle
            .spawn(work)
            .await
            .map_err(|error| LedgerError::Internal(Box::new(error)))
    }
}
