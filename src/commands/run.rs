//! `apply`, `resume` and `rollback`: run the workflow (or undo it) with progress, then a
//! summary per account.
//!
//! `rollback` has two modes. With a run (or none, meaning the latest), it undoes that run's
//! nodes in scope, refused when a later run changed them again or relies on them, unless
//! `--force`. With `--account` and no run, it undoes the accounts' enrollment across every run
//! that touched them, newest first.

use super::common::{
    Prepared, load_inventory, open_existing_journal, open_journal, prepare, prepare_run,
    prepare_workflow, shutdown,
};
use crate::cli::{Cli, OutputFormat};
use crate::errors::{CliError, Outcome};
use crate::output::{accounts_table, duration, json_line};
use crate::progress::{Reporter, Style};
use serde_json::json;
use std::path::Path;
use std::time::Instant;
use trailhub_engine::{
    GroupResult, RetryPolicy, RollbackScope, RollbackSummary, RunOptions, RunPart, RunStatus,
    account_rollbacks, execute, pending_rollback, refuse_later_runs,
};
use trailhub_state::{EventKind, Journal, NewRun, Write};
use trailhub_steps::tasks::BackfillOptions;
use trailhub_workflows::Workflow;

fn options(concurrency: u16) -> RunOptions {
    RunOptions {
        concurrency: concurrency as usize,
        retry: retry_policy(),
    }
}

/// The retry policy; `TRAILHUB_RETRY_MAX_ATTEMPTS` and `TRAILHUB_RETRY_INITIAL_MS` tune it
/// (tests make failures fast with them).
fn retry_policy() -> RetryPolicy {
    let mut policy = RetryPolicy::default();
    if let Some(n) = std::env::var("TRAILHUB_RETRY_MAX_ATTEMPTS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        policy.max_attempts = n;
    }
    if let Some(ms) = std::env::var("TRAILHUB_RETRY_INITIAL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        policy.initial_delay = std::time::Duration::from_millis(ms);
        policy.max_delay = policy
            .max_delay
            .min(std::time::Duration::from_millis(ms * 8));
    }
    policy
}

fn style(cli: &Cli) -> Style {
    Style::detect(cli.output == OutputFormat::Json, cli.quiet)
}

/// `trailhub backfill`: a run of the backfill layout (per source, its checks, its stack, then
/// its Batch Replication job), then the jobs.
pub async fn backfill(
    cli: &Cli,
    config: &Path,
    concurrency: u16,
    accounts: &[String],
    options: BackfillOptions,
) -> Result<Outcome, CliError> {
    let inventory = load_inventory(config)?;
    let workflow = Workflow::new(inventory, accounts.to_vec())
        .map_err(CliError::Usage)?
        .backfilling(options);
    let prepared = prepare_workflow(cli, workflow)?;
    let extra = json!({ "backfill": options });
    start(cli, config, &prepared, accounts, concurrency, extra).await
}

pub async fn apply(
    cli: &Cli,
    config: &Path,
    concurrency: u16,
    accounts: &[String],
) -> Result<Outcome, CliError> {
    let inventory = load_inventory(config)?;
    let prepared = prepare(cli, inventory, accounts)?;
    start(cli, config, &prepared, accounts, concurrency, json!({})).await
}

/// Journals a new run of `prepared` (its frozen inventory, graph and options, `extra` among
/// them), says so, and runs it.
async fn start(
    cli: &Cli,
    config: &Path,
    prepared: &Prepared,
    accounts: &[String],
    concurrency: u16,
    extra: serde_json::Value,
) -> Result<Outcome, CliError> {
    let journal = open_journal(cli)?;
    let mut options = json!({ "accounts": accounts, "concurrency": concurrency });
    if let (Some(all), Some(more)) = (options.as_object_mut(), extra.as_object()) {
        all.extend(more.clone());
    }
    let run = journal.create_run(NewRun {
        workflow: prepared.workflow.name(),
        definition: &prepared.workflow.inventory.text,
        source: Some(config.display().to_string()),
        options,
        graph: Some(prepared.dag.record()),
    })?;
    let sources = prepared.workflow.sources().count();
    let (operation, doing) = match prepared.workflow.backfill {
        Some(_) => ("backfill", "backfilling"),
        None => ("apply", "onboarding"),
    };
    announce(
        cli,
        &run.id,
        operation,
        &format!(
            "run {}: {doing} {sources} account{} into {} (journal in {})",
            run.id,
            if sources == 1 { "" } else { "s" },
            prepared.workflow.inventory.archive.bucket,
            cli.state.display()
        ),
    );
    execute_run(cli, &journal, prepared, &run.id, operation, concurrency).await
}

