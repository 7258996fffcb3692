//! TLS (and mutual TLS) for the gRPC port, terminated by the accept loop in
//! [`super::transport`] rather than by tonic, so that the handshake deadline can wait
//! for the HTTP/2 preface inside the encrypted stream. The settings are tonic's own:
//! rustls with its safe defaults, ALPN `h2` (and `http/1.1`, for Connect and gRPC-Web
//! callers without HTTP/2), client certificates verified against one CA when one is given.

use std::sync::Arc;

use anyhow::Context as _;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

/// The acceptor for a certificate chain and key (PEM), requiring client certificates
/// signed by `client_ca` (PEM) when given.
pub fn acceptor(
    cert_chain: &[u8],
    key: &[u8],
    client_ca: Option<&[u8]>,
) -> anyhow::Result<TlsAcceptor> {
    let builder = ServerConfig::builder();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(certificates(ca)?);
            anyhow::ensure!(added > 0, "no certificate in the client CA file");
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .context("invalid client CA")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let key = PrivateKeyDer::from_pem_slice(key).context("no private key in the key file")?;
    let mut config = builder
        .with_single_cert(certificates(cert_chain)?, key)
        .context("the certificate and key do not make a TLS identity")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn certificates(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .context("unreadable PEM certificate")?;
    anyhow::ensure!(!certificates.is_empty(), "no certificate in the PEM file");
    Ok(certificates)
}
