//! Group commit for ledger writes: concurrent requests become one statement and one
//! commit.
//!
//! A batch is whatever is queued when a writer is free — no timer, so an idle ledger
//! adds no latency — and at most `max_batch` requests. Several writers drain the same
//! queue, so one slow commit does not stall the others. Each caller gets its own
//! result; a failure of the whole statement is reported to every caller in it. A
//! result whose caller gave up while its batch ran (a timeout, a cancelled RPC) is
//! handed back with its request, for the ledger to undo what nobody will be told of.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Mutex, mpsc, oneshot};

use super::LedgerError;
use crate::metrics;

type Reply<T> = oneshot::Sender<Result<T, LedgerError>>;
/// The queue's consuming end, shared by the writers.
type SharedQueue<Req, Resp> = Arc<Mutex<mpsc::UnboundedReceiver<(Req, Reply<Resp>)>>>;

/// What a batch returns: one result per request, in order, or the failure of the
/// whole batch.
pub type BatchOutcome<Resp> = Result<Vec<Result<Resp, LedgerError>>, LedgerError>;

/// A queue of requests of type `Req`, each answered with a `Resp`.
pub struct Batcher<Req, Resp> {
    queue: mpsc::UnboundedSender<(Req, Reply<Resp>)>,
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// Starts `writers` tasks that each take up to `max_batch` queued requests and
    /// run them with `run`, which gives the requests back with one result per request,
    /// in order. A successful result whose caller is gone goes to `undelivered`, with
    /// its request. `op` names the batches in metrics.
    pub fn spawn<F, Fut, U>(
        op: &'static str,
        writers: usize,
        max_batch: usize,
        run: F,
        undelivered: U,
    ) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = (Vec<Req>, BatchOutcome<Resp>)> + Send + 'static,
        U: Fn(Req, Resp) + Send + Sync + 'static,
    {
        let (queue, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        let run = Arc::new(run);
        let undelivered = Arc::new(undelivered);
        for _ in 0..writers.max(1) {
            tokio::spawn(write_batches(
                op,
                receiver.clone(),
                max_batch.max(1),
                run.clone(),
                undelivered.clone(),
            ));
        }
        Self { queue }
    }

    /// Queues several requests back to back, so a writer that is free takes them into
    /// one batch (with whatever else queued), and waits for all their results, in
    /// order.
    pub async fn submit_many(&self, requests: Vec<Req>) -> Vec<Result<Resp, LedgerError>> {
        let mut waiting = Vec::with_capacity(requests.len());
        for request in requests {
            let (reply, result) = oneshot::channel();
            let queued = self.queue.send((request, reply)).is_ok();
            waiting.push((queued, result));
        }
        let mut results = Vec::with_capacity(waiting.len());
        for (queued, result) in waiting {
            results.push(if !queued {
                Err(LedgerError::Internal("the ledger writers stopped".into()))
            } else {
                result.await.unwrap_or_else(|_| {
                    Err(LedgerError::Internal(
                        "a ledger writer dropped a request".into(),
                    ))
                })
            });
        }
        results
    }

    /// Queues one request and waits for its result.
    pub async fn submit(&self, request: Req) -> Result<Resp, LedgerError> {
        let (reply, result) = oneshot::channel();
        self.queue
            .send((request, reply))
            .map_err(|_| LedgerError::Internal("the ledger writers stopped".into()))?;
        result
            .await
            .map_err(|_| LedgerError::Internal("a ledger writer dropped a request".into()))?
    }
}

async fn write_batches<Req, Resp, F, Fut, U>(
    op: &'static str,
    receiver: SharedQueue<Req, Resp>,
    max_batch: usize,
    run: Arc<F>,
    undelivered: Arc<U>,
) where
    F: Fn(Vec<Req>) -> Fut,
    Fut: Future<Output = (Vec<Req>, BatchOutcome<Resp>)>,
    U: Fn(Req, Resp),
{
    loop {
        // Hold the receiver only while taking a batch, so other writers can take the
        // next one while this one runs.
        let batch = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut batch = Vec::with_capacity(max_batch.min(64));
            batch.push(first);
            while batch.len() < max_batch {
                match receiver.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            batch
        };
        // A caller that gave up (its ledger timeout fired while the request queued)
        // has already been told UNAVAILABLE: writing its claim now would leave a
        // claim nobody holds.
        let (requests, replies): (Vec<Req>, Vec<Reply<Resp>>) = batch
            .into_iter()
            .filter(|(_, reply)| !reply.is_closed())
            .unzip();
        if requests.is_empty() {
            continue;
        }
        let expected = requests.len();
        let started = Instant::now();
        let (requests, outcome) = run(requests).await;
        metrics::ledger_batch(op, expected, started.elapsed());
        match outcome {
            Ok(results) if results.len() == expected && requests.len() == expected => {
                for ((request, reply), result) in requests.into_iter().zip(replies).zip(results) {
                    // The caller gave up while the batch ran: what was written for it
                    // is nobody's to know about unless the writer undoes it.
                    if let Err(Ok(response)) = reply.send(result) {
                        undelivered(request, response);
                    }
                }
            }
            Ok(results) => {
                let error = format!("a batch of {expected} produced {} results", results.len());
                for reply in replies {
                    let _ = reply.send(Err(LedgerError::Internal(error.clone().into())));
                }
            }
            Err(error) => {
                for reply in replies {
                    let _ = reply.send(Err(error.for_another_caller()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands nothing back: for the tests that are not about it.
    fn ignore(_: u32, _: u32) {}

    #[tokio::test]
    async fn concurrent_requests_share_batches_and_each_gets_its_own_result() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let batcher = {
            let sizes = sizes.clone();
            let run = move |requests: Vec<u32>| {
                sizes.lock().unwrap().push(requests.len());
                async move {
                    tokio::task::yield_now().await;
                    let results = requests
                        .iter()
                        .map(|&r| {
                            if r == 13 {
                                Err(LedgerError::Internal("unlucky".into()))
                            } else {
                                Ok(r * 2)
                            }
                        })
                        .collect();
                    (requests, Ok(results))
                }
            };
            Batcher::spawn("test", 1, 8, run, ignore)
        };
        let batcher = Arc::new(batcher);
        let mut tasks = tokio::task::JoinSet::new();
        for r in 0..40u32 {
            let batcher = batcher.clone();
            tasks.spawn(async move { (r, batcher.submit(r).await) });
        }
        for (r, result) in tasks.join_all().await {
            match r {
                13 => assert!(result.is_err()),
                _ => assert_eq!(result.unwrap(), r * 2),
            }
        }
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 40);
        assert!(sizes.iter().all(|&n| n <= 8), "bounded: {sizes:?}");
        assert!(sizes.len() < 40, "requests were batched: {sizes:?}");
    }

    #[tokio::test]
    async fn requests_whose_caller_gave_up_are_not_written() {
        let written = Arc::new(std::sync::Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let batcher = {
            let (written, gate) = (written.clone(), gate.clone());
            let run = move |requests: Vec<u32>| {
                let (written, gate) = (written.clone(), gate.clone());
                async move {
                    // The first batch waits until the test opens the gate.
                    if requests.contains(&1) {
                        gate.acquire().await.unwrap().forget();
                    }
                    written.lock().unwrap().extend(requests.iter().copied());
                    let results = requests.iter().copied().map(Ok).collect();
                    (requests, Ok(results))
                }
            };
            Arc::new(Batcher::spawn("test", 1, 100, run, ignore))
        };
        let first = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.submit(1).await }
        });
        tokio::task::yield_now().await;
        // Queued behind the first batch, then abandoned by its caller.
        let abandoned =
            tokio::time::timeout(std::time::Duration::from_millis(20), batcher.submit(2));
        assert!(abandoned.await.is_err());
        gate.add_permits(1);
        assert_eq!(first.await.unwrap().unwrap(), 1);
        assert_eq!(batcher.submit(3).await.unwrap(), 3);
        assert_eq!(*written.lock().unwrap(), vec![1, 3]);
    }

    #[tokio::test]
    async fn a_result_whose_caller_gave_up_while_its_batch_ran_is_handed_back() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let handed_back = Arc::new(std::sync::Mutex::new(Vec::new()));
        let batcher = {
            let (gate, handed_back) = (gate.clone(), handed_back.clone());
            let run = move |requests: Vec<u32>| {
                let gate = gate.clone();
                async move {
                    gate.acquire().await.unwrap().forget();
                    let results = requests.iter().map(|&r| Ok(r * 10)).collect();
                    (requests, Ok(results))
                }
            };
            let undelivered = move |request, response| {
                handed_back.lock().unwrap().push((request, response));
            };
            Batcher::spawn("test", 1, 100, run, undelivered)
        };
        // Its batch is running (held at the gate) when the caller gives up.
        let gave_up = tokio::time::timeout(std::time::Duration::from_millis(20), batcher.submit(7));
        assert!(gave_up.await.is_err());
        gate.add_permits(2);
        assert_eq!(batcher.submit(8).await.unwrap(), 80);
        assert_eq!(*handed_back.lock().unwrap(), vec![(7, 70)]);
    }

    #[tokio::test]
    async fn a_failed_statement_fails_every_caller_in_it() {
        let run =
            |requests: Vec<u32>| async { (requests, Err(LedgerError::Unavailable("down".into()))) };
        let batcher = Batcher::spawn("test", 1, 100, run, ignore);
        let error = batcher.submit(1).await.unwrap_err();
        assert!(matches!(error, LedgerError::Unavailable(_)));
    }
}
