//! Every knob of the client in one place, with defaults that suit a sidecar on the same
//! host: short backoffs (the sidecar is near), a lease long enough for a typical side
//! effect, and a retry budget that keeps an outage from turning into a retry storm.
//! The credentials a sidecar with tenants and TLS asks for (a bearer token, a CA, a
//! client certificate) are set here too; `connection` uses them.

use std::time::Duration;

use crate::connection::{AuthToken, TlsSettings};

/// The floor of a wait on another holder, so a `retry_after` of zero (a lease about to
/// run out) does not become a busy loop.
const MIN_IN_PROGRESS_WAIT: Duration = Duration::from_millis(10);

/// How a [`Client`](super::Client) retries, leases and waits. Build one with
/// [`ClientConfig::builder`] or take [`ClientConfig::default`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub(crate) connect_timeout: Duration,
    pub(crate) rpc_timeout: Duration,
    pub(crate) lease: Duration,
    pub(crate) retention: Option<Duration>,
    pub(crate) initial_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) retry_ratio: f64,
    pub(crate) min_retries_per_second: f64,
    pub(crate) max_retry_tokens: f64,
    pub(crate) in_progress_timeout: Duration,
    pub(crate) complete_timeout: Duration,
    pub(crate) auth_token: Option<AuthToken>,
    pub(crate) tls: TlsSettings,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            rpc_timeout: Duration::from_secs(10),
            lease: Duration::from_secs(30),
            retention: None,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            max_attempts: 8,
            retry_ratio: 0.1,
            min_retries_per_second: 1.0,
            max_retry_tokens: 10.0,
            in_progress_timeout: Duration::from_secs(60),
            complete_timeout: Duration::from_secs(60),
            auth_token: None,
            tls: TlsSettings::default(),
        }
    }
}

impl ClientConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> ClientConfigBuilder {
        ClientConfigBuilder(Self::default())
    }

    /// How long a caller told `IN_PROGRESS` with `retry_after` waits before claiming
    /// again, on its `waits`-th wait (0 for the first): never less than `retry_after`
    /// — the sidecar's word on when the holder can be done — plus full jitter over the
    /// caller's backoff for that wait, so callers told together do not come back
    /// together.
    pub fn in_progress_wait(&self, retry_after: Duration, waits: u32) -> Duration {
        let jitter = crate::backoff::full_jitter(crate::backoff::ceiling(
            self.initial_backoff,
            self.max_backoff,
            waits,
        ));
        retry_after.max(MIN_IN_PROGRESS_WAIT) + jitter
    }

    /// The lease each claim asks for; the guard extends it every third of it.
    pub fn lease(&self) -> Duration {
        self.lease
    }
}

/// Builds a [`ClientConfig`]; every setter has a default.
#[derive(Debug, Clone)]
pub struct ClientConfigBuilder(ClientConfig);

impl ClientConfigBuilder {
    /// Longest wait for the TCP and HTTP/2 handshake (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.0.connect_timeout = timeout;
        self
    }

    /// Longest wait for one RPC before it counts as a failed attempt (default 10 s).
    pub fn rpc_timeout(mut self, timeout: Duration) -> Self {
        self.0.rpc_timeout = timeout;
        self
    }

    /// The lease each claim asks for (default 30 s). The guard extends it every third of
    /// it while the effect runs, so it only needs to outlast a stalled holder's crash.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.0.lease = lease;
        self
    }

    /// How long completed results are kept; `None` (default) takes the server's.
    pub fn retention(mut self, retention: Option<Duration>) -> Self {
        self.0.retention = retention;
        self
    }

    /// The first retry's backoff ceiling; it doubles per attempt (default 50 ms).
    pub fn initial_backoff(mut self, backoff: Duration) -> Self {
        self.0.initial_backoff = backoff;
        self
    }

    /// The largest backoff ceiling (default 2 s).
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.0.max_backoff = backoff;
        self
    }

    /// Most attempts of one RPC, the first included (default 8).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.0.max_attempts = attempts.max(1);
        self
    }

    /// Retries the client may make per request it sends (default 0.1: 10 %).
    pub fn retry_ratio(mut self, ratio: f64) -> Self {
        self.0.retry_ratio = ratio.max(0.0);
        self
    }

    /// Retries allowed per second however few requests there were, so a quiet client
    /// can still ride out a blip (default 1).
    pub fn min_retries_per_second(mut self, rate: f64) -> Self {
        self.0.min_retries_per_second = rate.max(0.0);
        self
    }

    /// The most retries the budget can save up; it starts full (default 10).
    pub fn max_retry_tokens(mut self, tokens: f64) -> Self {
        self.0.max_retry_tokens = tokens.max(0.0);
        self
    }

    /// Longest the guard waits for another holder of the key to finish (default 60 s).
    pub fn in_progress_timeout(mut self, timeout: Duration) -> Self {
        self.0.in_progress_timeout = timeout;
        self
    }

    /// Longest the guard keeps retrying `Complete` after the effect ran (default 60 s).
    pub fn complete_timeout(mut self, timeout: Duration) -> Self {
        self.0.complete_timeout = timeout;
        self
    }

    /// The bearer token of this caller's tenant, sent as `authorization: Bearer <token>`
    /// with every RPC; needed when the sidecar has tenants (`--config`). It must be
    /// printable ASCII without spaces (checked when connecting), and the configuration's `Debug`
    /// output shows `<redacted>` in its place.
    pub fn auth_token(mut self, token: impl Into<String>) -> Self {
        self.0.auth_token = Some(AuthToken(token.into()));
        self
    }

    /// Trust the CA in this PEM for an `https://` address (by default the system's
    /// roots are trusted): the CA that signed the sidecar's `--tls-cert`.
    pub fn tls_ca_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.0.tls.ca_certificate = Some(pem.into());
        self
    }

    /// Present this certificate chain and private key (both PEM) to a sidecar that
    /// requires client certificates (mutual TLS: its `--tls-client-ca`). The key never
    /// shows in `Debug` output.
    pub fn tls_client_identity(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.0.tls.identity = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// The finished configuration.
    pub fn build(self) -> ClientConfig {
        self.0
    }
}
