//! `onceward complete`: store the side effect's result under a claimed key, so every
//! later claim replays it.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::exit::{Exit, Failure};
use super::output::{self, Report, push_field};
use super::{ConnectArgs, connect, input};
use crate::domain::parse_duration;
use crate::proto::CompleteRequest;
use crate::proto::duration as proto_duration;

/// `onceward complete NAMESPACE KEY --token N`.
#[derive(Debug, Clone, Args)]
pub struct CompleteArgs {
    /// The key's namespace.
    pub namespace: String,

    /// The claimed key.
    pub key: String,

    /// The fencing token the claim printed.
    #[arg(long, value_name = "N")]
    pub token: u64,

    /// The response to store, read from this file ('-' for stdin) byte for byte
    /// (default: an empty response).
    #[arg(long, value_name = "FILE|-")]
    pub response_file: Option<PathBuf>,

    /// How long the completed record is kept, e.g. 24h (default: the sidecar's).
    #[arg(long, value_parser = parse_duration)]
    pub retention: Option<Duration>,

    /// Where and how.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `complete --json`.
#[derive(Debug, Serialize)]
struct CompleteJson {
    /// Always `COMPLETED`.
    outcome: &'static str,
    /// When the record expires and the key becomes new again, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
}

pub(super) async fn run(args: CompleteArgs) -> Result<Report, Failure> {
    let response = match &args.response_file {
        Some(path) => input::read_all(path)?,
        None => Vec::new(),
    };
    let request = CompleteRequest {
        namespace: args.namespace,
        key: args.key,
        fencing_token: args.token,
        response,
        retention: args.retention.map(proto_duration),
    };
    let answer = connect(&args.connect)
        .await?
        .complete(request)
        .await?
        .into_inner();
    let json = CompleteJson {
        outcome: "COMPLETED",
        expires_at: output::timestamp(answer.expires_at.as_ref()),
    };
    let mut line = json.outcome.to_owned();
    push_field(&mut line, "expires_at", json.expires_at.as_ref());
    Ok(Report::new(Exit::Ok, line, &json))
}
