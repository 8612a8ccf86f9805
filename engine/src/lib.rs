//! trailhub's workflow engine: runs a validated DAG of [`Task`]s durably, and never names a
//! concrete step.
//!
//! - [`Dag`]: nodes with dependencies, sealed (validated) before anything can run it.
//! - [`execute`]: the scheduler. It alone writes the journal; task attempts report back over a
//!   channel. Bounded concurrency, retries with backoff, failure isolation, resume.
//! - [`rollback`]: undoes journaled effects in reverse dependency order, itself journaled.
//! - [`later_runs`] and [`account_rollbacks`]: what a rollback must know of the other runs
//!   (which later runs stand in the way; which runs touched an account, newest first).
//! - [`plan`]: every node's read-only plan.
//! - [`render`]: the DAG as text, DOT or Mermaid, optionally colored by journaled state.
//! - [`summarize`]: one summary per group (account) of a run, from its journaled records.

mod across_runs;
mod dag;
mod envelope;
mod errors;
mod events;
mod gate;
mod plan;
mod render;
mod retry;
mod rollback;
mod scheduler;
mod summary;
mod task;
mod walk;

pub use across_runs::{LaterRun, RunPart, account_rollbacks, later_runs, refuse_later_runs};
pub use dag::{Building, Built, Dag, NodeSpec, Shape};
pub use errors::{EngineError, ErrorKind, TaskError, ValidationError};
pub use events::{NullObserver, Observer, Progress};
pub use plan::{Change, Plan, PlanAction, PlannedNode, plan};
pub use render::{GraphFormat, render, render_folded};
pub use retry::RetryPolicy;
pub use rollback::{RollbackScope, RollbackSummary, pending_rollback, rollback};
pub use scheduler::{RunOptions, RunSummary, execute};
pub use summary::{GroupResult, GroupSummary, summarize};
pub use task::{
    Applied, ApplyCtx, ExclusiveGuard, PlanCtx, Recorded, RolledBack, Task, report_call_retry,
};
pub use trailhub_state::{ErrorRecord, GraphRecord, NodeId, NodeRecord, NodeState, RunStatus};
