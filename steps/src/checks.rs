//! Reading live state back and reporting where it differs from what the inventory implies: the
//! `S/verify` node at the end of `apply`, and `trailhub verify` (drift). Read-only.
//!
//! Nothing is compared here: each resource's module reads it and compares it once (the same
//! comparison its step's plan and apply use); this module chooses what to read and gathers the
//! findings.

use crate::delivery::Verdict;
use crate::logs::{SourceLogs, is_trail_drift};
use crate::spec::SourceSpec;
use crate::tasks::replication::Wanted;
use crate::tasks::{
    ArchiveKey, StepContext, archive_bucket, grant, key_grant, lifecycle, replication, retention,
    role_stack,
};
use crate::tasks::{archive_policy, bucket_versioning};
use trailhub_engine::TaskError;

pub use crate::drift::Finding;

/// Which of a source account's resources to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reads {
    /// The bucket's versioning (and so whether the bucket exists).
    pub versioning: bool,
    /// The replication configuration.
    pub replication: bool,
    /// The role stack and its role.
    pub role: bool,
    /// The archive policy's grant.
    pub grant: bool,
    /// The archive key's grant (SSE-KMS logs).
    pub key: bool,
}

impl Reads {
    /// Everything (`trailhub verify`).
    pub fn all() -> Reads {
        Reads {
            versioning: true,
            replication: true,
            role: true,
            grant: true,
            key: true,
        }
    }
}

/// What the caller already knows of a source (a run's earlier steps said it); what it does not
/// know is read.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Where and how its logs are written (bucket-check's outputs).
    pub logs: Option<SourceLogs>,
    /// Its role's ARN, as the stack reported it.
    pub role_arn: Option<String>,
    /// The archive key its replicas are encrypted with, when known (`Some(None)`: none needed).
    pub replica_key: Option<Option<String>>,
}

/// Compares a source account with the inventory: its trails and logs, versioning, replication
/// rules (every field), role (trust and inline policy), stack, and its principal in the archive
/// policy and key, as far as `reads` asks.
pub async fn source_findings(
    ctx: &StepContext,
    source: &SourceSpec,
    known: Known,
    reads: Reads,
) -> Result<Vec<Finding>, TaskError> {
    let account = source.account_id.as_str();
    let logs = match known.logs {
        Some(logs) => logs,
        None => match ctx.logs_of(source).await {
            Ok(logs) => logs,
            Err(e) => return unreadable_logs(source, e),
        },
    };
    let mut out = Vec::new();
    // The bucket's versioning is read first: its NoSuchBucket answer is the "bucket missing"
    // finding, and nothing else is worth reading then.
    if reads.versioning {
        match bucket_versioning(ctx, account, &source.bucket).await {
            Err(e) if e.code.as_deref() == Some("NoSuchBucket") => {
                return unreadable_logs(source, e);
            }
            other => out.extend(crate::tasks::versioning::findings(
                account,
                &source.bucket,
                other?.as_deref(),
            )),
        }
    }
    let arn = known
        .role_arn
        .unwrap_or_else(|| ctx.setting.role_arn(account, &source.role_name));
    let key = ArchiveKey::new(ctx.clone());
    let replica_key = match known.replica_key {
        Some(k) => k,
        None if logs.kms() => key.find().await?,
        None => None,
    };
    let want = Wanted {
        logs: &logs,
        role_arn: &arn,
        replica_key: replica_key.as_deref(),
    };
    let parts = tokio::try_join!(
        async {
            if !reads.replication {
                return Ok(Vec::new());
            }
            let live = replication::live_replication(ctx, source).await?;
            Ok(replication::findings(ctx, source, &want, live.as_ref()))
        },
        async {
            match reads.role {
                true => role_stack::findings(ctx, source, &logs, &arn).await,
                false => Ok(Vec::new()),
            }
        },
        grant_findings(ctx, source, &logs, &arn, reads.grant),
        async {
            match reads.key {
                true => key_grant::findings(ctx, source, &logs, &arn, &key).await,
                false => Ok(Vec::new()),
            }
        },
    )?;
    let (replication, role, grant, key) = parts;
    for part in [replication, role, grant, key] {
        out.extend(part);
    }
    if let verdict @ Verdict::WouldFail(_) = delivery(ctx, source, &logs, &arn) {
        out.push(Finding::delivery(account, verdict));
    }
    Ok(out)
}

