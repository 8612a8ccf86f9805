//! `trailhub report`: one self-contained HTML file for the post-mortem of a run, readable at
//! five accounts or five hundred. It opens with the outcome and the failures grouped by cause
//! (each with its error and what to do), beside a matrix of accounts × steps (one row per
//! account, failures first, one `<details>` per state); then the DAG drawn once for its shape
//! (the archive and one account, with counts per node), then the timeline, one collapsed row per
//! account. No script, nothing fetched from the network.
//!
//! The page is an askama template (`src/templates/report.html`), which escapes every value by
//! default: no AWS error text can add markup. The one value it does not escape is the graph's
//! SVG, which Graphviz drew from DOT holding only step names, group labels and counts.

use super::common::{RunView, open_existing_state};
use super::graph::svg;
use crate::cli::Cli;
use crate::errors::{CliError, Outcome};
use crate::fleet::{self, Cause, CauseKind, Counts, IDS_SHOWN};
use crate::output::{duration, time, truncate};
use crate::print::errln;
use askama::Template;
use std::collections::BTreeMap;
use std::path::Path;
use trailhub_engine::{GraphFormat, GroupResult, GroupSummary, render, render_folded};
use trailhub_state::{Event, EventKind, NodeId, NodeState};
use trailhub_workflows::ARCHIVE;

pub async fn report(cli: &Cli, run: Option<&str>, out: &Path) -> Result<Outcome, CliError> {
    let state = open_existing_state(cli).await?;
    let journal = &state.journal;
    let view = RunView::read(journal, run)?;
    let events = journal.events(&view.run.id)?;
    let html = render_report(&view, &events)?;
    write_private(out, &html)?;
    if !cli.quiet {
        errln!("report of run {} written to {}", view.run.id, out.display());
    }
    Ok(Outcome::Ok)
}

/// Writes the report readable by its owner only (it holds account ids, error texts and the
/// inventory's path): into a new temporary file beside `out` (created 0600), then renamed over
/// `out`. A rename replaces the name itself, so a symbolic link at `out` is never followed; one
/// is refused outright, saying so, rather than replaced.
fn write_private(out: &Path, html: &str) -> Result<(), CliError> {
    use std::io::Write;
    let fail = |e: &dyn std::fmt::Display| {
        CliError::Environment(format!("cannot write {}: {e}", out.display()))
    };
    if std::fs::symlink_metadata(out).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(CliError::Environment(format!(
            "{} is a symbolic link: trailhub does not write a report through one; give another path",
            out.display()
        )));
    }
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(|e| fail(&e))?;
    file.write_all(html.as_bytes()).map_err(|e| fail(&e))?;
    file.persist(out).map_err(|e| fail(&e.error))?;
    Ok(())
}

/// The page's values; `src/templates/report.html` lays them out.
#[derive(Template)]
#[template(path = "report.html")]
struct Page {
    run_id: String,
    status: &'static str,
    counts_text: String,
    steps_done: usize,
    steps_total: usize,
    created: String,
    updated: String,
    workflow: String,
    source: String,
    causes: Vec<CauseView>,
    columns: Vec<String>,
    sections: Vec<Section>,
    graph: Option<String>,
    graph_text: String,
    jobs: Vec<(String, String)>,
    span: String,
    chart_w: f64,
    full_w: f64,
    timeline: Vec<AccountTimeline>,
}

/// A cause as the page tells it.
struct CauseView {
    kind: &'static str,
    step: String,
    headline: String,
    ids: Vec<String>,
    more: Vec<String>,
    message: String,
    messages_differ: bool,
    hint: Option<String>,
}

/// The matrix's rows of one account result, in a `<details>` of their own.
struct Section {
    key: &'static str,
    title: String,
    open: bool,
    rows: Vec<Row>,
}

struct Row {
    account: String,
    result: &'static str,
    done: String,
    cells: Vec<Cell>,
}

struct Cell {
    state: &'static str,
    symbol: &'static str,
    title: String,
}

/// One account's line of the timeline, and its steps when opened.
struct AccountTimeline {
    account: String,
    result: &'static str,
    took: String,
    mini: Vec<BarView>,
    height: f64,
    rows: Vec<StepRow>,
}

