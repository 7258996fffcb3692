//! The packaging, checked as far as a machine without a Docker engine or a Kubernetes
//! cluster allows: `deploy/kubernetes/*.yaml` parse, every onceward container's
//! command line is one the binary accepts (parsed by the same `Cli` as `onceward`
//! itself) and every `ONCEWARD_*` variable it sets is one the subcommand's `--help`
//! lists; every `serve` container has gRPC readiness and liveness probes on its
//! `--listen` port, resource requests, and a termination grace period longer than its
//! drain (`--rpc-timeout`); the Dockerfile is multi-stage, runs as a non-root user and
//! checks its health with `onceward health`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::Parser as _;
use onceward::command::{Cli, Command as Subcommand};
use serde_json::Value;

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every document of every manifest, with the file it came from.
fn manifests() -> Vec<(String, Value)> {
    let dir = repository().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let mut documents = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("manifest");
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(document)
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            documents.push((name.clone(), value));
        }
    }
    documents
}

/// The pod spec of a workload (Deployment, CronJob), if it has one.
fn pod_spec(document: &Value) -> Option<&Value> {
    match document["kind"].as_str()? {
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => {
            Some(&document["spec"]["template"]["spec"])
        }
        "CronJob" => Some(&document["spec"]["jobTemplate"]["spec"]["template"]["spec"]),
        _ => None,
    }
}

/// `onceward <subcommand> --help`, from the built binary.
fn help(subcommand: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_onceward"))
        .args([subcommand, "--help"])
        .output()
        .expect("run onceward");
    assert!(output.status.success(), "onceward {subcommand} --help");
    String::from_utf8(output.stdout).expect("utf-8")
}

/// Whether the help text lists this flag, e.g. `--listen`.
fn lists_flag(help: &str, flag: &str) -> bool {
    help.lines().any(|line| {
        line.trim_start()
            .split([' ', ','])
            .any(|word| word == flag || word.strip_suffix('=') == Some(flag))
    })
}

/// Checks one onceward command line (argv without the program) against the binary's
/// help and its parser; the parsed command.
fn check_command_line(origin: &str, argv: &[String], env: &[String]) -> Subcommand {
    let subcommand = argv
        .first()
        .unwrap_or_else(|| panic!("{origin}: no subcommand"));
    let help = help(subcommand);
    // A flag's value in the next argument is checked by the parser below.
    for arg in argv[1..].iter().filter(|arg| arg.starts_with("--")) {
        let flag = arg.split('=').next().unwrap();
        assert!(
            lists_flag(&help, flag),
            "{origin}: `onceward {subcommand} --help` has no {flag}"
        );
    }
    for name in env {
        assert!(
            // `[env: NAME=]`, or `[env: NAME]` for a variable whose value is hidden.
            help.contains(&format!("[env: {name}=")) || help.contains(&format!("[env: {name}]")),
            "{origin}: `onceward {subcommand}` reads no {name}"
        );
    }
    let parsed =
        Cli::try_parse_from(std::iter::once("onceward".to_owned()).chain(argv.iter().cloned()))
            .unwrap_or_else(|error| panic!("{origin}: onceward refuses {argv:?}: {error}"));
    parsed.command
}

/// The `ONCEWARD_*` variables a container sets.
fn onceward_env(container: &Value) -> Vec<String> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|var| var["name"].as_str())
        .filter(|name| name.starts_with("ONCEWARD_"))
        .map(str::to_owned)
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| item.as_str().expect("a string").to_owned())
        .collect()
}

#[test]
fn every_manifest_runs_onceward_with_flags_it_has_probes_and_a_long_enough_grace() {
    let mut kinds = BTreeSet::new();
    let mut serving = 0;
    for (file, document) in manifests() {
        let kind = document["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no kind"));
        kinds.insert(kind.to_owned());
        let Some(pod) = pod_spec(&document) else {
            continue;
        };
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
        let containers = pod["containers"].as_array().into_iter().flatten();
        let sidecars = pod["initContainers"].as_array().into_iter().flatten();
        for container in containers.chain(sidecars.clone()) {
            let name = container["name"].as_str().unwrap_or("?");
            let origin = format!("{file} ({kind}), container {name}");
            assert!(
                container["resources"]["requests"].is_object(),
                "{origin}: no resource requests"
            );
            let image = container["image"].as_str().unwrap_or_default();
            if !image.starts_with("onceward:") && !image.contains("/onceward:") {
                continue;
            }
            assert_eq!(
                container["securityContext"]["allowPrivilegeEscalation"],
                Value::Bool(false),
                "{origin}"
            );
            let argv = strings(&container["args"]);
            let Subcommand::Serve(serve) =
                check_command_line(&origin, &argv, &onceward_env(container))
            else {
                continue;
            };
            serving += 1;
            let port = serve.listen.port();
            assert!(
                serve.listen.ip().is_unspecified(),
                "{origin}: the kubelet's probes reach the pod IP, so --listen must not be loopback"
            );
            for probe in ["readinessProbe", "livenessProbe"] {
                assert_eq!(
                    container[probe]["grpc"]["port"].as_u64(),
                    Some(u64::from(port)),
                    "{origin}: {probe} is a gRPC health check on --listen's port"
                );
            }
            assert!(
                Duration::from_secs(grace) > serve.rpc_timeout + Duration::from_secs(5),
                "{origin}: terminationGracePeriodSeconds {grace} leaves no margin over the \
                 drain (--rpc-timeout {:?})",
                serve.rpc_timeout
            );
            if sidecars.clone().any(|sidecar| sidecar == container) {
                assert_eq!(
                    container["restartPolicy"].as_str(),
                    Some("Always"),
                    "{origin}: an init container is a sidecar only with restartPolicy Always"
                );
            }
        }
    }
    assert!(serving >= 2, "a sidecar and a shared Deployment");
    for kind in ["Deployment", "Service", "CronJob"] {
        assert!(kinds.contains(kind), "no {kind} in deploy/kubernetes");
    }
}

