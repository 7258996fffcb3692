//! The command-line client: `onceward claim|complete|release|extend|lookup`, for people
//! and shell scripts, talking to a running sidecar over gRPC.
//!
//! # Layout
//! - one file per command (`claim.rs`, …): its arguments, its RPC, its output;
//! - `exit`: the exit codes, the contract with scripts (see [`Exit`]);
//! - `output`: the human line, the `--json` object, errors on stderr;
//! - `input`: files and stdin.
//!
//! Every invocation prints one answer and exits with a code that says which answer it
//! was, so `onceward claim …; case $? in 0) …` can guard a side effect.

mod claim;
mod complete;
mod exit;
mod extend;
mod input;
mod lookup;
mod output;
mod release;

pub use claim::ClaimArgs;
pub use complete::CompleteArgs;
pub use exit::{EXIT_CODES_HELP, Exit};
pub use extend::ExtendArgs;
pub use lookup::LookupArgs;
pub use release::ReleaseArgs;

use std::time::Duration;

use clap::{Args, Subcommand};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use crate::proto::onceward_client::OncewardClient;
use exit::Failure;

/// How long to wait for the TCP (and HTTP/2) handshake before reporting UNAVAILABLE:
/// a script should not hang on an address that swallows packets.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The client subcommands, flattened into the top-level command line.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Claim a key before a side effect; prints the fencing token when acquired.
    #[command(after_help = EXIT_CODES_HELP)]
    Claim(ClaimArgs),
    /// Store the side effect's result under a claimed key.
    #[command(after_help = EXIT_CODES_HELP)]
    Complete(CompleteArgs),
    /// Give up a claim whose side effect did not happen.
    #[command(after_help = EXIT_CODES_HELP)]
    Release(ReleaseArgs),
    /// Push a held claim's lease further out.
    #[command(after_help = EXIT_CODES_HELP)]
    Extend(ExtendArgs),
    /// Show the ledger's record for a key.
    #[command(after_help = EXIT_CODES_HELP)]
    Lookup(LookupArgs),
}

/// Flags every client command takes.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// The sidecar's gRPC address (`http://` is assumed without a scheme).
    #[arg(
        long,
        env = "ONCEWARD_ADDR",
        default_value = "http://127.0.0.1:50051",
        value_parser = parse_addr
    )]
    pub addr: String,

    /// Print exactly one JSON object on stdout instead of the human-readable line.
    #[arg(long)]
    pub json: bool,
}

/// Runs one client command and prints its answer; returns the process exit code
/// (see [`Exit`]).
pub async fn run(command: ClientCommand) -> i32 {
    let json = command.connect_args().json;
    let result = match command {
        ClientCommand::Claim(args) => claim::run(args).await,
        ClientCommand::Complete(args) => complete::run(args).await,
        ClientCommand::Release(args) => release::run(args).await,
        ClientCommand::Extend(args) => extend::run(args).await,
        ClientCommand::Lookup(args) => lookup::run(args).await,
    };
    output::print(result, json)
}

impl ClientCommand {
    fn connect_args(&self) -> &ConnectArgs {
        match self {
            ClientCommand::Claim(args) => &args.connect,
            ClientCommand::Complete(args) => &args.connect,
            ClientCommand::Release(args) => &args.connect,
            ClientCommand::Extend(args) => &args.connect,
            ClientCommand::Lookup(args) => &args.connect,
        }
    }
}

/// A client on a connection made now, so a sidecar that is not there is reported as
/// UNAVAILABLE before any request is built.
async fn connect(args: &ConnectArgs) -> Result<OncewardClient<Channel>, Failure> {
    let channel = Endpoint::from_shared(args.addr.clone())
        .expect("--addr was validated by parse_addr")
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .map_err(|error| {
            Failure::local(
                Exit::Unavailable,
                Code::Unavailable,
                format!("cannot connect to {}: {}", args.addr, causes(&error)),
            )
        })?;
    // The sidecar bounds stored responses itself (--max-response-bytes, which may exceed
    // tonic's 4 MiB default); the client takes whatever its sidecar sends.
    Ok(OncewardClient::new(channel).max_decoding_message_size(usize::MAX))
}

/// `error: cause: cause…`, skipping a cause that repeats the one before it (tonic's
/// transport errors print their source and also return it).
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Accepts `host:port` or a URI; returns the URI.
fn parse_addr(text: &str) -> Result<String, String> {
    let uri = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    Endpoint::from_shared(uri.clone()).map_err(|error| {
        format!("{text:?} is not an address like http://127.0.0.1:50051: {error}")
    })?;
    Ok(uri)
}
