//! The connected client and its RPCs, each retried under one policy: exponential
//! backoff with full jitter, a per-call attempt cap, and the client-wide retry budget.
//! gRPC statuses become [`ClientError`]s here, the one place that sees tonic.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tonic::{Code, Status};

use super::backoff;
use super::budget::RetryBudget;
use super::config::ClientConfig;
use super::connection::{AuthorizedChannel, tls_failure};
use super::error::ClientError;
use super::lease::Lease;
use crate::FencingToken;
use crate::proto::{self, onceward_client::OncewardClient};
use crate::proto::{code_label, duration as proto_duration};

/// Random bytes in the claimant of each logical Claim (16, as docs/PROTOCOL.md says).
pub(crate) const CLAIMANT_BYTES: usize = 16;

/// A connection to an onceward sidecar. Cheap to clone: clones share the connection
/// and the retry budget.
#[derive(Debug, Clone)]
pub struct Client {
    // One pointer: a `Client` travels inside every `Lease` and `Claim`.
    shared: Arc<Shared>,
}

/// The generated client on a channel that sends the bearer token.
type Rpc = OncewardClient<AuthorizedChannel>;

#[derive(Debug)]
struct Shared {
    rpc: Rpc,
    /// The address connected to, for errors.
    addr: String,
    config: ClientConfig,
    budget: RetryBudget,
}

/// What a [`Client::claim`] found.
#[derive(Debug)]
pub enum Claim {
    /// This caller holds the key: run the effect, then [`Lease::complete`] or
    /// [`Lease::release`].
    Acquired(Lease),
    /// Another caller holds the key; claim again after `retry_after`.
    InProgress {
        /// The sidecar's advice on when to look again.
        retry_after: Duration,
    },
    /// The key was completed; this is the stored result.
    Completed {
        /// The result stored by the caller that ran the effect.
        response: Vec<u8>,
    },
    /// The key was used before with a different fingerprint.
    FingerprintMismatch,
    /// The namespace's killswitch is engaged: nothing was stored or spent. Not worth
    /// retrying until an operator releases it.
    Blocked {
        /// The killswitch's reason.
        reason: String,
    },
    /// The subject's budget for the current window would be exceeded: nothing was
    /// stored or spent.
    OverBudget {
        /// Which limit (`max_cost` or `max_claims`).
        reason: String,
        /// The time until the subject's window resets.
        retry_after: Duration,
    },
}

/// Whose spend a claim is, and how much: for a namespace with a budget (see the
/// sidecar's spend guard). The default spends nothing and names no subject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spend {
    /// Whose spend: a user, a recipient, a shop (0–128 bytes, no control characters).
    pub subject: String,
    /// Units of the namespace's budget (cents, messages); 0 = free.
    pub cost: u64,
}

impl Spend {
    /// `cost` units of `subject`'s budget.
    pub fn new(subject: impl Into<String>, cost: u64) -> Self {
        Self {
            subject: subject.into(),
            cost,
        }
    }
}

/// How long one RPC may keep retrying.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Retries {
    /// Up to the configured attempts, each retry paid from the retry budget.
    Budgeted,
    /// Until the deadline, outside the budget: for `Complete` after the effect ran,
    /// where giving up early means a duplicate may run the effect again, and whose
    /// count is bounded by the in-flight effects rather than by incoming requests.
    Until(Instant),
}

impl Client {
    /// Connects with the default [`ClientConfig`]. `addr` is `host:port` or an
    /// `http://` URI; an `https://` one needs the TLS settings of
    /// [`ClientConfig::builder`] unless the system trusts the sidecar's certificate.
    pub async fn connect(addr: impl AsRef<str>) -> Result<Self, ClientError> {
        Self::connect_with(addr, ClientConfig::default()).await
    }

