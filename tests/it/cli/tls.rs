//! `https://` addresses: `--ca-cert`, `--client-cert`/`--client-key` for mutual TLS,
//! and exit 7 ("configuration error: will not succeed on retry"), not 5, for every TLS
//! or address mistake; only a sidecar that is not there stays 5.

use super::{Run, onceward_env};
use crate::harness::*;
use crate::secured::{self, NAMESPACE, Secured, TOKEN, file};

const AS_TENANT: &[(&str, &str)] = &[("ONCEWARD_AUTH_TOKEN", TOKEN)];

fn assert_stderr_says(run: &Run, text: &str) {
    assert!(run.stderr.contains(text), "{:?} lacks {text:?}", run.stderr);
}

#[tokio::test]
async fn with_mutual_tls_the_client_certificate_claims_and_without_it_is_exit_7() {
    let sidecar = Secured::spawn_mutual().await;
    let ca = sidecar.path(file::CA);
    let cert = sidecar.path(file::CLIENT_CERT);
    let key = sidecar.path(file::CLIENT_KEY);

    let claimed = onceward_env(
        &sidecar.https_addr(),
        &[
            "claim",
            NAMESPACE,
            "m-1",
            "--ca-cert",
            &ca,
            "--client-cert",
            &cert,
            "--client-key",
            &key,
        ],
        AS_TENANT,
        None,
    )
    .await;
    claimed.assert_exit(0);

    // The sidecar refuses the missing certificate after the client's side of the
    // handshake is done; however the refusal reaches the call, the answer is 7.
    for attempt in 0..3 {
        let anonymous = onceward_env(
            &sidecar.https_addr(),
            &[
                "claim",
                NAMESPACE,
                &format!("m-{attempt}"),
                "--ca-cert",
                &ca,
            ],
            AS_TENANT,
            None,
        )
        .await;
        anonymous.assert_exit(7);
        assert_stderr_says(&anonymous, "TLS handshake failed");
    }

    // Half an identity is a usage error.
    onceward_env(
        &sidecar.https_addr(),
        &[
            "claim",
            NAMESPACE,
            "m-9",
            "--ca-cert",
            &ca,
            "--client-cert",
            &cert,
        ],
        AS_TENANT,
        None,
    )
    .await
    .assert_exit(2);
}

#[tokio::test]
async fn a_ca_that_did_not_sign_the_sidecar_or_none_at_all_is_exit_7_not_5() {
    let sidecar = Secured::spawn().await;
    let other_ca = sidecar.path(file::OTHER_CA);

    let wrong_ca = onceward_env(
        &sidecar.https_addr(),
        &["claim", NAMESPACE, "k", "--ca-cert", &other_ca, "--json"],
        AS_TENANT,
        None,
    )
    .await;
    let json = wrong_ca.assert_exit(7).json();
    assert!(
        json["error"]["message"]
            .as_str()
            .expect("message")
            .contains("TLS handshake failed"),
        "{json}"
    );

    // Without --ca-cert the system's roots are trusted, and they did not sign it.
    let system_roots = onceward_env(
        &sidecar.https_addr(),
        &["claim", NAMESPACE, "k"],
        AS_TENANT,
        None,
    )
    .await;
    system_roots.assert_exit(7);
    assert_stderr_says(&system_roots, "TLS handshake failed");
}

#[tokio::test]
async fn a_plaintext_address_at_a_tls_sidecar_is_exit_7_saying_to_use_https() {
    let sidecar = Secured::spawn().await;

    // The sidecar's hang-up reaches the call in one of several ways depending on
    // timing; every one of them is 7.
    for attempt in 0..3 {
        let plaintext = onceward_env(
            &sidecar.plaintext_addr(),
            &["claim", NAMESPACE, &format!("p-{attempt}")],
            AS_TENANT,
            None,
        )
        .await;
        plaintext.assert_exit(7);
        assert_stderr_says(&plaintext, "serves TLS; use an https:// address");
    }
}

#[tokio::test]
async fn an_https_address_at_a_plaintext_sidecar_is_exit_7() {
    let credentials = secured::credentials();
    let ca = credentials.path().join(file::CA).display().to_string();
    let app = TestApp::builder().spawn().await;

    let https = onceward_env(
        &format!("https://localhost:{}", app.addr.port()),
        &["claim", "ns", "k", "--ca-cert", &ca],
        &[],
        None,
    )
    .await;
    https.assert_exit(7);
    assert_stderr_says(&https, "TLS handshake failed");
}

#[tokio::test]
async fn settings_that_cannot_work_are_exit_7_before_any_connection_and_nothing_there_stays_5() {
    let credentials = secured::credentials();
    let path = |name: &str| credentials.path().join(name).display().to_string();
    let nobody = format!("localhost:{}", free_port());
    let https = format!("https://{nobody}");

    let unreadable = onceward_env(
        &https,
        &["claim", "ns", "k", "--ca-cert", "/nonexistent/ca.pem"],
        &[],
        None,
    )
    .await;
    unreadable.assert_exit(7);
    assert_stderr_says(&unreadable, "--ca-cert /nonexistent/ca.pem");

    // A file that holds no certificate (here: the token file).
    let not_pem = onceward_env(
        &https,
        &["claim", "ns", "k", "--ca-cert", &path(file::TOKEN)],
        &[],
        None,
    )
    .await;
    not_pem.assert_exit(7);
    assert_stderr_says(&not_pem, "CA certificate");

    // TLS settings with a plain address would send the token in clear: refused.
    let plain = onceward_env(
        &format!("http://{nobody}"),
        &["claim", "ns", "k", "--ca-cert", &path(file::CA)],
        &[],
        None,
    )
    .await;
    plain.assert_exit(7);
    assert_stderr_says(&plain, "https://");

    for addr in ["http://[::1", "ftp://127.0.0.1:50051"] {
        let malformed = onceward_env(addr, &["lookup", "ns", "k", "--json"], &[], None).await;
        assert_eq!(
            malformed.assert_exit(7).json()["error"]["code"],
            "INVALID_ARGUMENT"
        );
    }

    // Everything in order, and nothing listening: unavailable, safe to retry.
    let absent = onceward_env(
        &https,
        &["claim", "ns", "k", "--ca-cert", &path(file::CA)],
        &[],
        None,
    )
    .await;
    absent.assert_exit(5);
    assert_stderr_says(&absent, "UNAVAILABLE: cannot connect");
}
