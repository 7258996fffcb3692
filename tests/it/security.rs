//! Tenants and transport security: bearer tokens, namespace grants, rate limits, TLS
//! and mutual TLS, and secrets kept out of logs.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use onceward::proto::onceward_client::OncewardClient;
use onceward::proto::{self, Outcome};
use sha2::Digest as _;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Request};

use crate::harness::*;

const PAY_TOKEN: &str = "pay-token-0123456789abcdef";
const MAIL_TOKEN: &str = "mail-token-fedcba9876543210";

fn sha256_hex(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Two tenants: `payments` (namespaces payments, refunds; `payments_rate` requests/s
/// with as much burst) and `mail` (namespace mail, unlimited).
fn write_config(dir: &Path, include_payments: bool, payments_rate: u32) -> String {
    let mut text = String::new();
    if include_payments {
        text.push_str(&format!(
            "[[tenants]]\nname = \"payments\"\ntoken_sha256 = \"{}\"\nnamespaces = [\"payments\", \"refunds\"]\nrate_limit_per_second = {payments_rate}\nrate_limit_burst = {payments_rate}\n\n",
            sha256_hex(PAY_TOKEN)
        ));
    }
    text.push_str(&format!(
        "[[tenants]]\nname = \"mail\"\ntoken_sha256 = \"{}\"\nnamespaces = [\"mail\"]\n",
        sha256_hex(MAIL_TOKEN)
    ));
    let path = dir.join(format!("onceward-{include_payments}-{payments_rate}.toml"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

async fn spawn_with_tenants(dir: &Path, include_payments: bool, db: &TestDatabase) -> TestApp {
    spawn_with_rate(dir, include_payments, 1000, db).await
}

async fn spawn_with_rate(
    dir: &Path,
    include_payments: bool,
    payments_rate: u32,
    db: &TestDatabase,
) -> TestApp {
    TestApp::builder()
        .ledger(Ledger::Postgres(db))
        .tenants(write_config(dir, include_payments, payments_rate))
        .spawn()
        .await
}

fn as_tenant<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

async fn claim_as(
    client: &mut OncewardClient<Channel>,
    token: &str,
    ns: &str,
    key: &str,
) -> Result<proto::ClaimResponse, tonic::Status> {
    client
        .claim(as_tenant(claim_request(ns, key, b"", None), token))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn missing_wrong_and_revoked_tokens_are_unauthenticated() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let app = spawn_with_tenants(dir.path(), true, &db).await;
    let mut client = app.client.clone();

    let missing = client
        .claim(claim_request("payments", "k", b"", None))
        .await;
    assert_eq!(missing.unwrap_err().code(), Code::Unauthenticated);
    let wrong = claim_as(&mut client, "not-a-token", "payments", "k").await;
    assert_eq!(wrong.unwrap_err().code(), Code::Unauthenticated);
    let mut basic = Request::new(claim_request("payments", "k", b"", None));
    basic.metadata_mut().insert(
        "authorization",
        format!("Basic {PAY_TOKEN}").parse().unwrap(),
    );
    assert_eq!(
        client.claim(basic).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let held = claim_as(&mut client, PAY_TOKEN, "payments", "k")
        .await
        .unwrap();
    assert_eq!(outcome(&held), Outcome::Acquired);
    app.stop().await;

    // The payments tenant is removed from the config: its token stops working.
    let app = spawn_with_tenants(dir.path(), false, &db).await;
    let mut client = app.client.clone();
    let revoked = claim_as(&mut client, PAY_TOKEN, "payments", "k").await;
    assert_eq!(revoked.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(
        outcome(
            &claim_as(&mut client, MAIL_TOKEN, "mail", "k")
                .await
                .unwrap()
        ),
        Outcome::Acquired
    );
}

#[tokio::test]
async fn a_tenant_reaching_into_another_namespace_is_denied_on_every_rpc_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let app = spawn_with_tenants(dir.path(), true, &db).await;
    let mut client = app.client.clone();

    let held = claim_as(&mut client, MAIL_TOKEN, "mail", "welcome")
        .await
        .unwrap();
    let lookup_as = |token: &'static str| {
        as_tenant(
            proto::LookupRequest {
                namespace: "mail".into(),
                key: "welcome".into(),
            },
            token,
        )
    };
    let before = client
        .lookup(lookup_as(MAIL_TOKEN))
        .await
        .unwrap()
        .into_inner();

    let denied = [
        claim_as(&mut client, PAY_TOKEN, "mail", "welcome")
            .await
            .map(drop),
        client
            .complete(as_tenant(
                proto::CompleteRequest {
                    namespace: "mail".into(),
                    key: "welcome".into(),
                    fencing_token: held.fencing_token,
                    response: b"hijacked".to_vec(),
                    retention: None,
                },
                PAY_TOKEN,
            ))
            .await
            .map(drop),
        client
            .release(as_tenant(
                proto::ReleaseRequest {
                    namespace: "mail".into(),
                    key: "welcome".into(),
                    fencing_token: held.fencing_token,
                },
                PAY_TOKEN,
            ))
            .await
            .map(drop),
        client
            .extend_lease(as_tenant(
                proto::ExtendLeaseRequest {
                    namespace: "mail".into(),
                    key: "welcome".into(),
                    fencing_token: held.fencing_token,
                    lease: Some(proto_duration(Duration::from_secs(600))),
                },
                PAY_TOKEN,
            ))
            .await
            .map(drop),
        client.lookup(lookup_as(PAY_TOKEN)).await.map(drop),
    ];
    for (rpc, result) in ["Claim", "Complete", "Release", "ExtendLease", "Lookup"]
        .iter()
        .zip(denied)
    {
        let status = result.expect_err(rpc);
        assert_eq!(status.code(), Code::PermissionDenied, "{rpc}: {status:?}");
        assert!(
            status.message().contains("\"mail\""),
            "{rpc}: {}",
            status.message()
        );
    }
    let after = client
        .lookup(lookup_as(MAIL_TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before, after, "nothing read or written for the intruder");

    // The same key string in the intruder's own namespace lives its own life.
    let own = claim_as(&mut client, PAY_TOKEN, "payments", "welcome")
        .await
        .unwrap();
    assert_eq!(outcome(&own), Outcome::Acquired);
}

#[tokio::test]
async fn one_tenant_over_its_rate_is_refused_while_another_is_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let app = spawn_with_rate(dir.path(), true, 5, &db).await;
    let mut client = app.client.clone();

    let mut limited = 0;
    for i in 0..20 {
        match claim_as(&mut client, PAY_TOKEN, "payments", &format!("burst-{i}")).await {
            Ok(_) => {}
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                assert!(
                    status.message().contains("retry in"),
                    "{}",
                    status.message()
                );
                limited += 1;
            }
        }
        // The other tenant keeps being served in between.
        let quiet = claim_as(&mut client, MAIL_TOKEN, "mail", &format!("steady-{i}")).await;
        assert_eq!(
            outcome(&quiet.expect("the quiet tenant is never limited")),
            Outcome::Acquired
        );
    }
    assert!(
        limited >= 10,
        "a 5/s tenant sending 20 at once is limited ({limited})"
    );
}

#[tokio::test]
async fn health_stays_open_when_authentication_is_on() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let app = spawn_with_tenants(dir.path(), true, &db).await;
    let channel = Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health needs no token");
    assert_eq!(status.into_inner().status, 1);
}

#[tokio::test]
async fn require_auth_refuses_to_start_without_tenants() {
    let db = TestDatabase::create().await;
    let argv = [
        "onceward".to_owned(),
        "serve".to_owned(),
        "--listen=127.0.0.1:0".to_owned(),
        "--metrics-listen=127.0.0.1:0".to_owned(),
        format!("--database-url={}", db.url),
        "--require-auth".to_owned(),
    ];
    use clap::Parser as _;
    let onceward::command::Command::Serve(args) = onceward::command::Cli::try_parse_from(argv)
        .unwrap()
        .command
    else {
        unreachable!()
    };
    let error = onceward::app::Application::build(&args)
        .await
        .err()
        .expect("refused");
    assert!(format!("{error:#}").contains("--require-auth"), "{error:#}");
}

/// A CA, a server certificate for `localhost` and a client certificate, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca: String,
    client_cert: String,
    client_key: String,
}

fn make_pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client_cert = CertificateParams::new(vec!["payments-service".to_owned()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    for (name, pem) in [
        ("ca.pem", ca_cert.pem()),
        ("server.pem", server_cert.pem()),
        ("server.key", server_key.serialize_pem()),
    ] {
        std::fs::write(dir.path().join(name), pem).unwrap();
    }
    Pki {
        ca: ca_cert.pem(),
        client_cert: client_cert.pem(),
        client_key: client_key.serialize_pem(),
        dir,
    }
}

/// A sidecar serving TLS with the server certificate, and with `mutual`, asking
/// clients for one the CA signed.
fn serving_tls(pki: &Pki, mutual: bool) -> TestAppBuilder<'static> {
    let path = |name: &str| pki.dir.path().join(name);
    let tls = TestApp::builder().tls(path("server.pem"), path("server.key"));
    if mutual {
        tls.tls_client_ca(path("ca.pem"))
    } else {
        tls
    }
}

async fn tls_client(
    addr: std::net::SocketAddr,
    pki: &Pki,
    with_certificate: bool,
) -> Result<OncewardClient<Channel>, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    if with_certificate {
        tls = tls.identity(Identity::from_pem(&pki.client_cert, &pki.client_key));
    }
    let channel = Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(OncewardClient::new(channel))
}

#[tokio::test]
async fn tls_serves_verified_clients_and_refuses_plaintext() {
    let pki = make_pki();
    let app = serving_tls(&pki, false).spawn().await;
    let mut client = tls_client(app.addr, &pki, false)
        .await
        .expect("TLS handshake");
    assert_eq!(
        outcome(&claim(&mut client, "tls", "k").await),
        Outcome::Acquired
    );

    let plaintext = Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plaintext {
        let refused = OncewardClient::new(channel)
            .claim(claim_request("tls", "k2", b"", None))
            .await;
        assert!(refused.is_err(), "a plaintext client must not be served");
    }
}

#[tokio::test]
async fn with_tls_a_connection_that_finishes_the_handshake_and_says_nothing_is_closed() {
    use tokio::io::AsyncReadExt as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, pem::PemObject as _};
    let pki = make_pki();
    let app = serving_tls(&pki, false)
        .args(&["--handshake-timeout=500ms"])
        .spawn()
        .await;

    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).unwrap())
        .unwrap();
    let mut config = tokio_rustls::rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let mut silent = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the handshake itself succeeds");
    let mut no_hello = tokio::net::TcpStream::connect(app.addr).await.unwrap();

    let mut client = tls_client(app.addr, &pki, false).await.unwrap();
    assert_eq!(
        outcome(&claim(&mut client, "tls", "k").await),
        Outcome::Acquired,
        "a client that speaks is served meanwhile"
    );
    let mut buffer = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        while matches!(silent.read(&mut buffer).await, Ok(n) if n > 0) {}
        while matches!(no_hello.read(&mut buffer).await, Ok(n) if n > 0) {}
    })
    .await;
    assert!(closed.is_ok(), "both silent connections were closed");
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate() {
    let pki = make_pki();
    let app = serving_tls(&pki, true).spawn().await;
    let mut client = tls_client(app.addr, &pki, true)
        .await
        .expect("mTLS handshake");
    assert_eq!(
        outcome(&claim(&mut client, "mtls", "k").await),
        Outcome::Acquired
    );

    match tls_client(app.addr, &pki, false).await {
        Err(_) => {}
        Ok(mut anonymous) => {
            let refused = anonymous
                .claim(claim_request("mtls", "k2", b"", None))
                .await;
            assert!(
                refused.is_err(),
                "a client without a certificate must be refused"
            );
        }
    }
}

