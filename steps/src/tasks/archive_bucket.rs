//! `archive/bucket`: the aggregation bucket, created with Object Lock in the region (article
//! section 1.1), or adopted when the archive account already owns it.

use super::{StepContext, call};
use crate::errors::{classify, http_status, service_code};
use async_trait::async_trait;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration, ObjectLockEnabled};
use serde_json::{Value, json};
use trailhub_engine::{Applied, ApplyCtx, Plan, PlanAction, PlanCtx, RolledBack, Task, TaskError};

/// Creates or adopts the archive bucket.
#[derive(Debug)]
pub struct ArchiveBucket {
    ctx: StepContext,
}

impl ArchiveBucket {
    /// The archive bucket step.
    pub fn new(ctx: StepContext) -> Self {
        ArchiveBucket { ctx }
    }
}

/// Whether a bucket exists, and for whom.
pub(crate) enum Presence {
    Owned,
    Missing,
}

/// `HeadBucket` with the expected owner: `Owned`, `Missing`, or a fatal error when another account
/// owns the name (or access is denied).
pub(crate) async fn presence(
    ctx: &StepContext,
    account: &str,
    bucket: &str,
    apply: Option<&ApplyCtx>,
) -> Result<Presence, TaskError> {
    let clients = ctx.accounts.get(account).await?;
    let result = call(
        apply,
        account,
        "s3",
        "HeadBucket",
        false,
        bucket,
        clients
            .s3
            .head_bucket()
            .bucket(bucket)
            .expected_bucket_owner(account)
            .send(),
    )
    .await;
    match result {
        Ok(_) => Ok(Presence::Owned),
        Err(e) if http_status(&e) == Some(404) => Ok(Presence::Missing),
        Err(e) if http_status(&e) == Some(403) => Err(TaskError::fatal(format!(
            "bucket {bucket} exists but is not owned by account {account} (or these credentials may not read it): HeadBucket answered 403"
        ))
        .with_code("Forbidden")
        .with_hint("choose another bucket name in the inventory, or fix the account's credentials")),
        Err(e) => Err(classify("HeadBucket", bucket, e, &[])),
    }
}

pub(crate) async fn object_lock_enabled(
    ctx: &StepContext,
    account: &str,
    bucket: &str,
) -> Result<bool, TaskError> {
    let clients = ctx.accounts.get(account).await?;
    let result = call(
        None,
        account,
        "s3",
        "GetObjectLockConfiguration",
        false,
        bucket,
        clients
            .s3
            .get_object_lock_configuration()
            .bucket(bucket)
            .expected_bucket_owner(account)
            .send(),
    )
    .await;
    match result {
        Ok(out) => Ok(out
            .object_lock_configuration()
            .and_then(|c| c.object_lock_enabled())
            == Some(&ObjectLockEnabled::Enabled)),
        Err(e) if service_code(&e) == Some("ObjectLockConfigurationNotFoundError") => Ok(false),
        Err(e) => Err(classify("GetObjectLockConfiguration", bucket, e, &[])),
    }
}

impl ArchiveBucket {
    fn account(&self) -> &str {
        &self.ctx.setting.archive.account_id
    }

    fn bucket(&self) -> &str {
        &self.ctx.setting.archive.bucket
    }

    async fn require_lock(&self) -> Result<(), TaskError> {
        if object_lock_enabled(&self.ctx, self.account(), self.bucket()).await? {
            Ok(())
        } else {
            Err(TaskError::fatal(format!(
                "archive bucket {} exists without Object Lock, which the article requires",
                self.bucket()
            ))
            .with_code("ObjectLockDisabled")
            .with_hint("enable Object Lock on it (s3api put-object-lock-configuration) or name another bucket in [archive] bucket"))
        }
    }
}

#[async_trait]
impl Task for ArchiveBucket {
    fn describe(&self) -> String {
        format!(
            "create bucket {} with Object Lock (or adopt it)",
            self.bucket()
        )
    }

