//! The subcommands: each reads its inputs, calls the engine, and renders the result.

pub(crate) mod common;
mod graph;
mod init;
mod plan;
mod report;
mod run;
mod status;
mod team;
mod verify;
mod verify_canary;

use crate::cli::{Cli, Command, StateCommand};
use crate::errors::{CliError, Outcome};

/// Runs the command line's subcommand.
pub async fn run(cli: &Cli) -> Result<Outcome, CliError> {
    match &cli.command {
        Command::Plan {
            inventory,
            accounts,
            all,
        } => plan::plan(cli, &inventory.config, accounts, *all).await,
        Command::Graph {
            config,
            run,
            format,
        } => graph::graph(cli, config.as_deref(), run.as_deref(), *format).await,
        Command::Apply {
            inventory,
            concurrency,
            accounts,
            all,
        } => run::apply(cli, &inventory.config, *concurrency, accounts, *all).await,
        Command::Backfill {
            inventory,
            accounts,
            include_failed,
            yes,
            wait,
            concurrency,
            all,
        } => {
            let options = trailhub_steps::tasks::BackfillOptions {
                include_failed: *include_failed,
                confirmed: *yes,
                wait: *wait,
            };
            run::backfill(
                cli,
                &inventory.config,
                *concurrency,
                accounts,
                options,
                *all,
            )
            .await
        }
        Command::Resume {
            run,
            concurrency,
            all,
        } => run::resume(cli, run.as_deref(), *concurrency, *all).await,
        Command::Rollback {
            run,
            accounts,
            to,
            force,
            concurrency,
            all,
        } => {
            let args = run::RollbackArgs {
                accounts,
                to: to.as_deref(),
                force: *force,
                concurrency: *concurrency,
                all: *all,
            };
            run::rollback(cli, run.as_deref(), &args).await
        }
        Command::Status { run, all } => status::status(cli, run.as_deref(), *all).await,
        Command::Runs => status::runs(cli).await,
        Command::History { run } => status::history(cli, run.as_deref()).await,
        Command::Verify {
            inventory,
            canary,
            timeout,
            accounts,
        } => verify::verify(cli, &inventory.config, *canary, *timeout, accounts).await,
        Command::Report { run, out } => report::report(cli, run.as_deref(), out).await,
        Command::Init {
            from_aws_config: _,
            prefer,
            archive,
            region,
            out,
            force,
        } => {
            let args = init::InitArgs {
                prefer: prefer.as_deref(),
                archive: archive.as_deref(),
                region: region.as_deref(),
                out,
                force: *force,
            };
            init::init(cli, &args).await
        }
        Command::ForceUnlock { lock_id } => team::force_unlock(cli, lock_id).await,
        Command::State {
            command: StateCommand::Push { to },
        } => team::push(cli, to).await,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            // Written whole through the binary's stdout, which a closed pipe does not panic.
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut command, "trailhub", &mut script);
            crate::print::out_bytes(&script);
            Ok(Outcome::Ok)
        }
    }
}
