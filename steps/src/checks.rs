//! Reading live state back and comparing it with what the inventory implies, field by field:
//! the `S/verify` node at the end of `apply`, and `trailhub verify` (drift). Read-only.

use crate::errors::{classify, service_code};
use crate::policy;
use crate::replication_doc::{desired, diff};
use crate::spec::SourceSpec;
use crate::tasks::{StepContext, call};
use crate::template::{resolved_inline_policy, trust_policy};
use serde::Serialize;
use serde_json::Value;
use trailhub_engine::TaskError;

/// One difference between live state and the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The account.
    pub account: String,
    /// The resource, e.g. `bucket cm-members-cloudtrail-2222…` or `role S3ReplicationRole`.
    pub resource: String,
    /// The field, e.g. `Rules[0].Status`.
    pub field: String,
    /// What the inventory implies.
    pub expected: String,
    /// What is there.
    pub actual: String,
}

fn finding(
    account: &str,
    resource: &str,
    field: &str,
    expected: impl Into<String>,
    actual: impl Into<String>,
) -> Finding {
    Finding {
        account: account.to_string(),
        resource: resource.to_string(),
        field: field.to_string(),
        expected: expected.into(),
        actual: actual.into(),
    }
}

fn decode_policy(text: &str) -> Option<Value> {
    let decoded = percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()?;
    serde_json::from_str(&decoded).ok()
}

