//! `versioning` (archive and source buckets): the bucket's versioning status, read once,
//! compared once ([`drift`]) for plan, apply and verify; enabled only if it is not already, the
//! undo record keeping the status found before.

use super::archive_bucket::object_lock_enabled;
use super::{StepContext, call, mutate};
use crate::drift::Finding;
use crate::errors::classify;
use async_trait::async_trait;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use serde::{Deserialize, Serialize};
use trailhub_engine::{
    Applied, ApplyCtx, Change, Plan, PlanAction, PlanCtx, RolledBack, Task, TaskError,
};

/// Enables versioning on one bucket.
#[derive(Debug)]
pub struct Versioning {
    ctx: StepContext,
    account: String,
    bucket: String,
}

/// The status found before versioning was enabled (`None`: never enabled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersioningUndo {
    /// `Suspended`, or `None` for a bucket never versioned.
    pub status: Option<String>,
}

/// The bucket, versioned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersioningOutput {
    /// The bucket.
    pub bucket: String,
    /// Its status: `Enabled`.
    pub status: String,
}

const ENABLED: &str = "Enabled";

/// The bucket's versioning status: `None` when it was never enabled.
pub(crate) async fn versioning_status(
    ctx: &StepContext,
    account: &str,
    bucket: &str,
) -> Result<Option<String>, TaskError> {
    let s3 = ctx.s3_for(account, bucket).await?;
    let out = call(
        account,
        "s3",
        "GetBucketVersioning",
        bucket,
        s3.get_bucket_versioning()
            .bucket(bucket)
            .expected_bucket_owner(account)
            .send(),
    )
    .await
    .map_err(|e| classify("GetBucketVersioning", bucket, e, &[]))?;
    Ok(out.status().map(|s| s.as_str().to_string()))
}

/// How `status` differs from enabled versioning: the one comparison of this resource.
pub(crate) fn drift(status: Option<&str>) -> Vec<Change> {
    if status == Some(ENABLED) {
        Vec::new()
    } else {
        vec![Change::new("Status", status.map(str::to_string), ENABLED)]
    }
}

/// The drift of `bucket`'s versioning, as verify reports it.
pub(crate) fn findings(account: &str, bucket: &str, status: Option<&str>) -> Vec<Finding> {
    let resource = format!("bucket {bucket}");
    drift(status)
        .into_iter()
        .map(|c| Finding::from_change(account, &resource, "Versioning.", "(never enabled)", c))
        .collect()
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

    async fn status(&self) -> Result<Option<String>, TaskError> {
        versioning_status(&self.ctx, &self.account, &self.bucket).await
    }

    async fn put(
        &self,
        ctx: &ApplyCtx<VersioningUndo>,
        status: BucketVersioningStatus,
    ) -> Result<(), TaskError> {
        let s3 = self.ctx.s3_for(&self.account, &self.bucket).await?;
        mutate(
            ctx,
            &self.account,
            "s3",
            "PutBucketVersioning",
            &format!("{} Status={}", self.bucket, status.as_str()),
            s3.put_bucket_versioning()
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
    type Undo = VersioningUndo;
    type Output = VersioningOutput;

    fn describe(&self) -> String {
        format!("enable versioning on {}", self.bucket)
    }

    async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
        let changes = drift(self.status().await?.as_deref());
        Ok(if changes.is_empty() {
            Plan::new(PlanAction::NoOp)
        } else {
            Plan::new(PlanAction::Update).changes(changes)
        })
    }

    async fn apply(
        &self,
        ctx: &ApplyCtx<VersioningUndo>,
    ) -> Result<Applied<VersioningOutput>, TaskError> {
        let status = self.status().await?;
        let outputs = VersioningOutput {
            bucket: self.bucket.clone(),
            status: ENABLED.into(),
        };
        if drift(status.as_deref()).is_empty() {
            return Ok(Applied::unchanged(outputs));
        }
        ctx.record_undo(VersioningUndo { status }).await?;
        self.put(ctx, BucketVersioningStatus::Enabled).await?;
        Ok(Applied::changed(outputs))
    }

    async fn rollback(
        &self,
        undo: Option<VersioningUndo>,
        ctx: &ApplyCtx<VersioningUndo>,
    ) -> Result<RolledBack, TaskError> {
        let Some(VersioningUndo { status: before }) = undo else {
            return Ok(RolledBack::default());
        };
        if before.as_deref() == Some(ENABLED) {
            return Ok(RolledBack::default());
        }
        if object_lock_enabled(&self.ctx, &self.account, &self.bucket).await? {
            return Ok(RolledBack::kept(format!(
                "versioning of {} kept Enabled: the bucket has Object Lock, which requires it",
                self.bucket
            )));
        }
        if self.status().await?.as_deref() == Some("Suspended") {
            return Ok(RolledBack::default());
        }
        self.put(ctx, BucketVersioningStatus::Suspended).await?;
        Ok(RolledBack::undone(match before {
            None => format!(
                "versioning of {} suspended: S3 cannot return a bucket to never-versioned",
                self.bucket
            ),
            Some(s) => format!("versioning of {} returned to {s}", self.bucket),
        }))
    }
}
