//! The PHP example (`examples/php/once.php`: curl and JSON, the Connect protocol) guards
//! its side effect against a real sidecar: run twice, the effect happens once. Skipped,
//! saying why, when `php` with its curl extension is not installed (`.ci/run` installs
//! both).

use std::process::Command;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_php_example_runs_its_effect_once_through_connect() {
    let has_curl = Command::new("php")
        .args(["-r", "exit(function_exists('curl_init') ? 0 : 1);"])
        .status();
    if !matches!(has_curl, Ok(status) if status.success()) {
        println!("skipped: no `php` with the curl extension (apt-get install php-cli php-curl)");
        return;
    }
    let app = TestApp::builder().spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let effects = dir.path().join("effects.log");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/php/once.php");
    let mut printed = Vec::new();
    for _ in 0..2 {
        let output = Command::new("php")
            .arg(script)
            .arg(format!("http://{}", app.addr))
            .env("EFFECT_LOG", &effects)
            .output()
            .expect("php runs");
        assert!(
            output.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        printed.push(String::from_utf8(output.stdout).unwrap().trim().to_owned());
    }
    assert_eq!(printed, ["sent sms-5", "already sent sms-5"]);
    let log = std::fs::read_to_string(&effects).unwrap();
    assert_eq!(log.lines().count(), 1, "the effect ran once: {log}");
}
