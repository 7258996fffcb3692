//! The guard: [`Client::once`] runs an effect at most once per key, whoever calls.

use std::future::Future;

use tokio::time::Instant;

use super::error::{ClientError, OnceError};
use super::rpc::{Claim, Client, Spend};
use crate::FencingToken;

/// The result of [`Client::once`]: the effect's response, and whether this call ran
/// the effect or replayed what an earlier call stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Once {
    /// This call ran the effect and stored its result.
    Ran(Vec<u8>),
    /// An earlier call ran the effect; this is its stored result.
    Replayed(Vec<u8>),
}

impl Once {
    /// The response, however it was obtained.
    pub fn response(&self) -> &[u8] {
        match self {
            Once::Ran(response) | Once::Replayed(response) => response,
        }
    }

    /// The response, owned.
    pub fn into_response(self) -> Vec<u8> {
        match self {
            Once::Ran(response) | Once::Replayed(response) => response,
        }
    }

    /// Whether an earlier call ran the effect.
    pub fn was_replayed(&self) -> bool {
        matches!(self, Once::Replayed(_))
    }
}

impl Client {
    /// Runs `effect` at most once for `(namespace, key)`, across every caller of every
    /// sidecar sharing the ledger.
    ///
    /// - Acquired: runs `effect(token)` while extending the lease, then stores its
    ///   `Ok` result (retrying `Complete` until it lands or the lease is provably
    ///   lost) and returns [`Once::Ran`]. An `Err` means the effect did not happen: the
    ///   claim is released and [`OnceError::Effect`] returned.
    /// - Another caller holds the key: waits `retry_after` at least, plus full jitter
    ///   over its backoff ([`ClientConfig::in_progress_wait`]), and claims again, for
    ///   at most the configured in-progress timeout.
    /// - Completed: returns the stored result as [`Once::Replayed`].
    /// - A different fingerprint: [`OnceError::FingerprintMismatch`].
    pub async fn once<F, Fut, E>(
        &self,
        namespace: &str,
        key: &str,
        fingerprint: &[u8],
        effect: F,
    ) -> Result<Once, OnceError<E>>
    where
        F: FnOnce(FencingToken) -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
    {
        self.once_spending(namespace, key, fingerprint, Spend::default(), effect)
            .await
    }

    /// [`Client::once`] for an effect that spends `spend` of the namespace's budget
    /// (its subject and cost). The spend guard's refusals are their own errors, never
    /// retried here: [`OnceError::Blocked`] while the killswitch is engaged, and
    /// [`OnceError::OverBudget`] with the time until the subject's window resets.
    pub async fn once_spending<F, Fut, E>(
        &self,
        namespace: &str,
        key: &str,
        fingerprint: &[u8],
        spend: Spend,
        effect: F,
    ) -> Result<Once, OnceError<E>>
    where
        F: FnOnce(FencingToken) -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
    {
        let started = Instant::now();
        let deadline = started + self.config().in_progress_timeout;
        let mut waits = 0;
        let lease = loop {
            match self
                .claim_spending(namespace, key, fingerprint, &spend)
                .await?
            {
                Claim::Acquired(lease) => break lease,
                Claim::Completed { response } => return Ok(Once::Replayed(response)),
                Claim::FingerprintMismatch => return Err(OnceError::FingerprintMismatch),
                Claim::Blocked { reason } => return Err(OnceError::Blocked { reason }),
                Claim::OverBudget {
                    reason,
                    retry_after,
                } => {
                    return Err(OnceError::OverBudget {
                        reason,
                        retry_after,
                    });
                }
                Claim::InProgress { retry_after } => {
                    let wait = self.config().in_progress_wait(retry_after, waits);
                    waits += 1;
                    tracing::debug!(
                        namespace,
                        key,
                        ?retry_after,
                        ?wait,
                        waits,
                        "another caller holds the key; claiming again after the wait"
                    );
                    if Instant::now() + wait > deadline {
                        return Err(OnceError::StillInProgress {
                            waited: started.elapsed(),
                        });
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        };

        match lease.keep_alive(effect(lease.token())).await {
            Ok(response) => match lease.complete(&response).await {
                Ok(()) => Ok(Once::Ran(response)),
                Err(cause) => Err(OnceError::NotStored { response, cause }),
            },
            Err(error) => {
                match lease.release().await {
                    // Lost means someone else holds it or it is already gone: either
                    // way the key is not stuck on us.
                    Ok(()) | Err(ClientError::LeaseLost) => {}
                    Err(release_error) => tracing::warn!(
                        namespace, key, error = %release_error,
                        "could not release after the effect failed; the key frees when the lease runs out"
                    ),
                }
                Err(OnceError::Effect(error))
            }
        }
    }
}
