//! The article's end-to-end check as one probe per account: a small canary object written under
//! the replicated prefix of the source bucket, then polled (with backoff) until the source
//! reports `COMPLETED` and the archive holds the copy with `REPLICA`, or a timeout passes.
//!
//! The canary is the only thing `verify` writes. It is never deleted: the archive keeps log
//! objects under Object Lock, and the source copy is a log-sized object under `AWSLogs/`.

use crate::checks::{Known, Reads, archive_findings, source_findings};
use crate::errors::{classify, http_status};
use crate::logs::SourceLogs;
use crate::spec::SourceSpec;
use crate::tasks::{StepContext, call};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use backoff::ExponentialBackoffBuilder;
use backoff::backoff::Backoff;
use serde::Serialize;
use std::time::{Duration, Instant, SystemTime};
use trailhub_engine::TaskError;

/// How a canary ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CanaryOutcome {
    /// The source says `COMPLETED` and the archive holds a `REPLICA`.
    Replicated,
    /// Not replicated before the timeout (`PENDING`, or no status at all).
    Pending,
    /// The source says `FAILED`.
    Failed,
}

/// One account's canary.
#[derive(Debug, Clone, Serialize)]
pub struct CanaryReport {
    /// The source account.
    pub account: String,
    /// The canary's key, in the source bucket and in the archive.
    pub key: String,
    /// How it ended.
    pub outcome: CanaryOutcome,
    /// The source object's last replication status (`PENDING`, `COMPLETED`, `FAILED`), if any.
    pub source_status: Option<String>,
    /// The archive copy's replication status (`REPLICA`), if the copy exists.
    pub replica_status: Option<String>,
    /// From the write to the last observation.
    pub elapsed_ms: u64,
    /// For a failed or pending canary: what is likely wrong (checks that failed, or AWS's
    /// documented reasons when every check passes).
    pub causes: Vec<String>,
}

/// How a canary polls.
#[derive(Debug, Clone)]
pub struct CanaryTiming {
    /// Give up after this long (RTC promises 15 minutes).
    pub timeout: Duration,
    /// The first delay between polls; delays grow (with jitter) up to `max_poll`.
    pub first_poll: Duration,
    /// The longest delay between polls.
    pub max_poll: Duration,
}

impl CanaryTiming {
    /// Polls from 5 s up to 60 s, for at most `timeout`.
    pub fn new(timeout: Duration) -> Self {
        CanaryTiming {
            timeout,
            first_poll: Duration::from_secs(5),
            max_poll: Duration::from_secs(60),
        }
    }
}

/// A compact UTC timestamp for the canary's key.
fn stamp() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect()
}

/// Writes `source`'s canary and waits for it to be replicated.
pub async fn canary(
    ctx: &StepContext,
    source: &SourceSpec,
    timing: &CanaryTiming,
) -> Result<CanaryReport, TaskError> {
    let account = source.account_id.as_str();
    let logs = ctx.logs_of(source).await?;
    let prefix = logs.prefixes.first().map_or("AWSLogs/", String::as_str);
    let key = format!("{prefix}{account}/trailhub-canary/{}", stamp());
    let started = Instant::now();
    write_canary(ctx, source, &logs, &key).await?;
    let mut backoff = ExponentialBackoffBuilder::new()
        .with_initial_interval(timing.first_poll)
        .with_max_interval(timing.max_poll)
        .with_multiplier(1.5)
        .with_randomization_factor(0.2)
        .with_max_elapsed_time(None)
        .build();
    let mut report = CanaryReport {
        account: account.to_string(),
        key: key.clone(),
        outcome: CanaryOutcome::Pending,
        source_status: None,
        replica_status: None,
        elapsed_ms: 0,
        causes: Vec::new(),
    };
    loop {
        observe(ctx, source, &mut report).await?;
        if report.outcome != CanaryOutcome::Pending {
            break;
        }
        // The last poll happens at the timeout, so that a copy arriving just in time is seen.
        let left = timing.timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        let delay = backoff.next_backoff().unwrap_or(timing.max_poll);
        tokio::time::sleep(delay.min(left)).await;
    }
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    if report.outcome != CanaryOutcome::Replicated {
        report.causes = likely_causes(ctx, source, &report).await;
    }
    Ok(report)
}

/// Writes the canary object under the replicated prefix of the source bucket, encrypted as the
/// trails' logs are (their KMS key, when they are SSE-KMS).
async fn write_canary(
    ctx: &StepContext,
    source: &SourceSpec,
    logs: &SourceLogs,
    key: &str,
) -> Result<(), TaskError> {
    let account = source.account_id.as_str();
    let s3 = ctx.s3_for(account, &source.bucket).await?;
    let body = canary_body(key);
    call(
        account,
        "s3",
        "PutObject",
        key,
        s3.put_object()
            .bucket(&source.bucket)
            .key(key)
            .expected_bucket_owner(account)
            .content_type("application/json")
            .set_server_side_encryption(logs.kms().then_some(ServerSideEncryption::AwsKms))
            .set_ssekms_key_id(logs.kms_keys.first().cloned())
            .body(ByteStream::from(body))
            .send(),
    )
    .await
    .map(|_| ())
    .map_err(|e| classify("PutObject", key, e, &[]))
}

