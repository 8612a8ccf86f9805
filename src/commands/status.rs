//! `status`, `runs` and `history`: what the journal says, read-only.

use super::common::prepare_run;
use crate::cli::{Cli, OutputFormat};
use crate::errors::{CliError, Outcome};
use crate::output::{clock, json_line, table, time, time_ms, truncate};
use serde_json::json;
use trailhub_state::{EventKind, Journal, NodeState};

pub fn status(cli: &Cli, run: Option<&str>) -> Result<Outcome, CliError> {
    let journal = Journal::open_existing(&cli.state)?;
    let run = journal.resolve_run(run)?;
    let prepared = prepare_run(cli, &run)?;
    let records = journal.nodes(&run.id)?;
    let order = prepared.group_order();
    let topo = prepared.dag.topological();
    let mut nodes: Vec<&trailhub_engine::NodeInfo> =
        topo.iter().filter_map(|id| prepared.dag.node(id)).collect();
    nodes.sort_by_key(|n| {
        order
            .iter()
            .position(|g| *g == n.group)
            .unwrap_or(usize::MAX)
    });
    let json = cli.output == OutputFormat::Json;
    if json {
        json_line(&json!({
            "type": "run", "run": run.id, "status": run.status.as_str(), "created_at": time(run.created_at_ms),
            "updated_at": time(run.updated_at_ms), "inventory": run.source, "workflow": run.workflow,
        }));
    } else {
        println!(
            "Run {}  {}  created {}  inventory {}",
            run.id,
            run.status.as_str(),
            time(run.created_at_ms),
            run.source.as_deref().unwrap_or("(frozen)")
        );
    }
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for n in nodes {
        let rec = records.get(&n.id).cloned().unwrap_or_default();
        let error = rec.last_error.as_ref();
        if json {
            json_line(&json!({
                "type": "node", "run": run.id, "node": n.id, "account": n.group, "step": n.step,
                "state": rec.state.as_str(), "attempts": rec.attempts,
                "started_at": rec.started_at_ms.map(time), "finished_at": rec.finished_at_ms.map(time),
                "error": error, "rollback_note": rec.rollback_note,
            }));
            continue;
        }
        let err_text = error
            .map(|e| {
                let code = e
                    .code
                    .as_deref()
                    .map(|c| format!("[{c}] "))
                    .unwrap_or_default();
                truncate(&format!("{code}{}", e.message), 90)
            })
            .unwrap_or_default();
        if matches!(rec.state, NodeState::Failed | NodeState::RollbackFailed)
            && let Some(e) = error
        {
            problems.push((n.id.clone(), e.clone()));
        }
        rows.push(vec![
            n.group.clone(),
            n.step.clone(),
            rec.state.as_str().to_string(),
            rec.attempts.to_string(),
            rec.started_at_ms.map(clock).unwrap_or_default(),
            rec.finished_at_ms.map(clock).unwrap_or_default(),
            err_text,
        ]);
    }
    if !json {
        print!(
            "{}",
            table(
                &[
                    "ACCOUNT",
                    "STEP",
                    "STATE",
                    "ATTEMPTS",
                    "STARTED",
                    "FINISHED",
                    "LAST ERROR"
                ],
                &rows
            )
        );
        for (node, e) in &problems {
            let code = e
                .code
                .as_deref()
                .map(|c| format!("[{c}] "))
                .unwrap_or_default();
            println!("\n{node} failed: {code}{}", e.message);
            if let Some(hint) = &e.hint {
                println!("  what to do: {hint}");
            }
        }
    }
    Ok(Outcome::Ok)
}

pub fn runs(cli: &Cli) -> Result<Outcome, CliError> {
    let journal = Journal::open_existing(&cli.state)?;
    let mut rows = Vec::new();
    for run in journal.runs()? {
        let nodes = journal.nodes(&run.id)?;
        let done = nodes
            .values()
            .filter(|r| r.state == NodeState::Done)
            .count();
        let accounts = trailhub_workflows::parse(&run.definition, "journal")
            .map(|i| i.sources.len())
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
    let journal = Journal::open_existing(&cli.state)?;
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
                e.node.clone().unwrap_or_default(),
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

fn error_text(e: &trailhub_state::ErrorRecord) -> String {
    let code = e
        .code
        .as_deref()
        .map(|c| format!("[{c}] "))
        .unwrap_or_default();
    format!("{code}{}", e.message)
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
                error_text(error),
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
        EventKind::NodeFailed { error } => ("failed", error_text(error)),
        EventKind::NodeBlocked { by } => ("blocked", format!("by {by}")),
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
        EventKind::RollbackFailed { error } => ("rollback-failed", error_text(error)),
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
