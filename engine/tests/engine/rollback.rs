//! Rollback: reverse dependency order, scopes (group, after a step), failures, resumability.

use crate::support::*;
use std::collections::BTreeMap;
use trailhub_engine::{NullObserver, RollbackScope, RunStatus, execute, rollback};

// r -> a/x -> a/y
// r -> b/x -> b/y
const TWO_GROUPS: &[(&str, &[&str])] = &[
    ("r", &[]),
    ("a/x", &["r"]),
    ("a/y", &["a/x"]),
    ("b/x", &["r"]),
    ("b/y", &["b/x"]),
];

#[tokio::test]
async fn whole_run_is_undone_in_reverse_order() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let world = World::default();
    let dag = graph(&world, TWO_GROUPS, &BTreeMap::new());
    let run = new_run(&journal);
    run_to_end(&dag, &journal, &run, 4).await;
    let summary = rollback(
        &dag,
        &journal,
        &run,
        &RollbackScope::default(),
        &options(4),
        &NullObserver,
        never(),
    )
    .await
    .unwrap();
    assert_eq!(summary.status, RunStatus::RolledBack);
    assert_eq!(summary.rolled_back, 5);
    assert!(world.with(|w| w.effects.is_empty()));
    let log = world.with(|w| w.log.clone());
    let pos = |n: &str| log.iter().position(|l| l == &format!("-{n}")).unwrap();
    assert!(pos("a/y") < pos("a/x") && pos("a/x") < pos("r"));
    assert!(pos("b/y") < pos("b/x") && pos("b/x") < pos("r"));
    assert!(states(&journal, &run).values().all(|s| s == "rolled-back"));
    let again = rollback(
        &dag,
        &journal,
        &run,
        &RollbackScope::default(),
        &options(4),
        &NullObserver,
        never(),
    )
    .await
    .unwrap();
    assert_eq!(again.changed, 0, "a second rollback has nothing left to do");
    let err = execute(
        &dag,
        &journal,
        &run,
        "resume",
        &options(1),
        &NullObserver,
        never(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("start a new run"), "{err}");
}

#[tokio::test]
async fn one_group_is_undone_and_the_others_stay() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let world = World::default();
    let dag = graph(&world, TWO_GROUPS, &BTreeMap::new());
    let run = new_run(&journal);
    run_to_end(&dag, &journal, &run, 4).await;
    let scope = RollbackScope {
        groups: vec!["a".into()],
        after_step: None,
    };
    let summary = rollback(
        &dag,
        &journal,
        &run,
        &scope,
        &options(4),
        &NullObserver,
        never(),
    )
    .await
    .unwrap();
    assert_eq!(summary.rolled_back, 2);
    assert_eq!(
        summary.status,
        RunStatus::Succeeded,
        "the rest of the run stands"
    );
    let effects: Vec<String> = world.with(|w| w.effects.keys().cloned().collect());
    assert_eq!(effects, vec!["b/x", "b/y", "r"]);
    let states = states(&journal, &run);
    assert_eq!(states["a/x"], "rolled-back");
    assert_eq!(states["b/x"], "done");
}

#[tokio::test]
async fn to_step_undoes_only_what_comes_after() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let world = World::default();
    let dag = graph(&world, TWO_GROUPS, &BTreeMap::new());
    let run = new_run(&journal);
    run_to_end(&dag, &journal, &run, 4).await;
    let scope = RollbackScope {
        groups: vec![],
        after_step: Some("x".into()),
    };
    rollback(
        &dag,
        &journal,
        &run,
        &scope,
        &options(4),
        &NullObserver,
        never(),
    )
    .await
    .unwrap();
    let effects: Vec<String> = world.with(|w| w.effects.keys().cloned().collect());
    assert_eq!(effects, vec!["a/x", "b/x", "r"]);
    let bad = RollbackScope {
        groups: vec!["zzz".into()],
        after_step: Some("nope".into()),
    };
    let err = rollback(
        &dag,
        &journal,
        &run,
        &bad,
        &options(4),
        &NullObserver,
        never(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("no account zzz"), "{err}");
}

#[tokio::test]
async fn a_failed_rollback_keeps_what_it_depends_on() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let world = World::default();
    let behaviours = BTreeMap::from([(
        "a/y",
        Behaviour {
            rollback_fails: true,
            ..Default::default()
        },
    )]);
    let dag = graph(&world, TWO_GROUPS, &behaviours);
    let run = new_run(&journal);
    run_to_end(&dag, &journal, &run, 4).await;
    let summary = rollback(
        &dag,
        &journal,
        &run,
        &RollbackScope::default(),
        &options(4),
        &NullObserver,
        never(),
    )
    .await
    .unwrap();
    assert_eq!(summary.status, RunStatus::RollbackFailed);
    assert!(summary.failed.contains_key(&id("a/y")));
    assert!(summary.blocked.contains_key(&id("a/x")) && summary.blocked.contains_key(&id("r")));
    let effects: Vec<String> = world.with(|w| w.effects.keys().cloned().collect());
    assert_eq!(effects, vec!["a/x", "a/y", "r"]);
    let run_record = journal.run(&run).unwrap();
    assert!(
        run_record.pending_rollback.is_some(),
        "the rollback can be continued"
    );
}

#[tokio::test]
async fn an_interrupted_rollback_continues() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let world = World::default();
    let dag = graph(&world, TWO_GROUPS, &BTreeMap::new());
    let run = new_run(&journal);
    run_to_end(&dag, &journal, &run, 4).await;
    let first = rollback(
        &dag,
        &journal,
        &run,
        &RollbackScope::default(),
        &options(1),
        &NullObserver,
        async {},
    )
    .await
    .unwrap();
    assert_eq!(first.status, RunStatus::RollingBack);
    assert_eq!(
        trailhub_engine::pending_rollback(&journal, &run).unwrap(),
        Some(RollbackScope::default())
    );
    let second = rollback(
        &dag,
        &journal,
        &run,
        &RollbackScope::default(),
        &options(2),
        &NullObserver,
        never(),
    )
    .await
    .unwrap();
    assert_eq!(second.status, RunStatus::RolledBack);
    assert!(world.with(|w| w.effects.is_empty()));
    assert_eq!(
        trailhub_engine::pending_rollback(&journal, &run).unwrap(),
        None
    );
}
