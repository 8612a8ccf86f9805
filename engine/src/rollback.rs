//! `rollback`: undoes a run's journaled effects in reverse dependency order, scoped by group
//! (account) and/or "everything after step X", journaled and resumable like an apply.

use crate::dag::{Built, Dag};
use crate::errors::EngineError;
use crate::events::{Observer, Progress};
use crate::scheduler::RunOptions;
use crate::walk::{Mode, Walk, commit_run, waits_for};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use trailhub_state::{ErrorRecord, EventKind, Journal, NodeRecord, NodeState, RunStatus};

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

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingRollback {
    scope: RollbackScope,
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
    pub failed: BTreeMap<String, ErrorRecord>,
    /// Nodes not rolled back because a node after them could not be.
    pub blocked: BTreeMap<String, String>,
    /// What rollbacks reported (resources kept and why).
    pub notes: BTreeMap<String, String>,
    /// Nodes left to roll back because the rollback was stopped.
    pub not_run: usize,
}

/// The scope of the rollback of `run_id` that did not finish, if any.
pub fn pending_rollback(
    journal: &Journal,
    run_id: &str,
) -> Result<Option<RollbackScope>, EngineError> {
    let run = journal.run(run_id)?;
    Ok(run
        .pending_rollback
        .and_then(|v| serde_json::from_value::<PendingRollback>(v).ok())
        .map(|p| p.scope))
}

/// Undoes the effects journaled for the nodes of `scope` in run `run_id`.
///
/// A node is rolled back only after every node in the scope that depends on it was; if one of
/// those fails, the nodes it depends on are left as they are (blocked). Nodes already rolled
/// back are skipped, so a rollback that was stopped or killed continues where it stood when
/// started again with the same scope. The run records the scope until the rollback completes.
pub async fn rollback(
    dag: &Dag<Built>,
    journal: &Journal,
    run_id: &str,
    scope: &RollbackScope,
    options: &RunOptions,
    observer: &dyn Observer,
    shutdown: impl Future<Output = ()>,
) -> Result<RollbackSummary, EngineError> {
    let mut run = journal.run(run_id)?;
    let groups: BTreeSet<&str> = dag.nodes().iter().map(|n| n.group.as_str()).collect();
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
    let after: Option<BTreeSet<String>> = match &scope.after_step {
        None => None,
        Some(step) => {
            let anchors: Vec<&str> = dag
                .nodes()
                .iter()
                .filter(|n| &n.step == step)
                .map(|n| n.id.as_str())
                .collect();
            if anchors.is_empty() {
                let steps: BTreeSet<&str> = dag.nodes().iter().map(|n| n.step.as_str()).collect();
                return Err(EngineError::Refused(format!(
                    "no step `{step}` in run {run_id}; its steps are: {}",
                    steps.into_iter().collect::<Vec<_>>().join(", ")
                )));
            }
            Some(
                anchors
                    .iter()
                    .flat_map(|a| dag.descendants(a))
                    .map(str::to_string)
                    .collect(),
            )
        }
    };

    let journaled = journal.nodes(run_id)?;
    let mut records: HashMap<String, NodeRecord> = HashMap::new();
    let mut selected = BTreeSet::new();
    let mut already = 0;
    for info in dag.nodes() {
        let rec = journaled.get(&info.id).cloned().unwrap_or_default();
        let in_scope = (scope.groups.is_empty() || scope.groups.contains(&info.group))
            && after.as_ref().is_none_or(|a| a.contains(&info.id));
        if in_scope {
            if rec.state == NodeState::RolledBack {
                already += 1;
            } else if has_effects(&rec) {
                selected.insert(info.id.clone());
            }
        }
        records.insert(info.id.clone(), rec);
    }
    let waits_for = waits_for(&selected, |id| dag.descendants(id));

    let previous_status = run
        .pending_rollback
        .clone()
        .and_then(|v| serde_json::from_value::<PendingRollback>(v).ok())
        .map(|p| p.previous_status)
        .unwrap_or(run.status);
    run.status = RunStatus::RollingBack;
    run.pending_rollback = Some(
        serde_json::to_value(PendingRollback {
            scope: scope.clone(),
            previous_status,
        })
        .expect("scope should serialize"),
    );
    commit_run(
        journal,
        run,
        EventKind::RunStarted {
            operation: "rollback".into(),
            pid: std::process::id(),
        },
    )?;
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

    let mut summary = RollbackSummary {
        status: RunStatus::RollingBack,
        scope: scope.clone(),
        selected: selected_ids.len() + already,
        rolled_back: already,
        changed: result.changed.len(),
        failed: BTreeMap::new(),
        blocked: result.blocked.clone(),
        notes: result.notes.clone(),
        not_run: 0,
    };
    for id in &selected_ids {
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
    let mut run = journal.run(run_id)?;
    if result.stopped && summary.not_run > 0 {
        run.status = RunStatus::RollingBack;
    } else if !summary.failed.is_empty() || !summary.blocked.is_empty() {
        run.status = RunStatus::RollbackFailed;
    } else {
        run.pending_rollback = None;
        let anything_left = result.records.values().any(has_effects);
        run.status = if anything_left {
            previous_status
        } else {
            RunStatus::RolledBack
        };
    }
    summary.status = run.status;
    commit_run(
        journal,
        run,
        EventKind::RunFinished {
            operation: "rollback".into(),
            status: summary.status,
        },
    )?;
    Ok(summary)
}

/// Whether a node may have changed something that a rollback should undo.
fn has_effects(rec: &NodeRecord) -> bool {
    match rec.state {
        NodeState::Done
        | NodeState::Running
        | NodeState::RollingBack
        | NodeState::RollbackFailed => true,
        NodeState::RolledBack => false,
        NodeState::Pending | NodeState::Failed | NodeState::Blocked => rec.undo.is_some(),
    }
}
