//! `onceward health`: the sidecar's `grpc.health.v1.Health/Check`, for container
//! probes in images that have no curl or grpc_health_probe. Exit 0 means SERVING;
//! anything else, or no answer in time, is not healthy.

use std::time::Duration;

use clap::Args;
use serde::Serialize;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::ConnectArgs;
use super::connect::channel;
use super::exit::{Exit, Failure};
use super::output::Report;
use crate::domain::parse_duration;

/// The exit code table, as printed under `onceward health --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
   0  the sidecar answered SERVING
   5  not healthy: it answered NOT_SERVING, did not answer within --timeout, or
      could not be reached
   7  configuration error: a bad --addr, an unreadable certificate or token file,
      a failed TLS handshake
   2  usage error
   1  any other error";

/// `onceward health`.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// How long to wait for the answer, connecting included, e.g. 2s.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Where and how.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `health --json`.
#[derive(Debug, Serialize)]
struct HealthJson {
    /// `SERVING`, `NOT_SERVING`, `UNKNOWN` or `SERVICE_UNKNOWN`, as the sidecar said.
    status: &'static str,
}

pub(super) async fn run(args: HealthArgs) -> Result<Report, Failure> {
    let no_answer = || {
        Failure::local(
            Exit::Unavailable,
            Code::Unavailable,
            format!(
                "no answer from {} within {:?}",
                args.connect.addr, args.timeout
            ),
        )
    };
    let check = async {
        let mut health = HealthClient::new(channel(&args.connect).await?);
        // The empty service name asks about the sidecar as a whole.
        let answer = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await?;
        Ok::<_, Failure>(answer.into_inner())
    };
    let answer = tokio::time::timeout(args.timeout, check)
        .await
        .map_err(|_| no_answer())??;
    let status = ServingStatus::try_from(answer.status).unwrap_or(ServingStatus::Unknown);
    let json = HealthJson {
        status: status.as_str_name(),
    };
    let exit = match status {
        ServingStatus::Serving => Exit::Ok,
        _ => Exit::Unavailable,
    };
    Ok(Report::new(exit, json.status.to_owned(), &json))
}
