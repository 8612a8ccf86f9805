//! The workflow graph: nodes (a task with an id, a group and a step name) and their
//! dependencies, as a petgraph DAG that must be sealed, and so validated, before it can run.

use crate::errors::{EngineError, ValidationError};
use crate::task::Task;
use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::sync::Arc;

/// A node to add to a [`Dag`].
#[derive(Clone)]
pub struct NodeSpec {
    /// Unique, stable id, e.g. `222222222222/versioning` (journal keys use it).
    pub id: String,
    /// The group the node belongs to (an account, or `archive`): rollback scopes by it.
    pub group: String,
    /// The step's name, shared by the same step of every group: `--to STEP` names it.
    pub step: String,
    /// Ids of the nodes that must be done first.
    pub deps: Vec<String>,
    /// What the node does.
    pub task: Arc<dyn Task>,
}

/// What the graph knows of a node, besides its task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's id.
    pub id: String,
    /// Its group.
    pub group: String,
    /// Its step name.
    pub step: String,
}

pub(crate) struct Node {
    pub(crate) info: NodeInfo,
    pub(crate) task: Arc<dyn Task>,
}

/// Typestate: the graph is being built and cannot run.
#[derive(Debug)]
pub struct Building;
/// Typestate: the graph was validated and can run.
#[derive(Debug)]
pub struct Built;

/// A DAG of tasks. Edges point from a dependency to its dependent.
pub struct Dag<S = Built> {
    graph: DiGraph<Node, ()>,
    index: BTreeMap<String, NodeIndex>,
    specs: Vec<(String, Vec<String>)>,
    duplicates: Vec<String>,
    _state: PhantomData<S>,
}

impl Default for Dag<Building> {
    fn default() -> Self {
        Self::new()
    }
}

impl Dag<Building> {
    /// An empty graph.
    pub fn new() -> Self {
        Dag {
            graph: DiGraph::new(),
            index: BTreeMap::new(),
            specs: Vec::new(),
            duplicates: Vec::new(),
            _state: PhantomData,
        }
    }

    /// Adds a node; its dependencies may be added later. Problems are reported by [`Self::seal`].
    pub fn add(&mut self, spec: NodeSpec) {
        if self.index.contains_key(&spec.id) {
            self.duplicates.push(spec.id);
            return;
        }
        let id = spec.id.clone();
        let idx = self.graph.add_node(Node {
            info: NodeInfo {
                id: spec.id,
                group: spec.group,
                step: spec.step,
            },
            task: spec.task,
        });
        self.index.insert(id.clone(), idx);
        self.specs.push((id, spec.deps));
    }

    /// Validates the graph: every dependency exists, no id is used twice, no cycle.
    /// Every problem is returned at once, sorted.
    pub fn seal(mut self) -> Result<Dag<Built>, EngineError> {
        let mut errors: BTreeSet<ValidationError> = self
            .duplicates
            .iter()
            .cloned()
            .map(ValidationError::Duplicate)
            .collect();
        for (id, deps) in std::mem::take(&mut self.specs) {
            let to = self.index[&id];
            let mut seen = BTreeSet::new();
            for dep in deps {
                match self.index.get(&dep) {
                    Some(&from) if seen.insert(from) => {
                        self.graph.add_edge(from, to, ());
                    }
                    Some(_) => {}
                    None => {
                        errors.insert(ValidationError::MissingDependency {
                            node: id.clone(),
                            missing: dep,
                        });
                    }
                }
            }
        }
        for scc in petgraph::algo::tarjan_scc(&self.graph) {
            let cyclic = scc.len() > 1 || self.graph.contains_edge(scc[0], scc[0]);
            if cyclic {
                let mut ids: Vec<String> =
                    scc.iter().map(|i| self.graph[*i].info.id.clone()).collect();
                ids.sort();
                let first = ids[0].clone();
                ids.push(first);
                errors.insert(ValidationError::Cycle(ids));
            }
        }
        if !errors.is_empty() {
            return Err(EngineError::Invalid(errors.into_iter().collect()));
        }
        Ok(Dag {
            graph: self.graph,
            index: self.index,
            specs: Vec::new(),
            duplicates: Vec::new(),
            _state: PhantomData,
        })
    }
}

impl Dag<Built> {
    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    /// Whether the graph has no node.
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// Every node, sorted by id.
    pub fn nodes(&self) -> Vec<&NodeInfo> {
        self.index.values().map(|i| &self.graph[*i].info).collect()
    }

