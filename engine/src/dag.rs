//! The workflow graph: its [`Shape`] (node ids and dependencies, as a petgraph DAG, validated)
//! and the [`Dag`] that adds a task to every node and must be sealed before it can run.
//!
//! The shape is what a run journals when it is created; commands that only read the journal
//! rebuild it from there, without tasks (and so without any AWS client).

use crate::errors::{EngineError, ValidationError};
use crate::task::{ErasedTask, Task};
use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use trailhub_state::{GraphRecord, NodeId};

/// A node to add to a [`Dag`].
#[derive(Clone)]
pub struct NodeSpec {
    id: NodeId,
    deps: Vec<NodeId>,
    task: Arc<dyn ErasedTask>,
}

impl NodeSpec {
    /// Node `id`, run after `deps`, doing `task`.
    pub fn new<T: Task>(id: NodeId, deps: Vec<NodeId>, task: T) -> Self {
        NodeSpec {
            id,
            deps,
            task: Arc::new(task),
        }
    }
}

/// Node ids and their dependencies, validated: every dependency exists, no id twice, no cycle.
/// Edges point from a dependency to its dependent.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    graph: DiGraph<NodeId, ()>,
    index: BTreeMap<NodeId, NodeIndex>,
}

impl Shape {
    /// Validates `nodes` (in the order they were added) and `edges` `(dependency, dependent)`;
    /// every problem is returned at once, sorted.
    fn build(
        nodes: Vec<NodeId>,
        edges: Vec<(NodeId, NodeId)>,
    ) -> Result<Shape, Vec<ValidationError>> {
        let mut errors = BTreeSet::new();
        let mut shape = Shape::default();
        for id in nodes {
            if shape.index.contains_key(&id) {
                errors.insert(ValidationError::Duplicate(id.to_string()));
                continue;
            }
            let idx = shape.graph.add_node(id.clone());
            shape.index.insert(id, idx);
        }
        for (dep, node) in edges {
            let Some(&to) = shape.index.get(&node) else {
                continue;
            };
            match shape.index.get(&dep) {
                Some(&from) if !shape.graph.contains_edge(from, to) => {
                    shape.graph.add_edge(from, to, ());
                }
                Some(_) => {}
                None => {
                    errors.insert(ValidationError::MissingDependency {
                        node: node.to_string(),
                        missing: dep.to_string(),
                    });
                }
            }
        }
        for scc in petgraph::algo::tarjan_scc(&shape.graph) {
            if scc.len() > 1 || shape.graph.contains_edge(scc[0], scc[0]) {
                let mut ids: Vec<String> =
                    scc.iter().map(|i| shape.graph[*i].to_string()).collect();
                ids.sort();
                let first = ids[0].clone();
                ids.push(first);
                errors.insert(ValidationError::Cycle(ids));
            }
        }
        if errors.is_empty() {
            Ok(shape)
        } else {
            Err(errors.into_iter().collect())
        }
    }

    /// The shape of a journaled graph, validated like a sealed [`Dag`].
    pub fn from_record(record: &GraphRecord) -> Result<Shape, EngineError> {
        Shape::build(record.nodes.clone(), record.edges.clone()).map_err(EngineError::Invalid)
    }

    /// The shape as journaled: nodes in the order they were added, edges sorted.
    pub fn record(&self) -> GraphRecord {
        GraphRecord {
            nodes: self.graph.node_weights().cloned().collect(),
            edges: self
                .edges()
                .into_iter()
                .map(|(a, b)| (a.clone(), b.clone()))
                .collect(),
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    /// Whether the graph has no node.
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// Whether `id` is a node.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.index.contains_key(id)
    }

    /// Every node, sorted by id.
    pub fn nodes(&self) -> Vec<&NodeId> {
        self.index.keys().collect()
    }

    /// The groups, in the order their first node was added (the workflow's order: the
    /// archive, then the accounts as the inventory lists them).
    pub fn groups(&self) -> Vec<&str> {
        let mut seen = BTreeSet::new();
        self.graph
            .node_weights()
            .map(NodeId::group)
            .filter(|g| seen.insert(*g))
            .collect()
    }

    /// Every edge `(dependency, dependent)`, sorted.
    pub fn edges(&self) -> Vec<(&NodeId, &NodeId)> {
        let mut edges: Vec<(&NodeId, &NodeId)> = self
            .graph
            .edge_indices()
            .filter_map(|e| self.graph.edge_endpoints(e))
            .map(|(a, b)| (&self.graph[a], &self.graph[b]))
            .collect();
        edges.sort_unstable();
        edges
    }

    /// Direct dependencies of `id`, sorted.
    pub fn dependencies(&self, id: &NodeId) -> Vec<&NodeId> {
        self.neighbors(id, Direction::Incoming)
    }

    /// Direct dependents of `id`, sorted.
    pub fn dependents(&self, id: &NodeId) -> Vec<&NodeId> {
        self.neighbors(id, Direction::Outgoing)
    }

    fn neighbors(&self, id: &NodeId, dir: Direction) -> Vec<&NodeId> {
        let Some(&idx) = self.index.get(id) else {
            return Vec::new();
        };
        let mut out: Vec<&NodeId> = self
            .graph
            .neighbors_directed(idx, dir)
            .map(|n| &self.graph[n])
            .collect();
        out.sort_unstable();
        out
    }

    /// Every node reachable from `id` along dependents (not `id` itself), sorted.
    pub fn descendants(&self, id: &NodeId) -> Vec<&NodeId> {
        self.reachable(id, Direction::Outgoing)
    }

    /// Every node `id` depends on, directly or not, sorted.
    pub fn ancestors(&self, id: &NodeId) -> Vec<&NodeId> {
        self.reachable(id, Direction::Incoming)
    }

    fn reachable(&self, id: &NodeId, dir: Direction) -> Vec<&NodeId> {
        let Some(&start) = self.index.get(id) else {
            return Vec::new();
        };
        let mut seen = BTreeSet::new();
        let mut stack = vec![start];
        while let Some(n) = stack.pop() {
            for m in self.graph.neighbors_directed(n, dir) {
                if seen.insert(m) {
                    stack.push(m);
                }
            }
        }
        let mut out: Vec<&NodeId> = seen.into_iter().map(|i| &self.graph[i]).collect();
        out.sort_unstable();
        out
    }

    /// Node ids in a dependency order (dependencies first), ties broken by id.
    pub fn topological(&self) -> Vec<&NodeId> {
        let mut indegree: HashMap<&NodeId, usize> = self
            .index
            .keys()
            .map(|id| (id, self.dependencies(id).len()))
            .collect();
        let mut ready: BTreeSet<&NodeId> = indegree
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
}

/// Typestate: the graph is being built and cannot run.
#[derive(Debug)]
pub struct Building;
/// Typestate: the graph was validated and can run.
#[derive(Debug)]
pub struct Built;

/// A DAG of tasks: a [`Shape`] with a task per node.
pub struct Dag<S = Built> {
    shape: Shape,
    order: Vec<NodeId>,
    deps: Vec<(NodeId, NodeId)>,
    tasks: HashMap<NodeId, Arc<dyn ErasedTask>>,
    duplicates: Vec<NodeId>,
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
            shape: Shape::default(),
            order: Vec::new(),
            deps: Vec::new(),
            tasks: HashMap::new(),
            duplicates: Vec::new(),
            _state: PhantomData,
        }
    }

