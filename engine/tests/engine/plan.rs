//! The dry run: what `plan` predicts for the nodes below one whose probe fails.

use crate::support::*;
use std::collections::BTreeMap;
use trailhub_engine::{PlanAction, plan};

/// Each node's planned action, and the node blocking it, by short name.
async fn planned(dag: &trailhub_engine::Dag) -> BTreeMap<String, (String, Option<String>)> {
    plan(dag, 4)
        .await
        .into_iter()
        .map(|p| {
            let (action, by) = match &p.result {
                Ok(plan) => (
                    plan.action.as_str().to_string(),
                    plan.blocked_by.as_ref().map(short),
                ),
                Err(_) => ("error".to_string(), None),
            };
            (short(&p.id), (action, by))
        })
        .collect()
}

fn row(action: &str, by: Option<&str>) -> (String, Option<String>) {
    (action.to_string(), by.map(str::to_string))
}

#[tokio::test]
async fn what_depends_on_an_error_is_blocked_by_it_and_nothing_else() {
    // a -> b -> c -> d
    //   \-> e        f
    // b's probe fails: c and d (below it) are blocked by b; a, e and f are planned as usual.
    let world = World::default();
    let behaviours = BTreeMap::from([(
        "b",
        Behaviour {
            plan_fails: true,
            ..Default::default()
        },
    )]);
    let dag = graph(
        &world,
        &[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &["b"]),
            ("d", &["c"]),
            ("e", &["a"]),
            ("f", &[]),
        ],
        &behaviours,
    );
    let planned = planned(&dag).await;
    assert_eq!(
        planned,
        BTreeMap::from([
            ("a".to_string(), row("create", None)),
            ("b".to_string(), row("error", None)),
            ("c".to_string(), row("blocked", Some("b"))),
            ("d".to_string(), row("blocked", Some("b"))),
            ("e".to_string(), row("create", None)),
            ("f".to_string(), row("create", None)),
        ])
    );
}

#[tokio::test]
async fn a_node_below_two_errors_is_blocked_by_the_first_and_an_error_below_another_is_blocked() {
    // a -> b -> c
    // a and b both fail to plan: b is blocked by a (apply would never reach it), c by a.
    let world = World::default();
    let failing = Behaviour {
        plan_fails: true,
        ..Default::default()
    };
    let behaviours = BTreeMap::from([("a", failing.clone()), ("b", failing)]);
    let dag = graph(
        &world,
        &[("a", &[]), ("b", &["a"]), ("c", &["b"])],
        &behaviours,
    );
    let planned = planned(&dag).await;
    assert_eq!(planned["a"], row("error", None));
    assert_eq!(planned["b"], row("blocked", Some("a")));
    assert_eq!(planned["c"], row("blocked", Some("a")));
    assert!(
        plan(&dag, 1)
            .await
            .iter()
            .filter_map(|p| p.result.as_ref().ok())
            .all(|p| p.action != PlanAction::Create),
        "nothing below an error is predicted as work"
    );
}
