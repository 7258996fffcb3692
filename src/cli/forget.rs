//! `onceward forget`: delete a key's record from the ledger and every cache, so the key
//! is new again on every sidecar (the Admin service's `Forget`).

use clap::Args;
use serde::Serialize;

use super::ConnectArgs;
use super::connect::channel;
use super::exit::{Exit, Failure};
use super::output::Report;
use crate::proto::ForgetRequest;
use crate::proto::admin_client::AdminClient;

/// `onceward forget NAMESPACE KEY [--force]`.
#[derive(Debug, Clone, Args)]
pub struct ForgetArgs {
    /// The key's namespace.
    pub namespace: String,

    /// The key to forget.
    pub key: String,

    /// Forget a live claim too; its holder's Complete, Release and ExtendLease are
    /// then refused. Without it, a live claim is exit 4 and nothing is deleted.
    #[arg(long)]
    pub force: bool,

    /// Where and how.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `forget --json`.
#[derive(Debug, Serialize)]
struct ForgetJson {
    /// `FORGOTTEN` or `NOT_FOUND`.
    outcome: &'static str,
}

pub(super) async fn run(args: ForgetArgs) -> Result<Report, Failure> {
    let request = ForgetRequest {
        namespace: args.namespace,
        key: args.key,
        force: args.force,
    };
    let found = AdminClient::new(channel(&args.connect).await?)
        .forget(request)
        .await?
        .into_inner()
        .found;
    let (exit, outcome) = match found {
        true => (Exit::Ok, "FORGOTTEN"),
        false => (Exit::NotFound, "NOT_FOUND"),
    };
    let json = ForgetJson { outcome };
    Ok(Report::new(exit, outcome.to_owned(), &json))
}
