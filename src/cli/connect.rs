//! Reaching the sidecar: the flags every client command shares (where, the bearer
//! token, TLS, how to print), the credentials read from files and the environment,
//! and a connection made through the client crate's one way to connect
//! ([`ClientConfig::connect_channel`]).
//!
//! The token is never a flag of its own: a flag's value shows in `ps` and in shell
//! history. It comes from a file (`--auth-token-file`) or from `ONCEWARD_AUTH_TOKEN`,
//! and no message ever contains it.
//!
//! A connection that fails is unavailable (exit 5: nothing answered, a retry may
//! succeed) or misconfigured (exit 7: an address, a file, a token or a TLS handshake
//! that fails the same way every time).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use onceward_client::{AuthorizedChannel, ClientConfig, ClientError};
use tonic::Code;

use super::exit::{Exit, Failure};
use crate::proto::onceward_client::OncewardClient;

/// How long to wait for the TCP (and TLS) handshake before reporting UNAVAILABLE: a
/// script should not hang on an address that swallows packets.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The environment variable holding the bearer token. Read here rather than by clap,
/// which reads a variable only as the fallback of a flag, and a token flag is what this
/// avoids.
const AUTH_TOKEN_ENV: &str = "ONCEWARD_AUTH_TOKEN";

/// Flags every client command takes.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// The sidecar's gRPC address: http://HOST:PORT, or https://HOST:PORT for a sidecar
    /// serving TLS (http:// is assumed without a scheme).
    #[arg(long, env = "ONCEWARD_ADDR", default_value = "http://127.0.0.1:50051")]
    pub addr: String,

    /// Print exactly one JSON object on stdout instead of the human-readable line.
    #[arg(long)]
    pub json: bool,

    /// Read the bearer token for a sidecar with tenants from FILE (a trailing newline
    /// is ignored). Without this flag the token is taken from the environment variable
    /// ONCEWARD_AUTH_TOKEN; when both are given, this file wins. The token is never
    /// printed.
    #[arg(long, value_name = "FILE", help_heading = "Authentication and TLS")]
    pub auth_token_file: Option<PathBuf>,

    /// For an https:// address: trust the CA certificate in this PEM file (the CA that
    /// signed the sidecar's --tls-cert) instead of the system's roots.
    #[arg(long, value_name = "FILE", help_heading = "Authentication and TLS")]
    pub ca_cert: Option<PathBuf>,

    /// For a sidecar that requires client certificates (mutual TLS): present this PEM
    /// certificate (chain); needs --client-key.
    #[arg(
        long,
        value_name = "FILE",
        requires = "client_key",
        help_heading = "Authentication and TLS"
    )]
    pub client_cert: Option<PathBuf>,

    /// The PEM private key of --client-cert.
    #[arg(
        long,
        value_name = "FILE",
        requires = "client_cert",
        help_heading = "Authentication and TLS"
    )]
    pub client_key: Option<PathBuf>,
}

/// The onceward API on a connection made now, so a sidecar that is not there is
/// reported before any request is built.
pub(super) async fn connect(
    args: &ConnectArgs,
) -> Result<OncewardClient<AuthorizedChannel>, Failure> {
    // The sidecar bounds stored responses itself (--max-response-bytes, which may exceed
    // tonic's 4 MiB default); the client takes whatever its sidecar sends.
    Ok(OncewardClient::new(channel(args).await?).max_decoding_message_size(usize::MAX))
}

/// A connection to the sidecar, TLS and token as the flags say.
pub(super) async fn channel(args: &ConnectArgs) -> Result<AuthorizedChannel, Failure> {
    client_config(args)?
        .connect_channel(&args.addr)
        .await
        .map_err(|error| match error {
            ClientError::Connect { addr, message } => Failure::local(
                Exit::Unavailable,
                Code::Unavailable,
                format!("cannot connect to {addr}: {message}"),
            ),
            ClientError::Config { addr, message } => {
                Failure::misconfigured(format!("cannot use {addr}: {message}"))
            }
            other => Failure::local(Exit::Other, Code::Unknown, other.to_string()),
        })
}

fn client_config(args: &ConnectArgs) -> Result<ClientConfig, Failure> {
    let mut config = ClientConfig::builder().connect_timeout(CONNECT_TIMEOUT);
    if let Some(token) = auth_token(args.auth_token_file.as_deref())? {
        config = config.auth_token(token);
    }
    if let Some(path) = &args.ca_cert {
        config = config.tls_ca_certificate(read(path, "--ca-cert")?);
    }
    // clap requires both or neither.
    if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) {
        config =
            config.tls_client_identity(read(cert, "--client-cert")?, read(key, "--client-key")?);
    }
    Ok(config.build())
}

/// The token from `file` if given, else from `ONCEWARD_AUTH_TOKEN` (unset or empty:
/// none).
fn auth_token(file: Option<&Path>) -> Result<Option<String>, Failure> {
    let Some(path) = file else {
        return Ok(std::env::var(AUTH_TOKEN_ENV)
            .ok()
            .filter(|token| !token.is_empty()));
    };
    let bytes = read(path, "--auth-token-file")?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Failure::misconfigured(format!(
            "--auth-token-file {}: not a text file",
            path.display()
        ))
    })?;
    // `echo "$TOKEN" > file` adds a newline; the token does not end with one.
    let token = text.strip_suffix('\n').unwrap_or(&text);
    let token = token.strip_suffix('\r').unwrap_or(token);
    if token.is_empty() {
        return Err(Failure::misconfigured(format!(
            "--auth-token-file {}: the file is empty",
            path.display()
        )));
    }
    Ok(Some(token.to_owned()))
}

/// A credential file, whole; unreadable is a configuration error naming its flag.
fn read(path: &Path, flag: &str) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|error| {
        Failure::misconfigured(format!(
            "{flag} {}: cannot read it: {error}",
            path.display()
        ))
    })
}

/// `failure`, unless TLS is what failed the call: a plaintext address at a sidecar
/// serving TLS, or a client certificate (or its absence) a mutual-TLS sidecar refused.
/// Those reach a call as a reset or a malformed frame, depending on timing, just like
/// a sidecar that died; asked again, the address tells them apart.
pub(super) async fn explain_transport_failure(args: &ConnectArgs, failure: Failure) -> Failure {
    let Ok(config) = client_config(args) else {
        return failure;
    };
    match config.explain_transport_failure(&args.addr).await {
        Some(reason) => Failure::misconfigured(format!("cannot use {}: {reason}", args.addr)),
        None => failure,
    }
}
