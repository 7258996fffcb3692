//! Every method the sidecar serves, found by its path in the embedded descriptor sets,
//! with what it takes to carry its messages in Connect's two encodings: the proto3
//! canonical JSON mapping (by descriptor, so a method the proto gains is covered with
//! no code here) and protobuf as is.

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions,
};
use tonic::Status;

use crate::grpc::codec::malformed_body;

/// Services whose methods count in the RPC metric, as the guard counts them.
const COUNTED_PACKAGE: &str = "onceward.v1";

/// How a Connect message is written in its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/json`: the proto3 canonical JSON mapping.
    Json,
    /// `application/proto`: the protobuf wire format.
    Proto,
}

impl Encoding {
    /// The `Content-Type` of a message in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Json => "application/json",
            Encoding::Proto => "application/proto",
        }
    }
}

/// One method of a served service.
#[derive(Debug)]
pub struct Method {
    /// Its name as the RPC metric labels it; `None` outside `onceward.v1` (health).
    pub metric_label: Option<String>,
    input: MessageDescriptor,
    output: MessageDescriptor,
}

/// The method at `path` (`/onceward.v1.Onceward/Claim`), if a served unary method is there.
pub fn method(path: &str) -> Option<&'static Method> {
    static METHODS: OnceLock<HashMap<String, Method>> = OnceLock::new();
    METHODS.get_or_init(methods).get(path)
}

fn methods() -> HashMap<String, Method> {
    let mut pool = DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET)
        .expect("the embedded descriptor set is valid");
    pool.decode_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .expect("tonic-health's descriptor set is valid");
    let mut methods = HashMap::new();
    for service in pool.services() {
        let counted = service.package_name() == COUNTED_PACKAGE;
        for method in service.methods() {
            // Connect is served for unary calls only; Health.Watch streams.
            if method.is_client_streaming() || method.is_server_streaming() {
                continue;
            }
            methods.insert(
                format!("/{}/{}", service.full_name(), method.name()),
                Method {
                    metric_label: counted.then(|| method.name().to_owned()),
                    input: method.input(),
                    output: method.output(),
                },
            );
        }
    }
    methods
}

impl Method {
    /// The label the RPC metric counts this method under, if it counts it.
    pub fn label(&'static self) -> Option<&'static str> {
        self.metric_label.as_deref()
    }

    /// A request body in `encoding` as protobuf; `INVALID_ARGUMENT` for a body that is
    /// not a request of this method (undecodable, unknown fields, wrong types).
    pub fn request_to_proto(&self, encoding: Encoding, body: Bytes) -> Result<Bytes, Status> {
        match encoding {
            // tonic decodes it, answering a malformed one INVALID_ARGUMENT.
            Encoding::Proto => Ok(body),
            // An empty body is the empty message, as connect-go reads it.
            Encoding::Json if body.iter().all(u8::is_ascii_whitespace) => Ok(Bytes::new()),
            Encoding::Json => {
                let mut json = serde_json::Deserializer::from_slice(&body);
                let options = DeserializeOptions::new().deny_unknown_fields(true);
                let message = DynamicMessage::deserialize_with_options(
                    self.input.clone(),
                    &mut json,
                    &options,
                )
                .and_then(|message| json.end().map(|()| message))
                .map_err(|error| malformed_body(&error.to_string()))?;
                Ok(message.encode_to_vec().into())
            }
        }
    }

    /// A reply in protobuf as a body in `encoding`.
    pub fn reply_from_proto(&self, encoding: Encoding, reply: Bytes) -> Result<Bytes, Status> {
        match encoding {
            Encoding::Proto => Ok(reply),
            Encoding::Json => {
                let message = DynamicMessage::decode(self.output.clone(), reply)
                    .map_err(|error| Status::internal(format!("undecodable reply: {error}")))?;
                let mut json = serde_json::Serializer::new(Vec::new());
                message
                    .serialize_with_options(&mut json, &SerializeOptions::new())
                    .map_err(|error| Status::internal(format!("unencodable reply: {error}")))?;
                Ok(json.into_inner().into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ClaimRequest, ClaimResponse, Outcome, Tier};
    use tonic::Code;

    fn claim() -> &'static Method {
        method("/onceward.v1.Onceward/Claim").expect("Claim is served")
    }

    #[test]
    fn every_unary_method_of_both_descriptor_sets_is_found_and_only_ours_are_counted() {
        for name in ["Claim", "Complete", "Release", "ExtendLease", "Lookup"] {
            let found = method(&format!("/onceward.v1.Onceward/{name}")).expect(name);
            assert_eq!(found.label(), Some(name));
        }
        let health = method("/grpc.health.v1.Health/Check").expect("health");
        assert_eq!(health.label(), None);
        assert!(
            method("/grpc.health.v1.Health/Watch").is_none(),
            "streaming"
        );
        assert!(method("/onceward.v1.Onceward/Nope").is_none());
    }

    #[test]
    fn canonical_json_becomes_the_same_protobuf_as_the_generated_type() {
        let json =
            br#"{"namespace":"ns","key":"k","fingerprint":"AAE=","lease":"1.5s","attempt":2}"#;
        let proto = claim()
            .request_to_proto(Encoding::Json, Bytes::from_static(json))
            .unwrap();
        let request = ClaimRequest::decode(proto).unwrap();
        assert_eq!(request.namespace, "ns");
        assert_eq!(request.fingerprint, vec![0, 1]);
        let lease = request.lease.unwrap();
        assert_eq!((lease.seconds, lease.nanos), (1, 500_000_000));
        assert_eq!(request.attempt, 2);
    }

    #[test]
    fn unknown_fields_trailing_bytes_and_nonsense_are_invalid_arguments() {
        for body in [
            &br#"{"namespace":"ns","bogus":1}"#[..],
            br#"{"namespace":"ns"} {}"#,
            br#"{"lease":"forever"}"#,
            br#"["namespace"]"#,
            b"\xff\xfe",
        ] {
            let status = claim()
                .request_to_proto(Encoding::Json, Bytes::copy_from_slice(body))
                .unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{body:?}");
            assert!(status.message().starts_with("malformed request body: "));
        }
    }

    #[test]
    fn a_reply_is_written_with_enum_names_and_64_bit_integers_as_strings() {
        let reply = ClaimResponse {
            outcome: Outcome::Acquired as i32,
            fencing_token: 7,
            served_by: Tier::Ledger as i32,
            ..Default::default()
        };
        let json = claim()
            .reply_from_proto(Encoding::Json, reply.encode_to_vec().into())
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"outcome": "OUTCOME_ACQUIRED", "fencingToken": "7", "servedBy": "TIER_LEDGER"})
        );
    }
}
