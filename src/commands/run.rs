//! `apply`, `resume` and `rollback`: run the workflow (or undo it) with progress, then a
//! summary per account.
//!
//! `rollback` has two modes. With a run (or none, meaning the latest), it undoes that run's
//! nodes in scope, refused when a later run changed them again or relies on them, unless
//! `--force`. With `--account` and no run, it undoes the accounts' enrollment across every run
//! that touched them, newest first.

use super::common::{Prepared, load_inventory, prepare_run, prepare_workflow, shutdown};
use crate::cli::{Cli, OutputFormat};
use crate::errors::{CliError, Outcome};
use crate::fleet::{self, Cause, Counts};
use crate::output::{accounts_table, duration, json_line};
use crate::print::{errln, out, outln};
use crate::progress::{Reporter, Style};
use crate::state::{Open, State};
use serde_json::json;
use std::path::Path;
use std::time::Instant;
use trailhub_engine::{
    GroupResult, GroupSummary, RetryPolicy, RollbackScope, RollbackSummary, RunOptions, RunPart,
    RunStatus, account_rollbacks, execute, pending_rollback, refuse_later_runs,
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
    all: bool,
) -> Result<Outcome, CliError> {
    let inventory = load_inventory(config)?;
    let workflow = Workflow::new(inventory, accounts.to_vec())
        .map_err(CliError::Usage)?
        .backfilling(options);
    let mut state = open_for_run(cli, &workflow).await?;
    // A backfill touches only source accounts: it never waits for the archive lock.
    let prepared = prepare_workflow(cli, workflow, None)?;
    let extra = json!({ "backfill": options });
    let run = Started {
        accounts,
        concurrency,
        all,
    };
    let outcome = start(cli, &mut state, config, &prepared, &run, extra).await;
    closing(&state, outcome).await
}

/// Opens (creating it if needed) the journal a new run of `workflow` goes into.
async fn open_for_run(cli: &Cli, workflow: &Workflow) -> Result<State, CliError> {
    State::open(
        cli,
        Open {
            create: true,
            pull: false,
            archive: Some(&workflow.inventory.archive.bucket),
        },
    )
    .await
}

/// Opens the existing journal a command continues a run of, up to date.
async fn open_existing(cli: &Cli) -> Result<State, CliError> {
    super::common::open_existing_state(cli).await
}

/// Ends a command that wrote the journal: the archive lock released, every change in the
/// shared journal; the command's own error, if any, comes first.
async fn closing(state: &State, outcome: Result<Outcome, CliError>) -> Result<Outcome, CliError> {
    let closed = state.close().await;
    let outcome = outcome?;
    closed?;
    Ok(outcome)
}

pub async fn apply(
    cli: &Cli,
    config: &Path,
    concurrency: u16,
    accounts: &[String],
    all: bool,
) -> Result<Outcome, CliError> {
    let inventory = load_inventory(config)?;
    let workflow = Workflow::new(inventory, accounts.to_vec()).map_err(CliError::Usage)?;
    let mut state = open_for_run(cli, &workflow).await?;
    let lock = state.keeper(cli, &workflow.inventory.archive.bucket, "apply");
    let prepared = prepare_workflow(cli, workflow, lock)?;
    let run = Started {
        accounts,
        concurrency,
        all,
    };
    let outcome = start(cli, &mut state, config, &prepared, &run, json!({})).await;
    closing(&state, outcome).await
}

/// What a new run was asked.
struct Started<'a> {
    accounts: &'a [String],
    concurrency: u16,
    all: bool,
}

