//! Every request's way in, before tonic decodes it: a deadline, the bearer token, and
//! the body, each with a status of its own instead of a held stream or `INTERNAL`.
//!
//! In order:
//! 1. **The deadline.** The whole call — authentication, body, handler — runs within
//!    `--rpc-timeout`, or the client's `grpc-timeout` if that is shorter, and is then
//!    answered `DEADLINE_EXCEEDED` (tonic's own timeout would say `CANCELLED`).
//! 2. **Authentication, on the headers.** With tenants configured, an `onceward.v1`
//!    call without a valid bearer token is refused `UNAUTHENTICATED` without waiting
//!    for its body (what arrives of it within a short grace is read and dropped, for
//!    clients that cannot read an answer while they are still sending). This only authenticates: the handler admits the caller again,
//!    charging its rate budget once, and checks the namespace.
//! 3. **The body, read whole within `--request-body-timeout`.** A stream that sends
//!    headers and no complete body is answered `DEADLINE_EXCEEDED` and freed, instead
//!    of holding its memory until the RPC deadline. Reading it here also bounds it by
//!    the transport limit (`RESOURCE_EXHAUSTED`) and checks its gRPC framing (one
//!    uncompressed message, whole: otherwise `INVALID_ARGUMENT`), the checks tonic
//!    would answer with `INTERNAL`. Unary bodies are small (bounded by the maximum
//!    message size), so holding one in memory costs no more than tonic's decoder does.
//!    Server reflection is a bidirectional stream and cannot be read whole: its request
//!    stream ends at the deadline instead.
//!
//! Refusals on `onceward.v1` methods are recorded in the RPC metric like the handlers'
//! answers (the handler of a refused call never runs, so nothing is counted twice).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf as _, Bytes};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use tokio::time::{Instant, Sleep};
use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};

use super::codec::malformed_body;
use super::error::ApiError;
use crate::domain::format_duration;
use crate::metrics;
use crate::proto::code_label;
use crate::tenants::Gatekeeper;

/// A gRPC message's header: a compression flag and a 4-byte length.
const FRAME_HEADER: usize = 5;

/// How much earlier than the client's own `grpc-timeout` the guard answers, so that its
/// `DEADLINE_EXCEEDED` is sent before tonic's timer for the same header fires and
/// answers `CANCELLED`.
const CLIENT_DEADLINE_LEAD: Duration = Duration::from_millis(1);

/// How long a request refused on its headers may take to deliver its body before the
/// refusal is sent anyway (see `Shared::drain`).
const REFUSAL_DRAIN_GRACE: Duration = Duration::from_millis(100);

/// Paths under this prefix need a token when tenants are configured; health and
/// reflection stay open (SECURITY.md).
const AUTHENTICATED_PREFIX: &str = "/onceward.v1.";

/// Streaming calls whose request cannot be read whole before the handler runs.
const STREAMING_PREFIX: &str = "/grpc.reflection.";

/// The guard's limits.
#[derive(Debug, Clone)]
pub struct GuardLimits {
    /// The server-side deadline of every call (`--rpc-timeout`).
    pub rpc_timeout: Duration,
    /// How long a request's body may take to arrive (`--request-body-timeout`).
    pub request_body_timeout: Duration,
    /// The transport limit: the largest request message.
    pub max_message_bytes: usize,
}

/// A tower layer putting [`Guard`] in front of every service.
#[derive(Clone)]
pub struct GuardLayer {
    shared: Arc<Shared>,
}

struct Shared {
    gatekeeper: Arc<Gatekeeper>,
    limits: GuardLimits,
    slow_bodies: super::transport::Throttle,
}

impl GuardLayer {
    /// Guards requests with `limits`, authenticating through `gatekeeper`.
    pub fn new(gatekeeper: Arc<Gatekeeper>, limits: GuardLimits) -> Self {
        Self {
            shared: Arc::new(Shared {
                gatekeeper,
                limits,
                slow_bodies: Default::default(),
            }),
        }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`GuardLayer`] builds.
#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    shared: Arc<Shared>,
}

type HttpRequest = http::Request<Body>;
type HttpResponse = http::Response<Body>;

impl<S> Service<HttpRequest> for Guard<S>
where
    S: Service<HttpRequest, Response = HttpResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        // Taken now, before tonic's own timer for a client deadline starts (see
        // CLIENT_DEADLINE_LEAD).
        let started = Instant::now();
        let budget = match client_timeout(request.headers()) {
            Some(client) => self
                .shared
                .limits
                .rpc_timeout
                .min(client.saturating_sub(CLIENT_DEADLINE_LEAD)),
            None => self.shared.limits.rpc_timeout,
        };
        // The clone that was polled ready serves this call; a fresh one waits for the next.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        let shared = self.shared.clone();
        Box::pin(async move {
            let method = method_label(request.uri().path());
            let deadline = started + budget;
            match tokio::time::timeout_at(deadline, shared.serve(request, ready, deadline)).await {
                Ok(Ok(served)) => served,
                Ok(Err(refusal)) => Ok(shared.refuse(method, started, refusal)),
                Err(_) => {
                    let message = format!("deadline exceeded after {}", format_duration(budget));
                    Ok(shared.refuse(method, started, Status::deadline_exceeded(message)))
                }
            }
        })
    }
}

