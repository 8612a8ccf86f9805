//! Where and how a source account's logs are written, as live state says: the bucket's region,
//! the trails that deliver to it and their key prefixes, and the KMS keys that encrypt them.
//!
//! `S/bucket-check` reads it ([`discover`]) before anything is created in the account, and every
//! later step follows it: the rules' filters (one per prefix), the role's permissions (the
//! source keys, the archive key), the least-privilege grants, the canary. `plan` and `verify`,
//! which run without bucket-check's outputs, read it the same way.
//!
//! Facts of AWS this relies on: CloudTrail writes under `<S3KeyPrefix>/AWSLogs/<account>/…`
//! (`AWSLogs/…` without a prefix); `DescribeTrails` with shadow trails lists, in one region, the
//! multi-region trails whose home region is another, whose status `GetTrailStatus` answers only
//! by ARN there; a trail's `KmsKeyId` and a bucket's default `aws:kms` encryption make its log
//! objects SSE-KMS, which S3 replicates only when the rule opts in.

use crate::errors::{classify, service_code};
use crate::rules::KeptRules;
use crate::spec::{ExistingReplication, SourceSpec};
use crate::tasks::{StepContext, call};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use trailhub_engine::TaskError;

/// Where and how a source's logs are written (bucket-check's outputs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceLogs {
    /// The CloudTrail bucket.
    pub bucket: String,
    /// Its default encryption algorithm (`AES256`, `aws:kms`, `aws:kms:dsse`).
    pub encryption: String,
    /// The trail the inventory pins, if it does.
    pub trail: Option<String>,
    /// The bucket's region (format 1 journaled none: the inventory's region then).
    #[serde(default)]
    pub region: Option<String>,
    /// The key prefixes the trails deliver under, sorted: each one rule.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// The ARNs of the trails that deliver to the bucket and are logging.
    #[serde(default)]
    pub trails: Vec<String>,
    /// The KMS keys (ARNs) that encrypt the logs: the trails' and the bucket's default.
    #[serde(default)]
    pub kms_keys: Vec<String>,
    /// Whether the bucket's default encryption uses an S3 Bucket Key (the KMS encryption
    /// context is then the bucket's ARN, not the object's).
    #[serde(default)]
    pub bucket_key: bool,
    /// The replication rules found on the bucket that are not trailhub's and that it keeps
    /// beside its own (`existing_replication = "merge"`): what the role must grant them.
    #[serde(default)]
    pub kept: Option<KeptRules>,
}

impl SourceLogs {
    /// Whether the logs are SSE-KMS encrypted (the rule and the role must opt in).
    pub fn kms(&self) -> bool {
        !self.kms_keys.is_empty()
    }

    /// The key prefixes of this account's own logs: `<prefix><account>/` under each of its
    /// prefixes (CloudTrail writes `<prefix><account>/CloudTrail/…` and `…/CloudTrail-Digest/…`).
    /// Replication rules filter on them, so that a member's bucket never offers the archive
    /// another account's keys.
    pub fn own_prefixes(&self, account: &str) -> Vec<String> {
        self.prefixes
            .iter()
            .map(|p| format!("{p}{account}/"))
            .collect()
    }

    /// The bucket's region, the inventory's when none was journaled.
    pub fn region<'a>(&'a self, ctx: &'a StepContext) -> &'a str {
        self.region.as_deref().unwrap_or(&ctx.setting.region)
    }
}

/// One trail that delivers to the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Delivering {
    arn: String,
    prefix: String,
    kms_key: Option<String>,
    logging: bool,
    organization: bool,
}

/// The key prefix a trail writes under: `<S3KeyPrefix>/AWSLogs/`, or `AWSLogs/`.
pub fn trail_prefix(s3_key_prefix: Option<&str>) -> String {
    match s3_key_prefix.map(|p| p.trim_end_matches('/')) {
        Some(p) if !p.is_empty() => format!("{p}/AWSLogs/"),
        _ => "AWSLogs/".to_string(),
    }
}

