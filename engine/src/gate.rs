//! The group gate: how many groups (accounts) may be in progress at once, as many as the
//! walk's concurrency.
//!
//! Without it every group's first node is started at once and, with more groups than permits,
//! each group's later nodes queue behind the other groups' first ones: hundreds of accounts all
//! half-done at the same time, each holding its clients (memory grows with the accounts, not
//! the concurrency). A node of a group that has not started waits while `limit` groups are in
//! progress; a group whose nodes another group waits for (the archive's) is never held back, so
//! a started group always has what it waits for.

use std::collections::{BTreeSet, HashMap};
use trailhub_state::NodeId;

pub(crate) struct GroupGate {
    limit: usize,
    /// Nodes of each group not yet finished (done, failed, blocked, rolled back).
    remaining: HashMap<String, usize>,
    /// Groups that other groups' nodes wait for.
    exempt: BTreeSet<String>,
    started: BTreeSet<String>,
    active: usize,
}

impl GroupGate {
    pub(crate) fn new(
        selected: &BTreeSet<NodeId>,
        waits_for: &HashMap<NodeId, BTreeSet<NodeId>>,
        limit: usize,
    ) -> Self {
        let mut remaining: HashMap<String, usize> = HashMap::new();
        let mut exempt = BTreeSet::new();
        for node in selected {
            let g = node.group();
            *remaining.entry(g.to_string()).or_default() += 1;
            for w in waits_for.get(node).into_iter().flatten() {
                if w.group() != g {
                    exempt.insert(w.group().to_string());
                }
            }
        }
        GroupGate {
            limit: limit.max(1),
            remaining,
            exempt,
            started: BTreeSet::new(),
            active: 0,
        }
    }

    /// Whether a node of `group` may start now; counts the group as in progress if so.
    pub(crate) fn admit(&mut self, group: &str) -> bool {
        if self.started.contains(group) || self.exempt.contains(group) {
            return true;
        }
        if !self.has_room() {
            return false;
        }
        self.started.insert(group.to_string());
        self.active += 1;
        true
    }

    /// Whether a group that has not started may start now.
    pub(crate) fn has_room(&self) -> bool {
        self.active < self.limit
    }

    /// A node of `group` finished for good.
    pub(crate) fn finished(&mut self, group: &str) {
        if let Some(n) = self.remaining.get_mut(group) {
            *n = n.saturating_sub(1);
            if *n == 0 && self.started.contains(group) {
                self.active -= 1;
            }
        }
    }
}
