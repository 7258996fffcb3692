//! The codec of onceward's generated servers: prost's, except that a request body
//! that does not decode (bytes that are no protobuf, invalid UTF-8 in a `string`
//! field) is the caller's mistake and answered `INVALID_ARGUMENT`, where prost's
//! codec says `INTERNAL`. Clients keep prost's codec (see `build.rs`).

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstEncoder};

/// Longest decoder explanation passed on to the caller, so a status message stays a
/// line, not a dump.
const MAX_REASON_CHARS: usize = 160;

/// Encodes replies as prost does; decodes requests with [`RequestDecoder`].
#[derive(Debug)]
pub struct RequestCodec<T, U> {
    prost: ProstCodec<T, U>,
}

impl<T, U> Default for RequestCodec<T, U> {
    fn default() -> Self {
        Self {
            prost: ProstCodec::default(),
        }
    }
}

impl<T, U> Codec for RequestCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.prost.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder(PhantomData)
    }
}

/// Decodes a request message; a decoding error is `INVALID_ARGUMENT`.
#[derive(Debug)]
pub struct RequestDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for RequestDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(malformed)
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// `INVALID_ARGUMENT` naming where decoding stopped, e.g. `malformed request body:
/// ClaimRequest.key: invalid string value: data is not UTF-8 encoded`.
fn malformed(error: prost::DecodeError) -> Status {
    let text = error.to_string();
    let reason = text
        .strip_prefix("failed to decode Protobuf message: ")
        .unwrap_or(&text);
    malformed_body(reason)
}

/// The one wording of a request body onceward could not read.
pub(crate) fn malformed_body(reason: &str) -> Status {
    let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
    Status::invalid_argument(format!("malformed request body: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ClaimRequest;
    use tonic::Code;

    fn decode(bytes: &[u8]) -> Result<ClaimRequest, Status> {
        ClaimRequest::decode(bytes).map_err(malformed)
    }

    #[test]
    fn invalid_utf8_in_a_string_field_is_invalid_argument_naming_the_field() {
        // Field 2 (key), length 2, bytes that are no UTF-8.
        let status = decode(&[0x12, 0x02, 0xff, 0xfe]).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().starts_with("malformed request body: ")
                && status.message().contains("ClaimRequest.key")
                && !status
                    .message()
                    .contains("failed to decode Protobuf message"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn bytes_that_are_no_protobuf_are_invalid_argument_in_a_short_message() {
        let status = decode(&[0xff; 40]).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().len() < 200, "{}", status.message());
    }
}
