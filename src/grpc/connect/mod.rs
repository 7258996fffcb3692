//! The other protocols of the gRPC port: Connect (unary) and gRPC-Web, for every
//! unary method of every served service, over HTTP/1.1 as over HTTP/2.
//!
//! [`ProtocolLayer`] sits in front of everything else. It tells the protocols apart
//! by `Content-Type` alone and turns each call into the gRPC call it stands for, to
//! the same services behind the same guard: authentication, deadlines, limits and
//! metrics hold for every protocol because they only ever see gRPC.
//! - `application/grpc-web…`: tonic-web translates both ways;
//! - `application/json` or `application/proto` on a `POST`: Connect ([`unary`]),
//!   with messages converted by descriptor ([`schema`]) and errors as Connect error
//!   bodies ([`error`]);
//! - anything else is gRPC and passes untouched.
//!
//! Calls in either protocol are labelled so in the RPC metric
//! ([`metrics::with_protocol`]).

mod error;
mod schema;
mod unary;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tower::{Layer, Service};

use crate::metrics;

pub use error::connect_code;

/// The protocols a call may arrive in, told by its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Grpc,
    GrpcWeb,
    Connect(schema::Encoding),
}

impl Protocol {
    fn of(request: &http::Request<Body>) -> Self {
        let Some(content_type) = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
        else {
            return Protocol::Grpc;
        };
        let media_type = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match media_type.as_str() {
            "application/json" if request.method() == http::Method::POST => {
                Protocol::Connect(schema::Encoding::Json)
            }
            "application/proto" if request.method() == http::Method::POST => {
                Protocol::Connect(schema::Encoding::Proto)
            }
            grpc_web if grpc_web.starts_with("application/grpc-web") => Protocol::GrpcWeb,
            _ => Protocol::Grpc,
        }
    }
}

/// A tower layer serving Connect and gRPC-Web in front of a gRPC service.
#[derive(Debug, Clone)]
pub struct ProtocolLayer {
    max_message_bytes: usize,
}

impl ProtocolLayer {
    /// Connect bodies are bounded by `max_message_bytes`, the transport limit (JSON
    /// bodies by a multiple of it: base64 and field names take room).
    pub fn new(max_message_bytes: usize) -> Self {
        Self { max_message_bytes }
    }
}

impl<S> Layer<S> for ProtocolLayer {
    type Service = Protocols<S>;

    fn layer(&self, inner: S) -> Protocols<S> {
        Protocols {
            inner,
            max_message_bytes: self.max_message_bytes,
        }
    }
}

/// The service [`ProtocolLayer`] builds.
#[derive(Debug, Clone)]
pub struct Protocols<S> {
    inner: S,
    max_message_bytes: usize,
}

type HttpRequest = http::Request<Body>;
type HttpResponse = http::Response<Body>;

impl<S> Service<HttpRequest> for Protocols<S>
where
    S: Service<HttpRequest, Response = HttpResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        // The clone that was polled ready serves this call; a fresh one waits for the next.
        let fresh = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, fresh);
        match Protocol::of(&request) {
            Protocol::Grpc => Box::pin(ready.call(request)),
            Protocol::GrpcWeb => {
                let mut grpc_web = tonic_web::GrpcWebLayer::new().layer(ready);
                Box::pin(metrics::with_protocol("grpc_web", grpc_web.call(request)))
            }
            Protocol::Connect(encoding) => {
                let Some(method) = schema::method(request.uri().path()) else {
                    let status = tonic::Status::unimplemented(format!(
                        "no unary method at {}",
                        request.uri().path()
                    ));
                    return Box::pin(async move { Ok(error::error_response(&status)) });
                };
                let max_message_bytes = self.max_message_bytes;
                Box::pin(metrics::with_protocol(
                    "connect",
                    unary::serve(ready, request, method, encoding, max_message_bytes),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: http::Method, content_type: &str) -> HttpRequest {
        http::Request::builder()
            .method(method)
            .uri("/onceward.v1.Onceward/Claim")
            .header("content-type", content_type)
            .body(Body::empty())
            .unwrap()
    }

    #[test]
    fn the_content_type_tells_the_protocol() {
        let post = |content_type| Protocol::of(&request(http::Method::POST, content_type));
        assert_eq!(post("application/grpc"), Protocol::Grpc);
        assert_eq!(post("application/grpc+proto"), Protocol::Grpc);
        assert_eq!(post("application/grpc-web+proto"), Protocol::GrpcWeb);
        assert_eq!(post("application/grpc-web-text"), Protocol::GrpcWeb);
        assert_eq!(
            post("application/json; charset=utf-8"),
            Protocol::Connect(schema::Encoding::Json)
        );
        assert_eq!(
            post("Application/Proto"),
            Protocol::Connect(schema::Encoding::Proto)
        );
        assert_eq!(
            Protocol::of(&request(http::Method::GET, "application/json")),
            Protocol::Grpc,
            "Connect's GET form is not served"
        );
    }
}
