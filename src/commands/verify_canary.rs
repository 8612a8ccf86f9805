//! `verify --canary`: one canary object per source account, polled until it is replicated (the
//! article's own check: `COMPLETED` at the source, `REPLICA` in the archive) or the timeout; a
//! copy counts only when it is kept as the inventory says (storage class, `[archive] retention`).

use super::common::each_bounded;
use crate::cli::{Cli, OutputFormat};
use crate::errors::{CliError, Outcome};
use crate::output::{duration, error_line, json_line, table};
use crate::print::{errln, out};
use serde_json::json;
use std::time::Duration;
use trailhub_engine::TaskError;
use trailhub_steps::SourceSpec;
use trailhub_steps::canary::{CanaryOutcome, CanaryReport, CanaryTiming, canary};
use trailhub_steps::tasks::StepContext;

pub async fn run(
    cli: &Cli,
    ctx: &StepContext,
    sources: &[SourceSpec],
    timeout: Duration,
) -> Result<Outcome, CliError> {
    let json = cli.output == OutputFormat::Json;
    if !json && !cli.quiet {
        errln!(
            "writing a canary object in {} source bucket{} and waiting up to {} for replication…",
            sources.len(),
            if sources.len() == 1 { "" } else { "s" },
            humantime::format_duration(timeout)
        );
    }
    let timing = timing(timeout);
    let results = each_bounded(
        sources.to_vec(),
        crate::DEFAULT_CONCURRENCY as usize,
        |source| {
            let (ctx, timing) = (ctx.clone(), timing.clone());
            async move {
                let result = canary(&ctx, &source, &timing).await;
                (source.account_id, result)
            }
        },
    )
    .await;
    let all_replicated = results
        .iter()
        .all(|(_, r)| matches!(r, Ok(report) if report.outcome == CanaryOutcome::Replicated));
    if json {
        for (account, result) in &results {
            json_line(&canary_json(account, result));
        }
    } else {
        let rows: Vec<Vec<String>> = results.iter().map(|(a, r)| canary_row(a, r)).collect();
        let header = [
            "ACCOUNT",
            "CANARY",
            "SOURCE STATUS",
            "ARCHIVE COPY",
            "TIME",
            "LIKELY CAUSES",
        ];
        out!("{}", table(&header, &rows));
    }
    Ok(if all_replicated {
        Outcome::Ok
    } else {
        Outcome::Failed
    })
}

/// How the canaries poll; `TRAILHUB_CANARY_POLL_MS` makes it fast (tests).
fn timing(timeout: Duration) -> CanaryTiming {
    let mut timing = CanaryTiming::new(timeout);
    if let Some(ms) = std::env::var("TRAILHUB_CANARY_POLL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        timing.first_poll = Duration::from_millis(ms);
        timing.max_poll = Duration::from_millis(ms * 4);
    }
    timing
}

fn canary_json(account: &str, result: &Result<CanaryReport, TaskError>) -> serde_json::Value {
    match result {
        Ok(report) => json!({
            "type": "canary", "account": report.account, "key": report.key,
            "outcome": report.outcome, "source_status": report.source_status,
            "replica_status": report.replica_status,
            "replica_storage_class": report.replica_storage_class,
            "replica_lock_mode": report.replica_lock_mode,
            "replica_retain_until": report.replica_retain_until,
            "elapsed_ms": report.elapsed_ms,
            "causes": report.causes,
        }),
        Err(e) => json!({
            "type": "canary", "account": account, "outcome": "error", "code": e.code, "error": e.message
        }),
    }
}

/// The archive copy as the table shows it: its status, storage class and lock.
fn archive_copy(report: &CanaryReport) -> String {
    let Some(status) = &report.replica_status else {
        return "(no copy)".into();
    };
    let class = report.replica_storage_class.as_deref().unwrap_or("?");
    let lock = match (&report.replica_lock_mode, &report.replica_retain_until) {
        (Some(mode), Some(until)) => format!("{mode} until {until}"),
        _ => "not locked".into(),
    };
    format!("{status}, {class}, {lock}")
}

fn canary_row(account: &str, result: &Result<CanaryReport, TaskError>) -> Vec<String> {
    match result {
        Ok(report) => {
            let outcome = match report.outcome {
                CanaryOutcome::Replicated => "REPLICATED".to_string(),
                CanaryOutcome::Failed => "FAILED".to_string(),
                CanaryOutcome::Unprotected => "NOT PROTECTED".to_string(),
                CanaryOutcome::Pending => format!("PENDING after {}", duration(report.elapsed_ms)),
            };
            vec![
                account.to_string(),
                outcome,
                report
                    .source_status
                    .clone()
                    .unwrap_or_else(|| "(none)".into()),
                archive_copy(report),
                duration(report.elapsed_ms),
                report.causes.join("; "),
            ]
        }
        Err(e) => vec![
            account.to_string(),
            "ERROR".into(),
            String::new(),
            String::new(),
            String::new(),
            error_line(&e.to_record()),
        ],
    }
}
