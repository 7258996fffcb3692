//! The command-line client: `onceward claim|complete|release|extend|lookup|forget|
//! policy|spend|events|health`, for
//! people, shell scripts and container probes, talking to a running sidecar over gRPC.
//!
//! # Layout
//! - one file per command (`claim.rs`, …): its arguments, its RPC, its output;
//! - `connect`: the flags every command shares (address, bearer token, TLS, `--json`)
//!   and the connection they describe;
//! - `exit`: the exit codes, the contract with scripts (see [`Exit`]);
//! - `output`: the human line, the `--json` object, errors on stderr;
//! - `input`: files and stdin.
//!
//! Every invocation prints one answer and exits with a code that says which answer it
//! was, so `onceward claim …; case $? in 0) …` can guard a side effect.

mod claim;
mod complete;
mod connect;
mod events;
mod exit;
mod extend;
mod forget;
mod health;
mod input;
mod lookup;
mod output;
mod policy;
mod release;

pub use claim::ClaimArgs;
pub use complete::CompleteArgs;
pub use connect::ConnectArgs;
pub use events::EventsArgs;
pub use exit::{EXIT_CODES_HELP, Exit};
pub use extend::ExtendArgs;
pub use forget::ForgetArgs;
pub use health::HealthArgs;
pub use lookup::LookupArgs;
pub use policy::{PolicyCommand, SpendArgs};
pub use release::ReleaseArgs;

use clap::Subcommand;

use connect::connect;

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
    /// Delete a key's record from the ledger and every cache, so the key is new again
    /// on every sidecar (an admin tenant's token when tenants are configured).
    #[command(after_help = EXIT_CODES_HELP)]
    Forget(ForgetArgs),
    /// Show or change a namespace's spend guard: its killswitch and its per-subject
    /// budget (an admin tenant's token when tenants are configured).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Show what a subject spent in its namespace's current budget window.
    #[command(after_help = EXIT_CODES_HELP)]
    Spend(SpendArgs),
    /// Show the namespace's audit trail, newest first: rejections, takeovers,
    /// releases, forgets, and duplicates counted per key per minute.
    #[command(after_help = EXIT_CODES_HELP)]
    Events(EventsArgs),
    /// Exit 0 if the sidecar answers its gRPC health check SERVING: a container probe
    /// for images without curl.
    #[command(after_help = health::EXIT_CODES_HELP)]
    Health(HealthArgs),
}

/// Runs one client command and prints its answer; returns the process exit code
/// (see [`Exit`]).
pub async fn run(command: ClientCommand) -> i32 {
    let connect_args = command.connect_args().clone();
    let result = match command {
        ClientCommand::Claim(args) => claim::run(args).await,
        ClientCommand::Complete(args) => complete::run(args).await,
        ClientCommand::Release(args) => release::run(args).await,
        ClientCommand::Extend(args) => extend::run(args).await,
        ClientCommand::Lookup(args) => lookup::run(args).await,
        ClientCommand::Forget(args) => forget::run(args).await,
        ClientCommand::Policy(command) => policy::run(command).await,
        ClientCommand::Spend(args) => policy::spend(args).await,
        ClientCommand::Events(args) => events::run(args).await,
        ClientCommand::Health(args) => health::run(args).await,
    };
    let result = match result {
        // No status came back: a sidecar that went away (5), or TLS refusing this
        // client in a way that reaches the call only as a broken connection (7).
        Err(failure) if failure.transport => {
            Err(connect::explain_transport_failure(&connect_args, failure).await)
        }
        result => result,
    };
    output::print(result, connect_args.json)
}

impl ClientCommand {
    fn connect_args(&self) -> &ConnectArgs {
        match self {
            ClientCommand::Claim(args) => &args.connect,
            ClientCommand::Complete(args) => &args.connect,
            ClientCommand::Release(args) => &args.connect,
            ClientCommand::Extend(args) => &args.connect,
            ClientCommand::Lookup(args) => &args.connect,
            ClientCommand::Forget(args) => &args.connect,
            ClientCommand::Policy(command) => command.connect_args(),
            ClientCommand::Spend(args) => &args.connect,
            ClientCommand::Events(args) => &args.connect,
            ClientCommand::Health(args) => &args.connect,
        }
    }
}
