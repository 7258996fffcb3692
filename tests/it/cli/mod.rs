//! The command-line client: the real `onceward` binary, run as a child process against
//! a sidecar from the harness, judged by its stdout and exit code, as a script would.
//!
//! Layout: this file runs the binary and reads its output; `claim` (each outcome of a
//! claim and the complete that follows, human and JSON), `token` (release, extend and a
//! stale token), `exit_codes` (what a script branches on), `script` (the binary as a
//! shell script uses it, the README's example included), `auth` (the bearer token, from
//! the environment or a file, and exit 6), `tls` (`https://` addresses, mutual TLS, and
//! exit 7 for what will not work), `health` (`onceward health` as a probe).

mod auth;
mod claim;
mod exit_codes;
mod health;
mod policy;
mod script;
mod tls;
mod token;

use std::process::Stdio;

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
    onceward_env(addr, args, &[], stdin).await
}

/// `onceward ARGS --addr=ADDR` with these environment variables set. Nothing else of
/// onceward's is inherited from the test's environment: not ONCEWARD_ADDR, nor
/// ONCEWARD_AUTH_TOKEN.
async fn onceward_env(
    addr: &str,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&[u8]>,
) -> Run {
    // tokio's Command, not std's: the sidecar runs on this test's runtime, and a
    // blocking wait would starve it.
    let mut child = Command::new(env!("CARGO_BIN_EXE_onceward"))
        .args(args)
        .arg(format!("--addr={addr}"))
        .env_remove("ONCEWARD_ADDR")
        .env_remove("ONCEWARD_AUTH_TOKEN")
        .envs(env.iter().copied())
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