struct StepRow {
    label: String,
    text_y: f64,
    bar_y: f64,
    bars: Vec<BarView>,
}

struct BarView {
    kind: &'static str,
    node: String,
    x: String,
    w: String,
    title: String,
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

const LABEL_W: f64 = 120.0;
const CHART_W: f64 = 760.0;
const ROW_H: f64 = 18.0;

/// The timeline: per account (in the workflow's order), a line with every attempt on one row,
/// and, opened, a row per step. One time axis for all, from the run's first event to its last.
fn timeline(
    view: &RunView,
    groups: &[GroupSummary],
    events: &[Event],
) -> (String, Vec<AccountTimeline>) {
    let Some(first) = events.first().map(|e| e.at_ms) else {
        return (duration(0), Vec::new());
    };
    let last = events.last().map(|e| e.at_ms).unwrap_or(first);
    // A clock set back while the run went on must not make a negative span.
    let span = last.saturating_sub(first).max(1) as f64;
    let x = |ms: u64| ms.saturating_sub(first) as f64 / span * CHART_W;
    let w = |b: &Bar| (b.end.saturating_sub(b.start) as f64 / span * CHART_W).max(2.0);
    let mut by_node: BTreeMap<&NodeId, Vec<&Bar>> = BTreeMap::new();
    let all = bars(events, last);
    for b in &all {
        by_node.entry(&b.node).or_default().push(b);
    }
    let nodes = view.ordered_nodes();
    let mut out = Vec::new();
    for g in groups {
        let mine: Vec<&NodeId> = nodes
            .iter()
            .copied()
            .filter(|n| n.group() == g.group)
            .collect();
        let mut rows = Vec::new();
        let mut mini = Vec::new();
        let (mut start, mut end) = (u64::MAX, 0);
        for (i, id) in mine.iter().enumerate() {
            let y = i as f64 * ROW_H;
            let mut views = Vec::new();
            for b in by_node.get(id).map(Vec::as_slice).unwrap_or_default() {
                start = start.min(b.start);
                end = end.max(b.end);
                let (bx, bw) = (
                    format!("{:.1}", LABEL_W + x(b.start)),
                    format!("{:.1}", w(b)),
                );
                mini.push(BarView {
                    kind: b.kind,
                    node: String::new(),
                    x: format!("{:.1}", x(b.start)),
                    w: bw.clone(),
                    title: String::new(),
                });
                views.push(BarView {
                    kind: b.kind,
                    node: id.to_string(),
                    x: bx,
                    w: bw,
                    title: format!(
                        "{id} — {} ({})",
                        truncate(&b.label, 300),
                        duration(b.end.saturating_sub(b.start))
                    ),
                });
            }
            rows.push(StepRow {
                label: id.step().to_string(),
                text_y: y + 13.0,
                bar_y: y + 2.0,
                bars: views,
            });
        }
        out.push(AccountTimeline {
            account: g.group.clone(),
            result: g.result.as_str(),
            took: if start <= end {
                duration(end - start)
            } else {
                "not started".into()
            },
            mini,
            height: mine.len() as f64 * ROW_H + 4.0,
            rows,
        });
    }
    (duration(last.saturating_sub(first)), out)
}

/// The matrix's columns: an account's steps in the order the workflow reaches them, then the
/// steps only the archive has (its `identity` and `versioning` share the accounts' columns).
fn columns(view: &RunView) -> Vec<String> {
    let order = view.shape.topological();
    let account = view.shape.groups().into_iter().find(|g| *g != ARCHIVE);
    let mut out: Vec<String> = Vec::new();
    let mine = order.iter().filter(|id| Some(id.group()) == account);
    for id in mine.chain(order.iter()) {
        if !out.iter().any(|s| s == id.step()) {
            out.push(id.step().to_string());
        }
    }
    out
}

fn symbol(state: NodeState) -> &'static str {
    match state {
        NodeState::Done => "✓",
        NodeState::Failed | NodeState::RollbackFailed => "✗",
        NodeState::Blocked => "⊘",
        NodeState::Pending => "·",
        NodeState::Running => "…",
        NodeState::RollingBack | NodeState::RolledBack => "↺",
    }
}

