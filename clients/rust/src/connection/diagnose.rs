//! Why a call failed in the transport, asked of the address once more.
//!
//! Two misconfigurations reach a live call as a connection reset, a "broken pipe" or
//! a malformed HTTP/2 frame, depending on which of the client's writes and the
//! server's hang-up comes first, and so look like a sidecar that went away (worth a
//! retry) when no retry will ever succeed:
//! - a plaintext client at a sidecar that serves TLS: the sidecar answers the HTTP/2
//!   preface with a TLS alert and closes;
//! - a TLS client whose certificate (or lack of one) a mutual-TLS sidecar refuses: in
//!   TLS 1.3 the client's handshake is done before the sidecar checks it, and the
//!   refusal arrives as an alert on the first read.
//!
//! Asked without the race (greet, then only read), the address answers the same way
//! every time.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig as TlsConfig, RootCertStore};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::codegen::http::Uri;

use super::{TlsSettings, tls_failure};
use crate::config::ClientConfig;

/// How long the second question may take; a server that accepts the connection then
/// waits for a request, so the answer "nothing wrong" is this long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The first bytes of a TLS alert record: content type 21, protocol version 3.x.
const TLS_ALERT: [u8; 2] = [0x15, 0x03];

/// What every HTTP/2 client sends first.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl ClientConfig {
    /// After a call to `addr` failed in the transport (no status came from the
    /// sidecar), asks `addr` once more whether TLS is what refused it, and says how:
    /// a plaintext address whose server speaks TLS, or a TLS server that refuses this
    /// configuration's client certificate (or its absence). `None`: not TLS, so the
    /// failure may well be a sidecar that went away. Takes at most a second.
    pub async fn explain_transport_failure(&self, addr: &str) -> Option<String> {
        let uri: Uri = if addr.contains("://") {
            addr.parse().ok()?
        } else {
            format!("http://{addr}").parse().ok()?
        };
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
        let probe = async {
            match uri.scheme_str() {
                Some("http") => serves_tls(host, uri.port_u16().unwrap_or(80))
                    .await
                    .then(|| "the sidecar serves TLS; use an https:// address".to_owned()),
                Some("https") => tls_refusal(&self.tls, host, uri.port_u16().unwrap_or(443))
                    .await
                    .map(|refusal| format!("TLS handshake failed: {refusal}")),
                _ => None,
            }
        };
        tokio::time::timeout(PROBE_TIMEOUT, probe)
            .await
            .ok()
            .flatten()
    }
}

/// Whether the server answers an HTTP/2 preface with a TLS alert.
async fn serves_tls(host: &str, port: u16) -> bool {
    let answer = async {
        let mut stream = TcpStream::connect((host, port)).await.ok()?;
        stream.write_all(HTTP2_PREFACE).await.ok()?;
        let mut reply = [0u8; 2];
        stream.read_exact(&mut reply).await.ok()?;
        Some(reply == TLS_ALERT)
    };
    answer.await == Some(true)
}

/// The TLS error a handshake with these settings meets, on the handshake itself or
/// on the first read after it.
async fn tls_refusal(settings: &TlsSettings, host: &str, port: u16) -> Option<String> {
    let connector = TlsConnector::from(Arc::new(tls_config(settings)?));
    let name = ServerName::try_from(host.to_owned()).ok()?;
    let tcp = TcpStream::connect((host, port)).await.ok()?;
    let mut tls = match connector.connect(name, tcp).await {
        Ok(tls) => tls,
        Err(error) => return tls_failure(&error),
    };
    let mut byte = [0u8; 1];
    match tls.read(&mut byte).await {
        Err(error) => tls_failure(&error),
        Ok(_) => None,
    }
}

/// The rustls configuration tonic builds from the same settings: the CA (else the
/// system's roots), the client identity, ALPN `h2`.
fn tls_config(settings: &TlsSettings) -> Option<TlsConfig> {
    let mut roots = RootCertStore::empty();
    match &settings.ca_certificate {
        Some(pem) => {
            roots.add_parsable_certificates(CertificateDer::pem_slice_iter(pem).flatten());
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let builder =
        TlsConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .ok()?
            .with_root_certificates(roots);
    let mut config = match &settings.identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert).flatten().collect(),
                PrivateKeyDer::from_pem_slice(key).ok()?,
            )
            .ok()?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Some(config)
}
