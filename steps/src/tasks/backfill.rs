//! `S/backfill` (`trailhub backfill`): an S3 Batch Replication job that copies to the archive
//! the source's logs that live replication never will: those written before its rule existed
//! and, on request, those whose replication failed.
//!
//! Facts of AWS this follows (S3 User Guide, "Replicating existing objects with Batch
//! Replication", "Configuring an IAM role for S3 Batch Replication", S3 Control API `CreateJob`,
//! `DescribeJob`, `UpdateJobStatus`): live replication copies only objects written after the
//! rule exists; a Batch Operations job with the `S3ReplicateObject` operation and a manifest
//! that S3 generates from the bucket's replication configuration (`EligibleForReplication`,
//! filtered by replication status `NONE`, and `FAILED` to retry failures) replicates the others
//! under the bucket's own rules; the job runs in the bucket's region, as a role trusted by
//! `batchoperations.s3.amazonaws.com`; a `ClientRequestToken` makes CreateJob idempotent; a job
//! created with `ConfirmationRequired` waits (`Suspended`) until it is confirmed
//! (`UpdateJobStatus` to `Ready`); its completion report is written where the job says.

use super::role_stack::RoleStackOutput;
use super::{StepContext, call, mutate};
use crate::errors::classify;
use crate::logs::SourceLogs;
use crate::spec::SourceSpec;
use crate::template::BACKFILL_REPORTS;
use async_trait::async_trait;
use aws_sdk_s3control::types::{
    JobDescriptor, JobManifestGenerator, JobManifestGeneratorFilter, JobOperation, JobReport,
    JobReportFormat, JobReportScope, JobStatus, KeyNameConstraint, ReplicationStatus,
    RequestedJobStatus, S3JobManifestGenerator, S3ReplicateObjectOperation,
};
use serde::{Deserialize, Serialize};
use trailhub_engine::{
    Applied, ApplyCtx, NodeId, Plan, PlanAction, PlanCtx, RolledBack, Task, TaskError,
};

/// What `trailhub backfill` asks of each job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillOptions {
    /// Also replicate objects whose replication failed (status `FAILED`), not only those never
    /// replicated (`NONE`).
    pub include_failed: bool,
    /// Start the job at once (`--yes`); otherwise it waits for a confirmation.
    pub confirmed: bool,
    /// Wait until the job has finished (or waits for its confirmation), showing its progress.
    pub wait: bool,
}

/// The nodes a backfill reads: where the logs are, and the stack that makes its role.
#[derive(Debug, Clone)]
pub struct BackfillNodes {
    /// `S/bucket-check`.
    pub bucket_check: NodeId,
    /// `S/role-stack`.
    pub role_stack: NodeId,
}

/// Starts (and follows) one source's Batch Replication job.
#[derive(Debug)]
pub struct Backfill {
    ctx: StepContext,
    source: SourceSpec,
    nodes: BackfillNodes,
    options: BackfillOptions,
}

/// Journaled before CreateJob: the idempotency token it is sent with, so that an attempt after a
/// crash asks for the same job (S3 answers with it) rather than a second one; then the job's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillUndo {
    /// The `ClientRequestToken`.
    pub token: String,
    /// The job's id, once CreateJob answered.
    #[serde(default)]
    pub job_id: Option<String>,
}

/// The job as last described.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillOutput {
    /// The job's id.
    pub job_id: String,
    /// Its status (`Suspended` while it waits for its confirmation, `Active`, `Complete`…).
    pub status: String,
    /// Objects in its manifest, once known.
    pub total: Option<i64>,
    /// Objects replicated.
    pub succeeded: Option<i64>,
    /// Objects that failed.
    pub failed: Option<i64>,
    /// Whether it waits for a confirmation.
    pub awaiting_confirmation: bool,
    /// Where its completion report goes (`s3://bucket/prefix`).
    pub report: String,
    /// The region it runs in.
    pub region: String,
    /// How much of the history it copies the archive's lifecycle expires on arrival, if any.
    #[serde(default)]
    pub expiring: Option<String>,
}