impl Shared {
    /// The inner service's answer, or (`Err`) the status the guard refuses with.
    async fn serve<S>(
        &self,
        request: HttpRequest,
        mut inner: S,
        deadline: Instant,
    ) -> Result<Result<HttpResponse, S::Error>, Status>
    where
        S: Service<HttpRequest, Response = HttpResponse>,
    {
        let path = request.uri().path();
        if path.starts_with(AUTHENTICATED_PREFIX)
            && let Err(refusal) = self.gatekeeper.authenticate(bearer(request.headers()))
        {
            let status = Status::from(ApiError::from(refusal));
            self.drain(request.into_body()).await;
            return Err(status);
        }
        let path = request.uri().path();
        let request = if path.starts_with(STREAMING_PREFIX) {
            request.map(|body| Body::new(EndsAt::new(body, deadline)))
        } else {
            self.read_body(request).await?
        };
        Ok(inner.call(request).await)
    }

    /// Reads what arrives of a refused request's body within [`REFUSAL_DRAIN_GRACE`].
    /// Node's HTTP clients (so the Connect and gRPC clients for Node) report an answer
    /// that arrives before they finished sending their body as a failed write
    /// (`EPIPE`), hiding the status; a unary body is small and usually already sent.
    /// A body that does not come is not waited for past the grace.
    async fn drain(&self, body: Body) {
        let max_body = self.limits.max_message_bytes + FRAME_HEADER;
        let reading = Limited::new(body, max_body).collect();
        let _ = tokio::time::timeout(REFUSAL_DRAIN_GRACE, reading).await;
    }

    /// The request with its body read whole and its framing checked.
    async fn read_body(&self, request: HttpRequest) -> Result<HttpRequest, Status> {
        let limits = &self.limits;
        let (parts, body) = request.into_parts();
        let max_body = limits.max_message_bytes + FRAME_HEADER;
        let reading = Limited::new(body, max_body).collect();
        let body = match tokio::time::timeout(limits.request_body_timeout, reading).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(error)) if error.is::<LengthLimitError>() => {
                return Err(Status::resource_exhausted(format!(
                    "request message over the transport limit of {} bytes",
                    limits.max_message_bytes
                )));
            }
            // A body translated from another protocol that is no request (`connect`).
            Ok(Err(error)) if let Some(status) = translation_error(&*error) => {
                return Err(status);
            }
            // The client reset the stream or the connection broke: nobody will read
            // the answer, which only needs to be no INTERNAL.
            Ok(Err(_)) => return Err(Status::cancelled("the request body was cut off")),
            Err(_) => {
                if let Some(times) = self.slow_bodies.hit() {
                    tracing::warn!(
                        times,
                        "refused requests whose body did not arrive within --request-body-timeout"
                    );
                }
                return Err(Status::deadline_exceeded(format!(
                    "request body not received within {}",
                    format_duration(limits.request_body_timeout)
                )));
            }
        };
        check_framing(&body, parts.headers.contains_key("grpc-encoding"))?;
        Ok(HttpRequest::from_parts(parts, Body::new(Full::new(body))))
    }

    /// Records a refusal of an `onceward.v1` method and turns it into a response.
    fn refuse(
        &self,
        method: Option<&'static str>,
        started: Instant,
        status: Status,
    ) -> HttpResponse {
        if let Some(method) = method {
            metrics::rpc_finished(method, code_label(status.code()), started.elapsed());
        }
        status.into_http()
    }
}

