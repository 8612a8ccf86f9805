//! Progress events the scheduler emits for display; the engine itself never prints.

use trailhub_state::{ErrorRecord, NodeId};

/// One thing that happened during `execute` or `rollback`, for an observer to display.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// The run starts with this many nodes to work on (others were done before).
    Started {
        /// Nodes in the graph (or in the rollback's scope).
        total: usize,
        /// Nodes already finished in earlier processes.
        already_done: usize,
    },
    /// An attempt of a node began.
    NodeStarted {
        /// The node (its group is the account).
        node: NodeId,
        /// The attempt number.
        attempt: u32,
    },
    /// An attempt failed and another will follow.
    NodeRetrying {
        /// The node (its group is the account).
        node: NodeId,
        /// The failed attempt's number.
        attempt: u32,
        /// The error.
        error: ErrorRecord,
        /// Delay before the next attempt.
        delay_ms: u64,
    },
    /// A node finished (applied, or rolled back during a rollback).
    NodeDone {
        /// The node (its group is the account).
        node: NodeId,
        /// Whether it changed anything (apply) — rollbacks report `true` when they undid something.
        changed: bool,
        /// What the task said about it (a rollback's kept resource, for instance).
        note: Option<String>,
    },
    /// A node failed for good.
    NodeFailed {
        /// The node (its group is the account).
        node: NodeId,
        /// The error.
        error: ErrorRecord,
    },
    /// A node will not run because a dependency failed.
    NodeBlocked {
        /// The node (its group is the account).
        node: NodeId,
        /// The failed dependency, when one can be named.
        by: Option<NodeId>,
    },
    /// Stopping was requested: running nodes finish, no new one starts.
    Stopping,
}

/// Receives progress events, synchronously, from the scheduler's single thread of control.
pub trait Observer: Send + Sync {
    /// Called for every event, in order.
    fn event(&self, event: &Progress);
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullObserver;

impl Observer for NullObserver {
    fn event(&self, _event: &Progress) {}
}