    /// Adds a node; its dependencies may be added later. Problems are reported by [`Self::seal`].
    pub fn add(&mut self, spec: NodeSpec) {
        if self.tasks.contains_key(&spec.id) {
            self.duplicates.push(spec.id);
            return;
        }
        self.deps
            .extend(spec.deps.into_iter().map(|d| (d, spec.id.clone())));
        self.order.push(spec.id.clone());
        self.tasks.insert(spec.id, spec.task);
    }

    /// Validates the graph: every dependency exists, no id is used twice, no cycle.
    /// Every problem is returned at once, sorted.
    pub fn seal(self) -> Result<Dag<Built>, EngineError> {
        let mut nodes = self.order;
        nodes.extend(self.duplicates);
        let shape = Shape::build(nodes, self.deps).map_err(EngineError::Invalid)?;
        Ok(Dag {
            shape,
            order: Vec::new(),
            deps: Vec::new(),
            tasks: self.tasks,
            duplicates: Vec::new(),
            _state: PhantomData,
        })
    }
}

impl Dag<Built> {
    /// The graph without its tasks.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    pub(crate) fn task(&self, id: &NodeId) -> Option<&Arc<dyn ErasedTask>> {
        self.tasks.get(id)
    }
}

impl Deref for Dag<Built> {
    type Target = Shape;

    fn deref(&self) -> &Shape {
        &self.shape
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::tests::Noop;

    fn id(step: &str) -> NodeId {
        NodeId::new("g", step)
    }

    fn spec(step: &str, deps: &[&str]) -> NodeSpec {
        NodeSpec::new(id(step), deps.iter().map(|d| id(d)).collect(), Noop)
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
                "duplicate node `g/e`",
                "node `g/d` depends on `g/x`, which is not in the graph",
                "dependency cycle: g/a -> g/b -> g/c -> g/a",
                "dependency cycle: g/f -> g/f",
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
        let text = |ids: Vec<&NodeId>| ids.iter().map(|i| i.step().to_string()).collect::<Vec<_>>();
        assert_eq!(text(dag.topological()), ["a", "b", "c", "d"]);
        assert_eq!(text(dag.dependencies(&id("d"))), ["b", "c"]);
        assert_eq!(text(dag.descendants(&id("a"))), ["b", "c", "d"]);
        assert_eq!(dag.edges().len(), 4);
    }

    #[test]
    fn the_shape_round_trips_through_its_record() {
        let mut dag = Dag::new();
        dag.add(NodeSpec::new(NodeId::new("z", "first"), vec![], Noop));
        dag.add(NodeSpec::new(
            NodeId::new("a", "second"),
            vec![NodeId::new("z", "first")],
            Noop,
        ));
        let dag = dag.seal().expect("valid");
        let record = dag.record();
        assert_eq!(
            dag.groups(),
            ["z", "a"],
            "groups in the order they were added"
        );
        let shape = Shape::from_record(&record).expect("valid record");
        assert_eq!(shape.record(), record);
        assert_eq!(shape.groups(), ["z", "a"]);
        let mut broken = record.clone();
        broken
            .edges
            .push((NodeId::new("a", "second"), NodeId::new("z", "first")));
        assert!(matches!(
            Shape::from_record(&broken),
            Err(EngineError::Invalid(_))
        ));
    }
}
