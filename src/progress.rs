//! Progress of `apply`, `resume` and `rollback`: an indicatif display (one overall bar, a line
//! per account that changes state) on a terminal; plain timestamped lines when stdout is not a
//! terminal or in CI; JSON lines with `--output json`.

use crate::output::{clock, json_line};
use crate::print::errln;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;
use trailhub_engine::{NodeId, Observer, Progress, Shape};
use trailhub_state::now_ms;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A live bar on the terminal.
    Bar,
    /// Plain lines on stderr.
    Lines,
    /// JSON lines on stdout.
    Json,
    /// Nothing.
    Quiet,
}

impl Style {
    /// The style for this process: JSON when asked; a bar on a terminal outside CI; else lines.
    pub fn detect(json: bool, quiet: bool) -> Style {
        if json {
            Style::Json
        } else if quiet {
            Style::Quiet
        } else if std::io::stdout().is_terminal() && std::env::var_os("CI").is_none() {
            Style::Bar
        } else {
            Style::Lines
        }
    }
}

#[derive(Default)]
struct Group {
    total: usize,
    done: usize,
    changed: usize,
    failed: bool,
    blocked: bool,
}

/// Shows progress events; the scheduler calls it from its single thread of control.
pub struct Reporter {
    style: Style,
    verb: &'static str,
    bar: Option<ProgressBar>,
    groups: Mutex<BTreeMap<String, Group>>,
}

impl Reporter {
    /// A reporter for the nodes of `shape`; `verb` is what finishing a node is called (`done`,
    /// `rolled back`).
    pub fn new(style: Style, verb: &'static str, shape: &Shape) -> Self {
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        for node in shape.nodes() {
            groups.entry(node.group().to_string()).or_default().total += 1;
        }
        let bar = (style == Style::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} steps, ETA {eta} {wide_msg}",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(1000));
            bar
        });
        Reporter {
            style,
            verb,
            bar,
            groups: Mutex::new(groups),
        }
    }

    fn line(&self, text: String) {
        match (&self.bar, self.style) {
            (Some(bar), _) => bar.println(text),
            (None, Style::Lines) => errln!("[{}] {text}", clock(now_ms())),
            _ => {}
        }
    }

    /// Stops the bar, leaving the terminal clean for the summary.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Reporter {
    fn event(&self, event: &Progress) {
        if self.style == Style::Json {
            json_line(&event_json(event));
        }
        match event {
            Progress::Started {
                total,
                already_done,
            } => {
                if let Some(bar) = &self.bar {
                    bar.set_length(*total as u64);
                    bar.set_position(*already_done as u64);
                }
                if *already_done > 0 {
                    self.line(format!("{already_done} of {total} steps were finished earlier and are not run again"));
                }
            }
            Progress::NodeStarted { node, .. } => {
                if let Some(bar) = &self.bar {
                    bar.set_message(node.to_string());
                }
            }
            Progress::NodeRetrying {
                node,
                attempt,
                error,
                delay_ms,
            } => self.line(format!(
                "↻ {}: {} retrying in {} (attempt {attempt} failed: {})",
                node.group(),
                node.step(),
                crate::output::duration(*delay_ms),
                crate::output::truncate(&error.message, 160)
            )),
            Progress::NodeDone {
                node,
                changed,
                note,
            } => self.done(node, *changed, note.as_deref()),
            Progress::NodeFailed { node, error } => {
                self.with_group(node, |g| g.failed = true);
                self.line(format!(
                    "✗ {} failed at {}: {}",
                    node.group(),
                    node.step(),
                    crate::output::error_line(error)
                ));
            }
            Progress::NodeBlocked { node, by } => {
                let first = self.with_group(node, |g| {
                    let first = !g.blocked && !g.failed;
                    g.blocked = true;
                    first
                });
                if first {
                    let by = by
                        .as_ref()
                        .map_or("a failed step".into(), NodeId::to_string);
                    self.line(format!("⊘ {} blocked by {by}", node.group()));
                }
            }
            Progress::Stopping => self.line(
                "stopping: running steps finish, no new step starts (Ctrl-C again to exit at once)"
                    .into(),
            ),
        }
    }
}

impl Reporter {
    /// Runs `f` on the live counters of `node`'s group.
    fn with_group<R>(&self, node: &NodeId, f: impl FnOnce(&mut Group) -> R) -> R {
        let mut groups = self.groups.lock().expect("groups should not be poisoned");
        f(groups.entry(node.group().to_string()).or_default())
    }

    fn done(&self, node: &NodeId, changed: bool, note: Option<&str>) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        let group = node.group();
        if let Some(note) = note {
            self.line(format!("  {group}: {note}"));
        }
        let finished = self.with_group(node, |g| {
            g.done += 1;
            if changed {
                g.changed += 1;
            }
            (g.done == g.total).then_some((g.total, g.changed))
        });
        if let Some((total, changed)) = finished {
            self.line(format!(
                "✓ {group} {} ({total} steps, {changed} changed)",
                self.verb
            ));
        }
    }
}

/// A progress event as a JSON line (`--output json`).
fn event_json(event: &Progress) -> serde_json::Value {
    let at = now_ms();
    match event {
        Progress::Started {
            total,
            already_done,
        } => json!({"type": "started", "at_ms": at, "total": total, "already_done": already_done}),
        Progress::NodeStarted { node, attempt } => json!({
            "type": "node-started", "at_ms": at, "node": node, "account": node.group(), "attempt": attempt
        }),
        Progress::NodeRetrying {
            node,
            attempt,
            error,
            delay_ms,
        } => json!({
            "type": "node-retrying", "at_ms": at, "node": node, "account": node.group(),
            "attempt": attempt, "code": error.code, "error": error.message, "retry_in_ms": delay_ms
        }),
        Progress::NodeDone {
            node,
            changed,
            note,
        } => json!({
            "type": "node-done", "at_ms": at, "node": node, "account": node.group(), "changed": changed, "note": note
        }),
        Progress::NodeFailed { node, error } => json!({
            "type": "node-failed", "at_ms": at, "node": node, "account": node.group(),
            "code": error.code, "error": error.message, "hint": error.hint
        }),
        Progress::NodeBlocked { node, by } => json!({
            "type": "node-blocked", "at_ms": at, "node": node, "account": node.group(), "blocked_by": by
        }),
        Progress::Stopping => json!({"type": "stopping", "at_ms": at}),
    }
}
