//! Property tests on random DAGs: order and concurrency bound; crash at any point then resume;
//! rollback order.

use crate::support::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;
use trailhub_engine::{Dag, NullObserver, RollbackScope, RunStatus, execute, rollback};
use trailhub_state::NodeState;

/// A random DAG over `n` nodes: an edge i -> j (i < j) for each set bit.
#[derive(Debug, Clone)]
struct RandomDag {
    n: usize,
    edges: Vec<(usize, usize)>,
}

fn random_dag() -> impl Strategy<Value = RandomDag> {
    (1usize..17).prop_flat_map(|n| {
        let pairs = n * (n - 1) / 2;
        prop::collection::vec(prop::bool::weighted(0.3), pairs).prop_map(move |bits| {
            let mut edges = Vec::new();
            let mut k = 0;
            for i in 0..n {
                for j in (i + 1)..n {
                    if bits[k] {
                        edges.push((i, j));
                    }
                    k += 1;
                }
            }
            RandomDag { n, edges }
        })
    })
}

impl RandomDag {
    fn build(&self, world: &World, slow: bool) -> Dag {
        let names: Vec<String> = (0..self.n).map(|i| format!("n{i}")).collect();
        let deps: Vec<Vec<&str>> = (0..self.n)
            .map(|j| {
                self.edges
                    .iter()
                    .filter(|(_, b)| *b == j)
                    .map(|(a, _)| names[*a].as_str())
                    .collect()
            })
            .collect();
        let nodes: Vec<(&str, &[&str])> = (0..self.n)
            .map(|i| (names[i].as_str(), deps[i].as_slice()))
            .collect();
        let behaviour = Behaviour {
            delay: if slow {
                Duration::from_millis(1)
            } else {
                Duration::ZERO
            },
            ..Default::default()
        };
        let behaviours: BTreeMap<&str, Behaviour> = names
            .iter()
            .map(|n| (n.as_str(), behaviour.clone()))
            .collect();
        graph(world, &nodes, &behaviours)
    }

    fn assert_applied_in_order(&self, world: &World) {
        let log = world.with(|w| w.log.clone());
        for (a, b) in &self.edges {
            let pa = log.iter().position(|l| *l == format!("+n{a}")).unwrap();
            let pb = log.iter().position(|l| *l == format!("+n{b}")).unwrap();
            assert!(pa < pb, "n{a} must be applied before n{b}: {log:?}");
        }
    }
}

/// Cases per property: `PROPTEST_CASES` when set (a longer hunt), else what CI affords (each
/// case builds a runtime and a journal, and journals every transition with an fsync: about
/// 256 cases on graphs of up to 16 nodes take 15 to 30 s per property on a 2-core machine,
/// mostly waiting on fsync; 40 cases of up to 11 nodes took 2.5 s).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn runs_after_dependencies_within_the_bound(dag in random_dag(), concurrency in 1usize..5) {
        block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let journal = open(dir.path());
            let world = World::default();
            let graph = dag.build(&world, true);
            let run = new_run(&journal);
            let summary = run_to_end(&graph, &journal, &run, concurrency).await;
            assert_eq!(summary.status, RunStatus::Succeeded);
            assert!(world.with(|w| w.max_running) <= concurrency);
            dag.assert_applied_in_order(&world);
        });
    }

    #[test]
    fn crash_anywhere_then_resume_applies_each_effect_once(
        dag in random_dag(),
        concurrency in 1usize..4,
        crash_pick in any::<prop::sample::Index>(),
    ) {
        block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let world = World::default();
            let crash_at = crash_pick.index(dag.n) + 1;
            world.with(|w| w.crash_at = Some(crash_at));
            let graph = dag.build(&world, false);
            let run;
            let mut done_at_crash = std::collections::BTreeSet::new();
            {
                let journal = open(dir.path());
                run = new_run(&journal);
                let opts = options(concurrency);
                let exec = execute(&graph, &journal, &run, "apply", &opts, &NullObserver, never());
                tokio::select! {
                    _ = exec => panic!("the run should crash first"),
                    () = world.crashed.notified() => {}
                }
                // Whatever the journal says is done must really be done.
                for (node, rec) in journal.nodes(&run).unwrap() {
                    if rec.state == NodeState::Done {
                        assert!(world.with(|w| w.effects.contains_key(&short(&node))), "{node} done but no effect");
                        done_at_crash.insert(short(&node));
                    }
                }
            }
            world.with(|w| w.crash_at = None);
            let applied_before = world.with(|w| w.applications.clone());
            let journal = open(dir.path());
            let summary = execute(&graph, &journal, &run, "resume", &options(concurrency), &NullObserver, never())
                .await
                .unwrap();
            assert_eq!(summary.status, RunStatus::Succeeded);
            let effects = world.with(|w| w.effects.clone());
            assert_eq!(effects.len(), dag.n);
            assert!(effects.values().all(|c| *c == 1), "each effect applied once: {effects:?}");
            // Every application counted, whether or not it found its effect: the resume applies
            // each node not done at the crash once, and none that was.
            let applied_after = world.with(|w| w.applications.clone());
            for i in 0..dag.n {
                let node = format!("n{i}");
                let by_resume = applied_after.get(&node).copied().unwrap_or(0)
                    - applied_before.get(&node).copied().unwrap_or(0);
                let want = u32::from(!done_at_crash.contains(&node));
                assert_eq!(by_resume, want, "{node} applied {by_resume} times by the resume (done at the crash: {done_at_crash:?})");
            }
            dag.assert_applied_in_order(&world);
            let first_undo = world.with(|w| w.first_undo.clone());
            for (node, rec) in journal.nodes(&run).unwrap() {
                assert_eq!(rec.state, NodeState::Done);
                assert_eq!(rec.undo.as_ref(), first_undo.get(&short(&node)), "{node} keeps its first undo record");
            }
        });
    }

    #[test]
    fn rollback_visits_dependents_first(dag in random_dag(), concurrency in 1usize..4) {
        block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let journal = open(dir.path());
            let world = World::default();
            let graph = dag.build(&world, false);
            let run = new_run(&journal);
            run_to_end(&graph, &journal, &run, concurrency).await;
            let summary = rollback(&graph, &journal, &run, &RollbackScope::default(), &options(concurrency), &NullObserver, never())
                .await
                .unwrap();
            assert_eq!(summary.status, RunStatus::RolledBack);
            let log = world.with(|w| w.log.clone());
            for (a, b) in &dag.edges {
                let pa = log.iter().position(|l| *l == format!("-n{a}")).unwrap();
                let pb = log.iter().position(|l| *l == format!("-n{b}")).unwrap();
                assert!(pb < pa, "n{b} must be rolled back before n{a}: {log:?}");
            }
            assert!(world.with(|w| w.effects.is_empty()));
        });
    }
}
