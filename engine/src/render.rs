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

/// The order in which a folded node's counts are told, and its stripes drawn: what needs the
/// operator first.
const STATE_ORDER: [NodeState; 8] = [
    NodeState::Failed,
    NodeState::RollbackFailed,
    NodeState::Blocked,
    NodeState::Running,
    NodeState::RollingBack,
    NodeState::Pending,
    NodeState::RolledBack,
    NodeState::Done,
];

/// What a group's nodes and edges are, but for the group's own name: groups of one form fold.
type Form<'a> = (
    Vec<(Option<&'a str>, &'a str)>,
    Vec<(Endpoint<'a>, Endpoint<'a>)>,
);

/// An edge's end as seen from a group: one of its own nodes, or another group's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Endpoint<'a> {
    Own(Option<&'a str>, &'a str),
    Other(&'a NodeId),
}

fn form<'a>(shape: &'a Shape, group: &str) -> Form<'a> {
    let end = |id: &'a NodeId| {
        if id.group() == group {
            Endpoint::Own(id.host(), id.step())
        } else {
            Endpoint::Other(id)
        }
    };
    let mut nodes: Vec<_> = shape
        .nodes()
        .into_iter()
        .filter(|n| n.group() == group)
        .map(|n| (n.host(), n.step()))
        .collect();
    nodes.sort_unstable();
    let mut edges: Vec<_> = shape
        .edges()
        .into_iter()
        .filter(|(a, b)| a.group() == group || b.group() == group)
        .map(|(a, b)| (end(a), end(b)))
        .collect();
    edges.sort_unstable();
    (nodes, edges)
}

