//! Generates the gRPC service of `proto/onceward/v1/onceward.proto` with protox (pure
//! Rust), so a fresh machine needs no `protoc`, and writes the encoded descriptor set
//! for the reflection service.
//!
//! The messages and the client are the client crate's (`onceward_client::proto`); this
//! pass generates only the server, on top of them, with
//! `crate::grpc::codec::RequestCodec`, which answers an undecodable request
//! `INVALID_ARGUMENT` instead of `INTERNAL`. The codec applies to the server alone: a
//! client that cannot decode a reply has not sent a bad request.

use std::path::PathBuf;

/// The server codec, as the generated server names it.
const SERVER_CODEC: &str = "crate::grpc::codec::RequestCodec";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/onceward/v1/onceward.proto";
    println!("cargo:rerun-if-changed={proto}");

    let descriptors = protox::compile([proto], ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("onceward_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;

    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .codec_path(SERVER_CODEC)
        .extern_path(".onceward.v1", "::onceward_client::proto")
        .compile_fds(descriptors)?;
    Ok(())
}
