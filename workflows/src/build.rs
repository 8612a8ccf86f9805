//! The onboarding workflow's DAG (DESIGN.md, "The DAG of one run"), built from an inventory.
//!
//! Archive: `archive/identity → archive/bucket → {archive/versioning, archive/retention,
//! archive/lifecycle}` (the default Object Lock retention and trailhub's lifecycle rule, each
//! doing nothing unless the inventory sets it; the grants wait for versioning only).
//! Per source S: `S/identity → S/bucket-check → S/versioning`, `S/bucket-check → S/role-stack`,
//! `{S/role-stack, archive/versioning} → archive/grant/S`, `{S/role-stack, archive/identity} →
//! archive/key/S` (the archive KMS key admits the role, for SSE-KMS logs; nothing otherwise),
//! `{S/versioning, S/role-stack, archive/grant/S, archive/key/S} → S/replication` (replication
//! starts only once the archive admits the role: an object S3 fails to replicate stays FAILED
//! and live replication never retries it), `{S/replication, archive/grant/S} → S/verify`.
//!
//! `trailhub backfill` runs another layout of the same steps: per source S, `S/identity →
//! S/bucket-check → S/role-stack → S/backfill` (the Batch Replication job).
//!
//! The layout ([`Workflow::layout`]) says which node does which step after which; the graph a
//! run journals and the DAG it executes are both made from it, so they cannot disagree.

use crate::inventory::Inventory;
use std::collections::HashMap;
use trailhub_engine::{Built, Dag, EngineError, GraphRecord, NodeId, NodeSpec, Shape};
use trailhub_state::RunRecord;
use trailhub_steps::spec::{Setting, SourceSpec};
use trailhub_steps::tasks::{
    ArchiveBucket, ArchiveKey, ArchiveLifecycle, ArchiveRetention, Backfill, BackfillNodes,
    BackfillOptions, BucketCheck, Grant, Identity, KeyGrant, PolicyWriter, Replication, RoleStack,
    SourceNodes, StepContext, Verify, Versioning,
};
use trailhub_steps::{Accounts, Connector};

/// The name runs of this workflow are journaled under.
pub const WORKFLOW_NAME: &str = "onboard";

/// The name `trailhub backfill` runs are journaled under.
pub const BACKFILL_WORKFLOW: &str = "backfill";

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
    let ctx = StepContext::new(setting(inventory), Accounts::new(connector, credentials));
    for s in &inventory.sources {
        if let Some(region) = &s.region {
            ctx.pin_region(&s.bucket, region);
        }
    }
    ctx
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
    /// A `trailhub backfill` run, with its options, instead of onboarding.
    pub backfill: Option<BackfillOptions>,
}

