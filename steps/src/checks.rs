//! Reading live state back and reporting where it differs from what the inventory implies: the
//! `S/verify` node at the end of `apply`, and `trailhub verify` (drift). Read-only.
//!
//! Nothing is compared here: each resource's module reads it and compares it once (the same
//! comparison its step's plan and apply use); this module chooses what to read and gathers the
//! findings.

use crate::spec::SourceSpec;
use crate::tasks::{StepContext, archive_bucket, bucket_check, grant, replication, role_stack};
use crate::tasks::{archive_policy, bucket_versioning};
use trailhub_engine::TaskError;

pub use crate::drift::Finding;

/// Which of a source account's resources to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reads {
    /// The trail (when the inventory names one).
    pub trail: bool,
    /// The bucket's versioning (and so whether the bucket exists).
    pub versioning: bool,
    /// The replication configuration.
    pub replication: bool,
    /// The role stack and its role.
    pub role: bool,
    /// The archive policy's grant.
    pub grant: bool,
}

impl Reads {
    /// Everything (`trailhub verify`).
    pub fn all() -> Reads {
        Reads {
            trail: true,
            versioning: true,
            replication: true,
            role: true,
            grant: true,
        }
    }
}

/// Compares a source account with the inventory: trail, versioning, replication rule (every
/// field), role (trust and inline policy), stack, and its principal in the archive policy, as
/// far as `reads` asks. `role_arn` is the role's ARN as the stack reported it, when known.
pub async fn source_findings(
    ctx: &StepContext,
    source: &SourceSpec,
    role_arn: Option<&str>,
    reads: Reads,
) -> Result<Vec<Finding>, TaskError> {
    let account = source.account_id.as_str();
    let mut out = Vec::new();
    // The bucket's versioning is read first: its NoSuchBucket answer is the "bucket missing"
    // finding, without a HeadBucket of its own, and nothing else is worth reading then.
    if reads.versioning {
        match bucket_versioning(ctx, account, &source.bucket).await {
            Err(e) if e.code.as_deref() == Some("NoSuchBucket") => {
                let resource = format!("bucket {}", source.bucket);
                out.push(Finding::new(account, &resource, "exists", "true", "false"));
                return Ok(out);
            }
            other => out.extend(crate::tasks::versioning::findings(
                account,
                &source.bucket,
                other?.as_deref(),
            )),
        }
    }
    let arn = role_arn
        .map(str::to_string)
        .unwrap_or_else(|| ctx.setting.role_arn(account, &source.role_name));
    let trail = async {
        match source.trail.as_ref().filter(|_| reads.trail) {
            Some(name) => Ok::<_, TaskError>(
                bucket_check::read_trail(ctx, source, name)
                    .await?
                    .drift(source)
                    .map(|d| d.finding(source, name)),
            ),
            None => Ok(None),
        }
    };
    let replication = async {
        if !reads.replication {
            return Ok(Vec::new());
        }
        let live = replication::live_replication(ctx, source).await?;
        Ok::<_, TaskError>(replication::findings(ctx, source, &arn, live.as_ref()))
    };
    let role = async {
        if !reads.role {
            return Ok(Vec::new());
        }
        role_stack::findings(ctx, source, &arn).await
    };
    let grant = async {
        if !reads.grant {
            return Ok(Vec::new());
        }
        // A missing archive bucket is the archive's own finding; here it means no grant either.
        let policy = match archive_policy(ctx).await {
            Err(e) if e.code.as_deref() == Some("NoSuchBucket") => None,
            other => other?,
        };
        Ok::<_, TaskError>(grant::findings(ctx, source, &arn, policy.as_ref()))
    };
    // The reads are independent: made side by side, the check costs one round trip or two.
    let (trail, replication, role, grant) = tokio::try_join!(trail, replication, role, grant)?;
    out.extend(trail);
    for part in [replication, role, grant] {
        out.extend(part);
    }
    Ok(out)
}

/// Compares the archive with the inventory: bucket owned, Object Lock, versioning.
pub async fn archive_findings(ctx: &StepContext) -> Result<Vec<Finding>, TaskError> {
    let archive = &ctx.setting.archive;
    let live = archive_bucket::read_archive(ctx).await?;
    let mut out = archive_bucket::findings(ctx, live);
    if live == archive_bucket::ArchiveLive::Missing {
        return Ok(out);
    }
    let versioning = bucket_versioning(ctx, &archive.account_id, &archive.bucket).await?;
    out.extend(crate::tasks::versioning::findings(
        &archive.account_id,
        &archive.bucket,
        versioning.as_deref(),
    ));
    Ok(out)
}