impl BackfillOutput {
    /// One line for people: the job, its status and its counts.
    pub fn describe(&self) -> String {
        let count = |n: Option<i64>| n.map_or("?".to_string(), |n| n.to_string());
        let mut line = format!(
            "job {} {}: {} of {} objects replicated, {} failed",
            self.job_id,
            self.status,
            count(self.succeeded),
            count(self.total),
            count(self.failed)
        );
        if self.awaiting_confirmation {
            line.push_str(" (awaiting confirmation)");
        }
        if let Some(warning) = &self.expiring {
            line.push_str(&format!("; warning: {warning}"));
        }
        line
    }
}

/// Whether a job has finished, for good.
fn finished(status: &JobStatus) -> bool {
    matches!(
        status,
        JobStatus::Complete | JobStatus::Failed | JobStatus::Cancelled
    )
}

/// The job's idempotency token for `run`'s node of `account`: at most 64 characters.
fn token(run: &str, account: &str) -> String {
    let raw = format!("trailhub-{run}-{account}");
    raw.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect()
}

impl Backfill {
    /// The backfill of `source`, with `options`.
    pub fn new(
        ctx: StepContext,
        source: SourceSpec,
        nodes: BackfillNodes,
        options: BackfillOptions,
    ) -> Self {
        Backfill {
            ctx,
            source,
            nodes,
            options,
        }
    }

    fn account(&self) -> &str {
        &self.source.account_id
    }

    async fn client(&self, region: &str) -> Result<aws_sdk_s3control::Client, TaskError> {
        let clients = self.ctx.accounts.get(self.account()).await?;
        clients
            .s3control_in(region)
            .ok_or_else(|| TaskError::fatal("no S3 Control client for this account"))
    }

    /// Batch Replication replicates under the bucket's rules: without trailhub's, it would copy
    /// nothing to the archive.
    async fn require_rule(&self) -> Result<(), TaskError> {
        let live = super::replication::live_replication(&self.ctx, &self.source).await?;
        let ours = live
            .as_ref()
            .and_then(|l| l["Rules"].as_array())
            .is_some_and(|rules| {
                rules
                    .iter()
                    .any(|r| crate::rules::is_ours(r["ID"].as_str()))
            });
        if ours {
            return Ok(());
        }
        Err(TaskError::fatal(format!(
            "bucket {} in account {} has no trailhub replication rule: a backfill would copy nothing to the archive",
            self.source.bucket,
            self.account()
        ))
        .with_code("NotOnboarded")
        .with_hint(format!(
            "onboard it first (`trailhub apply -c INVENTORY --account {}`), then backfill",
            self.account()
        )))
    }

    /// With `[archive] lifecycle` expiring objects, how much of the source's history would
    /// expire as soon as it is copied (read from its oldest log; nothing is read otherwise).
    async fn expiring(&self, logs: &SourceLogs) -> Result<Option<String>, TaskError> {
        let Some(days) = self
            .ctx
            .setting
            .archive
            .lifecycle
            .as_ref()
            .and_then(|l| l.expire_days)
        else {
            return Ok(None);
        };
        let oldest = crate::history::oldest_log(&self.ctx, &self.source, &logs.prefixes).await?;
        let today = crate::history::Day::of(std::time::SystemTime::now());
        Ok(oldest.and_then(|o| crate::history::expiring(o, today, days)))
    }

