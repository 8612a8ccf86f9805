//! Scheduler behaviour on tiny graphs: order, concurrency bound, exclusive resources, failure
//! isolation, retries, stop and resume.

use crate::support::*;
use std::collections::BTreeMap;
use std::time::Duration;
use trailhub_engine::{NullObserver, RetryPolicy, RunOptions, RunStatus, execute};
use trailhub_state::EventKind;

#[tokio::test]
async fn dependencies_run_first() {
    // a -> b -> d
    // a -> c -> d
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let world = World::default();
    let slow = Behaviour {
        delay: Duration::from_millis(5),
        ..Default::default()
    };
    let behaviours = BTreeMap::from([("b", slow.clone()), ("c", slow)]);
    let dag = graph(
        &world,
        &[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])],
        &behaviours,
    );
    let run = new_run(&journal);
    let summary = run_to_end(&dag, &journal, &run, 4).await;
    assert_eq!(summary.status, RunStatus::Succeeded);
    let log = world.with(|w| w.log.clone());
    let pos = |n: &str| log.iter().position(|l| l == &format!("+{n}")).unwrap();
    assert!(pos("a") < pos("b") && pos("a") < pos("c"));
    assert!(pos("b") < pos("d") && pos("c") < pos("d"));
    assert!(states(&journal, &run).values().all(|s| s == "done"));
}

#[tokio::test]
async fn concurrency_is_bounded_and_reached() {
    // ten independent nodes, concurrency 3
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let world = World::default();
    let ids: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
    let nodes: Vec<(&str, &[&str])> = ids.iter().map(|s| (s.as_str(), &[][..])).collect();
    let slow = Behaviour {
        delay: Duration::from_millis(20),
        ..Default::default()
    };
    let behaviours = ids.iter().map(|s| (s.as_str(), slow.clone())).collect();
    let dag = graph(&world, &nodes, &behaviours);
    let run = new_run(&journal);
    run_to_end(&dag, &journal, &run, 3).await;
    assert_eq!(world.with(|w| w.max_running), 3);
}

#[tokio::test]
async fn exclusive_resource_has_one_holder() {
    // six independent nodes sharing one named resource, concurrency 6
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let world = World::default();
    let ids: Vec<String> = (0..6).map(|i| format!("grant{i}")).collect();
    let nodes: Vec<(&str, &[&str])> = ids.iter().map(|s| (s.as_str(), &[][..])).collect();
    let locked = Behaviour {
        delay: Duration::from_millis(10),
        exclusive: Some("policy".into()),
        ..Default::default()
    };
    let behaviours = ids.iter().map(|s| (s.as_str(), locked.clone())).collect();
    let dag = graph(&world, &nodes, &behaviours);
    let run = new_run(&journal);
    let summary = run_to_end(&dag, &journal, &run, 6).await;
    assert_eq!(summary.status, RunStatus::Succeeded);
    assert_eq!(world.with(|w| w.max_holding), 1);
    assert!(
        world.with(|w| w.max_running) > 1,
        "others waited while running"
    );
}

#[tokio::test]
async fn a_failure_blocks_only_its_descendants() {
    // a -> b -> c      b fails
    // a -> f
    // d -> e
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let world = World::default();
    let behaviours = BTreeMap::from([(
        "b",
        Behaviour {
            fatal: true,
            ..Default::default()
        },
    )]);
    let dag = graph(
        &world,
        &[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &["b"]),
            ("f", &["a"]),
            ("d", &[]),
            ("e", &["d"]),
        ],
        &behaviours,
    );
    let run = new_run(&journal);
    let summary = run_to_end(&dag, &journal, &run, 2).await;
    assert_eq!(summary.status, RunStatus::PartiallyFailed);
    let states = states(&journal, &run);
    assert_eq!(states["b"], "failed");
    assert_eq!(states["c"], "blocked");
    for n in ["a", "f", "d", "e"] {
        assert_eq!(states[n], "done", "{n}");
    }
    let b = journal.node(&run, &id("b")).unwrap().unwrap();
    assert_eq!(b.attempts, 1, "fatal errors are not retried");
    assert_eq!(b.last_error.unwrap().code.as_deref(), Some("Broken"));
    assert!(world.with(|w| !w.attempts.contains(&"c".to_string())));
    let events = journal.events(&run).unwrap();
    assert!(events.iter().any(|e| e.node == Some(id("c"))
        && matches!(&e.kind, EventKind::NodeBlocked { by } if *by == Some(id("b")))));
}

