//! `rollback`: undoes a run's journaled effects in reverse dependency order, scoped by group
//! (account) and/or "everything after step X", journaled and resumable like an apply.

use crate::dag::{Built, Dag, Shape};
use crate::envelope::Envelope;
use crate::errors::EngineError;
use crate::events::{Observer, Progress};
use crate::scheduler::RunOptions;
use crate::summary::{GroupSummary, summarize};
use crate::walk::{Mode, Walk, WalkResult, waits_for};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use trailhub_state::{ErrorRecord, Journal, NodeId, NodeRecord, NodeState, RunRecord, RunStatus};

/// Which nodes a rollback undoes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackScope {
    /// Only nodes of these groups (accounts); all groups when empty.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Only the nodes that come after (depend, directly or not, on) the nodes of this step.
    #[serde(default)]
    pub after_step: Option<String>,
}

/// The marker a rollback journals on its run until it completes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PendingRollback {
    pub(crate) scope: RollbackScope,
    previous_status: RunStatus,
}

/// How a rollback ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RollbackSummary {
    /// The run's status as journaled afterwards.
    pub status: RunStatus,
    /// The scope that was rolled back.
    pub scope: RollbackScope,
    /// Nodes in the scope with effects to undo (including those undone by an earlier process).
    pub selected: usize,
    /// Nodes rolled back, in this process or an earlier one.
    pub rolled_back: usize,
    /// Nodes whose rollback changed something, in this process.
    pub changed: usize,
    /// Rollbacks that failed, with their errors.
    pub failed: BTreeMap<NodeId, ErrorRecord>,
    /// Nodes not rolled back because a node after them could not be, with that node.
    pub blocked: BTreeMap<NodeId, Option<NodeId>>,
    /// What rollbacks reported (resources kept and why).
    pub notes: BTreeMap<NodeId, String>,
    /// Nodes left to roll back because the rollback was stopped.
    pub not_run: usize,
    /// Every group's summary, from the journal once the walk ended.
    pub groups: Vec<GroupSummary>,
}

/// The scope of the rollback of `run_id` that did not finish, if any.
pub fn pending_rollback(
    journal: &Journal,
    run_id: &str,
) -> Result<Option<RollbackScope>, EngineError> {
    Ok(pending(&journal.run(run_id)?).map(|p| p.scope))
}

pub(crate) fn pending(run: &RunRecord) -> Option<PendingRollback> {
    run.pending_rollback
        .clone()
        .and_then(|v| serde_json::from_value::<PendingRollback>(v).ok())
}

/// Undoes the effects journaled for the nodes of `scope` in run `run_id`.
///
/// A node is rolled back only after every node in the scope that depends on it was; if one of
/// those fails, the nodes it depends on are left as they are (blocked). Nodes already rolled
/// back are skipped, so a rollback that was stopped or killed continues where it stood when
/// started again with the same scope. The run records the scope until the rollback completes.
///
/// It does not look at later runs: a caller that must not undo what a later run changed again
/// or relies on asks [`refuse_later_runs`](crate::refuse_later_runs) first.
pub async fn rollback(
    dag: &Dag<Built>,
    journal: &Journal,
    run_id: &str,
    scope: &RollbackScope,
    options: &RunOptions,
    observer: &dyn Observer,
    shutdown: impl Future<Output = ()>,
) -> Result<RollbackSummary, EngineError> {
    let envelope = Envelope {
        journal,
        run: run_id,
        operation: "rollback",
    };
    let in_scope = scope_filter(dag, run_id, scope)?;
    let records = envelope.records(dag)?;
    let mut selected = BTreeSet::new();
    let mut already = 0;
    for (id, rec) in records.iter().filter(|(id, _)| in_scope(id)) {
        if rec.state == NodeState::RolledBack {
            already += 1;
        } else if has_effects(rec) {
            selected.insert(id.clone());
        }
    }
    let waits_for = waits_for(&selected, |id| dag.descendants(id));
    let run = envelope.read()?;
    let previous_status = pending(&run).map_or(run.status, |p| p.previous_status);
    let marker = serde_json::to_value(PendingRollback {
        scope: scope.clone(),
        previous_status,
    })
    .expect("scope should serialize");
    envelope.start(|run| {
        run.status = RunStatus::RollingBack;
        run.pending_rollback = Some(marker);
    })?;
    observer.event(&Progress::Started {
        total: selected.len() + already,
        already_done: already,
    });
    let selected_ids = selected.clone();
    let walk = Walk {
        dag,
        journal,
        run: run_id,
        mode: Mode::Rollback,
        concurrency: options.concurrency,
        retry: &options.retry,
        observer,
        records,
        selected,
        waits_for,
    };
    let result = walk.run(shutdown).await?;
    let mut summary = tally(scope, &selected_ids, already, &result);
    let anything_left = result.records.values().any(has_effects);
    summary.status = envelope.finish(|run| {
        if result.stopped && summary.not_run > 0 {
            run.status = RunStatus::RollingBack;
        } else if !summary.failed.is_empty() || !summary.blocked.is_empty() {
            run.status = RunStatus::RollbackFailed;
        } else {
            run.pending_rollback = None;
            run.status = if anything_left {
                previous_status
            } else {
                RunStatus::RolledBack
            };
        }
    })?;
    summary.groups = summarize(dag, &journal.nodes(run_id)?);
    Ok(summary)
}