/// Journals a new run of `prepared` (its frozen inventory, graph and options, `extra` among
/// them), says so, and runs it.
async fn start(
    cli: &Cli,
    state: &mut State,
    config: &Path,
    prepared: &Prepared,
    asked: &Started<'_>,
    extra: serde_json::Value,
) -> Result<Outcome, CliError> {
    let journal = &state.journal;
    let (accounts, concurrency) = (asked.accounts, asked.concurrency);
    let mut options = json!({ "accounts": accounts, "concurrency": concurrency });
    if let (Some(all), Some(more)) = (options.as_object_mut(), extra.as_object()) {
        all.extend(more.clone());
    }
    let run = journal
        .new_run(NewRun {
            workflow: prepared.workflow.name(),
            definition: &prepared.workflow.inventory.text,
            source: Some(config.display().to_string()),
            options,
            graph: Some(prepared.dag.record()),
        })
        .await?;
    if let Some(lock) = &prepared.ctx.archive_lock {
        lock.set_run(&run.id);
    }
    let sources = prepared.workflow.sources().count();
    let (operation, doing) = match prepared.workflow.backfill {
        Some(_) => ("backfill", "backfilling"),
        None => ("apply", "onboarding"),
    };
    let message = format!(
        "run {}: {doing} {sources} account{} into {} (journal in {})",
        run.id,
        if sources == 1 { "" } else { "s" },
        prepared.workflow.inventory.archive.bucket,
        state.describe()
    );
    announce(cli, &run.id, operation, &message);
    if state.shared.is_none() && cli.output == OutputFormat::Text && !cli.quiet {
        errln!(
            "the journal is local: concurrent operators of this archive need a shared state, --state s3://BUCKET/PREFIX (README, \"Team use\"); without it another writer of the archive policy is detected, not prevented"
        );
    }
    let asked = Asked {
        operation,
        concurrency,
        all: asked.all,
    };
    execute_run(cli, journal, prepared, &run.id, &asked).await
}

pub async fn resume(
    cli: &Cli,
    run: Option<&str>,
    concurrency: Option<u16>,
    all: bool,
) -> Result<Outcome, CliError> {
    let mut state = open_existing(cli).await?;
    let outcome = resume_in(cli, &mut state, run, concurrency, all).await;
    closing(&state, outcome).await
}

async fn resume_in(
    cli: &Cli,
    state: &mut State,
    run: Option<&str>,
    concurrency: Option<u16>,
    all: bool,
) -> Result<Outcome, CliError> {
    let run = state.journal.resolve_run(run)?;
    let prepared = prepare_run(cli, state, &run, "resume")?;
    let journal = &state.journal;
    let concurrency = concurrency
        .or_else(|| run.options["concurrency"].as_u64().map(|c| c as u16))
        .unwrap_or(crate::DEFAULT_CONCURRENCY);
    if let Some(scope) = pending_rollback(journal, &run.id)? {
        // A later run may have been applied since this rollback started: resume has no
        // --force, so what `rollback` would refuse, it refuses too, and says how to force it.
        refuse_later_runs(journal, &run.id, &scope)?;
        announce(
            cli,
            &run.id,
            "resume",
            &format!("run {}: continuing its unfinished rollback", run.id),
        );
        let asked = Asked {
            operation: "rollback",
            concurrency,
            all,
        };
        return rollback_run(cli, journal, &prepared, &run.id, scope, &asked).await;
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
    let asked = Asked {
        operation: "resume",
        concurrency,
        all,
    };
    execute_run(cli, journal, &prepared, &run.id, &asked).await
}

/// How a run goes on: the operation, its concurrency, and whether its summary lists every
/// account (`--all`).
struct Asked<'a> {
    operation: &'a str,
    concurrency: u16,
    all: bool,
}

/// What `trailhub rollback` was asked.
pub struct RollbackArgs<'a> {
    /// `--account`.
    pub accounts: &'a [String],
    /// `--to`.
    pub to: Option<&'a str>,
    /// `--force`.
    pub force: bool,
    /// `--concurrency`.
    pub concurrency: u16,
    /// `--all`.
    pub all: bool,
}

impl RollbackArgs<'_> {
    fn asked(&self) -> Asked<'static> {
        Asked {
            operation: "rollback",
            concurrency: self.concurrency,
            all: self.all,
        }
    }
}

