//! Node ids, and the shape of a run's graph as journaled: the one place where an id's text is
//! made and parsed.
//!
//! A node is a step of a group (an account, or the archive): `group/step`. A step of one group
//! that acts on another group's resource is written `host/step/group`; the archive's grant of
//! account S is `archive/grant/S`, a node of group S (rolled back with S, gated with S) on the
//! archive's bucket policy. The text is the journal's key, the events' reference and what
//! output shows, so it never changes for a given node.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A node's id: its group and step (and, for a step on another group's resource, that host).
///
/// Ordered, compared and hashed by its text, so that sorted ids read as they always did.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId {
    // First: derived ordering is the text's; the other fields follow from it.
    text: String,
    group: String,
    step: String,
    host: Option<String>,
}

impl NodeId {
    /// Step `step` of group `group`: `group/step`.
    ///
    /// # Panics
    /// If either part is empty or holds a `/` (ids are made from names the workflow controls).
    pub fn new(group: &str, step: &str) -> NodeId {
        Self::build(None, group, step).expect("a group and step should be non-empty, without '/'")
    }

    /// Step `step` of group `group` acting on group `host`'s resource: `host/step/group`.
    ///
    /// # Panics
    /// As [`NodeId::new`].
    pub fn hosted(host: &str, step: &str, group: &str) -> NodeId {
        Self::build(Some(host), group, step)
            .expect("a host, group and step should be non-empty, without '/'")
    }

    fn build(host: Option<&str>, group: &str, step: &str) -> Result<NodeId, String> {
        let parts = [host.unwrap_or("-"), group, step];
        if let Some(bad) = parts.iter().find(|p| p.is_empty() || p.contains('/')) {
            return Err(format!("`{bad}` cannot be part of a node id"));
        }
        let text = match host {
            Some(h) => format!("{h}/{step}/{group}"),
            None => format!("{group}/{step}"),
        };
        Ok(NodeId {
            text,
            group: group.to_string(),
            step: step.to_string(),
            host: host.map(str::to_string),
        })
    }

    /// The group (account) the node belongs to.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The step's name, shared by the same step of every group.
    pub fn step(&self) -> &str {
        &self.step
    }

    /// The group whose resource the step acts on, when it is not its own.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for NodeId {
    type Err = String;

    /// Parses `group/step` or `host/step/group`.
    fn from_str(text: &str) -> Result<NodeId, String> {
        let parts: Vec<&str> = text.split('/').collect();
        let built = match parts.as_slice() {
            [group, step] => Self::build(None, group, step),
            [host, step, group] => Self::build(Some(host), group, step),
            _ => Err("it is neither `group/step` nor `host/step/group`".to_string()),
        };
        built.map_err(|why| format!("`{text}` is not a node id: {why}"))
    }
}

impl TryFrom<String> for NodeId {
    type Error = String;

    fn try_from(text: String) -> Result<NodeId, String> {
        text.parse()
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> String {
        id.text
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

/// A run's graph as journaled when the run is created: every node and every dependency, so
/// that commands that only read the journal (status, graph, report) need neither the inventory
/// nor an AWS client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphRecord {
    /// Every node, sorted.
    pub nodes: Vec<NodeId>,
    /// Every dependency `(dependency, dependent)`, sorted.
    pub edges: Vec<(NodeId, NodeId)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_their_text() {
        let plain = NodeId::new("222222222222", "role-stack");
        assert_eq!(plain.as_str(), "222222222222/role-stack");
        let grant = NodeId::hosted("archive", "grant", "222222222222");
        assert_eq!(grant.as_str(), "archive/grant/222222222222");
        assert_eq!(grant.group(), "222222222222");
        assert_eq!(grant.step(), "grant");
        assert_eq!(grant.host(), Some("archive"));
        for id in [plain, grant] {
            assert_eq!(id.as_str().parse::<NodeId>(), Ok(id.clone()));
            let json = serde_json::to_string(&id).expect("serializes");
            assert_eq!(json, format!("\"{id}\""));
            assert_eq!(serde_json::from_str::<NodeId>(&json).expect("parses"), id);
        }
    }

    #[test]
    fn malformed_ids_are_refused_with_the_reason() {
        for bad in ["", "a", "a/", "/b", "a/b/c/d", "a//c"] {
            let err = bad.parse::<NodeId>().expect_err(bad);
            assert!(err.contains("is not a node id"), "{err}");
        }
    }

    #[test]
    fn ids_sort_by_their_text() {
        let mut ids = [
            NodeId::new("archive", "versioning"),
            NodeId::hosted("archive", "grant", "2"),
            NodeId::new("archive", "bucket"),
        ];
        ids.sort();
        let text: Vec<&str> = ids.iter().map(NodeId::as_str).collect();
        assert_eq!(
            text,
            ["archive/bucket", "archive/grant/2", "archive/versioning"]
        );
    }
}
