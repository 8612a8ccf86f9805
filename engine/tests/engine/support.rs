//! Test tasks and helpers: a `World` that records effects, attempts and concurrency, and small
//! builders for graphs drawn in comments.

use async_trait::async_trait;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};

use std::time::Duration;
use tokio::sync::Notify;
use trailhub_engine::{
    Applied, ApplyCtx, Dag, NodeId, NodeSpec, NullObserver, Plan, PlanAction, PlanCtx, RetryPolicy,
    RolledBack, RunOptions, RunSummary, Task, TaskError, execute,
};
use trailhub_state::{Journal, NewRun};

/// What the test tasks did, in order.
#[derive(Default)]
pub struct WorldState {
    /// Live effects: node -> how many times its effect was created.
    pub effects: BTreeMap<String, u32>,
    /// Every effect creation and removal, in order: ("+a", "-a").
    pub log: Vec<String>,
    /// Every apply attempt, in order.
    pub attempts: Vec<String>,
    /// Attempts' starts (`<a`) and effects (`>a`) in one order.
    pub timeline: Vec<String>,
    /// Attempts in flight now, and the most seen at once.
    pub running: usize,
    pub max_running: usize,
    /// Holders of the exclusive resource now, and the most seen at once.
    pub holding: usize,
    pub max_holding: usize,
    /// The undo record in force when each node first mutated.
    pub first_undo: BTreeMap<String, Value>,
    /// Apply calls so far (for crash injection).
    pub applies: usize,
    /// Crash (stop answering) when the n-th apply (1-based) has written its effect.
    pub crash_at: Option<usize>,
    /// Every apply that got past its checks, by node, whether or not it found its effect
    /// there already: an engine that applies a finished node again shows here.
    pub applications: BTreeMap<String, u32>,
}

#[derive(Clone, Default)]
pub struct World {
    pub state: Arc<Mutex<WorldState>>,
    pub crashed: Arc<Notify>,
    /// Notified when an attempt starts.
    pub started: Arc<Notify>,
    /// Notified when a `busy` attempt has journaled its undo record and starts being busy.
    pub busy: Arc<Notify>,
}

impl World {
    pub fn with<R>(&self, f: impl FnOnce(&mut WorldState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }
}

/// How a test task behaves.
#[derive(Clone, Default)]
pub struct Behaviour {
    /// Fail with a retryable error this many times first.
    pub transient_failures: u32,
    /// Always fail with a fatal error.
    pub fatal: bool,
    /// Always fail with a retryable error.
    pub always_retryable: bool,
    /// Fail rollback fatally.
    pub rollback_fails: bool,
    /// Hold this named exclusive resource while applying.
    pub exclusive: Option<String>,
    /// Time an apply takes.
    pub delay: Duration,
    /// Fail `plan` with a standing error (a conflict with what is live).
    pub plan_fails: bool,
    /// Once the undo record is journaled, compute (block the thread) this long before the
    /// effect, as a task does between two awaits.
    pub busy: Duration,
}

pub struct TestTask {
    pub id: String,
    pub world: World,
    pub behaviour: Behaviour,
}

/// A test task's undo record: whether its effect existed before, and the attempt that saw it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TestUndo {
    pub had: bool,
    pub attempt: u32,
}

/// A test task's outputs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TestOutput {
    pub node: String,
}

/// The id of a test node: `group/step`, or a bare step of group `g`.
pub fn id(text: &str) -> NodeId {
    match text.split_once('/') {
        Some((group, step)) => NodeId::new(group, step),
        None => NodeId::new("g", text),
    }
}

/// How tests name a node: the text they gave to [`id`].
pub fn short(id: &NodeId) -> String {
    if id.group() == "g" {
        id.step().to_string()
    } else {
        id.to_string()
    }
}

#[async_trait]
impl Task for TestTask {
    type Undo = TestUndo;
    type Output = TestOutput;

    fn describe(&self) -> String {
        format!("test task {}", self.id)
    }