pub async fn rollback(
    cli: &Cli,
    run: Option<&str>,
    args: &RollbackArgs<'_>,
) -> Result<Outcome, CliError> {
    let mut state = open_existing(cli).await?;
    let outcome = rollback_in(cli, &mut state, run, args).await;
    closing(&state, outcome).await
}

async fn rollback_in(
    cli: &Cli,
    state: &mut State,
    run: Option<&str>,
    args: &RollbackArgs<'_>,
) -> Result<Outcome, CliError> {
    let (accounts, to) = (args.accounts, args.to);
    if run.is_none() && !accounts.is_empty() {
        return rollback_accounts(cli, state, args).await;
    }
    let run = state.journal.resolve_run(run)?;
    let journal = &state.journal;
    let asked = RollbackScope {
        groups: accounts.to_vec(),
        after_step: to.map(str::to_string),
    };
    let (scope, message) = match pending_rollback(journal, &run.id)? {
        Some(pending) if accounts.is_empty() && to.is_none() => (
            pending,
            format!("run {}: continuing its unfinished rollback", run.id),
        ),
        _ => {
            let message = format!("run {}: rolling back {}", run.id, describe_scope(&asked));
            (asked, message)
        }
    };
    if !args.force {
        refuse_later_runs(journal, &run.id, &scope)?;
    }
    let prepared = prepare_run(cli, state, &run, "rollback")?;
    let journal = &state.journal;
    announce(cli, &run.id, "rollback", &message);
    rollback_run(cli, journal, &prepared, &run.id, scope, &args.asked()).await
}