    async fn create(
        &self,
        ctx: &ApplyCtx<BackfillUndo>,
        client: &aws_sdk_s3control::Client,
        token: &str,
        role: &str,
        logs: &SourceLogs,
    ) -> Result<String, TaskError> {
        let bucket_arn = self.ctx.setting.bucket_arn(&self.source.bucket);
        let mut statuses = vec![ReplicationStatus::None];
        if self.options.include_failed {
            statuses.push(ReplicationStatus::Failed);
        }
        let build = |e: aws_sdk_s3control::error::BuildError| {
            TaskError::fatal(format!("the backfill job's request: {e}"))
        };
        let generator = S3JobManifestGenerator::builder()
            .expected_bucket_owner(self.account())
            .source_bucket(&bucket_arn)
            .enable_manifest_output(false)
            .filter(
                JobManifestGeneratorFilter::builder()
                    .eligible_for_replication(true)
                    .set_object_replication_statuses(Some(statuses))
                    // Only trailhub's prefixes: rules kept beside its own are not its to run.
                    .key_name_constraint(
                        KeyNameConstraint::builder()
                            .set_match_any_prefix(Some(logs.own_prefixes(self.account())))
                            .build(),
                    )
                    .build(),
            )
            .build()
            .map_err(build)?;
        let report = JobReport::builder()
            .bucket(&bucket_arn)
            .prefix(BACKFILL_REPORTS.trim_end_matches('/'))
            .format(JobReportFormat::ReportCsv20180820)
            .enabled(true)
            .report_scope(JobReportScope::FailedTasksOnly)
            .build();
        let request = client
            .create_job()
            .account_id(self.account())
            .confirmation_required(!self.options.confirmed)
            .operation(
                JobOperation::builder()
                    .s3_replicate_object(S3ReplicateObjectOperation::builder().build())
                    .build(),
            )
            .manifest_generator(JobManifestGenerator::S3JobManifestGenerator(generator))
            .report(report)
            .client_request_token(token)
            .description(format!(
                "trailhub backfill of {} to {}",
                self.source.bucket, self.ctx.setting.archive.bucket
            ))
            .priority(10)
            .role_arn(role);
        let created = mutate(
            ctx,
            self.account(),
            "s3control",
            "CreateJob",
            &self.source.bucket,
            request.send(),
        )
        .await
        .map_err(|e| classify("CreateJob", &self.source.bucket, e, &[]))?;
        created
            .job_id()
            .map(str::to_string)
            .ok_or_else(|| TaskError::fatal("CreateJob answered no job id"))
    }

    async fn describe_job(
        &self,
        client: &aws_sdk_s3control::Client,
        job_id: &str,
    ) -> Result<JobDescriptor, TaskError> {
        let out = call(
            self.account(),
            "s3control",
            "DescribeJob",
            job_id,
            client
                .describe_job()
                .account_id(self.account())
                .job_id(job_id)
                .send(),
        )
        .await
        .map_err(|e| classify("DescribeJob", job_id, e, &[]))?;
        out.job()
            .cloned()
            .ok_or_else(|| TaskError::retryable(format!("DescribeJob answered no job {job_id}")))
    }

    fn output(&self, job: &JobDescriptor, region: &str) -> BackfillOutput {
        let progress = job.progress_summary();
        let status = job.status().cloned().unwrap_or(JobStatus::New);
        BackfillOutput {
            job_id: job.job_id().unwrap_or_default().to_string(),
            status: status.as_str().to_string(),
            total: progress.and_then(|p| p.total_number_of_tasks()),
            succeeded: progress.and_then(|p| p.number_of_tasks_succeeded()),
            failed: progress.and_then(|p| p.number_of_tasks_failed()),
            awaiting_confirmation: status == JobStatus::Suspended
                && job.confirmation_required() == Some(true),
            report: format!("s3://{}/{BACKFILL_REPORTS}", self.source.bucket),
            region: region.to_string(),
            expiring: None,
        }
    }

    /// The job's end as the step's result: a failed or cancelled job, or one that could not
    /// replicate every object, fails the step with its reasons and its report.
    fn verdict(
        &self,
        job: &JobDescriptor,
        out: BackfillOutput,
    ) -> Result<BackfillOutput, TaskError> {
        let reasons: Vec<String> = job
            .failure_reasons()
            .iter()
            .map(|f| {
                format!(
                    "{}: {}",
                    f.failure_code().unwrap_or("?"),
                    f.failure_reason().unwrap_or("")
                )
            })
            .collect();
        let why = match job.status() {
            Some(JobStatus::Failed) => Some(format!("failed ({})", reasons.join("; "))),
            Some(JobStatus::Cancelled) => Some("was cancelled".to_string()),
            Some(JobStatus::Complete) if out.failed.unwrap_or(0) > 0 => Some(format!(
                "could not replicate {} of {} objects",
                out.failed.unwrap_or(0),
                out.total.unwrap_or(0)
            )),
            _ => None,
        };
        let Some(why) = why else {
            return Ok(out);
        };
        Err(TaskError::fatal(format!(
            "backfill job {} of bucket {} {why}",
            out.job_id, self.source.bucket
        ))
        .with_code("BackfillFailed")
        .with_hint(format!(
            "the completion report under {} lists each failed object and why; once fixed, `trailhub backfill --include-failed` replicates them",
            out.report
        )))
    }
}

#[async_trait]
impl Task for Backfill {
    type Undo = BackfillUndo;
    type Output = BackfillOutput;

