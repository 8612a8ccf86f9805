//! `status`, `runs` and `history`: what the journal says, read-only.

use super::common::{RunView, open_existing_state};
use crate::cli::{Cli, OutputFormat};
use crate::errors::{CliError, Outcome};
use crate::fleet::{self, Counts};
use crate::output::{
    account_json, accounts_table, clock, error_line, json_line, table, time, time_ms, truncate,
};
use crate::print::out;
use serde_json::json;
use trailhub_engine::GroupSummary;
use trailhub_state::{EventKind, NodeState};

pub async fn status(cli: &Cli, run: Option<&str>, all: bool) -> Result<Outcome, CliError> {
    let state = open_existing_state(cli).await?;
    let journal = &state.journal;
    let view = RunView::read(journal, run)?;
    let run = &view.run;
    let groups = view.groups();
    let mut causes = fleet::failures(fleet::failed_nodes(&view.shape, &view.records));
    causes.extend(fleet::blocked(&view.shape, &view.records, &groups));
    if cli.output == OutputFormat::Json {
        json_line(&json!({
            "type": "run", "run": run.id, "status": run.status.as_str(), "created_at": time(run.created_at_ms),
            "updated_at": time(run.updated_at_ms), "inventory": run.source, "workflow": run.workflow,
        }));
        for cause in &causes {
            json_line(&fleet::cause_json(&run.id, cause));
        }
        for g in &groups {
            json_line(&account_json(&run.id, g));
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
        super::team::print_locks(cli, &state).await?;
        return Ok(Outcome::Ok);
    }
    out!("{}", status_text(&view, &groups, &causes, all));
    crate::output::print_jobs(&run.id, &crate::output::backfill_jobs(&view.records), false);
    super::team::print_locks(cli, &state).await?;
    Ok(Outcome::Ok)
}

/// `status` as text: the run, then a small fleet's every account and step (also a fleet's
/// with `all`), or a fleet's counts, causes and accounts not done.
fn status_text(
    view: &RunView,
    groups: &[GroupSummary],
    causes: &[fleet::Cause],
    all: bool,
) -> String {
    let run = &view.run;
    let mut out = format!(
        "Run {}  {}  created {}  inventory {}\n",
        run.id,
        run.status.as_str(),
        time(run.created_at_ms),
        run.source.as_deref().unwrap_or("(frozen)")
    );
    if fleet::is_fleet(groups) && !all {
        let done = view
            .records
            .values()
            .filter(|r| r.state == NodeState::Done)
            .count();
        let headline = format!(
            "{} ({done} of {} steps done).",
            capitalized(&Counts::of(groups).text()),
            view.shape.len()
        );
        let summary = fleet::Summary {
            headline: &headline,
            causes,
            groups,
            all,
            rest: "`trailhub status --output json` lists them",
            all_hint: "`trailhub status --all`",
        };
        out.push_str(&summary.text());
    } else {
        out.push_str(&accounts_table(groups));
        out.push('\n');
        out.push_str(&status_nodes(view));
    }
    out
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The node table, then each failure with what to do.
fn status_nodes(view: &RunView) -> String {
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
    let mut out = table(&header, &rows);
    for (node, e) in &problems {
        out.push_str(&format!("\n{node} failed: {}\n", error_line(e)));
        if let Some(hint) = &e.hint {
            out.push_str(&format!("  what to do: {hint}\n"));
        }
    }
    out
}

pub async fn runs(cli: &Cli) -> Result<Outcome, CliError> {
    let state = open_existing_state(cli).await?;
    let journal = &state.journal;
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
        out!(
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

pub async fn history(cli: &Cli, run: Option<&str>) -> Result<Outcome, CliError> {
    let state = open_existing_state(cli).await?;
    let journal = &state.journal;
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
        out!("{}", table(&["TIME", "NODE", "EVENT", "DETAIL"], &rows));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic;

    fn status(n: usize, failing: &[usize], all: bool) -> String {
        let (view, _) = synthetic::run(n, failing);
        let groups = view.groups();
        let mut causes = fleet::failures(fleet::failed_nodes(&view.shape, &view.records));
        causes.extend(fleet::blocked(&view.shape, &view.records, &groups));
        status_text(&view, &groups, &causes, all)
    }

    #[test]
    fn a_fleets_status_fits_on_one_screen_with_the_failures_first() {
        let text = status(50, &[11, 12, 13], false);
        insta::assert_snapshot!("status_fifty_three_failed", text);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() <= 15, "{} lines:\n{text}", lines.len());
        assert!(
            lines[3].starts_with("3 accounts failed at bucket-check: NoSuchBucket"),
            "{text}"
        );
        let all = status(50, &[11, 12, 13], true);
        assert!(
            all.contains("200000000050  verify        done"),
            "--all: every step"
        );
    }

    #[test]
    fn beyond_twenty_accounts_a_cause_says_where_the_rest_are() {
        let failing: Vec<usize> = (1..=25).collect();
        let text = status(60, &failing, false);
        assert!(
            text.contains("25 accounts failed at bucket-check: NoSuchBucket — 200000000001"),
            "{text}"
        );
        assert!(
            text.contains("200000000020 … and 5 more (`trailhub status --output json` lists them)")
        );
        assert!(
            !text
                .lines()
                .nth(3)
                .unwrap_or_default()
                .contains("200000000021")
        );
    }
}
