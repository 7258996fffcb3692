//! The layer's configuration: which namespace its keys live in, whether a key is
//! required, and which response headers are safe to replay.

use std::sync::Arc;

use http::HeaderName;
use tower::Layer;

use super::service::Idempotent;
use crate::Client;
use crate::{Namespace, ValidationError};

/// Largest request body the layer reads to fingerprint, by default.
const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Makes the POST and PATCH handlers under it idempotent by `Idempotency-Key`, as the
/// IETF Idempotency-Key draft describes. Other methods pass through untouched.
#[derive(Debug, Clone)]
pub struct IdempotencyLayer {
    pub(crate) client: Client,
    pub(crate) settings: Arc<Settings>,
}

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) namespace: String,
    pub(crate) key_required: bool,
    pub(crate) replayed_headers: Vec<HeaderName>,
    pub(crate) max_body_bytes: usize,
}

impl IdempotencyLayer {
    /// Keys go into `namespace` on the sidecar behind `client`. By default a request
    /// without a key is refused with 400, and only `content-type` is replayed.
    pub fn new(client: Client, namespace: impl Into<String>) -> Result<Self, ValidationError> {
        let namespace = Namespace::try_from(namespace.into())?.as_str().to_owned();
        Ok(Self {
            client,
            settings: Arc::new(Settings {
                namespace,
                key_required: true,
                // Only headers that describe the body: others (Set-Cookie, Date,
                // tracing headers) belong to the first exchange, not to its replay.
                replayed_headers: vec![http::header::CONTENT_TYPE],
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            }),
        })
    }

    /// Lets requests without `Idempotency-Key` through to the handler, unprotected.
    pub fn key_optional(mut self) -> Self {
        Arc::make_mut(&mut self.settings).key_required = false;
        self
    }

    /// Also stores and replays this response header (e.g. `location`).
    pub fn replay_header(mut self, name: HeaderName) -> Self {
        Arc::make_mut(&mut self.settings)
            .replayed_headers
            .push(name);
        self
    }

    /// Largest request body accepted under a key (default 1 MiB); larger gets 413.
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        Arc::make_mut(&mut self.settings).max_body_bytes = limit;
        self
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = Idempotent<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Idempotent::new(inner, self.client.clone(), self.settings.clone())
    }
}
