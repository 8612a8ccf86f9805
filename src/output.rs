//! Rendering helpers: aligned tables, times, and JSON lines. Only the binary prints.

use crate::print::outln;
use serde::Serialize;
use std::time::{Duration, UNIX_EPOCH};
use trailhub_engine::GroupSummary;
use trailhub_state::ErrorRecord;

/// Prints one JSON object on its own line.
pub fn json_line<T: Serialize>(value: &T) {
    outln!(
        "{}",
        serde_json::to_string(value).expect("reports should serialize")
    );
}

/// `2026-11-28T12:42:31Z` from journal milliseconds.
pub fn time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// `2026-11-28T12:42:31.123Z` from journal milliseconds.
pub fn time_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// `12:42:31` from journal milliseconds (UTC).
pub fn clock(ms: u64) -> String {
    let t = time(ms);
    t.get(11..19).unwrap_or(&t).to_string()
}

/// A short duration: `850ms`, `12.3s`, `4m05s`.
pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// A table with a header row, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// An error on one line: `[Code] message`.
pub fn error_line(e: &ErrorRecord) -> String {
    let code = e
        .code
        .as_deref()
        .map(|c| format!("[{c}] "))
        .unwrap_or_default();
    format!("{code}{}", e.message)
}

/// One account's summary as a table row: account, result, steps done, first failed step.
fn account_row(g: &GroupSummary) -> Vec<String> {
    let failure = match (&g.failed_step, &g.error) {
        (Some(step), Some(e)) => format!("{step}: {}", error_line(e)),
        _ => String::new(),
    };
    vec![
        g.group.clone(),
        g.result.as_str().to_string(),
        format!("{}/{}", g.done, g.steps),
        failure,
    ]
}

/// The accounts' summaries as a table (apply, resume, rollback and status print it).
pub fn accounts_table(groups: &[GroupSummary]) -> String {
    let rows: Vec<Vec<String>> = groups.iter().map(account_row).collect();
    table(&["ACCOUNT", "RESULT", "STEPS", "FAILED STEP"], &rows)
}

/// One account's summary as a JSON line of type `account`.
pub fn account_json(run: &str, g: &GroupSummary) -> serde_json::Value {
    serde_json::json!({
        "type": "account", "run": run, "account": g.group, "result": g.result.as_str(),
        "steps": g.steps, "done": g.done, "error": g.error,
    })
}

/// Cuts `s` to `max` characters, with an ellipsis.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// The Batch Replication jobs of a run (its `backfill` nodes' journaled outputs), by account.
pub fn backfill_jobs(
    records: &std::collections::BTreeMap<trailhub_engine::NodeId, trailhub_engine::NodeRecord>,
) -> Vec<(String, trailhub_steps::tasks::BackfillOutput)> {
    records
        .iter()
        .filter(|(id, _)| id.step() == "backfill")
        .filter_map(|(id, rec)| {
            let job = serde_json::from_value(rec.outputs.clone()?).ok()?;
            Some((id.group().to_string(), job))
        })
        .collect()
}

/// Prints a run's backfill jobs: one line each (a JSON `backfill-job` line with `--output
/// json`), and how to confirm a job that waits for it.
pub fn print_jobs(run: &str, jobs: &[(String, trailhub_steps::tasks::BackfillOutput)], json: bool) {
    if json {
        for (account, job) in jobs {
            json_line(&serde_json::json!({
                "type": "backfill-job", "run": run, "account": account, "job_id": job.job_id,
                "status": job.status, "total": job.total, "succeeded": job.succeeded,
                "failed": job.failed, "awaiting_confirmation": job.awaiting_confirmation,
                "report": job.report, "region": job.region,
            }));
        }
        return;
    }
    if jobs.is_empty() {
        return;
    }
    outln!("\nBackfill jobs:");
    for (account, job) in jobs {
        outln!("  {account}  {}", job.describe());
        if job.awaiting_confirmation {
            outln!(
                "      confirm: aws s3control update-job-status --region {} --account-id {account} --job-id {} --requested-job-status Ready   (or cancel it: trailhub rollback {run} --account {account})",
                job.region,
                job.job_id
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(
            &["ACCOUNT", "STATE"],
            &[
                vec!["archive".into(), "done".into()],
                vec!["222222222222".into(), "failed".into()],
            ],
        );
        assert_eq!(
            t,
            "ACCOUNT       STATE\narchive       done\n222222222222  failed\n"
        );
        assert_eq!(duration(12_345), "12.3s");
        assert_eq!(clock(0), "00:00:00");
    }
}
