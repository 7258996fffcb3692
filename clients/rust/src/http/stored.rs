//! How an HTTP response is kept in the ledger: status, the headers safe to replay, and
//! the body, as one small protobuf message in the record's `response` bytes.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

/// A response as stored by the layer.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct StoredResponse {
    /// The HTTP status code.
    #[prost(uint32, tag = "1")]
    pub status: u32,
    /// The replayable headers, in order.
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<StoredHeader>,
    /// The body, byte for byte.
    #[prost(bytes = "vec", tag = "3")]
    pub body: Vec<u8>,
}

/// One stored header.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct StoredHeader {
    /// Lowercase header name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Raw header value.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// Why stored bytes could not be turned back into a response.
#[derive(Debug, thiserror::Error)]
#[error("the stored response is not one this layer wrote: {0}")]
pub(crate) struct CorruptResponse(String);

impl StoredResponse {
    /// Keeps `status`, `body` and the headers named in `replayed`.
    pub(crate) fn capture(
        status: StatusCode,
        headers: &HeaderMap,
        replayed: &[HeaderName],
        body: &[u8],
    ) -> Self {
        let headers = replayed
            .iter()
            .flat_map(|name| {
                headers.get_all(name).iter().map(|value| StoredHeader {
                    name: name.as_str().to_owned(),
                    value: value.as_bytes().to_vec(),
                })
            })
            .collect();
        Self {
            status: u32::from(status.as_u16()),
            headers,
            body: body.to_vec(),
        }
    }

    /// Decodes bytes written by [`prost::Message::encode_to_vec`].
    pub(crate) fn decode_from(bytes: &[u8]) -> Result<Self, CorruptResponse> {
        <Self as prost::Message>::decode(bytes).map_err(|error| CorruptResponse(error.to_string()))
    }

    /// The response to send again.
    pub(crate) fn into_response<B: From<Bytes>>(self) -> Result<Response<B>, CorruptResponse> {
        let status = u16::try_from(self.status)
            .ok()
            .and_then(|status| StatusCode::from_u16(status).ok())
            .ok_or_else(|| CorruptResponse(format!("status {}", self.status)))?;
        let mut response = Response::new(B::from(Bytes::from(self.body)));
        *response.status_mut() = status;
        for header in self.headers {
            let name = HeaderName::try_from(header.name.as_str())
                .map_err(|error| CorruptResponse(error.to_string()))?;
            let value = HeaderValue::from_bytes(&header.value)
                .map_err(|error| CorruptResponse(error.to_string()))?;
            response.headers_mut().append(name, value);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_captured_response_replays_its_status_kept_headers_and_body() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("set-cookie", HeaderValue::from_static("secret=1"));
        headers.append("x-charge-id", HeaderValue::from_static("a"));
        headers.append("x-charge-id", HeaderValue::from_static("b"));
        let kept = [
            http::header::CONTENT_TYPE,
            HeaderName::from_static("x-charge-id"),
        ];
        let stored = StoredResponse::capture(StatusCode::CREATED, &headers, &kept, b"{}");
        let bytes = prost::Message::encode_to_vec(&stored);
        let replay: Response<Bytes> = StoredResponse::decode_from(&bytes)
            .unwrap()
            .into_response()
            .unwrap();
        assert_eq!(replay.status(), StatusCode::CREATED);
        assert_eq!(replay.headers()["content-type"], "application/json");
        let ids: Vec<_> = replay.headers().get_all("x-charge-id").iter().collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(replay.headers().get("set-cookie").is_none());
        assert_eq!(replay.body().as_ref(), b"{}");
    }
}
