//! What a rollback must know of the journal's other runs: which later runs changed again, or
//! rely on, what it would undo, and which runs a rollback of accounts across runs takes, newest
//! first. It reads the journal only: it changes nothing and makes no request.
//!
//! Why the order matters: a node's undo record is the state before *its* run changed the
//! resource. Runs undone from the highest sequence down return a resource, step by step, to the
//! state before the first run that touched it. An earlier run undone under a later one puts back
//! a state the later run had replaced, and leaves the later run's journal describing a resource
//! that is no longer there; so it is refused unless forced.

use crate::dag::Shape;
use crate::errors::EngineError;
use crate::rollback::{RollbackScope, has_effects, pending, scope_filter};
use std::collections::BTreeSet;
use trailhub_state::{Journal, NodeId, NodeRecord, NodeState, RunRecord};

/// How many node ids a refusal names per line before it only counts the rest.
const NAMED: usize = 8;

/// A later run that changed again, or relies on, nodes that a rollback of an earlier run would
/// undo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaterRun {
    /// The later run's id.
    pub run: String,
    /// Its sequence.
    pub sequence: u64,
    /// The nodes it changed again, or may have (an attempt that did not report back, a failure
    /// after its undo record was written), sorted.
    pub changed: Vec<NodeId>,
    /// The nodes it found as the earlier run left them and built on without changing, sorted.
    pub relies_on: Vec<NodeId>,
}

/// One run's part of a rollback of accounts across runs.
#[derive(Debug, Clone)]
pub struct RunPart {
    /// The run, as journaled when the plan was made.
    pub run: RunRecord,
    /// Its nodes to undo: the named accounts this run has, and the step bound if one was given.
    pub scope: RollbackScope,
}

/// The later runs (higher sequence), newest first, that have effects (are not rolled back) on a
/// node that the rollback of `scope` in run `run_id` would undo: the same node id, done or
/// possibly changed, in the later run's journal. Empty when nothing stands in the way.
pub fn later_runs(
    journal: &Journal,
    run_id: &str,
    scope: &RollbackScope,
) -> Result<Vec<LaterRun>, EngineError> {
    let run = journal.run(run_id)?;
    later(journal, &run, &shape_of(&run)?, scope)
}

/// Refuses ([`EngineError::Refused`]) the rollback of `scope` in run `run_id` when
/// [`later_runs`] finds any; the message names the later runs and the nodes, and says what to
/// do instead (roll the later runs back first, roll the accounts back across runs, or force).
/// Reads the journal only, so a caller that asks before anything else refuses before any
/// request. A scope that names what the run does not have is refused as
/// [`rollback`](crate::rollback()) refuses it.
pub fn refuse_later_runs(
    journal: &Journal,
    run_id: &str,
    scope: &RollbackScope,
) -> Result<(), EngineError> {
    let run = journal.run(run_id)?;
    let shape = shape_of(&run)?;
    let later = later(journal, &run, &shape, scope)?;
    if later.is_empty() {
        return Ok(());
    }
    Err(EngineError::Refused(refusal(
        &run.id, &shape, scope, &later,
    )))
}

