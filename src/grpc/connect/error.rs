//! A gRPC status as a Connect error: a JSON body `{"code": …, "message": …}` under the
//! HTTP status the Connect protocol gives each code.

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body_util::Full;
use tonic::body::Body;
use tonic::{Code, Status};

/// The Connect name of a code (`failed_precondition`) and its HTTP status.
pub fn connect_code(code: Code) -> (&'static str, StatusCode) {
    match code {
        Code::Ok => ("ok", StatusCode::OK),
        Code::Cancelled => ("canceled", StatusCode::from_u16(499).expect("valid")),
        Code::Unknown => ("unknown", StatusCode::INTERNAL_SERVER_ERROR),
        Code::InvalidArgument => ("invalid_argument", StatusCode::BAD_REQUEST),
        Code::DeadlineExceeded => ("deadline_exceeded", StatusCode::GATEWAY_TIMEOUT),
        Code::NotFound => ("not_found", StatusCode::NOT_FOUND),
        Code::AlreadyExists => ("already_exists", StatusCode::CONFLICT),
        Code::PermissionDenied => ("permission_denied", StatusCode::FORBIDDEN),
        Code::ResourceExhausted => ("resource_exhausted", StatusCode::TOO_MANY_REQUESTS),
        Code::FailedPrecondition => ("failed_precondition", StatusCode::BAD_REQUEST),
        Code::Aborted => ("aborted", StatusCode::CONFLICT),
        Code::OutOfRange => ("out_of_range", StatusCode::BAD_REQUEST),
        Code::Unimplemented => ("unimplemented", StatusCode::NOT_IMPLEMENTED),
        Code::Internal => ("internal", StatusCode::INTERNAL_SERVER_ERROR),
        Code::Unavailable => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
        Code::DataLoss => ("data_loss", StatusCode::INTERNAL_SERVER_ERROR),
        Code::Unauthenticated => ("unauthenticated", StatusCode::UNAUTHORIZED),
    }
}

/// The Connect error response for `status` (never called with `OK`).
pub fn error_response(status: &Status) -> http::Response<Body> {
    let (code, http_status) = connect_code(status.code());
    let mut body = serde_json::json!({ "code": code });
    if !status.message().is_empty() {
        body["message"] = status.message().into();
    }
    let body = Bytes::from(body.to_string());
    let mut response = http::Response::new(Body::new(Full::new(body)));
    *response.status_mut() = http_status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    #[test]
    fn the_codes_onceward_answers_map_to_connects_http_statuses() {
        let status = |code| connect_code(code).1.as_u16();
        assert_eq!(status(Code::InvalidArgument), 400);
        assert_eq!(status(Code::FailedPrecondition), 400);
        assert_eq!(status(Code::Unauthenticated), 401);
        assert_eq!(status(Code::PermissionDenied), 403);
        assert_eq!(status(Code::ResourceExhausted), 429);
        assert_eq!(status(Code::Unavailable), 503);
        assert_eq!(status(Code::DeadlineExceeded), 504);
        assert_eq!(status(Code::Unimplemented), 501);
        assert_eq!(status(Code::Cancelled), 499);
    }

    #[tokio::test]
    async fn an_error_body_names_the_code_and_keeps_the_message() {
        let response = error_response(&Status::failed_precondition("not yours"));
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"code": "failed_precondition", "message": "not yours"})
        );
    }
}
