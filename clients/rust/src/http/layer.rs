//! The layer's configuration: which namespace its keys live in, whose keys they are
//! (the scope), where a key comes from when the request sends none, whether a key is
//! required, which responses are stored, the status of a reused key, and which
//! response headers are safe to replay.

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderName, StatusCode};
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

/// Whose keys a request's are: see [`IdempotencyLayer::scope`].
pub(crate) type ScopeFn = Arc<dyn Fn(&Parts) -> String + Send + Sync>;
/// A key made from the request: see [`IdempotencyLayer::key_from_request`].
pub(crate) type KeyFn = Arc<dyn Fn(&Parts, &Bytes) -> Option<String> + Send + Sync>;
/// Which responses are stored: see [`IdempotencyLayer::store_when`].
pub(crate) type StoreFn = Arc<dyn Fn(StatusCode) -> bool + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) namespace: String,
    pub(crate) key_required: bool,
    pub(crate) replayed_headers: Vec<HeaderName>,
    pub(crate) max_body_bytes: usize,
    pub(crate) scope: Option<ScopeFn>,
    pub(crate) key_from_request: Option<KeyFn>,
    pub(crate) mismatch_status: StatusCode,
    pub(crate) store_when: StoreFn,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("namespace", &self.namespace)
            .field("key_required", &self.key_required)
            .field("replayed_headers", &self.replayed_headers)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("scoped", &self.scope.is_some())
            .field("key_from_request", &self.key_from_request.is_some())
            .field("mismatch_status", &self.mismatch_status)
            .finish_non_exhaustive()
    }
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
                scope: None,
                key_from_request: None,
                mismatch_status: StatusCode::UNPROCESSABLE_ENTITY,
                // A 5xx says the operation did not (reliably) happen: a retry runs it.
                store_when: Arc::new(|status| !status.is_server_error()),
            }),
        })
    }

    /// Scopes keys per caller: the key a request sends counts only together with
    /// `scope(request)` — e.g. the authenticated principal — as the draft's composite
    /// key advises, so two callers sending the same key never see each other's
    /// responses (nor block each other). Without it, a key is the whole namespace's.
    pub fn scope(mut self, scope: impl Fn(&Parts) -> String + Send + Sync + 'static) -> Self {
        Arc::make_mut(&mut self.settings).scope = Some(Arc::new(scope));
        self
    }

    /// Makes the key from the request when it sends no `Idempotency-Key`: for
    /// idempotent creates keyed on a resource's unique attributes (e.g. an order's id in
    /// the body). `None` from `key` means this request has none either (then
    /// [`key_optional`](Self::key_optional) decides). Scoped like a sent key.
    pub fn key_from_request(
        mut self,
        key: impl Fn(&Parts, &Bytes) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.settings).key_from_request = Some(Arc::new(key));
        self
    }

    /// The status of a request that reuses a key with a different request (default
    /// 422; some APIs promised 409).
    pub fn mismatch_status(mut self, status: StatusCode) -> Self {
        Arc::make_mut(&mut self.settings).mismatch_status = status;
        self
    }

    /// Which of the handler's responses are stored and replayed (default: all but
    /// 5xx). A response not stored releases the key, so a retry runs the handler again.
    pub fn store_when(
        mut self,
        store: impl Fn(StatusCode) -> bool + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.settings).store_when = Arc::new(store);
        self
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