/// The rollback of `accounts`' enrollment across every run of the journal: each run with nodes
/// of those accounts (after `after_step`, when given) that have effects, highest sequence first,
/// with the scope of the named accounts that run has. Undone in this order, each account returns
/// to the state found before the first run that touched it.
///
/// Refused, with every problem at once: an account no run has; a group that hosts other groups'
/// steps (the archive: shared by every account, so never part of one account's enrollment); a
/// run whose unfinished rollback this one would not complete (it names other accounts, or fewer
/// steps), which must be finished first.
pub fn account_rollbacks(
    journal: &Journal,
    accounts: &[String],
    after_step: Option<&str>,
) -> Result<Vec<RunPart>, EngineError> {
    let mut known = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    let mut parts = Vec::new();
    let mut problems = Vec::new();
    for run in journal.runs()?.into_iter().rev() {
        let shape = shape_of(&run)?;
        let groups: BTreeSet<&str> = shape.groups().into_iter().collect();
        known.extend(groups.iter().map(|g| g.to_string()));
        hosts.extend(
            shape
                .nodes()
                .iter()
                .filter_map(|n| n.host().map(str::to_string)),
        );
        let scope = RollbackScope {
            groups: accounts
                .iter()
                .filter(|a| groups.contains(a.as_str()) && !hosts.contains(*a))
                .cloned()
                .collect(),
            after_step: after_step.map(str::to_string),
        };
        if scope.groups.is_empty() || !has_work(journal, &run, &shape, &scope)? {
            continue;
        }
        if let Some(unfinished) = pending(&run).map(|p| p.scope)
            && !completes(&scope, &unfinished)
        {
            problems.push(format!(
                "run {} has an unfinished rollback of {}; finish it first with `trailhub rollback {}`",
                run.id,
                describe(&unfinished),
                run.id
            ));
        }
        parts.push(RunPart { run, scope });
    }
    for account in accounts {
        if hosts.contains(account) {
            problems.push(format!(
                "{account}'s steps are shared by every account, so they are no account's \
                 enrollment: roll them back one run at a time (`trailhub rollback RUN --account {account}`)"
            ));
        } else if !known.contains(account) {
            problems.push(format!(
                "the journal has no account {account} in any run; its accounts are: {}",
                known
                    .iter()
                    .filter(|g| !hosts.contains(*g))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if problems.is_empty() {
        Ok(parts)
    } else {
        problems.sort();
        problems.dedup();
        Err(EngineError::Refused(format!(
            "{} (nothing was changed)",
            problems.join("\n")
        )))
    }
}

/// Whether `scope` has a node with effects in `run`.
fn has_work(
    journal: &Journal,
    run: &RunRecord,
    shape: &Shape,
    scope: &RollbackScope,
) -> Result<bool, EngineError> {
    let in_scope = scope_filter(shape, &run.id, scope)?;
    Ok(journal
        .nodes(&run.id)?
        .iter()
        .any(|(id, r)| in_scope(id) && has_effects(r)))
}

/// Whether rolling back `asked` also completes the unfinished rollback of `unfinished`: it
/// names some of the same accounts and nothing else, and undoes at least the same steps.
fn completes(asked: &RollbackScope, unfinished: &RollbackScope) -> bool {
    !unfinished.groups.is_empty()
        && unfinished.groups.iter().all(|g| asked.groups.contains(g))
        && (asked.after_step.is_none() || asked.after_step == unfinished.after_step)
}

fn later(
    journal: &Journal,
    run: &RunRecord,
    shape: &Shape,
    scope: &RollbackScope,
) -> Result<Vec<LaterRun>, EngineError> {
    let in_scope = scope_filter(shape, &run.id, scope)?;
    let undone: Vec<NodeId> = journal
        .nodes(&run.id)?
        .into_iter()
        .filter(|(id, rec)| in_scope(id) && has_effects(rec))
        .map(|(id, _)| id)
        .collect();
    let mut found = Vec::new();
    if undone.is_empty() {
        return Ok(found);
    }
    for other in journal.runs()?.into_iter().rev() {
        if other.sequence <= run.sequence {
            break;
        }
        let records = journal.nodes(&other.id)?;
        let mut later = LaterRun {
            run: other.id,
            sequence: other.sequence,
            changed: Vec::new(),
            relies_on: Vec::new(),
        };
        for id in &undone {
            match records.get(id) {
                Some(rec) if has_effects(rec) && changed_again(rec) => {
                    later.changed.push(id.clone())
                }
                Some(rec) if has_effects(rec) => later.relies_on.push(id.clone()),
                _ => {}
            }
        }
        if !later.changed.is_empty() || !later.relies_on.is_empty() {
            found.push(later);
        }
    }
    Ok(found)
}

/// Whether a later run's node changed its resource, or may have: only a node done without a
/// change is known to have left it as it found it.
fn changed_again(rec: &NodeRecord) -> bool {
    rec.state != NodeState::Done || rec.changed
}

fn shape_of(run: &RunRecord) -> Result<Shape, EngineError> {
    match &run.graph {
        Some(graph) => Shape::from_record(graph),
        None => Err(EngineError::Refused(format!(
            "run {} has no journaled graph; the journal may be damaged",
            run.id
        ))),
    }
}

/// The refusal: the later runs and their nodes, then the three ways forward.
fn refusal(run: &str, shape: &Shape, scope: &RollbackScope, later: &[LaterRun]) -> String {
    let mut text = format!(
        "refusing to roll back run {run}: {} changed again, or relies on, what it would undo \
         (nothing was changed):",
        if later.len() == 1 {
            "a later run"
        } else {
            "later runs"
        }
    );
    for l in later {
        for (what, nodes) in [("changed again", &l.changed), ("relies on", &l.relies_on)] {
            if !nodes.is_empty() {
                text.push_str(&format!("\n  run {} {what}: {}", l.run, named(nodes)));
            }
        }
    }
    let first: Vec<String> = later
        .iter()
        .map(|l| format!("`trailhub rollback {}`", l.run))
        .collect();
    text.push_str(&if later.len() == 1 {
        format!("\nRoll back the later run first ({})", first[0])
    } else {
        format!(
            "\nRoll back the later runs first, newest first ({})",
            first.join(", then ")
        )
    });
    let hosts: BTreeSet<&str> = shape.nodes().iter().filter_map(|n| n.host()).collect();
    let accounts: BTreeSet<&str> = later
        .iter()
        .flat_map(|l| l.changed.iter().chain(&l.relies_on))
        .map(NodeId::group)
        .filter(|g| !hosts.contains(g))
        .collect();
    if !accounts.is_empty() {
        let to = scope
            .after_step
            .as_ref()
            .map(|s| format!(" --to {s}"))
            .unwrap_or_default();
        let flags: Vec<String> = accounts.iter().map(|a| format!("--account {a}")).collect();
        text.push_str(&format!(
            ", undo the account{} across every run with `trailhub rollback {}{to}`",
            if accounts.len() == 1 { "" } else { "s" },
            flags.join(" ")
        ));
    }
    let mut again = format!("trailhub rollback {run}");
    for group in &scope.groups {
        again.push_str(&format!(" --account {group}"));
    }
    if let Some(step) = &scope.after_step {
        again.push_str(&format!(" --to {step}"));
    }
    text.push_str(&format!(
        ", or undo run {run}'s changes anyway, over what the later run{} did, with `{again} --force`.",
        if later.len() == 1 { "" } else { "s" }
    ));
    text
}

/// Up to [`NAMED`] ids, then how many more.
fn named(nodes: &[NodeId]) -> String {
    let mut text = nodes
        .iter()
        .take(NAMED)
        .map(NodeId::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if nodes.len() > NAMED {
        text.push_str(&format!(" and {} more", nodes.len() - NAMED));
    }
    text
}

/// A scope in words, for messages.
fn describe(scope: &RollbackScope) -> String {
    let who = if scope.groups.is_empty() {
        "every group".to_string()
    } else {
        scope.groups.join(", ")
    };
    match &scope.after_step {
        Some(step) => format!("the steps after {step} of {who}"),
        None => who,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailhub_state::{GraphRecord, NewRun, RunStatus, Write};

    fn id(text: &str) -> NodeId {
        text.parse().expect("a node id")
    }

    /// `archive/bucket -> archive/grant/G <- G/x` for each group `G`, and `G/x -> G/y`.
    fn graph(groups: &[&str]) -> GraphRecord {
        let mut nodes = vec![id("archive/bucket")];
        let mut edges = Vec::new();
        for g in groups {
            let (x, y, grant) = (
                id(&format!("{g}/x")),
                id(&format!("{g}/y")),
                id(&format!("archive/grant/{g}")),
            );
            nodes.extend([x.clone(), y.clone(), grant.clone()]);
            edges.push((id("archive/bucket"), grant.clone()));
            edges.push((x.clone(), grant));
            edges.push((x, y));
        }
        nodes.sort();
        edges.sort();
        GraphRecord { nodes, edges }
    }

    /// A run of `groups` whose every node is done, changing something where `changed` says.
    fn run(journal: &Journal, groups: &[&str], changed: impl Fn(&NodeId) -> bool) -> String {
        let graph = graph(groups);
        let run = journal
            .create_run(NewRun {
                workflow: "w",
                definition: "",
                source: None,
                options: serde_json::Value::Null,
                graph: Some(graph.clone()),
            })
            .expect("run");
        let writes = graph
            .nodes
            .iter()
            .map(|node| {
                let mut record = NodeRecord::pending();
                record.state = NodeState::Done;
                record.changed = changed(node);
                record.undo = Some(serde_json::json!({}));
                Write::Node {
                    run: run.id.clone(),
                    node: node.clone(),
                    record,
                }
            })
            .collect();
        journal.commit(writes).expect("commit");
        run.id
    }

    fn set_state(journal: &Journal, run: &str, node: &str, state: NodeState) {
        let mut record = journal.node(run, &id(node)).expect("read").expect("node");
        record.state = state;
        journal
            .commit(vec![Write::Node {
                run: run.to_string(),
                node: id(node),
                record,
            }])
            .expect("commit");
    }

    fn scope(groups: &[&str], after_step: Option<&str>) -> RollbackScope {
        RollbackScope {
            groups: groups.iter().map(|g| g.to_string()).collect(),
            after_step: after_step.map(str::to_string),
        }
    }

    fn ids(nodes: &[NodeId]) -> Vec<&str> {
        nodes.iter().map(NodeId::as_str).collect()
    }

    #[test]
    fn a_later_run_that_changed_a_node_again_or_relies_on_it_stands_in_the_way() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(dir.path()).expect("open");
        let first = run(&journal, &["a", "b"], |_| true);
        let second = run(&journal, &["a", "b"], |n| n.as_str() == "a/x");

        let later = later_runs(&journal, &first, &scope(&["a"], None)).expect("read");
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].run, second);
        assert_eq!(ids(&later[0].changed), ["a/x"]);
        assert_eq!(ids(&later[0].relies_on), ["a/y", "archive/grant/a"]);
        let whole = later_runs(&journal, &first, &RollbackScope::default()).expect("read");
        assert!(ids(&whole[0].relies_on).contains(&"archive/bucket"));
        let after = later_runs(&journal, &first, &scope(&["a"], Some("x"))).expect("read");
        assert_eq!(ids(&after[0].relies_on), ["a/y", "archive/grant/a"]);
        assert!(after[0].changed.is_empty(), "a/x itself is not after x");

        let err = refuse_later_runs(&journal, &first, &scope(&["a"], None)).expect_err("refused");
        let text = err.to_string();
        for needle in [
            format!("refusing to roll back run {first}"),
            format!("run {second} changed again: a/x"),
            format!("`trailhub rollback {second}`"),
            "`trailhub rollback --account a`".to_string(),
            format!("`trailhub rollback {first} --account a --force`"),
        ] {
            assert!(text.contains(&needle), "{needle:?} not in: {text}");
        }
        assert!(
            !text.contains("--account archive"),
            "the archive is no account: {text}"
        );
        assert!(
            later_runs(&journal, &second, &RollbackScope::default())
                .expect("read")
                .is_empty(),
            "nothing is later than the latest run"
        );
    }

    #[test]
    fn nodes_a_later_run_rolled_back_or_never_had_stand_in_no_ones_way() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(dir.path()).expect("open");
        let first = run(&journal, &["a", "b"], |_| true);
        let second = run(&journal, &["a", "b"], |_| false);
        let third = run(&journal, &["b"], |_| true);
        for node in ["a/x", "a/y", "archive/grant/a"] {
            set_state(&journal, &second, node, NodeState::RolledBack);
        }
        refuse_later_runs(&journal, &first, &scope(&["a"], None)).expect("nothing later on a");
        let later = later_runs(&journal, &first, &scope(&["b"], None)).expect("read");
        let runs: Vec<&str> = later.iter().map(|l| l.run.as_str()).collect();
        assert_eq!(runs, [third.as_str(), second.as_str()], "newest first");
        let text = refuse_later_runs(&journal, &first, &scope(&["b"], None))
            .expect_err("refused")
            .to_string();
        assert!(
            text.contains(&format!(
                "`trailhub rollback {third}`, then `trailhub rollback {second}`"
            )),
            "{text}"
        );
    }

    #[test]
    fn an_account_is_rolled_back_in_every_run_that_touched_it_newest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(dir.path()).expect("open");
        let first = run(&journal, &["a", "b"], |_| true);
        let only_b = run(&journal, &["b"], |_| true);
        let third = run(&journal, &["a", "c"], |_| true);
        let fourth = run(&journal, &["a"], |_| true);
        for node in ["a/x", "a/y", "archive/grant/a"] {
            set_state(&journal, &fourth, node, NodeState::RolledBack);
        }
        let accounts = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let parts = account_rollbacks(&journal, &accounts(&["a", "b"]), None).expect("plan");
        let plan: Vec<(&str, Vec<&str>)> = parts
            .iter()
            .map(|p| {
                (
                    p.run.id.as_str(),
                    p.scope.groups.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            plan,
            [
                (third.as_str(), vec!["a"]),
                (only_b.as_str(), vec!["b"]),
                (first.as_str(), vec!["a", "b"]),
            ],
            "the run that rolled a back already has nothing left of it"
        );

        let err = account_rollbacks(&journal, &accounts(&["archive", "zzz"]), None)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("has no account zzz"), "{err}");
        assert!(err.contains("archive's steps are shared"), "{err}");
        assert!(err.contains("nothing was changed"), "{err}");
    }

    #[test]
    fn an_unfinished_rollback_is_continued_only_when_this_one_completes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(dir.path()).expect("open");
        let first = run(&journal, &["a", "b"], |_| true);
        let pending = |scope: serde_json::Value| {
            let mut run = journal.run(&first).expect("run");
            run.status = RunStatus::RollingBack;
            run.pending_rollback =
                Some(serde_json::json!({ "scope": scope, "previous_status": "succeeded" }));
            journal.commit(vec![Write::Run(run)]).expect("commit");
        };
        let a = vec!["a".to_string()];
        pending(serde_json::json!({ "groups": ["a"], "after_step": "x" }));
        assert_eq!(
            account_rollbacks(&journal, &a, None).expect("plan").len(),
            1
        );
        pending(serde_json::json!({ "groups": [] }));
        let err = account_rollbacks(&journal, &a, None)
            .expect_err("the whole run's rollback is not a's")
            .to_string();
        assert!(
            err.contains(&format!(
                "run {first} has an unfinished rollback of every group; finish it first with `trailhub rollback {first}`"
            )),
            "{err}"
        );
    }
}
