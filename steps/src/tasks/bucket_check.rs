//! `S/bucket-check`: the article's preconditions in a source account, checked before anything
//! is created there: the CloudTrail bucket exists and belongs to the account, it is encrypted
//! with SSE-S3 (not SSE-KMS), and the trail, when named, logs to it. Read-only.
//!
//! The trail is read once ([`read_trail`]) and compared once ([`TrailLive::drift`]): bucket-check
//! fails on the difference, verify reports it.

use super::archive_bucket::{Presence, presence};
use super::{StepContext, call};
use crate::drift::Finding;
use crate::errors::{classify, service_code};
use crate::spec::SourceSpec;
use async_trait::async_trait;
use aws_sdk_s3::types::ServerSideEncryption;
use serde::{Deserialize, Serialize};
use trailhub_engine::{Applied, ApplyCtx, Plan, PlanAction, PlanCtx, RolledBack, Task, TaskError};

/// Checks a source account's bucket and trail.
#[derive(Debug)]
pub struct BucketCheck {
    ctx: StepContext,
    source: SourceSpec,
}

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketCheckOutput {
    /// The CloudTrail bucket.
    pub bucket: String,
    /// Its default encryption (`AES256`).
    pub encryption: String,
    /// The trail checked, if any.
    pub trail: Option<String>,
}

/// A trail as found: absent, or the bucket it logs to and whether it is logging (not read
/// when it logs to another bucket: that difference comes first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TrailLive {
    Missing,
    Found {
        bucket: String,
        logging: Option<bool>,
    },
}

/// How a trail differs from one that logs to the source bucket: the one comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TrailDrift {
    Missing,
    OtherBucket(String),
    NotLogging,
}

impl TrailLive {
    pub(crate) fn drift(&self, source: &SourceSpec) -> Option<TrailDrift> {
        match self {
            TrailLive::Missing => Some(TrailDrift::Missing),
            TrailLive::Found { bucket, .. } if *bucket != source.bucket => {
                Some(TrailDrift::OtherBucket(bucket.clone()))
            }
            TrailLive::Found {
                logging: Some(true),
                ..
            } => None,
            TrailLive::Found { .. } => Some(TrailDrift::NotLogging),
        }
    }
}

impl TrailDrift {
    /// The drift as bucket-check's failure, with what to do.
    fn error(&self, ctx: &StepContext, s: &SourceSpec, trail: &str) -> TaskError {
        let account = &s.account_id;
        match self {
            TrailDrift::Missing => TaskError::fatal(format!(
                "trail {trail} not found in account {account} ({})",
                ctx.setting.region
            ))
            .with_code("TrailNotFound")
            .with_hint("set `trail` for this source to the trail that logs to its bucket, or remove `trail` to skip this check"),
            TrailDrift::OtherBucket(logs_to) => TaskError::fatal(format!(
                "trail {trail} in account {account} logs to bucket {logs_to}, not to {}",
                s.bucket
            ))
            .with_code("TrailBucketMismatch")
            .with_hint("set this source's `bucket` to the trail's bucket, or `trail` to the trail that logs to it"),
            TrailDrift::NotLogging => TaskError::fatal(format!(
                "trail {trail} in account {account} is not logging: nothing would reach its bucket, nor the archive"
            ))
            .with_code("TrailNotLogging")
            .with_hint(format!("start it (aws cloudtrail start-logging --name {trail}), then `trailhub resume`")),
        }
    }

    /// The drift as verify reports it.
    pub(crate) fn finding(&self, s: &SourceSpec, trail: &str) -> Finding {
        let resource = format!("trail {trail}");
        let finding = |field: &str, expected: &str, actual: &str| {
            Finding::new(&s.account_id, &resource, field, expected, actual)
        };
        match self {
            TrailDrift::Missing => finding("exists", "true", "false"),
            TrailDrift::OtherBucket(logs_to) => finding("S3BucketName", &s.bucket, logs_to),
            TrailDrift::NotLogging => finding("IsLogging", "true", "false"),
        }
    }
}

impl BucketCheck {
    /// The check of `source`.
    pub fn new(ctx: StepContext, source: SourceSpec) -> Self {
        BucketCheck { ctx, source }
    }

    async fn check(&self) -> Result<BucketCheckOutput, TaskError> {
        let s = &self.source;
        let trail = async {
            match &s.trail {
                Some(trail) => read_trail(&self.ctx, s, trail).await.map(Some),
                None => Ok(None),
            }
        };
        // Three reads side by side; the bucket's presence is judged first, as the other two
        // answers mean nothing without it.
        let (present, encryption, trail) = tokio::join!(
            presence(&self.ctx, &s.account_id, &s.bucket),
            source_encryption(&self.ctx, s),
            trail
        );
        if let Presence::Missing = present? {
            return Err(self.missing_bucket());
        }
        let encryption = encryption?;
        if encryption != "AES256" {
            return Err(TaskError::fatal(format!(
                "source bucket {} uses {encryption} default encryption; the article's rule replicates \
                 SSE-S3 objects only, and S3 skips KMS-encrypted objects without telling, so logs would silently not reach the archive",
                s.bucket
            ))
            .with_code("SseKmsBucket")
            .with_hint("use SSE-S3 on the CloudTrail bucket (or extend the rule and the role with KMS grants, a separate procedure), then resume"));
        }
        if let (Some(name), Some(live)) = (&s.trail, trail?)
            && let Some(drift) = live.drift(s)
        {
            return Err(drift.error(&self.ctx, s, name));
        }
        Ok(BucketCheckOutput {
            bucket: s.bucket.clone(),
            encryption,
            trail: s.trail.clone(),
        })
    }