    async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
        if self.behaviour.plan_fails {
            return Err(TaskError::fatal(format!("{} conflicts", self.id))
                .with_code("Conflict")
                .standing());
        }
        let exists = self.world.with(|w| w.effects.contains_key(&self.id));
        Ok(if exists {
            Plan::new(PlanAction::NoOp)
        } else {
            Plan::new(PlanAction::Create).change("effect", None, "present")
        })
    }

    async fn apply(&self, ctx: &ApplyCtx<TestUndo>) -> Result<Applied<TestOutput>, TaskError> {
        let failures_so_far = self.world.with(|w| {
            w.attempts.push(self.id.clone());
            w.timeline.push(format!("<{}", self.id));
            w.running += 1;
            w.max_running = w.max_running.max(w.running);
            w.attempts.iter().filter(|a| **a == self.id).count() as u32 - 1
        });
        self.world.started.notify_one();
        let _guard = match &self.behaviour.exclusive {
            Some(name) => Some(ctx.exclusive(name).await),
            None => None,
        };
        if self.behaviour.exclusive.is_some() {
            self.world.with(|w| {
                w.holding += 1;
                w.max_holding = w.max_holding.max(w.holding);
            });
        }
        if !self.behaviour.delay.is_zero() {
            tokio::time::sleep(self.behaviour.delay).await;
        }
        let result = self.effect(ctx, failures_so_far).await;
        self.world.with(|w| {
            w.running -= 1;
            if self.behaviour.exclusive.is_some() {
                w.holding -= 1;
            }
        });
        result
    }

    async fn rollback(
        &self,
        undo: Option<TestUndo>,
        _ctx: &ApplyCtx<TestUndo>,
    ) -> Result<RolledBack, TaskError> {
        if self.behaviour.rollback_fails {
            return Err(TaskError::fatal(format!("cannot undo {}", self.id)).with_code("Nope"));
        }
        let had = undo.is_none_or(|u| u.had);
        let removed = self.world.with(|w| {
            if !had && w.effects.remove(&self.id).is_some() {
                w.log.push(format!("-{}", self.id));
                true
            } else {
                false
            }
        });
        Ok(RolledBack {
            changed: removed,
            note: None,
        })
    }
}

impl TestTask {
    async fn effect(
        &self,
        ctx: &ApplyCtx<TestUndo>,
        failures_so_far: u32,
    ) -> Result<Applied<TestOutput>, TaskError> {
        if self.behaviour.fatal {
            return Err(TaskError::fatal(format!("{} is broken", self.id)).with_code("Broken"));
        }
        if self.behaviour.always_retryable || failures_so_far < self.behaviour.transient_failures {
            return Err(TaskError::retryable("throttled").with_code("Throttling"));
        }
        let had = self.world.with(|w| {
            *w.applications.entry(self.id.clone()).or_default() += 1;
            w.effects.contains_key(&self.id)
        });
        let output = TestOutput {
            node: self.id.clone(),
        };
        if had {
            return Ok(Applied::unchanged(output));
        }
        let proposed = TestUndo {
            had: false,
            attempt: ctx.attempt(),
        };
        let undo = ctx.record_undo(proposed).await?;
        if !self.behaviour.busy.is_zero() {
            self.world.busy.notify_one();
            std::thread::sleep(self.behaviour.busy);
        }
        let crash = self.world.with(|w| {
            // The effective record: after a crash, an earlier attempt's journaled record wins
            // over this attempt's proposal.
            w.first_undo
                .entry(self.id.clone())
                .or_insert(json!({ "had": undo.had, "attempt": undo.attempt }));
            *w.effects.entry(self.id.clone()).or_default() += 1;
            w.log.push(format!("+{}", self.id));
            w.timeline.push(format!(">{}", self.id));
            w.applies += 1;
            w.crash_at == Some(w.applies)
        });
        assert!(!undo.had, "the effective undo record is the first one");
        ctx.call("test", "CreateEffect", true, self.id.clone());
        if crash {
            self.world.crashed.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(Applied::changed(output))
    }
}

/// Builds a graph from `(id, deps)` pairs, ids as [`id`] reads them.
pub fn graph(
    world: &World,
    nodes: &[(&str, &[&str])],
    behaviours: &BTreeMap<&str, Behaviour>,
) -> Dag {
    let mut dag = Dag::new();
    for (name, deps) in nodes {
        dag.add(NodeSpec::new(
            id(name),
            deps.iter().map(|d| id(d)).collect(),
            TestTask {
                id: name.to_string(),
                world: world.clone(),
                behaviour: behaviours.get(name).cloned().unwrap_or_default(),
            },
        ));
    }
    dag.seal().expect("test graphs are valid")
}

pub fn options(concurrency: usize) -> RunOptions {
    RunOptions {
        concurrency,
        retry: RetryPolicy::fast(4),
    }
}

pub fn new_run(journal: &Journal) -> String {
    journal
        .create_run(NewRun {
            workflow: "test",
            definition: "definition",
            source: None,
            options: Value::Null,
            graph: None,
        })
        .unwrap()
        .id
}

pub async fn run_to_end(dag: &Dag, journal: &Journal, run: &str, concurrency: usize) -> RunSummary {
    execute(
        dag,
        journal,
        run,
        "apply",
        &options(concurrency),
        &NullObserver,
        std::future::pending(),
    )
    .await
    .unwrap()
}

/// A future that never resolves.
pub fn never() -> impl Future<Output = ()> {
    std::future::pending()
}

pub fn open(dir: &Path) -> Journal {
    Journal::open(dir).unwrap()
}

pub fn states(journal: &Journal, run: &str) -> BTreeMap<String, String> {
    journal
        .nodes(run)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (short(&k), v.state.as_str().to_string()))
        .collect()
}
