//! The inbox pattern for consumers: deduplicate a batch of broker messages by their
//! ids with one `ClaimBatch`, run the handler only for the messages nobody handled yet,
//! store their results with one `CompleteBatch`, release the ones whose handler failed,
//! and tell the caller, per message, what to do with it: ack, deliver again later, or
//! dead-letter.
//!
//! A message's fingerprint is the SHA-256 of its payload (the Python client computes
//! the same), so an id reused for a different payload is told apart from a redelivery.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::proto;
use crate::rpc::{CLAIMANT_BYTES, Client, Retries, std_duration};
use crate::{ClientError, FencingToken, Namespace, ValidationError};

/// The most messages sent in one `ClaimBatch` (the sidecar's default limit is 1000).
const CHUNK: usize = 500;
/// How soon a message the killswitch blocked is worth redelivering: an operator's
/// release is what it waits for, not a window.
const BLOCKED_RETRY_AFTER: Duration = Duration::from_secs(30);

/// One message as the broker delivered it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The message's id: the idempotency key (a JetStream `Nats-Msg-Id`, a Kafka
    /// topic/partition/offset, an SQS message id…).
    pub id: &'a str,
    /// Its payload; its SHA-256 is the fingerprint.
    pub payload: &'a [u8],
    /// How many times the broker has delivered it, this time included (1 = first).
    pub deliveries: u32,
}

/// What to do with a message after [`Inbox::process`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The handler ran and its result is stored: ack the message.
    Done {
        /// What the handler returned.
        result: Vec<u8>,
    },
    /// Handled before (a redelivery, or the same message published twice): ack it
    /// without handling it again.
    Duplicate {
        /// The result stored when it was handled.
        result: Vec<u8>,
    },
    /// Not handled: deliver it again after `after` (another consumer is handling it,
    /// or the handler failed and deliveries are left).
    Retry {
        /// How long to wait at least.
        after: Duration,
        /// Why.
        reason: String,
    },
    /// Do not deliver it again: its handler failed on its `max_deliveries`-th
    /// delivery, or its id was used before for a different payload.
    DeadLetter {
        /// Why.
        reason: String,
    },
}

impl Verdict {
    /// Whether the broker should be told the message is done with (`Done`, `Duplicate`).
    pub fn is_ack(&self) -> bool {
        matches!(self, Verdict::Done { .. } | Verdict::Duplicate { .. })
    }
}

/// Deduplicates a consumer's messages in one namespace.
#[derive(Debug, Clone)]
pub struct Inbox {
    client: Client,
    namespace: Namespace,
    max_deliveries: u32,
}

/// A message this batch holds, waiting for its handler's outcome.
struct Held {
    index: usize,
    token: FencingToken,
}

impl Inbox {
    /// An inbox in `namespace` that dead-letters a message whose handler fails on its
    /// `max_deliveries`-th delivery.
    pub fn new(
        client: Client,
        namespace: &str,
        max_deliveries: u32,
    ) -> Result<Self, ValidationError> {
        Ok(Self {
            client,
            namespace: Namespace::try_from(namespace.to_owned())?,
            max_deliveries: max_deliveries.max(1),
        })
    }