/// The delivery check of `source` after [`source_findings`] read it (its logs and role as that
/// read them; no request of its own).
pub async fn source_verdict(ctx: &StepContext, source: &SourceSpec) -> Result<Verdict, TaskError> {
    let logs = ctx.logs_of(source).await?;
    let arn = ctx.setting.role_arn(&source.account_id, &source.role_name);
    Ok(delivery(ctx, source, &logs, &arn))
}

/// `plan`'s delivery check of `source`: of the documents its steps would write, laid over what
/// the plan read (no request of its own; the plan's reads filled the cache).
/// `archive_fresh`: the plan creates the archive bucket, so it has no policy yet.
pub async fn planned_verdict(
    ctx: &StepContext,
    source: &SourceSpec,
    archive_fresh: bool,
) -> Result<Verdict, TaskError> {
    let logs = ctx.logs_of(source).await?;
    let arn = ctx.setting.role_arn(&source.account_id, &source.role_name);
    let desired = ctx.documents.desired(&source.account_id);
    // The grant step is not planned while the role it names is still to be created: its grant
    // is laid over the archive policy the plan read here, as apply would write it.
    if desired.archive_policy_recorded().is_none() {
        let live = match ctx.documents.archive_policy_recorded() {
            Some(live) => live,
            None if archive_fresh => None,
            None => {
                return Ok(Verdict::Unknown {
                    what: "known once the archive bucket policy is read (apply reads it)".into(),
                });
            }
        };
        let grant = crate::tasks::grant::grant_of(ctx, source, &logs, arn.clone());
        desired.archive_policy(Some(&crate::policy::add(live.as_ref(), &grant).0));
    }
    Ok(crate::delivery::check_planned(
        &ctx.setting,
        &ctx.documents,
        &delivery_source(ctx, source, &logs, &arn),
    ))
}

fn delivery_source<'a>(
    ctx: &'a StepContext,
    source: &'a SourceSpec,
    logs: &'a SourceLogs,
    role_arn: &'a str,
) -> crate::delivery::Source<'a> {
    crate::delivery::Source {
        account: &source.account_id,
        bucket: &source.bucket,
        region: logs.region(ctx),
        role_arn,
        prefixes: logs.own_prefixes(&source.account_id),
        kms_keys: &logs.kms_keys,
        bucket_key: logs.bucket_key,
        other_member: None,
    }
}

/// The delivery check of `source` from the documents this process has read (no request of its
/// own): whether S3 would deliver a log written under each of its prefixes.
pub fn delivery(
    ctx: &StepContext,
    source: &SourceSpec,
    logs: &SourceLogs,
    role_arn: &str,
) -> Verdict {
    crate::delivery::check(
        &ctx.setting,
        &ctx.documents,
        &delivery_source(ctx, source, logs, role_arn),
    )
}

async fn grant_findings(
    ctx: &StepContext,
    source: &SourceSpec,
    logs: &SourceLogs,
    arn: &str,
    read: bool,
) -> Result<Vec<Finding>, TaskError> {
    if !read {
        return Ok(Vec::new());
    }
    // A missing archive bucket is the archive's own finding; here it means no grant either.
    let policy = match archive_policy(ctx).await {
        Err(e) if e.code.as_deref() == Some("NoSuchBucket") => None,
        other => other?,
    };
    Ok(grant::findings(ctx, source, logs, arn, policy.as_ref()))
}

/// The logs could not be read: a missing bucket or trail is a finding (what verify is for);
/// anything else makes the account unreadable.
fn unreadable_logs(source: &SourceSpec, e: TaskError) -> Result<Vec<Finding>, TaskError> {
    let account = source.account_id.as_str();
    let trail = source
        .trail
        .as_deref()
        .unwrap_or("delivering to the bucket");
    let trail_res = format!("trail {trail}");
    let finding = match e.code.as_deref() {
        Some("NoSuchBucket") => Finding::new(
            account,
            &format!("bucket {}", source.bucket),
            "exists",
            "true",
            "false",
        ),
        Some("TrailNotFound" | "NoTrail") => {
            Finding::new(account, &trail_res, "exists", "true", "false")
        }
        Some("TrailNotLogging") => Finding::new(account, &trail_res, "IsLogging", "true", "false"),
        Some("TrailBucketMismatch") => Finding::new(
            account,
            &trail_res,
            "S3BucketName",
            source.bucket.clone(),
            e.message,
        ),
        code if is_trail_drift(code) => Finding::new(
            account,
            &trail_res,
            "S3KeyPrefix",
            "the inventory's prefix",
            e.message,
        ),
        _ => return Err(e),
    };
    Ok(vec![finding])
}