#[tokio::test]
async fn everything_failing_is_a_failed_run() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let world = World::default();
    let behaviours = BTreeMap::from([(
        "a",
        Behaviour {
            fatal: true,
            ..Default::default()
        },
    )]);
    let dag = graph(&world, &[("a", &[]), ("b", &["a"])], &behaviours);
    let run = new_run(&journal);
    let summary = run_to_end(&dag, &journal, &run, 2).await;
    assert_eq!(summary.status, RunStatus::Failed);
    assert_eq!(journal.run(&run).unwrap().status, RunStatus::Failed);
}

#[tokio::test]
async fn retryable_errors_are_retried_then_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let world = World::default();
    let behaviours = BTreeMap::from([(
        "a",
        Behaviour {
            transient_failures: 2,
            ..Default::default()
        },
    )]);
    let dag = graph(&world, &[("a", &[])], &behaviours);
    let run = new_run(&journal);
    let summary = run_to_end(&dag, &journal, &run, 1).await;
    assert_eq!(summary.status, RunStatus::Succeeded);
    let rec = journal.node(&run, &id("a")).unwrap().unwrap();
    assert_eq!(rec.attempts, 3);
    assert!(rec.last_error.is_none());
    let failed: Vec<u32> = journal
        .events(&run)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::AttemptFailed {
                attempt,
                retry_in_ms,
                error,
            } => {
                assert!(error.retryable);
                assert!(retry_in_ms.is_some());
                Some(attempt)
            }
            _ => None,
        })
        .collect();
    assert_eq!(failed, vec![1, 2]);
}

#[tokio::test]
async fn retries_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let world = World::default();
    let behaviours = BTreeMap::from([(
        "a",
        Behaviour {
            always_retryable: true,
            ..Default::default()
        },
    )]);
    let dag = graph(&world, &[("a", &[])], &behaviours);
    let run = new_run(&journal);
    let summary = execute(
        &dag,
        &journal,
        &run,
        "apply",
        &RunOptions {
            concurrency: 1,
            retry: RetryPolicy::fast(3),
        },
        &NullObserver,
        never(),
    )
    .await
    .unwrap();
    assert_eq!(summary.status, RunStatus::Failed);
    let rec = journal.node(&run, &id("a")).unwrap().unwrap();
    assert_eq!(rec.attempts, 3);
    assert!(
        rec.last_error
            .unwrap()
            .message
            .contains("gave up after 3 attempts")
    );
}

#[tokio::test]
async fn stop_then_resume_finishes_without_repeating() {
    // a -> b -> c, stop requested while a runs
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let world = World::default();
    let slow = Behaviour {
        delay: Duration::from_millis(30),
        ..Default::default()
    };
    let behaviours = BTreeMap::from([("a", slow)]);
    let dag = graph(
        &world,
        &[("a", &[]), ("b", &["a"]), ("c", &["b"])],
        &behaviours,
    );
    let run = new_run(&journal);
    let a_started = world.started.clone();
    let summary = execute(
        &dag,
        &journal,
        &run,
        "apply",
        &options(2),
        &NullObserver,
        async move { a_started.notified().await },
    )
    .await
    .unwrap();
    assert_eq!(summary.status, RunStatus::Interrupted);
    let states = states(&journal, &run);
    assert_eq!(states["a"], "done", "a running attempt is not cancelled");
    assert!(!states.contains_key("b") || states["b"] == "pending");

    let summary = execute(
        &dag,
        &journal,
        &run,
        "resume",
        &options(2),
        &NullObserver,
        never(),
    )
    .await
    .unwrap();
    assert_eq!(summary.status, RunStatus::Succeeded);
    assert_eq!(world.with(|w| w.attempts.clone()), vec!["a", "b", "c"]);
}

