//! The command-line client: the real `onceward` binary, run as a child process against
//! a sidecar from the harness, judged by its stdout and exit code, as a script would.

use std::path::Path;
use std::process::Stdio;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

use crate::harness::*;

/// One run of the binary.
struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    /// stdout's first line.
    fn line(&self) -> String {
        let text = String::from_utf8_lossy(&self.stdout);
        text.lines().next().unwrap_or_default().to_owned()
    }

    /// `name=value` from the first line.
    fn field(&self, name: &str) -> Option<String> {
        self.line()
            .split(' ')
            .find_map(|pair| pair.strip_prefix(&format!("{name}=")).map(str::to_owned))
    }

    /// stdout as the one JSON object `--json` promises (serde_json refuses trailing
    /// values, so a second object would fail here).
    fn json(&self) -> Value {
        let value: Value = serde_json::from_slice(&self.stdout).unwrap_or_else(|error| {
            panic!(
                "stdout is one JSON value ({error}): {:?}",
                String::from_utf8_lossy(&self.stdout)
            )
        });
        assert!(value.is_object(), "{value}");
        value
    }

    fn assert_exit(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            code,
            "exit code; stdout {:?}, stderr {:?}",
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        );
        self
    }
}

/// `onceward ARGS --addr=<the app>`.
async fn onceward(app: &TestApp, args: &[&str]) -> Run {
    onceward_at(&format!("http://{}", app.addr), args, None).await
}

/// The same, with `stdin` piped in.
async fn onceward_stdin(app: &TestApp, args: &[&str], stdin: &[u8]) -> Run {
    onceward_at(&format!("http://{}", app.addr), args, Some(stdin)).await
}

async fn onceward_at(addr: &str, args: &[&str], stdin: Option<&[u8]>) -> Run {
    // tokio's Command, not std's: the sidecar runs on this test's runtime, and a
    // blocking wait would starve it.
    let mut child = Command::new(env!("CARGO_BIN_EXE_onceward"))
        .args(args)
        .arg(format!("--addr={addr}"))
        .env_remove("ONCEWARD_ADDR")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the onceward binary");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(bytes).await.expect("write stdin");
    }
    let output = child.wait_with_output().await.expect("wait for onceward");
    Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A file holding `bytes`, removed with the returned directory.
fn file_with(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write a test file");
    path.to_str().expect("a UTF-8 path").to_owned()
}

fn token_of(run: &Run) -> String {
    run.field("token").expect("a token= field")
}

