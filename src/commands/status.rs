//! `status`, `runs` and `history`: what the journal says, read-only.

use super::common::{RunView, open_existing_journal};
use crate::cli::{Cli, OutputFormat};
use crate::errors::{CliError, Outcome};
use crate::output::{
    account_json, accounts_table, clock, error_line, json_line, table, time, time_ms, truncate,
};
use serde_json::json;
use trailhub_state::{EventKind, NodeState};

pub fn status(cli: &Cli, run: Option<&str>) -> Result<Outcome, CliError> {
    let journal = open_existing_journal(cli)?;
    let view = RunView::read(&journal, run)?;
    let run = &view.run;
    if cli.output == OutputFormat::Json {
        json_line(&json!({
            "type": "run", "run": run.id, "status": run.status.as_str(), "created_at": time(run.created_at_ms),
            "updated_at": time(run.updated_at_ms), "inventory": run.source, "workflow": run.workflow,
        }));
        for g in view.groups() {
            json_line(&account_json(&run.id, &g));
        }
        for id in view.ordered_nodes() {
            let rec = view.records.get(id).cloned().unwrap_or_default();
            json_line(&json!({
                "type": "node", "run": run.id, "node": id, "account": id.group(), "step": id.step(),
                "state": rec.state.as_str(), "attempts": rec.attempts,
                "started_at": rec.started_at_ms.map(time), "finished_at": rec.finished_at_ms.map(time),
                "error": rec.last_error, "rollback_note": rec.rollback_note,
            }));
        }
        crate::output::print_jobs(&run.id, &crate::output::backfill_jobs(&view.records), true);
        return Ok(Outcome::Ok);
    }
    println!(
        "Run {}  {}  created {}  inventory {}",
        run.id,
        run.status.as_str(),
        time(run.created_at_ms),
        run.source.as_deref().unwrap_or("(frozen)")
    );
    println!("{}", accounts_table(&view.groups()));
    status_nodes(&view);
    crate::output::print_jobs(&run.id, &crate::output::backfill_jobs(&view.records), false);
    Ok(Outcome::Ok)
}

/// The node table, then each failure with what to do.
fn status_nodes(view: &RunView) {
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for id in view.ordered_nodes() {
        let rec = view.records.get(id).cloned().unwrap_or_default();
        let error = rec.last_error.as_ref();
        if matches!(rec.state, NodeState::Failed | NodeState::RollbackFailed)
            && let Some(e) = error
        {
            problems.push((id, e.clone()));
        }
        rows.push(vec![
            id.group().to_string(),
            id.step().to_string(),
            rec.state.as_str().to_string(),
            rec.attempts.to_string(),
            rec.started_at_ms.map(clock).unwrap_or_default(),
            rec.finished_at_ms.map(clock).unwrap_or_default(),
            error
                .map(|e| truncate(&error_line(e), 90))
                .unwrap_or_default(),
        ]);
    }
    let header = [
        "ACCOUNT",
        "STEP",
        "STATE",
        "ATTEMPTS",
        "STARTED",
        "FINISHED",
        "LAST ERROR",
    ];
    print!("{}", table(&header, &rows));
    for (node, e) in &problems {
        println!("\n{node} failed: {}", error_line(e));
        if let Some(hint) = &e.hint {
            println!("  what to do: {hint}");
        }
    }
}

