//! `onceward extend`: push a held claim's lease further out, so a long side effect is
//! not taken over while it runs.

use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::exit::{Exit, Failure};
use super::output::{self, Report, push_field};
use super::{ConnectArgs, connect};
use crate::domain::parse_duration;
use crate::proto::ExtendLeaseRequest;
use crate::proto::duration as proto_duration;

/// `onceward extend NAMESPACE KEY --token N`.
#[derive(Debug, Clone, Args)]
pub struct ExtendArgs {
    /// The key's namespace.
    pub namespace: String,

    /// The claimed key.
    pub key: String,

    /// The fencing token the claim printed.
    #[arg(long, value_name = "N")]
    pub token: u64,

    /// The new lease, counted from now on the ledger's clock, e.g. 30s (default: the
    /// sidecar's).
    #[arg(long, value_parser = parse_duration)]
    pub lease: Option<Duration>,

    /// Where and how.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `extend --json`.
#[derive(Debug, Serialize)]
struct ExtendJson {
    /// Always `EXTENDED`.
    outcome: &'static str,
    /// When the extended lease runs out, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_expires_at: Option<String>,
}

pub(super) async fn run(args: ExtendArgs) -> Result<Report, Failure> {
    let request = ExtendLeaseRequest {
        namespace: args.namespace,
        key: args.key,
        fencing_token: args.token,
        lease: args.lease.map(proto_duration),
    };
    let answer = connect(&args.connect)
        .await?
        .extend_lease(request)
        .await?
        .into_inner();
    let json = ExtendJson {
        outcome: "EXTENDED",
        lease_expires_at: output::timestamp(answer.lease_expires_at.as_ref()),
    };
    let mut line = json.outcome.to_owned();
    push_field(
        &mut line,
        "lease_expires_at",
        json.lease_expires_at.as_ref(),
    );
    Ok(Report::new(Exit::Ok, line, &json))
}
