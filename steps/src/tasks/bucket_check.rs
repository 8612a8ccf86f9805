//! `S/bucket-check`: the article's preconditions in a source account, checked before anything
//! is created there, and where and how its logs are written ([`crate::logs`]): the CloudTrail
//! bucket exists and belongs to the account (in whichever region), the trails that deliver to it
//! are logging (their key prefixes and KMS keys are what later steps follow), and a source key's
//! policy lets IAM grant it. Read-only.

use super::StepContext;
use crate::logs::SourceLogs;
use crate::spec::SourceSpec;
use async_trait::async_trait;
use trailhub_engine::{Applied, ApplyCtx, Plan, PlanAction, PlanCtx, RolledBack, Task, TaskError};

/// Checks a source account's bucket and trails.
#[derive(Debug)]
pub struct BucketCheck {
    ctx: StepContext,
    source: SourceSpec,
}

/// What the check found: where and how the logs are written.
pub type BucketCheckOutput = SourceLogs;

impl BucketCheck {
    /// The check of `source`.
    pub fn new(ctx: StepContext, source: SourceSpec) -> Self {
        BucketCheck { ctx, source }
    }
}

/// What plan says of the logs: where they are written and how they are encrypted.
fn describe_logs(ctx: &StepContext, logs: &SourceLogs) -> String {
    let mut note = format!(
        "logs under {} in {}",
        logs.prefixes.join(", "),
        logs.region(ctx)
    );
    if logs.kms() {
        note.push_str(&format!(", SSE-KMS with {}", logs.kms_keys.join(", ")));
    }
    note
}

#[async_trait]
impl Task for BucketCheck {
    type Undo = ();
    type Output = SourceLogs;

    fn describe(&self) -> String {
        format!(
            "check that bucket {} exists in account {} and receives {}",
            self.source.bucket,
            self.source.account_id,
            self.source
                .trail
                .as_ref()
                .map_or("its trails' logs".to_string(), |t| format!("trail {t}"))
        )
    }

    async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
        let logs = self.ctx.logs_of(&self.source).await?;
        Ok(Plan::new(PlanAction::NoOp).note(format!(
            "preconditions hold; {}",
            describe_logs(&self.ctx, &logs)
        )))
    }

    async fn apply(&self, _ctx: &ApplyCtx<()>) -> Result<Applied<SourceLogs>, TaskError> {
        let logs = crate::logs::discover(&self.ctx, &self.source).await?;
        self.ctx
            .remember_logs(&self.source.account_id, logs.clone());
        Ok(Applied::unchanged(logs))
    }

    async fn rollback(
        &self,
        _undo: Option<()>,
        _ctx: &ApplyCtx<()>,
    ) -> Result<RolledBack, TaskError> {
        Ok(RolledBack::default())
    }
}