#[tokio::test]
async fn no_token_or_password_ever_reaches_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let password = "pg-s3cret-password-do-not-log";
    let redis_password = "redis-s3cret-password-do-not-log";
    // Trust auth ignores the password, so the URL still connects.
    let db_url = db
        .url
        .replacen("postgres@", &format!("postgres:{password}@"), 1);
    let listen = format!("127.0.0.1:{}", free_port());
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_onceward"))
        .args(["serve", "--log-format", "json", "--listen", &listen])
        .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--database-url", &db_url])
        .args([
            "--redis-url",
            &format!("redis://:{redis_password}@127.0.0.1:6379"),
        ])
        .args(["--config", &write_config(dir.path(), true, 1000)])
        .env("RUST_LOG", "onceward=trace,info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Drain the log as it comes, or a full pipe would stall the sidecar.
    let mut stderr = server.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        use tokio::io::AsyncReadExt as _;
        let mut log = String::new();
        stderr.read_to_string(&mut log).await.unwrap();
        log
    });
    let addr = listen.parse().unwrap();
    assert!(
        eventually(Duration::from_secs(20), || async move {
            tokio::net::TcpStream::connect(addr).await.is_ok()
        })
        .await
    );
    let mut client = TestApp::connect(addr).await;

    let body = "card=4242424242424242";
    let held = client
        .claim(as_tenant(
            claim_request("payments", "order-1", body.as_bytes(), None),
            PAY_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    client
        .complete(as_tenant(
            proto::CompleteRequest {
                namespace: "payments".into(),
                key: "order-1".into(),
                fencing_token: held.fencing_token,
                response: body.as_bytes().to_vec(),
                retention: None,
            },
            PAY_TOKEN,
        ))
        .await
        .unwrap();
    let _ = claim_as(
        &mut client,
        "a-wrong-token-that-must-not-be-logged",
        "payments",
        "x",
    )
    .await;

    let pid = server.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), server.wait()).await;
    let log = log.await.unwrap();

    assert!(log.contains("***"), "URLs are logged redacted:\n{log}");
    for secret in [
        password,
        redis_password,
        PAY_TOKEN,
        "a-wrong-token-that-must-not-be-logged",
        body,
    ] {
        assert!(!log.contains(secret), "{secret:?} leaked into the log");
    }
    assert!(
        log.lines().count() > 5,
        "the capture saw the trace-level log"
    );
}
