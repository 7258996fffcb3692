//! What the client prints: one line for people (the outcome first, then `name=value`
//! pairs, then any stored response as raw bytes), or exactly one JSON object with
//! `--json`. Errors go to stderr, and with `--json` also to stdout as
//! `{"error":{"code":…,"message":…}}`, so a script reading stdout always gets one object.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, SecondsFormat};
use serde::Serialize;

use super::exit::{Exit, Failure};

/// What one successful invocation prints and how it exits.
#[derive(Debug)]
pub struct Report {
    /// How the process exits.
    pub exit: Exit,
    /// The line for people, without its newline.
    pub line: String,
    /// Written after the line exactly as it is (a stored response): no newline is
    /// added, so `tail -n +2` gives back the bytes that were completed.
    pub body: Vec<u8>,
    /// The object printed with `--json`.
    pub json: serde_json::Value,
}

impl Report {
    /// A report whose `--json` form is `json`.
    pub fn new(exit: Exit, line: String, json: &impl Serialize) -> Self {
        Self {
            exit,
            line,
            body: Vec::new(),
            json: serde_json::to_value(json).expect("output types serialize to JSON"),
        }
    }

    /// The same report with raw bytes after the line.
    pub fn with_body(self, body: Vec<u8>) -> Self {
        Self { body, ..self }
    }
}

/// A stored response in JSON: always as base64, and as text too when it is UTF-8.
#[derive(Debug, Serialize)]
pub struct ResponseJson {
    /// The exact bytes, base64 (standard alphabet, padded).
    pub response_base64: String,
    /// The bytes as text, present only when they are valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
}

impl ResponseJson {
    /// Encodes `bytes` both ways.
    pub fn new(bytes: &[u8]) -> Self {
        Self {
            response_base64: BASE64.encode(bytes),
            response: std::str::from_utf8(bytes).ok().map(str::to_owned),
        }
    }
}

/// Prints the result and returns the process exit code.
pub fn print(result: Result<Report, Failure>, json: bool) -> i32 {
    let exit = match &result {
        Ok(report) => report.exit,
        Err(failure) => {
            eprintln!("onceward: {}: {}", failure.code, failure.message);
            failure.exit
        }
    };
    match write_stdout(&result, json) {
        Ok(()) => exit.code(),
        Err(error) => {
            // A script that cannot read the answer must not act on the exit code alone:
            // an ACQUIRED without its token could never be completed.
            eprintln!("onceward: cannot write the output: {error}");
            Exit::Other.code()
        }
    }
}

fn write_stdout(result: &Result<Report, Failure>, json: bool) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match (result, json) {
        (Ok(report), true) => writeln!(stdout, "{}", report.json)?,
        (Ok(report), false) => {
            writeln!(stdout, "{}", report.line)?;
            stdout.write_all(&report.body)?;
        }
        (Err(failure), true) => {
            let error = serde_json::json!({
                "error": { "code": failure.code, "message": failure.message }
            });
            writeln!(stdout, "{error}")?;
        }
        (Err(_), false) => {}
    }
    // `std::process::exit` does not flush, and a body has no newline to flush on.
    stdout.flush()
}

/// A timestamp as RFC 3339 in UTC with milliseconds, e.g. `2025-01-31T12:00:00.250Z`.
pub fn timestamp(at: Option<&prost_types::Timestamp>) -> Option<String> {
    let at = at?;
    let nanos = u32::try_from(at.nanos).ok()?;
    DateTime::from_timestamp(at.seconds, nanos)
        .map(|at| at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// A protobuf duration as a std one; negative parts (never sent) count as zero.
pub fn duration(duration: Option<&prost_types::Duration>) -> Option<Duration> {
    let duration = duration?;
    Some(Duration::new(
        u64::try_from(duration.seconds).unwrap_or(0),
        u32::try_from(duration.nanos).unwrap_or(0),
    ))
}

/// Lowercase hex, for fingerprints.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Appends ` name=value` to a human line when the value is present.
pub fn push_field(line: &mut String, name: &str, value: Option<impl std::fmt::Display>) {
    if let Some(value) = value {
        // Writing to a String cannot fail.
        let _ = write!(line, " {name}={value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_always_base64_and_text_only_when_it_is_utf8() {
        let text = serde_json::to_value(ResponseJson::new(b"ok")).unwrap();
        assert_eq!(
            text,
            serde_json::json!({"response_base64": "b2s=", "response": "ok"})
        );
        let binary = serde_json::to_value(ResponseJson::new(b"\xff")).unwrap();
        assert_eq!(binary, serde_json::json!({"response_base64": "/w=="}));
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        let at = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 250_000_000,
        };
        assert_eq!(
            timestamp(Some(&at)).as_deref(),
            Some("2023-11-14T22:13:20.250Z")
        );
        assert_eq!(timestamp(None), None);
    }
}
