//! The TypeScript client's suite (`clients/typescript/scripts/test.sh`: `npm ci` from
//! the committed lock file, the freshness check of the generated code and `dist/`,
//! `node --test`) against this build's sidecar binary, so the one test command covers
//! it, the official Connect clients for Node and `fetch` among its callers. It fails,
//! never skips, when Node or npm is missing.

use std::process::Command;

#[test]
fn the_typescript_client_passes_its_suite_against_the_built_sidecar() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/clients/typescript/scripts/test.sh"
    );
    let output = Command::new("bash")
        .arg(script)
        .env("ONCEWARD_BIN", env!("CARGO_BIN_EXE_onceward"))
        .output()
        .expect("bash runs clients/typescript/scripts/test.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the TypeScript suite failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // Guard against a suite that "passes" by running nothing.
    let count = |label: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(&format!("# {label} ")))
            .and_then(|n| n.trim().parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no `# {label}` line:\n{stdout}"))
    };
    assert!(count("pass") > 0, "node --test ran no test:\n{stdout}");
    assert_eq!(count("fail"), 0, "{stdout}");
    assert_eq!(count("skipped"), 0, "node --test skipped tests:\n{stdout}");
}
