//! `onceward lookup`: show the ledger's record for a key (never its fencing token).

use clap::Args;
use serde::Serialize;

use super::exit::{Exit, Failure};
use super::output::{self, Report, ResponseJson, push_field};
use super::{ConnectArgs, connect};
use crate::proto::{LookupRequest, Record, RecordState};

/// `onceward lookup NAMESPACE KEY`.
#[derive(Debug, Clone, Args)]
pub struct LookupArgs {
    /// The key's namespace.
    pub namespace: String,

    /// The key.
    pub key: String,

    /// Where and how.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `lookup --json`.
#[derive(Debug, Serialize)]
struct LookupJson {
    /// `FOUND` or `NOT_FOUND`.
    outcome: &'static str,
    /// With `FOUND`: the record.
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<RecordJson>,
}

/// A ledger record in `lookup --json`; timestamps are RFC 3339.
#[derive(Debug, Serialize)]
struct RecordJson {
    namespace: String,
    key: String,
    /// `IN_PROGRESS` or `COMPLETED`.
    state: &'static str,
    /// The stored fingerprint in hex; empty when none was given.
    fingerprint_hex: String,
    created_at: Option<String>,
    /// Completed records only.
    #[serde(skip_serializing_if = "Option::is_none")]
    completed_at: Option<String>,
    /// In-progress records only.
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_expires_at: Option<String>,
    expires_at: Option<String>,
    /// Completed records only: the stored response.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    response: Option<ResponseJson>,
}

pub(super) async fn run(args: LookupArgs) -> Result<Report, Failure> {
    let request = LookupRequest {
        namespace: args.namespace,
        key: args.key,
    };
    let answer = connect(&args.connect)
        .await?
        .lookup(request)
        .await?
        .into_inner();
    let record = match answer.record {
        Some(record) if answer.found => record,
        _ => {
            let json = LookupJson {
                outcome: "NOT_FOUND",
                record: None,
            };
            return Ok(Report::new(Exit::NotFound, json.outcome.to_owned(), &json));
        }
    };
    Ok(found(record))
}

fn found(record: Record) -> Report {
    let completed = record.state() == RecordState::Completed;
    let state = match record.state() {
        RecordState::InProgress => "IN_PROGRESS",
        RecordState::Completed => "COMPLETED",
        RecordState::Unspecified => "UNSPECIFIED",
    };
    let fields = RecordJson {
        namespace: record.namespace,
        key: record.key,
        state,
        fingerprint_hex: output::hex(&record.fingerprint),
        created_at: output::timestamp(record.created_at.as_ref()),
        completed_at: output::timestamp(record.completed_at.as_ref()),
        lease_expires_at: output::timestamp(record.lease_expires_at.as_ref()),
        expires_at: output::timestamp(record.expires_at.as_ref()),
        response: completed.then(|| ResponseJson::new(&record.response)),
    };
    let mut line = format!("FOUND state={state}");
    push_field(&mut line, "created_at", fields.created_at.as_ref());
    push_field(&mut line, "completed_at", fields.completed_at.as_ref());
    push_field(
        &mut line,
        "lease_expires_at",
        fields.lease_expires_at.as_ref(),
    );
    push_field(&mut line, "expires_at", fields.expires_at.as_ref());
    let fingerprint = Some(&fields.fingerprint_hex).filter(|hex| !hex.is_empty());
    push_field(&mut line, "fingerprint", fingerprint);
    let json = LookupJson {
        outcome: "FOUND",
        record: Some(fields),
    };
    let body = if completed {
        record.response
    } else {
        Vec::new()
    };
    Report::new(Exit::Ok, line, &json).with_body(body)
}
