//! The binary as a shell script uses it: the address from `ONCEWARD_ADDR`, and the
//! README's example of guarding a side effect, run as written.

use std::path::Path;

use tokio::process::Command;

use crate::harness::*;

#[tokio::test]
async fn the_address_comes_from_onceward_addr_when_addr_is_not_given() {
    let app = TestApp::builder().spawn().await;
    let output = Command::new(env!("CARGO_BIN_EXE_onceward"))
        .args(["lookup", "payments", "order-1"])
        .env("ONCEWARD_ADDR", app.addr.to_string())
        .output()
        .await
        .expect("run onceward");
    assert_eq!(output.status.code(), Some(13), "{output:?}");
}

/// The README's example of guarding a side effect, so the README cannot drift from
/// what works.
fn readme_guard_script() -> &'static str {
    let readme = include_str!("../../../README.md");
    let (_, after) = readme
        .split_once("Guarding a side effect in a shell script:")
        .expect("the README has the example");
    let (_, script) = after.split_once("```sh\n").expect("a sh block");
    script.split_once("```").expect("a closed block").0
}

#[tokio::test]
async fn a_shell_script_guarding_a_side_effect_runs_it_once_and_replays_the_receipt() {
    let app = TestApp::builder().spawn().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let charges = dir.path().join("charges");
    let script = format!(
        "charge_card() {{ echo \"charged $1\" >> {charges:?}; echo \"receipt for $1\"; }}\n{}",
        readme_guard_script()
    );
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_onceward"))
        .parent()
        .expect("bin dir");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let mut outputs = Vec::new();
    for _ in 0..2 {
        let output = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(dir.path())
            .env("PATH", &path)
            .env("ONCEWARD_ADDR", app.addr.to_string())
            .env("ORDER_ID", "42")
            .output()
            .await
            .expect("run sh");
        assert!(output.status.success(), "{output:?}");
        outputs.push(String::from_utf8(output.stdout).expect("UTF-8"));
    }

    let charged = std::fs::read_to_string(&charges).expect("the side effect ran");
    assert_eq!(charged, "charged 42\n", "exactly once");
    assert!(
        outputs[0].starts_with("COMPLETED expires_at="),
        "{}",
        outputs[0]
    );
    assert_eq!(
        outputs[1], "receipt for 42\n",
        "the second run replays the receipt"
    );
}
