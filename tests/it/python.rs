//! The Python client's suite (`clients/python/scripts/test.sh`: venv, pinned deps, stub
//! freshness check, pytest) against this build's sidecar binary, so the one test
//! command covers it. It fails, never skips, when Python or its packages are missing.

use std::process::Command;

#[test]
fn the_python_client_passes_its_suite_against_the_built_sidecar() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/clients/python/scripts/test.sh"
    );
    let output = Command::new("bash")
        .arg(script)
        .arg("-q")
        .env("ONCEWARD_BIN", env!("CARGO_BIN_EXE_onceward"))
        .output()
        .expect("bash runs clients/python/scripts/test.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Python suite failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // Guard against a suite that "passes" by collecting nothing.
    assert!(stdout.contains(" passed"), "pytest ran no test:\n{stdout}");
    assert!(
        !stdout.contains(" skipped"),
        "pytest skipped tests:\n{stdout}"
    );
}
