//! The middleware itself: one request through Claim → handler → Complete/Release.
//!
//! | sidecar says | client gets |
//! |---|---|
//! | acquired | the handler's response; stored unless 5xx (then released; `store_when`) |
//! | in progress | 409 with `Retry-After` |
//! | completed | the stored response with `Idempotent-Replayed: true` |
//! | fingerprint mismatch | 422 (`mismatch_status`) |
//! | unreachable | 503 with `Retry-After` (the handler does not run: fail closed) |
//! | refuses this service (no or a wrong bearer token, a namespace not granted) or its TLS | 500, logged as an error (the handler does not run; retrying will not help) |

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use sha2::{Digest as _, Sha256};
use tower::Service;

use super::layer::Settings;
use super::stored::StoredResponse;
use crate::{Claim, Client, ClientError};

/// The request header carrying the key, per the draft.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on every replayed response.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// A boxed error, as tower services commonly use.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The service [`IdempotencyLayer`](super::IdempotencyLayer) wraps handlers in.
#[derive(Debug, Clone)]
pub struct Idempotent<S> {
    inner: S,
    client: Client,
    settings: Arc<Settings>,
}

impl<S> Idempotent<S> {
    pub(crate) fn new(inner: S, client: Client, settings: Arc<Settings>) -> Self {
        Self {
            inner,
            client,
            settings,
        }
    }
}

impl<S, B> Service<Request<Body>> for Idempotent<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone is the one not yet polled ready; the ready one goes into the future
        // (tower's documented pattern for services called from a boxed future).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let exchange = Exchange {
            inner,
            client: self.client.clone(),
            settings: self.settings.clone(),
        };
        Box::pin(async move { Ok(exchange.handle(request).await) })
    }
}

/// Everything one request needs, moved into its future.
struct Exchange<S> {
    inner: S,
    client: Client,
    settings: Arc<Settings>,
}

impl<S, B> Exchange<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    async fn handle(mut self, request: Request<Body>) -> Response<Body> {
        if request.method() != Method::POST && request.method() != Method::PATCH {
            return self.pass_through(request).await;
        }
        let sent = match idempotency_key(&request) {
            Ok(sent) => sent,
            Err(reason) => return problem(StatusCode::BAD_REQUEST, reason),
        };
        if sent.is_none() && self.settings.key_from_request.is_none() {
            if !self.settings.key_required {
                return self.pass_through(request).await;
            }
            return problem(StatusCode::BAD_REQUEST, "Idempotency-Key is required");
        }

        let (parts, body) = request.into_parts();
        let body = match axum::body::to_bytes(body, self.settings.max_body_bytes).await {
            Ok(body) => body,
            Err(_) => {
                return problem(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request body too large to fingerprint",
                );
            }
        };
        let made = || {
            let make = self.settings.key_from_request.as_ref()?;
            make(&parts, &body).filter(|key| !key.is_empty())
        };
        let key = match sent.or_else(made) {
            Some(key) => key,
            None if !self.settings.key_required => {
                let request = Request::from_parts(parts, Body::from(body));
                return self.pass_through(request).await;
            }
            None => return problem(StatusCode::BAD_REQUEST, "Idempotency-Key is required"),
        };
        let key = match &self.settings.scope {
            Some(scope) => scoped_key(&scope(&parts), &key),
            None => key,
        };
        let fingerprint = fingerprint(&parts.method, &parts.uri, &body);

        let lease = match self
            .client
            .claim(&self.settings.namespace, &key, &fingerprint)
            .await
        {
            Ok(Claim::Acquired(lease)) => lease,
            Ok(Claim::InProgress { retry_after }) => {
                let mut response = problem(
                    StatusCode::CONFLICT,
                    "a request with this Idempotency-Key is still being processed",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, retry_after_seconds(retry_after));
                return response;
            }
            Ok(Claim::Completed { response }) => return replay(&response),
            Ok(Claim::Blocked { reason }) => {
                return problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("blocked by the killswitch: {reason}"),
                );
            }
            Ok(Claim::OverBudget {
                reason,
                retry_after,
            }) => {
                let mut response = problem(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("over budget ({reason})"),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, retry_after_seconds(retry_after));
                return response;
            }
            Ok(Claim::FingerprintMismatch) => {
                return problem(
                    self.settings.mismatch_status,
                    "this Idempotency-Key was used with a different request",
                );
            }
            Err(ClientError::Rejected { message, .. }) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    format!("Idempotency-Key: {message}"),
                );
            }
            // The service's own configuration is wrong, not the request: its operator
            // must fix the token or TLS settings; the caller only learns that it failed.
            Err(error @ (ClientError::Unauthorized { .. } | ClientError::Config { .. })) => {
                tracing::error!(%error, "the idempotency sidecar refuses this service; refusing the request");
                return problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "idempotency check misconfigured",
                );
            }
            Err(error) => {
                tracing::warn!(%error, "idempotency sidecar unavailable; refusing the request");
                let mut response = problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "idempotency check unavailable; retry",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return response;
            }
        };

        let request = Request::from_parts(parts, Body::from(body));
        let handled = lease
            .keep_alive(async {
                let Ok(response) = self.inner.call(request).await;
                let (parts, body) = response.into_parts();
                // Only the message crosses the next await: the body's error type need
                // not be Send.
                let body = match body.collect().await {
                    Ok(body) => Ok(body.to_bytes()),
                    Err(error) => Err(error.into().to_string()),
                };
                (parts, body)
            })
            .await;
        let (parts, body) = match handled {
            (parts, Ok(body)) => (parts, body),
            (_, Err(error)) => {
                tracing::warn!(%error, "the handler's body failed; releasing the key");
                release(lease).await;
                return problem(StatusCode::INTERNAL_SERVER_ERROR, "the response failed");
            }
        };

        if !(self.settings.store_when)(parts.status) {
            // Not an answer to keep (by default a 5xx: the operation did not reliably
            // happen): let a retry run it.
            release(lease).await;
        } else {
            let stored = StoredResponse::capture(
                parts.status,
                &parts.headers,
                &self.settings.replayed_headers,
                &body,
            );
            if let Err(error) = lease
                .complete(&prost::Message::encode_to_vec(&stored))
                .await
            {
                // This caller still gets the real response; only duplicates are affected
                // (they may run the handler again once the lease is gone).
                tracing::error!(%error, key, "the response was not stored");
            }
        }
        Response::from_parts(parts, Body::from(body))
    }

    async fn pass_through(mut self, request: Request<Body>) -> Response<Body> {
        let Ok(response) = self.inner.call(request).await;
        response.map(Body::new)
    }
}

