//! The bearer token: from `ONCEWARD_AUTH_TOKEN` or `--auth-token-file` (which wins),
//! never printed; a sidecar that refuses it, or refuses the namespace, is exit 6; a
//! token file that cannot be used is exit 7. And `new-tenant-token`, which makes one.

use sha2::Digest as _;
use tokio::process::Command;

use super::{Run, file_with, onceward_env, token_of};
use crate::harness::*;
use crate::secured::{self, NAMESPACE, NOT_GRANTED, Secured, TOKEN};

/// `onceward ARGS --ca-cert <the CA> --addr <the sidecar>` with `env`.
async fn over_tls(sidecar: &Secured, args: &[&str], env: &[(&str, &str)]) -> Run {
    let ca = sidecar.path(secured::file::CA);
    let args = [args, &["--ca-cert", ca.as_str()]].concat();
    onceward_env(&sidecar.https_addr(), &args, env, None).await
}

fn assert_never_printed(run: &Run, secret: &str) {
    assert!(
        !String::from_utf8_lossy(&run.stdout).contains(secret) && !run.stderr.contains(secret),
        "the token was printed: {:?} {:?}",
        String::from_utf8_lossy(&run.stdout),
        run.stderr
    );
}

#[tokio::test]
async fn the_token_from_onceward_auth_token_claims_and_completes_over_tls() {
    let sidecar = Secured::spawn().await;
    let env = [("ONCEWARD_AUTH_TOKEN", TOKEN)];

    let claimed = over_tls(&sidecar, &["claim", NAMESPACE, "order-1"], &env).await;
    let token = token_of(claimed.assert_exit(0));
    let completed = over_tls(
        &sidecar,
        &["complete", NAMESPACE, "order-1", "--token", &token],
        &env,
    )
    .await;
    completed.assert_exit(0);
    let replay = over_tls(&sidecar, &["claim", NAMESPACE, "order-1"], &env).await;
    replay.assert_exit(11);
    assert_never_printed(&replay, TOKEN);
}

#[tokio::test]
async fn the_token_from_auth_token_file_is_used_and_wins_over_the_environment() {
    let sidecar = Secured::spawn().await;
    let token_file = sidecar.path(secured::file::TOKEN);

    // The file holds the token and a newline, as `echo "$TOKEN" > token` writes it.
    let from_file = over_tls(
        &sidecar,
        &[
            "claim",
            NAMESPACE,
            "order-2",
            "--auth-token-file",
            &token_file,
        ],
        &[],
    )
    .await;
    from_file.assert_exit(0);

    let both = over_tls(
        &sidecar,
        &[
            "claim",
            NAMESPACE,
            "order-3",
            "--auth-token-file",
            &token_file,
        ],
        &[("ONCEWARD_AUTH_TOKEN", "a-stale-token-in-the-environment")],
    )
    .await;
    both.assert_exit(0);
}

#[tokio::test]
async fn no_token_or_a_wrong_one_is_exit_6_unauthenticated_and_no_token_is_printed() {
    let sidecar = Secured::spawn().await;

    let none = over_tls(&sidecar, &["claim", NAMESPACE, "order-4"], &[]).await;
    none.assert_exit(6);
    assert!(none.stderr.contains("UNAUTHENTICATED"), "{}", none.stderr);

    let wrong = "a-wrong-token-1234567890";
    let refused = over_tls(
        &sidecar,
        &["claim", NAMESPACE, "order-4", "--json"],
        &[("ONCEWARD_AUTH_TOKEN", wrong)],
    )
    .await;
    let json = refused.assert_exit(6).json();
    assert_eq!(json["error"]["code"], "UNAUTHENTICATED");
    assert_never_printed(&refused, wrong);

    // Nothing was claimed: the right token acquires the key now.
    over_tls(
        &sidecar,
        &["claim", NAMESPACE, "order-4"],
        &[("ONCEWARD_AUTH_TOKEN", TOKEN)],
    )
    .await
    .assert_exit(0);
}

