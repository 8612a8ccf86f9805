//! `versioning` (archive and source buckets): enabled only if it is not already; the undo
//! record keeps the status found before.

use super::archive_bucket::object_lock_enabled;
use super::{StepContext, call};
use crate::errors::classify;
use async_trait::async_trait;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use serde_json::{Value, json};
use trailhub_engine::{Applied, ApplyCtx, Plan, PlanAction, PlanCtx, RolledBack, Task, TaskError};

/// Enables versioning on one bucket.
#[derive(Debug)]
pub struct Versioning {
    ctx: StepContext,
    account: String,
    bucket: String,
}

impl Versioning {
    /// Versioning of `bucket` in `account`.
    pub fn new(ctx: StepContext, account: &str, bucket: &str) -> Self {
        Versioning {
            ctx,
            account: account.to_string(),
            bucket: bucket.to_string(),
        }
    }
}

/// The bucket's versioning status: `None` when it was never enabled.
pub(crate) async fn versioning_status(
    ctx: &StepContext,
    account: &str,
    bucket: &str,
) -> Result<Option<String>, TaskError> {
    let clients = ctx.accounts.get(account).await?;
    let out = call(
        None,
        account,
        "s3",
        "GetBucketVersioning",
        false,
        bucket,
        clients
            .s3
            .get_bucket_versioning()
            .bucket(bucket)
            .expected_bucket_owner(account)
            .send(),
    )
    .await
    .map_err(|e| classify("GetBucketVersioning", bucket, e, &[]))?;
    Ok(out.status().map(|s| s.as_str().to_string()))
}

impl Versioning {
    async fn put(&self, ctx: &ApplyCtx, status: BucketVersioningStatus) -> Result<(), TaskError> {
        let clients = self.ctx.accounts.get(&self.account).await?;
        call(
            Some(ctx),
            &self.account,
            "s3",
            "PutBucketVersioning",
            true,
            &format!("{} Status={}", self.bucket, status.as_str()),
            clients
                .s3
                .put_bucket_versioning()
                .bucket(&self.bucket)
                .expected_bucket_owner(&self.account)
                .versioning_configuration(VersioningConfiguration::builder().status(status).build())
                .send(),
        )
        .await
        .map(|_| ())
        .map_err(|e| classify("PutBucketVersioning", &self.bucket, e, &[]))
    }
}

#[async_trait]
impl Task for Versioning {
    fn describe(&self) -> String {
        format!("enable versioning on {}", self.bucket)
    }

    async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
        let status = versioning_status(&self.ctx, &self.account, &self.bucket).await?;
        Ok(if status.as_deref() == Some("Enabled") {
            Plan::new(PlanAction::NoOp)
        } else {
            Plan::new(PlanAction::Update).change("Status", status, "Enabled")
        })
    }

    async fn apply(&self, ctx: &ApplyCtx) -> Result<Applied, TaskError> {
        let status = versioning_status(&self.ctx, &self.account, &self.bucket).await?;
        let outputs = json!({ "bucket": self.bucket, "status": "Enabled" });
        if status.as_deref() == Some("Enabled") {
            return Ok(Applied::unchanged(outputs));
        }
        ctx.record_undo(json!({ "status": status })).await?;
        self.put(ctx, BucketVersioningStatus::Enabled).await?;
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
        let before = undo["status"].as_str();
        if before == Some("Enabled") {
            return Ok(RolledBack::default());
        }
        if object_lock_enabled(&self.ctx, &self.account, &self.bucket).await? {
            return Ok(RolledBack {
                changed: false,
                note: Some(format!(
                    "versioning of {} kept Enabled: the bucket has Object Lock, which requires it",
                    self.bucket
                )),
            });
        }
        let now = versioning_status(&self.ctx, &self.account, &self.bucket).await?;
        if now.as_deref() == Some("Suspended") {
            return Ok(RolledBack::default());
        }
        self.put(ctx, BucketVersioningStatus::Suspended).await?;
        let note = match before {
            None => format!(
                "versioning of {} suspended: S3 cannot return a bucket to never-versioned",
                self.bucket
            ),
            Some(s) => format!("versioning of {} returned to {s}", self.bucket),
        };
        Ok(RolledBack {
            changed: true,
            note: Some(note),
        })
    }
}
