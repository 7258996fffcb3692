//! A held claim: the fencing token plus what the holder may do with it — keep the
//! lease alive while the effect runs, complete with the result, or release.
//!
//! A `Lease` that is dropped without `complete` or `release` is left to expire on
//! purpose: the effect may or may not have happened (a cancelled future cannot say),
//! and at-most-once means waiting out the lease rather than inviting a second run.

use std::future::Future;

use tokio::time::Instant;

use super::error::ClientError;
use super::rpc::{Client, Retries};
use crate::FencingToken;

/// The right to run the effect for one key, until the lease is lost.
#[derive(Debug)]
pub struct Lease {
    client: Client,
    namespace: String,
    key: String,
    token: FencingToken,
}

impl Lease {
    pub(crate) fn new(client: Client, namespace: &str, key: &str, token: FencingToken) -> Self {
        Self {
            client,
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            token,
        }
    }

    /// The fencing token: strictly larger than every token issued before for this key,
    /// so a downstream system that remembers the largest it has seen can refuse a
    /// stale holder's writes.
    pub fn token(&self) -> FencingToken {
        self.token
    }

    /// Runs `work` while extending the lease every third of it, so a slow effect is not
    /// taken over by the next caller. Extension failures are retried on the next tick
    /// (two more before the lease would run out); a lost lease stops the extension but
    /// not `work`, whose result `complete` will then refuse.
    pub async fn keep_alive<F: Future>(&self, work: F) -> F::Output {
        let period = self.client.config().lease() / 3;
        let keeper = async {
            let mut next = Instant::now() + period;
            loop {
                tokio::time::sleep_until(next).await;
                next += period;
                match self
                    .client
                    .extend_lease(&self.namespace, &self.key, self.token)
                    .await
                {
                    Ok(()) => {}
                    Err(ClientError::LeaseLost) => {
                        tracing::warn!(
                            namespace = %self.namespace, key = %self.key,
                            "lease lost while the effect ran; its result will not be stored"
                        );
                        return std::future::pending().await;
                    }
                    Err(error) => tracing::warn!(
                        namespace = %self.namespace, key = %self.key, %error,
                        "could not extend the lease; retrying on the next tick"
                    ),
                }
            }
        };
        // Both are polled by this one task, so `work` needs no 'static bound, and the
        // keeper stops the moment `work` is done.
        tokio::select! {
            output = work => output,
            never = keeper => match never {},
        }
    }

    /// Stores `response` as the key's result. Retries until the sidecar confirms, the
    /// lease is provably lost ([`ClientError::LeaseLost`]), or the configured complete
    /// timeout passes; the lease is kept alive meanwhile.
    pub async fn complete(self, response: &[u8]) -> Result<(), ClientError> {
        let deadline = Instant::now() + self.client.config().complete_timeout;
        self.keep_alive(self.client.complete(
            &self.namespace,
            &self.key,
            self.token,
            response.to_vec(),
            Retries::Until(deadline),
        ))
        .await
    }

    /// Gives the key up because the effect did not happen, so the next caller acquires
    /// it at once. A release whose earlier attempt already landed reports
    /// [`ClientError::LeaseLost`], which means the same thing here.
    pub async fn release(self) -> Result<(), ClientError> {
        self.client
            .release(&self.namespace, &self.key, self.token)
            .await
    }
}
