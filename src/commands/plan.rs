//! `trailhub plan`: every step's read-only plan against live state, per account, with the
//! fields that would change. Never mutates anything.
//!
//! A fleet (from [`FLEET`] accounts on) is shown grouped: accounts whose plans are the same but
//! for their own id are shown once, with the list of those accounts, the steps that change
//! nothing on one line; accounts that differ are shown in full; groups with errors come first.
//! `--all` lists every account in full, as a small fleet is; JSON is always per account.

use super::common::{load_inventory, prepare};
use crate::cli::{Cli, OutputFormat};
use crate::errors::{CliError, Outcome};
use crate::fleet::{FLEET, IDS_SHOWN, generalize, id_list};
use crate::output::{error_line, json_line};
use crate::print::out;
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use trailhub_engine::{PlanAction, PlannedNode};
use trailhub_steps::checks;
use trailhub_steps::delivery::Verdict;
use trailhub_workflows::ARCHIVE;

pub async fn plan(
    cli: &Cli,
    config: &Path,
    accounts: &[String],
    all: bool,
) -> Result<Outcome, CliError> {
    let prepared = prepare(cli, load_inventory(config)?, accounts)?;
    let planned = trailhub_engine::plan(&prepared.dag, crate::DEFAULT_CONCURRENCY as usize).await;
    let order = prepared.dag.groups();
    let by_group = by_group(&planned, &order);
    let verdicts = verdicts(&prepared, &by_group).await;
    let mut counts = Counts::of(&planned);
    counts.delivery = Some(DeliveryCounts::of(&verdicts));
    if cli.output == OutputFormat::Json {
        plan_json(&by_group, &counts, &verdicts);
    } else {
        let archive = &prepared.workflow.inventory.archive.account_id;
        let lines = verdicts
            .iter()
            .map(|(a, v)| (a.clone(), v.line()))
            .collect();
        out!("{}", plan_text(&by_group, &counts, archive, all, &lines));
    }
    Ok(if counts.errors > 0 {
        Outcome::Failed
    } else {
        Outcome::Ok
    })
}

/// Each source's delivery check of the documents the plan would write over what it read (issue
/// 20): `unknown (known once …)` where a step of the account could not be planned, never
/// `delivers`.
async fn verdicts(
    prepared: &super::common::Prepared,
    by_group: &[Vec<&PlannedNode>],
) -> BTreeMap<String, Verdict> {
    let archive_fresh = by_group.iter().flatten().any(|p| {
        p.id.group() == ARCHIVE
            && p.id.step() == "bucket"
            && matches!(&p.result, Ok(plan) if plan.action == PlanAction::Create)
    });
    let mut out = BTreeMap::new();
    for source in prepared.workflow.sources() {
        let account = source.account_id.as_str();
        let Some(nodes) = by_group
            .iter()
            .find(|n| n.first().is_some_and(|p| p.id.group() == account))
        else {
            continue;
        };
        let stuck = nodes.iter().find(|p| match &p.result {
            Err(_) => true,
            Ok(plan) => plan.action == PlanAction::Blocked,
        });
        let verdict = match stuck {
            Some(p) => Verdict::Unknown {
                what: format!("known once {} can be planned", p.id),
            },
            None => checks::planned_verdict(&prepared.ctx, source, archive_fresh)
                .await
                .unwrap_or_else(|e| Verdict::Unknown {
                    what: format!("known once the account can be read: {}", e.message),
                }),
        };
        out.insert(account.to_string(), verdict);
    }
    out
}

/// How many accounts the delivery check says deliver, would fail, or cannot be known yet.
#[derive(Default)]
struct DeliveryCounts {
    delivers: usize,
    would_fail: usize,
    unknown: usize,
}

impl DeliveryCounts {
    fn of(verdicts: &BTreeMap<String, Verdict>) -> DeliveryCounts {
        let mut c = DeliveryCounts::default();
        for v in verdicts.values() {
            match v {
                Verdict::Delivers => c.delivers += 1,
                Verdict::WouldFail(_) => c.would_fail += 1,
                Verdict::Unknown { .. } => c.unknown += 1,
            }
        }
        c
    }
}

/// The planned nodes of each group, groups in the workflow's order (the archive, then the
/// accounts as the inventory lists them), nodes in dependency order.
fn by_group<'a>(planned: &'a [PlannedNode], order: &[&str]) -> Vec<Vec<&'a PlannedNode>> {
    let mut by_group: BTreeMap<usize, Vec<&PlannedNode>> = BTreeMap::new();
    for p in planned {
        let pos = order
            .iter()
            .position(|g| *g == p.id.group())
            .unwrap_or(usize::MAX);
        by_group.entry(pos).or_default().push(p);
    }
    by_group.into_values().collect()
}

