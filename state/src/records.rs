//! The journal's record types: runs, node records and events, serialized as JSON values.
//!
//! Adding an optional field (with `#[serde(default)]`) keeps the format version; renaming or
//! removing one, or changing a meaning, bumps [`crate::FORMAT_VERSION`].

use crate::ids::{GraphRecord, NodeId};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch: the journal's one clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The status of a run as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Created, not started yet.
    Pending,
    /// A process is applying it (or was killed while doing so).
    Running,
    /// Every node is done.
    Succeeded,
    /// Some nodes failed or were blocked; every other node finished.
    PartiallyFailed,
    /// No node could finish.
    Failed,
    /// Stopped on request before every node finished; `resume` continues it.
    Interrupted,
    /// A rollback is under way (or was killed); `rollback` or `resume` continues it.
    RollingBack,
    /// The requested rollback finished.
    RolledBack,
    /// Some rollback steps failed; the rest were undone.
    RollbackFailed,
}

impl RunStatus {
    /// The kebab-case name used in output and in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::PartiallyFailed => "partially-failed",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::RollingBack => "rolling-back",
            RunStatus::RolledBack => "rolled-back",
            RunStatus::RollbackFailed => "rollback-failed",
        }
    }
}

/// One run: created by `apply`, continued by `resume`, undone by `rollback`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Sortable, unique id (creation time and a sequence number).
    pub id: String,
    /// The run's place among the runs of its journal: 1 for the first run, each new run one
    /// more. Runs are ordered by it, never by a time: a clock set back does not change which
    /// run is the latest. Runs journaled before this field existed read as 0 here, and the
    /// journal fills it in from their id ([`RunRecord::sequence_in_id`]) when it reads them.
    #[serde(default)]
    pub sequence: u64,
    /// When `apply` created it.
    pub created_at_ms: u64,
    /// Last status change.
    pub updated_at_ms: u64,
    /// The workflow's name (`onboard`).
    pub workflow: String,
    /// The frozen definition the run executes (the inventory, as read at `apply`).
    pub definition: String,
    /// Where the definition was read from, for messages only.
    #[serde(default)]
    pub source: Option<String>,
    /// The run's status.
    pub status: RunStatus,
    /// Options the run was started with (concurrency, account filter…), as the CLI gave them.
    #[serde(default)]
    pub options: Value,
    /// The scope of a rollback that has not finished, so that `resume` can continue it.
    #[serde(default)]
    pub pending_rollback: Option<Value>,
    /// The run's graph, journaled when the run is created (format 2; filled in by the
    /// migration for runs of format 1).
    #[serde(default)]
    pub graph: Option<GraphRecord>,
}

impl RunRecord {
    /// The sequence number an id made by the journal ends with (`20261128T101500Z-0007`: 7),
    /// if it ends with one. Ids have always carried the run's sequence, so this is the sequence
    /// of a run journaled without the field.
    pub fn sequence_in_id(id: &str) -> Option<u64> {
        let (_, suffix) = id.rsplit_once('-')?;
        if suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        suffix.parse().ok()
    }
}

/// The state of one node of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeState {
    /// Not started.
    Pending,
    /// An attempt started and did not report back (in flight, or its process died).
    Running,
    /// Applied; its outputs and undo record are journaled.
    Done,
    /// Failed with a fatal error, or retries ran out.
    Failed,
    /// Not run because a dependency failed.
    Blocked,
    /// Its rollback started and did not report back.
    RollingBack,
    /// Its effects were undone.
    RolledBack,
    /// Its rollback failed.
    RollbackFailed,
}

impl NodeState {
    /// The kebab-case name used in output and in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Pending => "pending",
            NodeState::Running => "running",
            NodeState::Done => "done",
            NodeState::Failed => "failed",
            NodeState::Blocked => "blocked",
            NodeState::RollingBack => "rolling-back",
            NodeState::RolledBack => "rolled-back",
            NodeState::RollbackFailed => "rollback-failed",
        }
    }
}

/// An error as journaled: no credentials, only what an operator needs to act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// The message, with its causes.
    pub message: String,
    /// The AWS error code, when there is one.
    #[serde(default)]
    pub code: Option<String>,
    /// Whether the engine classified it retryable.
    pub retryable: bool,
    /// What to do about it, when the task knows.
    #[serde(default)]
    pub hint: Option<String>,
}

/// Everything the journal knows of one node of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Current state.
    pub state: NodeState,
    /// Apply attempts made, over all processes.
    pub attempts: u32,
    /// The first undo record written before a mutation (write-ahead); never overwritten.
    #[serde(default)]
    pub undo: Option<Value>,
    /// Outputs of the successful apply.
    #[serde(default)]
    pub outputs: Option<Value>,
    /// The last error, if any.
    #[serde(default)]
    pub last_error: Option<ErrorRecord>,
    /// Start of the first attempt.
    #[serde(default)]
    pub started_at_ms: Option<u64>,
    /// When it reached its current final state.
    #[serde(default)]
    pub finished_at_ms: Option<u64>,
    /// Rollback attempts made.
    #[serde(default)]
    pub rollback_attempts: u32,
    /// What the rollback reported (kept resources and why, for instance).
    #[serde(default)]
    pub rollback_note: Option<String>,
    /// Whether the apply that finished the node changed anything (format 2; `false` in
    /// records of format 1).
    #[serde(default)]
    pub changed: bool,
}