/// The key from the header: an sf-string per the draft (`"abc"`), or bare as many
/// clients send it.
fn idempotency_key(request: &Request<Body>) -> Result<Option<String>, &'static str> {
    let Some(value) = request.headers().get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| "Idempotency-Key must be visible ASCII")?;
    let key = text
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(text);
    if key.is_empty() {
        return Err("Idempotency-Key must not be empty");
    }
    Ok(Some(key.to_owned()))
}

/// The key a scoped request claims: the scope's length, the scope and the key, so no
/// two (scope, key) pairs make the same key; one longer than a key may be is replaced
/// by its SHA-256.
fn scoped_key(scope: &str, key: &str) -> String {
    let composite = format!("{}:{scope}:{key}", scope.len());
    if composite.len() <= crate::IdempotencyKey::MAX_LEN && !composite.chars().any(char::is_control)
    {
        return composite;
    }
    format!("sha256:{}", hex_digest(composite.as_bytes()))
}

fn hex_digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// SHA-256 over method, path (with query) and body, NUL-separated so no two different
/// requests concatenate to the same bytes.
fn fingerprint(method: &Method, uri: &http::Uri, body: &[u8]) -> Vec<u8> {
    let target = uri.path_and_query().map_or("/", |target| target.as_str());
    let mut hasher = Sha256::new();
    hasher.update(method.as_str());
    hasher.update([0]);
    hasher.update(target);
    hasher.update([0]);
    hasher.update(body);
    hasher.finalize().to_vec()
}

/// Whole seconds, rounded up: `Retry-After` cannot say less than a second, and a client
/// that comes back early only gets another 409.
fn retry_after_seconds(retry_after: Duration) -> HeaderValue {
    let mut seconds = retry_after.as_secs();
    if retry_after.subsec_nanos() > 0 || seconds == 0 {
        seconds += 1;
    }
    HeaderValue::from(seconds)
}

fn replay(stored: &[u8]) -> Response<Body> {
    match StoredResponse::decode_from(stored).and_then(StoredResponse::into_response::<Body>) {
        Ok(mut response) => {
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
            response
        }
        Err(error) => {
            tracing::error!(%error, "cannot replay a stored response");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the stored response cannot be replayed",
            )
        }
    }
}

async fn release(lease: crate::Lease) {
    match lease.release().await {
        Ok(()) | Err(ClientError::LeaseLost) => {}
        Err(error) => {
            tracing::warn!(%error, "could not release; the key frees when the lease runs out")
        }
    }
}

/// An RFC 9457 problem document, as the draft suggests for its error responses.
fn problem(status: StatusCode, detail: impl Into<String>) -> Response<Body> {
    let document = format!(
        r#"{{"type":"about:blank","title":"{}","status":{},"detail":{}}}"#,
        status.canonical_reason().unwrap_or(""),
        status.as_u16(),
        json_string(&detail.into()),
    );
    let mut response = Response::new(Body::from(document));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::from_millis(300)), "1");
        assert_eq!(retry_after_seconds(Duration::from_secs(2)), "2");
        assert_eq!(retry_after_seconds(Duration::from_millis(2001)), "3");
        assert_eq!(retry_after_seconds(Duration::ZERO), "1");
    }

    #[test]
    fn the_fingerprint_separates_method_path_and_body() {
        let post = Method::POST;
        let a = fingerprint(&post, &"/charge".parse().unwrap(), b"x");
        assert_eq!(a, fingerprint(&post, &"/charge".parse().unwrap(), b"x"));
        assert_ne!(a, fingerprint(&post, &"/charg".parse().unwrap(), b"ex"));
        assert_ne!(
            a,
            fingerprint(&Method::PATCH, &"/charge".parse().unwrap(), b"x")
        );
    }

    #[test]
    fn scoped_keys_never_collide_and_stay_within_the_key_limit() {
        assert_eq!(scoped_key("alice", "k"), "5:alice:k");
        assert_ne!(scoped_key("a:b", "c"), scoped_key("a", "b:c"));
        let long = scoped_key(&"u".repeat(300), "k");
        assert!(long.starts_with("sha256:") && long.len() == 71, "{long}");
        assert!(scoped_key("tab\there", "k").starts_with("sha256:"));
    }

    #[test]
    fn a_quoted_key_is_unquoted() {
        let request = Request::builder()
            .header(IDEMPOTENCY_KEY, "\"abc\"")
            .body(Body::empty())
            .unwrap();
        assert_eq!(idempotency_key(&request), Ok(Some("abc".to_owned())));
    }
}
