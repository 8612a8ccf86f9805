//! Graph rendering: the DAG as text, Graphviz DOT or Mermaid, deterministic (nodes and edges
//! sorted, ids stable), optionally colored by each node's journaled state.

use crate::dag::Shape;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use trailhub_state::{NodeId, NodeState};

/// An output format of [`render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    /// One line per node with its state and dependencies.
    Text,
    /// Graphviz DOT, one cluster per group.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
}

fn color(state: NodeState) -> &'static str {
    match state {
        NodeState::Pending => "#eeeeee",
        NodeState::Running => "#ffe08a",
        NodeState::Done => "#b7e1a1",
        NodeState::Failed => "#f4a3a3",
        NodeState::Blocked => "#f8cf9a",
        NodeState::RollingBack => "#d9c3f0",
        NodeState::RolledBack => "#a9cdf0",
        NodeState::RollbackFailed => "#e07a7a",
    }
}

/// Renders `shape` (a sealed [`crate::Dag`] derefs to its shape). With `states`, each node shows
/// its journaled state (nodes missing from the map are `pending`).
pub fn render(
    shape: &Shape,
    format: GraphFormat,
    states: Option<&BTreeMap<NodeId, NodeState>>,
) -> String {
    let state_of = |id: &NodeId| -> Option<NodeState> {
        states.map(|s| s.get(id).copied().unwrap_or(NodeState::Pending))
    };
    match format {
        GraphFormat::Text => text(shape, &state_of),
        GraphFormat::Dot => dot(shape, &state_of),
        GraphFormat::Mermaid => mermaid(shape, &state_of),
    }
}

type StateOf<'a> = dyn Fn(&NodeId) -> Option<NodeState> + 'a;

/// One block per group, nodes in dependency order within it.
fn text(shape: &Shape, state_of: &StateOf<'_>) -> String {
    let mut out = String::new();
    let mut groups: BTreeMap<&str, Vec<&NodeId>> = BTreeMap::new();
    for id in shape.topological() {
        groups.entry(id.group()).or_default().push(id);
    }
    let width = shape
        .nodes()
        .iter()
        .map(|n| n.step().len())
        .max()
        .unwrap_or(0);
    for (group, ids) in groups {
        let _ = writeln!(out, "{group}");
        for id in ids {
            let step = id.step();
            let state = state_of(id)
                .map(|s| format!(" {:<17}", format!("[{}]", s.as_str())))
                .unwrap_or_default();
            let deps: Vec<&str> = shape.dependencies(id).iter().map(|d| d.as_str()).collect();
            let deps = if deps.is_empty() {
                String::new()
            } else {
                format!("  <- {}", deps.join(", "))
            };
            let line = format!("  {step:<width$}{state}{deps}");
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

/// Graphviz DOT, one cluster per group.
fn dot(shape: &Shape, state_of: &StateOf<'_>) -> String {
    let mut out = String::from("digraph trailhub {\n  rankdir=LR;\n");
    out.push_str(
        "  node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\", fontname=\"Helvetica\"];\n",
    );
    let mut groups: BTreeMap<&str, Vec<&NodeId>> = BTreeMap::new();
    for n in shape.nodes() {
        groups.entry(n.group()).or_default().push(n);
    }
    for (group, ids) in groups {
        let _ = writeln!(out, "  subgraph \"cluster_{}\" {{", escape(group));
        let _ = writeln!(out, "    label=\"{}\";", escape(group));
        for id in ids {
            let (node, step) = (escape(id.as_str()), escape(id.step()));
            let _ = match state_of(id) {
                Some(state) => writeln!(
                    out,
                    "    \"{node}\" [label=\"{step}\\n{}\", fillcolor=\"{}\"];",
                    state.as_str(),
                    color(state)
                ),
                None => writeln!(out, "    \"{node}\" [label=\"{step}\"];"),
            };
        }
        out.push_str("  }\n");
    }
    for (a, b) in shape.edges() {
        let _ = writeln!(
            out,
            "  \"{}\" -> \"{}\";",
            escape(a.as_str()),
            escape(b.as_str())
        );
    }
    out.push_str("}\n");
    out
}

/// A Mermaid flowchart, with one class per state when states are given.
fn mermaid(shape: &Shape, state_of: &StateOf<'_>) -> String {
    let mut out = String::from("flowchart LR\n");
    for n in shape.nodes() {
        let label = match state_of(n) {
            Some(state) => format!("{n}<br/>{}", state.as_str()),
            None => n.to_string(),
        };
        let _ = writeln!(
            out,
            "  {}[\"{}\"]",
            mermaid_id(n.as_str()),
            label.replace('"', "#quot;")
        );
    }
    for (a, b) in shape.edges() {
        let _ = writeln!(
            out,
            "  {} --> {}",
            mermaid_id(a.as_str()),
            mermaid_id(b.as_str())
        );
    }
    let mut by_state: BTreeMap<&str, (NodeState, Vec<String>)> = BTreeMap::new();
    for n in shape.nodes() {
        if let Some(state) = state_of(n) {
            by_state
                .entry(state.as_str())
                .or_insert((state, Vec::new()))
                .1
                .push(mermaid_id(n.as_str()));
        }
    }
    for (name, (state, ids)) in by_state {
        let fill = color(state);
        let class = name.replace('-', "_");
        let _ = writeln!(out, "  classDef {class} fill:{fill},stroke:#555;");
        let _ = writeln!(out, "  class {} {class};", ids.join(","));
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A Mermaid-safe id that stays the same for the same node id.
fn mermaid_id(id: &str) -> String {
    let mut out = String::from("n_");
    for c in id.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    out
}
