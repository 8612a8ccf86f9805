//! `S/replication`: the article's replication configuration on the source bucket, put only when
//! what is there differs; the undo record keeps the configuration found before.

use super::{StepContext, call};
use crate::errors::{classify, service_code};
use crate::replication_doc::{desired, diff, from_json, to_json};
use crate::spec::SourceSpec;
use async_trait::async_trait;
use serde_json::{Value, json};
use trailhub_engine::{Applied, ApplyCtx, Plan, PlanAction, PlanCtx, RolledBack, Task, TaskError};

/// Puts the replication configuration on a source bucket.
#[derive(Debug)]
pub struct Replication {
    ctx: StepContext,
    source: SourceSpec,
    role_node: String,
}

impl Replication {
    /// The replication of `source`; the role's ARN comes from node `role_node`'s outputs.
    pub fn new(ctx: StepContext, source: SourceSpec, role_node: &str) -> Self {
        Replication {
            ctx,
            source,
            role_node: role_node.to_string(),
        }
    }

    fn role_arn(&self, ctx: Option<&ApplyCtx>) -> String {
        ctx.and_then(|c| c.input(&self.role_node))
            .and_then(|o| o["role_arn"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| {
                self.ctx
                    .setting
                    .role_arn(&self.source.account_id, &self.source.role_name)
            })
    }

    async fn put(&self, ctx: &ApplyCtx, doc: &Value) -> Result<(), TaskError> {
        let config = from_json(doc)
            .map_err(|e| TaskError::fatal(format!("replication configuration: {e}")))?;
        let clients = self.ctx.accounts.get(&self.source.account_id).await?;
        call(
            Some(ctx),
            &self.source.account_id,
            "s3",
            "PutBucketReplication",
            true,
            &self.source.bucket,
            clients
                .s3
                .put_bucket_replication()
                .bucket(&self.source.bucket)
                .expected_bucket_owner(&self.source.account_id)
                .replication_configuration(config)
                .send(),
        )
        .await
        .map(|_| ())
        // Right after the role is created, S3 may not see it yet (IAM propagation).
        .map_err(|e| {
            classify(
                "PutBucketReplication",
                &self.source.bucket,
                e,
                &["InvalidArgument", "InvalidRequest"],
            )
        })
    }
}

/// The bucket's replication configuration as JSON, `None` when it has none.
pub(crate) async fn live_replication(
    ctx: &StepContext,
    source: &SourceSpec,
) -> Result<Option<Value>, TaskError> {
    let clients = ctx.accounts.get(&source.account_id).await?;
    let result = call(
        None,
        &source.account_id,
        "s3",
        "GetBucketReplication",
        false,
        &source.bucket,
        clients
            .s3
            .get_bucket_replication()
            .bucket(&source.bucket)
            .expected_bucket_owner(&source.account_id)
            .send(),
    )
    .await;
    match result {
        Ok(out) => Ok(out.replication_configuration().map(to_json)),
        Err(e) if service_code(&e) == Some("ReplicationConfigurationNotFoundError") => Ok(None),
        Err(e) => Err(classify("GetBucketReplication", &source.bucket, e, &[])),
    }
}

#[async_trait]
impl Task for Replication {
    fn describe(&self) -> String {
        format!(
            "replicate s3://{}/{} to bucket {}",
            self.source.bucket, self.source.prefix, self.ctx.setting.archive.bucket
        )
    }

    async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
        let want = desired(&self.ctx.setting, &self.source, &self.role_arn(None));
        let live = live_replication(&self.ctx, &self.source).await?;
        if live.as_ref() == Some(&want) {
            return Ok(Plan::new(PlanAction::NoOp));
        }
        let mut plan = Plan::new(if live.is_some() {
            PlanAction::Update
        } else {
            PlanAction::Create
        });
        for (field, from, to) in diff(live.as_ref(), &want) {
            plan = plan.change(&field, from, to);
        }
        Ok(plan)
    }

    async fn apply(&self, ctx: &ApplyCtx) -> Result<Applied, TaskError> {
        let role_arn = self.role_arn(Some(ctx));
        let want = desired(&self.ctx.setting, &self.source, &role_arn);
        let live = live_replication(&self.ctx, &self.source).await?;
        let outputs = json!({ "bucket": self.source.bucket, "role_arn": role_arn, "rule": crate::replication_doc::RULE_ID });
        if live.as_ref() == Some(&want) {
            return Ok(Applied::unchanged(outputs));
        }
        ctx.record_undo(json!({ "previous": live })).await?;
        self.put(ctx, &want).await?;
        Ok(Applied::changed(outputs))
    }

    async fn rollback(
        &self,
        undo: Option<&Value>,
        ctx: &ApplyCtx,
    ) -> Result<RolledBack, TaskError> {
        let Some(undo) = undo else {
            return Ok(RolledBack::default());
        };
        let previous = &undo["previous"];
        let live = live_replication(&self.ctx, &self.source).await?;
        if previous.is_null() {
            if live.is_none() {
                return Ok(RolledBack::default());
            }
            let clients = self.ctx.accounts.get(&self.source.account_id).await?;
            call(
                Some(ctx),
                &self.source.account_id,
                "s3",
                "DeleteBucketReplication",
                true,
                &self.source.bucket,
                clients
                    .s3
                    .delete_bucket_replication()
                    .bucket(&self.source.bucket)
                    .expected_bucket_owner(&self.source.account_id)
                    .send(),
            )
            .await
            .map_err(|e| classify("DeleteBucketReplication", &self.source.bucket, e, &[]))?;
            return Ok(RolledBack {
                changed: true,
                note: Some(format!(
                    "replication configuration of {} deleted (there was none before)",
                    self.source.bucket
                )),
            });
        }
        if live.as_ref() == Some(previous) {
            return Ok(RolledBack::default());
        }
        self.put(ctx, previous).await?;
        Ok(RolledBack {
            changed: true,
            note: Some(format!(
                "replication configuration of {} restored to the one found before",
                self.source.bucket
            )),
        })
    }
}