/// Reads where and how `s`'s logs are written, and fails with what to do when replication
/// could not copy them: no trail delivering to the bucket, a stopped trail, a prefix that
/// contradicts the trails, a source key whose policy does not let IAM grant it.
pub async fn discover(ctx: &StepContext, s: &SourceSpec) -> Result<SourceLogs, TaskError> {
    let region = ctx
        .bucket_region(&s.account_id, &s.bucket)
        .await
        .map_err(|e| missing_bucket(s, e))?;
    let (encryption, trails) = tokio::join!(
        bucket_encryption(ctx, s, &region),
        delivering_trails(ctx, s)
    );
    let encryption = encryption?;
    let trails = trails?;
    let logging: Vec<&Delivering> = trails.iter().filter(|t| t.logging).collect();
    if logging.is_empty() {
        return Err(not_logging(s, &trails));
    }
    if let Some(org) = logging.iter().find(|t| t.organization) {
        return Err(organization_trail(s, org));
    }
    let mut prefixes: Vec<String> = logging.iter().map(|t| t.prefix.clone()).collect();
    prefixes.sort();
    prefixes.dedup();
    check_prefixes(s, &logging, &prefixes)?;
    if let Some(want) = &s.prefix
        && prefixes.iter().any(|p| p != want)
    {
        return Err(TaskError::fatal(format!(
            "the inventory's prefix `{want}` for account {} contradicts its trails, which write under {}",
            s.account_id,
            prefixes.join(", ")
        ))
        .with_code("PrefixMismatch")
        .with_hint("remove `prefix` for this source (trailhub follows the trails' prefixes), or set it to theirs"));
    }
    let mut kms_keys: Vec<String> = logging.iter().filter_map(|t| t.kms_key.clone()).collect();
    kms_keys.extend(encryption.key.clone());
    kms_keys.sort();
    kms_keys.dedup();
    let kms_keys = crate::source_keys::check(ctx, s, kms_keys, &region).await?;
    let kept = kept_rules(ctx, s).await?;
    Ok(SourceLogs {
        bucket: s.bucket.clone(),
        encryption: encryption.algorithm,
        trail: s.trail.clone(),
        region: Some(region),
        prefixes,
        trails: logging.iter().map(|t| t.arn.clone()).collect(),
        kms_keys,
        bucket_key: encryption.bucket_key,
        kept,
    })
}

/// The most key prefixes one account's trails may make trailhub grant: each is a resource of
/// the archive policy, shared by every member within S3's 20 KB.
pub const MAX_PREFIXES: usize = 4;
/// The longest key prefix trailhub grants (CloudTrail allows 200 characters of S3KeyPrefix).
pub const MAX_PREFIX_LEN: usize = 128;

/// What a member's trails say is checked as the inventory's `prefix` is, since it becomes a
/// resource of the shared archive policy: a literal prefix (no `*`, `?`, `$`, which a policy
/// would read as a wildcard or a variable), not reaching into another account's folder
/// (`AWSLogs/<another account>/`: a least-privilege grant there would let this member write
/// under the other's keys), and a bounded number and length.
fn check_prefixes(
    s: &SourceSpec,
    trails: &[&Delivering],
    prefixes: &[String],
) -> Result<(), TaskError> {
    let refuse = |why: String, hint: &str| {
        Err(TaskError::fatal(why)
            .with_code("UnsafeTrailPrefix")
            .with_hint(hint.to_string()))
    };
    for prefix in prefixes {
        let trail = trails
            .iter()
            .find(|t| &t.prefix == prefix)
            .map_or("a trail", |t| t.arn.as_str());
        if let Some(c) = prefix.chars().find(|c| matches!(c, '*' | '?' | '$')) {
            return refuse(
                format!(
                    "trail {trail} of account {} writes under `{prefix}`, whose `{c}` an S3 policy would read as a wildcard or a variable",
                    s.account_id
                ),
                "give the trail a key prefix of letters, digits and `/-_.` only (aws cloudtrail update-trail --s3-key-prefix), or pin `trail` to another; then `trailhub resume`",
            );
        }
        if let Some(other) = foreign_account(prefix, &s.account_id) {
            return refuse(
                format!(
                    "trail {trail} of account {} writes under `{prefix}`, inside account {other}'s folder AWSLogs/{other}/: granting it would let account {} write among {other}'s logs",
                    s.account_id, s.account_id
                ),
                "give the trail a key prefix outside AWSLogs/<account>/ (aws cloudtrail update-trail --s3-key-prefix), or pin `trail` to another; then `trailhub resume`",
            );
        }
        if prefix.len() > MAX_PREFIX_LEN {
            return refuse(
                format!(
                    "trail {trail} of account {} writes under a key prefix of {} characters (`{prefix}`): trailhub grants prefixes of at most {MAX_PREFIX_LEN}, the archive policy being shared by every member within 20 KB",
                    s.account_id,
                    prefix.len()
                ),
                "shorten the trail's key prefix, or pin `trail` to another; then `trailhub resume`",
            );
        }
    }
    if prefixes.len() > MAX_PREFIXES {
        return refuse(
            format!(
                "the trails of account {} write under {} key prefixes ({}): trailhub grants at most {MAX_PREFIXES} per account, the archive policy being shared by every member within 20 KB",
                s.account_id,
                prefixes.len(),
                prefixes.join(", ")
            ),
            "pin `trail` for this source to the trail whose logs the archive must hold, or give the trails one prefix; then `trailhub resume`",
        );
    }
    Ok(())
}