#[test]
fn the_cronjob_runs_gc_once_at_a_time() {
    let cronjobs: Vec<Value> = manifests()
        .into_iter()
        .filter(|(_, document)| document["kind"] == "CronJob")
        .map(|(_, document)| document)
        .collect();
    assert_eq!(cronjobs.len(), 1);
    let cronjob = &cronjobs[0];
    assert_eq!(cronjob["spec"]["concurrencyPolicy"], "Forbid");
    let container = &pod_spec(cronjob).unwrap()["containers"][0];
    assert!(matches!(
        Cli::try_parse_from(
            std::iter::once("onceward".to_owned()).chain(strings(&container["args"]))
        )
        .map(|cli| cli.command),
        Ok(Subcommand::Gc(_))
    ));
}

/// The Dockerfile's instructions, continuation lines joined.
fn dockerfile() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repository().join("Dockerfile")).expect("Dockerfile");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                let (word, rest) = current.split_once(' ').unwrap_or((&current, ""));
                instructions.push((word.to_uppercase(), rest.trim().to_owned()));
                current.clear();
            }
        }
    }
    instructions
}

/// A JSON-array (exec form) instruction's arguments.
fn exec_form(origin: &str, rest: &str) -> Vec<String> {
    serde_json::from_str(rest).unwrap_or_else(|_| panic!("{origin} is not in exec form: {rest}"))
}

#[test]
fn the_image_is_multi_stage_non_root_and_checks_its_health_with_onceward_health() {
    let instructions = dockerfile();
    let of = |word: &str| -> Vec<&String> {
        instructions
            .iter()
            .filter(|(instruction, _)| instruction == word)
            .map(|(_, rest)| rest)
            .collect()
    };
    assert!(of("FROM").len() >= 2, "multi-stage");
    let runtime = of("FROM").last().unwrap().to_string();
    assert!(
        !runtime.starts_with("rust"),
        "the runtime image is not the toolchain: {runtime}"
    );
    let user = of("USER").last().expect("a USER").to_string();
    assert!(
        !["root", "0", "0:0"].contains(&user.as_str()),
        "runs as {user}"
    );

    let entrypoint = exec_form("ENTRYPOINT", of("ENTRYPOINT").last().expect("ENTRYPOINT"));
    assert_eq!(entrypoint, ["/usr/local/bin/onceward"]);
    let copies = of("COPY");
    assert!(
        copies
            .iter()
            .any(|copy| copy.ends_with("/usr/local/bin/onceward")),
        "the binary is copied where ENTRYPOINT runs it"
    );
    let command = exec_form("CMD", of("CMD").last().expect("CMD"));
    let env: Vec<String> = of("ENV")
        .iter()
        .flat_map(|rest| rest.split_whitespace())
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, _)| name.to_owned())
        .collect();
    assert!(!env.is_empty());
    assert!(matches!(
        check_command_line("Dockerfile CMD", &command, &env),
        Subcommand::Serve(_)
    ));

    let healthcheck = of("HEALTHCHECK").last().expect("a HEALTHCHECK").to_string();
    let (_, check) = healthcheck
        .split_once("CMD ")
        .expect("HEALTHCHECK … CMD [...]");
    let check = exec_form("HEALTHCHECK", check);
    assert_eq!(check[0], entrypoint[0]);
    assert!(matches!(
        check_command_line("Dockerfile HEALTHCHECK", &check[1..], &[]),
        Subcommand::Client(_)
    ));
    assert_eq!(check[1], "health");

    let ignored =
        std::fs::read_to_string(repository().join(".dockerignore")).expect(".dockerignore");
    assert!(
        ignored.lines().any(|line| line.trim() == "target"),
        "target/ stays out of the context"
    );
    assert!(
        Path::new(&repository().join("Cargo.lock")).exists(),
        "--locked needs Cargo.lock"
    );
}
