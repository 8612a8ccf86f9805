//! trailhub: onboards many AWS accounts, without AWS Organizations, into one CloudTrail log
//! archive by S3 cross-account replication, as a durable workflow (a DAG of resumable steps
//! journaled to disk). This crate is the command line: argument parsing, output, exit codes.

mod cli;
mod commands;
mod errors;
mod fleet;
mod output;
mod print;
mod progress;
#[cfg(test)]
mod synthetic;

use print::errln;
mod state;

use clap::Parser;
use std::process::ExitCode;

/// The default number of steps in flight at once (see the README, "Concurrency").
pub const DEFAULT_CONCURRENCY: u16 = 64;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(&cli)) {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(e) => {
            let code = e.exit_code();
            if cli.output == cli::OutputFormat::Json {
                output::json_line(&serde_json::json!({
                    "type": "error",
                    "exit_code": code,
                    "message": e.to_string(),
                }));
            }
            errln!("error: {e}");
            ExitCode::from(code)
        }
    }
}

/// `-v`: info, `-vv`: debug (every AWS call with account, operation and duration); `RUST_LOG`
/// overrides. Logs go to stderr; credentials are never logged.
fn init_logging(cli: &cli::Cli) {
    use tracing_subscriber::EnvFilter;
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info,trailhub=info",
        (false, _) => "info,trailhub=debug,trailhub_steps=debug,trailhub_engine=debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
