//! The `onceward` binary: parse the command line, set up logging, run the subcommand.

use clap::Parser as _;

use onceward::app::{self, Application};
use onceward::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    onceward::telemetry::init(cli.log_format);
    match cli.command {
        Command::Serve(args) => {
            let application = Application::build(&args).await?;
            application.run_until(onceward::shutdown::signal()).await
        }
        Command::Migrate(storage) => {
            app::connect_ledger(&storage).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Client(command) => std::process::exit(onceward::cli::run(command).await),
    }
}