/// Compares the archive with the inventory: bucket owned, Object Lock, versioning, the default
/// retention and trailhub's lifecycle rule (when the inventory sets them), and no deleted
/// principal left in its policy (S3 refuses every policy that keeps one, so no grant could be
/// written).
pub async fn archive_findings(ctx: &StepContext) -> Result<Vec<Finding>, TaskError> {
    let archive = &ctx.setting.archive;
    let live = archive_bucket::read_archive(ctx).await?;
    let mut out = archive_bucket::findings(ctx, &live);
    let archive_bucket::ArchiveLive::Owned { lock, .. } = &live else {
        return Ok(out);
    };
    let versioning = bucket_versioning(ctx, &archive.account_id, &archive.bucket).await?;
    out.extend(crate::tasks::versioning::findings(
        &archive.account_id,
        &archive.bucket,
        versioning.as_deref(),
    ));
    out.extend(retention::findings(ctx, lock));
    out.extend(lifecycle::findings(ctx).await?);
    if let Some(policy) = archive_policy(ctx).await? {
        let (ours, theirs) = crate::policy::stale_principals(&policy);
        let resource = format!("archive bucket {} policy", archive.bucket);
        let fixes = ours
            .into_iter()
            .map(|s| (s, "no deleted principal (`trailhub apply` drops it)"))
            .chain(theirs.into_iter().map(|s| {
                (
                    s,
                    "no deleted principal (not trailhub's statement: remove it by hand)",
                )
            }));
        for ((sid, id), fix) in fixes {
            out.push(Finding::new(
                &archive.account_id,
                &resource,
                &format!("Statement[{sid}].Principal.AWS"),
                fix,
                id,
            ));
        }
    }
    Ok(out)
}

/// The principals of trailhub's statements in the archive policy that none of `sources` (the
/// whole inventory) accounts for: an account off-boarded without a rollback, or a principal
/// someone added to a trailhub statement by hand. Each is drift, with the command that
/// removes it.
pub async fn unlisted_principal_findings(
    ctx: &StepContext,
    sources: &[SourceSpec],
) -> Result<Vec<Finding>, TaskError> {
    let archive = &ctx.setting.archive;
    let policy = match archive_policy(ctx).await {
        Ok(Some(policy)) => policy,
        Ok(None) => return Ok(Vec::new()),
        // A missing archive is its own finding (archive_findings): no policy to read then.
        Err(e) if e.code.as_deref() == Some("NoSuchBucket") => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let listed: Vec<String> = sources
        .iter()
        .map(|s| match ctx.setting.policy {
            crate::spec::PolicyMode::Accounts => {
                format!("arn:{}:iam::{}:root", ctx.setting.partition, s.account_id)
            }
            crate::spec::PolicyMode::Article | crate::spec::PolicyMode::LeastPrivilege => {
                ctx.setting.role_arn(&s.account_id, &s.role_name)
            }
        })
        .collect();
    let resource = format!("archive bucket {} policy", archive.bucket);
    Ok(crate::policy::unlisted_principals(&policy, &listed)
        .into_iter()
        .map(|(sid, principal)| {
            let account = principal
                .split(':')
                .nth(4)
                .filter(|a| a.len() == 12)
                .map(str::to_string);
            let fix = match account {
                Some(a) => format!(
                    "only the inventory's members (`trailhub rollback --account {a}` takes out what trailhub granted it; else remove it from the statement by hand)"
                ),
                None => "only the inventory's members (remove it from the statement by hand)".into(),
            };
            Finding::new(
                &archive.account_id,
                &resource,
                &format!("Statement[{sid}].Principal.AWS"),
                fix,
                principal,
            )
        })
        .collect())
}