/// The sections of the matrix, in the order an operator reads them: failures first, then
/// blocked, then what did not finish, then the rest. Sections of accounts that need nothing are
/// closed when they are long.
fn sections(view: &RunView, groups: &[GroupSummary], columns: &[String]) -> Vec<Section> {
    let order = [
        (GroupResult::Failed, "failed"),
        (GroupResult::Blocked, "blocked"),
        (GroupResult::NotFinished, "not-finished"),
        (GroupResult::PartlyRolledBack, "partly-rolled-back"),
        (GroupResult::RolledBack, "rolled-back"),
        (GroupResult::Succeeded, "succeeded"),
    ];
    let mut by_group: BTreeMap<&str, BTreeMap<&str, &NodeId>> = BTreeMap::new();
    for id in view.shape.nodes() {
        by_group
            .entry(id.group())
            .or_default()
            .insert(id.step(), id);
    }
    let mut out = Vec::new();
    for (result, key) in order {
        let rows: Vec<Row> = groups
            .iter()
            .filter(|g| g.result == result)
            .map(|g| row(view, g, columns, by_group.get(g.group.as_str())))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let accounts = rows.len();
        let open = !fleet::is_done(result) || accounts <= 10;
        out.push(Section {
            key,
            title: format!(
                "{} — {accounts} {}",
                result.as_str(),
                if accounts == 1 { "row" } else { "rows" }
            ),
            open,
            rows,
        });
    }
    out
}

fn row(
    view: &RunView,
    g: &GroupSummary,
    columns: &[String],
    nodes: Option<&BTreeMap<&str, &NodeId>>,
) -> Row {
    let cells = columns
        .iter()
        .map(|step| {
            let Some(id) = nodes.and_then(|n| n.get(step.as_str())) else {
                return Cell {
                    state: "none",
                    symbol: "",
                    title: format!("{}: no {step} step", g.group),
                };
            };
            let rec = view.records.get(*id).cloned().unwrap_or_default();
            let mut title = format!("{id}: {}", rec.state.as_str());
            if rec.attempts > 1 {
                title.push_str(&format!(", {} attempts", rec.attempts));
            }
            if let Some(e) = &rec.last_error {
                let code = e
                    .code
                    .as_deref()
                    .map(|c| format!("{c}: "))
                    .unwrap_or_default();
                title.push_str(&format!(" — {code}{}", truncate(&e.message, 200)));
            }
            Cell {
                state: rec.state.as_str(),
                symbol: symbol(rec.state),
                title,
            }
        })
        .collect();
    Row {
        account: g.group.clone(),
        result: g.result.as_str(),
        done: format!("{}/{}", g.done, g.steps),
        cells,
    }
}

fn cause_view(c: &Cause) -> CauseView {
    let ids: Vec<String> = c
        .accounts
        .iter()
        .filter(|a| *a != ARCHIVE || c.accounts.len() > 1)
        .cloned()
        .collect();
    let (ids, more) = if ids.len() > IDS_SHOWN {
        (ids[..IDS_SHOWN].to_vec(), ids[IDS_SHOWN..].to_vec())
    } else {
        (ids, Vec::new())
    };
    let who = match c.accounts.as_slice() {
        [one] if one == ARCHIVE => "The archive".to_string(),
        [_] => "1 account".to_string(),
        many => format!("{} accounts", many.len()),
    };
    let (kind, headline) = match c.kind {
        CauseKind::Failed => (
            "failed",
            format!(
                "{who} failed at {}: {}",
                c.step,
                c.code.as_deref().unwrap_or("no error code")
            ),
        ),
        CauseKind::Blocked => (
            "blocked",
            format!(
                "{who} blocked by {}",
                c.by.as_ref()
                    .map_or("a failure".to_string(), |b| b.to_string())
            ),
        ),
    };
    CauseView {
        kind,
        step: c.step.clone(),
        headline,
        ids,
        more,
        message: c.message.clone(),
        messages_differ: c.messages_differ,
        hint: c.hint.clone(),
    }
}

