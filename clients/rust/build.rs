//! Compiles the sidecar's API, `proto/onceward/v1/onceward.proto` at the root of the
//! repository, with protox (pure Rust), so a fresh machine needs no `protoc`: the
//! messages and the gRPC client, with prost's own codec. The server crate generates
//! only its service, on top of these messages.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = "../../proto";
    let proto = format!("{root}/onceward/v1/onceward.proto");
    println!("cargo:rerun-if-changed={proto}");

    let descriptors = protox::compile([&proto], [root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(descriptors)?;
    Ok(())
}