/// What a node of the workflow does.
#[derive(Debug, Clone, Copy)]
pub enum StepKind<'a> {
    /// An account's identity check (the archive's or a source's).
    Identity(&'a str),
    /// The archive bucket.
    ArchiveBucket,
    /// The archive bucket's versioning.
    ArchiveVersioning,
    /// The archive bucket's default Object Lock retention.
    ArchiveRetention,
    /// trailhub's lifecycle rule on the archive bucket.
    ArchiveLifecycle,
    /// A source's preconditions.
    BucketCheck(&'a SourceSpec),
    /// A source bucket's versioning.
    SourceVersioning(&'a SourceSpec),
    /// A source's role stack.
    RoleStack(&'a SourceSpec),
    /// A source's replication rule.
    Replication(&'a SourceSpec),
    /// A source's grant in the archive policy.
    Grant(&'a SourceSpec),
    /// A source's grant on the archive KMS key (SSE-KMS logs).
    KeyGrant(&'a SourceSpec),
    /// The read-back of a source.
    Verify(&'a SourceSpec),
    /// A source's Batch Replication job (`trailhub backfill`).
    Backfill(&'a SourceSpec, BackfillOptions),
}

/// One node of the layout: its id, what it waits for, what it does.
#[derive(Debug, Clone)]
pub struct LaidOut<'a> {
    /// The node.
    pub id: NodeId,
    /// What it waits for.
    pub deps: Vec<NodeId>,
    /// What it does.
    pub step: StepKind<'a>,
}

fn archive(step: &str) -> NodeId {
    NodeId::new(ARCHIVE, step)
}

impl Workflow {
    /// The workflow of every source of `inventory`, or only those of `only` when it is not empty.
    /// Unknown accounts in `only` are an error naming the known ones.
    pub fn new(inventory: Inventory, only: Vec<String>) -> Result<Self, String> {
        let known = |a: &String| inventory.sources.iter().any(|s| &s.account_id == a);
        let unknown: Vec<&str> = only
            .iter()
            .filter(|a| !known(a))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            let sources: Vec<&str> = inventory
                .sources
                .iter()
                .map(|s| s.account_id.as_str())
                .collect();
            return Err(format!(
                "--account {} is not a source of the inventory; its sources are: {}",
                unknown.join(", "),
                sources.join(", ")
            ));
        }
        Ok(Workflow {
            inventory,
            only,
            backfill: None,
        })
    }

    /// The same sources, backfilled instead of onboarded.
    pub fn backfilling(mut self, options: BackfillOptions) -> Self {
        self.backfill = Some(options);
        self
    }

    /// The name its runs are journaled under.
    pub fn name(&self) -> &'static str {
        match self.backfill {
            Some(_) => BACKFILL_WORKFLOW,
            None => WORKFLOW_NAME,
        }
    }

    /// The workflow a run executes: its frozen inventory and its account filter.
    pub fn of_run(run: &RunRecord) -> Result<Self, String> {
        let origin = format!("frozen in run {}", run.id);
        let inventory = crate::parse(&run.definition, &origin).map_err(|e| e.to_string())?;
        let workflow = Self::new(inventory, run_accounts(run))?;
        if run.workflow != BACKFILL_WORKFLOW {
            return Ok(workflow);
        }
        let options = serde_json::from_value(run.options["backfill"].clone())
            .map_err(|e| format!("run {}: its backfill options are unreadable ({e})", run.id))?;
        Ok(workflow.backfilling(options))
    }

    /// The sources the workflow onboards, in inventory order.
    pub fn sources(&self) -> impl Iterator<Item = &SourceSpec> {
        self.inventory
            .sources
            .iter()
            .filter(|s| self.only.is_empty() || self.only.contains(&s.account_id))
    }

    /// Every node, in the order it is added: the archive's, then each source's (a backfill has
    /// no archive node).
    pub fn layout(&self) -> Vec<LaidOut<'_>> {
        if let Some(options) = self.backfill {
            return self
                .sources()
                .flat_map(|s| backfill_layout(s, options))
                .collect();
        }
        let mut out = vec![
            node(
                archive("identity"),
                vec![],
                StepKind::Identity(&self.inventory.archive.account_id),
            ),
            node(
                archive("bucket"),
                vec![archive("identity")],
                StepKind::ArchiveBucket,
            ),
            node(
                archive("versioning"),
                vec![archive("bucket")],
                StepKind::ArchiveVersioning,
            ),
            node(
                archive("retention"),
                vec![archive("bucket")],
                StepKind::ArchiveRetention,
            ),
            node(
                archive("lifecycle"),
                vec![archive("bucket")],
                StepKind::ArchiveLifecycle,
            ),
        ];
        for s in self.sources() {
            out.extend(source_layout(s));
        }
        out
    }

    /// The graph a run of this workflow journals: its nodes and dependencies, validated.
    pub fn graph(&self) -> Result<GraphRecord, EngineError> {
        let layout = self.layout();
        let record = GraphRecord {
            nodes: layout.iter().map(|n| n.id.clone()).collect(),
            edges: layout
                .iter()
                .flat_map(|n| n.deps.iter().map(|d| (d.clone(), n.id.clone())))
                .collect(),
        };
        Ok(Shape::from_record(&record)?.record())
    }

    /// Builds the DAG, with tasks reaching AWS through `ctx`.
    pub fn dag(&self, ctx: &StepContext) -> Result<Dag<Built>, EngineError> {
        let writer = PolicyWriter::new(ctx.clone());
        let key = ArchiveKey::new(ctx.clone());
        let mut dag = Dag::new();
        for n in self.layout() {
            let c = ctx.clone();
            let (id, deps) = (n.id, n.deps);
            let spec = match n.step {
                StepKind::Identity(account) => NodeSpec::new(id, deps, Identity::new(c, account)),
                StepKind::ArchiveBucket => NodeSpec::new(id, deps, ArchiveBucket::new(c)),
                StepKind::ArchiveVersioning => {
                    let a = &self.inventory.archive;
                    NodeSpec::new(id, deps, Versioning::new(c, &a.account_id, &a.bucket))
                }
                StepKind::ArchiveRetention => NodeSpec::new(id, deps, ArchiveRetention::new(c)),
                StepKind::ArchiveLifecycle => NodeSpec::new(id, deps, ArchiveLifecycle::new(c)),
                StepKind::BucketCheck(s) => NodeSpec::new(id, deps, BucketCheck::new(c, s.clone())),
                StepKind::SourceVersioning(s) => {
                    NodeSpec::new(id, deps, Versioning::new(c, &s.account_id, &s.bucket))
                }
                StepKind::RoleStack(s) => {
                    NodeSpec::new(id, deps, RoleStack::new(c, s.clone(), source_nodes(s)))
                }
                StepKind::KeyGrant(s) => NodeSpec::new(
                    id,
                    deps,
                    KeyGrant::new(c, s.clone(), source_nodes(s), key.clone()),
                ),
                StepKind::Replication(s) => NodeSpec::new(
                    id,
                    deps,
                    Replication::new(c, s.clone(), source_nodes(s), key.clone()),
                ),
                StepKind::Grant(s) => NodeSpec::new(
                    id,
                    deps,
                    Grant::new(c, s.clone(), source_nodes(s), writer.clone()),
                ),
                StepKind::Verify(s) => {
                    NodeSpec::new(id, deps, Verify::new(c, s.clone(), source_nodes(s)))
                }
                StepKind::Backfill(s, options) => {
                    let nodes = BackfillNodes {
                        bucket_check: source_node(s, "bucket-check"),
                        role_stack: source_node(s, "role-stack"),
                    };
                    NodeSpec::new(id, deps, Backfill::new(c, s.clone(), nodes, options))
                }
            };
            dag.add(spec);
        }
        dag.seal()
    }
}

fn node(id: NodeId, deps: Vec<NodeId>, step: StepKind<'_>) -> LaidOut<'_> {
    LaidOut { id, deps, step }
}

fn source_node(s: &SourceSpec, step: &str) -> NodeId {
    NodeId::new(&s.account_id, step)
}

fn grant_node(s: &SourceSpec) -> NodeId {
    NodeId::hosted(ARCHIVE, "grant", &s.account_id)
}

fn key_node(s: &SourceSpec) -> NodeId {
    NodeId::hosted(ARCHIVE, "key", &s.account_id)
}

/// The nodes of `s` whose outputs its later steps read.
fn source_nodes(s: &SourceSpec) -> SourceNodes {
    SourceNodes {
        bucket_check: source_node(s, "bucket-check"),
        versioning: source_node(s, "versioning"),
        role_stack: source_node(s, "role-stack"),
        key: key_node(s),
        grant: grant_node(s),
        replication: source_node(s, "replication"),
    }
}

/// One source's backfill: its checks and its stack (the stack makes the job's role, and is
/// updated to a template that does), then the job.
fn backfill_layout(s: &SourceSpec, options: BackfillOptions) -> Vec<LaidOut<'_>> {
    let id = |step: &str| source_node(s, step);
    let mut nodes = checks_and_stack(s);
    nodes.push(node(
        id("backfill"),
        vec![id("bucket-check"), id("role-stack")],
        StepKind::Backfill(s, options),
    ));
    nodes
}

/// What every layout does first in a source account: its identity, its bucket and trails, its
/// role stack.
fn checks_and_stack(s: &SourceSpec) -> Vec<LaidOut<'_>> {
    let id = |step: &str| source_node(s, step);
    vec![
        node(id("identity"), vec![], StepKind::Identity(&s.account_id)),
        node(
            id("bucket-check"),
            vec![id("identity")],
            StepKind::BucketCheck(s),
        ),
        node(
            id("role-stack"),
            vec![id("bucket-check")],
            StepKind::RoleStack(s),
        ),
    ]
}

/// One source's nodes.
fn source_layout(s: &SourceSpec) -> Vec<LaidOut<'_>> {
    let id = |step: &str| source_node(s, step);
    let mut nodes = checks_and_stack(s);
    nodes.extend([
        node(
            id("versioning"),
            vec![id("bucket-check")],
            StepKind::SourceVersioning(s),
        ),
        node(
            grant_node(s),
            vec![id("role-stack"), archive("versioning")],
            StepKind::Grant(s),
        ),
        node(
            key_node(s),
            vec![id("role-stack"), archive("identity")],
            StepKind::KeyGrant(s),
        ),
        node(
            id("replication"),
            vec![
                id("versioning"),
                id("role-stack"),
                grant_node(s),
                key_node(s),
            ],
            StepKind::Replication(s),
        ),
        node(
            id("verify"),
            vec![id("replication"), grant_node(s)],
            StepKind::Verify(s),
        ),
    ]);
    nodes
}

/// The account filter a run was created with (`apply --account`).
fn run_accounts(run: &RunRecord) -> Vec<String> {
    run.options["accounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailhub_state::{RunRecord, RunStatus};

    fn inventory() -> Inventory {
        crate::parse(
            "region = \"ap-northeast-1\"\n[archive]\naccount_id = \"111111111111\"\n\
             [[source]]\naccount_id = \"222222222222\"\n[[source]]\naccount_id = \"333333333333\"\n",
            "test",
        )
        .expect("a valid inventory")
    }

    #[test]
    fn a_backfill_run_is_each_sources_checks_stack_and_job_and_is_rebuilt_from_its_record() {
        let options = BackfillOptions {
            include_failed: true,
            confirmed: false,
            wait: true,
        };
        let workflow = Workflow::new(inventory(), vec!["333333333333".into()])
            .expect("known account")
            .backfilling(options);
        assert_eq!(workflow.name(), BACKFILL_WORKFLOW);
        let ids: Vec<String> = workflow.layout().iter().map(|n| n.id.to_string()).collect();
        assert_eq!(
            ids,
            [
                "333333333333/identity",
                "333333333333/bucket-check",
                "333333333333/role-stack",
                "333333333333/backfill"
            ],
            "no archive node, only the chosen account"
        );
        let graph = workflow.graph().expect("a valid graph");
        assert!(graph.edges.contains(&(
            NodeId::new("333333333333", "role-stack"),
            NodeId::new("333333333333", "backfill")
        )));
        let run = RunRecord {
            id: "r".into(),
            sequence: 1,
            created_at_ms: 0,
            updated_at_ms: 0,
            workflow: BACKFILL_WORKFLOW.into(),
            definition: workflow.inventory.text.clone(),
            source: None,
            status: RunStatus::Running,
            options: serde_json::json!({ "accounts": ["333333333333"], "backfill": options }),
            pending_rollback: None,
            graph: None,
        };
        let again = Workflow::of_run(&run).expect("rebuilt");
        assert_eq!(again.backfill, Some(options));
        assert_eq!(again.only, ["333333333333"]);
        assert_eq!(
            Workflow::new(inventory(), vec![]).expect("all").name(),
            WORKFLOW_NAME
        );
    }
}