/// The DAG drawn once: the archive, and one cluster for every account (they share a form), as
/// Graphviz draws it; without Graphviz, why, and the graph as text.
fn graph(view: &RunView) -> (Option<String>, String) {
    let states: BTreeMap<NodeId, NodeState> = view
        .records
        .iter()
        .map(|(k, v)| (k.clone(), v.state))
        .collect();
    let label = |members: &[&str]| match members {
        [one] if *one == ARCHIVE => "archive".to_string(),
        [one] => format!("account {one}"),
        many => format!("each of {} accounts", many.len()),
    };
    let dot = render_folded(&view.shape, &states, &label);
    match svg(&dot) {
        // Drop the XML prologue and DOCTYPE: the SVG is inlined in HTML.
        Ok(s) => (
            Some(s[s.find("<svg").unwrap_or(0)..].to_string()),
            String::new(),
        ),
        Err(e) => (
            None,
            format!(
                "{e}\n\n{}",
                render(&view.shape, GraphFormat::Text, Some(&states))
            ),
        ),
    }
}

/// The report's HTML.
fn render_report(view: &RunView, events: &[Event]) -> Result<String, CliError> {
    let groups = view.groups();
    let failed = fleet::failed_nodes(&view.shape, &view.records);
    let mut causes: Vec<CauseView> = fleet::failures(failed).iter().map(cause_view).collect();
    causes.extend(
        fleet::blocked(&view.shape, &view.records, &groups)
            .iter()
            .map(cause_view),
    );
    let columns = columns(view);
    let sections = sections(view, &groups, &columns);
    let (span, timeline) = timeline(view, &groups, events);
    let (graph, graph_text) = graph(view);
    let jobs = crate::output::backfill_jobs(&view.records)
        .iter()
        .map(|(account, job)| (account.clone(), job.describe()))
        .collect();
    let page = Page {
        run_id: view.run.id.clone(),
        status: view.run.status.as_str(),
        counts_text: Counts::of(&groups).text(),
        steps_done: view
            .records
            .values()
            .filter(|r| r.state == NodeState::Done)
            .count(),
        steps_total: view.shape.len(),
        created: time(view.run.created_at_ms),
        updated: time(view.run.updated_at_ms),
        workflow: view.run.workflow.clone(),
        source: view.run.source.clone().unwrap_or_else(|| "(frozen)".into()),
        causes,
        columns,
        sections,
        graph,
        graph_text,
        jobs,
        span,
        chart_w: CHART_W,
        full_w: LABEL_W + CHART_W + 10.0,
        timeline,
    };
    page.render()
        .map_err(|e| CliError::Environment(format!("cannot render the report: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic;
    use std::process::Command;
    use trailhub_state::{GraphRecord, RunRecord, RunStatus};

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
        let graph = GraphRecord {
            nodes: vec![id("a/role"), id("a/versioning")],
            edges: vec![(id("a/versioning"), id("a/role"))],
        };
        let view = RunView {
            run: RunRecord {
                id: "20261128T101500Z-0001".into(),
                sequence: 1,
                created_at_ms: 0,
                updated_at_ms: 0,
                workflow: "onboard".into(),
                definition: String::new(),
                source: None,
                status: RunStatus::Running,
                options: serde_json::Value::Null,
                pending_rollback: None,
                graph: Some(graph.clone()),
            },
            shape: trailhub_engine::Shape::from_record(&graph).expect("a graph"),
            records: BTreeMap::new(),
        };
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
        let html = render_report(&view, &events).expect("a report");
        assert!(
            html.contains("did not report back"),
            "the open attempt is drawn"
        );
        assert!(
            !html.contains("\"NaN\"") && !html.contains("\"inf\""),
            "every coordinate is a number: {html}"
        );
    }

    #[test]
    fn aws_error_text_cannot_add_markup() {
        let (mut view, events) = synthetic::run(12, &[3]);
        let node = id("200000000003/bucket-check");
        let evil = "<img src=x onerror=alert(1)> & \"quoted\" </table>";
        if let Some(rec) = view.records.get_mut(&node)
            && let Some(e) = rec.last_error.as_mut()
        {
            e.message = evil.into();
            e.hint = Some(format!("<b>{evil}</b>"));
        }
        let html = render_report(&view, &events).expect("a report");
        assert!(!html.contains("<img"), "escaped");
        assert!(!html.contains("<b>&lt;"), "the hint is escaped too");
        assert!(html.contains("img src=x onerror=alert(1)"), "shown as text");
        assert!(!html.contains("<script"), "no script");
    }

    /// Where the report's parts are once Chromium lays it out in a `width`×`height` window,
    /// read from a copy of the page that measures itself (the report has no script).
    fn layout(report: &std::path::Path, width: u32, height: u32) -> serde_json::Value {
        let html = std::fs::read_to_string(report).expect("the report");
        let probe = r#"<script>
const box = s => { const e = document.querySelector(s); return e ? e.getBoundingClientRect() : null; };
const row = box('#matrix details[open] tr.failed') || box('#matrix details[open] tr');
document.title = JSON.stringify({ viewport: window.innerHeight, failures_bottom: box('#failures').bottom,
  matrix_top: box('#matrix').top, first_failed_row_bottom: row ? row.bottom : 1e9 });
</script></body>"#;
        let page = report.with_extension("measured.html");
        std::fs::write(&page, html.replace("</body>", probe)).expect("write");
        let profile = tempfile::tempdir().expect("tempdir");
        let out = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--dump-dom",
                &format!("--user-data-dir={}", profile.path().display()),
                &format!("--window-size={width},{height}"),
            ])
            .arg(format!("file://{}", page.display()))
            .output()
            .expect("chromium is installed by scripts/setup-tools");
        let dom = String::from_utf8_lossy(&out.stdout);
        let title = dom
            .split("<title>")
            .nth(1)
            .and_then(|t| t.split("</title>").next())
            .unwrap_or_else(|| panic!("no title: {dom}"));
        serde_json::from_str(&title.replace("&quot;", "\"")).expect("the probe's JSON")
    }

    #[test]
    fn at_5_50_and_500_accounts_the_failures_and_the_matrix_open_the_page() {
        let dir = tempfile::tempdir().expect("tempdir");
        let remote = regex::Regex::new(r#"(src|href)="https?://"#).expect("a regex");
        for (n, failing) in [
            (5, vec![2]),
            (50, vec![11, 12, 13]),
            (
                500,
                (1..=500).filter(|i| i % 17 == 0).collect::<Vec<usize>>(),
            ),
        ] {
            let (view, events) = synthetic::run(n, &failing);
            let html = render_report(&view, &events).expect("a report");
            let path = dir.path().join(format!("report-{n}.html"));
            std::fs::write(&path, &html).expect("write");
            // To look at them: TRAILHUB_REPORT_OUT=DIR keeps a copy of each.
            if let Some(out) = std::env::var_os("TRAILHUB_REPORT_OUT") {
                std::fs::copy(
                    &path,
                    std::path::Path::new(&out).join(format!("report-{n}.html")),
                )
                .expect("copy the report");
            }
            eprintln!("report of {n} accounts: {} bytes", html.len());
            assert!(html.len() < 3_000_000, "{n} accounts: {} bytes", html.len());
            assert!(!html.contains("<script"), "no script");
            assert!(!remote.is_match(&html), "self-contained");
            assert_eq!(
                html.matches("<tr class=\"failed\"").count(),
                failing.len(),
                "one matrix row per failed account"
            );
            assert_eq!(
                html.matches("<details data-account=").count(),
                n + 1,
                "one timeline row per account and the archive"
            );
            let seen = layout(&path, 1400, 900);
            eprintln!("{n} accounts in a 1400×900 window: {seen}");
            // The page's viewport is the window less what the browser draws around it, as on
            // a person's 1400×900 screen: what must be seen without scrolling is within it.
            let at = |k: &str| seen[k].as_f64().expect("a number");
            let viewport = at("viewport");
            assert!(viewport > 600.0, "{seen}");
            assert!(
                at("failures_bottom") <= viewport,
                "{n}: failures in view: {seen}"
            );
            assert!(
                at("first_failed_row_bottom") <= viewport,
                "{n}: matrix in view: {seen}"
            );
        }
    }
}
