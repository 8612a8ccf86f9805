//! What several commands share: loading the inventory, building the workflow from it or from a
//! run's frozen inventory, and the Ctrl-C handling.

use crate::cli::Cli;
use crate::errors::CliError;
use std::path::Path;
use trailhub_engine::{Built, Dag};
use trailhub_state::RunRecord;
use trailhub_steps::Connector;
use trailhub_steps::tasks::StepContext;
use trailhub_workflows::{Inventory, Workflow, step_context};

/// A workflow ready to run: its inventory, clients and DAG.
pub struct Prepared {
    pub workflow: Workflow,
    pub ctx: StepContext,
    pub dag: Dag<Built>,
}

impl Prepared {
    /// `(node, group)` of every node, for progress.
    pub fn node_groups(&self) -> Vec<(String, String)> {
        self.dag
            .nodes()
            .iter()
            .map(|n| (n.id.clone(), n.group.clone()))
            .collect()
    }

    /// The groups in display order: the archive, then the sources in inventory order.
    pub fn group_order(&self) -> Vec<String> {
        let mut out = vec!["archive".to_string()];
        for s in &self.workflow.inventory.sources {
            if self.workflow.only.is_empty() || self.workflow.only.contains(&s.account_id) {
                out.push(s.account_id.clone());
            }
        }
        out
    }
}

/// Reads and validates an inventory file.
pub fn load_inventory(path: &Path) -> Result<Inventory, CliError> {
    Ok(trailhub_workflows::load(path)?)
}

/// Builds the workflow for `inventory`, limited to `only` when not empty. Makes no AWS request.
pub fn prepare(cli: &Cli, inventory: Inventory, only: &[String]) -> Result<Prepared, CliError> {
    let workflow = Workflow::new(inventory, only.to_vec()).map_err(CliError::Usage)?;
    let connector = Connector::new(&workflow.inventory.region, cli.endpoint_url.clone());
    let ctx = step_context(&workflow.inventory, connector);
    let dag = workflow.dag(&ctx)?;
    Ok(Prepared { workflow, ctx, dag })
}

/// The workflow of an existing run, from its frozen inventory and its account filter.
pub fn prepare_run(cli: &Cli, run: &RunRecord) -> Result<Prepared, CliError> {
    let origin = format!("frozen in run {}", run.id);
    let inventory = trailhub_workflows::parse(&run.definition, &origin)?;
    let only: Vec<String> = run.options["accounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    prepare(cli, inventory, &only)
}

/// Resolves on the first Ctrl-C (stop starting new steps); a second one exits at once.
pub async fn shutdown() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
    tokio::spawn(async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("interrupted again: exiting now; `trailhub resume` continues from the journal");
        std::process::exit(130);
    });
}
