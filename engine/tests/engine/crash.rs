//! A crash test in sled's manner: a child process applies a workflow whose effects go to a
//! file, and is killed with SIGKILL at random moments; the parent then reopens the journal,
//! resumes, and checks that nothing was lost or applied twice.
//!
//! The moments come from a seed, printed; `TRAILHUB_TEST_SEED=N` replays one. Each kill waits
//! for an event (the effect log reaching a drawn length), then a drawn few milliseconds, so
//! that every round kills a run in progress however busy the machine is.

use async_trait::async_trait;
use serde_json::{Value, json};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use trailhub_engine::{
    Applied, ApplyCtx, Dag, NodeId, NodeSpec, NullObserver, Plan, PlanAction, PlanCtx, RolledBack,
    RunStatus, Task, TaskError, execute,
};
use trailhub_state::{Journal, NewRun, NodeState};

const CHILD_ENV: &str = "TRAILHUB_CRASH_CHILD_DIR";
const LAYERS: usize = 4;
const WIDTH: usize = 8;

struct FileTask {
    id: String,
    log: PathBuf,
    /// Every call of `apply`, before it looks at the effect log: `<pid> <id>`.
    applications: PathBuf,
}

/// Appends `line` to `path` (no fsync: a SIGKILL leaves the page cache to the file).
fn append(path: &Path, line: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?;
    file.write_all(format!("{line}\n").as_bytes())
}

fn effects(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[async_trait]
impl Task for FileTask {
    type Undo = Value;
    type Output = ();

    fn describe(&self) -> String {
        format!("append {} to the effect log", self.id)
    }
    async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
        Ok(Plan::new(PlanAction::Unknown))
    }
    async fn apply(&self, ctx: &ApplyCtx<Value>) -> Result<Applied<()>, TaskError> {
        append(
            &self.applications,
            &format!("{} {}", std::process::id(), self.id),
        )
        .map_err(|e| TaskError::fatal(e.to_string()))?;
        if effects(&self.log).contains(&self.id) {
            return Ok(Applied::unchanged(()));
        }
        ctx.record_undo(json!({ "had": false })).await?;
        tokio::time::sleep(Duration::from_millis(3)).await;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.log)
            .map_err(|e| TaskError::fatal(e.to_string()))?;
        file.write_all(format!("{}\n", self.id).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| TaskError::fatal(e.to_string()))?;
        tokio::time::sleep(Duration::from_millis(3)).await;
        Ok(Applied::changed(()))
    }
    async fn rollback(
        &self,
        _undo: Option<Value>,
        _ctx: &ApplyCtx<Value>,
    ) -> Result<RolledBack, TaskError> {
        Ok(RolledBack::default())
    }
}

/// Layered graph: each node of layer k depends on two nodes of layer k-1.
fn deps_of(layer: usize, i: usize) -> Vec<NodeId> {
    if layer == 0 {
        return Vec::new();
    }
    vec![node(layer - 1, i), node(layer - 1, (i * 3 + 1) % WIDTH)]
}

/// Node `i` of layer `layer`: group `n<i>`, step `l<layer>`.
fn node(layer: usize, i: usize) -> NodeId {
    NodeId::new(&format!("n{i}"), &format!("l{layer}"))
}

fn workflow(dir: &Path) -> Dag {
    let mut dag = Dag::new();
    for layer in 0..LAYERS {
        for i in 0..WIDTH {
            dag.add(NodeSpec::new(
                node(layer, i),
                deps_of(layer, i),
                FileTask {
                    id: format!("l{layer}n{i}"),
                    log: dir.join("effects.log"),
                    applications: dir.join("applications.log"),
                },
            ));
        }
    }
    dag.seal().unwrap()
}

async fn apply_or_resume(dir: &Path) -> RunStatus {
    let journal = Journal::open(&dir.join("state")).unwrap();
    let dag = workflow(dir);
    let (run, op) = match journal.resolve_run(None) {
        Ok(run) => (run.id, "resume"),
        Err(_) => (
            journal
                .create_run(NewRun {
                    workflow: "crash",
                    definition: "",
                    source: None,
                    options: Value::Null,
                    graph: None,
                })
                .unwrap()
                .id,
            "apply",
        ),
    };
    // What this process finds done: none of it may be applied again.
    let done: Vec<String> = journal
        .nodes(&run)
        .unwrap()
        .into_iter()
        .filter(|(_, r)| r.state == NodeState::Done)
        .map(|(id, _)| format!("{}{}", id.step(), id.group()))
        .collect();
    append(
        &dir.join("starts.log"),
        &format!("{} {}", std::process::id(), done.join(" ")),
    )
    .unwrap();
    let options = trailhub_engine::RunOptions {
        concurrency: 3,
        retry: trailhub_engine::RetryPolicy::fast(3),
    };
    execute(
        &dag,
        &journal,
        &run,
        op,
        &options,
        &NullObserver,
        std::future::pending(),
    )
    .await
    .unwrap()
    .status
}

