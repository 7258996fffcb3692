//! How a client reaches its sidecar, in one place for [`Client`](crate::Client) (and so
//! the HTTP layer) and for callers of the generated API, the sidecar's CLI among them:
//! the address (`http://` is assumed without a scheme), TLS for `https://` addresses (a
//! CA of the caller's, else the system's roots; a client certificate for mutual TLS),
//! and the bearer token every RPC carries.
//!
//! A connection fails in one of two ways that a caller handles differently:
//! [`ClientError::Connect`], nothing answered (the sidecar may come up: retry), and
//! [`ClientError::Config`], an address, a PEM file, a token or a TLS handshake that
//! will fail the same way until someone changes the configuration. A call that fails
//! later, in the transport, can be sorted the same way by asking the address again
//! (`diagnose`).

use std::error::Error;
use std::fmt;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::config::ClientConfig;
use crate::error::ClientError;

mod diagnose;

/// A channel to the sidecar whose every request carries the configured bearer token;
/// what the generated clients in [`crate::proto`] are built on.
pub type AuthorizedChannel = InterceptedService<Channel, Authorization>;

/// The bearer token, kept out of `Debug` output (and so out of logs of a config).
#[derive(Clone)]
pub(crate) struct AuthToken(pub(crate) String);

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthToken(<redacted>)")
    }
}

/// TLS settings for `https://` addresses, as PEM. The private key never shows in
/// `Debug` output.
#[derive(Clone, Default)]
pub(crate) struct TlsSettings {
    /// The CA that signed the sidecar's certificate; `None`: the system's roots.
    pub(crate) ca_certificate: Option<Vec<u8>>,
    /// A certificate chain and its private key, for a sidecar that requires one.
    pub(crate) identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsSettings {
    fn is_set(&self) -> bool {
        self.ca_certificate.is_some() || self.identity.is_some()
    }

    /// tonic's TLS configuration, after checking that each PEM holds what it should, so
    /// a wrong file is named now rather than surfacing as a failed handshake.
    fn client_config(&self) -> Result<ClientTlsConfig, String> {
        let tls = match &self.ca_certificate {
            Some(pem) => {
                certificates(pem, "the CA certificate")?;
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
            }
            None => ClientTlsConfig::new().with_enabled_roots(),
        };
        Ok(match &self.identity {
            Some((cert, key)) => {
                certificates(cert, "the client certificate")?;
                PrivateKeyDer::from_pem_slice(key)
                    .map_err(|error| format!("no private key in the client key: {error}"))?;
                tls.identity(Identity::from_pem(cert, key))
            }
            None => tls,
        })
    }
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field(
                "ca_certificate",
                &self.ca_certificate.as_ref().map(|_| "<PEM>"),
            )
            .field("identity", &self.identity.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn certificates(pem: &[u8], what: &str) -> Result<(), String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("{what} is not PEM: {error}"))?;
    if certificates.is_empty() {
        return Err(format!("no PEM certificate in {what}"));
    }
    Ok(())
}

/// The interceptor that sends `authorization: Bearer <token>` with every request (and
/// nothing when no token is configured). Its `Debug` output never shows the token.
#[derive(Clone, Default)]
pub struct Authorization {
    header: Option<MetadataValue<Ascii>>,
}

impl Authorization {
    fn new(token: Option<&AuthToken>) -> Result<Self, String> {
        let Some(AuthToken(token)) = token else {
            return Ok(Self::default());
        };
        if token.is_empty() {
            return Err("the bearer token is empty".to_owned());
        }
        // The message names the rule, never the token.
        let not_printable = || "the bearer token is not printable ASCII without spaces";
        if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(not_printable().to_owned());
        }
        let mut header = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| not_printable().to_owned())?;
        // Sensitive: HTTP/2 never adds it to a compression table, and tonic's own
        // Debug output shows it as "Sensitive".
        header.set_sensitive(true);
        Ok(Self {
            header: Some(header),
        })
    }
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = if self.header.is_some() {
            "Bearer <redacted>"
        } else {
            "none"
        };
        f.debug_tuple("Authorization").field(&token).finish()
    }
}

impl Interceptor for Authorization {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

impl ClientConfig {
    /// Connects to the sidecar at `addr` (`host:port`, `http://…` or `https://…`) with
    /// this configuration's connect timeout, TLS settings and bearer token, for calling
    /// the generated clients in [`crate::proto`] (or the sidecar's health service)
    /// directly. Unlike [`Client`](crate::Client), which bounds every RPC by
    /// `rpc_timeout`, requests on this channel have no deadline but their own.
    pub async fn connect_channel(&self, addr: &str) -> Result<AuthorizedChannel, ClientError> {
        self.connect(addr, None).await
    }

