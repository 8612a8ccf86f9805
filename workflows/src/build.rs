//! The onboarding workflow's DAG (DESIGN.md, "The DAG of one run"), built from an inventory.
//!
//! Archive: `archive/identity → archive/bucket → archive/versioning`.
//! Per source S: `S/identity → S/bucket-check → S/versioning`, `S/bucket-check → S/role-stack`,
//! `{S/versioning, S/role-stack, archive/versioning} → S/replication`,
//! `{S/role-stack, archive/versioning} → archive/grant/S`, `{S/replication, archive/grant/S} → S/verify`.

use crate::inventory::Inventory;
use std::collections::HashMap;
use std::sync::Arc;
use trailhub_engine::{Built, Dag, EngineError, NodeSpec, Task};
use trailhub_steps::spec::Setting;
use trailhub_steps::tasks::{
    ArchiveBucket, BucketCheck, Grant, Identity, PolicyWriter, Replication, RoleStack, StepContext,
    Verify, Versioning,
};
use trailhub_steps::{Accounts, Connector};

/// The name runs of this workflow are journaled under.
pub const WORKFLOW_NAME: &str = "onboard";

/// The group of the archive's nodes.
pub const ARCHIVE: &str = "archive";

/// The step context for an inventory: its setting, and clients through `connector`.
pub fn step_context(inventory: &Inventory, connector: Connector) -> StepContext {
    let mut credentials = HashMap::new();
    credentials.insert(
        inventory.archive.account_id.clone(),
        inventory.archive.credentials.clone(),
    );
    for s in &inventory.sources {
        credentials.insert(s.account_id.clone(), s.credentials.clone());
    }
    StepContext::new(setting(inventory), Accounts::new(connector, credentials))
}

fn setting(inventory: &Inventory) -> Setting {
    Setting {
        region: inventory.region.clone(),
        partition: inventory.partition.clone(),
        archive: inventory.archive.clone(),
        policy: inventory.policy,
    }
}

/// An inventory made into a workflow.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// The inventory.
    pub inventory: Inventory,
    /// Only these source accounts (all when empty).
    pub only: Vec<String>,
}

impl Workflow {
    /// The workflow of every source of `inventory`, or only those of `only` when it is not empty.
    /// Unknown accounts in `only` are an error naming the known ones.
    pub fn new(inventory: Inventory, only: Vec<String>) -> Result<Self, String> {
        let unknown: Vec<&String> = only
            .iter()
            .filter(|a| !inventory.sources.iter().any(|s| &s.account_id == *a))
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "--account {} is not a source of the inventory; its sources are: {}",
                unknown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                inventory
                    .sources
                    .iter()
                    .map(|s| s.account_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(Workflow { inventory, only })
    }

    /// Builds the DAG, with tasks reaching AWS through `ctx`.
    pub fn dag(&self, ctx: &StepContext) -> Result<Dag<Built>, EngineError> {
        let mut dag = Dag::new();
        let mut add =
            |id: String, group: &str, step: &str, deps: Vec<String>, task: Arc<dyn Task>| {
                dag.add(NodeSpec {
                    id,
                    group: group.to_string(),
                    step: step.to_string(),
                    deps,
                    task,
                });
            };
        let archive = &self.inventory.archive;
        add(
            "archive/identity".into(),
            ARCHIVE,
            "identity",
            vec![],
            Arc::new(Identity::new(ctx.clone(), &archive.account_id)),
        );
        add(
            "archive/bucket".into(),
            ARCHIVE,
            "bucket",
            vec!["archive/identity".into()],
            Arc::new(ArchiveBucket::new(ctx.clone())),
        );
        add(
            "archive/versioning".into(),
            ARCHIVE,
            "versioning",
            vec!["archive/bucket".into()],
            Arc::new(Versioning::new(
                ctx.clone(),
                &archive.account_id,
                &archive.bucket,
            )),
        );
        let writer = PolicyWriter::new(ctx.clone());
        for s in self
            .inventory
            .sources
            .iter()
            .filter(|s| self.only.is_empty() || self.only.contains(&s.account_id))
        {
            let a = s.account_id.as_str();
            let id = |step: &str| format!("{a}/{step}");
            let role_node = id("role-stack");
            let grant_node = format!("archive/grant/{a}");
            add(
                id("identity"),
                a,
                "identity",
                vec![],
                Arc::new(Identity::new(ctx.clone(), a)),
            );
            add(
                id("bucket-check"),
                a,
                "bucket-check",
                vec![id("identity")],
                Arc::new(BucketCheck::new(ctx.clone(), s.clone())),
            );
            add(
                id("versioning"),
                a,
                "versioning",
                vec![id("bucket-check")],
                Arc::new(Versioning::new(ctx.clone(), a, &s.bucket)),
            );
            add(
                role_node.clone(),
                a,
                "role-stack",
                vec![id("bucket-check")],
                Arc::new(RoleStack::new(ctx.clone(), s.clone())),
            );
            add(
                id("replication"),
                a,
                "replication",
                vec![
                    id("versioning"),
                    role_node.clone(),
                    "archive/versioning".into(),
                ],
                Arc::new(Replication::new(ctx.clone(), s.clone(), &role_node)),
            );
            add(
                grant_node.clone(),
                a,
                "grant",
                vec![role_node.clone(), "archive/versioning".into()],
                Arc::new(Grant::new(
                    ctx.clone(),
                    s.clone(),
                    &role_node,
                    writer.clone(),
                )),
            );
            add(
                id("verify"),
                a,
                "verify",
                vec![id("replication"), grant_node],
                Arc::new(Verify::new(ctx.clone(), s.clone(), &role_node)),
            );
        }
        dag.seal()
    }
}