impl NodeRecord {
    /// A node that has not started.
    pub fn pending() -> Self {
        NodeRecord {
            state: NodeState::Pending,
            attempts: 0,
            undo: None,
            outputs: None,
            last_error: None,
            started_at_ms: None,
            finished_at_ms: None,
            rollback_attempts: 0,
            rollback_note: None,
            changed: false,
        }
    }
}

impl Default for NodeRecord {
    fn default() -> Self {
        Self::pending()
    }
}

/// One entry of a run's append-only history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the journal: strictly increasing, also across processes.
    pub seq: u64,
    /// When it was journaled.
    pub at_ms: u64,
    /// The node concerned, if any.
    #[serde(default)]
    pub node: Option<NodeId>,
    /// What happened.
    pub kind: EventKind,
}

/// What an event records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum EventKind {
    /// `apply` created the run.
    RunCreated,
    /// A process started working on the run (`apply`, `resume` or `rollback`).
    RunStarted {
        /// The command.
        operation: String,
        /// The process id, for post-mortems.
        pid: u32,
    },
    /// The process stopped working on the run.
    RunFinished {
        /// The command.
        operation: String,
        /// The status the run was left in.
        status: RunStatus,
    },
    /// A node attempt began.
    AttemptStarted {
        /// 1-based attempt number over the node's life.
        attempt: u32,
    },
    /// A node attempt failed.
    AttemptFailed {
        /// The attempt number.
        attempt: u32,
        /// The error.
        error: ErrorRecord,
        /// Delay before the next attempt, when one follows.
        #[serde(default)]
        retry_in_ms: Option<u64>,
    },
    /// The node's undo record was journaled (before its first mutation).
    UndoRecorded,
    /// The node finished.
    NodeDone {
        /// Whether the apply changed anything.
        changed: bool,
    },
    /// The node failed for good.
    NodeFailed {
        /// The error.
        error: ErrorRecord,
    },
    /// The node was not run because a dependency failed.
    NodeBlocked {
        /// The failed dependency (`None` when none could be named; format 1 wrote `""`).
        #[serde(default, deserialize_with = "empty_as_none")]
        by: Option<NodeId>,
    },
    /// An API call made by the node (mutating ones always; read-only ones when useful).
    Call {
        /// Service, e.g. `s3`.
        service: String,
        /// Operation, e.g. `PutBucketPolicy`.
        operation: String,
        /// Whether it changes anything.
        mutating: bool,
        /// The resource or a short description.
        #[serde(default)]
        detail: String,
    },
    /// A rollback of the node began.
    RollbackStarted {
        /// 1-based rollback attempt number.
        attempt: u32,
    },
    /// The node's effects were undone.
    RolledBack {
        /// What the rollback reported, e.g. a resource kept and why.
        #[serde(default)]
        note: Option<String>,
    },
    /// The node's rollback failed.
    RollbackFailed {
        /// The error.
        error: ErrorRecord,
    },
    /// One API call's attempt failed transiently and the SDK tried it again.
    CallRetried {
        /// Service, e.g. `s3`.
        service: String,
        /// Operation, e.g. `PutBucketPolicy`.
        operation: String,
        /// The attempt being made now (2 for the first retry).
        attempt: u32,
        /// Why the previous attempt failed (`HTTP 503`, `connection error`).
        reason: String,
    },
    /// A free-form note (frozen-inventory notice, for example).
    Note {
        /// The text.
        message: String,
    },
}

/// An optional node id where format 1 wrote an empty string for "none".
fn empty_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NodeId>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(text) if text.is_empty() => Ok(None),
        Some(text) => text.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_is_the_suffix_of_the_ids_the_journal_makes() {
        assert_eq!(RunRecord::sequence_in_id("20261128T101500Z-0007"), Some(7));
        assert_eq!(
            RunRecord::sequence_in_id("20261128T101500Z-12345"),
            Some(12345)
        );
        for id in ["nope", "20261128T101500Z-", "20261128T101500Z-00a1", "-+1"] {
            assert_eq!(RunRecord::sequence_in_id(id), None, "{id}");
        }
    }

    #[test]
    fn a_run_journaled_without_a_sequence_still_reads() {
        let json = serde_json::json!({
            "id": "20261128T101500Z-0003", "created_at_ms": 1, "updated_at_ms": 1,
            "workflow": "onboard", "definition": "", "status": "succeeded",
        });
        let run: RunRecord = serde_json::from_value(json).expect("a run of format 2");
        assert_eq!(run.sequence, 0, "left for the journal to fill in");
    }
}
