//! The `onceward` binary: parse the command line, set up logging, run the subcommand.

use clap::Parser as _;

use onceward::app::{self, Application};
use onceward::command::{Cli, Command};

/// mimalloc instead of the system allocator: a request's path through h2, hyper,
/// tonic and redis-rs makes hundreds of small allocations and frees, and on glibc
/// these were 15 % of the sidecar's instructions (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A failure is printed once, as `onceward: what failed: why`, with exit code 1.
fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    onceward::telemetry::init(cli.log_format);
    let ran = runtime(cli.command.worker_threads())
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run(cli.command)));
    match ran {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("onceward: {}", onceward::errors::chain(error.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

/// One thread runs every task itself; more get a work-stealing scheduler.
fn runtime(worker_threads: u16) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match worker_threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread(),
        threads => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(usize::from(threads));
            builder
        }
    };
    builder.enable_all().build()
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => {
            onceward::grpc::transport::raise_fd_limit();
            let application = Application::build(&args).await?;
            application.run_until(onceward::shutdown::signal()).await
        }
        Command::Gc(args) => {
            let deleted = app::gc(&args).await?;
            println!("deleted {deleted} expired records");
            Ok(())
        }
        Command::NewTenantToken => {
            let (token, hash) = onceward::tenants::new_token();
            println!("token:        {token}");
            println!("token_sha256: {hash}");
            Ok(())
        }
        Command::Bench(args) => onceward::bench::run(args).await,
        Command::Migrate(storage) => {
            println!("{}", app::migrate(&storage).await?);
            Ok(())
        }
        Command::Client(command) => std::process::exit(onceward::cli::run(command).await),
        Command::Drill(args) => std::process::exit(onceward::drill::run(args).await?),
        Command::Relay(args) => onceward::relay::run(*args, onceward::shutdown::signal()).await,
    }
}
