//! What several commands share: opening the journal (migrating an older one; pulling a shared
//! one's working copy up to date), loading the inventory, building the workflow from it or from a
//! run's frozen inventory, reading a run back from the journal alone, and the Ctrl-C handling.

use crate::cli::Cli;
use crate::errors::CliError;
use crate::print::errln;
use crate::state::{Open, State};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use trailhub_engine::{Built, Dag, GroupSummary, NodeId, NodeRecord, Shape, summarize};
use trailhub_state::remote::LockKeeper;
use trailhub_state::{Journal, RunRecord};
use trailhub_steps::Connector;
use trailhub_steps::tasks::StepContext;
use trailhub_workflows::{Inventory, Workflow, step_context};

/// A workflow ready to run: its inventory, clients and DAG.
pub struct Prepared {
    pub workflow: Workflow,
    pub ctx: StepContext,
    pub dag: Dag<Built>,
}

/// Opens the existing journal to read it (a shared one's working copy brought up to date),
/// migrating one written by an older trailhub.
pub async fn open_existing_state(cli: &Cli) -> Result<State, CliError> {
    State::open(
        cli,
        Open {
            create: false,
            pull: true,
            archive: None,
        },
    )
    .await
}

/// Reads and validates an inventory file.
pub fn load_inventory(path: &Path) -> Result<Inventory, CliError> {
    Ok(trailhub_workflows::load(path)?)
}

/// Builds the workflow for `inventory`, limited to `only` when not empty. Makes no AWS request.
pub fn prepare(cli: &Cli, inventory: Inventory, only: &[String]) -> Result<Prepared, CliError> {
    let workflow = Workflow::new(inventory, only.to_vec()).map_err(CliError::Usage)?;
    prepare_workflow(cli, workflow, None)
}

/// Builds a workflow's clients and DAG, its archive writes under `lock` (a shared state's
/// archive lock). Makes no AWS request.
pub fn prepare_workflow(
    cli: &Cli,
    workflow: Workflow,
    lock: Option<Arc<LockKeeper>>,
) -> Result<Prepared, CliError> {
    let connector = Connector::new(&workflow.inventory.region, cli.endpoint_url.clone());
    let mut ctx = step_context(&workflow.inventory, connector);
    ctx.archive_lock = lock;
    // Tests make the re-reads of eventually consistent state fast with it.
    if let Some(ms) = std::env::var("TRAILHUB_CONSISTENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        ctx.consistency = std::time::Duration::from_millis(ms);
    }
    let dag = workflow.dag(&ctx)?;
    Ok(Prepared { workflow, ctx, dag })
}

/// The workflow of an existing run, from its frozen inventory and its account filter, its
/// archive writes under `state`'s archive lock (a shared state's) for `command`.
pub fn prepare_run(
    cli: &Cli,
    state: &mut State,
    run: &RunRecord,
    command: &str,
) -> Result<Prepared, CliError> {
    let workflow = Workflow::of_run(run).map_err(CliError::Usage)?;
    let lock = state.keeper(cli, &workflow.inventory.archive.bucket, command);
    if let Some(lock) = &lock {
        lock.set_run(&run.id);
    }
    prepare_workflow(cli, workflow, lock)
}

/// A run as the journal alone tells it: its graph (journaled when it was created) and its node
/// records. No inventory is parsed and no AWS client is made.
pub struct RunView {
    pub run: RunRecord,
    pub shape: Shape,
    pub records: BTreeMap<NodeId, NodeRecord>,
}

impl RunView {
    /// Reads run `run` (the latest when `None`).
    pub fn read(journal: &Journal, run: Option<&str>) -> Result<RunView, CliError> {
        let run = journal.resolve_run(run)?;
        let graph = run.graph.as_ref().ok_or_else(|| {
            CliError::Environment(format!(
                "run {} has no journaled graph; the journal may be damaged",
                run.id
            ))
        })?;
        let shape = Shape::from_record(graph)?;
        let records = journal.nodes(&run.id)?;
        Ok(RunView {
            run,
            shape,
            records,
        })
    }

    /// Every group's summary, in the workflow's order (the archive, then the accounts).
    pub fn groups(&self) -> Vec<GroupSummary> {
        summarize(&self.shape, &self.records)
    }

    /// Nodes in display order: by group in the workflow's order, dependencies first within one.
    pub fn ordered_nodes(&self) -> Vec<&NodeId> {
        let groups = self.shape.groups();
        let mut nodes = self.shape.topological();
        nodes.sort_by_key(|n| groups.iter().position(|g| *g == n.group()));
        nodes
    }
}

/// Runs `probe` on every item, at most `limit` at once, and returns the results in the items'
/// order (a panic in a probe is the caller's).
pub async fn each_bounded<T, R, F, Fut>(items: Vec<T>, limit: usize, probe: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = R> + Send + 'static,
{
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let permits = permits.clone();
        let fut = probe(item);
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            (i, fut.await)
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(r) => results.push(r),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    results.sort_by_key(|r| r.0);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Resolves on the first Ctrl-C (stop starting new steps); a second one exits at once.
///
/// One listener serves both: a second Ctrl-C that comes before the task waiting for it has
/// run is still seen (a listener made after it would miss it).
pub async fn shutdown() {
    #[cfg(unix)]
    let listener = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    #[cfg(windows)]
    let listener = tokio::signal::windows::ctrl_c();
    let Ok(mut interrupts) = listener else {
        return std::future::pending::<()>().await;
    };
    if interrupts.recv().await.is_none() {
        std::future::pending::<()>().await;
    }
    tokio::spawn(async move {
        interrupts.recv().await;
        errln!("interrupted again: exiting now; `trailhub resume` continues from the journal");
        std::process::exit(130);
    });
}
