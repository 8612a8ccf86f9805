//! Snapshots of the graph renderings, with and without journaled states.

use crate::support::*;
use std::collections::BTreeMap;
use trailhub_engine::{GraphFormat, render};

// archive/identity -> archive/bucket -> s1/replication
// s1/identity -> s1/replication
const SMALL: &[(&str, &[&str])] = &[
    ("archive/identity", &[]),
    ("archive/bucket", &["archive/identity"]),
    ("s1/identity", &[]),
    ("s1/replication", &["s1/identity", "archive/bucket"]),
];

#[tokio::test]
async fn renderings_are_stable() {
    let world = World::default();
    let dag = graph(&world, SMALL, &BTreeMap::new());
    insta::assert_snapshot!("text", render(&dag, GraphFormat::Text, None));
    insta::assert_snapshot!("dot", render(&dag, GraphFormat::Dot, None));
    insta::assert_snapshot!("mermaid", render(&dag, GraphFormat::Mermaid, None));
    // Insertion order does not matter.
    let mut reversed: Vec<_> = SMALL.to_vec();
    reversed.reverse();
    let dag2 = graph(&world, &reversed, &BTreeMap::new());
    assert_eq!(
        render(&dag, GraphFormat::Dot, None),
        render(&dag2, GraphFormat::Dot, None)
    );
}

#[tokio::test]
async fn renderings_carry_journaled_states() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    let world = World::default();
    let behaviours = BTreeMap::from([(
        "archive/bucket",
        Behaviour {
            fatal: true,
            ..Default::default()
        },
    )]);
    let dag = graph(&world, SMALL, &behaviours);
    let run = new_run(&journal);
    run_to_end(&dag, &journal, &run, 2).await;
    let states = journal
        .nodes(&run)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.state))
        .collect();
    insta::assert_snapshot!(
        "text_states",
        render(&dag, GraphFormat::Text, Some(&states))
    );
    insta::assert_snapshot!("dot_states", render(&dag, GraphFormat::Dot, Some(&states)));
    insta::assert_snapshot!(
        "mermaid_states",
        render(&dag, GraphFormat::Mermaid, Some(&states))
    );
}
