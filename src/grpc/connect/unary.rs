//! One Connect unary call, served as the gRPC call it stands for.
//!
//! The request keeps its path and headers (so its bearer token) and becomes
//! `application/grpc`: `connect-timeout-ms` becomes `grpc-timeout`, and the body is
//! re-encoded as one gRPC message *as the guard reads it* ([`ConnectBody`]). So the
//! guard still authenticates on the headers before a byte of the body is read, and
//! still bounds the body's size and arrival time; a body that is no request of the
//! method ends as `INVALID_ARGUMENT` there. The gRPC answer, read whole (a unary reply
//! is one small message), becomes the Connect one: the message in the request's
//! encoding under `200`, or a Connect error body.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, header};
use http_body::Frame;
use http_body_util::{BodyExt as _, Full};
use tonic::Status;
use tonic::body::Body;
use tower::Service;

use super::error::error_response;
use super::schema::{Encoding, Method};
use crate::metrics;
use crate::proto::code_label;

/// The longest `grpc-timeout` value: eight digits.
const MAX_TIMEOUT_MS: u64 = 99_999_999;

/// How much larger than the message a JSON body may be (base64 alone is 4/3).
const JSON_EXPANSION: usize = 2;

/// Serves a Connect unary `request` for `method` through `inner`, a gRPC service.
pub async fn serve<S>(
    mut inner: S,
    request: http::Request<Body>,
    method: &'static Method,
    encoding: Encoding,
    max_message_bytes: usize,
) -> Result<http::Response<Body>, S::Error>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
{
    let started = Instant::now();
    let (mut parts, body) = request.into_parts();
    if let Err(status) = grpc_headers(&mut parts.headers) {
        if let Some(label) = method.label() {
            metrics::rpc_finished(label, code_label(status.code()), started.elapsed());
        }
        return Ok(error_response(&status));
    }
    let limit = match encoding {
        Encoding::Json => max_message_bytes.saturating_mul(JSON_EXPANSION),
        Encoding::Proto => max_message_bytes,
    };
    let body = ConnectBody {
        body,
        read: BytesMut::new(),
        limit,
        method,
        encoding,
        done: false,
    };
    let request = http::Request::from_parts(parts, Body::new(body));
    let response = inner.call(request).await?;
    Ok(connect_response(response, method, encoding).await)
}

/// Turns Connect request headers into gRPC ones; refuses what Connect says to refuse.
fn grpc_headers(headers: &mut HeaderMap) -> Result<(), Status> {
    if let Some(version) = headers.get("connect-protocol-version")
        && version != "1"
    {
        return Err(Status::invalid_argument(
            "connect-protocol-version must be 1",
        ));
    }
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING)
        && encoding != "identity"
    {
        return Err(Status::unimplemented(
            "compressed requests are not supported (send content-encoding identity)",
        ));
    }
    let timeout = match headers.get("connect-timeout-ms") {
        Some(value) => {
            let millis: u64 = value
                .to_str()
                .ok()
                .and_then(|value| value.parse().ok())
                .filter(|_| value.len() <= 10)
                .ok_or_else(|| {
                    Status::invalid_argument("connect-timeout-ms must be at most 10 digits")
                })?;
            Some(millis.min(MAX_TIMEOUT_MS))
        }
        None => None,
    };
    for name in [
        header::CONTENT_LENGTH,
        header::CONTENT_ENCODING,
        header::ACCEPT_ENCODING,
    ] {
        headers.remove(name);
    }
    headers.remove("connect-timeout-ms");
    headers.remove("connect-protocol-version");
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    if let Some(millis) = timeout {
        let value = HeaderValue::try_from(format!("{millis}m")).expect("digits and a unit");
        headers.insert("grpc-timeout", value);
    }
    Ok(())
}

/// The Connect response for a gRPC one.
async fn connect_response(
    response: http::Response<Body>,
    method: &Method,
    encoding: Encoding,
) -> http::Response<Body> {
    let (parts, body) = response.into_parts();
    // A status in the headers is a trailers-only answer: no message follows.
    if let Some(status) = Status::from_header_map(&parts.headers)
        && status.code() != tonic::Code::Ok
    {
        return error_response(&status);
    }
    let collected = match body.collect().await {
        Ok(collected) => collected,
        Err(status) => return error_response(&status),
    };
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let status = Status::from_header_map(&trailers)
        .unwrap_or_else(|| Status::internal("the reply carried no gRPC status"));
    if status.code() != tonic::Code::Ok {
        return error_response(&status);
    }
    let reply = unframe(collected.to_bytes())
        .and_then(|message| method.reply_from_proto(encoding, message));
    match reply {
        Ok(message) => {
            let mut response = http::Response::new(Body::new(Full::new(message)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(encoding.content_type()),
            );
            response
        }
        Err(status) => {
            tracing::error!(%status, "cannot turn a gRPC reply into a Connect one");
            error_response(&Status::internal("cannot encode the reply"))
        }
    }
}

/// The message of a gRPC body holding one uncompressed message.
fn unframe(mut body: Bytes) -> Result<Bytes, Status> {
    if body.len() < 5 || body[0] != 0 {
        return Err(Status::internal(
            "the reply is not one uncompressed message",
        ));
    }
    body.advance(1);
    let length = body.get_u32() as usize;
    if length != body.len() {
        return Err(Status::internal(
            "the reply's length does not match its frame",
        ));
    }
    Ok(body)
}

/// A Connect request body that reads as the gRPC message it stands for: the whole
/// body first, then one frame. Its errors are statuses the guard answers with.
struct ConnectBody {
    body: Body,
    read: BytesMut,
    limit: usize,
    method: &'static Method,
    encoding: Encoding,
    done: bool,
}

impl http_body::Body for ConnectBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match std::task::ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if this.read.len() + data.len() > this.limit {
                            this.done = true;
                            return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                                "request body over the limit of {} bytes",
                                this.limit
                            )))));
                        }
                        this.read.extend_from_slice(&data);
                    }
                }
                Some(Err(status)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(status)));
                }
                None => {
                    this.done = true;
                    let body = std::mem::take(&mut this.read).freeze();
                    let message = this.method.request_to_proto(this.encoding, body);
                    return Poll::Ready(Some(message.map(|message| Frame::data(frame(message)))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// `message` as one uncompressed gRPC frame.
fn frame(message: Bytes) -> Bytes {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    framed.extend_from_slice(&message);
    framed.freeze()
}
