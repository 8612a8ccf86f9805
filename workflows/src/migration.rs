//! Opening a journal written by an older trailhub: the workflow's graph of each run made from
//! its frozen inventory, and each node record rewritten by the steps' migration.

use crate::build::{WORKFLOW_NAME, Workflow};
use std::collections::HashMap;
use std::sync::Mutex;
use trailhub_engine::{GraphRecord, NodeId, NodeRecord};
use trailhub_state::{Migration, RunRecord};

/// The migration of every journal this workflow wrote.
#[derive(Debug, Default)]
pub struct JournalMigration {
    /// Each run's workflow, read once from its frozen inventory.
    workflows: Mutex<HashMap<String, Workflow>>,
}

impl JournalMigration {
    fn workflow(&self, run: &RunRecord) -> Result<Workflow, String> {
        let mut known = self
            .workflows
            .lock()
            .expect("the cache should not be poisoned");
        if let Some(w) = known.get(&run.id) {
            return Ok(w.clone());
        }
        if run.workflow != WORKFLOW_NAME {
            return Err(format!(
                "workflow `{}` is not one this trailhub knows",
                run.workflow
            ));
        }
        let workflow = Workflow::of_run(run)?;
        known.insert(run.id.clone(), workflow.clone());
        Ok(workflow)
    }
}

impl Migration for JournalMigration {
    fn graph(&self, run: &RunRecord) -> Result<GraphRecord, String> {
        self.workflow(run)?.graph().map_err(|e| e.to_string())
    }

    fn node(
        &self,
        from: u32,
        run: &RunRecord,
        id: &NodeId,
        record: &mut NodeRecord,
    ) -> Result<(), String> {
        let workflow = self.workflow(run)?;
        let source = workflow
            .inventory
            .sources
            .iter()
            .find(|s| s.account_id == id.group());
        trailhub_steps::migrate::node(from, id, record, source, &workflow.inventory.region)
    }
}