/// How many nodes would be created, updated… and how many could not be planned. Keyed by the
/// action's name, so that every action the engine plans is counted.
#[derive(Default)]
struct Counts {
    actions: BTreeMap<&'static str, usize>,
    errors: usize,
    /// The delivery check's verdicts, when they were made.
    delivery: Option<DeliveryCounts>,
}

impl Counts {
    fn of(planned: &[PlannedNode]) -> Counts {
        let mut counts = Counts::default();
        for p in planned {
            match &p.result {
                Ok(plan) => *counts.actions.entry(plan.action.as_str()).or_default() += 1,
                Err(_) => counts.errors += 1,
            }
        }
        counts
    }

    fn of_action(&self, action: PlanAction) -> usize {
        self.actions.get(action.as_str()).copied().unwrap_or(0)
    }
}

fn plan_json(
    by_group: &[Vec<&PlannedNode>],
    counts: &Counts,
    verdicts: &BTreeMap<String, Verdict>,
) {
    for p in by_group.iter().flatten() {
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
    for (account, verdict) in verdicts {
        json_line(&json!({ "type": "delivery", "account": account, "delivery": verdict }));
    }
    let delivery = counts.delivery.as_ref().map(
        |d| json!({ "delivers": d.delivers, "would_fail": d.would_fail, "unknown": d.unknown }),
    );
    json_line(&json!({
        "type": "plan-summary",
        "create": counts.of_action(PlanAction::Create),
        "update": counts.of_action(PlanAction::Update),
        "no_op": counts.of_action(PlanAction::NoOp),
        "unknown": counts.of_action(PlanAction::Unknown),
        "blocked": counts.of_action(PlanAction::Blocked),
        "errors": counts.errors,
        "delivery": delivery,
    }));
}

/// The plan as text: every account in full for a small fleet or with `all`; grouped otherwise.
/// `verdicts`: each account's delivery check line, printed after its steps.
fn plan_text(
    by_group: &[Vec<&PlannedNode>],
    counts: &Counts,
    archive: &str,
    all: bool,
    verdicts: &BTreeMap<String, String>,
) -> String {
    let sources = by_group
        .iter()
        .filter(|nodes| nodes.first().is_some_and(|p| p.id.group() != ARCHIVE))
        .count();
    let mut out = if all || sources < FLEET {
        full_text(by_group, archive, verdicts)
    } else {
        grouped_text(by_group, archive, verdicts)
    };
    let delivery = counts.delivery.as_ref().map_or(String::new(), |d| {
        format!(
            "; delivery: {} deliver, {} would fail, {} unknown",
            d.delivers, d.would_fail, d.unknown
        )
    });
    let errors = counts.errors;
    // Blocked steps are counted apart from the work apply would do: it would not reach them.
    let blocked = match counts.of_action(PlanAction::Blocked) {
        0 => String::new(),
        n => format!("{n} blocked by errors, "),
    };
    let _ = writeln!(
        out,
        "\nPlan: {} to create, {} to update, {} unchanged, {} unknown until apply, {blocked}{errors} error{}{delivery}. Nothing was changed.",
        counts.of_action(PlanAction::Create),
        counts.of_action(PlanAction::Update),
        counts.of_action(PlanAction::NoOp),
        counts.of_action(PlanAction::Unknown),
        if errors == 1 { "" } else { "s" },
    );
    out
}

fn heading(group: &str, archive: &str) -> String {
    if group == ARCHIVE {
        format!("archive ({archive})")
    } else {
        format!("account {group}")
    }
}

/// Every account, every step, as it is.
fn full_text(
    by_group: &[Vec<&PlannedNode>],
    archive: &str,
    verdicts: &BTreeMap<String, String>,
) -> String {
    let mut out = String::new();
    for nodes in by_group {
        let Some(first) = nodes.first() else { continue };
        let _ = writeln!(out, "{}", heading(first.id.group(), archive));
        for p in nodes {
            out.push_str(&node_text(p, None));
        }
        out.push_str(&delivery_text(verdicts, first.id.group(), None));
    }
    out
}

/// An account's delivery check line (none for the archive); with `generalize_for`, that
/// account's id written `{account_id}`, so that accounts with the same verdict group.
fn delivery_text(
    verdicts: &BTreeMap<String, String>,
    account: &str,
    generalize_for: Option<&str>,
) -> String {
    match verdicts.get(account) {
        Some(line) => {
            let line = match generalize_for {
                Some(group) => generalize(line, group),
                None => line.clone(),
            };
            format!("  delivery check: {line}\n")
        }
        None => String::new(),
    }
}

/// The sign and padded name of an action, as the plan's lines begin.
fn sign(action: PlanAction) -> &'static str {
    match action {
        PlanAction::Create => "+",
        PlanAction::Update => "~",
        PlanAction::NoOp => " ",
        PlanAction::Unknown => "?",
        PlanAction::Blocked => "x",
    }
}