    /// Handles `messages`: `handler` runs, in order, for each message nobody handled
    /// before; its `Ok` result is stored, an `Err` releases the message for a later
    /// delivery. Returns one verdict per message, in order. An error means the sidecar
    /// could not be asked (after the client's retries): deliver the whole batch again.
    pub async fn process<'m, H, Fut, E>(
        &self,
        messages: &[Message<'m>],
        mut handler: H,
    ) -> Result<Vec<Verdict>, ClientError>
    where
        H: FnMut(Message<'m>) -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
        E: Display,
    {
        let mut verdicts = Vec::with_capacity(messages.len());
        let mut start = 0;
        while start < messages.len() {
            // A chunk never holds one id twice: the sidecar refuses such a batch, and a
            // message delivered twice in one batch is handled once.
            let mut end = start;
            let mut ids = std::collections::HashSet::new();
            while end < messages.len() && end - start < CHUNK && ids.insert(messages[end].id) {
                end += 1;
            }
            verdicts.extend(
                self.process_chunk(&messages[start..end], &mut handler)
                    .await?,
            );
            start = end;
        }
        Ok(verdicts)
    }

    async fn process_chunk<'m, H, Fut, E>(
        &self,
        messages: &[Message<'m>],
        handler: &mut H,
    ) -> Result<Vec<Verdict>, ClientError>
    where
        H: FnMut(Message<'m>) -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
        E: Display,
    {
        let claimed_at = tokio::time::Instant::now();
        let answers = self.claim(messages).await?;
        let mut verdicts: Vec<Option<Verdict>> = vec![None; messages.len()];
        let mut done: Vec<(Held, Vec<u8>)> = Vec::new();
        let mut failed: Vec<Held> = Vec::new();
        for (index, (message, answer)) in messages.iter().zip(answers).enumerate() {
            let verdict = match proto::Outcome::try_from(answer.outcome) {
                Ok(proto::Outcome::Acquired) => {
                    let held = Held {
                        index,
                        token: FencingToken::new(answer.fencing_token),
                    };
                    match handler(*message).await {
                        Ok(result) => done.push((held, result)),
                        Err(error) => {
                            failed.push(held);
                            verdicts[index] = Some(self.after_failure(message, &error));
                        }
                    }
                    continue;
                }
                Ok(proto::Outcome::InProgress) => Verdict::Retry {
                    after: answer.retry_after.map(std_duration).unwrap_or_default(),
                    reason: "another consumer is handling it".to_owned(),
                },
                Ok(proto::Outcome::Completed) => Verdict::Duplicate {
                    result: answer.response,
                },
                Ok(proto::Outcome::FingerprintMismatch) => Verdict::DeadLetter {
                    reason: format!(
                        "id {:?} was used before for a different payload",
                        message.id
                    ),
                },
                // The spend guard refused it: nothing ran or was stored; the message
                // waits for the killswitch's release or the subject's next window.
                Ok(proto::Outcome::Blocked) => Verdict::Retry {
                    after: BLOCKED_RETRY_AFTER,
                    reason: format!("blocked by the killswitch: {}", answer.reason),
                },
                Ok(proto::Outcome::OverBudget) => Verdict::Retry {
                    after: answer.retry_after.map(std_duration).unwrap_or_default(),
                    reason: format!("over budget ({})", answer.reason),
                },
                Ok(proto::Outcome::Unspecified) | Err(_) => {
                    return Err(ClientError::Protocol(format!(
                        "claim outcome {}",
                        answer.outcome
                    )));
                }
            };
            verdicts[index] = Some(verdict);
        }

        for held in &failed {
            // Best effort: a release that fails leaves the claim to run out its lease.
            let key = messages[held.index].id;
            let _ = self
                .client
                .release(self.namespace.as_str(), key, held.token)
                .await;
        }
        if !done.is_empty() {
            // The handlers ran: keep trying to store their results while the claims
            // are surely still ours, or a redelivery would run them again.
            let deadline = claimed_at + self.client.config().lease;
            let stored = self.complete(messages, &done, deadline).await;
            for ((held, result), stored) in done.into_iter().zip(stored) {
                verdicts[held.index] = Some(match stored {
                    Ok(()) => Verdict::Done { result },
                    Err(reason) => Verdict::Retry {
                        after: Duration::ZERO,
                        reason,
                    },
                });
            }
        }
        Ok(verdicts.into_iter().flatten().collect())
    }

    /// What a failed handler means for its message.
    fn after_failure(&self, message: &Message<'_>, error: &dyn Display) -> Verdict {
        if message.deliveries >= self.max_deliveries {
            Verdict::DeadLetter {
                reason: format!(
                    "the handler failed on delivery {} of {}: {error}",
                    message.deliveries, self.max_deliveries
                ),
            }
        } else {
            Verdict::Retry {
                after: Duration::ZERO,
                reason: format!("the handler failed: {error}"),
            }
        }
    }

    /// One `ClaimBatch` for `messages`, retried as one logical claim (its claimants
    /// sent again on every attempt).
    async fn claim(
        &self,
        messages: &[Message<'_>],
    ) -> Result<Vec<proto::ClaimResponse>, ClientError> {
        let items: Vec<proto::ClaimItem> = messages
            .iter()
            .map(|message| proto::ClaimItem {
                key: message.id.to_owned(),
                fingerprint: Sha256::digest(message.payload).to_vec(),
                claimant: rand::random::<[u8; CLAIMANT_BYTES]>().to_vec(),
                ..Default::default()
            })
            .collect();
        let request = proto::ClaimBatchRequest {
            namespace: self.namespace.as_str().to_owned(),
            items,
            lease: Some(proto::duration(self.client.config().lease)),
        };
        let response = self
            .client
            .call(Retries::Budgeted, |mut rpc, attempt| {
                let mut request = request.clone();
                for item in &mut request.items {
                    item.attempt = attempt;
                }
                async move { rpc.claim_batch(request).await }
            })
            .await?;
        if response.results.len() != messages.len() {
            return Err(ClientError::Protocol(format!(
                "{} answers for {} messages",
                response.results.len(),
                messages.len()
            )));
        }
        Ok(response.results)
    }

    /// One `CompleteBatch` for the handled messages; per message, `Ok` once stored, or
    /// why not.
    async fn complete(
        &self,
        messages: &[Message<'_>],
        done: &[(Held, Vec<u8>)],
        deadline: tokio::time::Instant,
    ) -> Vec<Result<(), String>> {
        let request = proto::CompleteBatchRequest {
            namespace: self.namespace.as_str().to_owned(),
            items: done
                .iter()
                .map(|(held, result)| proto::CompleteItem {
                    key: messages[held.index].id.to_owned(),
                    fencing_token: held.token.get(),
                    response: result.clone(),
                })
                .collect(),
            retention: self.client.config().retention.map(proto::duration),
        };
        let called = self
            .client
            .call(Retries::Until(deadline), |mut rpc, _| {
                let request = request.clone();
                async move { rpc.complete_batch(request).await }
            })
            .await;
        match called {
            Ok(response) => response
                .results
                .into_iter()
                .map(|result| match result.code {
                    0 => Ok(()),
                    _ => Err(format!(
                        "its result was not stored ({}); another consumer may hold it now",
                        result.message
                    )),
                })
                .chain(std::iter::repeat_with(|| {
                    Err("the sidecar answered fewer results than messages".to_owned())
                }))
                .take(done.len())
                .collect(),
            Err(error) => done
                .iter()
                .map(|_| Err(format!("its result was not stored: {error}")))
                .collect(),
        }
    }
}
