//! Dry run: every node's read-only `plan`, concurrently, with nothing applied or journaled.

use crate::dag::{Built, Dag};
use crate::errors::TaskError;
use crate::task::PlanCtx;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use trailhub_state::NodeId;

/// What `apply` would do to a node's resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanAction {
    /// The resource does not exist and would be created.
    Create,
    /// The resource exists and some fields would change.
    Update,
    /// Nothing would change.
    NoOp,
    /// It cannot be known before earlier nodes apply (their outputs are needed), or probing failed.
    Unknown,
    /// A node it depends on could not be planned (its probe failed): `apply` would not run it
    /// before that node succeeds. Set by [`plan`], never by a task; [`Plan::blocked_by`] names
    /// the node.
    Blocked,
}

impl PlanAction {
    /// The name shown in output.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanAction::Create => "create",
            PlanAction::Update => "update",
            PlanAction::NoOp => "no-op",
            PlanAction::Unknown => "unknown",
            PlanAction::Blocked => "blocked",
        }
    }
}

/// One field that `apply` would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The field, e.g. `Status` or `Rules[0].Destination.StorageClass`.
    pub field: String,
    /// The value now, `None` when absent.
    pub from: Option<String>,
    /// The value `apply` would set.
    pub to: String,
}

impl Change {
    /// Field `field` would go from `from` to `to`.
    pub fn new(field: impl Into<String>, from: Option<String>, to: impl Into<String>) -> Self {
        Change {
            field: field.into(),
            from,
            to: to.into(),
        }
    }
}

/// A node's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// What would be done.
    pub action: PlanAction,
    /// The fields that would change (for `update`, and `create` where useful).
    pub changes: Vec<Change>,
    /// Anything else the operator should know (why `unknown`, what is checked…).
    pub note: Option<String>,
    /// For `blocked`, the node whose error blocks it: the first, in dependency order, of the
    /// failed nodes it depends on (directly or not).
    pub blocked_by: Option<NodeId>,
}

impl Plan {
    /// A plan with no changes listed.
    pub fn new(action: PlanAction) -> Self {
        Plan {
            action,
            changes: Vec::new(),
            note: None,
            blocked_by: None,
        }
    }

    /// The plan of a node that `by`'s error blocks.
    pub fn blocked(by: &NodeId) -> Self {
        Plan {
            blocked_by: Some(by.clone()),
            ..Plan::new(PlanAction::Blocked).note(format!(
                "blocked by {by}: apply runs it only once that step succeeds"
            ))
        }
    }

    /// Adds a changed field.
    pub fn change(mut self, field: &str, from: Option<String>, to: impl Into<String>) -> Self {
        self.changes.push(Change {
            field: field.to_string(),
            from,
            to: to.into(),
        });
        self
    }

    /// Adds changed fields.
    pub fn changes(mut self, changes: impl IntoIterator<Item = Change>) -> Self {
        self.changes.extend(changes);
        self
    }

    /// Sets the note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// One node's plan, or the error its probe met.
#[derive(Debug, Clone)]
pub struct PlannedNode {
    /// The node's id (its group and step).
    pub id: NodeId,
    /// What the task describes itself as.
    pub description: String,
    /// The plan, or why it could not be made.
    pub result: Result<Plan, TaskError>,
}

/// Plans every node, at most `concurrency` at once, and returns them in dependency order.
/// Calls only `Task::plan`, which must not mutate anything.
///
/// As `apply` would not run what depends on a failed node, a node that depends (directly or
/// not) on one whose probe failed is planned [`PlanAction::Blocked`], whatever its own probe
/// found: the plan never predicts work below an error.
pub async fn plan(dag: &Dag<Built>, concurrency: usize) -> Vec<PlannedNode> {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    let order = dag.topological();
    for (position, id) in order.iter().enumerate() {
        let id = (*id).clone();
        let task = dag
            .task(&id)
            .expect("ordered ids should have tasks")
            .clone();
        let permits = permits.clone();
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let ctx = PlanCtx { node: id.clone() };
            let result = task.plan(&ctx).await;
            (
                position,
                PlannedNode {
                    id,
                    description: task.describe(),
                    result,
                },
            )
        });
    }
    let mut out: Vec<Option<PlannedNode>> = (0..order.len()).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((position, planned)) => out[position] = Some(planned),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    let mut planned: Vec<PlannedNode> = out.into_iter().flatten().collect();
    // A probe that failed because an earlier node's resource does not exist yet (the archive
    // bucket, say) is not an error of the plan: apply creates it first. A standing error (a
    // conflict with what is live) is reported all the same.
    let creates: Vec<NodeId> = planned
        .iter()
        .filter(|p| matches!(&p.result, Ok(plan) if plan.action == PlanAction::Create))
        .map(|p| p.id.clone())
        .collect();
    for p in planned.iter_mut() {
        if p.result.as_ref().is_err_and(|e| !e.standing)
            && let Some(first) = creates.iter().find(|c| dag.descendants(c).contains(&&p.id))
        {
            p.result =
                Ok(Plan::new(PlanAction::Unknown).note(format!("known once {first} is created")));
        }
    }
    block_below_errors(dag, &mut planned);
    planned
}

/// Marks every node below a failed one (its descendants) as blocked by the first failed node,
/// in dependency order, among those it depends on. `planned` is in dependency order.
fn block_below_errors(dag: &Dag<Built>, planned: &mut [PlannedNode]) {
    let position: HashMap<NodeId, usize> = planned
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.clone(), i))
        .collect();
    let failed: HashSet<NodeId> = planned
        .iter()
        .filter(|p| p.result.is_err())
        .map(|p| p.id.clone())
        .collect();
    if failed.is_empty() {
        return;
    }
    for p in planned.iter_mut() {
        let by = dag
            .ancestors(&p.id)
            .into_iter()
            .filter(|a| failed.contains(*a))
            .min_by_key(|a| position.get(*a).copied().unwrap_or(usize::MAX));
        if let Some(by) = by {
            p.result = Ok(Plan::blocked(by));
        }
    }
}
