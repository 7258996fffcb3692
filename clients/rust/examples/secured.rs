//! The guard against a sidecar with tenants and (mutual) TLS, as SECURITY.md sets one
//! up: the tenant's bearer token from `ONCEWARD_AUTH_TOKEN`, the CA that signed the
//! sidecar's certificate, and a client certificate when the sidecar asks for one.
//!
//! ```sh
//! ONCEWARD_AUTH_TOKEN=… cargo run -p onceward-client --example secured -- \
//!     https://localhost:50051 ca.pem client.pem client.key
//! ```
//!
//! The sidecar's integration test `tests/it/client.rs` runs [`connect_secured`].

use std::path::Path;

use onceward_client::{Client, ClientConfig, Once};

/// A client for a sidecar with tenants and TLS: `token` is the tenant's bearer token,
/// `ca` the PEM file of the CA that signed the sidecar's certificate, and `identity`
/// the client certificate and key files, for a sidecar that requires mutual TLS.
pub async fn connect_secured(
    addr: &str,
    token: &str,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Client, Box<dyn std::error::Error>> {
    let mut config = ClientConfig::builder()
        .auth_token(token)
        .tls_ca_certificate(std::fs::read(ca)?);
    if let Some((cert, key)) = identity {
        config = config.tls_client_identity(std::fs::read(cert)?, std::fs::read(key)?);
    }
    Ok(Client::connect_with(addr, config.build()).await?)
}

#[allow(dead_code)] // the integration test includes this file for `connect_secured` alone
#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, ca, rest @ ..] = args.as_slice() else {
        eprintln!("usage: secured https://HOST:PORT CA.pem [CLIENT.pem CLIENT.key]");
        return std::process::ExitCode::from(2);
    };
    let identity = match rest {
        [cert, key] => Some((Path::new(cert), Path::new(key))),
        _ => None,
    };
    let token = std::env::var("ONCEWARD_AUTH_TOKEN").unwrap_or_default();
    let ran = async {
        let client = connect_secured(addr, &token, Path::new(ca), identity).await?;
        let once = client
            .once("payments", "order-1", b"", |_token| async move {
                Ok::<_, std::io::Error>(b"charged".to_vec())
            })
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(once)
    };
    match ran.await {
        Ok(Once::Ran(result)) => println!("ran: {}", String::from_utf8_lossy(&result)),
        Ok(Once::Replayed(result)) => println!("replayed: {}", String::from_utf8_lossy(&result)),
        Err(error) => {
            eprintln!("secured: {}", onceward_client::chain(&*error));
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}
