//! Journal overhead: the median time of one durable node transition, and the time to run a
//! 1,000-node graph of no-op tasks through the scheduler (every transition journaled).
//!
//! Run: `cargo bench -p trailhub-engine --bench journal`

use async_trait::async_trait;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use trailhub_engine::{
    Applied, ApplyCtx, Dag, NodeId, NodeSpec, NullObserver, Plan, PlanAction, PlanCtx, RetryPolicy,
    RolledBack, RunOptions, Task, TaskError, execute,
};
use trailhub_state::{EventKind, Journal, NewRun, NodeRecord, NodeState, Write};

struct Noop;

#[async_trait]
impl Task for Noop {
    type Undo = ();
    type Output = ();

    fn describe(&self) -> String {
        "no-op".into()
    }
    async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
        Ok(Plan::new(PlanAction::NoOp))
    }
    async fn apply(&self, _ctx: &ApplyCtx<()>) -> Result<Applied<()>, TaskError> {
        Ok(Applied::unchanged(()))
    }
    async fn rollback(
        &self,
        _undo: Option<()>,
        _ctx: &ApplyCtx<()>,
    ) -> Result<RolledBack, TaskError> {
        Ok(RolledBack::default())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn transitions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = Journal::open(dir.path()).expect("open");
    let run = journal
        .create_run(NewRun {
            workflow: "bench",
            definition: "",
            source: None,
            options: Value::Null,
            graph: None,
        })
        .expect("run")
        .id;
    let mut times = Vec::new();
    for i in 0..2000 {
        let mut record = NodeRecord::pending();
        record.state = NodeState::Done;
        record.attempts = 1;
        record.outputs = Some(json!({ "bucket": "cm-members-cloudtrail-222222222222", "i": i }));
        let started = Instant::now();
        journal
            .commit(vec![
                Write::Node {
                    run: run.clone(),
                    node: NodeId::new(&i.to_string(), "versioning"),
                    record,
                },
                Write::Event {
                    run: run.clone(),
                    node: Some(NodeId::new(&i.to_string(), "versioning")),
                    kind: EventKind::NodeDone { changed: true },
                },
            ])
            .expect("commit");
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "durable node transition (record + event, fsynced): median {:?}, p90 {:?}, p99 {:?} over {} commits",
        percentile(&times, 0.5),
        percentile(&times, 0.9),
        percentile(&times, 0.99),
        times.len()
    );
}

async fn graph_of(n: usize, width: usize) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = Journal::open(dir.path()).expect("open");
    let run = journal
        .create_run(NewRun {
            workflow: "bench",
            definition: "",
            source: None,
            options: Value::Null,
            graph: None,
        })
        .expect("run")
        .id;
    // `width` chains of n / width nodes each: the shape of one run over many accounts.
    let mut dag = Dag::new();
    let id = |i: usize| NodeId::new(&format!("g{}", i % width), &format!("n{i}"));
    for i in 0..n {
        let deps = if i >= width {
            vec![id(i - width)]
        } else {
            vec![]
        };
        dag.add(NodeSpec::new(id(i), deps, Noop));
    }
    let dag = dag.seal().expect("valid");
    let started = Instant::now();
    let summary = execute(
        &dag,
        &journal,
        &run,
        "apply",
        &RunOptions {
            concurrency: 16,
            retry: RetryPolicy::fast(1),
        },
        &NullObserver,
        std::future::pending(),
    )
    .await
    .expect("run");
    let elapsed = started.elapsed();
    assert_eq!(summary.done, n);
    elapsed
}

fn main() {
    transitions();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for (n, width) in [(1000, 100), (1000, 1), (1000, 1000)] {
        let mut times: Vec<Duration> = (0..5).map(|_| rt.block_on(graph_of(n, width))).collect();
        times.sort();
        println!(
            "{n}-node graph of no-op tasks ({width} chains, concurrency 16): median {:?}, min {:?}, max {:?} over 5 runs",
            percentile(&times, 0.5),
            times[0],
            times[times.len() - 1]
        );
    }
}
