//! `trailhub report`: one self-contained HTML file for the post-mortem of a run: the DAG as SVG
//! colored by state, a timeline (Gantt chart) of every node's attempts per account, and the
//! per-account table with errors. Nothing in it is fetched from the network.

use super::common::{RunView, open_existing_journal};
use super::graph::svg;
use crate::cli::Cli;
use crate::errors::{CliError, Outcome};
use crate::output::{duration, time};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use trailhub_engine::{GraphFormat, render};
use trailhub_state::{Event, EventKind, NodeId, NodeState};

pub fn report(cli: &Cli, run: Option<&str>, out: &Path) -> Result<Outcome, CliError> {
    let journal = open_existing_journal(cli)?;
    let view = RunView::read(&journal, run)?;
    let events = journal.events(&view.run.id)?;
    let run = &view.run;
    let html = render_report(&view, &events);
    std::fs::write(out, html)
        .map_err(|e| CliError::Environment(format!("cannot write {}: {e}", out.display())))?;
    if !cli.quiet {
        eprintln!("report of run {} written to {}", run.id, out.display());
    }
    Ok(Outcome::Ok)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One bar of the timeline: a node's attempt (or rollback) from start to end.
struct Bar {
    node: NodeId,
    start: u64,
    end: u64,
    kind: &'static str,
    label: String,
}

fn bars(events: &[Event], last: u64) -> Vec<Bar> {
    let mut open: BTreeMap<NodeId, (u64, String)> = BTreeMap::new();
    let mut out = Vec::new();
    for e in events {
        let Some(node) = &e.node else { continue };
        let close = |open: &mut BTreeMap<NodeId, (u64, String)>,
                     out: &mut Vec<Bar>,
                     kind,
                     label: String| {
            if let Some((start, what)) = open.remove(node) {
                out.push(Bar {
                    node: node.clone(),
                    start,
                    end: e.at_ms.max(start),
                    kind,
                    label: format!("{what}: {label}"),
                });
            }
        };
        match &e.kind {
            EventKind::AttemptStarted { attempt } => {
                open.insert(node.clone(), (e.at_ms, format!("attempt {attempt}")));
            }
            EventKind::RollbackStarted { attempt } => {
                open.insert(node.clone(), (e.at_ms, format!("rollback {attempt}")));
            }
            EventKind::NodeDone { changed } => close(
                &mut open,
                &mut out,
                "done",
                if *changed {
                    "done, changed".into()
                } else {
                    "done, unchanged".into()
                },
            ),
            EventKind::RolledBack { note } => close(
                &mut open,
                &mut out,
                "rolled-back",
                note.clone().unwrap_or_else(|| "rolled back".into()),
            ),
            EventKind::AttemptFailed { error, .. } => close(
                &mut open,
                &mut out,
                "retried",
                format!("retried after {}", error.message),
            ),
            EventKind::NodeFailed { error } | EventKind::RollbackFailed { error } => close(
                &mut open,
                &mut out,
                "failed",
                format!("failed: {}", error.message),
            ),
            _ => {}
        }
    }
    for (node, (start, what)) in open {
        out.push(Bar {
            node,
            start,
            end: last.max(start),
            kind: "running",
            label: format!("{what}: did not report back (interrupted)"),
        });
    }
    out
}

fn timeline_svg(view: &RunView, events: &[Event]) -> String {
    let Some(first) = events.first().map(|e| e.at_ms) else {
        return "<p>No events.</p>".into();
    };
    let last = events.last().map(|e| e.at_ms).unwrap_or(first);
    let bars = bars(events, last);
    let rows: Vec<(&NodeId, String)> = view
        .ordered_nodes()
        .into_iter()
        .map(|id| (id, format!("{} / {}", id.group(), id.step())))
        .collect();
    // A clock set back while the run went on must not make a negative span.
    let span = last.saturating_sub(first).max(1) as f64;
    let (label_w, chart_w, row_h) = (230.0, 760.0, 18.0);
    let height = rows.len() as f64 * row_h + 40.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" id="timeline-svg" width="{}" height="{height}" font-family="sans-serif" font-size="11">"#,
        label_w + chart_w + 20.0
    );
    for i in 0..=4 {
        let x = label_w + chart_w * i as f64 / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{x}" y1="14" x2="{x}" y2="{height}" stroke="#ddd"/><text x="{x}" y="11" text-anchor="middle" fill="#555">+{}</text>"##,
            duration((span * i as f64 / 4.0) as u64)
        );
    }
    for (i, (id, label)) in rows.iter().enumerate() {
        let y = 20.0 + i as f64 * row_h;
        let _ = write!(
            svg,
            r##"<text x="4" y="{}" fill="#222">{}</text>"##,
            y + 12.0,
            esc(label)
        );
        for bar in bars.iter().filter(|b| &b.node == *id) {
            let x = label_w + chart_w * bar.start.saturating_sub(first) as f64 / span;
            let w = (chart_w * bar.end.saturating_sub(bar.start) as f64 / span).max(2.0);
            let color = match bar.kind {
                "done" => "#5cb85c",
                "failed" => "#d9534f",
                "retried" => "#f0ad4e",
                "rolled-back" => "#5b9bd5",
                _ => "#aaaaaa",
            };
            let _ = write!(
                svg,
                r#"<rect class="bar {}" data-node="{}" x="{x:.1}" y="{}" width="{w:.1}" height="{}" fill="{color}"><title>{} — {} ({})</title></rect>"#,
                bar.kind,
                esc(id.as_str()),
                y + 2.0,
                row_h - 4.0,
                esc(id.as_str()),
                esc(&bar.label),
                duration(bar.end.saturating_sub(bar.start))
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn render_report(view: &RunView, events: &[Event]) -> String {
    let states: BTreeMap<NodeId, NodeState> = view
        .records
        .iter()
        .map(|(k, v)| (k.clone(), v.state))
        .collect();
    let dot = render(&view.shape, GraphFormat::Dot, Some(&states));
    let graph = match svg(&dot) {
        Ok(s) => {
            // Drop the XML prologue and DOCTYPE: the SVG is inlined in HTML.
            let start = s.find("<svg").unwrap_or(0);
            s[start..].to_string()
        }
        Err(e) => format!(
            "<p>{}</p><pre>{}</pre>",
            esc(&e.to_string()),
            esc(&render(&view.shape, GraphFormat::Text, Some(&states)))
        ),
    };
    let (accounts, mut errors) = accounts_html(view);
    if errors.is_empty() {
        errors = "<li>None.</li>".into();
    }
    let jobs: String = crate::output::backfill_jobs(&view.records)
        .iter()
        .map(|(account, job)| format!("<li>{}: {}</li>", esc(account), esc(&job.describe())))
        .collect();
    let jobs = if jobs.is_empty() {
        String::new()
    } else {
        format!("<h2>Backfill jobs</h2>\n<ul id=\"jobs\">{jobs}</ul>\n")
    };
    format!(
        r##"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>trailhub report — run {id}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
h1 {{ font-size: 1.4em; }} h2 {{ font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; font-size: 0.9em; }}
tr.failed td {{ background: #f8d7da; }} tr.succeeded td:nth-child(2) {{ color: #2e7d32; }} tr.blocked td {{ background: #fdebd0; }}
.legend span {{ display: inline-block; padding: 1px 6px; margin-right: 6px; color: #fff; font-size: 0.85em; }}
#graph svg {{ max-width: 100%; height: auto; }}
</style></head>
<body>
<h1>trailhub run <code id="run-id">{id}</code></h1>
<p id="summary">Status <b id="run-status">{status}</b> · created {created} · last change {updated} · workflow {workflow} · inventory {source} · {nodes} steps, {done_count} done.</p>
<h2>Graph</h2>
<div id="graph">{graph}</div>
<h2>Timeline</h2>
<p class="legend"><span style="background:#5cb85c">done</span><span style="background:#f0ad4e">retried</span><span style="background:#d9534f">failed</span><span style="background:#5b9bd5">rolled back</span><span style="background:#aaa">interrupted</span></p>
<div id="timeline">{timeline}</div>
<h2>Accounts</h2>
<table id="accounts"><thead><tr><th>Account</th><th>Result</th><th>Steps done</th><th>Attempts</th><th>First error</th></tr></thead><tbody>{accounts}</tbody></table>
<h2>Errors</h2>
<ul id="errors">{errors}</ul>
{jobs}</body></html>
"##,
        id = esc(&view.run.id),
        status = view.run.status.as_str(),
        created = time(view.run.created_at_ms),
        updated = time(view.run.updated_at_ms),
        workflow = esc(&view.run.workflow),
        source = esc(view.run.source.as_deref().unwrap_or("(frozen)")),
        nodes = view.shape.len(),
        done_count = view
            .records
            .values()
            .filter(|r| r.state == NodeState::Done)
            .count(),
        graph = graph,
        timeline = timeline_svg(view, events),
        accounts = accounts,
        errors = errors,
        jobs = jobs,
    )
}

/// The accounts table's rows (one per group summary) and the list of every failed node.
fn accounts_html(view: &RunView) -> (String, String) {
    let mut accounts = String::new();
    for g in view.groups() {
        let first_error = match (&g.failed_step, &g.error) {
            (Some(step), Some(e)) => format!(
                "{step}: [{}] {}",
                e.code.clone().unwrap_or_default(),
                e.message
            ),
            _ => String::new(),
        };
        let result = g.result.as_str();
        let _ = write!(
            accounts,
            r#"<tr class="{result}" data-account="{}"><td>{}</td><td>{result}</td><td>{}/{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&g.group),
            esc(&g.group),
            g.done,
            g.steps,
            g.attempts,
            esc(&first_error)
        );
    }
    let mut errors = String::new();
    for id in view.ordered_nodes() {
        let Some(r) = view.records.get(id) else {
            continue;
        };
        if let (NodeState::Failed | NodeState::RollbackFailed, Some(e)) = (r.state, &r.last_error) {
            let _ = write!(
                errors,
                r#"<li class="error" data-node="{}"><b>{}</b> <code>{}</code> {}{}</li>"#,
                esc(id.as_str()),
                esc(id.as_str()),
                esc(e.code.as_deref().unwrap_or_default()),
                esc(&e.message),
                e.hint
                    .as_ref()
                    .map(|h| format!("<br><i>what to do:</i> {}", esc(h)))
                    .unwrap_or_default()
            );
        }
    }
    (accounts, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailhub_state::{GraphRecord, Journal, NewRun};

    fn id(text: &str) -> NodeId {
        text.parse().expect("a node id")
    }

    fn event(seq: u64, at_ms: u64, node: &str, kind: EventKind) -> Event {
        Event {
            seq,
            at_ms,
            node: Some(id(node)),
            kind,
        }
    }

    /// A run of two nodes whose events were journaled while the clock was set back: an attempt
    /// ends before it started, and the last event is older than the first.
    #[test]
    fn a_report_over_a_clock_set_back_renders_without_panicking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(dir.path()).expect("open");
        let graph = GraphRecord {
            nodes: vec![id("a/role"), id("a/versioning")],
            edges: vec![(id("a/versioning"), id("a/role"))],
        };
        journal
            .create_run(NewRun {
                workflow: "onboard",
                definition: "",
                source: None,
                options: serde_json::Value::Null,
                graph: Some(graph),
            })
            .expect("run");
        let view = RunView::read(&journal, None).expect("view");
        let events = vec![
            event(
                1,
                50_000,
                "a/versioning",
                EventKind::AttemptStarted { attempt: 1 },
            ),
            event(
                2,
                10_000,
                "a/versioning",
                EventKind::NodeDone { changed: true },
            ),
            event(3, 9_000, "a/role", EventKind::AttemptStarted { attempt: 1 }),
        ];
        let bars = bars(&events, 9_000);
        assert_eq!(bars.len(), 2);
        assert!(
            bars.iter().all(|b| b.end >= b.start),
            "no bar ends before it starts"
        );
        let html = render_report(&view, &events);
        assert!(
            html.contains("did not report back"),
            "the open attempt is drawn"
        );
        assert!(
            !html.contains("\"NaN\"") && !html.contains("\"inf\""),
            "every coordinate is a number: {html}"
        );
    }
}