pub async fn resume(
    cli: &Cli,
    run: Option<&str>,
    concurrency: Option<u16>,
) -> Result<Outcome, CliError> {
    let journal = open_existing_journal(cli)?;
    let run = journal.resolve_run(run)?;
    let prepared = prepare_run(cli, &run)?;
    let concurrency = concurrency
        .or_else(|| run.options["concurrency"].as_u64().map(|c| c as u16))
        .unwrap_or(crate::DEFAULT_CONCURRENCY);
    if let Some(scope) = pending_rollback(&journal, &run.id)? {
        // A later run may have been applied since this rollback started: resume has no
        // --force, so what `rollback` would refuse, it refuses too, and says how to force it.
        refuse_later_runs(&journal, &run.id, &scope)?;
        announce(
            cli,
            &run.id,
            "resume",
            &format!("run {}: continuing its unfinished rollback", run.id),
        );
        return rollback_run(cli, &journal, &prepared, &run.id, scope, concurrency).await;
    }
    let mut note = format!(
        "run {}: resuming with the inventory frozen when it was applied",
        run.id
    );
    if let Some(source) = &run.source {
        match std::fs::read_to_string(source) {
            Ok(text) if text != run.definition => {
                note.push_str(&format!(
                    "; {source} has changed since, and its edits are not used (start a new run with `trailhub apply -c {source}` to use them)"
                ));
            }
            _ => {}
        }
    }
    journal.commit(vec![Write::Event {
        run: run.id.clone(),
        node: None,
        kind: EventKind::Note {
            message: note.clone(),
        },
    }])?;
    announce(cli, &run.id, "resume", &note);
    execute_run(cli, &journal, &prepared, &run.id, "resume", concurrency).await
}

/// What `trailhub rollback` was asked.
struct RollbackArgs<'a> {
    accounts: &'a [String],
    to: Option<&'a str>,
    concurrency: u16,
}

pub async fn rollback(
    cli: &Cli,
    run: Option<&str>,
    accounts: &[String],
    to: Option<&str>,
    force: bool,
    concurrency: u16,
) -> Result<Outcome, CliError> {
    let journal = open_existing_journal(cli)?;
    if run.is_none() && !accounts.is_empty() {
        let args = RollbackArgs {
            accounts,
            to,
            concurrency,
        };
        return rollback_accounts(cli, &journal, &args).await;
    }
    let run = journal.resolve_run(run)?;
    let asked = RollbackScope {
        groups: accounts.to_vec(),
        after_step: to.map(str::to_string),
    };
    let (scope, message) = match pending_rollback(&journal, &run.id)? {
        Some(pending) if accounts.is_empty() && to.is_none() => (
            pending,
            format!("run {}: continuing its unfinished rollback", run.id),
        ),
        _ => {
            let message = format!("run {}: rolling back {}", run.id, describe_scope(&asked));
            (asked, message)
        }
    };
    if !force {
        refuse_later_runs(&journal, &run.id, &scope)?;
    }
    let prepared = prepare_run(cli, &run)?;
    announce(cli, &run.id, "rollback", &message);
    rollback_run(cli, &journal, &prepared, &run.id, scope, concurrency).await
}

/// `rollback --account X…` without a run: every run that touched the accounts, newest first,
/// each run's part journaled in that run. Everything that can be refused is refused before the
/// first rollback starts; the first run whose part does not finish stops the rest, because the
/// older runs' undo records describe a state under what it left.
async fn rollback_accounts(
    cli: &Cli,
    journal: &Journal,
    args: &RollbackArgs<'_>,
) -> Result<Outcome, CliError> {
    let parts = account_rollbacks(journal, args.accounts, args.to)?;
    let prepared = parts
        .iter()
        .map(|p| prepare_run(cli, &p.run))
        .collect::<Result<Vec<_>, _>>()?;
    let who = args.accounts.join(", ");
    announce_accounts(cli, &who, args.accounts, &parts);
    let mut done = Vec::new();
    for (i, (part, prepared)) in parts.iter().zip(&prepared).enumerate() {
        let id = &part.run.id;
        let message = match pending_rollback(journal, id)? {
            Some(_) => format!(
                "run {id}: continuing its unfinished rollback, as {}",
                describe_scope(&part.scope)
            ),
            None => format!("run {id}: rolling back {}", describe_scope(&part.scope)),
        };
        announce(cli, id, "rollback", &message);
        let outcome = rollback_run(
            cli,
            journal,
            prepared,
            id,
            part.scope.clone(),
            args.concurrency,
        )
        .await?;
        if outcome != Outcome::Ok {
            let left: Vec<&str> = parts[i + 1..].iter().map(|p| p.run.id.as_str()).collect();
            accounts_finished(cli, args, &done, Some(id), &left);
            return Ok(Outcome::Failed);
        }
        done.push(id.as_str());
    }
    accounts_finished(cli, args, &done, None, &[]);
    Ok(Outcome::Ok)
}