/// Which nodes `scope` names, or why it names something the run does not have.
pub(crate) fn scope_filter<'d>(
    dag: &'d Shape,
    run_id: &str,
    scope: &'d RollbackScope,
) -> Result<impl Fn(&NodeId) -> bool + 'd, EngineError> {
    let groups: BTreeSet<&str> = dag.nodes().iter().map(|n| n.group()).collect();
    let unknown: Vec<&str> = scope
        .groups
        .iter()
        .map(String::as_str)
        .filter(|g| !groups.contains(g))
        .collect();
    if !unknown.is_empty() {
        return Err(EngineError::Refused(format!(
            "run {run_id} has no account {}; its accounts are: {}",
            unknown.join(", "),
            groups.iter().copied().collect::<Vec<_>>().join(", ")
        )));
    }
    let after: Option<BTreeSet<NodeId>> = match &scope.after_step {
        None => None,
        Some(step) => {
            let anchors: Vec<&NodeId> = dag
                .nodes()
                .into_iter()
                .filter(|n| n.step() == step)
                .collect();
            if anchors.is_empty() {
                let steps: BTreeSet<&str> = dag.nodes().iter().map(|n| n.step()).collect();
                return Err(EngineError::Refused(format!(
                    "no step `{step}` in run {run_id}; its steps are: {}",
                    steps.into_iter().collect::<Vec<_>>().join(", ")
                )));
            }
            Some(
                anchors
                    .iter()
                    .flat_map(|a| dag.descendants(a))
                    .cloned()
                    .collect(),
            )
        }
    };
    Ok(move |id: &NodeId| {
        (scope.groups.is_empty() || scope.groups.iter().any(|g| g == id.group()))
            && after.as_ref().is_none_or(|a| a.contains(id))
    })
}

/// Counts what the walk ended with over the selected nodes.
fn tally(
    scope: &RollbackScope,
    selected: &BTreeSet<NodeId>,
    already: usize,
    result: &WalkResult,
) -> RollbackSummary {
    let mut summary = RollbackSummary {
        status: RunStatus::RollingBack,
        scope: scope.clone(),
        selected: selected.len() + already,
        rolled_back: already,
        changed: result.changed.len(),
        failed: BTreeMap::new(),
        blocked: result.blocked.clone(),
        notes: result.notes.clone(),
        not_run: 0,
        groups: Vec::new(),
    };
    for id in selected {
        let rec = &result.records[id];
        match rec.state {
            NodeState::RolledBack => summary.rolled_back += 1,
            NodeState::RollbackFailed => {
                let error = rec.last_error.clone().unwrap_or(ErrorRecord {
                    message: "rollback failed".into(),
                    code: None,
                    retryable: false,
                    hint: None,
                });
                summary.failed.insert(id.clone(), error);
            }
            _ if result.blocked.contains_key(id) => {}
            _ => summary.not_run += 1,
        }
    }
    summary
}

/// Whether a node may have changed something that a rollback should undo.
pub(crate) fn has_effects(rec: &NodeRecord) -> bool {
    match rec.state {
        NodeState::Done
        | NodeState::Running
        | NodeState::RollingBack
        | NodeState::RollbackFailed => true,
        NodeState::RolledBack => false,
        NodeState::Pending | NodeState::Failed | NodeState::Blocked => rec.undo.is_some(),
    }
}
