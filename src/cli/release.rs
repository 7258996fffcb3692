//! `onceward release`: give up a claim whose side effect did not happen, so the next
//! claim acquires the key at once.

use clap::Args;
use serde::Serialize;

use super::exit::{Exit, Failure};
use super::output::Report;
use super::{ConnectArgs, connect};
use crate::proto::ReleaseRequest;

/// `onceward release NAMESPACE KEY --token N`.
#[derive(Debug, Clone, Args)]
pub struct ReleaseArgs {
    /// The key's namespace.
    pub namespace: String,

    /// The claimed key.
    pub key: String,

    /// The fencing token the claim printed.
    #[arg(long, value_name = "N")]
    pub token: u64,

    /// Where and how.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `release --json`.
#[derive(Debug, Serialize)]
struct ReleaseJson {
    /// Always `RELEASED`.
    outcome: &'static str,
}

pub(super) async fn run(args: ReleaseArgs) -> Result<Report, Failure> {
    let request = ReleaseRequest {
        namespace: args.namespace,
        key: args.key,
        fencing_token: args.token,
    };
    connect(&args.connect).await?.release(request).await?;
    let json = ReleaseJson {
        outcome: "RELEASED",
    };
    Ok(Report::new(Exit::Ok, json.outcome.to_owned(), &json))
}
