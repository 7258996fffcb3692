//! SECURITY.md followed to the letter, as a new operator would: its `openssl` block run
//! as written, `onceward new-tenant-token` for the tenant, `onceward serve` with the
//! flags it gives, then `onceward health` and `onceward claim` with the token and the
//! certificates — all the real binary.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use crate::harness::*;

/// The shell block that makes the CA and the certificates.
fn certificate_block() -> String {
    let security = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/SECURITY.md"))
        .expect("SECURITY.md");
    let after = security
        .split_once("To try it out with a CA of your own")
        .expect("SECURITY.md shows how to make certificates")
        .1;
    let block = after.split_once("```sh\n").expect("a sh block").1;
    block
        .split_once("```")
        .expect("the block ends")
        .0
        .to_owned()
}

fn onceward(dir: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_onceward"));
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("ONCEWARD_")) {
        command.env_remove(name);
    }
    command.current_dir(dir).kill_on_drop(true);
    command
}

async fn run(command: &mut tokio::process::Command) -> Output {
    tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("finishes")
        .expect("runs")
}

#[tokio::test]
async fn security_md_followed_as_written_gives_a_sidecar_the_cli_reaches_with_token_and_certificates()
 {
    let dir = tempfile::tempdir().unwrap();
    let made = run(tokio::process::Command::new("bash")
        .args(["-euc", &certificate_block()])
        .current_dir(dir.path()))
    .await;
    assert!(
        made.status.success(),
        "the openssl block failed (is openssl installed?): {}",
        String::from_utf8_lossy(&made.stderr)
    );

    let minted = run(onceward(dir.path()).arg("new-tenant-token")).await;
    let minted = String::from_utf8(minted.stdout).unwrap();
    let field = |name: &str| {
        minted
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .map(|value| value.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {minted:?}"))
    };
    let (token, token_sha256) = (field("token"), field("token_sha256"));
    std::fs::write(
        dir.path().join("onceward.toml"),
        format!(
            "[[tenants]]\nname = \"payments\"\ntoken_sha256 = \"{token_sha256}\"\nnamespaces = [\"payments\", \"refunds\"]\n"
        ),
    )
    .unwrap();

    let port = free_port();
    let metrics = format!("127.0.0.1:{}", free_port());
    let _sidecar = onceward(dir.path())
        .args(["serve", "--config", "onceward.toml", "--require-auth"])
        .args(["--tls-cert", "server.pem", "--tls-key", "server.key"])
        .args(["--tls-client-ca", "ca.pem"])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            &metrics,
        ])
        .stderr(Stdio::null())
        .spawn()
        .expect("onceward serve");
    let addr = format!("https://localhost:{port}");

    // Mutual TLS: every call presents the client certificate, the health check too.
    let tls = [
        "--addr",
        &addr,
        "--ca-cert",
        "ca.pem",
        "--client-cert",
        "client.pem",
        "--client-key",
        "client.key",
    ];
    let healthy = eventually(Duration::from_secs(20), || {
        let mut health = onceward(dir.path());
        health.arg("health").args(tls);
        async move { run(&mut health).await.status.success() }
    })
    .await;
    assert!(healthy, "onceward health never exited 0");

    let claimed = run(onceward(dir.path())
        .args(["claim", "payments", "order-1"])
        .args(tls)
        .env("ONCEWARD_AUTH_TOKEN", &token))
    .await;
    let stdout = String::from_utf8_lossy(&claimed.stdout);
    assert_eq!(
        claimed.status.code(),
        Some(0),
        "{stdout} {:?}",
        claimed.stderr
    );
    assert!(stdout.starts_with("ACQUIRED token="), "{stdout}");

    let anonymous = run(onceward(dir.path())
        .args(["claim", "payments", "order-2"])
        .args(tls))
    .await;
    assert_eq!(anonymous.status.code(), Some(6), "no token: not allowed");

    let no_certificate = run(onceward(dir.path())
        .args([
            "claim",
            "payments",
            "order-3",
            "--addr",
            &addr,
            "--ca-cert",
            "ca.pem",
        ])
        .env("ONCEWARD_AUTH_TOKEN", &token))
    .await;
    assert_eq!(
        no_certificate.status.code(),
        Some(7),
        "no client certificate: misconfigured, not unavailable: {}",
        String::from_utf8_lossy(&no_certificate.stderr)
    );
}
