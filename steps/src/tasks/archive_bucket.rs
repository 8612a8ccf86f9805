//! `archive/bucket`: the aggregation bucket, created with Object Lock in the region (article
//! section 1.1), or adopted when the archive account already owns it.

use super::retention::DefaultRule;
use super::{StepContext, call, mutate};
use crate::bucket_protection::{self, Protection};
use crate::drift::Finding;
use crate::errors::{classify, http_status, service_code};
use async_trait::async_trait;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, ObjectLockEnabled, Tag, Tagging,
};
use serde::{Deserialize, Serialize};
use trailhub_engine::{Applied, ApplyCtx, Plan, PlanAction, PlanCtx, RolledBack, Task, TaskError};

/// Creates or adopts the archive bucket.
#[derive(Debug)]
pub struct ArchiveBucket {
    ctx: StepContext,
}

/// Journaled before the bucket is created: it did not exist, so rollback may delete it (if it
/// is still empty, and still the bucket trailhub created).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveBucketUndo {
    /// Whether the bucket existed before (always `false` when journaled: an existing bucket is
    /// adopted without an undo record).
    pub existed: bool,
    /// Whether the bucket was tagged with the run's marks once created (`false` in journals of
    /// before tags, and after a crash between CreateBucket and the tagging). Rollback does not
    /// trust it either way: it deletes the bucket only if the run's tag is on it now, so a
    /// record without it (another run, or someone else, may have made the bucket since) deletes
    /// nothing it cannot prove is its own.
    #[serde(default)]
    pub tagged: bool,
}

/// The archive bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketOutput {
    /// Its name.
    pub bucket: String,
}

/// The archive bucket as found: absent, or owned, with its Object Lock configuration and what
/// keeps its objects its own and private.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArchiveLive {
    Missing,
    Owned {
        lock: ObjectLock,
        protection: Protection,
    },
}

/// A bucket's Object Lock configuration (GetObjectLockConfiguration): whether it is enabled,
/// and its default retention rule if it has one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ObjectLock {
    pub(crate) enabled: bool,
    pub(crate) rule: Option<DefaultRule>,
}

/// How the archive bucket differs from the article's: the one comparison of this resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArchiveDrift {
    Missing,
    NoObjectLock,
    /// Owned, but its Object Ownership or Block Public Access falls short: `(setting, found)`.
    Unprotected(Vec<(String, String)>),
}

impl ArchiveLive {
    pub(crate) fn drift(&self) -> Option<ArchiveDrift> {
        match self {
            ArchiveLive::Missing => Some(ArchiveDrift::Missing),
            ArchiveLive::Owned { lock, .. } if !lock.enabled => Some(ArchiveDrift::NoObjectLock),
            ArchiveLive::Owned { protection, .. } if !protection.gaps().is_empty() => {
                Some(ArchiveDrift::Unprotected(protection.gaps()))
            }
            ArchiveLive::Owned { .. } => None,
        }
    }
}

/// Reads the archive bucket: its presence, then (when it is there) its Object Lock.
pub(crate) async fn read_archive(ctx: &StepContext) -> Result<ArchiveLive, TaskError> {
    let archive = &ctx.setting.archive;
    match presence(ctx, &archive.account_id, &archive.bucket).await? {
        Presence::Missing => Ok(ArchiveLive::Missing),
        Presence::Owned => {
            let (lock, protection) = tokio::join!(
                object_lock(ctx, &archive.account_id, &archive.bucket),
                bucket_protection::read(ctx, &archive.account_id, &archive.bucket)
            );
            Ok(ArchiveLive::Owned {
                lock: lock?,
                protection: protection?,
            })
        }
    }
}

/// The archive bucket's drift as verify reports it.
pub(crate) fn findings(ctx: &StepContext, live: &ArchiveLive) -> Vec<Finding> {
    let archive = &ctx.setting.archive;
    let resource = format!("bucket {}", archive.bucket);
    let finding = |field: &str, expected: &str, actual: &str| {
        Finding::new(&archive.account_id, &resource, field, expected, actual)
    };
    match live.drift() {
        None => Vec::new(),
        Some(ArchiveDrift::Missing) => vec![finding("exists", "true", "false")],
        Some(ArchiveDrift::NoObjectLock) => {
            vec![finding("ObjectLockEnabled", "Enabled", "(not enabled)")]
        }
        Some(ArchiveDrift::Unprotected(gaps)) => gaps
            .iter()
            .map(|(setting, found)| finding(setting, &expected_of(setting), found))
            .collect(),
    }
}