    /// Every edge `(dependency, dependent)`, sorted.
    pub fn edges(&self) -> Vec<(&str, &str)> {
        let mut edges: Vec<(&str, &str)> = self
            .graph
            .edge_indices()
            .filter_map(|e| self.graph.edge_endpoints(e))
            .map(|(a, b)| {
                (
                    self.graph[a].info.id.as_str(),
                    self.graph[b].info.id.as_str(),
                )
            })
            .collect();
        edges.sort_unstable();
        edges
    }

    /// The node with this id.
    pub fn node(&self, id: &str) -> Option<&NodeInfo> {
        self.index.get(id).map(|i| &self.graph[*i].info)
    }

    /// Direct dependencies of `id`, sorted.
    pub fn dependencies(&self, id: &str) -> Vec<&str> {
        self.neighbors(id, Direction::Incoming)
    }

    /// Direct dependents of `id`, sorted.
    pub fn dependents(&self, id: &str) -> Vec<&str> {
        self.neighbors(id, Direction::Outgoing)
    }

    fn neighbors(&self, id: &str, dir: Direction) -> Vec<&str> {
        let Some(&idx) = self.index.get(id) else {
            return Vec::new();
        };
        let mut out: Vec<&str> = self
            .graph
            .neighbors_directed(idx, dir)
            .map(|n| self.graph[n].info.id.as_str())
            .collect();
        out.sort_unstable();
        out
    }

    /// Every node reachable from `id` along dependents (not `id` itself), sorted.
    pub fn descendants(&self, id: &str) -> Vec<&str> {
        let Some(&start) = self.index.get(id) else {
            return Vec::new();
        };
        let mut seen = BTreeSet::new();
        let mut stack = vec![start];
        while let Some(n) = stack.pop() {
            for m in self.graph.neighbors_directed(n, Direction::Outgoing) {
                if seen.insert(m) {
                    stack.push(m);
                }
            }
        }
        let mut out: Vec<&str> = seen
            .into_iter()
            .map(|i| self.graph[i].info.id.as_str())
            .collect();
        out.sort_unstable();
        out
    }

    /// Node ids in a dependency order (dependencies first), ties broken by id.
    pub fn topological(&self) -> Vec<&str> {
        let mut indegree: BTreeMap<&str, usize> = BTreeMap::new();
        for info in self.nodes() {
            indegree.insert(&info.id, self.dependencies(&info.id).len());
        }
        let mut ready: BTreeSet<&str> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::with_capacity(self.len());
        while let Some(id) = ready.pop_first() {
            out.push(id);
            for dep in self.dependents(id) {
                let d = indegree.get_mut(dep).expect("dependent should be a node");
                *d -= 1;
                if *d == 0 {
                    ready.insert(dep);
                }
            }
        }
        out
    }

    pub(crate) fn task(&self, id: &str) -> Option<&Arc<dyn Task>> {
        self.index.get(id).map(|i| &self.graph[*i].task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::tests::Noop;

    fn spec(id: &str, deps: &[&str]) -> NodeSpec {
        NodeSpec {
            id: id.into(),
            group: "g".into(),
            step: id.into(),
            deps: deps.iter().map(|s| s.to_string()).collect(),
            task: Arc::new(Noop),
        }
    }

    #[test]
    fn seal_lists_every_problem_sorted() {
        // a -> b -> c -> a (cycle), d depends on missing x, e twice
        let mut dag = Dag::new();
        dag.add(spec("a", &["c"]));
        dag.add(spec("b", &["a"]));
        dag.add(spec("c", &["b"]));
        dag.add(spec("d", &["x"]));
        dag.add(spec("e", &[]));
        dag.add(spec("e", &[]));
        dag.add(spec("f", &["f"]));
        let Err(EngineError::Invalid(errors)) = dag.seal() else {
            panic!("graph should be invalid");
        };
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            text,
            vec![
                "duplicate node `e`",
                "node `d` depends on `x`, which is not in the graph",
                "dependency cycle: a -> b -> c -> a",
                "dependency cycle: f -> f",
            ]
        );
    }

    #[test]
    fn order_and_neighbours() {
        // a -> b -> d, a -> c -> d
        let mut dag = Dag::new();
        dag.add(spec("d", &["b", "c"]));
        dag.add(spec("c", &["a"]));
        dag.add(spec("b", &["a"]));
        dag.add(spec("a", &[]));
        let dag = dag.seal().expect("valid");
        assert_eq!(dag.topological(), vec!["a", "b", "c", "d"]);
        assert_eq!(dag.dependencies("d"), vec!["b", "c"]);
        assert_eq!(dag.descendants("a"), vec!["b", "c", "d"]);
        assert_eq!(
            dag.edges(),
            vec![("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
        );
    }
}