/// The child's body, run only by [`killed_at_random_moments_then_resumed`] in a process of its
/// own (ignored, so that no test run counts it as a test).
#[tokio::test]
#[ignore = "the child process of crash::killed_at_random_moments_then_resumed, which runs it"]
async fn crash_child() {
    let dir = std::env::var_os(CHILD_ENV)
        .expect("TRAILHUB_CRASH_CHILD_DIR should be set by the parent test");
    apply_or_resume(Path::new(&dir)).await;
}

fn spawn_child(dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "crash::crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The seed of this run's moments: `TRAILHUB_TEST_SEED`, else the clock's.
fn seed() -> u64 {
    match std::env::var("TRAILHUB_TEST_SEED") {
        Ok(text) => text.parse().expect("TRAILHUB_TEST_SEED should be a number"),
        Err(_) => {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as u64
                | 1
        }
    }
}

#[tokio::test]
async fn killed_at_random_moments_then_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let seed = seed();
    eprintln!("crash test seed {seed} (replay with TRAILHUB_TEST_SEED={seed})");
    let mut x = seed;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let total = LAYERS * WIDTH;
    let effect_log = dir.path().join("effects.log");
    let mut kills = 0;
    for _ in 0..5 {
        let mut child = spawn_child(dir.path());
        // Killed once the effect log has grown by 1 to 6 lines, then 0 to 3 ms later: between
        // an effect and its journaling, or anywhere else.
        let target = (effects(&effect_log).len() + 1 + (next() % 6) as usize).min(total);
        let extra = Duration::from_micros(next() % 3000);
        let deadline = Instant::now() + Duration::from_secs(60);
        let exited = loop {
            if child.try_wait().unwrap().is_some() {
                break true;
            }
            if effects(&effect_log).len() >= target {
                std::thread::sleep(extra);
                break child.try_wait().unwrap().is_some();
            }
            assert!(
                Instant::now() < deadline,
                "the child made no progress in 60 s (seed {seed})"
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        if !exited {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(
        kills > 0,
        "at least one child was killed mid-run (seed {seed})"
    );
    let status = apply_or_resume(dir.path()).await;
    assert_eq!(status, RunStatus::Succeeded, "seed {seed}");

    let journal = Journal::open(&dir.path().join("state")).unwrap();
    let run = journal.resolve_run(None).unwrap();
    let nodes = journal.nodes(&run.id).unwrap();
    assert_eq!(nodes.len(), LAYERS * WIDTH);
    assert!(
        nodes
            .values()
            .all(|r| r.state == NodeState::Done && r.undo.is_some())
    );
    let log = effects(&dir.path().join("effects.log"));
    for layer in 0..LAYERS {
        for i in 0..WIDTH {
            let id = format!("l{layer}n{i}");
            let at: Vec<usize> = log
                .iter()
                .enumerate()
                .filter(|(_, l)| **l == id)
                .map(|(p, _)| p)
                .collect();
            assert_eq!(
                at.len(),
                1,
                "{id} applied exactly once (seed {seed}): {log:?}"
            );
            for dep in deps_of(layer, i) {
                let dep = format!("{}{}", dep.step(), dep.group());
                let dep_at = log.iter().position(|l| *l == dep).unwrap();
                assert!(dep_at < at[0], "{dep} before {id} (seed {seed})");
            }
        }
    }
    // Every application, counted whether or not it found its effect: none of a node that the
    // applying process had found done.
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let starts: std::collections::HashMap<String, Vec<String>> = read("starts.log")
        .lines()
        .map(|l| {
            let mut words = l.split_whitespace().map(str::to_string);
            (words.next().unwrap(), words.collect())
        })
        .collect();
    for line in read("applications.log").lines() {
        let (pid, id) = line.split_once(' ').unwrap();
        let found_done = starts
            .get(pid)
            .expect("every applying process logged its start");
        assert!(
            !found_done.iter().any(|d| d == id),
            "{id} applied again by process {pid}, which found it done (seed {seed})"
        );
    }
}