#[tokio::test]
async fn a_namespace_not_granted_to_the_tenant_is_exit_6_permission_denied() {
    let sidecar = Secured::spawn().await;
    let env = [("ONCEWARD_AUTH_TOKEN", TOKEN)];

    let denied = over_tls(
        &sidecar,
        &["claim", NOT_GRANTED, "welcome-1", "--json"],
        &env,
    )
    .await;
    let json = denied.assert_exit(6).json();
    assert_eq!(json["error"]["code"], "PERMISSION_DENIED");

    let lookup = over_tls(&sidecar, &["lookup", NOT_GRANTED, "welcome-1"], &env).await;
    lookup.assert_exit(6);
    assert!(
        lookup.stderr.contains("PERMISSION_DENIED"),
        "{}",
        lookup.stderr
    );
}

#[tokio::test]
async fn a_missing_or_empty_token_file_is_a_configuration_error_exit_7() {
    let sidecar = Secured::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let empty = file_with(&dir, "empty-token", b"");

    let missing = over_tls(
        &sidecar,
        &[
            "claim",
            NAMESPACE,
            "k",
            "--auth-token-file",
            "/nonexistent/token",
        ],
        &[("ONCEWARD_AUTH_TOKEN", TOKEN)],
    )
    .await;
    missing.assert_exit(7);
    assert!(
        missing
            .stderr
            .contains("--auth-token-file /nonexistent/token"),
        "{}",
        missing.stderr
    );

    let json = over_tls(
        &sidecar,
        &[
            "claim",
            NAMESPACE,
            "k",
            "--auth-token-file",
            &empty,
            "--json",
        ],
        &[],
    )
    .await;
    let json = json.assert_exit(7).json();
    assert!(
        json["error"]["message"]
            .as_str()
            .expect("message")
            .contains("empty"),
        "{json}"
    );
}

/// `onceward ARGS`, no address: a command that does not talk to a sidecar.
async fn onceward_offline(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_onceward"))
        .args(args)
        .output()
        .await
        .expect("run the onceward binary");
    (
        output.status.code().expect("exited"),
        String::from_utf8(output.stdout).expect("UTF-8"),
    )
}

/// `token:` and `token_sha256:` from `new-tenant-token`'s output.
fn token_and_hash(stdout: &str) -> (String, String) {
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} line in {stdout:?}"))
            .trim()
            .to_owned()
    };
    (field("token:"), field("token_sha256:"))
}

#[tokio::test]
async fn new_tenant_token_prints_a_token_and_its_sha256_which_a_sidecar_then_accepts() {
    let (code, stdout) = onceward_offline(&["new-tenant-token"]).await;
    assert_eq!(code, 0);
    let (token, hash) = token_and_hash(&stdout);
    assert_eq!(hash, hex::encode(sha2::Sha256::digest(&token)));

    // The old name still works, and is not offered in the help any more.
    let (code, old) = onceward_offline(&["token"]).await;
    assert_eq!(code, 0);
    let (old_token, _) = token_and_hash(&old);
    assert_ne!(old_token, token, "a fresh token every time");
    let (_, help) = onceward_offline(&["--help"]).await;
    assert!(help.contains("new-tenant-token"), "{help}");
    assert!(
        !help
            .lines()
            .any(|line| line.trim_start().starts_with("token ")),
        "{help}"
    );

    // The hash goes into the config, the token to the caller.
    let dir = tempfile::tempdir().unwrap();
    let config = file_with(
        &dir,
        "tenants.toml",
        format!(
            "[[tenants]]\nname = \"jobs\"\ntoken_sha256 = \"{hash}\"\nnamespaces = [\"jobs\"]\n"
        )
        .as_bytes(),
    );
    let app = TestApp::builder().tenants(config).spawn().await;
    let addr = format!("http://{}", app.addr);
    onceward_env(&addr, &["claim", "jobs", "nightly"], &[], None)
        .await
        .assert_exit(6);
    onceward_env(
        &addr,
        &["claim", "jobs", "nightly"],
        &[("ONCEWARD_AUTH_TOKEN", &token)],
        None,
    )
    .await
    .assert_exit(0);
}