/// What trailhub requires of an archive setting.
fn expected_of(setting: &str) -> String {
    if setting == "ObjectOwnership" {
        bucket_protection::ENFORCED.to_string()
    } else {
        "true".to_string()
    }
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
/// owns the name (or access is denied). Records the bucket's region: asked in the wrong region,
/// S3 answers 301 with the right one, and the question is asked there again.
pub(crate) async fn presence(
    ctx: &StepContext,
    account: &str,
    bucket: &str,
) -> Result<Presence, TaskError> {
    let clients = ctx.accounts.get(account).await?;
    let mut region = ctx.known_region(bucket);
    for _ in 0..2 {
        let s3 = region
            .as_deref()
            .map_or_else(|| clients.s3.clone(), |r| clients.s3_in(r));
        let result = call(
            account,
            "s3",
            "HeadBucket",
            bucket,
            s3.head_bucket()
                .bucket(bucket)
                .expected_bucket_owner(account)
                .send(),
        )
        .await;
        match result {
            Ok(out) => {
                let found = out.bucket_region().map(str::to_string).or(region);
                if let Some(r) = found {
                    ctx.pin_region(bucket, &r);
                }
                return Ok(Presence::Owned);
            }
            Err(e) if http_status(&e) == Some(404) => return Ok(Presence::Missing),
            Err(e) if http_status(&e) == Some(301) && region.is_none() => {
                region = header(&e, "x-amz-bucket-region");
                if region.is_none() {
                    return Err(classify("HeadBucket", bucket, e, &[]));
                }
            }
            Err(e) if http_status(&e) == Some(403) => return Err(TaskError::fatal(format!(
                "bucket {bucket} exists but is not owned by account {account} (or these credentials may not read it): HeadBucket answered 403"
            ))
            .with_code("Forbidden")
            .with_hint("choose another bucket name in the inventory, or fix the account's credentials")),
            Err(e) => return Err(classify("HeadBucket", bucket, e, &[])),
        }
    }
    Err(TaskError::fatal(format!(
        "bucket {bucket} answered from no region (HeadBucket kept redirecting)"
    ))
    .with_code("PermanentRedirect"))
}

/// A header of the response behind an SDK error.
fn header<E>(
    err: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
    name: &str,
) -> Option<String> {
    err.raw_response()
        .and_then(|r| r.headers().get(name))
        .map(str::to_string)
}

/// Whether `bucket` has Object Lock enabled.
pub(crate) async fn object_lock_enabled(
    ctx: &StepContext,
    account: &str,
    bucket: &str,
) -> Result<bool, TaskError> {
    Ok(object_lock(ctx, account, bucket).await?.enabled)
}

/// `bucket`'s Object Lock configuration: S3 answers `ObjectLockConfigurationNotFoundError` for
/// a bucket without Object Lock, which reads as not enabled.
pub(crate) async fn object_lock(
    ctx: &StepContext,
    account: &str,
    bucket: &str,
) -> Result<ObjectLock, TaskError> {
    let s3 = ctx.s3_for(account, bucket).await?;
    let result = call(
        account,
        "s3",
        "GetObjectLockConfiguration",
        bucket,
        s3.get_object_lock_configuration()
            .bucket(bucket)
            .expected_bucket_owner(account)
            .send(),
    )
    .await;
    match result {
        Ok(out) => {
            let config = out.object_lock_configuration();
            Ok(ObjectLock {
                enabled: config.and_then(|c| c.object_lock_enabled())
                    == Some(&ObjectLockEnabled::Enabled),
                rule: config
                    .and_then(|c| c.rule())
                    .and_then(|r| r.default_retention())
                    .map(DefaultRule::from_sdk),
            })
        }
        Err(e) if service_code(&e) == Some("ObjectLockConfigurationNotFoundError") => {
            Ok(ObjectLock::default())
        }
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

    fn outputs(&self) -> BucketOutput {
        BucketOutput {
            bucket: self.bucket().to_string(),
        }
    }

    /// An owned bucket without Object Lock is refused: the article's archive needs it.
    fn no_object_lock(&self) -> TaskError {
        TaskError::fatal(format!(
            "archive bucket {} exists without Object Lock, which the article requires",
            self.bucket()
        ))
        .with_code("ObjectLockDisabled")
        .with_hint("enable Object Lock on it (s3api put-object-lock-configuration) or name another bucket in [archive] bucket")
    }

    /// An adopted bucket whose objects are not the archive's own, or may be made public, is
    /// refused: trailhub changes no setting of a bucket it did not create.
    fn unprotected(&self, gaps: &[(String, String)]) -> TaskError {
        let listed: Vec<String> = gaps
            .iter()
            .map(|(setting, found)| format!("{setting} is {found}, not {}", expected_of(setting)))
            .collect();
        TaskError::fatal(format!(
            "archive bucket {} exists but does not keep its logs private and its own: {}",
            self.bucket(),
            listed.join("; ")
        ))
        .with_code("ArchiveUnprotected")
        .with_hint(format!(
            "set them (aws s3api put-bucket-ownership-controls --bucket {b} --ownership-controls 'Rules=[{{ObjectOwnership=BucketOwnerEnforced}}]'; aws s3api put-public-access-block --bucket {b} --public-access-block-configuration BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true), or name another bucket in [archive] bucket; then `trailhub apply`",
            b = self.bucket()
        ))
    }

    async fn require_lock(&self) -> Result<(), TaskError> {
        if object_lock_enabled(&self.ctx, self.account(), self.bucket()).await? {
            Ok(())
        } else {
            Err(self.no_object_lock())
        }
    }

    async fn create(
        &self,
        ctx: &ApplyCtx<ArchiveBucketUndo>,
    ) -> Result<Applied<BucketOutput>, TaskError> {
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
        let result = mutate(
            ctx,
            self.account(),
            "s3",
            "CreateBucket",
            self.bucket(),
            request.send(),
        )
        .await;
        match result {
            Ok(_) => {
                self.tag(ctx).await?;
                bucket_protection::set(&self.ctx, ctx, self.account(), self.bucket()).await?;
                ctx.amend_undo(ArchiveBucketUndo {
                    existed: false,
                    tagged: true,
                })
                .await?;
                Ok(Applied::changed(self.outputs()))
            }
            Err(e) if service_code(&e) == Some("BucketAlreadyOwnedByYou") => {
                self.require_lock().await?;
                Ok(Applied::unchanged(self.outputs()))
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

    /// Tags the bucket just created with the run's marks (it has no tags yet: PutBucketTagging
    /// replaces a bucket's whole tag set, so it is never called on a bucket found).
    async fn tag(&self, ctx: &ApplyCtx<ArchiveBucketUndo>) -> Result<(), TaskError> {
        let clients = self.ctx.accounts.get(self.account()).await?;
        let tags = crate::tags::marks(ctx.run())
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TaskError::fatal(format!("bucket tags: {e}")))?;
        let tagging = Tagging::builder()
            .set_tag_set(Some(tags))
            .build()
            .map_err(|e| TaskError::fatal(format!("bucket tags: {e}")))?;
        mutate(
            ctx,
            self.account(),
            "s3",
            "PutBucketTagging",
            self.bucket(),
            clients
                .s3
                .put_bucket_tagging()
                .bucket(self.bucket())
                .expected_bucket_owner(self.account())
                .tagging(tagging)
                .send(),
        )
        .await
        .map(|_| ())
        .map_err(|e| classify("PutBucketTagging", self.bucket(), e, &[]))
    }

    /// Why the live bucket is not the one `run` created and tagged (`None`: it is).
    async fn not_ours(&self, run: &str) -> Result<Option<String>, TaskError> {
        let clients = self.ctx.accounts.get(self.account()).await?;
        let result = call(
            self.account(),
            "s3",
            "GetBucketTagging",
            self.bucket(),
            clients
                .s3
                .get_bucket_tagging()
                .bucket(self.bucket())
                .expected_bucket_owner(self.account())
                .send(),
        )
        .await;
        let tags: Vec<(String, String)> = match result {
            Ok(out) => out
                .tag_set()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect(),
            Err(e) if service_code(&e) == Some("NoSuchTagSet") => Vec::new(),
            Err(e) if service_code(&e) == Some("NoSuchBucket") => return Ok(None),
            Err(e) => return Err(classify("GetBucketTagging", self.bucket(), e, &[])),
        };
        let pairs: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if crate::tags::made_by(&pairs, run) {
            return Ok(None);
        }
        let bucket = self.bucket();
        let tag = crate::tags::RUN;
        Ok(Some(match pairs.iter().find(|(k, _)| *k == tag) {
            Some((_, other)) => format!(
                "bucket {bucket} kept: it carries {tag}={other}, not {tag}={run}: another run made it"
            ),
            None => format!(
                "bucket {bucket} kept: it does not carry the tag {tag}={run}, so nothing proves this run made it (someone else may have made it since, or the run stopped between CreateBucket and PutBucketTagging); delete it by hand if it is yours and empty"
            ),
        }))
    }

    /// Deletes the bucket this run created, if it is still empty; says why it is kept otherwise.
    async fn delete_if_empty(
        &self,
        ctx: &ApplyCtx<ArchiveBucketUndo>,
    ) -> Result<RolledBack, TaskError> {
        let clients = self.ctx.accounts.get(self.account()).await?;
        let listed = call(
            self.account(),
            "s3",
            "ListObjectVersions",
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
                return Ok(RolledBack::kept(format!(
                    "bucket {} is already gone",
                    self.bucket()
                )));
            }
            Err(e) => return Err(classify("ListObjectVersions", self.bucket(), e, &[])),
        };
        if !listed.versions().is_empty() || !listed.delete_markers().is_empty() {
            return Ok(RolledBack::kept(format!(
                "bucket {} kept: it holds objects, and log objects are never deleted",
                self.bucket()
            )));
        }
        let deleted = mutate(
            ctx,
            self.account(),
            "s3",
            "DeleteBucket",
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
            Ok(_) => Ok(RolledBack::undone(format!(
                "bucket {} deleted: this run created it and it was empty",
                self.bucket()
            ))),
            Err(e) if service_code(&e) == Some("NoSuchBucket") => Ok(RolledBack::default()),
            Err(e) if service_code(&e) == Some("BucketNotEmpty") => Ok(RolledBack::kept(format!(
                "bucket {} kept: objects arrived in it",
                self.bucket()
            ))),
            Err(e) => Err(classify("DeleteBucket", self.bucket(), e, &[])),
        }
    }
}

#[async_trait]
impl Task for ArchiveBucket {
    type Undo = ArchiveBucketUndo;
    type Output = BucketOutput;

    fn describe(&self) -> String {
        format!(
            "create bucket {} with Object Lock (or adopt it)",
            self.bucket()
        )
    }

    async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
        match read_archive(&self.ctx).await?.drift() {
            None => Ok(Plan::new(PlanAction::NoOp).note(
                "bucket exists with Object Lock, BucketOwnerEnforced and Block Public Access; adopted",
            )),
            Some(ArchiveDrift::NoObjectLock) => Err(self.no_object_lock()),
            Some(ArchiveDrift::Unprotected(gaps)) => Err(self.unprotected(&gaps)),
            Some(ArchiveDrift::Missing) => Ok(Plan::new(PlanAction::Create)
                .change("Bucket", None, self.bucket())
                .change("ObjectLockEnabledForBucket", None, "true")
                .change("LocationConstraint", None, self.ctx.setting.region.clone())
                .change("ObjectOwnership", None, bucket_protection::ENFORCED)
                .change("PublicAccessBlock", None, "all four on")),
        }
    }

    async fn apply(
        &self,
        ctx: &ApplyCtx<ArchiveBucketUndo>,
    ) -> Result<Applied<BucketOutput>, TaskError> {
        match read_archive(&self.ctx).await?.drift() {
            None => Ok(Applied::unchanged(self.outputs())),
            Some(ArchiveDrift::NoObjectLock) => Err(self.no_object_lock()),
            Some(ArchiveDrift::Unprotected(gaps)) => Err(self.unprotected(&gaps)),
            Some(ArchiveDrift::Missing) => {
                ctx.record_undo(ArchiveBucketUndo {
                    existed: false,
                    tagged: false,
                })
                .await?;
                self.create(ctx).await
            }
        }
    }

    async fn rollback(
        &self,
        undo: Option<ArchiveBucketUndo>,
        ctx: &ApplyCtx<ArchiveBucketUndo>,
    ) -> Result<RolledBack, TaskError> {
        match undo {
            Some(ArchiveBucketUndo { existed: false, .. }) => {
                if let Some(kept) = self.not_ours(ctx.run()).await? {
                    return Ok(RolledBack::kept(kept));
                }
                self.delete_if_empty(ctx).await
            }
            _ => Ok(RolledBack::kept(format!(
                "bucket {} kept: it existed before this run",
                self.bucket()
            ))),
        }
    }
}
