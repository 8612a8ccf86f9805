//! `trailhub verify`: compares live state with what the inventory implies, per account,
//! resource and field (drift), without a journal. Read-only, except the canary with --canary.

use super::common::{load_inventory, prepare};
use crate::cli::{Cli, OutputFormat};
use crate::errors::{CliError, Outcome};
use crate::output::{json_line, table};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use trailhub_steps::checks::{Finding, Reads, archive_findings, source_findings};

pub async fn verify(
    cli: &Cli,
    config: &Path,
    canary: bool,
    timeout: Duration,
    accounts: &[String],
) -> Result<Outcome, CliError> {
    let prepared = prepare(cli, load_inventory(config)?, accounts)?;
    let ctx = prepared.ctx.clone();
    let permits = Arc::new(Semaphore::new(crate::DEFAULT_CONCURRENCY as usize));
    let mut set = JoinSet::new();
    {
        let ctx = ctx.clone();
        let account = ctx.setting.archive.account_id.clone();
        set.spawn(async move { (0usize, account, archive_findings(&ctx).await) });
    }
    let sources: Vec<_> = prepared
        .workflow
        .inventory
        .sources
        .iter()
        .filter(|s| accounts.is_empty() || accounts.contains(&s.account_id))
        .cloned()
        .collect();
    for (i, source) in sources.iter().cloned().enumerate() {
        let ctx = ctx.clone();
        let permits = permits.clone();
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let account = source.account_id.clone();
            (
                i + 1,
                account,
                source_findings(&ctx, &source, None, Reads::all()).await,
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
    let json = cli.output == OutputFormat::Json;
    let mut rows = Vec::new();
    let (mut drift, mut unreadable) = (0usize, 0usize);
    for (_, account, result) in &results {
        match result {
            Ok(findings) if findings.is_empty() => {
                if json {
                    json_line(&json!({ "type": "account", "account": account, "result": "ok" }));
                }
            }
            Ok(findings) => {
                drift += 1;
                for f in findings {
                    emit(json, f, &mut rows);
                }
            }
            Err(e) => {
                unreadable += 1;
                let code = e
                    .code
                    .as_deref()
                    .map(|c| format!("[{c}] "))
                    .unwrap_or_default();
                if json {
                    json_line(&json!({
                        "type": "unreadable", "account": account, "code": e.code, "error": e.message, "hint": e.hint,
                    }));
                } else {
                    rows.push(vec![
                        account.clone(),
                        "(could not read)".into(),
                        String::new(),
                        String::new(),
                        format!("{code}{}", e.message),
                    ]);
                }
            }
        }
    }
    let checked = results.len();
    if json {
        json_line(&json!({
            "type": "verify-summary", "accounts_checked": checked, "accounts_drifted": drift,
            "accounts_unreadable": unreadable,
        }));
    } else {
        if !rows.is_empty() {
            print!(
                "{}",
                table(
                    &["ACCOUNT", "RESOURCE", "FIELD", "EXPECTED", "ACTUAL"],
                    &rows
                )
            );
        }
        println!(
            "\nVerified {checked} account{} (archive included): {} match, {drift} drifted, {unreadable} could not be read.",
            if checked == 1 { "" } else { "s" },
            checked - drift - unreadable
        );
        if drift > 0 {
            println!(
                "`trailhub apply -c {}` brings drifted accounts back to the article's configuration.",
                config.display()
            );
        }
    }
    let canary_outcome = if canary && unreadable == 0 {
        super::verify_canary::run(cli, &ctx, &sources, timeout).await?
    } else {
        Outcome::Ok
    };
    Ok(if unreadable > 0 {
        Outcome::Failed
    } else if drift > 0 {
        Outcome::Drift
    } else {
        canary_outcome
    })
}

fn emit(json: bool, f: &Finding, rows: &mut Vec<Vec<String>>) {
    if json {
        json_line(&json!({
            "type": "drift", "account": f.account, "resource": f.resource, "field": f.field,
            "expected": f.expected, "actual": f.actual,
        }));
    } else {
        rows.push(vec![
            f.account.clone(),
            f.resource.clone(),
            f.field.clone(),
            crate::output::truncate(&f.expected, 60),
            crate::output::truncate(&f.actual, 60),
        ]);
    }
}
