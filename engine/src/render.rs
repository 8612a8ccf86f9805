//! Graph rendering: the DAG as text, Graphviz DOT or Mermaid, deterministic (nodes and edges
//! sorted, ids stable), optionally colored by each node's journaled state.

use crate::dag::{Built, Dag};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use trailhub_state::NodeState;

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

/// Renders `dag`. With `states`, each node shows its journaled state (nodes missing from the
/// map are `pending`).
pub fn render(
    dag: &Dag<Built>,
    format: GraphFormat,
    states: Option<&BTreeMap<String, NodeState>>,
) -> String {
    let state_of = |id: &str| -> Option<NodeState> {
        states.map(|s| s.get(id).copied().unwrap_or(NodeState::Pending))
    };
    let mut out = String::new();
    match format {
        GraphFormat::Text => {
            // One block per group, nodes in dependency order within it.
            let order = dag.topological();
            let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for id in &order {
                let group = dag.node(id).expect("ordered ids are nodes").group.as_str();
                groups.entry(group).or_default().push(id);
            }
            let width = dag.nodes().iter().map(|n| n.step.len()).max().unwrap_or(0);
            for (group, ids) in groups {
                let _ = writeln!(out, "{group}");
                for id in ids {
                    let step = &dag.node(id).expect("listed node").step;
                    let state = state_of(id)
                        .map(|s| format!(" {:<17}", format!("[{}]", s.as_str())))
                        .unwrap_or_default();
                    let deps = dag.dependencies(id);
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
        }
        GraphFormat::Dot => {
            out.push_str("digraph trailhub {\n");
            out.push_str("  rankdir=LR;\n");
            out.push_str(
                "  node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\", fontname=\"Helvetica\"];\n",
            );
            let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for n in dag.nodes() {
                groups.entry(&n.group).or_default().push(&n.id);
            }
            for (group, ids) in groups {
                let _ = writeln!(out, "  subgraph \"cluster_{}\" {{", escape(group));
                let _ = writeln!(out, "    label=\"{}\";", escape(group));
                for id in ids {
                    let step = &dag.node(id).expect("listed node").step;
                    match state_of(id) {
                        Some(state) => {
                            let _ = writeln!(
                                out,
                                "    \"{}\" [label=\"{}\\n{}\", fillcolor=\"{}\"];",
                                escape(id),
                                escape(step),
                                state.as_str(),
                                color(state)
                            );
                        }
                        None => {
                            let _ = writeln!(
                                out,
                                "    \"{}\" [label=\"{}\"];",
                                escape(id),
                                escape(step)
                            );
                        }
                    }
                }
                out.push_str("  }\n");
            }
            for (a, b) in dag.edges() {
                let _ = writeln!(out, "  \"{}\" -> \"{}\";", escape(a), escape(b));
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for n in dag.nodes() {
                let label = match state_of(&n.id) {
                    Some(state) => format!("{}<br/>{}", n.id, state.as_str()),
                    None => n.id.clone(),
                };
                let _ = writeln!(
                    out,
                    "  {}[\"{}\"]",
                    mermaid_id(&n.id),
                    label.replace('"', "#quot;")
                );
            }
            for (a, b) in dag.edges() {
                let _ = writeln!(out, "  {} --> {}", mermaid_id(a), mermaid_id(b));
            }
            if states.is_some() {
                let mut by_state: BTreeMap<&str, (NodeState, Vec<String>)> = BTreeMap::new();
                for n in dag.nodes() {
                    let state = state_of(&n.id).expect("states are given");
                    by_state
                        .entry(state.as_str())
                        .or_insert((state, Vec::new()))
                        .1
                        .push(mermaid_id(&n.id));
                }
                for (name, (state, ids)) in by_state {
                    let fill = color(state);
                    let class = name.replace('-', "_");
                    let _ = writeln!(out, "  classDef {class} fill:{fill},stroke:#555;");
                    let _ = writeln!(out, "  class {} {class};", ids.join(","));
                }
            }
        }
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