/// The account of an `AWSLogs/<12 digits>/` folder in `prefix` that is not `own`, if any.
fn foreign_account<'a>(prefix: &'a str, own: &str) -> Option<&'a str> {
    prefix.match_indices("AWSLogs/").find_map(|(i, m)| {
        let rest = &prefix[i + m.len()..];
        let id = rest.get(..12)?;
        let digits = id.chars().all(|c| c.is_ascii_digit());
        (digits && rest[12..].starts_with('/') && id != own).then_some(id)
    })
}

/// For a source that merges, the rules that are not trailhub's on its bucket (read before the
/// role is made, whose policy must grant what they need); refused when S3 would not let them
/// sit beside trailhub's. A source that refuses them is checked by `S/replication` itself.
async fn kept_rules(ctx: &StepContext, s: &SourceSpec) -> Result<Option<KeptRules>, TaskError> {
    if s.existing_replication != ExistingReplication::Merge {
        return Ok(None);
    }
    let live = crate::replication_doc::live(ctx, s).await?;
    if let Some(e) = crate::rules::first_schema(s, live.as_ref()) {
        return Err(e);
    }
    Ok(KeptRules::of(live.as_ref()))
}

/// The source bucket does not exist: what to do, said for a source.
fn missing_bucket(s: &SourceSpec, e: TaskError) -> TaskError {
    if e.code.as_deref() != Some("NoSuchBucket") {
        return e;
    }
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

/// No trail delivering to the bucket is logging: nothing reaches it, nor the archive.
fn not_logging(s: &SourceSpec, trails: &[Delivering]) -> TaskError {
    let names: Vec<&str> = trails.iter().map(|t| t.arn.as_str()).collect();
    let starts: Vec<String> = trails
        .iter()
        .map(|t| {
            let name = t.arn.rsplit("trail/").next().unwrap_or(&t.arn);
            format!("aws cloudtrail start-logging --name {name}")
        })
        .collect();
    TaskError::fatal(format!(
        "no trail delivering to bucket {} in account {} is logging ({}): nothing would reach its bucket, nor the archive",
        s.bucket,
        s.account_id,
        names.join(", ")
    ))
    .with_code("TrailNotLogging")
    .with_hint(format!(
        "start it ({}), then `trailhub resume`",
        starts.join("; ")
    ))
}

/// An organization trail writes each member account's logs under
/// `<prefix>AWSLogs/<organization id>/<account>/` (CloudTrail User Guide, "Creating a trail for an
/// organization"), not under `<prefix>AWSLogs/<account>/`, where trailhub's per-account grants,
/// key contexts and rules expect one account's logs: refused, naming the layout.
fn organization_trail(s: &SourceSpec, trail: &Delivering) -> TaskError {
    TaskError::fatal(format!(
        "trail {} delivering to bucket {} in account {} is an organization trail: it writes under {}<organization id>/<account>/, a layout trailhub's per-account grants do not follow",
        trail.arn, s.bucket, s.account_id, trail.prefix
    ))
    .with_code("OrganizationTrail")
    .with_hint("an organization's logs are gathered by its organization trail, not by trailhub: pin `trail` for this source to a trail of the account's own (not an organization trail), or leave the account out of the inventory")
}

/// A bucket's default encryption.
struct Encryption {
    algorithm: String,
    key: Option<String>,
    bucket_key: bool,
}

/// The bucket's default encryption (`AES256` when none is configured: S3 applies SSE-S3 to
/// every bucket by default), with its KMS key when it is `aws:kms`.
async fn bucket_encryption(
    ctx: &StepContext,
    s: &SourceSpec,
    region: &str,
) -> Result<Encryption, TaskError> {
    let clients = ctx.accounts.get(&s.account_id).await?;
    let result = call(
        &s.account_id,
        "s3",
        "GetBucketEncryption",
        &s.bucket,
        clients
            .s3_in(region)
            .get_bucket_encryption()
            .bucket(&s.bucket)
            .expected_bucket_owner(&s.account_id)
            .send(),
    )
    .await;
    let out = match result {
        Ok(out) => out,
        Err(e) if service_code(&e) == Some("ServerSideEncryptionConfigurationNotFoundError") => {
            return Ok(Encryption {
                algorithm: "AES256".into(),
                key: None,
                bucket_key: false,
            });
        }
        Err(e) => return Err(classify("GetBucketEncryption", &s.bucket, e, &[])),
    };
    let rules = out
        .server_side_encryption_configuration()
        .map(|c| c.rules())
        .unwrap_or_default();
    let rule = rules
        .iter()
        .find(|r| r.apply_server_side_encryption_by_default().is_some());
    let default = rule.and_then(|r| r.apply_server_side_encryption_by_default());
    let algorithm = default.map_or("AES256".to_string(), |d| {
        d.sse_algorithm().as_str().to_string()
    });
    let key = default
        .filter(|_| algorithm.starts_with("aws:kms"))
        // Without a key of its own, aws:kms uses the AWS managed key `aws/s3`, which no other
        // account may use: its objects cannot be decrypted by a cross-account replica.
        .map(|d| d.kms_master_key_id().unwrap_or("alias/aws/s3").to_string());
    Ok(Encryption {
        algorithm,
        key,
        bucket_key: rule.and_then(|r| r.bucket_key_enabled()) == Some(true),
    })
}

/// The trails that deliver to the bucket: the pinned one (by name or ARN), or every one whose
/// bucket it is; each with its prefix, KMS key and whether it is logging.
async fn delivering_trails(
    ctx: &StepContext,
    s: &SourceSpec,
) -> Result<Vec<Delivering>, TaskError> {
    let clients = ctx.accounts.get(&s.account_id).await?;
    let wanted = s.trail.as_deref().unwrap_or(&s.bucket);
    let mut request = clients
        .cloudtrail
        .describe_trails()
        .include_shadow_trails(true);
    if let Some(trail) = &s.trail {
        request = request.trail_name_list(trail);
    }
    let out = call(
        &s.account_id,
        "cloudtrail",
        "DescribeTrails",
        wanted,
        request.send(),
    )
    .await
    .map_err(|e| classify("DescribeTrails", wanted, e, &[]))?;
    let found: Vec<_> = out
        .trail_list()
        .iter()
        .filter(|t| match &s.trail {
            Some(pin) => {
                t.name() == Some(pin.as_str())
                    || t.trail_arn()
                        .is_some_and(|a| a == pin || a.ends_with(&format!(":trail/{pin}")))
            }
            None => t.s3_bucket_name() == Some(s.bucket.as_str()),
        })
        .collect();
    if found.is_empty() {
        return Err(no_trail(ctx, s));
    }
    if let (Some(pin), Some(t)) = (&s.trail, found.first())
        && t.s3_bucket_name() != Some(s.bucket.as_str())
    {
        return Err(TaskError::fatal(format!(
            "trail {pin} in account {} logs to bucket {}, not to {}",
            s.account_id,
            t.s3_bucket_name().unwrap_or_default(),
            s.bucket
        ))
        .with_code("TrailBucketMismatch")
        .with_hint("set this source's `bucket` to the trail's bucket, or `trail` to the trail that logs to it"));
    }
    let mut out = Vec::new();
    for t in found {
        let arn = t.trail_arn().unwrap_or_default().to_string();
        // By ARN: a shadow trail (a multi-region trail of another home region) answers only so.
        let status = call(
            &s.account_id,
            "cloudtrail",
            "GetTrailStatus",
            &arn,
            clients.cloudtrail.get_trail_status().name(&arn).send(),
        )
        .await
        .map_err(|e| classify("GetTrailStatus", &arn, e, &[]))?;
        out.push(Delivering {
            prefix: trail_prefix(t.s3_key_prefix()),
            kms_key: t.kms_key_id().map(str::to_string),
            logging: status.is_logging() == Some(true),
            organization: t.is_organization_trail() == Some(true),
            arn,
        });
    }
    Ok(out)
}

fn no_trail(ctx: &StepContext, s: &SourceSpec) -> TaskError {
    match &s.trail {
        Some(trail) => TaskError::fatal(format!(
            "trail {trail} not found in account {} ({})",
            s.account_id, ctx.setting.region
        ))
        .with_code("TrailNotFound")
        .with_hint("set `trail` for this source to the trail that logs to its bucket (its name, or its ARN for a trail of another region), or remove `trail` to follow every trail that does"),
        None => TaskError::fatal(format!(
            "no trail in account {} delivers to bucket {} (trails of region {} and multi-region trails were looked at): nothing would reach the archive",
            s.account_id, s.bucket, ctx.setting.region
        ))
        .with_code("NoTrail")
        .with_hint("create the account's trail, or set `bucket` to the bucket its trail delivers to, or `trail` to a trail's ARN of another region; then `trailhub resume`"),
    }
}

/// Whether a finding-style reading of the trails is what verify reports (rather than an
/// unreadable account): the trail is missing, elsewhere or stopped.
pub(crate) fn is_trail_drift(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "TrailNotFound"
                | "NoTrail"
                | "TrailBucketMismatch"
                | "TrailNotLogging"
                | "PrefixMismatch"
                | "OrganizationTrail"
                | "UnsafeTrailPrefix"
        )
    )
}

