//! The article's end-to-end check as one probe per account: a small canary object written under
//! the replicated prefix of the source bucket, then polled (with backoff) until the source
//! reports `COMPLETED` and the archive holds the copy with `REPLICA`, or a timeout passes. The
//! copy must also be kept as the inventory says: in the replicas' storage class, and locked with
//! `[archive] retention`'s mode until at least the write plus its period.
//!
//! The canary is the only thing `verify` writes. It is never deleted: the archive keeps log
//! objects under Object Lock, and the source copy is a log-sized object under `AWSLogs/`.

use crate::checks::{Known, Reads, archive_findings, source_findings, source_verdict};
use crate::delivery::Verdict;
use crate::errors::{classify, http_status};
use crate::logs::SourceLogs;
use crate::spec::{Retention, RetentionPeriod, SourceSpec};
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
    /// The copy arrived, but not as the inventory says it must be kept: not locked with
    /// `[archive] retention`'s mode for its period, or in another storage class.
    Unprotected,
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
    /// The archive copy's storage class (`STANDARD_IA`), if the copy exists.
    pub replica_storage_class: Option<String>,
    /// The archive copy's Object Lock mode (`GOVERNANCE`, `COMPLIANCE`), if it is locked.
    pub replica_lock_mode: Option<String>,
    /// Until when the archive copy is locked (RFC 3339), if it is.
    pub replica_retain_until: Option<String>,
    /// From the write to the last observation.
    pub elapsed_ms: u64,
    /// For a failed or pending canary: what is likely wrong, led by the delivery check's
    /// verdict; then the checks that failed, or AWS's documented reasons when every check passes
    /// and no refusal is predicted.
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
    let written = SystemTime::now();
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
        replica_storage_class: None,
        replica_lock_mode: None,
        replica_retain_until: None,
        elapsed_ms: 0,
        causes: Vec::new(),
    };
    loop {
        observe(ctx, source, written, &mut report).await?;
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
    if report.outcome == CanaryOutcome::Unprotected {
        return Ok(report);
    }
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
    written: SystemTime,
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
            let Some(replica) = replica(ctx, &key).await? else {
                return Ok(());
            };
            report.replica_status = replica.status.clone();
            report.replica_storage_class = Some(replica.storage_class.clone());
            report.replica_lock_mode = replica.lock_mode.clone();
            report.replica_retain_until = replica
                .retain_until
                .map(|t| humantime::format_rfc3339_seconds(t).to_string());
            if replica.status.as_deref() == Some("REPLICA") {
                report.causes = protection(
                    ctx.setting.archive.retention,
                    &source.storage_class,
                    written,
                    &replica,
                );
                report.outcome = if report.causes.is_empty() {
                    CanaryOutcome::Replicated
                } else {
                    CanaryOutcome::Unprotected
                };
            }
        }
        _ => {}
    }
    Ok(())
}

/// What HeadObject says of the archive copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// `x-amz-replication-status` (`REPLICA`).
    pub status: Option<String>,
    /// The storage class (`STANDARD` when S3 names none).
    pub storage_class: String,
    /// The Object Lock mode, if locked.
    pub lock_mode: Option<String>,
    /// Until when it is locked.
    pub retain_until: Option<SystemTime>,
}

/// The archive copy, `None` while there is none.
async fn replica(ctx: &StepContext, key: &str) -> Result<Option<Replica>, TaskError> {
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
        Ok(r) => Ok(Some(Replica {
            status: r.replication_status().map(|s| s.as_str().to_string()),
            // S3 names no storage class for STANDARD objects (HeadObject, x-amz-storage-class).
            storage_class: r
                .storage_class()
                .map_or("STANDARD", |c| c.as_str())
                .to_string(),
            lock_mode: r.object_lock_mode().map(|m| m.as_str().to_string()),
            retain_until: r
                .object_lock_retain_until_date()
                .and_then(|d| SystemTime::try_from(*d).ok()),
        })),
        Err(e) if http_status(&e) == Some(404) => Ok(None),
        Err(e) => Err(classify("HeadObject", key, e, &[])),
    }
}