    fn missing_bucket(&self) -> TaskError {
        let s = &self.source;
        TaskError::fatal(format!(
            "source bucket {} does not exist in account {}: HeadBucket answered 404",
            s.bucket, s.account_id
        ))
        .with_code("NoSuchBucket")
        .with_hint(format!(
            "create the CloudTrail bucket {} in account {} (or set `bucket` for this source), then `trailhub resume`",
            s.bucket, s.account_id
        ))
    }
}

/// The bucket's default encryption algorithm (`AES256` when none is configured: S3 applies
/// SSE-S3 to every bucket by default).
pub(crate) async fn source_encryption(
    ctx: &StepContext,
    s: &SourceSpec,
) -> Result<String, TaskError> {
    let clients = ctx.accounts.get(&s.account_id).await?;
    let result = call(
        &s.account_id,
        "s3",
        "GetBucketEncryption",
        &s.bucket,
        clients
            .s3
            .get_bucket_encryption()
            .bucket(&s.bucket)
            .expected_bucket_owner(&s.account_id)
            .send(),
    )
    .await;
    match result {
        Ok(out) => {
            let algorithms: Vec<&ServerSideEncryption> = out
                .server_side_encryption_configuration()
                .map(|c| c.rules())
                .unwrap_or_default()
                .iter()
                .filter_map(|r| r.apply_server_side_encryption_by_default())
                .map(|d| d.sse_algorithm())
                .collect();
            Ok(algorithms
                .iter()
                .find(|a| ***a != ServerSideEncryption::Aes256)
                .map(|a| a.as_str().to_string())
                .unwrap_or_else(|| "AES256".into()))
        }
        Err(e) if service_code(&e) == Some("ServerSideEncryptionConfigurationNotFoundError") => {
            Ok("AES256".into())
        }
        Err(e) => Err(classify("GetBucketEncryption", &s.bucket, e, &[])),
    }
}

/// Reads `trail` in the source account: where it logs and whether it is logging.
pub(crate) async fn read_trail(
    ctx: &StepContext,
    s: &SourceSpec,
    trail: &str,
) -> Result<TrailLive, TaskError> {
    let clients = ctx.accounts.get(&s.account_id).await?;
    // Both reads at once (one round trip, not two); the status is looked at only once the
    // trail is known to exist.
    let (described, status) = tokio::join!(
        call(
            &s.account_id,
            "cloudtrail",
            "DescribeTrails",
            trail,
            clients
                .cloudtrail
                .describe_trails()
                .trail_name_list(trail)
                .include_shadow_trails(true)
                .send(),
        ),
        call(
            &s.account_id,
            "cloudtrail",
            "GetTrailStatus",
            trail,
            clients.cloudtrail.get_trail_status().name(trail).send(),
        )
    );
    let out = described.map_err(|e| classify("DescribeTrails", trail, e, &[]))?;
    let found = out.trail_list().iter().find(|t| {
        t.name() == Some(trail)
            || t.trail_arn()
                .is_some_and(|a| a.ends_with(&format!(":trail/{trail}")))
    });
    let Some(found) = found else {
        return Ok(TrailLive::Missing);
    };
    let bucket = found.s3_bucket_name().unwrap_or_default().to_string();
    if bucket != s.bucket {
        return Ok(TrailLive::Found {
            bucket,
            logging: None,
        });
    }
    let status = match (status, found.trail_arn()) {
        (Ok(status), _) => status,
        // A multi-region trail seen from another region (a shadow trail) answers GetTrailStatus
        // by its ARN only.
        (Err(_), Some(arn)) if found.home_region() != Some(ctx.setting.region.as_str()) => call(
            &s.account_id,
            "cloudtrail",
            "GetTrailStatus",
            arn,
            clients.cloudtrail.get_trail_status().name(arn).send(),
        )
        .await
        .map_err(|e| classify("GetTrailStatus", arn, e, &[]))?,
        (Err(e), _) => return Err(classify("GetTrailStatus", trail, e, &[])),
    };
    Ok(TrailLive::Found {
        bucket,
        logging: Some(status.is_logging() == Some(true)),
    })
}

#[async_trait]
impl Task for BucketCheck {
    type Undo = ();
    type Output = BucketCheckOutput;

    fn describe(&self) -> String {
        format!(
            "check that bucket {} exists in account {}, uses SSE-S3{}",
            self.source.bucket,
            self.source.account_id,
            self.source
                .trail
                .as_ref()
                .map(|t| format!(", and receives trail {t}"))
                .unwrap_or_default()
        )
    }

    async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
        self.check().await?;
        Ok(Plan::new(PlanAction::NoOp).note("preconditions hold"))
    }

    async fn apply(&self, _ctx: &ApplyCtx<()>) -> Result<Applied<BucketCheckOutput>, TaskError> {
        Ok(Applied::unchanged(self.check().await?))
    }

    async fn rollback(
        &self,
        _undo: Option<()>,
        _ctx: &ApplyCtx<()>,
    ) -> Result<RolledBack, TaskError> {
        Ok(RolledBack::default())
    }
}
