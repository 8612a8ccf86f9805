//! The subcommands: each reads its inputs, calls the engine, and renders the result.

mod common;
mod graph;
mod plan;
mod report;
mod run;
mod status;
mod verify;
mod verify_canary;

use crate::cli::{Cli, Command};
use crate::errors::{CliError, Outcome};

/// Runs the command line's subcommand.
pub async fn run(cli: &Cli) -> Result<Outcome, CliError> {
    match &cli.command {
        Command::Plan {
            inventory,
            accounts,
        } => plan::plan(cli, &inventory.config, accounts).await,
        Command::Graph {
            config,
            run,
            format,
        } => graph::graph(cli, config.as_deref(), run.as_deref(), *format),
        Command::Apply {
            inventory,
            concurrency,
            accounts,
        } => run::apply(cli, &inventory.config, *concurrency, accounts).await,
        Command::Backfill {
            inventory,
            accounts,
            include_failed,
            yes,
            wait,
            concurrency,
        } => {
            let options = trailhub_steps::tasks::BackfillOptions {
                include_failed: *include_failed,
                confirmed: *yes,
                wait: *wait,
            };
            run::backfill(cli, &inventory.config, *concurrency, accounts, options).await
        }
        Command::Resume { run, concurrency } => {
            run::resume(cli, run.as_deref(), *concurrency).await
        }
        Command::Rollback {
            run,
            accounts,
            to,
            force,
            concurrency,
        } => {
            let to = to.as_deref();
            run::rollback(cli, run.as_deref(), accounts, to, *force, *concurrency).await
        }
        Command::Status { run } => status::status(cli, run.as_deref()),
        Command::Runs => status::runs(cli),
        Command::History { run } => status::history(cli, run.as_deref()),
        Command::Verify {
            inventory,
            canary,
            timeout,
            accounts,
        } => verify::verify(cli, &inventory.config, *canary, *timeout, accounts).await,
        Command::Report { run, out } => report::report(cli, run.as_deref(), out),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "trailhub", &mut std::io::stdout());
            Ok(Outcome::Ok)
        }
    }
}
