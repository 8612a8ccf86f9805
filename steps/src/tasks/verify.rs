//! `S/verify`: reads back what the steps changed for one source account, and fails, listing
//! every difference, if anything is not as the article says. Read-only.
//!
//! What a step read and found as wanted in this run is not read again: only the resources whose
//! step changed something are (each resource is read once per run unless the run changed it).

use super::key_grant::KeyGrantOutput;
use super::role_stack::RoleStackOutput;
use super::{SourceNodes, StepContext};
use crate::checks::{Known, Reads, source_findings};
use crate::logs::SourceLogs;
use crate::spec::SourceSpec;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use trailhub_engine::{Applied, ApplyCtx, Plan, PlanAction, PlanCtx, RolledBack, Task, TaskError};

/// Checks one source account's configuration.
#[derive(Debug)]
pub struct Verify {
    ctx: StepContext,
    source: SourceSpec,
    nodes: SourceNodes,
}

/// The account was checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyOutput {
    /// Always `true`.
    pub checked: bool,
}

impl Verify {
    /// The check of `source`, reading back what the nodes of `nodes` changed.
    pub fn new(ctx: StepContext, source: SourceSpec, nodes: SourceNodes) -> Self {
        Verify { ctx, source, nodes }
    }
}

#[async_trait]
impl Task for Verify {
    type Undo = ();
    type Output = VerifyOutput;

    fn describe(&self) -> String {
        format!(
            "read back account {}'s configuration",
            self.source.account_id
        )
    }

    async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
        Ok(Plan::new(PlanAction::NoOp).note("read-only check after apply"))
    }

    async fn apply(&self, ctx: &ApplyCtx<()>) -> Result<Applied<VerifyOutput>, TaskError> {
        let n = &self.nodes;
        let known = Known {
            logs: Some(ctx.input::<SourceLogs>(&n.bucket_check)?),
            role_arn: Some(ctx.input::<RoleStackOutput>(&n.role_stack)?.role_arn),
            replica_key: Some(ctx.input::<KeyGrantOutput>(&n.key)?.key),
        };
        let reads = Reads {
            versioning: ctx.input_changed(&n.versioning),
            replication: ctx.input_changed(&n.replication),
            role: ctx.input_changed(&n.role_stack),
            grant: ctx.input_changed(&n.grant),
            key: ctx.input_changed(&n.key),
        };
        // What was just written may not show yet (S3's configuration reads are eventually
        // consistent): a difference counts only once it persists.
        let (findings, _) = self
            .ctx
            .read_until(
                || source_findings(&self.ctx, &self.source, known.clone(), reads),
                Vec::is_empty,
            )
            .await?;
        if findings.is_empty() {
            // The account's last step in this run: its clients (and checked credentials) are
            // not needed any more, and with hundreds of accounts they are most of the memory.
            self.ctx.accounts.release(&self.source.account_id);
            return Ok(Applied::unchanged(VerifyOutput { checked: true }));
        }
        let list: Vec<String> = findings
            .iter()
            .map(|f| {
                format!(
                    "{} {}: expected {}, found {}",
                    f.resource, f.field, f.expected, f.actual
                )
            })
            .collect();
        Err(TaskError::fatal(format!(
            "account {} differs from the article after apply: {}",
            self.source.account_id,
            list.join("; ")
        ))
        .with_code("Drift")
        .with_hint("something changed it meanwhile, or AWS refused part of it: `trailhub verify` shows the details; `trailhub apply` applies again"))
    }

    async fn rollback(
        &self,
        _undo: Option<()>,
        _ctx: &ApplyCtx<()>,
    ) -> Result<RolledBack, TaskError> {
        Ok(RolledBack::default())
    }
}
