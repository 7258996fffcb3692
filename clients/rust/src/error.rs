//! The client's errors: [`ClientError`] for one RPC (after its retries), [`OnceError`]
//! for the guard, which adds what only the guard can know (the effect's own error, a
//! result that ran but was not stored).
//!
//! gRPC statuses are turned into these at the edge (`rpc.rs`), so no tonic type shows
//! in a signature.

use std::time::Duration;

/// Why a call to the sidecar failed after the client's retries.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered at the address (refused, unreachable, timed out): the sidecar
    /// may not be up yet, so connecting again may succeed.
    #[error("cannot connect to the sidecar at {addr}: {message}")]
    Connect {
        /// The address given.
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// The connection settings cannot work, and retrying will not change that: the
    /// address is not a URI, TLS settings are given for a plain `http://` address, a
    /// PEM holds no certificate or key, the bearer token is not printable ASCII, or the
    /// TLS handshake failed (a certificate one side does not accept, or a plaintext
    /// client at a TLS sidecar).
    #[error("cannot use the sidecar at {addr}: {message}")]
    Config {
        /// The address given.
        addr: String,
        /// What is wrong.
        message: String,
    },
    /// The sidecar refused the caller: `UNAUTHENTICATED` (no bearer token, or one no
    /// tenant has) or `PERMISSION_DENIED` (the namespace is not granted to the token's
    /// tenant). Set the token with `ClientConfigBuilder::auth_token`.
    #[error("the sidecar refused the caller ({code}): {message}")]
    Unauthorized {
        /// `UNAUTHENTICATED` or `PERMISSION_DENIED`.
        code: &'static str,
        /// The sidecar's message.
        message: String,
    },
    /// The fencing token is not the current holder's any more (FAILED_PRECONDITION):
    /// the lease ran out and another caller took the key over, or it was already
    /// released.
    #[error("the lease was lost: another caller holds the key now")]
    LeaseLost,
    /// Retries were refused by the client's retry budget: too many calls are failing
    /// at once, so this one fails fast instead of adding load.
    #[error("retry budget exhausted after {attempts} attempt(s); last error: {last_error}")]
    RetryBudgetExhausted {
        /// Attempts made, the first included.
        attempts: u32,
        /// The last attempt's error.
        last_error: String,
    },
    /// The sidecar stayed unreachable (or kept failing) for every allowed attempt.
    #[error("the sidecar failed {attempts} attempt(s); last error: {last_error}")]
    Unavailable {
        /// Attempts made, the first included.
        attempts: u32,
        /// The last attempt's error.
        last_error: String,
    },
    /// The sidecar refused the request for a reason a retry cannot fix (for example
    /// INVALID_ARGUMENT: a namespace or key out of bounds).
    #[error("the sidecar refused the request ({code}): {message}")]
    Rejected {
        /// The gRPC status code's name, e.g. `INVALID_ARGUMENT`.
        code: &'static str,
        /// The sidecar's message.
        message: String,
    },
    /// The sidecar sent an answer this client does not understand (a newer server?).
    #[error("unexpected answer from the sidecar: {0}")]
    Protocol(String),
}

/// Why [`Client::once`](super::Client::once) did not return a result.
#[derive(Debug, thiserror::Error)]
pub enum OnceError<E> {
    /// The effect reported that it did not happen; the claim was released, so the
    /// next caller acquires the key at once.
    #[error("the effect did not happen (the claim was released)")]
    Effect(#[source] E),
    /// The key was claimed before with a different fingerprint: the same key was
    /// reused for a different request, which is a bug in the caller.
    #[error("the key was used before with a different fingerprint")]
    FingerprintMismatch,
    /// The namespace's killswitch is engaged: the effect did not run, and nothing was
    /// stored or spent. Retrying will not help until an operator releases it.
    #[error("blocked by the namespace's killswitch: {reason}")]
    Blocked {
        /// The killswitch's reason.
        reason: String,
    },
    /// The subject's budget for the current window would be exceeded: the effect did
    /// not run, and nothing was stored or spent.
    #[error("over budget ({reason}); the window resets in {retry_after:?}")]
    OverBudget {
        /// Which limit (`max_cost` or `max_claims`).
        reason: String,
        /// The time until the subject's window resets.
        retry_after: Duration,
    },
    /// Another caller held the key for longer than the configured wait.
    #[error("another caller still holds the key after {waited:?}")]
    StillInProgress {
        /// How long this call waited.
        waited: Duration,
    },
    /// The effect ran, but its result could not be stored: either the lease was lost
    /// (another caller may run the effect again) or `Complete` kept failing until the
    /// configured deadline. `response` is the effect's result.
    #[error("the effect ran but its result was not stored: {cause}")]
    NotStored {
        /// What the effect returned.
        response: Vec<u8>,
        /// Why it was not stored.
        #[source]
        cause: ClientError,
    },
    /// A call to the sidecar failed before the effect ran; the effect did not run.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// `error: cause: cause…`: an error with its whole source chain, for logs. A cause
/// whose text the chain already ends with is skipped (tonic's transport errors print
/// their source and also return it).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
