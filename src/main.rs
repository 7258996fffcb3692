//! The `onceward` binary: parse the command line, set up logging, run the subcommand.

use clap::Parser as _;

use onceward::app::{self, Application};
use onceward::config::{Cli, Command};
use onceward::retention::Retention;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    onceward::telemetry::init(cli.log_format);
    match cli.command {
        Command::Serve(args) => {
            let application = Application::build(&args).await?;
            application.run_until(onceward::shutdown::signal()).await
        }
        Command::Gc(args) => {
            let ledger = app::connect_ledger(&args.storage).await?;
            let retention = Retention::new(ledger, args.cleanup_batch_size);
            let deleted = retention.run_once(&CancellationToken::new()).await?;
            println!("deleted {deleted} expired records");
            Ok(())
        }
        Command::Token => {
            let (token, hash) = onceward::tenants::new_token();
            println!("token:        {token}");
            println!("token_sha256: {hash}");
            Ok(())
        }
        Command::Bench(args) => onceward::bench::run(args).await,
        Command::Migrate(storage) => {
            app::connect_ledger(&storage).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Client(command) => std::process::exit(onceward::cli::run(command).await),
    }
}
