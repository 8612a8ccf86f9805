//! `S/verify`: reads back what the steps set for one source account, and fails, listing every
//! difference, if anything is not as the article says. Read-only.

use super::StepContext;
use crate::checks::source_findings;
use crate::spec::SourceSpec;
use async_trait::async_trait;
use serde_json::{Value, json};
use trailhub_engine::{Applied, ApplyCtx, Plan, PlanAction, PlanCtx, RolledBack, Task, TaskError};

/// Checks one source account's configuration.
#[derive(Debug)]
pub struct Verify {
    ctx: StepContext,
    source: SourceSpec,
    role_node: String,
}

impl Verify {
    /// The check of `source`; the role's ARN comes from node `role_node`'s outputs.
    pub fn new(ctx: StepContext, source: SourceSpec, role_node: &str) -> Self {
        Verify {
            ctx,
            source,
            role_node: role_node.to_string(),
        }
    }
}

#[async_trait]
impl Task for Verify {
    fn describe(&self) -> String {
        format!(
            "read back account {}'s configuration",
            self.source.account_id
        )
    }

    async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
        Ok(Plan::new(PlanAction::NoOp).note("read-only check after apply"))
    }

    async fn apply(&self, ctx: &ApplyCtx) -> Result<Applied, TaskError> {
        let role_arn = ctx
            .input(&self.role_node)
            .and_then(|o| o["role_arn"].as_str())
            .map(str::to_string);
        let findings = source_findings(&self.ctx, &self.source, role_arn.as_deref(), false).await?;
        if findings.is_empty() {
            // The account's last step in this run: its clients (and checked credentials) are
            // not needed any more, and with hundreds of accounts they are most of the memory.
            self.ctx.accounts.release(&self.source.account_id);
            return Ok(Applied::unchanged(json!({ "checked": true })));
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
        .with_hint("something changed it meanwhile, or AWS refused part of it: `trailhub verify` shows the details; `trailhub resume` applies again"))
    }

    async fn rollback(
        &self,
        _undo: Option<&Value>,
        _ctx: &ApplyCtx,
    ) -> Result<RolledBack, TaskError> {
        Ok(RolledBack::default())
    }
}