    async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
        match presence(&self.ctx, self.account(), self.bucket(), None).await? {
            Presence::Owned => {
                self.require_lock().await?;
                Ok(Plan::new(PlanAction::NoOp).note("bucket exists with Object Lock; adopted"))
            }
            Presence::Missing => Ok(Plan::new(PlanAction::Create)
                .change("Bucket", None, self.bucket())
                .change("ObjectLockEnabledForBucket", None, "true")
                .change("LocationConstraint", None, self.ctx.setting.region.clone())),
        }
    }

    async fn apply(&self, ctx: &ApplyCtx) -> Result<Applied, TaskError> {
        let outputs = json!({ "bucket": self.bucket() });
        if let Presence::Owned =
            presence(&self.ctx, self.account(), self.bucket(), Some(ctx)).await?
        {
            self.require_lock().await?;
            return Ok(Applied::unchanged(outputs));
        }
        ctx.record_undo(json!({ "existed": false })).await?;
        let clients = self.ctx.accounts.get(self.account()).await?;
        let region = &self.ctx.setting.region;
        let mut request = clients
            .s3
            .create_bucket()
            .bucket(self.bucket())
            .object_lock_enabled_for_bucket(true);
        // us-east-1 is the one region that takes no location constraint.
        if region != "us-east-1" {
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                    .build(),
            );
        }
        let result = call(
            Some(ctx),
            self.account(),
            "s3",
            "CreateBucket",
            true,
            self.bucket(),
            request.send(),
        )
        .await;
        match result {
            Ok(_) => Ok(Applied::changed(outputs)),
            Err(e) if service_code(&e) == Some("BucketAlreadyOwnedByYou") => {
                self.require_lock().await?;
                Ok(Applied::unchanged(outputs))
            }
            Err(e) if service_code(&e) == Some("BucketAlreadyExists") => {
                Err(TaskError::fatal(format!(
                    "bucket name {} is taken by another AWS account",
                    self.bucket()
                ))
                .with_code("BucketAlreadyExists")
                .with_hint("set another name in [archive] bucket, then `trailhub apply` again"))
            }
            Err(e) => Err(classify("CreateBucket", self.bucket(), e, &[])),
        }
    }

    async fn rollback(
        &self,
        undo: Option<&Value>,
        ctx: &ApplyCtx,
    ) -> Result<RolledBack, TaskError> {
        let created = undo.and_then(|u| u["existed"].as_bool()) == Some(false);
        if !created {
            return Ok(RolledBack {
                changed: false,
                note: Some(format!(
                    "bucket {} kept: it existed before this run",
                    self.bucket()
                )),
            });
        }
        let clients = self.ctx.accounts.get(self.account()).await?;
        let listed = call(
            Some(ctx),
            self.account(),
            "s3",
            "ListObjectVersions",
            false,
            self.bucket(),
            clients
                .s3
                .list_object_versions()
                .bucket(self.bucket())
                .expected_bucket_owner(self.account())
                .max_keys(1)
                .send(),
        )
        .await;
        let listed = match listed {
            Ok(l) => l,
            Err(e) if service_code(&e) == Some("NoSuchBucket") => {
                return Ok(RolledBack {
                    changed: false,
                    note: Some(format!("bucket {} is already gone", self.bucket())),
                });
            }
            Err(e) => return Err(classify("ListObjectVersions", self.bucket(), e, &[])),
        };
        if !listed.versions().is_empty() || !listed.delete_markers().is_empty() {
            return Ok(RolledBack {
                changed: false,
                note: Some(format!(
                    "bucket {} kept: it holds objects, and log objects are never deleted",
                    self.bucket()
                )),
            });
        }
        let deleted = call(
            Some(ctx),
            self.account(),
            "s3",
            "DeleteBucket",
            true,
            self.bucket(),
            clients
                .s3
                .delete_bucket()
                .bucket(self.bucket())
                .expected_bucket_owner(self.account())
                .send(),
        )
        .await;
        match deleted {
            Ok(_) => Ok(RolledBack {
                changed: true,
                note: Some(format!(
                    "bucket {} deleted: this run created it and it was empty",
                    self.bucket()
                )),
            }),
            Err(e) if service_code(&e) == Some("NoSuchBucket") => Ok(RolledBack::default()),
            Err(e) if service_code(&e) == Some("BucketNotEmpty") => Ok(RolledBack {
                changed: false,
                note: Some(format!(
                    "bucket {} kept: objects arrived in it",
                    self.bucket()
                )),
            }),
            Err(e) => Err(classify("DeleteBucket", self.bucket(), e, &[])),
        }
    }
}