    pub(crate) async fn connect(
        &self,
        addr: &str,
        rpc_timeout: Option<Duration>,
    ) -> Result<AuthorizedChannel, ClientError> {
        let config_error = |message| ClientError::Config {
            addr: addr.to_owned(),
            message,
        };
        let authorization = Authorization::new(self.auth_token.as_ref()).map_err(config_error)?;
        let mut endpoint = self.endpoint(addr).map_err(config_error)?;
        if let Some(timeout) = rpc_timeout {
            endpoint = endpoint.timeout(timeout);
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|error| connect_error(addr, &error))?;
        Ok(InterceptedService::new(channel, authorization))
    }

    fn endpoint(&self, addr: &str) -> Result<Endpoint, String> {
        let uri = if addr.contains("://") {
            addr.to_owned()
        } else {
            format!("http://{addr}")
        };
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|error| format!("not an address like http://127.0.0.1:50051: {error}"))?
            .connect_timeout(self.connect_timeout);
        match endpoint.uri().scheme_str() {
            Some("https") => endpoint
                .tls_config(self.tls.client_config()?)
                .map_err(|error| format!("invalid TLS settings: {}", crate::chain(&error))),
            // A CA or a client certificate says the caller meant TLS: sending the token
            // in clear instead would be the worst way to find out.
            Some("http") if self.tls.is_set() => Err(
                "TLS settings are given but the address is not https://; use https://".to_owned(),
            ),
            Some("http") => Ok(endpoint),
            other => Err(format!(
                "the scheme must be http:// or https://, not {}://",
                other.unwrap_or_default()
            )),
        }
    }
}

/// A failed first connection: [`ClientError::Config`] when TLS refused it, else
/// [`ClientError::Connect`].
fn connect_error(addr: &str, error: &tonic::transport::Error) -> ClientError {
    match tls_failure(error) {
        Some(message) => ClientError::Config {
            addr: addr.to_owned(),
            message: format!("TLS handshake failed: {message}"),
        },
        None => ClientError::Connect {
            addr: addr.to_owned(),
            message: crate::chain(error),
        },
    }
}

/// What went wrong in TLS, if `error` (or a cause of it) is a TLS failure: a
/// certificate one side did not accept, a handshake either side broke off, a plaintext
/// peer. It fails the same way until the configuration changes, so it is never retried
/// and never reported as an unreachable sidecar. The sidecar's CLI sorts its exit codes
/// with it too.
pub fn tls_failure(error: &(dyn Error + 'static)) -> Option<String> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // tokio-rustls reports rustls's errors as io::Errors wrapping them, whose
        // `source` skips the wrapped error itself.
        if let Some(tls) = error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls.to_string());
        }
        cause = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neither_the_token_nor_the_client_key_shows_in_debug_output() {
        let config = ClientConfig::builder()
            .auth_token("s3cret-token")
            .tls_client_identity("cert", "-----BEGIN PRIVATE KEY-----\nk3y\n")
            .build();
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret-token"), "{debug}");
        assert!(!debug.contains("k3y"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        let authorization = Authorization::new(config.auth_token.as_ref()).unwrap();
        assert_eq!(
            format!("{authorization:?}"),
            "Authorization(\"Bearer <redacted>\")"
        );
    }

    #[test]
    fn the_interceptor_sends_the_token_as_a_bearer_credential() {
        let mut authorization = Authorization::new(Some(&AuthToken("t0ken".to_owned()))).unwrap();
        let request = authorization.call(Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer t0ken"
        );

        let mut none = Authorization::new(None).unwrap();
        let request = none.call(Request::new(())).unwrap();
        assert!(request.metadata().get("authorization").is_none());
    }

    #[test]
    fn a_token_that_is_no_header_value_is_refused_without_echoing_it() {
        for token in ["", "line\nbreak", "caf\u{e9}", "two words"] {
            let error = Authorization::new(Some(&AuthToken(token.to_owned()))).unwrap_err();
            assert!(token.is_empty() || !error.contains(token), "{error}");
        }
    }

    #[test]
    fn tls_settings_on_a_plain_address_are_refused_rather_than_ignored() {
        let config = ClientConfig::builder()
            .tls_ca_certificate("not even PEM")
            .build();
        let error = config.endpoint("127.0.0.1:50051").unwrap_err();
        assert!(error.contains("https://"), "{error}");
        let error = config.endpoint("https://localhost:50051").unwrap_err();
        assert!(error.contains("CA certificate"), "{error}");
        let error = ClientConfig::default().endpoint("ftp://x:1").unwrap_err();
        assert!(error.contains("http:// or https://"), "{error}");
    }
}