pub fn runs(cli: &Cli) -> Result<Outcome, CliError> {
    let journal = open_existing_journal(cli)?;
    let mut rows = Vec::new();
    for run in journal.runs()? {
        let nodes = journal.nodes(&run.id)?;
        let done = nodes
            .values()
            .filter(|r| r.state == NodeState::Done)
            .count();
        let accounts = run
            .graph
            .as_ref()
            .map(|g| {
                let groups: std::collections::BTreeSet<&str> =
                    g.nodes.iter().map(|n| n.group()).collect();
                groups.len().saturating_sub(1)
            })
            .unwrap_or(0);
        if cli.output == OutputFormat::Json {
            json_line(&json!({
                "type": "run", "run": run.id, "status": run.status.as_str(), "created_at": time(run.created_at_ms),
                "updated_at": time(run.updated_at_ms), "inventory": run.source, "source_accounts": accounts,
                "steps_done": done, "steps_journaled": nodes.len(),
            }));
        } else {
            rows.push(vec![
                run.id.clone(),
                time(run.created_at_ms),
                run.status.as_str().to_string(),
                accounts.to_string(),
                done.to_string(),
                run.source.clone().unwrap_or_default(),
            ]);
        }
    }
    if cli.output == OutputFormat::Text {
        print!(
            "{}",
            table(
                &[
                    "RUN",
                    "CREATED",
                    "STATUS",
                    "ACCOUNTS",
                    "STEPS DONE",
                    "INVENTORY"
                ],
                &rows
            )
        );
    }
    Ok(Outcome::Ok)
}

pub fn history(cli: &Cli, run: Option<&str>) -> Result<Outcome, CliError> {
    let journal = open_existing_journal(cli)?;
    let run = journal.resolve_run(run)?;
    let mut rows = Vec::new();
    for e in journal.events(&run.id)? {
        let (kind, detail) = describe(&e.kind);
        if cli.output == OutputFormat::Json {
            json_line(&json!({
                "type": "event", "run": run.id, "seq": e.seq, "at": time(e.at_ms), "at_ms": e.at_ms,
                "node": e.node, "event": e.kind,
            }));
        } else {
            rows.push(vec![
                time_ms(e.at_ms),
                e.node.as_ref().map(|n| n.to_string()).unwrap_or_default(),
                kind,
                detail,
            ]);
        }
    }
    if cli.output == OutputFormat::Text {
        print!("{}", table(&["TIME", "NODE", "EVENT", "DETAIL"], &rows));
    }
    Ok(Outcome::Ok)
}

fn describe(kind: &EventKind) -> (String, String) {
    let (k, d) = match kind {
        EventKind::RunCreated => ("run-created", String::new()),
        EventKind::RunStarted { operation, pid } => {
            ("run-started", format!("{operation} (pid {pid})"))
        }
        EventKind::RunFinished { operation, status } => {
            ("run-finished", format!("{operation}: {}", status.as_str()))
        }
        EventKind::AttemptStarted { attempt } => ("attempt", format!("#{attempt}")),
        EventKind::AttemptFailed {
            attempt,
            error,
            retry_in_ms,
        } => (
            "attempt-failed",
            format!(
                "#{attempt} {}{}",
                error_line(error),
                retry_in_ms
                    .map(|ms| format!(" (retry in {})", crate::output::duration(ms)))
                    .unwrap_or_default()
            ),
        ),
        EventKind::UndoRecorded => ("undo-recorded", String::new()),
        EventKind::NodeDone { changed } => (
            "done",
            if *changed {
                "changed".into()
            } else {
                "unchanged".into()
            },
        ),
        EventKind::NodeFailed { error } => ("failed", error_line(error)),
        EventKind::NodeBlocked { by } => (
            "blocked",
            by.as_ref().map(|b| format!("by {b}")).unwrap_or_default(),
        ),
        EventKind::Call {
            service,
            operation,
            mutating,
            detail,
        } => (
            if *mutating { "aws-call" } else { "aws-read" },
            format!("{service}:{operation} {detail}"),
        ),
        EventKind::RollbackStarted { attempt } => ("rollback", format!("#{attempt}")),
        EventKind::RolledBack { note } => ("rolled-back", note.clone().unwrap_or_default()),
        EventKind::RollbackFailed { error } => ("rollback-failed", error_line(error)),
        EventKind::Note { message } => ("note", message.clone()),
        EventKind::CallRetried {
            service,
            operation,
            attempt,
            reason,
        } => (
            "call-retried",
            format!("{service}:{operation} attempt {attempt} after {reason}"),
        ),
    };
    (k.to_string(), d)
}