/// The DAG in Graphviz DOT with every group of one form drawn once: groups whose nodes and
/// edges are the same but for their own name (the source accounts of a workflow) fold into one
/// cluster, which `label` names from the groups it stands for. Each node tells how many of its
/// groups' nodes are in each state (missing from `states`: pending), and is striped in their
/// colors in proportion. Deterministic: clusters in the shape's group order, edges sorted.
pub fn render_folded(
    shape: &Shape,
    states: &BTreeMap<NodeId, NodeState>,
    label: &dyn Fn(&[&str]) -> String,
) -> String {
    let groups = shape.groups();
    let mut classes: Vec<(Form<'_>, Vec<&str>)> = Vec::new();
    for group in &groups {
        let f = form(shape, group);
        match classes.iter_mut().find(|(other, _)| *other == f) {
            Some((_, members)) => members.push(group),
            None => classes.push((f, vec![group])),
        }
    }
    let class_of: BTreeMap<&str, usize> = classes
        .iter()
        .enumerate()
        .flat_map(|(i, (_, members))| members.iter().map(move |m| (*m, i)))
        .collect();
    let folded = |id: &NodeId| {
        let class = class_of.get(id.group()).copied().unwrap_or(0);
        match id.host() {
            Some(host) => format!("c{class}/{host}/{}", id.step()),
            None => format!("c{class}/{}", id.step()),
        }
    };
    let mut counts: BTreeMap<String, std::collections::HashMap<NodeState, usize>> = BTreeMap::new();
    for n in shape.nodes() {
        let state = states.get(n).copied().unwrap_or(NodeState::Pending);
        *counts
            .entry(folded(n))
            .or_default()
            .entry(state)
            .or_default() += 1;
    }
    let mut out = String::from("digraph trailhub {\n  rankdir=LR;\n");
    out.push_str(
        "  node [shape=box, style=\"filled\", fillcolor=\"#ffffff\", fontname=\"Helvetica\"];\n",
    );
    for (i, ((nodes, _), members)) in classes.iter().enumerate() {
        let _ = writeln!(out, "  subgraph \"cluster_c{i}\" {{");
        let _ = writeln!(out, "    label=\"{}\";", escape(&label(members)));
        for (host, step) in nodes {
            let id = match host {
                Some(host) => format!("c{i}/{host}/{step}"),
                None => format!("c{i}/{step}"),
            };
            let by_state = counts.get(&id).cloned().unwrap_or_default();
            let total: usize = by_state.values().sum();
            let present: Vec<(NodeState, usize)> = STATE_ORDER
                .iter()
                .filter_map(|s| by_state.get(s).map(|n| (*s, *n)))
                .collect();
            let told: Vec<String> = present
                .iter()
                .map(|(s, n)| format!("{n} {}", s.as_str()))
                .collect();
            let (style, fill) = match present.as_slice() {
                [(only, _)] => ("filled".to_string(), color(*only).to_string()),
                many => {
                    let mut stripes: Vec<String> = many
                        .iter()
                        .map(|(s, n)| {
                            format!("{};{:.3}", color(*s), *n as f64 / total.max(1) as f64)
                        })
                        .collect();
                    if let (Some(last), Some((s, _))) = (stripes.last_mut(), many.last()) {
                        *last = color(*s).to_string();
                    }
                    ("striped".to_string(), stripes.join(":"))
                }
            };
            let _ = writeln!(
                out,
                "    \"{}\" [label=\"{}\\n{}\", style=\"{style}\", fillcolor=\"{fill}\"];",
                escape(&id),
                escape(step),
                escape(&told.join(" · "))
            );
        }
        out.push_str("  }\n");
    }
    let edges: std::collections::BTreeSet<(String, String)> = shape
        .edges()
        .into_iter()
        .map(|(a, b)| (folded(a), folded(b)))
        .filter(|(a, b)| a != b)
        .collect();
    for (a, b) in edges {
        let _ = writeln!(out, "  \"{}\" -> \"{}\";", escape(&a), escape(&b));
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

#[cfg(test)]
mod tests {
    use super::*;
    use trailhub_state::GraphRecord;

    fn id(text: &str) -> NodeId {
        text.parse().expect("a node id")
    }

    // archive/bucket -> {a,b,c}/grant (hosted on the archive) <- {a,b,c}/role
    fn three_alike() -> Shape {
        let mut nodes = vec![id("archive/bucket")];
        let mut edges = Vec::new();
        for g in ["a", "b", "c"] {
            let (role, grant) = (id(&format!("{g}/role")), id(&format!("archive/grant/{g}")));
            edges.push((role.clone(), grant.clone()));
            edges.push((id("archive/bucket"), grant.clone()));
            nodes.extend([role, grant]);
        }
        Shape::from_record(&GraphRecord { nodes, edges }).expect("a valid graph")
    }

    #[test]
    fn groups_of_one_form_are_drawn_once_with_counts_per_state() {
        let shape = three_alike();
        let mut states = BTreeMap::new();
        for g in ["a", "b"] {
            states.insert(id(&format!("{g}/role")), NodeState::Done);
            states.insert(id(&format!("archive/grant/{g}")), NodeState::Done);
        }
        states.insert(id("c/role"), NodeState::Failed);
        states.insert(id("archive/grant/c"), NodeState::Blocked);
        states.insert(id("archive/bucket"), NodeState::Done);
        let dot = render_folded(&shape, &states, &|members| {
            if members.len() == 1 {
                members[0].to_string()
            } else {
                format!("each of {} groups", members.len())
            }
        });
        assert_eq!(dot.matches("subgraph").count(), 2, "{dot}");
        assert!(dot.contains("label=\"each of 3 groups\""), "{dot}");
        assert!(
            dot.contains("label=\"role\\n1 failed · 2 done\", style=\"striped\""),
            "{dot}"
        );
        assert!(
            dot.contains("label=\"grant\\n1 blocked · 2 done\""),
            "{dot}"
        );
        assert!(
            dot.contains("\"c0/bucket\" -> \"c1/archive/grant\";"),
            "{dot}"
        );
        assert!(
            dot.contains("\"c1/role\" -> \"c1/archive/grant\";"),
            "{dot}"
        );
        assert_eq!(
            dot.matches("->").count(),
            2,
            "one edge per folded pair: {dot}"
        );
    }
}