/// `rollback --account X…` without a run: every run that touched the accounts, newest first,
/// each run's part journaled in that run. Everything that can be refused is refused before the
/// first rollback starts; the first run whose part does not finish stops the rest, because the
/// older runs' undo records describe a state under what it left.
async fn rollback_accounts(
    cli: &Cli,
    state: &mut State,
    args: &RollbackArgs<'_>,
) -> Result<Outcome, CliError> {
    let parts = account_rollbacks(&state.journal, args.accounts, args.to)?;
    let prepared = parts
        .iter()
        .map(|p| prepare_run(cli, state, &p.run, "rollback"))
        .collect::<Result<Vec<_>, _>>()?;
    let journal = &state.journal;
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
        if let Some(lock) = &prepared.ctx.archive_lock {
            lock.set_run(id);
        }
        let outcome = rollback_run(
            cli,
            journal,
            prepared,
            id,
            part.scope.clone(),
            &args.asked(),
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
        OutputFormat::Text => errln!(
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
            outln!("Nothing to roll back for {who}: no run has its steps left to undo.");
        } else {
            outln!(
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
    outln!("\nStopped: the rollback of run {stopped} did not finish for {who}.");
    if !left.is_empty() {
        outln!(
            "Older runs not rolled back, because their undo records describe the state under it: {}.",
            runs(left)
        );
    }
    outln!(
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
        OutputFormat::Text if !cli.quiet => errln!("{text}"),
        OutputFormat::Text => {}
    }
}

async fn execute_run(
    cli: &Cli,
    journal: &Journal,
    prepared: &Prepared,
    run: &str,
    asked: &Asked<'_>,
) -> Result<Outcome, CliError> {
    let started = Instant::now();
    let reporter = Reporter::new(style(cli), "done", prepared.dag.shape());
    let summary = execute(
        &prepared.dag,
        journal,
        run,
        asked.operation,
        &options(asked.concurrency),
        &reporter,
        shutdown(),
    )
    .await?;
    reporter.finish();
    let records = journal.nodes(run)?;
    if prepared.workflow.backfill.is_some() {
        crate::output::print_jobs(
            run,
            &crate::output::backfill_jobs(&records),
            cli.output == OutputFormat::Json,
        );
    }
    let elapsed = started.elapsed().as_millis() as u64;
    let shape = prepared.dag.shape();
    let mut causes = fleet::failures(fleet::failed_nodes(shape, &records));
    causes.extend(fleet::blocked(shape, &records, &summary.groups));
    let status = summary.status;
    if cli.output == OutputFormat::Json {
        for cause in &causes {
            json_line(&fleet::cause_json(run, cause));
        }
        for g in &summary.groups {
            json_line(&crate::output::account_json(run, g));
        }
        let count = |r: GroupResult| summary.groups.iter().filter(|g| g.result == r).count();
        json_line(&json!({
            "type": "run-finished", "run": run, "status": status.as_str(), "elapsed_ms": elapsed,
            "accounts_succeeded": count(GroupResult::Succeeded), "accounts_failed": count(GroupResult::Failed),
            "accounts_blocked": count(GroupResult::Blocked), "accounts_pending": count(GroupResult::NotFinished),
            "steps_total": summary.total, "steps_done": summary.done, "steps_changed": summary.changed,
        }));
    } else {
        let finished = Finished {
            run,
            status,
            elapsed,
            steps: (summary.done, summary.total, summary.changed),
            groups: &summary.groups,
            causes: &causes,
            all: asked.all,
        };
        out!("{}", finished.text());
    }
    stopped_by_lock(&summary.failed, &format!("`trailhub resume {run}`"))?;
    Ok(if status == RunStatus::Succeeded {
        Outcome::Ok
    } else {
        Outcome::Failed
    })
}

/// How a run ended, as `apply`, `resume` and `backfill` tell it.
struct Finished<'a> {
    run: &'a str,
    status: RunStatus,
    elapsed: u64,
    /// Steps done, in all, and changed.
    steps: (usize, usize, usize),
    groups: &'a [GroupSummary],
    causes: &'a [Cause],
    all: bool,
}

impl Finished<'_> {
    /// A small fleet's table of every account then the counts; a fleet's counts, causes and
    /// the accounts not done. Then what to do next.
    fn text(&self) -> String {
        let run = self.run;
        let (done, total, changed) = self.steps;
        let steps = format!("{done} of {total} steps done, {changed} changed");
        let mut out = if fleet::is_fleet(self.groups) {
            let headline = format!(
                "Run {run} {} in {}: {} ({steps}).",
                self.status.as_str(),
                duration(self.elapsed),
                Counts::of(self.groups).text()
            );
            fleet::Summary {
                headline: &headline,
                causes: self.causes,
                groups: self.groups,
                all: self.all,
                rest: &format!("`trailhub status {run} --output json` lists them"),
                all_hint: "`--all`",
            }
            .text()
        } else {
            let count = |r: GroupResult| self.groups.iter().filter(|g| g.result == r).count();
            format!(
                "{}\n\nRun {run} {} in {}: {} succeeded, {} failed, {} blocked ({steps}).\n",
                accounts_table(self.groups).trim_end(),
                self.status.as_str(),
                duration(self.elapsed),
                count(GroupResult::Succeeded),
                count(GroupResult::Failed),
                count(GroupResult::Blocked),
            )
        };
        if self.status != RunStatus::Succeeded && fleet::is_fleet(self.groups) {
            out.push('\n');
        }
        match self.status {
            RunStatus::Succeeded => {}
            RunStatus::Interrupted => {
                out.push_str(&format!("Interrupted: `trailhub resume {run}` continues it.\n"))
            }
            _ => out.push_str(&format!(
                "`trailhub status {run}` shows each failure and what to do; after fixing, `trailhub resume {run}` finishes only what is left.\n"
            )),
        }
        out
    }
}

/// A run whose archive writes found the archive lock held by another process ends with exit 2
/// and the lock's holder and age, saying how to continue.
fn stopped_by_lock(
    failed: &std::collections::BTreeMap<trailhub_engine::NodeId, trailhub_engine::ErrorRecord>,
    continue_with: &str,
) -> Result<(), CliError> {
    match failed
        .values()
        .find(|e| e.code.as_deref() == Some("ArchiveLocked"))
    {
        Some(e) => Err(CliError::ArchiveLocked(format!(
            "{}; the steps that write the archive's policies did not run: {continue_with} continues",
            e.message
        ))),
        None => Ok(()),
    }
}

async fn rollback_run(
    cli: &Cli,
    journal: &Journal,
    prepared: &Prepared,
    run: &str,
    scope: RollbackScope,
    asked: &Asked<'_>,
) -> Result<Outcome, CliError> {
    let started = Instant::now();
    let reporter = Reporter::new(style(cli), "rolled back", &Default::default());
    let summary = trailhub_engine::rollback(
        &prepared.dag,
        journal,
        run,
        &scope,
        &options(asked.concurrency),
        &reporter,
        shutdown(),
    )
    .await?;
    reporter.finish();
    let elapsed = started.elapsed().as_millis() as u64;
    if cli.output == OutputFormat::Json {
        rollback_json(run, &summary, elapsed);
    } else {
        let groups: Vec<_> = in_scope(&summary).cloned().collect();
        if fleet::is_fleet(&groups) {
            out!("{}", rollback_fleet_text(run, &summary, elapsed, asked.all));
        } else {
            rollback_text(run, &summary, elapsed);
        }
    }
    stopped_by_lock(&summary.failed, &format!("`trailhub rollback {run}`"))?;
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
    for cause in fleet::failures(&summary.failed) {
        json_line(&fleet::cause_json(run, &cause));
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
        outln!("Notes:");
        for (node, note) in &summary.notes {
            outln!("  {node}: {note}");
        }
    }
    for (node, error) in &summary.failed {
        let code = error
            .code
            .as_deref()
            .map(|c| format!("[{c}] "))
            .unwrap_or_default();
        outln!("  ✗ {node}: {code}{}", error.message);
    }
    for (node, by) in &summary.blocked {
        let by = by
            .as_ref()
            .map_or("a step after it".to_string(), |b| b.to_string());
        outln!("  ⊘ {node}: kept, because {by} could not be rolled back");
    }
    let groups: Vec<_> = in_scope(summary).cloned().collect();
    outln!("{}", accounts_table(&groups).trim_end());
    outln!(
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
        outln!("`trailhub rollback {run}` continues it once the cause is fixed.");
    }
}

/// A fleet's rollback: the notes, the failures and what was kept, each grouped by step and
/// cause with the accounts it concerns, then the accounts not rolled back (all with `--all`).
fn rollback_fleet_text(run: &str, summary: &RollbackSummary, elapsed: u64, all: bool) -> String {
    let groups: Vec<_> = in_scope(summary).cloned().collect();
    let headline = format!(
        "Rollback of run {run} ({}) {} in {}: {} of {} steps undone, {} changed, {} failed, {} kept.",
        describe_scope(&summary.scope),
        summary.status.as_str(),
        duration(elapsed),
        summary.rolled_back,
        summary.selected,
        summary.changed,
        summary.failed.len(),
        summary.blocked.len()
    );
    let causes = fleet::failures(&summary.failed);
    let rest = format!("`trailhub status {run} --output json` lists them");
    let view = fleet::Summary {
        headline: &headline,
        causes: &causes,
        groups: &groups,
        all,
        rest: &rest,
        all_hint: "`--all`",
    };
    let notes = fleet::notes(
        summary
            .notes
            .iter()
            .map(|(node, note)| (node, note.clone()))
            .chain(summary.blocked.iter().map(|(node, by)| {
                let by = by.as_ref().map_or("a step after it".to_string(), |b| {
                    fleet::generalize(b.as_str(), node.group())
                });
                (node, format!("kept, because {by} could not be rolled back"))
            })),
    );
    let mut out = view.text_with(&notes);
    if summary.not_run > 0 || !summary.failed.is_empty() {
        out.push_str(&format!(
            "`trailhub rollback {run}` continues it once the cause is fixed.\n"
        ));
    }
    out
}

/// The groups the rollback's scope names (all when it names none).
fn in_scope(summary: &RollbackSummary) -> impl Iterator<Item = &trailhub_engine::GroupSummary> {
    summary
        .groups
        .iter()
        .filter(|g| summary.scope.groups.is_empty() || summary.scope.groups.contains(&g.group))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic;

    fn finished(n: usize, failing: &[usize], all: bool) -> String {
        let (view, _) = synthetic::run(n, failing);
        let groups = view.groups();
        let mut causes = fleet::failures(fleet::failed_nodes(&view.shape, &view.records));
        causes.extend(fleet::blocked(&view.shape, &view.records, &groups));
        let done = view
            .records
            .values()
            .filter(|r| r.state == trailhub_state::NodeState::Done)
            .count();
        Finished {
            run: &view.run.id,
            status: view.run.status,
            elapsed: 61_200,
            steps: (done, view.shape.len(), done),
            groups: &groups,
            causes: &causes,
            all,
        }
        .text()
    }

    #[test]
    fn fifty_accounts_with_three_failures_end_on_one_screen_with_the_failures_first() {
        let text = finished(50, &[11, 12, 13], false);
        insta::assert_snapshot!("apply_fifty_three_failed", text);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() <= 15, "{} lines:\n{text}", lines.len());
        assert!(lines[0].contains("47 succeeded, 3 failed, 0 blocked, 0 pending"));
        assert!(lines[2].starts_with("3 accounts failed at bucket-check: NoSuchBucket — 200000000011 200000000012 200000000013"));
        assert!(
            !text.contains("200000000001  succeeded"),
            "accounts done are not listed"
        );
        let all = finished(50, &[11, 12, 13], true);
        assert!(all.contains("200000000001  succeeded") && all.contains("200000000050  succeeded"));
    }

    #[test]
    fn a_fleets_rollback_groups_its_notes_and_failures() {
        let (view, _) = synthetic::run(12, &[]);
        let mut groups = view.groups();
        for g in groups
            .iter_mut()
            .filter(|g| g.group != trailhub_workflows::ARCHIVE)
        {
            g.result = GroupResult::RolledBack;
        }
        let failed_node: trailhub_engine::NodeId =
            "200000000004/role-stack".parse().expect("an id");
        let failed_group = groups
            .iter_mut()
            .find(|g| g.group == "200000000004")
            .expect("it");
        failed_group.result = GroupResult::Failed;
        let mut notes = std::collections::BTreeMap::new();
        for i in 1..=12 {
            let a = format!("{}", 200_000_000_000u64 + i);
            notes.insert(
                format!("{a}/versioning").parse().expect("an id"),
                format!("bucket cm-members-cloudtrail-{a} stays versioned: S3 can only suspend it"),
            );
        }
        let summary = RollbackSummary {
            status: RunStatus::RollbackFailed,
            scope: RollbackScope::default(),
            selected: 96,
            rolled_back: 95,
            changed: 60,
            failed: [(
                failed_node,
                trailhub_state::ErrorRecord {
                    message: "stack deletion failed".into(),
                    code: Some("DELETE_FAILED".into()),
                    retryable: false,
                    hint: None,
                },
            )]
            .into(),
            blocked: Default::default(),
            notes,
            not_run: 0,
            groups,
        };
        let text = rollback_fleet_text("R", &summary, 3_000, false);
        assert!(
            text.contains("1 account failed at role-stack: DELETE_FAILED — 200000000004\n"),
            "{text}"
        );
        assert!(
            text.contains("12 accounts at versioning: bucket cm-members-cloudtrail-{account_id} stays versioned: S3 can only suspend it — 200000000001 "),
            "{text}"
        );
        assert!(text.contains("200000000004  failed"), "{text}");
        assert!(!text.contains("200000000001  rolled-back"), "{text}");
        assert!(text.lines().count() <= 12, "{text}");
    }

    #[test]
    fn a_small_fleet_keeps_its_table_of_every_account() {
        let text = finished(5, &[2], false);
        assert!(
            text.starts_with("ACCOUNT       RESULT     STEPS  FAILED STEP\narchive"),
            "{text}"
        );
        assert!(text.contains("200000000001  succeeded"));
        assert!(text.contains("\nRun 20261128T101500Z-0001 partially-failed in 1m01s: 5 succeeded, 1 failed, 0 blocked"));
    }
}