    /// Connects with the given configuration: its timeouts, and the bearer token and
    /// TLS settings a sidecar with tenants and TLS needs. [`ClientError::Connect`] means
    /// nothing answered (worth trying again); [`ClientError::Config`], that the address,
    /// the token or TLS cannot work as configured.
    pub async fn connect_with(
        addr: impl AsRef<str>,
        config: ClientConfig,
    ) -> Result<Self, ClientError> {
        let addr = addr.as_ref();
        let channel = config.connect(addr, Some(config.rpc_timeout)).await?;
        let budget = RetryBudget::new(
            config.retry_ratio,
            config.min_retries_per_second,
            config.max_retry_tokens,
        );
        Ok(Self {
            shared: Arc::new(Shared {
                rpc: OncewardClient::new(channel),
                addr: addr.to_owned(),
                config,
                budget,
            }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &ClientConfig {
        &self.shared.config
    }

    /// Claims `(namespace, key)` once (retrying only failed calls, not `IN_PROGRESS`).
    /// Most callers want [`Client::once`]; this is the building block for callers that
    /// answer "in progress" themselves, like the HTTP layer.
    pub async fn claim(
        &self,
        namespace: &str,
        key: &str,
        fingerprint: &[u8],
    ) -> Result<Claim, ClientError> {
        self.claim_spending(namespace, key, fingerprint, &Spend::default())
            .await
    }

    /// [`Client::claim`] that spends `spend` of the namespace's budget if it acquires.
    pub async fn claim_spending(
        &self,
        namespace: &str,
        key: &str,
        fingerprint: &[u8],
        spend: &Spend,
    ) -> Result<Claim, ClientError> {
        // One claimant for this logical Claim, sent again on every retry: if a reply
        // was lost after the sidecar acquired the key, the retry is ACQUIRED again with
        // the same token instead of waiting out the lease as IN_PROGRESS.
        let request = proto::ClaimRequest {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            fingerprint: fingerprint.to_vec(),
            lease: Some(proto_duration(self.shared.config.lease)),
            claimant: rand::random::<[u8; CLAIMANT_BYTES]>().to_vec(),
            attempt: 0,
            subject: spend.subject.clone(),
            cost: spend.cost,
        };
        let response = self
            .call(Retries::Budgeted, |mut rpc, attempt| {
                let request = proto::ClaimRequest {
                    attempt,
                    ..request.clone()
                };
                async move { rpc.claim(request).await }
            })
            .await?;
        match proto::Outcome::try_from(response.outcome) {
            Ok(proto::Outcome::Acquired) => Ok(Claim::Acquired(Lease::new(
                self.clone(),
                namespace,
                key,
                FencingToken::new(response.fencing_token),
            ))),
            Ok(proto::Outcome::InProgress) => Ok(Claim::InProgress {
                retry_after: response.retry_after.map(std_duration).unwrap_or_default(),
            }),
            Ok(proto::Outcome::Completed) => Ok(Claim::Completed {
                response: response.response,
            }),
            Ok(proto::Outcome::FingerprintMismatch) => Ok(Claim::FingerprintMismatch),
            Ok(proto::Outcome::Blocked) => Ok(Claim::Blocked {
                reason: response.reason,
            }),
            Ok(proto::Outcome::OverBudget) => Ok(Claim::OverBudget {
                reason: response.reason,
                retry_after: response.retry_after.map(std_duration).unwrap_or_default(),
            }),
            Ok(proto::Outcome::Unspecified) | Err(_) => Err(ClientError::Protocol(format!(
                "claim outcome {}",
                response.outcome
            ))),
        }
    }

    pub(crate) async fn complete(
        &self,
        namespace: &str,
        key: &str,
        token: FencingToken,
        response: Vec<u8>,
        retries: Retries,
    ) -> Result<(), ClientError> {
        let request = proto::CompleteRequest {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            fencing_token: token.get(),
            response,
            retention: self.shared.config.retention.map(proto_duration),
        };
        self.call(retries, |mut rpc, _| {
            let request = request.clone();
            async move { rpc.complete(request).await }
        })
        .await
        .map(drop)
    }

    pub(crate) async fn release(
        &self,
        namespace: &str,
        key: &str,
        token: FencingToken,
    ) -> Result<(), ClientError> {
        let request = proto::ReleaseRequest {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            fencing_token: token.get(),
        };
        self.call(Retries::Budgeted, |mut rpc, _| {
            let request = request.clone();
            async move { rpc.release(request).await }
        })
        .await
        .map(drop)
    }

    /// One attempt only: the lease keeper tries again on its next tick anyway.
    pub(crate) async fn extend_lease(
        &self,
        namespace: &str,
        key: &str,
        token: FencingToken,
    ) -> Result<(), ClientError> {
        let request = proto::ExtendLeaseRequest {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            fencing_token: token.get(),
            lease: Some(proto_duration(self.shared.config.lease)),
        };
        let mut rpc = self.shared.rpc.clone();
        match rpc.extend_lease(request).await {
            Ok(_) => Ok(()),
            Err(status) => Err(match classify(&status, &self.shared.addr) {
                Failure::Retryable => ClientError::Unavailable {
                    attempts: 1,
                    last_error: describe(&status),
                },
                Failure::Final(error) => error,
            }),
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or `retries` says stop; it is
    /// given the attempt's number, 1 for the first.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        retries: Retries,
        mut attempt: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(Rpc, u32) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.shared.budget.deposit();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let status = match attempt(self.shared.rpc.clone(), attempts).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => status,
            };
            if let Failure::Final(error) = classify(&status, &self.shared.addr) {
                return Err(error);
            }
            let last_error = describe(&status);
            let backoff = backoff::full_jitter(backoff::ceiling(
                self.shared.config.initial_backoff,
                self.shared.config.max_backoff,
                attempts - 1,
            ));
            match retries {
                Retries::Budgeted => {
                    if attempts >= self.shared.config.max_attempts {
                        return Err(ClientError::Unavailable {
                            attempts,
                            last_error,
                        });
                    }
                    if !self.shared.budget.withdraw() {
                        return Err(ClientError::RetryBudgetExhausted {
                            attempts,
                            last_error,
                        });
                    }
                }
                Retries::Until(deadline) => {
                    if Instant::now() + backoff >= deadline {
                        return Err(ClientError::Unavailable {
                            attempts,
                            last_error,
                        });
                    }
                }
            }
            tracing::debug!(attempts, error = %last_error, ?backoff, "retrying onceward call");
            tokio::time::sleep(backoff).await;
        }
    }
}

enum Failure {
    /// Worth another attempt: the sidecar or the path to it failed, not the request.
    Retryable,
    /// A retry would get the same answer.
    Final(ClientError),
}

fn classify(status: &Status, addr: &str) -> Failure {
    // A status the transport made from a TLS failure (a client certificate the sidecar
    // refused arrives with the first read, after the handshake looked done): the next
    // attempt fails the same way.
    if let Some(message) = tls_failure(status) {
        return Failure::Final(ClientError::Config {
            addr: addr.to_owned(),
            message: format!("TLS handshake failed: {message}"),
        });
    }
    match status.code() {
        // UNAVAILABLE: the ledger or the connection is down (the sidecar fails closed,
        // so this is always safe to retry). UNKNOWN and CANCELLED are how a broken
        // HTTP/2 connection surfaces; DEADLINE_EXCEEDED is our own RPC timeout.
        Code::Unavailable
        | Code::Unknown
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::ResourceExhausted => Failure::Retryable,
        Code::FailedPrecondition => Failure::Final(ClientError::LeaseLost),
        code @ (Code::Unauthenticated | Code::PermissionDenied) => {
            Failure::Final(ClientError::Unauthorized {
                code: code_label(code),
                message: status.message().to_owned(),
            })
        }
        code => Failure::Final(ClientError::Rejected {
            code: code_label(code),
            message: status.message().to_owned(),
        }),
    }
}

fn describe(status: &Status) -> String {
    format!("{}: {}", code_label(status.code()), status.message())
}

pub(crate) fn std_duration(duration: prost_types::Duration) -> Duration {
    Duration::try_from(duration).unwrap_or_default()
}
