//! What every process's work on a run shares, apply, resume and rollback alike: the start
//! record, the node records to walk from, and the finish record.

use crate::dag::{Built, Dag};
use crate::errors::EngineError;
use std::collections::HashMap;
use trailhub_state::{EventKind, Journal, NodeId, NodeRecord, RunRecord, RunStatus, Write, now_ms};

/// One process's work on run `run`, as `operation` (`apply`, `resume`, `rollback`).
pub(crate) struct Envelope<'a> {
    pub(crate) journal: &'a Journal,
    pub(crate) run: &'a str,
    pub(crate) operation: &'a str,
}

impl Envelope<'_> {
    /// The run as journaled now.
    pub(crate) fn read(&self) -> Result<RunRecord, EngineError> {
        Ok(self.journal.run(self.run)?)
    }

    /// Every node of `dag` with its journaled record (pending when never journaled).
    pub(crate) fn records(
        &self,
        dag: &Dag<Built>,
    ) -> Result<HashMap<NodeId, NodeRecord>, EngineError> {
        let mut journaled = self.journal.nodes(self.run)?;
        Ok(dag
            .nodes()
            .into_iter()
            .map(|id| (id.clone(), journaled.remove(id).unwrap_or_default()))
            .collect())
    }

    /// Journals the run, as `update` leaves it, with its `run-started` event, durably.
    pub(crate) fn start(&self, update: impl FnOnce(&mut RunRecord)) -> Result<(), EngineError> {
        self.commit(update, |_| EventKind::RunStarted {
            operation: self.operation.to_string(),
            pid: std::process::id(),
        })
        .map(|_| ())
    }

    /// Journals the run, as `update` leaves it, with its `run-finished` event, durably; returns
    /// the status it was left in.
    pub(crate) fn finish(
        &self,
        update: impl FnOnce(&mut RunRecord),
    ) -> Result<RunStatus, EngineError> {
        self.commit(update, |run| EventKind::RunFinished {
            operation: self.operation.to_string(),
            status: run.status,
        })
    }

    fn commit(
        &self,
        update: impl FnOnce(&mut RunRecord),
        kind: impl FnOnce(&RunRecord) -> EventKind,
    ) -> Result<RunStatus, EngineError> {
        let mut run = self.read()?;
        update(&mut run);
        run.updated_at_ms = now_ms();
        let status = run.status;
        let kind = kind(&run);
        self.journal.commit(vec![
            Write::Run(run),
            Write::Event {
                run: self.run.to_string(),
                node: None,
                kind,
            },
        ])?;
        Ok(status)
    }
}
