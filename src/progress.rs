//! Progress of `apply`, `resume` and `rollback`: an indicatif display (one overall bar, a line
//! per account that changes state) on a terminal; plain timestamped lines when stdout is not a
//! terminal or in CI; JSON lines with `--output json`.

use crate::output::{clock, json_line};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;
use trailhub_engine::{Observer, Progress};
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
    /// A reporter for a graph whose nodes belong to `groups` (one entry per node); `verb` is
    /// what finishing a node is called (`done`, `rolled back`).
    pub fn new(style: Style, verb: &'static str, node_groups: &[(String, String)]) -> Self {
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        for (_node, group) in node_groups {
            groups.entry(group.clone()).or_default().total += 1;
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
            (None, Style::Lines) => eprintln!("[{}] {text}", clock(now_ms())),
            _ => {}
        }
    }

    /// Stops the bar, leaving the terminal clean for the summary.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// Per group (account): `(group, total, done, changed, failed, blocked)`.
    pub fn groups(&self) -> Vec<(String, usize, usize, usize, bool, bool)> {
        self.groups
            .lock()
            .expect("groups should not be poisoned")
            .iter()
            .map(|(g, s)| (g.clone(), s.total, s.done, s.changed, s.failed, s.blocked))
            .collect()
    }
}

fn step_of<'a>(node: &'a str, group: &str) -> &'a str {
    node.strip_prefix(group)
        .and_then(|s| s.strip_prefix('/'))
        .unwrap_or(node)
}

impl Observer for Reporter {
    fn event(&self, event: &Progress) {
        if self.style == Style::Json {
            let at = now_ms();
            let value = match event {
                Progress::Started {
                    total,
                    already_done,
                } => {
                    json!({"type": "started", "at_ms": at, "total": total, "already_done": already_done})
                }
                Progress::NodeStarted {
                    node,
                    group,
                    attempt,
                } => {
                    json!({"type": "node-started", "at_ms": at, "node": node, "account": group, "attempt": attempt})
                }
                Progress::NodeRetrying {
                    node,
                    group,
                    attempt,
                    error,
                    delay_ms,
                } => json!({
                    "type": "node-retrying", "at_ms": at, "node": node, "account": group,
                    "attempt": attempt, "code": error.code, "error": error.message, "retry_in_ms": delay_ms
                }),
                Progress::NodeDone {
                    node,
                    group,
                    changed,
                    note,
                } => json!({
                    "type": "node-done", "at_ms": at, "node": node, "account": group, "changed": changed, "note": note
                }),
                Progress::NodeFailed { node, group, error } => json!({
                    "type": "node-failed", "at_ms": at, "node": node, "account": group,
                    "code": error.code, "error": error.message, "hint": error.hint
                }),
                Progress::NodeBlocked { node, group, by } => json!({
                    "type": "node-blocked", "at_ms": at, "node": node, "account": group, "blocked_by": by
                }),
                Progress::Stopping => json!({"type": "stopping", "at_ms": at}),
            };
            json_line(&value);
        }
        let mut groups = self.groups.lock().expect("groups should not be poisoned");
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
                    bar.set_message(node.clone());
                }
            }
            Progress::NodeRetrying {
                node,
                group,
                attempt,
                error,
                delay_ms,
            } => {
                self.line(format!(
                    "↻ {group}: {} retrying in {} (attempt {attempt} failed: {})",
                    step_of(node, group),
                    crate::output::duration(*delay_ms),
                    crate::output::truncate(&error.message, 160)
                ));
            }
            Progress::NodeDone {
                group,
                changed,
                note,
                ..
            } => {
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                }
                let g = groups.entry(group.clone()).or_default();
                g.done += 1;
                if *changed {
                    g.changed += 1;
                }
                if let Some(note) = note {
                    self.line(format!("  {group}: {note}"));
                }
                if g.done == g.total {
                    self.line(format!(
                        "✓ {group} {} ({} steps, {} changed)",
                        self.verb, g.total, g.changed
                    ));
                }
            }
            Progress::NodeFailed { node, group, error } => {
                let g = groups.entry(group.clone()).or_default();
                g.failed = true;
                let code = error
                    .code
                    .as_deref()
                    .map(|c| format!("[{c}] "))
                    .unwrap_or_default();
                self.line(format!(
                    "✗ {group} failed at {}: {code}{}",
                    step_of(node, group),
                    error.message
                ));
            }
            Progress::NodeBlocked { group, by, .. } => {
                let g = groups.entry(group.clone()).or_default();
                if !g.blocked && !g.failed {
                    self.line(format!("⊘ {group} blocked by {by}"));
                }
                g.blocked = true;
            }
            Progress::Stopping => self.line(
                "stopping: running steps finish, no new step starts (Ctrl-C again to exit at once)"
                    .into(),
            ),
        }
    }
}