/// A key policy's statements, whether `Statement` is a list or one object.
pub(crate) fn statements(policy: &Value) -> Vec<&Value> {
    match policy.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trail(prefix: &str) -> Delivering {
        Delivering {
            arn: "arn:aws:cloudtrail:ap-northeast-1:222222222222:trail/Members".into(),
            prefix: prefix.into(),
            kms_key: None,
            logging: true,
            organization: false,
        }
    }

    fn checked(prefixes: &[&str]) -> Result<(), TaskError> {
        let s = SourceSpec::example();
        let trails: Vec<Delivering> = prefixes.iter().map(|p| trail(p)).collect();
        let refs: Vec<&Delivering> = trails.iter().collect();
        let list: Vec<String> = prefixes.iter().map(|p| p.to_string()).collect();
        check_prefixes(&s, &refs, &list)
    }

    #[test]
    fn a_trail_prefix_reaching_into_another_accounts_folder_is_refused() {
        assert!(checked(&["AWSLogs/", "org/AWSLogs/"]).is_ok());
        let e = checked(&["AWSLogs/333333333333/CloudTrail/us-east-1/2025/01/01/AWSLogs/"])
            .expect_err("inside another account's tree");
        assert_eq!(e.code.as_deref(), Some("UnsafeTrailPrefix"));
        assert!(
            e.message.contains("account 333333333333's folder"),
            "{}",
            e.message
        );
        assert!(
            checked(&["AWSLogs/222222222222/x/AWSLogs/"]).is_ok(),
            "its own folder"
        );
        assert!(checked(&["logs*/AWSLogs/"]).is_err());
        assert!(checked(&["${aws:username}/AWSLogs/"]).is_err());
        assert!(checked(&[&format!("{}/AWSLogs/", "a".repeat(130))]).is_err());
        let many = [
            "a/AWSLogs/",
            "b/AWSLogs/",
            "c/AWSLogs/",
            "d/AWSLogs/",
            "e/AWSLogs/",
        ];
        assert!(checked(&many[..4]).is_ok());
        let e = checked(&many).expect_err("five prefixes");
        assert!(e.message.contains("at most 4"), "{}", e.message);
    }
}
