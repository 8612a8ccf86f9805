//! `trailhub plan`: every step's read-only plan against live state, per account, with the
//! fields that would change. Never mutates anything.

use super::common::{load_inventory, prepare};
use crate::cli::{Cli, OutputFormat};
use crate::errors::{CliError, Outcome};
use crate::output::{error_line, json_line};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use trailhub_engine::{PlanAction, PlannedNode};

pub async fn plan(cli: &Cli, config: &Path, accounts: &[String]) -> Result<Outcome, CliError> {
    let prepared = prepare(cli, load_inventory(config)?, accounts)?;
    let planned = trailhub_engine::plan(&prepared.dag, crate::DEFAULT_CONCURRENCY as usize).await;
    let order = prepared.dag.groups();
    let mut by_group: BTreeMap<usize, Vec<&PlannedNode>> = BTreeMap::new();
    for p in &planned {
        let pos = order
            .iter()
            .position(|g| *g == p.id.group())
            .unwrap_or(usize::MAX);
        by_group.entry(pos).or_default().push(p);
    }
    let mut counts = Counts::default();
    for p in &planned {
        match &p.result {
            Ok(plan) => *counts.actions.entry(plan.action.as_str()).or_default() += 1,
            Err(_) => counts.errors += 1,
        }
    }
    if cli.output == OutputFormat::Json {
        plan_json(&by_group, &counts);
    } else {
        let archive = &prepared.workflow.inventory.archive.account_id;
        plan_text(&by_group, &counts, archive);
    }
    Ok(if counts.errors > 0 {
        Outcome::Failed
    } else {
        Outcome::Ok
    })
}

/// How many nodes would be created, updated… and how many could not be planned.
#[derive(Default)]
struct Counts {
    actions: BTreeMap<&'static str, usize>,
    errors: usize,
}

impl Counts {
    fn of(&self, action: PlanAction) -> usize {
        self.actions.get(action.as_str()).copied().unwrap_or(0)
    }
}

fn plan_json(by_group: &BTreeMap<usize, Vec<&PlannedNode>>, counts: &Counts) {
    for p in by_group.values().flatten() {
        let value = match &p.result {
            Ok(plan) => {
                let mut line = json!({
                    "type": "plan", "node": p.id, "account": p.id.group(), "step": p.id.step(),
                    "action": plan.action.as_str(), "changes": plan.changes, "note": plan.note,
                    "description": p.description,
                });
                if let Some(by) = &plan.blocked_by {
                    line["blocked_by"] = json!(by);
                }
                line
            }
            Err(e) => json!({
                "type": "plan", "node": p.id, "account": p.id.group(), "step": p.id.step(),
                "action": "error", "code": e.code, "error": e.message, "hint": e.hint,
                "description": p.description,
            }),
        };
        json_line(&value);
    }
    json_line(&json!({
        "type": "plan-summary",
        "create": counts.of(PlanAction::Create),
        "update": counts.of(PlanAction::Update),
        "no_op": counts.of(PlanAction::NoOp),
        "unknown": counts.of(PlanAction::Unknown),
        "blocked": counts.of(PlanAction::Blocked),
        "errors": counts.errors,
    }));
}

fn plan_text(by_group: &BTreeMap<usize, Vec<&PlannedNode>>, counts: &Counts, archive: &str) {
    for nodes in by_group.values() {
        let group = nodes[0].id.group();
        if group == trailhub_workflows::ARCHIVE {
            println!("archive ({archive})");
        } else {
            println!("account {group}");
        }
        for p in nodes {
            plan_node_text(p);
        }
    }
    let errors = counts.errors;
    // Blocked steps are counted apart from the work apply would do: it would not reach them.
    let blocked = match counts.of(PlanAction::Blocked) {
        0 => String::new(),
        n => format!("{n} blocked by errors, "),
    };
    println!(
        "\nPlan: {} to create, {} to update, {} unchanged, {} unknown until apply, {blocked}{errors} error{}. Nothing was changed.",
        counts.of(PlanAction::Create),
        counts.of(PlanAction::Update),
        counts.of(PlanAction::NoOp),
        counts.of(PlanAction::Unknown),
        if errors == 1 { "" } else { "s" },
    );
}

fn plan_node_text(p: &PlannedNode) {
    let step = p.id.step();
    match &p.result {
        Ok(plan) => {
            let sign = match plan.action {
                PlanAction::Create => "+",
                PlanAction::Update => "~",
                PlanAction::NoOp => " ",
                PlanAction::Unknown => "?",
                PlanAction::Blocked => "x",
            };
            println!(
                "  {sign} {:<8} {step:<13} {}",
                plan.action.as_str(),
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
            println!(
                "  ! {:<8} {step:<13} {}",
                "error",
                error_line(&e.to_record())
            );
            if let Some(hint) = &e.hint {
                println!("      what to do: {hint}");
            }
        }
    }
}
