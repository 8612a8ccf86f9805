//! Opening a journal written by an older trailhub: the workflow's graph of each run made from
//! its frozen inventory, and each node record rewritten by the steps' migration.

use crate::build::{WORKFLOW_NAME, Workflow};
use trailhub_engine::{GraphRecord, NodeId, NodeRecord};
use trailhub_state::{Migration, RunRecord};

/// The migration of every journal this workflow wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct JournalMigration;

impl Migration for JournalMigration {
    fn graph(&self, run: &RunRecord) -> Result<GraphRecord, String> {
        if run.workflow != WORKFLOW_NAME {
            return Err(format!(
                "workflow `{}` is not one this trailhub knows",
                run.workflow
            ));
        }
        Workflow::of_run(run)?.graph().map_err(|e| e.to_string())
    }

    fn node(&self, from: u32, id: &NodeId, record: &mut NodeRecord) -> Result<(), String> {
        trailhub_steps::migrate::node(from, id, record)
    }
}