/// One node's lines; with `generalize_for`, that account's id written `{account_id}`.
fn node_text(p: &PlannedNode, generalize_for: Option<&str>) -> String {
    let g = |text: &str| match generalize_for {
        Some(group) => generalize(text, group),
        None => text.to_string(),
    };
    let step = p.id.step();
    let mut out = String::new();
    match &p.result {
        Ok(plan) => {
            let _ = writeln!(
                out,
                "  {} {:<8} {step:<13} {}",
                sign(plan.action),
                plan.action.as_str(),
                g(&p.description)
            );
            for c in &plan.changes {
                let _ = writeln!(
                    out,
                    "      {}: {} -> {}",
                    g(&c.field),
                    g(c.from.as_deref().unwrap_or("(absent)")),
                    g(&c.to)
                );
            }
            if let Some(note) = &plan.note {
                let _ = writeln!(out, "      ({})", g(note));
            }
        }
        Err(e) => {
            let _ = writeln!(
                out,
                "  ! {:<8} {step:<13} {}",
                "error",
                g(&error_line(&e.to_record()))
            );
            if let Some(hint) = &e.hint {
                let _ = writeln!(out, "      what to do: {}", g(hint));
            }
        }
    }
    out
}

/// Accounts with the same plan but for their own id.
struct Class<'a> {
    accounts: Vec<&'a str>,
    /// The first account's nodes: the class's plan.
    nodes: &'a [&'a PlannedNode],
    errors: bool,
}

/// Identical accounts once, the others in full; errors first, then the archive, then the
/// larger groups.
fn grouped_text(
    by_group: &[Vec<&PlannedNode>],
    archive: &str,
    verdicts: &BTreeMap<String, String>,
) -> String {
    let mut classes: Vec<Class<'_>> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for nodes in by_group {
        let Some(first) = nodes.first() else { continue };
        let group = first.id.group();
        let errors = nodes.iter().any(|p| p.result.is_err());
        if group == ARCHIVE {
            classes.push(Class {
                accounts: vec![group],
                nodes,
                errors,
            });
            continue;
        }
        let mut signature: String = nodes.iter().map(|p| node_text(p, Some(group))).collect();
        signature.push_str(&delivery_text(verdicts, group, Some(group)));
        match index.get(&signature) {
            Some(&i) => classes[i].accounts.push(group),
            None => {
                index.insert(signature, classes.len());
                classes.push(Class {
                    accounts: vec![group],
                    nodes,
                    errors,
                });
            }
        }
    }
    // Stable: classes of as many accounts stay in the order of their first account.
    classes.sort_by_key(|c| {
        (
            !c.errors,
            c.accounts != [ARCHIVE],
            std::cmp::Reverse(c.accounts.len()),
        )
    });
    let mut out = String::new();
    for (i, class) in classes.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match class.accounts.as_slice() {
            [one] => {
                let _ = writeln!(out, "{}", heading(one, archive));
                for p in class.nodes {
                    out.push_str(&node_text(p, None));
                }
                out.push_str(&delivery_text(verdicts, one, None));
            }
            many => {
                out.push_str(&class_text(class, many));
                out.push_str(&delivery_text(verdicts, many[0], Some(many[0])));
            }
        }
    }
    let accounts: usize = classes
        .iter()
        .filter(|c| c.accounts != [ARCHIVE])
        .map(|c| c.accounts.len())
        .sum();
    let groups = classes.iter().filter(|c| c.accounts != [ARCHIVE]).count();
    let _ = writeln!(
        out,
        "\n({accounts} accounts in {groups} group{} of the same plan; `--all` lists every account in full)",
        if groups == 1 { "" } else { "s" }
    );
    out
}

