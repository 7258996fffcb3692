//! `onceward claim`: claim a key before the side effect.
//!
//! The only command whose exit code is the answer itself: 0 acquired, 10 in progress,
//! 11 completed (the stored response follows), 12 fingerprint mismatch, 14 blocked by
//! the killswitch, 15 over budget.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::exit::{Exit, Failure};
use super::output::{self, Report, ResponseJson, push_field};
use super::{ConnectArgs, connect, input};
use crate::domain::{format_duration, parse_duration};
use crate::proto::{ClaimRequest, ClaimResponse, Outcome, Tier};

/// `onceward claim NAMESPACE KEY`.
#[derive(Debug, Clone, Args)]
pub struct ClaimArgs {
    /// The key's namespace: 1-64 bytes of [A-Za-z0-9._-].
    pub namespace: String,

    /// The idempotency key of one logical operation: 1-255 bytes, no control characters.
    pub key: String,

    /// Send the SHA-256 of this file ('-' for stdin) as the fingerprint, so reusing the
    /// key for a different payload answers FINGERPRINT_MISMATCH.
    #[arg(long, value_name = "FILE|-")]
    pub fingerprint_of: Option<PathBuf>,

    /// How long the claim holds the key if not completed, e.g. 30s (default: the
    /// sidecar's).
    #[arg(long, value_parser = parse_duration)]
    pub lease: Option<Duration>,

    /// Whose spend this is (a user, a recipient, a shop), for the namespace's budget.
    #[arg(long, default_value = "")]
    pub subject: String,

    /// Units of the namespace's budget this effect spends (cents, messages).
    #[arg(long, default_value_t = 0)]
    pub cost: u64,

    /// Where and how.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `claim --json`: `outcome` is always there; the rest depends on it.
#[derive(Debug, Serialize)]
struct ClaimJson {
    /// `ACQUIRED`, `IN_PROGRESS`, `COMPLETED`, `FINGERPRINT_MISMATCH`, `BLOCKED` or
    /// `OVER_BUDGET`.
    outcome: &'static str,
    /// `CACHE` or `LEDGER`: which tier decided.
    served_by: &'static str,
    /// With `ACQUIRED`: the token for complete, release and extend.
    #[serde(skip_serializing_if = "Option::is_none")]
    fencing_token: Option<u64>,
    /// With `IN_PROGRESS`: milliseconds to wait before claiming again; with
    /// `OVER_BUDGET`: until the subject's window resets.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u128>,
    /// With `BLOCKED`: the killswitch's reason; with `OVER_BUDGET`: the limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// With `COMPLETED`: when, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    completed_at: Option<String>,
    /// With `COMPLETED`: the stored response.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    response: Option<ResponseJson>,
}

pub(super) async fn run(args: ClaimArgs) -> Result<Report, Failure> {
    let fingerprint = match &args.fingerprint_of {
        Some(path) => input::sha256_of(path)?,
        None => Vec::new(),
    };
    let request = ClaimRequest {
        namespace: args.namespace,
        key: args.key,
        fingerprint,
        lease: args.lease.map(crate::proto::duration),
        // One try, but named like every client's, so the sidecar counts it.
        claimant: rand::random::<[u8; 16]>().to_vec(),
        attempt: 1,
        subject: args.subject,
        cost: args.cost,
    };
    let answer = connect(&args.connect)
        .await?
        .claim(request)
        .await?
        .into_inner();
    report(answer)
}

fn report(answer: ClaimResponse) -> Result<Report, Failure> {
    let outcome = Outcome::try_from(answer.outcome).unwrap_or(Outcome::Unspecified);
    let (name, exit) = match outcome {
        Outcome::Acquired => ("ACQUIRED", Exit::Ok),
        Outcome::InProgress => ("IN_PROGRESS", Exit::InProgress),
        Outcome::Completed => ("COMPLETED", Exit::Completed),
        Outcome::FingerprintMismatch => ("FINGERPRINT_MISMATCH", Exit::FingerprintMismatch),
        Outcome::Blocked => ("BLOCKED", Exit::Blocked),
        Outcome::OverBudget => ("OVER_BUDGET", Exit::OverBudget),
        Outcome::Unspecified => {
            return Err(Failure::local(
                Exit::Other,
                tonic::Code::Unknown,
                format!("the sidecar answered an unknown outcome {}", answer.outcome),
            ));
        }
    };
    let (served_by, served_by_label) = match Tier::try_from(answer.served_by) {
        Ok(Tier::Cache) => ("CACHE", "cache"),
        Ok(Tier::Ledger) => ("LEDGER", "ledger"),
        _ => ("UNSPECIFIED", "unspecified"),
    };
    let completed = outcome == Outcome::Completed;
    // The sidecar sends retry_after and completed_at only with the outcomes they belong
    // to; a token of 0 with any other outcome is the proto default, not a token.
    let retry_after = output::duration(answer.retry_after.as_ref());
    let json = ClaimJson {
        outcome: name,
        served_by,
        fencing_token: (outcome == Outcome::Acquired).then_some(answer.fencing_token),
        retry_after_ms: retry_after.map(|after| after.as_millis()),
        completed_at: output::timestamp(answer.completed_at.as_ref()),
        response: completed.then(|| ResponseJson::new(&answer.response)),
        reason: (!answer.reason.is_empty()).then(|| answer.reason.clone()),
    };

    let mut line = name.to_owned();
    push_field(&mut line, "token", json.fencing_token);
    push_field(&mut line, "retry_after", retry_after.map(format_duration));
    push_field(&mut line, "served_by", Some(served_by_label));
    push_field(&mut line, "completed_at", json.completed_at.as_ref());
    push_field(
        &mut line,
        "reason",
        json.reason.as_ref().map(|r| format!("{r:?}")),
    );
    let body = if completed {
        answer.response
    } else {
        Vec::new()
    };
    Ok(Report::new(exit, line, &json).with_body(body))
}