/// The status of a request body that failed to translate from Connect or gRPC-Web:
/// the caller's mistake, `INVALID_ARGUMENT` or `RESOURCE_EXHAUSTED`.
fn translation_error(error: &(dyn std::error::Error + 'static)) -> Option<Status> {
    let status = error.downcast_ref::<Status>()?;
    matches!(
        status.code(),
        tonic::Code::InvalidArgument | tonic::Code::ResourceExhausted
    )
    .then(|| Status::new(status.code(), status.message()))
}

/// The token of an `authorization: Bearer …` header, if there is one.
pub(crate) fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Checks that a unary request body is one whole gRPC message: the framing errors
/// tonic would answer with `INTERNAL` are the caller's, so `INVALID_ARGUMENT`. A
/// compressed message with a `grpc-encoding` is left to tonic, which refuses the
/// encoding (`UNIMPLEMENTED`).
fn check_framing(body: &Bytes, encoded: bool) -> Result<(), Status> {
    let mut header = body.as_ref();
    if header.len() < FRAME_HEADER {
        return Err(malformed_body(
            "no gRPC message (a 5-byte header and the message expected)",
        ));
    }
    match header.get_u8() {
        0 => {}
        1 if encoded => {}
        1 => return Err(malformed_body("compressed message without grpc-encoding")),
        flag => return Err(malformed_body(&format!("invalid compression flag {flag}"))),
    }
    let declared = header.get_u32() as usize;
    let arrived = body.len() - FRAME_HEADER;
    if declared > arrived {
        return Err(malformed_body(&format!(
            "message cut short ({arrived} of {declared} bytes)"
        )));
    }
    if declared < arrived {
        return Err(malformed_body("more than one message in a unary call"));
    }
    Ok(())
}

/// The client's `grpc-timeout`, if it sent a valid one (gRPC over HTTP/2: at most
/// eight digits and a unit).
fn client_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The metric label of a generated method's path (`/onceward.v1.Onceward/Claim` →
/// `Claim`); `None` for paths outside `onceward.v1` (health, reflection, unknown).
fn method_label(path: &str) -> Option<&'static str> {
    // Built once from the descriptor set, so every RPC the proto gains is labelled.
    static METHODS: OnceLock<HashMap<String, String>> = OnceLock::new();
    let methods = METHODS.get_or_init(|| {
        let set = <prost_types::FileDescriptorSet as prost::Message>::decode(
            crate::proto::FILE_DESCRIPTOR_SET,
        )
        .expect("the embedded descriptor set decodes");
        let mut methods = HashMap::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    methods.insert(
                        format!("/{}.{}/{}", file.package(), service.name(), method.name()),
                        method.name().to_owned(),
                    );
                }
            }
        }
        methods
    });
    methods.get(path).map(String::as_str)
}

/// A streaming request body that ends with `DEADLINE_EXCEEDED` at the call's deadline,
/// so a stream cannot be held open for ever.
struct EndsAt {
    body: Body,
    deadline: Pin<Box<Sleep>>,
}

impl EndsAt {
    fn new(body: Body, deadline: Instant) -> Self {
        Self {
            body,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

impl http_body::Body for EndsAt {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Status::deadline_exceeded(
                "the stream reached its deadline",
            )))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn framed(flag: u8, declared: u32, message: &[u8]) -> Bytes {
        let mut body = vec![flag];
        body.extend_from_slice(&declared.to_be_bytes());
        body.extend_from_slice(message);
        body.into()
    }

    #[test]
    fn one_whole_uncompressed_message_is_well_framed() {
        assert!(check_framing(&framed(0, 3, b"abc"), false).is_ok());
        assert!(check_framing(&framed(0, 0, b""), false).is_ok());
        assert!(check_framing(&framed(1, 3, b"abc"), true).is_ok());
    }

    #[test]
    fn every_framing_error_is_invalid_argument() {
        for body in [
            Bytes::new(),
            Bytes::from_static(&[0, 0]),
            framed(2, 3, b"abc"),
            framed(1, 3, b"abc"),
            framed(0, 9, b"abc"),
            framed(0, 1, b"abc"),
        ] {
            let status = check_framing(&body, false).unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{body:?}");
            assert!(status.message().starts_with("malformed request body: "));
        }
    }

    #[test]
    fn a_client_deadline_is_read_in_every_unit_and_nonsense_is_ignored() {
        let timeout = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("grpc-timeout", value.parse().unwrap());
            client_timeout(&headers)
        };
        assert_eq!(timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        assert_eq!(timeout("123456789S"), None, "at most eight digits");
        assert_eq!(timeout("5x"), None);
        assert_eq!(timeout("S"), None);
    }

    #[test]
    fn methods_are_labelled_by_name_and_other_paths_not_at_all() {
        assert_eq!(method_label("/onceward.v1.Onceward/Claim"), Some("Claim"));
        assert_eq!(
            method_label("/onceward.v1.Onceward/ExtendLease"),
            Some("ExtendLease")
        );
        assert_eq!(method_label("/grpc.health.v1.Health/Check"), None);
        assert_eq!(method_label("/onceward.v1.Onceward/Nope"), None);
    }

    #[test]
    fn only_a_bearer_scheme_carries_a_token() {
        let bearer_of = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("authorization", value.parse().unwrap());
            bearer(&headers).map(str::to_owned)
        };
        assert_eq!(bearer_of("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(bearer_of("bearer  abc ").as_deref(), Some("abc"));
        assert_eq!(bearer_of("Basic abc"), None);
        assert_eq!(bearer_of("Bearer"), None);
    }
}