/// A class of several accounts: their ids, the steps that change nothing on one line, the steps
/// that would do the same thing with no field to show on one line each kind, the rest in full.
fn class_text(class: &Class<'_>, accounts: &[&str]) -> String {
    let ids: Vec<String> = accounts.iter().map(|a| a.to_string()).collect();
    let shown = if class.errors { IDS_SHOWN } else { 5 };
    let mut out = format!(
        "{} accounts — {}\n",
        accounts.len(),
        id_list(&ids, shown, "`--all` lists each")
    );
    let group = accounts[0];
    let no_ops: Vec<&str> = class
        .nodes
        .iter()
        .filter(|p| matches!(&p.result, Ok(plan) if plan.action == PlanAction::NoOp && plan.changes.is_empty()))
        .map(|p| p.id.step())
        .collect();
    if !no_ops.is_empty() {
        let _ = writeln!(
            out,
            "  {} {:<8} {}",
            sign(PlanAction::NoOp),
            "no-op",
            no_ops.join(", ")
        );
    }
    // Steps with no field to show, of one action and one note, share a line.
    let mut merged: Vec<(PlanAction, Option<String>, Vec<&str>)> = Vec::new();
    let mut lines: Vec<Option<String>> = Vec::new();
    for p in class.nodes {
        match &p.result {
            Ok(plan) if plan.action == PlanAction::NoOp && plan.changes.is_empty() => {}
            Ok(plan) if plan.changes.is_empty() => {
                let note = plan.note.as_deref().map(|n| generalize(n, group));
                match merged
                    .iter_mut()
                    .find(|(a, n, _)| *a == plan.action && *n == note)
                {
                    Some((_, _, steps)) => steps.push(p.id.step()),
                    None => {
                        merged.push((plan.action, note, vec![p.id.step()]));
                        lines.push(None);
                    }
                }
            }
            _ => lines.push(Some(node_text(p, Some(group)))),
        }
    }
    let mut merged = merged.into_iter();
    for line in lines {
        match line {
            Some(text) => out.push_str(&text),
            None => {
                let Some((action, note, steps)) = merged.next() else {
                    continue;
                };
                let _ = writeln!(
                    out,
                    "  {} {:<8} {}",
                    sign(action),
                    action.as_str(),
                    steps.join(", ")
                );
                if let Some(note) = note {
                    let _ = writeln!(out, "      ({note})");
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailhub_engine::{Plan, TaskError};

    fn node(
        group: &str,
        step: &str,
        description: String,
        result: Result<Plan, TaskError>,
    ) -> PlannedNode {
        PlannedNode {
            id: trailhub_engine::NodeId::new(group, step),
            description,
            result,
        }
    }

    /// A source's plan as the onboarding workflow makes it for an account whose bucket exists
    /// (or, `broken`, does not).
    fn source(a: &str, broken: bool) -> Vec<PlannedNode> {
        let bucket = format!("cm-members-cloudtrail-{a}");
        let missing = || {
            TaskError::fatal(format!(
                "source bucket {bucket} does not exist in account {a}: HeadBucket answered 404"
            ))
            .with_code("NoSuchBucket")
            .with_hint(format!(
                "create the CloudTrail bucket {bucket} in account {a}, then `trailhub resume`"
            ))
        };
        let noop = |note: &str| Ok(Plan::new(PlanAction::NoOp).note(note));
        let mut replication = Plan::new(PlanAction::Create).change(
            "Role",
            None,
            format!("\"arn:aws:iam::{a}:role/S3ReplicationRole\""),
        );
        for field in [
            "Rules[0].ID",
            "Rules[0].Priority",
            "Rules[0].Status",
            "Rules[0].Filter.Prefix",
        ] {
            replication = replication.change(field, None, "…");
        }
        vec![
            node(
                a,
                "identity",
                format!("check that the credentials resolve to account {a}"),
                noop(&format!(
                    "credentials resolve to arn:aws:sts::{a}:user/moto"
                )),
            ),
            node(
                a,
                "bucket-check",
                format!("check that bucket {bucket} exists in account {a}"),
                if broken {
                    Err(missing())
                } else {
                    noop("preconditions hold")
                },
            ),
            node(
                a,
                "role-stack",
                format!("stack cloudtrail-replication-role in account {a}"),
                Ok(Plan::new(PlanAction::Create).change(
                    "StackName",
                    None,
                    "cloudtrail-replication-role",
                )),
            ),
            node(
                a,
                "versioning",
                format!("enable versioning on {bucket}"),
                if broken {
                    Err(missing())
                } else {
                    Ok(Plan::new(PlanAction::Update).change("Status", None, "Enabled"))
                },
            ),
            node(
                a,
                "key",
                format!("for SSE-KMS logs, allow {a}'s role"),
                noop("the logs are not SSE-KMS: no key needed"),
            ),
            node(
                a,
                "grant",
                format!("allow {a}'s role"),
                Ok(Plan::new(PlanAction::Unknown)
                    .note(format!("known once {a}/role-stack is created"))),
            ),
            node(
                a,
                "replication",
                format!("replicate s3://{bucket}"),
                if broken {
                    Ok(Plan::new(PlanAction::Unknown)
                        .note(format!("known once {a}/role-stack is created")))
                } else {
                    Ok(replication)
                },
            ),
            node(
                a,
                "verify",
                format!("read back account {a}'s configuration"),
                noop("read-only check after apply"),
            ),
        ]
    }

    fn plan_of(n: usize, broken: &[usize]) -> String {
        plan_with(n, broken, &BTreeMap::new())
    }

    fn plan_with(n: usize, broken: &[usize], verdicts: &BTreeMap<String, String>) -> String {
        let mut planned = vec![
            node(
                ARCHIVE,
                "identity",
                "check the archive's credentials".into(),
                Ok(Plan::new(PlanAction::NoOp)),
            ),
            node(
                ARCHIVE,
                "bucket",
                "create the archive bucket".into(),
                Ok(Plan::new(PlanAction::Create).change(
                    "Bucket",
                    None,
                    "aggregation-cloudtrail-logs-111111111111",
                )),
            ),
        ];
        let sources: Vec<String> = (1..=n)
            .map(|i| format!("{}", 200_000_000_000u64 + i as u64))
            .collect();
        for (i, a) in sources.iter().enumerate() {
            planned.extend(source(a, broken.contains(&(i + 1))));
        }
        let mut order = vec![ARCHIVE];
        order.extend(sources.iter().map(String::as_str));
        let groups = by_group(&planned, &order);
        plan_text(
            &groups,
            &Counts::of(&planned),
            "111111111111",
            false,
            verdicts,
        )
    }

    /// Accounts whose plans are alike but whose delivery verdicts differ are told apart, and
    /// the same refusal naming each account's own role groups them (the id generalized).
    #[test]
    fn accounts_group_by_their_delivery_verdict_too() {
        let refused = |a: &str| {
            format!(
                "would fail: s3:ReplicateObject refused by archive bucket aggregation-cloudtrail-logs-111111111111 policy, statement DenyByHand; fix: statement DenyByHand denies s3:ReplicateObject to arn:aws:iam::{a}:role/S3ReplicationRole"
            )
        };
        let verdicts: BTreeMap<String, String> = (1..=12u64)
            .map(|i| {
                let a = format!("{}", 200_000_000_000u64 + i);
                let v = if i == 4 || i == 9 {
                    refused(&a)
                } else {
                    "delivers".to_string()
                };
                (a, v)
            })
            .collect();
        let text = plan_with(12, &[], &verdicts);
        assert!(
            text.contains("2 accounts — 200000000004 200000000009\n"),
            "the two refused accounts together:\n{text}"
        );
        assert!(
            text.contains("10 accounts — 200000000001 200000000002"),
            "{text}"
        );
        assert!(
            text.contains(&format!("  delivery check: {}\n", refused("{account_id}"))),
            "the refusal once, generalized:\n{text}"
        );
        assert_eq!(
            text.matches("  delivery check: delivers\n").count(),
            1,
            "{text}"
        );
        assert!(!text.contains("role/200000000004"), "{text}");
    }

    #[test]
    fn identical_accounts_are_shown_once_errors_first() {
        let text = plan_of(50, &[11, 12, 13]);
        insta::assert_snapshot!("plan_fifty_three_broken", text);
        assert!(
            text.lines().count() <= 60,
            "{} lines:\n{text}",
            text.lines().count()
        );
        let errors = text
            .find("3 accounts — 200000000011 200000000012 200000000013\n")
            .expect("the broken accounts together");
        let archive = text.find("archive (111111111111)").expect("the archive");
        let rest = text.find("47 accounts — 200000000001 200000000002 200000000003 200000000004 200000000005 … and 42 more (`--all` lists each)\n").expect("the others together");
        assert!(errors < archive && archive < rest, "{text}");
        assert!(
            text.contains("    no-op    identity, bucket-check, key, verify\n"),
            "{text}"
        );
        assert!(text.contains(
            "      Role: (absent) -> \"arn:aws:iam::{account_id}:role/S3ReplicationRole\""
        ));
        assert!(text.contains(
            "(50 accounts in 2 groups of the same plan; `--all` lists every account in full)"
        ));
    }

    #[test]
    fn a_small_fleet_is_listed_in_full() {
        let text = plan_of(3, &[2]);
        assert_eq!(
            text.matches("\naccount 2000000000").count() + usize::from(text.starts_with("account")),
            3
        );
        assert!(!text.contains("{account_id}"), "{text}");
    }
}