#[tokio::test]
async fn resume_retries_failed_nodes_and_skips_done_ones() {
    // a -> b   (b fails the first run, fixed before the resume)
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let world = World::default();
    let broken = BTreeMap::from([(
        "b",
        Behaviour {
            fatal: true,
            ..Default::default()
        },
    )]);
    let run = new_run(&journal);
    let dag = graph(&world, &[("a", &[]), ("b", &["a"])], &broken);
    assert_eq!(
        run_to_end(&dag, &journal, &run, 1).await.status,
        RunStatus::PartiallyFailed
    );
    let fixed = graph(&world, &[("a", &[]), ("b", &["a"])], &BTreeMap::new());
    let summary = execute(
        &fixed,
        &journal,
        &run,
        "resume",
        &options(1),
        &NullObserver,
        never(),
    )
    .await
    .unwrap();
    assert_eq!(summary.status, RunStatus::Succeeded);
    assert_eq!(world.with(|w| w.attempts.clone()), vec!["a", "b", "b"]);
    assert_eq!(journal.node(&run, &id("b")).unwrap().unwrap().attempts, 2);
}

#[tokio::test]
async fn the_journal_is_locked_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let _journal = open(dir.path());
    let err = trailhub_state::Journal::open(dir.path()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("locked by another trailhub process"),
        "{text}"
    );
    assert!(
        text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );
}

#[tokio::test]
async fn no_more_groups_in_progress_than_the_concurrency() {
    // Six groups, each a chain x -> y -> z; every y also waits for the shared group's node
    // `hub/start`. Concurrency 2: at most two of the six groups are in progress at a time (a
    // group starts when an earlier one has finished), and the shared group, which the others
    // wait for, is never held back.
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let world = World::default();
    let ids: Vec<[String; 3]> = (0..6)
        .map(|i| ["x", "y", "z"].map(|s| format!("a{i}/{s}")))
        .collect();
    let deps: Vec<[Vec<&str>; 3]> = ids
        .iter()
        .map(|[x, y, _]| [vec![], vec![x.as_str(), "hub/start"], vec![y.as_str()]])
        .collect();
    let mut nodes: Vec<(&str, &[&str])> = vec![("hub/start", &[])];
    for (chain, deps) in ids.iter().zip(&deps) {
        for (id, d) in chain.iter().zip(deps) {
            nodes.push((id.as_str(), d.as_slice()));
        }
    }
    let slow = Behaviour {
        delay: Duration::from_millis(5),
        ..Default::default()
    };
    let behaviours = nodes.iter().map(|(id, _)| (*id, slow.clone())).collect();
    let dag = graph(&world, &nodes, &behaviours);
    let run = new_run(&journal);
    let summary = run_to_end(&dag, &journal, &run, 2).await;
    assert_eq!(summary.status, RunStatus::Succeeded);

    // Groups in progress: from a group's first attempt to the end of its last node.
    let timeline = world.with(|w| w.timeline.clone());
    let group = |id: &str| id.split('/').next().unwrap().to_string();
    let mut in_progress = std::collections::BTreeSet::new();
    let mut most = 0;
    for entry in &timeline {
        let (kind, id) = entry.split_at(1);
        if group(id) == "hub" {
            continue;
        }
        match kind {
            "<" => {
                in_progress.insert(group(id));
            }
            _ if id.ends_with("/z") => {
                in_progress.remove(&group(id));
            }
            _ => {}
        }
        most = most.max(in_progress.len());
    }
    assert_eq!(most, 2, "{timeline:?}");
    assert!(timeline.iter().filter(|e| e.starts_with('>')).count() == 19);
}

#[test]
fn a_dropped_run_leaves_no_attempt_running() {
    // a -> b
    // a is busy for 300 ms (computing, between two awaits) once its undo record is journaled;
    // b takes 10 s. The run's future is dropped as soon as a is busy, as a crash would stop
    // it: nothing may happen after that, and the journal opens again at once.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let world = World::default();
        let busy = Behaviour {
            busy: Duration::from_millis(300),
            ..Default::default()
        };
        let slow = Behaviour {
            delay: Duration::from_secs(10),
            ..Default::default()
        };
        let dag = graph(
            &world,
            &[("a", &[]), ("b", &["a"])],
            &BTreeMap::from([("a", busy), ("b", slow)]),
        );
        {
            let journal = open(dir.path());
            let run = new_run(&journal);
            let opts = options(1);
            let exec = execute(&dag, &journal, &run, "apply", &opts, &NullObserver, never());
            tokio::select! {
                _ = exec => panic!("the run should be dropped first"),
                () = world.busy.notified() => {}
            }
        }
        let at_drop = world.with(|w| w.log.clone());
        open(dir.path());
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            world.with(|w| w.log.clone()),
            at_drop,
            "no attempt went on after its run was dropped"
        );
    });
}
