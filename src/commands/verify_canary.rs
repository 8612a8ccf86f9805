//! `verify --canary`: one canary object per source account, polled until it is replicated (the
//! article's own check: `COMPLETED` at the source, `REPLICA` in the archive) or the timeout.

use crate::cli::{Cli, OutputFormat};
use crate::errors::{CliError, Outcome};
use crate::output::{duration, json_line, table};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use trailhub_steps::SourceSpec;
use trailhub_steps::canary::{CanaryOutcome, CanaryTiming, canary};
use trailhub_steps::tasks::StepContext;

pub async fn run(
    cli: &Cli,
    ctx: &StepContext,
    sources: &[SourceSpec],
    timeout: Duration,
) -> Result<Outcome, CliError> {
    let json = cli.output == OutputFormat::Json;
    if !json && !cli.quiet {
        eprintln!(
            "writing a canary object in {} source bucket{} and waiting up to {} for replication…",
            sources.len(),
            if sources.len() == 1 { "" } else { "s" },
            humantime::format_duration(timeout)
        );
    }
    let mut timing = CanaryTiming::new(timeout);
    if let Some(ms) = std::env::var("TRAILHUB_CANARY_POLL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        timing.first_poll = Duration::from_millis(ms);
        timing.max_poll = Duration::from_millis(ms * 4);
    }
    let permits = Arc::new(Semaphore::new(crate::DEFAULT_CONCURRENCY as usize));
    let mut set = JoinSet::new();
    for (i, source) in sources.iter().cloned().enumerate() {
        let ctx = ctx.clone();
        let timing = timing.clone();
        let permits = permits.clone();
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            (
                i,
                source.account_id.clone(),
                canary(&ctx, &source, &timing).await,
            )
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(r) => results.push(r),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    results.sort_by_key(|r| r.0);
    let mut rows = Vec::new();
    let mut all_replicated = true;
    for (_, account, result) in results {
        match result {
            Ok(report) => {
                all_replicated &= report.outcome == CanaryOutcome::Replicated;
                if json {
                    json_line(&json!({
                        "type": "canary", "account": report.account, "key": report.key,
                        "outcome": report.outcome, "source_status": report.source_status,
                        "replica_status": report.replica_status, "elapsed_ms": report.elapsed_ms,
                        "causes": report.causes,
                    }));
                } else {
                    let outcome = match report.outcome {
                        CanaryOutcome::Replicated => "REPLICATED".to_string(),
                        CanaryOutcome::Failed => "FAILED".to_string(),
                        CanaryOutcome::Pending => {
                            format!("PENDING after {}", duration(report.elapsed_ms))
                        }
                    };
                    rows.push(vec![
                        account,
                        outcome,
                        report.source_status.unwrap_or_else(|| "(none)".into()),
                        report.replica_status.unwrap_or_else(|| "(no copy)".into()),
                        duration(report.elapsed_ms),
                        report.causes.join("; "),
                    ]);
                }
            }
            Err(e) => {
                all_replicated = false;
                let code = e
                    .code
                    .as_deref()
                    .map(|c| format!("[{c}] "))
                    .unwrap_or_default();
                if json {
                    json_line(
                        &json!({ "type": "canary", "account": account, "outcome": "error", "code": e.code, "error": e.message }),
                    );
                } else {
                    rows.push(vec![
                        account,
                        "ERROR".into(),
                        String::new(),
                        String::new(),
                        String::new(),
                        format!("{code}{}", e.message),
                    ]);
                }
            }
        }
    }
    if !json {
        print!(
            "{}",
            table(
                &[
                    "ACCOUNT",
                    "CANARY",
                    "SOURCE STATUS",
                    "ARCHIVE COPY",
                    "TIME",
                    "LIKELY CAUSES"
                ],
                &rows
            )
        );
    }
    Ok(if all_replicated {
        Outcome::Ok
    } else {
        Outcome::Failed
    })
}
