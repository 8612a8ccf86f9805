//! `identity`: the account's credentials must resolve to the declared account id
//! (`GetCallerIdentity`) before anything else happens in that account.

use super::StepContext;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use trailhub_engine::{Applied, ApplyCtx, Plan, PlanAction, PlanCtx, RolledBack, Task, TaskError};

/// Checks an account's identity.
#[derive(Debug)]
pub struct Identity {
    ctx: StepContext,
    account: String,
}

/// Who the credentials turned out to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityOutput {
    /// The account id they resolve to (the declared one).
    pub account: String,
    /// The caller's ARN.
    pub caller: String,
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
    type Undo = ();
    type Output = IdentityOutput;

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

    async fn apply(&self, _ctx: &ApplyCtx<()>) -> Result<Applied<IdentityOutput>, TaskError> {
        let clients = self.ctx.accounts.get(&self.account).await?;
        Ok(Applied::unchanged(IdentityOutput {
            account: clients.account_id.clone(),
            caller: clients.caller_arn.clone(),
        }))
    }

    async fn rollback(
        &self,
        _undo: Option<()>,
        _ctx: &ApplyCtx<()>,
    ) -> Result<RolledBack, TaskError> {
        Ok(RolledBack::default())
    }
}
