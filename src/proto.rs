//! The `onceward.v1` API: the messages, the client and the wire helpers are the client
//! crate's ([`onceward_client::proto`], re-exported here); this module adds the
//! generated service, which decodes requests with [`crate::grpc::codec::RequestCodec`],
//! and the descriptor set for reflection.

pub use ::onceward_client::proto::*;

#[allow(missing_docs, clippy::all)]
mod service {
    tonic::include_proto!("onceward.v1");
}

pub use service::{admin_server, onceward_server};

/// The encoded descriptor set, for the reflection service.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/onceward_descriptor.bin"));