fn rfc3339(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().expect("a timestamp string"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

#[tokio::test]
async fn claim_acquires_then_answers_in_progress_and_after_complete_replays_the_exact_bytes() {
    let Setup { app, db: _db } = spawn_app().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let stored = b"\x00charge ch_123\n\xff trailing, no newline";
    let receipt = file_with(&dir, "receipt", stored);

    let acquired = onceward(&app, &["claim", "payments", "order-1"]).await;
    acquired.assert_exit(0);
    assert!(
        acquired.line().starts_with("ACQUIRED token="),
        "{}",
        acquired.line()
    );
    assert_eq!(acquired.field("served_by").as_deref(), Some("ledger"));
    let token = token_of(&acquired);
    assert!(token.parse::<u64>().expect("a number") > 0);

    let busy = onceward(&app, &["claim", "payments", "order-1"]).await;
    busy.assert_exit(10);
    assert!(
        busy.line().starts_with("IN_PROGRESS retry_after="),
        "{}",
        busy.line()
    );

    let done = onceward(
        &app,
        &["complete", "payments", "order-1", "--token", &token],
    )
    .await;
    done.assert_exit(0);
    // Without --response-file the stored response is empty: the header line alone.
    let replay = onceward(&app, &["claim", "payments", "order-1"]).await;
    replay.assert_exit(11);
    assert_eq!(replay.stdout, format!("{}\n", replay.line()).as_bytes());

    let acquired = onceward(&app, &["claim", "payments", "order-2"]).await;
    let token = token_of(acquired.assert_exit(0));
    let done = onceward(
        &app,
        &[
            "complete",
            "payments",
            "order-2",
            "--token",
            &token,
            "--response-file",
            &receipt,
            "--retention",
            "1h",
        ],
    )
    .await;
    done.assert_exit(0);
    assert!(
        done.line().starts_with("COMPLETED expires_at="),
        "{}",
        done.line()
    );
    let expires_at = rfc3339(&Value::from(done.field("expires_at").expect("expires_at")));
    let in_an_hour = Utc::now() + chrono::Duration::hours(1);
    assert!(
        (expires_at - in_an_hour).num_seconds().abs() < 60,
        "{expires_at}"
    );

    let replay = onceward(&app, &["claim", "payments", "order-2"]).await;
    replay.assert_exit(11);
    let header = replay.line();
    assert!(
        header.starts_with("COMPLETED served_by=cache completed_at="),
        "{header}"
    );
    let mut expected = format!("{header}\n").into_bytes();
    expected.extend_from_slice(stored);
    assert_eq!(
        replay.stdout, expected,
        "the header line, then the exact bytes"
    );
}

#[tokio::test]
async fn claim_json_reports_each_outcome_with_stable_fields_and_the_response_as_base64_and_text() {
    let Setup { app, db: _db } = spawn_app().await;

    let acquired = onceward(&app, &["claim", "mail", "welcome-7", "--json"]).await;
    let json = acquired.assert_exit(0).json();
    assert_eq!(json["outcome"], "ACQUIRED");
    assert_eq!(json["served_by"], "LEDGER");
    let token = json["fencing_token"].as_u64().expect("a numeric token");
    assert!(token > 0);
    assert!(json.get("response_base64").is_none());

    let busy = onceward(&app, &["claim", "mail", "welcome-7", "--json"]).await;
    let json = busy.assert_exit(10).json();
    assert_eq!(json["outcome"], "IN_PROGRESS");
    assert!(json["retry_after_ms"].as_u64().expect("retry_after_ms") > 0);
    assert!(
        json.get("fencing_token").is_none(),
        "a token only goes to its claimer"
    );

    // The response comes from stdin this time.
    let done = onceward_stdin(
        &app,
        &[
            "complete",
            "mail",
            "welcome-7",
            "--token",
            &token.to_string(),
            "--response-file",
            "-",
            "--json",
        ],
        "sent ✉ msg-9".as_bytes(),
    )
    .await;
    let json = done.assert_exit(0).json();
    assert_eq!(json["outcome"], "COMPLETED");
    assert!(rfc3339(&json["expires_at"]) > Utc::now());

    let replay = onceward(&app, &["claim", "mail", "welcome-7", "--json"]).await;
    let json = replay.assert_exit(11).json();
    assert_eq!(json["outcome"], "COMPLETED");
    assert_eq!(json["served_by"], "CACHE");
    assert_eq!(json["response"], "sent ✉ msg-9");
    let decoded = BASE64
        .decode(json["response_base64"].as_str().expect("base64"))
        .expect("valid base64");
    assert_eq!(decoded, "sent ✉ msg-9".as_bytes());
    assert!(rfc3339(&json["completed_at"]) <= Utc::now());

    // Bytes that are not UTF-8 come as base64 only.
    let token = onceward(&app, &["claim", "mail", "binary", "--json"])
        .await
        .json()["fencing_token"]
        .to_string();
    onceward_stdin(
        &app,
        &[
            "complete",
            "mail",
            "binary",
            "--token",
            &token,
            "--response-file",
            "-",
        ],
        b"\xff\x00",
    )
    .await
    .assert_exit(0);
    let json = onceward(&app, &["claim", "mail", "binary", "--json"])
        .await
        .json();
    assert_eq!(json["response_base64"], "/wA=");
    assert!(json.get("response").is_none(), "{json}");
}

#[tokio::test]
async fn a_different_file_behind_fingerprint_of_is_a_fingerprint_mismatch_and_the_same_bytes_are_not()
 {
    let Setup { app, db: _db } = spawn_app().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let first = file_with(&dir, "a.json", br#"{"amount":100}"#);
    let second = file_with(&dir, "b.json", br#"{"amount":999}"#);

    onceward(
        &app,
        &["claim", "payments", "order-5", "--fingerprint-of", &first],
    )
    .await
    .assert_exit(0);

    let mismatch = onceward(
        &app,
        &["claim", "payments", "order-5", "--fingerprint-of", &second],
    )
    .await;
    mismatch.assert_exit(12);
    assert!(
        mismatch.line().starts_with("FINGERPRINT_MISMATCH"),
        "{}",
        mismatch.line()
    );
    let json = onceward(
        &app,
        &[
            "claim",
            "payments",
            "order-5",
            "--fingerprint-of",
            &second,
            "--json",
        ],
    )
    .await;
    assert_eq!(
        json.assert_exit(12).json()["outcome"],
        "FINGERPRINT_MISMATCH"
    );

    // The same bytes on stdin hash the same as the file: a duplicate, not a mismatch.
    let same = onceward_stdin(
        &app,
        &["claim", "payments", "order-5", "--fingerprint-of", "-"],
        br#"{"amount":100}"#,
    )
    .await;
    same.assert_exit(10);

    // And the ledger stored the SHA-256 of the file.
    let found = onceward(&app, &["lookup", "payments", "order-5", "--json"]).await;
    let fingerprint = found.assert_exit(0).json()["record"]["fingerprint_hex"].clone();
    assert_eq!(fingerprint, sha256_hex(br#"{"amount":100}"#));
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[tokio::test]
async fn release_frees_the_key_for_a_new_claim_with_a_larger_token() {
    let Setup { app, db: _db } = spawn_app().await;

    let first = onceward(&app, &["claim", "jobs", "nightly"]).await;
    let first_token = token_of(first.assert_exit(0));
    let released = onceward(
        &app,
        &["release", "jobs", "nightly", "--token", &first_token],
    )
    .await;
    released.assert_exit(0);
    assert_eq!(released.line(), "RELEASED");

    let again = onceward(&app, &["claim", "jobs", "nightly", "--json"]).await;
    let json = again.assert_exit(0).json();
    assert_eq!(json["outcome"], "ACQUIRED");
    let second_token = json["fencing_token"].as_u64().expect("token");
    assert!(second_token > first_token.parse::<u64>().expect("token"));

    let released = onceward(
        &app,
        &[
            "release",
            "jobs",
            "nightly",
            "--token",
            &second_token.to_string(),
            "--json",
        ],
    )
    .await;
    assert_eq!(released.assert_exit(0).json()["outcome"], "RELEASED");
    onceward(&app, &["claim", "jobs", "nightly"])
        .await
        .assert_exit(0);
}

#[tokio::test]
async fn extend_pushes_the_lease_out_on_the_ledger_clock() {
    let Setup { app, db: _db } = spawn_app().await;

    let claimed = onceward(&app, &["claim", "jobs", "export", "--lease", "2s"]).await;
    let token = token_of(claimed.assert_exit(0));

    let extended = onceward(
        &app,
        &[
            "extend", "jobs", "export", "--token", &token, "--lease", "10m",
        ],
    )
    .await;
    extended.assert_exit(0);
    assert!(
        extended.line().starts_with("EXTENDED lease_expires_at="),
        "{}",
        extended.line()
    );

    let extended = onceward(
        &app,
        &[
            "extend", "jobs", "export", "--token", &token, "--lease", "5m", "--json",
        ],
    )
    .await;
    let json = extended.assert_exit(0).json();
    assert_eq!(json["outcome"], "EXTENDED");
    let lease_expires_at = rfc3339(&json["lease_expires_at"]);
    let in_five_minutes = Utc::now() + chrono::Duration::minutes(5);
    assert!((lease_expires_at - in_five_minutes).num_seconds().abs() < 60);

    let found = onceward(&app, &["lookup", "jobs", "export", "--json"]).await;
    let record = &found.assert_exit(0).json()["record"];
    assert_eq!(rfc3339(&record["lease_expires_at"]), lease_expires_at);
}

#[tokio::test]
async fn a_stale_token_is_failed_precondition_exit_4_for_complete_release_and_extend() {
    let Setup { app, db: _db } = spawn_app().await;

    let first = token_of(
        onceward(&app, &["claim", "jobs", "sync"])
            .await
            .assert_exit(0),
    );
    onceward(&app, &["release", "jobs", "sync", "--token", &first])
        .await
        .assert_exit(0);
    let current = token_of(
        onceward(&app, &["claim", "jobs", "sync"])
            .await
            .assert_exit(0),
    );
    assert_ne!(first, current);

    for command in ["complete", "release", "extend"] {
        let stale = onceward(&app, &[command, "jobs", "sync", "--token", &first]).await;
        stale.assert_exit(4);
        assert!(
            stale.stdout.is_empty(),
            "errors go to stderr without --json"
        );
        assert!(
            stale.stderr.contains("FAILED_PRECONDITION"),
            "{}",
            stale.stderr
        );

        let stale = onceward(
            &app,
            &[command, "jobs", "sync", "--token", &first, "--json"],
        )
        .await;
        let json = stale.assert_exit(4).json();
        assert_eq!(json["error"]["code"], "FAILED_PRECONDITION", "{command}");
        assert!(
            json["error"]["message"]
                .as_str()
                .expect("message")
                .contains("fencing_token")
        );
    }

    // The current holder was not disturbed.
    onceward(&app, &["complete", "jobs", "sync", "--token", &current])
        .await
        .assert_exit(0);
}

#[tokio::test]
async fn bad_input_is_exit_3_naming_the_field_and_a_malformed_command_line_is_exit_2() {
    let Setup { app, db: _db } = spawn_app().await;

    let bad_namespace = onceward(&app, &["claim", "has space", "k"]).await;
    bad_namespace.assert_exit(3);
    assert!(
        bad_namespace.stderr.contains("INVALID_ARGUMENT: namespace"),
        "{}",
        bad_namespace.stderr
    );

    let json = onceward(&app, &["lookup", "has space", "k", "--json"]).await;
    let json = json.assert_exit(3).json();
    assert_eq!(json["error"]["code"], "INVALID_ARGUMENT");
    assert!(
        json["error"]["message"]
            .as_str()
            .expect("message")
            .starts_with("namespace:")
    );

    // Over the sidecar's --max-lease (1h by default).
    let long_lease = onceward(&app, &["claim", "ns", "k", "--lease", "2h", "--json"]).await;
    let json = long_lease.assert_exit(3).json();
    assert!(
        json["error"]["message"]
            .as_str()
            .expect("message")
            .starts_with("lease:")
    );

    // An unreadable input file is the caller's mistake too, found before connecting.
    let missing = onceward(
        &app,
        &[
            "claim",
            "ns",
            "k",
            "--fingerprint-of",
            "/nonexistent/payload",
            "--json",
        ],
    )
    .await;
    let json = missing.assert_exit(3).json();
    assert_eq!(json["error"]["code"], "INVALID_ARGUMENT");
    onceward(&app, &["lookup", "ns", "k"]).await.assert_exit(13);

    // clap's usage errors: a duration it cannot parse, a missing --token.
    onceward(&app, &["claim", "ns", "k", "--lease", "soon"])
        .await
        .assert_exit(2);
    onceward(&app, &["complete", "ns", "k"])
        .await
        .assert_exit(2);
}

#[tokio::test]
async fn lookup_is_exit_0_with_the_record_when_found_and_13_when_not() {
    let Setup { app, db: _db } = spawn_app().await;

    let missing = onceward(&app, &["lookup", "payments", "order-9"]).await;
    missing.assert_exit(13);
    assert_eq!(missing.stdout, b"NOT_FOUND\n");
    let json = onceward(&app, &["lookup", "payments", "order-9", "--json"]).await;
    assert_eq!(
        json.assert_exit(13).json(),
        serde_json::json!({"outcome": "NOT_FOUND"})
    );

    let token = token_of(
        onceward(&app, &["claim", "payments", "order-9"])
            .await
            .assert_exit(0),
    );
    let held = onceward(&app, &["lookup", "payments", "order-9"]).await;
    held.assert_exit(0);
    assert!(
        held.line()
            .starts_with("FOUND state=IN_PROGRESS created_at="),
        "{}",
        held.line()
    );
    assert!(held.field("lease_expires_at").is_some());
    let json = onceward(&app, &["lookup", "payments", "order-9", "--json"]).await;
    let json = json.assert_exit(0).json();
    assert_eq!(json["outcome"], "FOUND");
    assert_eq!(json["record"]["state"], "IN_PROGRESS");
    assert_eq!(json["record"]["namespace"], "payments");
    assert_eq!(json["record"]["key"], "order-9");
    assert!(
        json["record"].get("fencing_token").is_none(),
        "never the token"
    );

    onceward_stdin(
        &app,
        &[
            "complete",
            "payments",
            "order-9",
            "--token",
            &token,
            "--response-file",
            "-",
        ],
        b"receipt-9",
    )
    .await
    .assert_exit(0);
    let done = onceward(&app, &["lookup", "payments", "order-9"]).await;
    done.assert_exit(0);
    assert!(
        done.line().starts_with("FOUND state=COMPLETED"),
        "{}",
        done.line()
    );
    assert!(done.stdout.ends_with(b"\nreceipt-9"));
    let json = onceward(&app, &["lookup", "payments", "order-9", "--json"]).await;
    let record = &json.assert_exit(0).json()["record"];
    assert_eq!(record["state"], "COMPLETED");
    assert_eq!(record["response"], "receipt-9");
    assert!(rfc3339(&record["completed_at"]) <= Utc::now());
}

#[tokio::test]
async fn nothing_listening_on_addr_is_unavailable_exit_5() {
    let addr = format!("http://127.0.0.1:{}", free_port());

    let human = onceward_at(&addr, &["claim", "payments", "order-1"], None).await;
    human.assert_exit(5);
    assert!(human.stdout.is_empty());
    assert!(
        human.stderr.contains("UNAVAILABLE: cannot connect"),
        "{}",
        human.stderr
    );

    let json = onceward_at(&addr, &["lookup", "payments", "order-1", "--json"], None).await;
    let json = json.assert_exit(5).json();
    assert_eq!(json["error"]["code"], "UNAVAILABLE");
}

#[tokio::test]
async fn the_address_comes_from_onceward_addr_when_addr_is_not_given() {
    let Setup { app, db: _db } = spawn_app().await;
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
    let readme = include_str!("../../README.md");
    let (_, after) = readme
        .split_once("Guarding a side effect in a shell script:")
        .expect("the README has the example");
    let (_, script) = after.split_once("```sh\n").expect("a sh block");
    script.split_once("```").expect("a closed block").0
}

#[tokio::test]
async fn a_shell_script_guarding_a_side_effect_runs_it_once_and_replays_the_receipt() {
    let Setup { app, db: _db } = spawn_app().await;
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