/// How the copy falls short of what the inventory says the archive keeps: the replicas'
/// storage class, and `[archive] retention`'s lock (its mode, until at least the write plus its
/// period: S3 counts a default retention from the version's creation, User Guide "Object Lock":
/// "Bucket configuration"). Empty when it is kept as it should be.
pub fn protection(
    retention: Option<Retention>,
    storage_class: &str,
    written: SystemTime,
    replica: &Replica,
) -> Vec<String> {
    let mut short = Vec::new();
    if replica.storage_class != storage_class {
        short.push(format!(
            "the archive copy is in storage class {}, not {storage_class} as the inventory's storage_class says",
            replica.storage_class
        ));
    }
    let Some(retention) = retention else {
        return short;
    };
    let mode = retention.mode.as_str();
    // A year is counted as 365 days here; S3 counts calendar years, a day more in a leap year.
    let slack = match retention.period {
        RetentionPeriod::Days(_) => Duration::from_secs(600),
        RetentionPeriod::Years(_) => Duration::from_secs(2 * 86_400),
    };
    let period = Duration::from_secs(retention.period.days().max(0) as u64 * 86_400);
    let least = written + period - slack;
    match (&replica.lock_mode, replica.retain_until) {
        (Some(found), Some(until)) if found == mode && until >= least => {}
        (Some(found), Some(until)) => short.push(format!(
            "the archive copy is locked {found} until {}, not {mode} for {} as [archive] retention says",
            humantime::format_rfc3339_seconds(until),
            retention.period
        )),
        _ => short.push(format!(
            "the archive copy is not locked: [archive] retention says {mode} for {} (the bucket's default retention applies to versions written after it is set)",
            retention.period
        )),
    }
    short
}

/// What probably keeps the canary from the archive, led by the delivery check's verdict (from
/// the documents the checks below just read, no request of its own): a predicted refusal names
/// the request, policy, statement, condition and fix; a predicted delivery says the cause lies
/// outside what the check sees. Then the checks that fail (the role's trust, the destination
/// bucket, its versioning, the policy's principal, the rule), or, when all pass, AWS's
/// documented replication failure reasons.
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
    let mut read = true;
    match source_findings(ctx, source, Known::default(), Reads::all()).await {
        // The delivery finding is the verdict, which leads below: not repeated here.
        Ok(findings) => causes.extend(findings.iter().filter(|f| f.delivery.is_none()).map(|f| {
            format!(
                "{} {}: expected {}, found {}",
                f.resource, f.field, f.expected, f.actual
            )
        })),
        Err(e) => {
            read = false;
            causes.push(format!(
                "account {} could not be read: {}",
                source.account_id, e.message
            ))
        }
    }
    // Only once source_findings read the account do the documents hold its policies.
    let verdict = match read {
        true => source_verdict(ctx, source).await.ok(),
        false => None,
    };
    let lead = verdict.as_ref().map(|v| match v {
        Verdict::WouldFail(_) => format!("the delivery check says S3 {}", v.line()),
        Verdict::Delivers => "the delivery check predicted delivery from the policies read, so the cause is \
             outside what it sees (service control policies, permission boundaries, KMS grants, \
             Block Public Access, the source bucket's own policy)"
            .to_string(),
        Verdict::Unknown { what } => format!(
            "the delivery check could not decide ({what}), so it predicts neither delivery nor refusal"
        ),
    });
    let refused = matches!(verdict, Some(Verdict::WouldFail(_)));
    // A predicted refusal is the cause: "every setting checks out" would contradict it.
    if causes.is_empty() && !refused {
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
    if let Some(lead) = lead {
        causes.insert(0, lead);
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::{Replica, canary_body, protection};
    use crate::spec::{Retention, RetentionMode, RetentionPeriod};
    use std::time::{Duration, SystemTime};

    #[test]
    fn a_copy_counts_only_locked_for_the_retention_and_in_the_storage_class() {
        let written = SystemTime::now();
        let retention = Some(Retention {
            mode: RetentionMode::Governance,
            period: RetentionPeriod::Days(30),
        });
        let locked = Replica {
            status: Some("REPLICA".into()),
            storage_class: "STANDARD_IA".into(),
            lock_mode: Some("GOVERNANCE".into()),
            retain_until: Some(written + Duration::from_secs(30 * 86_400)),
        };
        assert_eq!(
            protection(retention, "STANDARD_IA", written, &locked),
            Vec::<String>::new()
        );
        let short = Replica {
            retain_until: Some(written + Duration::from_secs(86_400)),
            ..locked.clone()
        };
        let why = protection(retention, "STANDARD_IA", written, &short);
        assert!(why[0].contains("not GOVERNANCE for 30 days"), "{why:?}");
        let unlocked = Replica {
            lock_mode: None,
            retain_until: None,
            ..locked.clone()
        };
        assert!(protection(retention, "STANDARD_IA", written, &unlocked)[0].contains("not locked"));
        assert!(protection(None, "STANDARD_IA", written, &unlocked).is_empty());
        let standard = Replica {
            storage_class: "STANDARD".into(),
            ..locked
        };
        assert!(
            protection(retention, "STANDARD_IA", written, &standard)[0]
                .contains("storage class STANDARD, not STANDARD_IA")
        );
    }

    #[test]
    fn the_canary_body_is_json_naming_its_key_whatever_the_prefix_holds() {
        let key = "logs \"quoted\" \\ {}/222222222222/trailhub-canary/20261129T000000Z";
        let body: serde_json::Value =
            serde_json::from_slice(&canary_body(key)).expect("the body is JSON");
        assert_eq!(body, serde_json::json!({ "trailhub-canary": key }));
    }
}