    fn describe(&self) -> String {
        format!(
            "replicate the logs of s3://{} that live replication never copied ({}) with S3 Batch Replication",
            self.source.bucket,
            if self.options.include_failed {
                "never replicated, or failed"
            } else {
                "never replicated"
            }
        )
    }

    async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
        Ok(
            Plan::new(PlanAction::Create).note(if self.options.confirmed {
                "a Batch Replication job, started at once (--yes)"
            } else {
                "a Batch Replication job, awaiting confirmation"
            }),
        )
    }

    async fn apply(
        &self,
        ctx: &ApplyCtx<BackfillUndo>,
    ) -> Result<Applied<BackfillOutput>, TaskError> {
        let logs: SourceLogs = ctx.input(&self.nodes.bucket_check)?;
        let role = ctx
            .input::<RoleStackOutput>(&self.nodes.role_stack)?
            .backfill_role_arn
            .ok_or_else(|| {
                TaskError::fatal(format!(
                    "stack {} has no BackfillRoleArn output",
                    self.source.stack_name
                ))
                .with_code("RoleMissing")
                .with_hint("`trailhub apply` updates the stack to the template that makes it")
            })?;
        let region = logs.region(&self.ctx).to_string();
        let client = self.client(&region).await?;
        let undo = ctx
            .record_undo(BackfillUndo {
                token: token(ctx.run(), self.account()),
                job_id: None,
            })
            .await?;
        let (job_id, changed) = match undo.job_id {
            Some(id) => (id, false),
            None => {
                self.require_rule().await?;
                let id = self.create(ctx, &client, &undo.token, &role, &logs).await?;
                ctx.amend_undo(BackfillUndo {
                    token: undo.token.clone(),
                    job_id: Some(id.clone()),
                })
                .await?;
                (id, true)
            }
        };
        let expiring = self.expiring(&logs).await?;
        if let Some(warning) = &expiring {
            ctx.note(format!("warning: {warning}"));
        }
        let mut job = self.describe_job(&client, &job_id).await?;
        let mut last = String::new();
        // Without --wait, the job as it stands now; with it, polled until it ends or waits for
        // its confirmation, each change of progress noted in the run's history.
        loop {
            if !self.options.wait {
                break;
            }
            let out = self.output(&job, &region);
            let line = out.describe();
            if line != last {
                ctx.note(line.clone());
                last = line;
            }
            let status = job.status().cloned().unwrap_or(JobStatus::New);
            if finished(&status) || out.awaiting_confirmation {
                break;
            }
            tokio::time::sleep(self.ctx.stack_poll).await;
            job = self.describe_job(&client, &job_id).await?;
        }
        let mut out = self.verdict(&job, self.output(&job, &region))?;
        out.expiring = expiring;
        Ok(Applied {
            outputs: out,
            changed,
        })
    }

    async fn rollback(
        &self,
        undo: Option<BackfillUndo>,
        ctx: &ApplyCtx<BackfillUndo>,
    ) -> Result<RolledBack, TaskError> {
        let Some(BackfillUndo {
            job_id: Some(job_id),
            ..
        }) = undo
        else {
            return Ok(RolledBack::default());
        };
        let logs: SourceLogs = ctx.input(&self.nodes.bucket_check)?;
        let client = self.client(logs.region(&self.ctx)).await?;
        let job = self.describe_job(&client, &job_id).await?;
        if job.status().is_none_or(finished) {
            return Ok(RolledBack::kept(format!(
                "backfill job {job_id} had finished: what it replicated stays in the archive (log objects are never deleted)"
            )));
        }
        mutate(
            ctx,
            self.account(),
            "s3control",
            "UpdateJobStatus",
            &job_id,
            client
                .update_job_status()
                .account_id(self.account())
                .job_id(&job_id)
                .requested_job_status(RequestedJobStatus::Cancelled)
                .status_update_reason("trailhub rollback")
                .send(),
        )
        .await
        .map_err(|e| classify("UpdateJobStatus", &job_id, e, &[]))?;
        Ok(RolledBack::undone(format!(
            "backfill job {job_id} cancelled; what it already replicated stays in the archive"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_the_runs_and_the_accounts_within_64_characters() {
        let t = token("20261129T231504Z-0001", "222222222222");
        assert_eq!(t, "trailhub-20261129T231504Z-0001-222222222222");
        assert!(token(&"x".repeat(100), "222222222222").len() <= 64);
    }
}
