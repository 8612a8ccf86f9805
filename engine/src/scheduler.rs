//! `execute`: applies a run's DAG (a new run, or a resumed one) and sets the run's outcome.

use crate::dag::{Built, Dag};
use crate::errors::EngineError;
use crate::events::{Observer, Progress};
use crate::retry::RetryPolicy;
use crate::walk::{Mode, Walk, commit_run, waits_for};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use trailhub_state::{ErrorRecord, EventKind, Journal, NodeRecord, NodeState, RunStatus};

/// How a run is executed.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Node attempts in flight at most.
    pub concurrency: usize,
    /// Retries of retryable failures.
    pub retry: RetryPolicy,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            concurrency: 16,
            retry: RetryPolicy::default(),
        }
    }
}

/// How a run (or this process's part of it) ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// The run's status as journaled.
    pub status: RunStatus,
    /// Nodes in the graph.
    pub total: usize,
    /// Nodes done, including those done by earlier processes.
    pub done: usize,
    /// Nodes whose apply changed something in this process.
    pub changed: usize,
    /// Failed nodes and their errors.
    pub failed: BTreeMap<String, ErrorRecord>,
    /// Nodes not run because a dependency failed, with that dependency.
    pub blocked: BTreeMap<String, String>,
    /// Nodes neither done, failed nor blocked (the run was stopped).
    pub not_run: usize,
}

/// Applies every node of `dag` not yet done in run `run_id`, and journals the outcome.
///
/// Nodes journaled `Done` are never applied again. A node found `Running` (its process died)
/// is applied again, with the undo record its first attempt journaled. Failed and blocked nodes
/// of an earlier process are attempted again. A failed node blocks only its descendants.
/// `shutdown` resolving stops the run: running attempts finish, nothing new starts, and the
/// run ends `interrupted`.
///
/// A run being rolled back, or with rolled-back nodes, is refused: finish the rollback, or
/// start a new run.
pub async fn execute(
    dag: &Dag<Built>,
    journal: &Journal,
    run_id: &str,
    operation: &str,
    options: &RunOptions,
    observer: &dyn Observer,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, EngineError> {
    let mut run = journal.run(run_id)?;
    if run.pending_rollback.is_some() {
        return Err(EngineError::Refused(format!(
            "run {run_id} has a rollback that did not finish; continue it with `trailhub rollback {run_id}` before anything else"
        )));
    }
    let journaled = journal.nodes(run_id)?;
    let rolled_back: Vec<&String> = journaled
        .iter()
        .filter(|(_, r)| {
            matches!(
                r.state,
                NodeState::RolledBack | NodeState::RollbackFailed | NodeState::RollingBack
            )
        })
        .map(|(id, _)| id)
        .collect();
    if !rolled_back.is_empty() {
        return Err(EngineError::Refused(format!(
            "run {run_id} was rolled back (in part: {}); start a new run with `trailhub apply` to apply it again",
            rolled_back
                .iter()
                .take(3)
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }

    let mut records: HashMap<String, NodeRecord> = HashMap::new();
    let mut selected = BTreeSet::new();
    let mut already_done = 0;
    for info in dag.nodes() {
        let rec = journaled.get(&info.id).cloned().unwrap_or_default();
        if rec.state == NodeState::Done {
            already_done += 1;
        } else {
            selected.insert(info.id.clone());
        }
        records.insert(info.id.clone(), rec);
    }
    let waits_for = waits_for(&selected, |id| dag.dependencies(id));

    run.status = RunStatus::Running;
    commit_run(
        journal,
        run,
        EventKind::RunStarted {
            operation: operation.to_string(),
            pid: std::process::id(),
        },
    )?;
    observer.event(&Progress::Started {
        total: dag.len(),
        already_done,
    });

    let walk = Walk {
        dag,
        journal,
        run: run_id,
        mode: Mode::Apply,
        concurrency: options.concurrency,
        retry: &options.retry,
        observer,
        records,
        selected,
        waits_for,
    };
    let result = walk.run(shutdown).await?;

    let mut summary = RunSummary {
        status: RunStatus::Running,
        total: dag.len(),
        done: 0,
        changed: result.changed.len(),
        failed: BTreeMap::new(),
        blocked: result.blocked.clone(),
        not_run: 0,
    };
    for (id, rec) in &result.records {
        match rec.state {
            NodeState::Done => summary.done += 1,
            NodeState::Failed => {
                let error = rec.last_error.clone().unwrap_or(ErrorRecord {
                    message: "failed".into(),
                    code: None,
                    retryable: false,
                    hint: None,
                });
                summary.failed.insert(id.clone(), error);
            }
            NodeState::Blocked => {}
            _ if result.blocked.contains_key(id) => {}
            _ => summary.not_run += 1,
        }
    }
    summary.status = if summary.done == summary.total {
        RunStatus::Succeeded
    } else if result.stopped && summary.not_run > 0 {
        RunStatus::Interrupted
    } else if summary.done > 0 {
        RunStatus::PartiallyFailed
    } else {
        RunStatus::Failed
    };
    let mut run = journal.run(run_id)?;
    run.status = summary.status;
    commit_run(
        journal,
        run,
        EventKind::RunFinished {
            operation: operation.to_string(),
            status: summary.status,
        },
    )?;
    Ok(summary)
}
