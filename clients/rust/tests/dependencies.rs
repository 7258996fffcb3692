//! A service that only calls onceward must not compile the server: the client crate's
//! dependency tree (every feature on) holds none of the server's dependencies.

use std::process::Command;

/// Crates only the server needs: its ledgers, hot tiers, metrics exporter, allocator,
/// gRPC extras and load generator. (tokio-rustls is not among them: the client speaks
/// TLS through tonic's `tls-ring`, which uses it.)
const SERVER_ONLY: &[&str] = &[
    "onceward",
    "sqlx",
    "redis",
    "moka",
    "quick_cache",
    "metrics",
    "metrics-exporter-prometheus",
    "mimalloc",
    "tonic-health",
    "tonic-reflection",
    "hdrhistogram",
    "rlimit",
    "clap",
];

/// `name version [features]` for every package the client crate builds with.
fn tree() -> Vec<String> {
    let output = Command::new(env!("CARGO"))
        .args(["tree", "--package", "onceward-client", "--all-features"])
        .args(["--edges", "normal,build", "--prefix", "none"])
        .args(["--format", "{p} [{f}]"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_client_crate_pulls_in_no_server_dependency() {
    let tree = tree();
    assert!(
        tree.iter().any(|line| line.starts_with("tonic ")),
        "the tree was read: {tree:?}"
    );
    for line in &tree {
        let name = line.split(' ').next().unwrap_or_default();
        assert!(
            !SERVER_ONLY.contains(&name),
            "the client crate depends on the server-only crate {name}: {line}"
        );
        if name == "tonic" {
            let features = line
                .split_once('[')
                .and_then(|(_, rest)| rest.split_once(']'))
                .map(|(features, _)| features.split(',').collect::<Vec<_>>())
                .unwrap_or_default();
            for feature in ["server", "router", "transport"] {
                assert!(
                    !features.contains(&feature),
                    "the client crate builds tonic with its {feature} feature: {line}"
                );
            }
        }
    }
}
