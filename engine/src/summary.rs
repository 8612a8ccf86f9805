//! One summary per group (account) of a run, computed from the journal's node records alone, so
//! that every view of a run (apply's table, `status`, `report`, JSON) says the same thing.

use crate::dag::Shape;
use serde::Serialize;
use std::collections::BTreeMap;
use trailhub_state::{ErrorRecord, NodeId, NodeRecord, NodeState};

/// How a group stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupResult {
    /// Every node is done.
    Succeeded,
    /// A node failed (or its rollback did).
    Failed,
    /// Every node with effects was rolled back, none is done.
    RolledBack,
    /// Some nodes were rolled back, others are still done (`rollback --to`).
    PartlyRolledBack,
    /// Nothing failed here, but a node waits for one that failed elsewhere.
    Blocked,
    /// Neither done nor failed: the run was stopped, or has not reached it.
    NotFinished,
}

impl GroupResult {
    /// The name shown in output.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupResult::Succeeded => "succeeded",
            GroupResult::Failed => "failed",
            GroupResult::RolledBack => "rolled-back",
            GroupResult::PartlyRolledBack => "partly-rolled-back",
            GroupResult::Blocked => "blocked",
            GroupResult::NotFinished => "not finished",
        }
    }
}

/// One group's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupSummary {
    /// The group (account, or `archive`).
    pub group: String,
    /// How it stands.
    pub result: GroupResult,
    /// Its nodes.
    pub steps: usize,
    /// Its nodes done.
    pub done: usize,
    /// Its nodes whose apply changed something.
    pub changed: usize,
    /// Apply attempts over all its nodes.
    pub attempts: u32,
    /// The first node (in dependency order) that failed, if any.
    pub failed_step: Option<NodeId>,
    /// That node's error.
    pub error: Option<ErrorRecord>,
}

/// The summary of every group of `shape`, in the shape's group order (the archive, then the
/// accounts as the inventory lists them). Nodes missing from `records` are pending.
pub fn summarize(shape: &Shape, records: &BTreeMap<NodeId, NodeRecord>) -> Vec<GroupSummary> {
    let pending = NodeRecord::pending();
    let order = shape.topological();
    shape
        .groups()
        .into_iter()
        .map(|group| {
            let nodes: Vec<(&NodeId, &NodeRecord)> = order
                .iter()
                .filter(|id| id.group() == group)
                .map(|id| (*id, records.get(*id).unwrap_or(&pending)))
                .collect();
            summarize_group(group, &nodes)
        })
        .collect()
}

fn summarize_group(group: &str, nodes: &[(&NodeId, &NodeRecord)]) -> GroupSummary {
    let count = |states: &[NodeState]| {
        nodes
            .iter()
            .filter(|(_, r)| states.contains(&r.state))
            .count()
    };
    let done = count(&[NodeState::Done]);
    let rolled = count(&[NodeState::RolledBack]);
    let failure = nodes
        .iter()
        .find(|(_, r)| matches!(r.state, NodeState::Failed | NodeState::RollbackFailed));
    let result = if failure.is_some() {
        GroupResult::Failed
    } else if rolled > 0 && done == 0 {
        GroupResult::RolledBack
    } else if rolled > 0 {
        GroupResult::PartlyRolledBack
    } else if done == nodes.len() {
        GroupResult::Succeeded
    } else if count(&[NodeState::Blocked]) > 0 {
        GroupResult::Blocked
    } else {
        GroupResult::NotFinished
    };
    GroupSummary {
        group: group.to_string(),
        result,
        steps: nodes.len(),
        done,
        changed: nodes
            .iter()
            .filter(|(_, r)| r.state == NodeState::Done && r.changed)
            .count(),
        attempts: nodes.iter().map(|(_, r)| r.attempts).sum(),
        failed_step: failure.map(|(id, _)| (*id).clone()),
        error: failure.and_then(|(_, r)| r.last_error.clone()),
    }
}
