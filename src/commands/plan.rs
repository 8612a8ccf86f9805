//! `trailhub plan`: every step's read-only plan against live state, per account, with the
//! fields that would change. Never mutates anything.

use super::common::{load_inventory, prepare};
use crate::cli::{Cli, OutputFormat};
use crate::errors::{CliError, Outcome};
use crate::output::json_line;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use trailhub_engine::PlanAction;

pub async fn plan(cli: &Cli, config: &Path, accounts: &[String]) -> Result<Outcome, CliError> {
    let prepared = prepare(cli, load_inventory(config)?, accounts)?;
    let planned = trailhub_engine::plan(&prepared.dag, crate::DEFAULT_CONCURRENCY as usize).await;
    let order = prepared.dag.groups();
    let mut by_group: BTreeMap<usize, Vec<&trailhub_engine::PlannedNode>> = BTreeMap::new();
    for p in &planned {
        let pos = order
            .iter()
            .position(|g| *g == p.id.group())
            .unwrap_or(usize::MAX);
        by_group.entry(pos).or_default().push(p);
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut errors = 0;
    for p in &planned {
        match &p.result {
            Ok(plan) => *counts.entry(plan.action.as_str()).or_default() += 1,
            Err(_) => errors += 1,
        }
    }
    if cli.output == OutputFormat::Json {
        for nodes in by_group.values() {
            for p in nodes {
                let value = match &p.result {
                    Ok(plan) => json!({
                        "type": "plan", "node": p.id, "account": p.id.group(), "step": p.id.step(),
                        "action": plan.action.as_str(), "changes": plan.changes, "note": plan.note,
                        "description": p.description,
                    }),
                    Err(e) => json!({
                        "type": "plan", "node": p.id, "account": p.id.group(), "step": p.id.step(),
                        "action": "error", "code": e.code, "error": e.message, "hint": e.hint,
                        "description": p.description,
                    }),
                };
                json_line(&value);
            }
        }
        json_line(&json!({
            "type": "plan-summary",
            "create": counts.get("create").copied().unwrap_or(0),
            "update": counts.get("update").copied().unwrap_or(0),
            "no_op": counts.get("no-op").copied().unwrap_or(0),
            "unknown": counts.get("unknown").copied().unwrap_or(0),
            "errors": errors,
        }));
    } else {
        for nodes in by_group.values() {
            let group = nodes[0].id.group();
            println!(
                "{}",
                if group == "archive" {
                    format!(
                        "archive ({})",
                        prepared.workflow.inventory.archive.account_id
                    )
                } else {
                    format!("account {group}")
                }
            );
            for p in nodes {
                match &p.result {
                    Ok(plan) => {
                        let sign = match plan.action {
                            PlanAction::Create => "+",
                            PlanAction::Update => "~",
                            PlanAction::NoOp => " ",
                            PlanAction::Unknown => "?",
                        };
                        println!(
                            "  {sign} {:<8} {:<13} {}",
                            plan.action.as_str(),
                            p.id.step(),
                            p.description
                        );
                        for c in &plan.changes {
                            println!(
                                "      {}: {} -> {}",
                                c.field,
                                c.from.as_deref().unwrap_or("(absent)"),
                                c.to
                            );
                        }
                        if let Some(note) = &plan.note {
                            println!("      ({note})");
                        }
                    }
                    Err(e) => {
                        let code = e
                            .code
                            .as_deref()
                            .map(|c| format!("[{c}] "))
                            .unwrap_or_default();
                        println!("  ! {:<8} {:<13} {code}{}", "error", p.id.step(), e.message);
                        if let Some(hint) = &e.hint {
                            println!("      what to do: {hint}");
                        }
                    }
                }
            }
        }
        println!(
            "\nPlan: {} to create, {} to update, {} unchanged, {} unknown until apply, {} error{}. Nothing was changed.",
            counts.get("create").copied().unwrap_or(0),
            counts.get("update").copied().unwrap_or(0),
            counts.get("no-op").copied().unwrap_or(0),
            counts.get("unknown").copied().unwrap_or(0),
            errors,
            if errors == 1 { "" } else { "s" },
        );
    }
    Ok(if errors > 0 {
        Outcome::Failed
    } else {
        Outcome::Ok
    })
}