/// The canary object's body, `{"trailhub-canary": "<key>"}`, built by serde: the key holds the
/// inventory's prefix, which may hold quotes or backslashes, and the body stays valid JSON.
fn canary_body(key: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "trailhub-canary": key }))
        .expect("a JSON object should serialize")
}

/// One poll: the source object's replication status and, once it says `COMPLETED`, the
/// archive copy's; sets the outcome when it is known.
async fn observe(
    ctx: &StepContext,
    source: &SourceSpec,
    report: &mut CanaryReport,
) -> Result<(), TaskError> {
    let account = source.account_id.as_str();
    let key = report.key.clone();
    let s3 = ctx.s3_for(account, &source.bucket).await?;
    let head = call(
        account,
        "s3",
        "HeadObject",
        &key,
        s3.head_object()
            .bucket(&source.bucket)
            .key(&key)
            .expected_bucket_owner(account)
            .send(),
    )
    .await
    .map_err(|e| classify("HeadObject", &key, e, &[]))?;
    report.source_status = head.replication_status().map(|s| s.as_str().to_string());
    match report.source_status.as_deref() {
        Some("FAILED") => report.outcome = CanaryOutcome::Failed,
        Some("COMPLETED") => {
            report.replica_status = replica_status(ctx, &key).await?;
            if report.replica_status.as_deref() == Some("REPLICA") {
                report.outcome = CanaryOutcome::Replicated;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The archive copy's replication status (`REPLICA`), `None` while there is no copy.
async fn replica_status(ctx: &StepContext, key: &str) -> Result<Option<String>, TaskError> {
    let archive = &ctx.setting.archive;
    let clients = ctx.accounts.get(&archive.account_id).await?;
    let replica = call(
        &archive.account_id,
        "s3",
        "HeadObject",
        key,
        clients
            .s3
            .head_object()
            .bucket(&archive.bucket)
            .key(key)
            .expected_bucket_owner(&archive.account_id)
            .send(),
    )
    .await;
    match replica {
        Ok(r) => Ok(r.replication_status().map(|s| s.as_str().to_string())),
        Err(e) if http_status(&e) == Some(404) => Ok(None),
        Err(e) => Err(classify("HeadObject", key, e, &[])),
    }
}

/// What probably keeps the canary from the archive: the checks that fail (the role's trust,
/// the destination bucket, its versioning, the policy's principal, the rule), or, when all
/// pass, AWS's documented replication failure reasons.
async fn likely_causes(
    ctx: &StepContext,
    source: &SourceSpec,
    report: &CanaryReport,
) -> Vec<String> {
    let mut causes = Vec::new();
    match archive_findings(ctx).await {
        Ok(findings) => causes.extend(findings.iter().map(|f| {
            format!(
                "archive {} {}: expected {}, found {}",
                f.resource, f.field, f.expected, f.actual
            )
        })),
        Err(e) => causes.push(format!("the archive could not be read: {}", e.message)),
    }
    match source_findings(ctx, source, Known::default(), Reads::all()).await {
        Ok(findings) => causes.extend(findings.iter().map(|f| {
            format!(
                "{} {}: expected {}, found {}",
                f.resource, f.field, f.expected, f.actual
            )
        })),
        Err(e) => causes.push(format!(
            "account {} could not be read: {}",
            source.account_id, e.message
        )),
    }
    if causes.is_empty() {
        let generic = if report.outcome == CanaryOutcome::Failed {
            "every setting checks out: S3's replication failure reasons are the role cannot be assumed by S3, \
             the destination bucket is missing or not versioned, the archive policy lacks the role, or the object is KMS-encrypted"
        } else if report.source_status.is_none() {
            "the source reported no replication status at all: S3 applies a rule to objects written after it exists; \
             an endpoint that does not replicate (a local emulator) never reports one"
        } else {
            "still PENDING: replication with RTC completes within 15 minutes; a longer --timeout may show it"
        };
        causes.push(generic.to_string());
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::canary_body;

    #[test]
    fn the_canary_body_is_json_naming_its_key_whatever_the_prefix_holds() {
        let key = "logs \"quoted\" \\ {}/222222222222/trailhub-canary/20261129T000000Z";
        let body: serde_json::Value =
            serde_json::from_slice(&canary_body(key)).expect("the body is JSON");
        assert_eq!(body, serde_json::json!({ "trailhub-canary": key }));
    }
}
