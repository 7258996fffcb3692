//! A sidecar run the way SECURITY.md says to run one in production, for the tests of
//! every shipped client against it (`cli::auth`, `cli::tls`, `cli::health`, `client`,
//! `http`): tenants with bearer tokens (`--config`), TLS with a certificate from a CA
//! of the test's own, and, when asked, mutual TLS; plus the files a client is handed
//! to reach it.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use sha2::Digest as _;

use crate::harness::*;

/// The bearer token of tenant `payments`, which may use namespaces [`NAMESPACE`] and
/// [`CHARGES`] only.
pub const TOKEN: &str = "payments-token-7f3c9a1e5b2d4068";

/// A namespace granted to [`TOKEN`]'s tenant.
pub const NAMESPACE: &str = "payments";

/// The other namespace granted to [`TOKEN`]'s tenant: the charge example's.
pub const CHARGES: &str = "charges";

/// A namespace that exists for another tenant only.
pub const NOT_GRANTED: &str = "mail";

/// The files under [`Secured::path`].
pub mod file {
    /// The CA that signed the sidecar's certificate and the client certificate.
    pub const CA: &str = "ca.pem";
    /// A CA that signed nothing the sidecar uses.
    pub const OTHER_CA: &str = "other-ca.pem";
    /// The client certificate, signed by [`CA`], and its key.
    pub const CLIENT_CERT: &str = "client.pem";
    /// The client certificate's private key.
    pub const CLIENT_KEY: &str = "client.key";
    /// [`super::TOKEN`] followed by a newline, as `echo "$TOKEN" > token` writes it.
    pub const TOKEN: &str = "token";
}

/// A sidecar with tenants and TLS, and the directory holding its credentials.
pub struct Secured {
    /// The sidecar (its plaintext `client` is not connected: it serves TLS only).
    pub app: TestApp,
    dir: tempfile::TempDir,
}

impl Secured {
    /// Tenants and TLS; any client that trusts the CA may connect.
    pub async fn spawn() -> Self {
        Self::start(false).await
    }

    /// Tenants and mutual TLS: a client must also present a certificate the CA signed.
    pub async fn spawn_mutual() -> Self {
        Self::start(true).await
    }

    async fn start(mutual: bool) -> Self {
        let dir = credentials();
        let path = |name: &str| dir.path().join(name);
        let mut builder = TestApp::builder()
            .tenants(path("tenants.toml"))
            .tls(path("server.pem"), path("server.key"));
        if mutual {
            builder = builder.tls_client_ca(path(file::CA));
        }
        let app = builder.spawn().await;
        Self { app, dir }
    }

    /// The address a client uses: `https://localhost:PORT` (the certificate's name).
    pub fn https_addr(&self) -> String {
        format!("https://localhost:{}", self.app.addr.port())
    }

    /// The same port without TLS: the mistake of a client that forgot `https://`.
    pub fn plaintext_addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.app.addr.port())
    }

    /// One of the files in [`file`], as a path string.
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// One of the files in [`file`], its bytes.
    pub fn pem(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(name)).expect("a credential file")
    }
}

/// The CA, the sidecar's certificate for `localhost`, a client certificate, a CA that
/// signed nothing, the tenants file and the token file ([`file`]), in a fresh
/// directory: what [`Secured`] runs with, for tests that need only the files.
pub fn credentials() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca_pem, issuer) = certificate_authority();
    let (other_ca_pem, _) = certificate_authority();
    let (server_pem, server_key) = signed(&issuer, "localhost");
    let (client_pem, client_key) = signed(&issuer, "payments-service");
    let tenants = format!(
        "[[tenants]]\nname = \"payments\"\ntoken_sha256 = \"{}\"\nnamespaces = [\"{NAMESPACE}\", \"{CHARGES}\"]\n\n\
         [[tenants]]\nname = \"mail\"\ntoken_sha256 = \"{}\"\nnamespaces = [\"{NOT_GRANTED}\"]\n",
        hex::encode(sha2::Sha256::digest(TOKEN)),
        hex::encode(sha2::Sha256::digest("mail-token-0a1b2c3d4e5f6071")),
    );
    for (name, contents) in [
        (file::CA, ca_pem),
        (file::OTHER_CA, other_ca_pem),
        ("server.pem", server_pem),
        ("server.key", server_key),
        (file::CLIENT_CERT, client_pem),
        (file::CLIENT_KEY, client_key),
        ("tenants.toml", tenants),
        (file::TOKEN, format!("{TOKEN}\n")),
    ] {
        let path: PathBuf = dir.path().join(name);
        std::fs::write(path, contents).expect("write a credential file");
    }
    dir
}

fn certificate_authority() -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let pem = params.self_signed(&key).expect("CA certificate").pem();
    (pem, Issuer::new(params, key))
}

/// A certificate for `name` signed by `issuer`, and its key, as PEM.
fn signed(issuer: &Issuer<'static, KeyPair>, name: &str) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let certificate = CertificateParams::new(vec![name.to_owned()])
        .expect("params")
        .signed_by(&key, issuer)
        .expect("certificate");
    (certificate.pem(), key.serialize_pem())
}
