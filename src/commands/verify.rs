//! `trailhub verify`: compares live state with what the inventory implies, per account,
//! resource and field (drift), without a journal. Read-only, except the canary with --canary.

use super::common::{each_bounded, load_inventory, prepare};
use crate::cli::{Cli, OutputFormat};
use crate::errors::{CliError, Outcome};
use crate::output::{error_line, json_line, table};
use crate::print::{out, outln};
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use trailhub_engine::TaskError;
use trailhub_steps::checks::{
    Finding, Known, Reads, archive_findings, source_findings, source_verdict,
    unlisted_principal_findings,
};
use trailhub_steps::delivery::Verdict;

/// One account's verdict: its findings, or why it could not be read.
type Checked = (String, Result<Vec<Finding>, TaskError>, Option<Verdict>);

pub async fn verify(
    cli: &Cli,
    config: &Path,
    canary: bool,
    timeout: Duration,
    accounts: &[String],
) -> Result<Outcome, CliError> {
    let prepared = prepare(cli, load_inventory(config)?, accounts)?;
    let ctx = prepared.ctx.clone();
    let sources: Vec<_> = prepared.workflow.sources().cloned().collect();
    // Principals the inventory does not list are looked for only when it is read whole: with
    // --account, the others are simply not being verified.
    let whole = accounts.is_empty();
    let archive = async {
        let account = ctx.setting.archive.account_id.clone();
        let mut findings = archive_findings(&ctx).await;
        if whole && let Ok(found) = &mut findings {
            match unlisted_principal_findings(&ctx, &sources).await {
                Ok(more) => found.extend(more),
                Err(e) => findings = Err(e),
            }
        }
        (account, findings, None)
    };
    let each = each_bounded(
        sources.clone(),
        crate::DEFAULT_CONCURRENCY as usize,
        |source| {
            let ctx = ctx.clone();
            async move {
                let findings = source_findings(&ctx, &source, Known::default(), Reads::all()).await;
                let verdict = match &findings {
                    Ok(_) => source_verdict(&ctx, &source).await.ok(),
                    Err(_) => None,
                };
                (source.account_id, findings, verdict)
            }
        },
    );
    let (archive, each) = tokio::join!(archive, each);
    let mut results = vec![archive];
    results.extend(each);
    let (drift, unreadable) = report(cli, config, &results);
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

/// Prints every account's verdict and the summary; returns how many accounts drifted and how
/// many could not be read.
fn report(cli: &Cli, config: &Path, results: &[Checked]) -> (usize, usize) {
    let json = cli.output == OutputFormat::Json;
    let mut rows = Vec::new();
    let (mut drift, mut unreadable) = (0usize, 0usize);
    let mut verdicts = Vec::new();
    for (account, result, verdict) in results {
        if let Some(v) = verdict {
            verdicts.push((account.clone(), v.clone()));
        }
        match result {
            Ok(findings) if findings.is_empty() => {
                if json {
                    let mut line = json!({ "type": "account", "account": account, "result": "ok" });
                    if let Some(v) = verdict {
                        line["delivery"] = json!(v);
                    }
                    json_line(&line);
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
                        error_line(&e.to_record()),
                    ]);
                }
            }
        }
    }
    if !json && !verdicts.is_empty() {
        outln!("Delivery check (a prediction from the policies read; `--canary` is the proof):");
        for (account, v) in &verdicts {
            outln!("  {account}: {}", v.line());
        }
    }
    summary(cli, config, &rows, results.len(), drift, unreadable);
    // apply puts back what trailhub wrote, but leaves a statement it did not write (a Deny
    // added by hand, someone else's key policy): say so, or the hint above promises too much.
    if !json
        && verdicts
            .iter()
            .any(|(_, v)| matches!(v, Verdict::WouldFail(_)))
    {
        outln!(
            "A refusal the delivery check predicts from a statement trailhub did not write stays after apply: change it as its fix says, then verify again."
        );
    }
    (drift, unreadable)
}

fn summary(
    cli: &Cli,
    config: &Path,
    rows: &[Vec<String>],
    checked: usize,
    drift: usize,
    unreadable: usize,
) {
    if cli.output == OutputFormat::Json {
        json_line(&json!({
            "type": "verify-summary", "accounts_checked": checked, "accounts_drifted": drift,
            "accounts_unreadable": unreadable,
        }));
        return;
    }
    if !rows.is_empty() {
        let header = ["ACCOUNT", "RESOURCE", "FIELD", "EXPECTED", "ACTUAL"];
        out!("{}", table(&header, rows));
    }
    outln!(
        "\nVerified {checked} account{} (archive included): {} match, {drift} drifted, {unreadable} could not be read.",
        if checked == 1 { "" } else { "s" },
        checked - drift - unreadable
    );
    if drift > 0 {
        outln!(
            "`trailhub apply -c {}` brings drifted accounts back to the article's configuration.",
            config.display()
        );
    }
}

fn emit(json: bool, f: &Finding, rows: &mut Vec<Vec<String>>) {
    if json {
        let mut line = json!({
            "type": "drift", "account": f.account, "resource": f.resource, "field": f.field,
            "expected": f.expected, "actual": f.actual,
        });
        if let Some(d) = &f.delivery {
            line["delivery"] = json!(d);
        }
        json_line(&line);
    } else if let Some(d) = &f.delivery {
        // The verdict (policy, statement, condition, fix) is printed whole above the table.
        rows.push(vec![
            f.account.clone(),
            f.resource.clone(),
            f.field.clone(),
            f.expected.clone(),
            format!("{} (the delivery check above says why)", d.word()),
        ]);
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