/// Compares a source account with the inventory: trail, versioning, replication rule (every
/// field), role (trust and inline policy), stack, and its principal in the archive policy.
/// `role_arn` is the role's ARN as the stack reported it, when known.
/// With `with_trail` false the trail is not read (the `S/verify` node: `bucket-check` checked
/// it in the same run).
pub async fn source_findings(
    ctx: &StepContext,
    source: &SourceSpec,
    role_arn: Option<&str>,
    with_trail: bool,
) -> Result<Vec<Finding>, TaskError> {
    let account = source.account_id.as_str();
    let clients = ctx.accounts.get(account).await?;
    let mut out = Vec::new();
    let bucket_res = format!("bucket {}", source.bucket);

    // The bucket's versioning is read first: its NoSuchBucket answer is the "bucket missing"
    // finding, without a HeadBucket of its own, and nothing else is worth reading then.
    let versioning = match crate::tasks::bucket_versioning(ctx, account, &source.bucket).await {
        Err(e) if e.code.as_deref() == Some("NoSuchBucket") => {
            out.push(finding(account, &bucket_res, "exists", "true", "false"));
            return Ok(out);
        }
        other => other?,
    };

    let arn = role_arn
        .map(str::to_string)
        .unwrap_or_else(|| ctx.setting.role_arn(account, &source.role_name));
    let trail = async {
        let mut out = Vec::new();
        if let Some(trail) = source.trail.as_ref().filter(|_| with_trail) {
            let trail_res = format!("trail {trail}");
            match crate::tasks::trail_check(ctx, source, trail).await {
                Ok(()) => {}
                Err(e) if e.code.as_deref() == Some("TrailNotLogging") => {
                    out.push(finding(account, &trail_res, "IsLogging", "true", "false"))
                }
                Err(e) if e.code.as_deref() == Some("TrailNotFound") => {
                    out.push(finding(account, &trail_res, "exists", "true", "false"))
                }
                Err(e) if e.code.as_deref() == Some("TrailBucketMismatch") => out.push(finding(
                    account,
                    &trail_res,
                    "S3BucketName",
                    source.bucket.clone(),
                    e.message,
                )),
                Err(e) => return Err(e),
            }
        }
        Ok::<_, TaskError>(out)
    };
    let versioning = async {
        let mut out = Vec::new();
        if versioning.as_deref() != Some("Enabled") {
            out.push(finding(
                account,
                &bucket_res,
                "Versioning.Status",
                "Enabled",
                versioning
                    .clone()
                    .unwrap_or_else(|| "(never enabled)".into()),
            ));
        }
        Ok::<_, TaskError>(out)
    };
    let replication = async {
        let mut out = Vec::new();
        let want = desired(&ctx.setting, source, &arn);
        match crate::tasks::bucket_replication(ctx, source).await? {
            None => out.push(finding(
                account,
                &bucket_res,
                "ReplicationConfiguration",
                "the article's rule",
                "(none)",
            )),
            Some(live) => {
                for (field, from, to) in diff(Some(&live), &want) {
                    out.push(finding(
                        account,
                        &bucket_res,
                        &format!("Replication.{field}"),
                        to,
                        from.unwrap_or_else(|| "(absent)".into()),
                    ));
                }
            }
        }
        Ok::<_, TaskError>(out)
    };
    let role = async {
        let mut out = Vec::new();
        let role_res = format!("role {}", source.role_name);
        let role = call(
            None,
            account,
            "iam",
            "GetRole",
            false,
            &source.role_name,
            clients.iam.get_role().role_name(&source.role_name).send(),
        )
        .await;
        match role {
            Ok(role) => {
                let role = role.role();
                let trust = role
                    .and_then(|r| r.assume_role_policy_document())
                    .and_then(decode_policy);
                let want_trust = trust_policy(&ctx.setting, source);
                if trust.as_ref().map(policy::normalize) != Some(policy::normalize(&want_trust)) {
                    out.push(finding(
                        account,
                        &role_res,
                        "AssumeRolePolicyDocument",
                        want_trust.to_string(),
                        trust
                            .map(|t| t.to_string())
                            .unwrap_or_else(|| "(unreadable)".into()),
                    ));
                }
                if let Some(r) = role
                    && r.arn() != arn
                {
                    out.push(finding(account, &role_res, "Arn", arn.clone(), r.arn()));
                }
                let inline = call(
                    None,
                    account,
                    "iam",
                    "GetRolePolicy",
                    false,
                    &source.role_name,
                    clients
                        .iam
                        .get_role_policy()
                        .role_name(&source.role_name)
                        .policy_name("S3ReplicationPolicy")
                        .send(),
                )
                .await;
                let want_inline = resolved_inline_policy(&ctx.setting, source);
                match inline {
                    Ok(p) => {
                        let live = decode_policy(p.policy_document());
                        if live.as_ref().map(policy::normalize)
                            != Some(policy::normalize(&want_inline))
                        {
                            out.push(finding(
                                account,
                                &role_res,
                                "S3ReplicationPolicy",
                                want_inline.to_string(),
                                live.map(|t| t.to_string())
                                    .unwrap_or_else(|| "(unreadable)".into()),
                            ));
                        }
                    }
                    Err(e) if service_code(&e) == Some("NoSuchEntity") => out.push(finding(
                        account,
                        &role_res,
                        "S3ReplicationPolicy",
                        "present",
                        "(none)",
                    )),
                    Err(e) => return Err(classify("GetRolePolicy", &source.role_name, e, &[])),
                }
            }
            Err(e) if service_code(&e) == Some("NoSuchEntity") => {
                out.push(finding(account, &role_res, "exists", "true", "false"))
            }
            Err(e) => return Err(classify("GetRole", &source.role_name, e, &[])),
        }
        Ok::<_, TaskError>(out)
    };
    let stack = async {
        let mut out = Vec::new();
        let stack_res = format!("stack {}", source.stack_name);
        let stacks = call(
            None,
            account,
            "cloudformation",
            "DescribeStacks",
            false,
            &source.stack_name,
            clients
                .cfn
                .describe_stacks()
                .stack_name(&source.stack_name)
                .send(),
        )
        .await;
        match stacks {
            Ok(out_stacks) => {
                let status = out_stacks
                    .stacks()
                    .first()
                    .and_then(|s| s.stack_status())
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|| "(none)".into());
                if !matches!(status.as_str(), "CREATE_COMPLETE" | "UPDATE_COMPLETE") {
                    out.push(finding(
                        account,
                        &stack_res,
                        "StackStatus",
                        "CREATE_COMPLETE or UPDATE_COMPLETE",
                        status,
                    ));
                }
            }
            Err(e) if service_code(&e) == Some("ValidationError") => {
                out.push(finding(account, &stack_res, "exists", "true", "false"))
            }
            Err(e) => return Err(classify("DescribeStacks", &source.stack_name, e, &[])),
        }
        Ok::<_, TaskError>(out)
    };
    let grant = async {
        let mut out = Vec::new();
        let grant = policy::Grant {
            mode: ctx.setting.policy,
            bucket_arn: ctx.setting.bucket_arn(&ctx.setting.archive.bucket),
            principal: arn.clone(),
            account: account.to_string(),
            prefix: source.prefix.clone(),
        };
        // A missing archive bucket is the archive's own finding; here it means no grant either.
        let archive_policy = match crate::tasks::archive_policy(ctx).await {
            Err(e) if e.code.as_deref() == Some("NoSuchBucket") => None,
            other => other?,
        };
        for sid in policy::missing(archive_policy.as_ref(), &grant) {
            out.push(finding(
                account,
                &format!("archive bucket {} policy", ctx.setting.archive.bucket),
                &format!("Statement[{sid}].Principal.AWS"),
                format!("includes {}", grant.listed_principal()),
                "(missing)",
            ));
        }
        Ok::<_, TaskError>(out)
    };
    // The reads are independent: made side by side, the check costs one round trip or two.
    let (trail, versioning, replication, role, stack, grant) =
        tokio::try_join!(trail, versioning, replication, role, stack, grant)?;
    for part in [trail, versioning, replication, role, stack, grant] {
        out.extend(part);
    }
    Ok(out)
}

/// Compares the archive with the inventory: bucket owned, Object Lock, versioning.
pub async fn archive_findings(ctx: &StepContext) -> Result<Vec<Finding>, TaskError> {
    let archive = &ctx.setting.archive;
    let account = archive.account_id.as_str();
    let res = format!("bucket {}", archive.bucket);
    let mut out = Vec::new();
    if !crate::tasks::bucket_owned(ctx, account, &archive.bucket).await? {
        out.push(finding(account, &res, "exists", "true", "false"));
        return Ok(out);
    }
    if !crate::tasks::bucket_object_lock(ctx, account, &archive.bucket).await? {
        out.push(finding(
            account,
            &res,
            "ObjectLockEnabled",
            "Enabled",
            "(not enabled)",
        ));
    }
    let versioning = crate::tasks::bucket_versioning(ctx, account, &archive.bucket).await?;
    if versioning.as_deref() != Some("Enabled") {
        out.push(finding(
            account,
            &res,
            "Versioning.Status",
            "Enabled",
            versioning.unwrap_or_else(|| "(never enabled)".into()),
        ));
    }
    Ok(out)
}
