//! `identity`: the account's credentials must resolve to the declared account id
//! (`GetCallerIdentity`) before anything else happens in that account.

use super::StepContext;
use async_trait::async_trait;
use serde_json::{Value, json};
use trailhub_engine::{Applied, ApplyCtx, Plan, PlanAction, PlanCtx, RolledBack, Task, TaskError};

/// Checks an account's identity.
#[derive(Debug)]
pub struct Identity {
    ctx: StepContext,
    account: String,
}

impl Identity {
    /// The identity check of `account`.
    pub fn new(ctx: StepContext, account: &str) -> Self {
        Identity {
            ctx,
            account: account.to_string(),
        }
    }
}

#[async_trait]
impl Task for Identity {
    fn describe(&self) -> String {
        format!(
            "check that the credentials resolve to account {}",
            self.account
        )
    }

    async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
        let clients = self.ctx.accounts.get(&self.account).await?;
        Ok(Plan::new(PlanAction::NoOp)
            .note(format!("credentials resolve to {}", clients.caller_arn)))
    }

    async fn apply(&self, _ctx: &ApplyCtx) -> Result<Applied, TaskError> {
        let clients = self.ctx.accounts.get(&self.account).await?;
        Ok(Applied::unchanged(json!({
            "account": clients.account_id,
            "caller": clients.caller_arn,
        })))
    }

    async fn rollback(
        &self,
        _undo: Option<&Value>,
        _ctx: &ApplyCtx,
    ) -> Result<RolledBack, TaskError> {
        Ok(RolledBack::default())
    }
}
