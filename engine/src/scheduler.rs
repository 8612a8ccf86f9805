//! `execute`: applies a run's DAG (a new run, or a resumed one) and sets the run's outcome.

use crate::dag::{Built, Dag};
use crate::envelope::Envelope;
use crate::errors::EngineError;
use crate::events::{Observer, Progress};
use crate::retry::RetryPolicy;
use crate::summary::{GroupSummary, summarize};
use crate::walk::{Mode, Walk, WalkResult, waits_for};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use trailhub_state::{ErrorRecord, NodeId, NodeState, RunRecord, RunStatus};

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
    pub failed: BTreeMap<NodeId, ErrorRecord>,
    /// Nodes not run because a dependency failed, with that dependency.
    pub blocked: BTreeMap<NodeId, Option<NodeId>>,
    /// Nodes neither done, failed nor blocked (the run was stopped).
    pub not_run: usize,
    /// Every group's summary, from the journal once the walk ended.
    pub groups: Vec<GroupSummary>,
}

/// Applies every node of `dag` not yet done in run `run_id`, and journals the outcome.
///
/// Nodes journaled `Done` are never applied again. A node found `Running` (its process died)
/// is applied again, with the undo record its first attempt journaled. Failed and blocked nodes
/// of an earlier process are attempted again. A failed node blocks only its descendants.
/// `shutdown` resolving stops the run: running attempts finish, nothing new starts, and the
/// run ends `interrupted`. Dropping the returned future instead stops every attempt with it:
/// none runs afterwards (they are polled by this future, not spawned), so the journal then
/// reopened, and the world, are as a crash at that moment would leave them.
///
/// A run being rolled back, or with rolled-back nodes, is refused: finish the rollback, or
/// start a new run.
pub async fn execute(
    dag: &Dag<Built>,
    journal: &trailhub_state::Journal,
    run_id: &str,
    operation: &str,
    options: &RunOptions,
    observer: &dyn Observer,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, EngineError> {
    let envelope = Envelope {
        journal,
        run: run_id,
        operation,
    };
    refuse_rolled_back(&envelope.read()?, journal)?;
    let records = envelope.records(dag)?;
    let selected: BTreeSet<NodeId> = records
        .iter()
        .filter(|(_, r)| r.state != NodeState::Done)
        .map(|(id, _)| id.clone())
        .collect();
    let already_done = records.len() - selected.len();
    let waits_for = waits_for(&selected, |id| dag.dependencies(id));
    envelope.start(|run| run.status = RunStatus::Running)?;
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
    let mut summary = tally(dag, result);
    summary.status = envelope.finish(|run| run.status = summary.status)?;
    summary.groups = summarize(dag, &journal.nodes(run_id)?);
    Ok(summary)
}

/// A run being rolled back, or rolled back in part, is not applied again.
fn refuse_rolled_back(
    run: &RunRecord,
    journal: &trailhub_state::Journal,
) -> Result<(), EngineError> {
    if run.pending_rollback.is_some() {
        return Err(EngineError::Refused(format!(
            "run {} has a rollback that did not finish; continue it with `trailhub rollback {}` before anything else",
            run.id, run.id
        )));
    }
    let rolled_back: Vec<String> = journal
        .nodes(&run.id)?
        .into_iter()
        .filter(|(_, r)| {
            matches!(
                r.state,
                NodeState::RolledBack | NodeState::RollbackFailed | NodeState::RollingBack
            )
        })
        .map(|(id, _)| id.to_string())
        .collect();
    if rolled_back.is_empty() {
        return Ok(());
    }
    Err(EngineError::Refused(format!(
        "run {} was rolled back (in part: {}); start a new run with `trailhub apply` to apply it again",
        run.id,
        rolled_back
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Counts what the walk ended with, and the status the run ends in.
fn tally(dag: &Dag<Built>, result: WalkResult) -> RunSummary {
    let mut summary = RunSummary {
        status: RunStatus::Running,
        total: dag.len(),
        done: 0,
        changed: result.changed.len(),
        failed: BTreeMap::new(),
        blocked: result.blocked.clone(),
        not_run: 0,
        groups: Vec::new(),
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
    summary
}
