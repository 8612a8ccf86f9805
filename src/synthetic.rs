//! Synthetic runs for the tests of fleet views: the real onboarding workflow's graph over `n`
//! accounts, with node records and events as a run would journal them (the archive done, some
//! accounts failed at bucket-check with NoSuchBucket and their later steps blocked, one grant
//! retried once), on a clock of its own. No journal, no AWS.

use crate::commands::common::RunView;
use std::collections::BTreeMap;
use trailhub_engine::Shape;
use trailhub_state::{
    ErrorRecord, Event, EventKind, NodeId, NodeRecord, NodeState, RunRecord, RunStatus,
};
use trailhub_steps::Connector;
use trailhub_workflows::{Workflow, step_context};

/// The first event's time: 2026-11-28T10:15:00Z.
const T0: u64 = 1_795_860_900_000;

/// `n` source account ids: 200000000001, 200000000002, …
pub fn accounts(n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| format!("{}", 200_000_000_000u64 + i as u64))
        .collect()
}

/// An inventory of the archive 111111111111 and `sources`.
pub fn inventory(sources: &[String]) -> String {
    let mut text = String::from(
        "region = \"ap-northeast-1\"\n[archive]\naccount_id = \"111111111111\"\n[source_defaults]\ntrail = \"Members\"\n",
    );
    for s in sources {
        text.push_str(&format!("[[source]]\naccount_id = \"{s}\"\n"));
    }
    text
}

/// The graph of the onboarding workflow over `sources`.
pub fn shape(sources: &[String]) -> Shape {
    let inventory =
        trailhub_workflows::parse(&inventory(sources), "synthetic").expect("a valid inventory");
    let ctx = step_context(&inventory, Connector::new("ap-northeast-1", None));
    let workflow = Workflow::new(inventory, Vec::new()).expect("a workflow");
    let dag = workflow.dag(&ctx).expect("a valid graph");
    Shape::from_record(&dag.record()).expect("the journaled graph")
}

/// The error bucket-check journals for an account without its bucket.
pub fn no_bucket(account: &str) -> ErrorRecord {
    ErrorRecord {
        message: format!(
            "source bucket cm-members-cloudtrail-{account} does not exist in account {account}: HeadBucket answered 404"
        ),
        code: Some("NoSuchBucket".into()),
        retryable: false,
        hint: Some(format!(
            "create the CloudTrail bucket cm-members-cloudtrail-{account} in account {account} (or set `bucket` for this source), then `trailhub resume`"
        )),
    }
}

/// A finished run over `n` accounts in which the accounts at the 1-based positions `failing`
/// have no bucket. The run's events go on a clock: the archive's steps one after another, each
/// account starting a little after the one before, its stack taking three seconds.
pub fn run(n: usize, failing: &[usize]) -> (RunView, Vec<Event>) {
    let sources = accounts(n);
    let shape = shape(&sources);
    let failed: Vec<&str> = failing.iter().map(|i| sources[i - 1].as_str()).collect();
    let mut records: BTreeMap<NodeId, NodeRecord> = BTreeMap::new();
    let mut events: Vec<(u64, NodeId, EventKind)> = Vec::new();
    let ordered: Vec<NodeId> = shape.topological().into_iter().cloned().collect();
    let mut finished: BTreeMap<NodeId, u64> = BTreeMap::new();
    let groups: Vec<String> = shape.groups().iter().map(|g| g.to_string()).collect();
    for (position, group) in groups.iter().enumerate() {
        let broken = failed.contains(&group.as_str());
        let mut failed_here: Option<NodeId> = None;
        for id in ordered.iter().filter(|id| id.group() == group) {
            let deps = shape.dependencies(id);
            if deps.iter().any(|d| {
                failed_here.as_ref() == Some(*d)
                    || records
                        .get(*d)
                        .is_some_and(|r| r.state == NodeState::Blocked)
            }) {
                records.insert(
                    id.clone(),
                    NodeRecord {
                        state: NodeState::Blocked,
                        ..NodeRecord::pending()
                    },
                );
                continue;
            }
            let ready = deps
                .iter()
                .filter_map(|d| finished.get(*d).copied())
                .max()
                .unwrap_or(T0 + position as u64 * 40);
            let start = ready + 5;
            let took = match id.step() {
                "role-stack" => 3_000,
                "grant" => 400,
                _ => 150,
            };
            let mut attempts = 1;
            events.push((start, id.clone(), EventKind::AttemptStarted { attempt: 1 }));
            let mut end = start + took;
            if broken && id.step() == "bucket-check" {
                let error = no_bucket(group);
                events.push((
                    end,
                    id.clone(),
                    EventKind::NodeFailed {
                        error: error.clone(),
                    },
                ));
                records.insert(
                    id.clone(),
                    NodeRecord {
                        state: NodeState::Failed,
                        attempts,
                        last_error: Some(error),
                        started_at_ms: Some(start),
                        finished_at_ms: Some(end),
                        ..NodeRecord::pending()
                    },
                );
                failed_here = Some(id.clone());
                continue;
            }
            if position == 2 && id.step() == "grant" {
                let error = ErrorRecord {
                    message: "the role is not visible to S3 yet: MalformedPolicy: Invalid principal in policy".into(),
                    code: Some("MalformedPolicy".into()),
                    retryable: true,
                    hint: None,
                };
                events.push((
                    end,
                    id.clone(),
                    EventKind::AttemptFailed {
                        attempt: 1,
                        error,
                        retry_in_ms: Some(500),
                    },
                ));
                attempts = 2;
                events.push((
                    end + 500,
                    id.clone(),
                    EventKind::AttemptStarted { attempt: 2 },
                ));
                end += 500 + took;
            }
            events.push((end, id.clone(), EventKind::NodeDone { changed: true }));
            finished.insert(id.clone(), end);
            records.insert(
                id.clone(),
                NodeRecord {
                    state: NodeState::Done,
                    attempts,
                    started_at_ms: Some(start),
                    finished_at_ms: Some(end),
                    changed: true,
                    ..NodeRecord::pending()
                },
            );
        }
    }
    events.sort_by_key(|(at, _, _)| *at);
    let last = events.last().map_or(T0, |(at, _, _)| *at);
    let events: Vec<Event> = events
        .into_iter()
        .enumerate()
        .map(|(i, (at_ms, node, kind))| Event {
            seq: i as u64 + 1,
            at_ms,
            node: Some(node),
            kind,
        })
        .collect();
    let run = RunRecord {
        id: "20261128T101500Z-0001".into(),
        sequence: 1,
        created_at_ms: T0,
        updated_at_ms: last,
        workflow: "onboard".into(),
        definition: inventory(&sources),
        source: Some("inventory.toml".into()),
        status: if failing.is_empty() {
            RunStatus::Succeeded
        } else {
            RunStatus::PartiallyFailed
        },
        options: serde_json::json!({ "accounts": [], "concurrency": 64 }),
        pending_rollback: None,
        graph: Some(shape.record()),
    };
    (
        RunView {
            run,
            shape,
            records,
        },
        events,
    )
}