/// Says which runs a rollback across runs takes, in order, before the first starts.
fn announce_accounts(cli: &Cli, who: &str, accounts: &[String], parts: &[RunPart]) {
    match cli.output {
        OutputFormat::Json => json_line(&json!({
            "type": "rollback-accounts", "accounts": accounts,
            "runs": parts.iter().map(|p| json!({ "run": p.run.id, "accounts": p.scope.groups })).collect::<Vec<_>>(),
        })),
        OutputFormat::Text if cli.quiet => {}
        OutputFormat::Text if parts.is_empty() => {}
        OutputFormat::Text => eprintln!(
            "{who}: rolling back {} run{}, newest first: {}",
            parts.len(),
            if parts.len() == 1 { "" } else { "s" },
            parts
                .iter()
                .map(|p| p.run.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The end of a rollback across runs: the runs rolled back, in order, and where it stopped.
fn accounts_finished(
    cli: &Cli,
    args: &RollbackArgs<'_>,
    done: &[&str],
    stopped_at: Option<&str>,
    left: &[&str],
) {
    if cli.output == OutputFormat::Json {
        let status = if stopped_at.is_some() {
            "stopped"
        } else {
            "rolled-back"
        };
        json_line(&json!({
            "type": "rollback-accounts-finished", "accounts": args.accounts, "status": status,
            "rolled_back": done, "stopped_at": stopped_at, "not_rolled_back": left,
        }));
        return;
    }
    let who = args.accounts.join(", ");
    let runs = |ids: &[&str]| {
        if ids.is_empty() {
            "none".to_string()
        } else {
            ids.join(", ")
        }
    };
    let Some(stopped) = stopped_at else {
        if done.is_empty() {
            println!("Nothing to roll back for {who}: no run has its steps left to undo.");
        } else {
            println!(
                "\n{who} rolled back across {} run{}, newest first: {}.",
                done.len(),
                if done.len() == 1 { "" } else { "s" },
                runs(done)
            );
        }
        return;
    };
    let mut again: String = args
        .accounts
        .iter()
        .map(|a| format!(" --account {a}"))
        .collect();
    if let Some(step) = args.to {
        again.push_str(&format!(" --to {step}"));
    }
    println!("\nStopped: the rollback of run {stopped} did not finish for {who}.");
    if !left.is_empty() {
        println!(
            "Older runs not rolled back, because their undo records describe the state under it: {}.",
            runs(left)
        );
    }
    println!(
        "Rolled back before it: {}. Once the cause is fixed, `trailhub rollback{again}` continues where it stopped.",
        runs(done)
    );
}

fn describe_scope(scope: &RollbackScope) -> String {
    let who = if scope.groups.is_empty() {
        "every account and the archive".to_string()
    } else {
        scope.groups.join(", ")
    };
    match &scope.after_step {
        Some(step) => format!("the steps after {step} of {who}"),
        None => who,
    }
}

fn announce(cli: &Cli, run: &str, operation: &str, text: &str) {
    match cli.output {
        OutputFormat::Json => json_line(
            &json!({ "type": "run", "run": run, "operation": operation, "message": text }),
        ),
        OutputFormat::Text if !cli.quiet => eprintln!("{text}"),
        OutputFormat::Text => {}
    }
}

async fn execute_run(
    cli: &Cli,
    journal: &Journal,
    prepared: &Prepared,
    run: &str,
    operation: &str,
    concurrency: u16,
) -> Result<Outcome, CliError> {
    let started = Instant::now();
    let reporter = Reporter::new(style(cli), "done", prepared.dag.shape());
    let summary = execute(
        &prepared.dag,
        journal,
        run,
        operation,
        &options(concurrency),
        &reporter,
        shutdown(),
    )
    .await?;
    reporter.finish();
    if prepared.workflow.backfill.is_some() {
        crate::output::print_jobs(
            run,
            &crate::output::backfill_jobs(&journal.nodes(run)?),
            cli.output == OutputFormat::Json,
        );
    }
    let elapsed = started.elapsed().as_millis() as u64;
    let count = |r: GroupResult| summary.groups.iter().filter(|g| g.result == r).count();
    let (ok, failed, blocked) = (
        count(GroupResult::Succeeded),
        count(GroupResult::Failed),
        count(GroupResult::Blocked),
    );
    let status = summary.status;
    if cli.output == OutputFormat::Json {
        for g in &summary.groups {
            json_line(&crate::output::account_json(run, g));
        }
        json_line(&json!({
            "type": "run-finished", "run": run, "status": status.as_str(), "elapsed_ms": elapsed,
            "accounts_succeeded": ok, "accounts_failed": failed, "accounts_blocked": blocked,
            "steps_total": summary.total, "steps_done": summary.done, "steps_changed": summary.changed,
        }));
    } else {
        println!("{}", accounts_table(&summary.groups).trim_end());
        println!(
            "\nRun {run} {} in {}: {ok} succeeded, {failed} failed, {blocked} blocked ({} of {} steps done, {} changed).",
            status.as_str(),
            duration(elapsed),
            summary.done,
            summary.total,
            summary.changed
        );
        match status {
            RunStatus::Succeeded => {}
            RunStatus::Interrupted => {
                println!("Interrupted: `trailhub resume {run}` continues it.")
            }
            _ => println!(
                "`trailhub status {run}` shows each failure and what to do; after fixing, `trailhub resume {run}` finishes only what is left."
            ),
        }
    }
    Ok(if status == RunStatus::Succeeded {
        Outcome::Ok
    } else {
        Outcome::Failed
    })
}

async fn rollback_run(
    cli: &Cli,
    journal: &Journal,
    prepared: &Prepared,
    run: &str,
    scope: RollbackScope,
    concurrency: u16,
) -> Result<Outcome, CliError> {
    let started = Instant::now();
    let reporter = Reporter::new(style(cli), "rolled back", &Default::default());
    let summary = trailhub_engine::rollback(
        &prepared.dag,
        journal,
        run,
        &scope,
        &options(concurrency),
        &reporter,
        shutdown(),
    )
    .await?;
    reporter.finish();
    let elapsed = started.elapsed().as_millis() as u64;
    if cli.output == OutputFormat::Json {
        rollback_json(run, &summary, elapsed);
    } else {
        rollback_text(run, &summary, elapsed);
    }
    Ok(
        if summary.failed.is_empty() && summary.blocked.is_empty() && summary.not_run == 0 {
            Outcome::Ok
        } else {
            Outcome::Failed
        },
    )
}

fn rollback_json(run: &str, summary: &RollbackSummary, elapsed: u64) {
    for (node, note) in &summary.notes {
        json_line(&json!({ "type": "rollback-note", "run": run, "node": node, "note": note }));
    }
    for (node, error) in &summary.failed {
        json_line(&json!({ "type": "rollback-failed", "run": run, "node": node, "error": error }));
    }
    for g in in_scope(summary) {
        json_line(&crate::output::account_json(run, g));
    }
    json_line(&json!({
        "type": "rollback-finished", "run": run, "status": summary.status.as_str(), "elapsed_ms": elapsed,
        "rolled_back": summary.rolled_back, "selected": summary.selected, "changed": summary.changed,
        "failed": summary.failed.len(), "blocked": summary.blocked.len(), "not_run": summary.not_run,
    }));
}

fn rollback_text(run: &str, summary: &RollbackSummary, elapsed: u64) {
    if !summary.notes.is_empty() {
        println!("Notes:");
        for (node, note) in &summary.notes {
            println!("  {node}: {note}");
        }
    }
    for (node, error) in &summary.failed {
        let code = error
            .code
            .as_deref()
            .map(|c| format!("[{c}] "))
            .unwrap_or_default();
        println!("  ✗ {node}: {code}{}", error.message);
    }
    for (node, by) in &summary.blocked {
        let by = by
            .as_ref()
            .map_or("a step after it".to_string(), |b| b.to_string());
        println!("  ⊘ {node}: kept, because {by} could not be rolled back");
    }
    let groups: Vec<_> = in_scope(summary).cloned().collect();
    println!("{}", accounts_table(&groups).trim_end());
    println!(
        "\nRollback of run {run} ({}) {} in {}: {} of {} steps undone, {} changed, {} failed, {} kept.",
        describe_scope(&summary.scope),
        summary.status.as_str(),
        duration(elapsed),
        summary.rolled_back,
        summary.selected,
        summary.changed,
        summary.failed.len(),
        summary.blocked.len()
    );
    if summary.not_run > 0 || !summary.failed.is_empty() {
        println!("`trailhub rollback {run}` continues it once the cause is fixed.");
    }
}

/// The groups the rollback's scope names (all when it names none).
fn in_scope(summary: &RollbackSummary) -> impl Iterator<Item = &trailhub_engine::GroupSummary> {
    summary
        .groups
        .iter()
        .filter(|g| summary.scope.groups.is_empty() || summary.scope.groups.contains(&g.group))
}
