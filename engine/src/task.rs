//! The `Task` trait every node implements, with its own types for undo records and outputs, and
//! the contexts the engine hands to it.
//!
//! Tasks are typed; the engine stores them erased ([`ErasedTask`]): an undo record or an output
//! becomes JSON there, once, and JSON becomes the task's type there again, once. A record that
//! does not decode is an error naming the node, never a silent "nothing to do". A task attempt
//! never writes the journal: it reports to the scheduler through its context (undo record, API
//! calls, result), and the scheduler journals.

use crate::errors::TaskError;
use crate::plan::Plan;
use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedMutexGuard, mpsc, oneshot};
use trailhub_state::NodeId;

/// One step of a workflow.
///
/// - `plan` is read-only: it probes live state and says what `apply` would do.
/// - `apply` is idempotent: it probes, acts only if needed, and may be called again after a
///   crash at any point. Before its first mutation it calls [`ApplyCtx::record_undo`] with the
///   state it found, which the engine journals durably first (write-ahead).
/// - `rollback` receives the first undo record journaled for the node (`None` when the node
///   journaled none) and restores that state, idempotently.
#[async_trait]
pub trait Task: Send + Sync + 'static {
    /// What `apply` journals before it changes anything: the state to restore.
    type Undo: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What `apply` hands to the nodes that depend on it (journaled; never secrets).
    type Output: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// One line saying what the node does, for `plan` and `graph`.
    fn describe(&self) -> String;

    /// What `apply` would do, without changing anything.
    async fn plan(&self, ctx: &PlanCtx) -> Result<Plan, TaskError>;

    /// Brings live state to the desired state.
    async fn apply(&self, ctx: &ApplyCtx<Self::Undo>) -> Result<Applied<Self::Output>, TaskError>;

    /// Undoes what `apply` did, from the undo record.
    async fn rollback(
        &self,
        undo: Option<Self::Undo>,
        ctx: &ApplyCtx<Self::Undo>,
    ) -> Result<RolledBack, TaskError>;
}

/// The result of a successful `apply`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Applied<O> {
    /// What later nodes may read with [`ApplyCtx::input`].
    pub outputs: O,
    /// Whether anything was changed.
    pub changed: bool,
}

impl<O> Applied<O> {
    /// Nothing was changed.
    pub fn unchanged(outputs: O) -> Self {
        Applied {
            outputs,
            changed: false,
        }
    }

    /// Something was changed.
    pub fn changed(outputs: O) -> Self {
        Applied {
            outputs,
            changed: true,
        }
    }
}

/// The result of a successful `rollback`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RolledBack {
    /// Whether anything was changed.
    pub changed: bool,
    /// What the operator should know, e.g. "bucket kept: it holds 3 objects".
    pub note: Option<String>,
}

impl RolledBack {
    /// Nothing changed, and `note` says why.
    pub fn kept(note: impl Into<String>) -> Self {
        RolledBack {
            changed: false,
            note: Some(note.into()),
        }
    }

    /// Something was undone, as `note` says.
    pub fn undone(note: impl Into<String>) -> Self {
        RolledBack {
            changed: true,
            note: Some(note.into()),
        }
    }
}

/// The context of a `plan` call.
#[derive(Debug, Clone)]
pub struct PlanCtx {
    /// The node's id.
    pub node: NodeId,
}

pub(crate) enum Msg {
    AttemptStarted {
        node: NodeId,
        /// Answered, once journaled, with the attempt number and the node's undo record.
        ack: oneshot::Sender<(u32, Option<Value>)>,
    },
    Undo {
        node: NodeId,
        undo: Value,
        /// Replace the node's record rather than keep the first one.
        amend: bool,
        /// Answered once journaled (and in the shared journal, for a working copy of one), or
        /// with why it could not be shared.
        ack: oneshot::Sender<Result<Value, String>>,
    },
    Call {
        node: NodeId,
        service: String,
        operation: String,
        mutating: bool,
        detail: String,
    },
    Note {
        node: NodeId,
        message: String,
    },
    CallRetried {
        node: NodeId,
        service: String,
        operation: String,
        attempt: u32,
        reason: String,
    },
    AttemptFailed {
        node: NodeId,
        attempt: u32,
        error: TaskError,
        retry_in_ms: u64,
    },
    Finished {
        node: NodeId,
        outcome: Outcome,
    },
}

pub(crate) enum Outcome {
    Applied(Applied<Value>),
    RolledBack(RolledBack),
    Failed(TaskError),
    NotStarted,
}

/// One API call (or note) reported by a task outside of the engine, see [`ApplyCtx::detached`].
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// `service:Operation`, `undo` for undo records, or `note` for notes.
    pub what: String,
    /// Whether it mutates.
    pub mutating: bool,
    /// Detail (the undo record's JSON text for `undo`).
    pub detail: String,
}

#[derive(Clone)]
enum Sink {
    Engine(mpsc::UnboundedSender<Msg>),
    Memory(Arc<Mutex<Vec<Recorded>>>),
}

impl Sink {
    fn record(&self, what: String, mutating: bool, detail: String) {
        if let Sink::Memory(log) = self {
            log.lock()
                .expect("log should not be poisoned")
                .push(Recorded {
                    what,
                    mutating,
                    detail,
                });
        }
    }
}

/// Reports, from deep inside an attempt (an SDK interceptor), to the attempt's node.
#[derive(Clone)]
pub(crate) struct AttemptReporter {
    node: NodeId,
    sink: Sink,
}

tokio::task_local! {
    /// The node attempt the current task is running, set by the scheduler around each attempt.
    static ATTEMPT: AttemptReporter;
}

/// Records in the current node attempt's history that an API call is being retried (the SDK
/// retries transient failures itself). Does nothing outside a node attempt.
pub fn report_call_retry(service: &str, operation: &str, attempt: u32, reason: &str) {
    let _ = ATTEMPT.try_with(|r| match &r.sink {
        Sink::Engine(tx) => {
            let _ = tx.send(Msg::CallRetried {
                node: r.node.clone(),
                service: service.to_string(),
                operation: operation.to_string(),
                attempt,
                reason: reason.to_string(),
            });
        }
        memory => memory.record(
            format!("{service}:{operation}"),
            false,
            format!("retry {attempt} after {reason}"),
        ),
    });
}

/// Named exclusive resources: at most one holder of a name at a time.
#[derive(Default)]
pub(crate) struct Locks {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Locks {
    async fn lock(&self, name: &str) -> ExclusiveGuard {
        let mutex = {
            let mut map = self.map.lock().expect("lock table should not be poisoned");
            map.entry(name.to_string()).or_default().clone()
        };
        ExclusiveGuard {
            _guard: mutex.lock_owned().await,
        }
    }
}

/// Holds a named exclusive resource until dropped.
pub struct ExclusiveGuard {
    _guard: OwnedMutexGuard<()>,
}

/// What a node finds of a node it depends on (directly or not): its journaled outputs, and
/// whether its apply changed anything.
#[derive(Debug, Clone)]
pub(crate) struct Input {
    pub(crate) outputs: Value,
    pub(crate) changed: bool,
}

/// One attempt of one node, untyped: what the engine gives every task.
pub(crate) struct Attempt {
    node: NodeId,
    run: Arc<str>,
    attempt: u32,
    inputs: BTreeMap<NodeId, Input>,
    undo: Mutex<Option<Value>>,
    sink: Sink,
    locks: Arc<Locks>,
}

impl Attempt {
    pub(crate) fn new(
        node: NodeId,
        run: Arc<str>,
        attempt: u32,
        inputs: BTreeMap<NodeId, Input>,
        undo: Option<Value>,
        tx: mpsc::UnboundedSender<Msg>,
        locks: Arc<Locks>,
    ) -> Arc<Self> {
        Arc::new(Attempt {
            node,
            run,
            attempt,
            inputs,
            undo: Mutex::new(undo),
            sink: Sink::Engine(tx),
            locks,
        })
    }

    /// Runs `fut` as this attempt: [`report_call_retry`] inside it reaches this node.
    pub(crate) async fn scope<F: std::future::Future>(&self, fut: F) -> F::Output {
        let reporter = AttemptReporter {
            node: self.node.clone(),
            sink: self.sink.clone(),
        };
        ATTEMPT.scope(reporter, fut).await
    }

    fn prior_undo(&self) -> Option<Value> {
        self.undo
            .lock()
            .expect("undo slot should not be poisoned")
            .clone()
    }
}

/// The context of one `apply` or `rollback` attempt of a task whose undo record is a `U`.
pub struct ApplyCtx<U> {
    core: Arc<Attempt>,
    _undo: PhantomData<fn() -> U>,
}

impl<U> ApplyCtx<U> {
    pub(crate) fn from_core(core: Arc<Attempt>) -> Self {
        ApplyCtx {
            core,
            _undo: PhantomData,
        }
    }

    /// A context outside of any run, for testing a task on its own: undo records and calls are
    /// kept in memory and returned by the second value. `inputs` are the outputs of the nodes
    /// it depends on (each counted as having changed something); `prior_undo` is the record an
    /// earlier attempt would have journaled, as JSON (so that a test may also give one that
    /// does not decode).
    pub fn detached(
        node: &NodeId,
        inputs: BTreeMap<NodeId, Value>,
        prior_undo: Option<Value>,
    ) -> (Self, Arc<Mutex<Vec<Recorded>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let inputs = inputs
            .into_iter()
            .map(|(id, outputs)| {
                let input = Input {
                    outputs,
                    changed: true,
                };
                (id, input)
            })
            .collect();
        let core = Arc::new(Attempt {
            node: node.clone(),
            run: Arc::from("detached"),
            attempt: 1,
            inputs,
            undo: Mutex::new(prior_undo),
            sink: Sink::Memory(log.clone()),
            locks: Arc::new(Locks::default()),
        });
        (Self::from_core(core), log)
    }

    /// The node's id.
    pub fn node(&self) -> &NodeId {
        &self.core.node
    }

    /// The id of the run this attempt belongs to (`detached` outside a run): what trailhub
    /// tags the resources it creates with, so that rollback can tell them from others'.
    pub fn run(&self) -> &str {
        &self.core.run
    }

    /// The node's group.
    pub fn group(&self) -> &str {
        self.core.node.group()
    }

    /// The attempt number, 1-based, over the node's whole life (all processes).
    pub fn attempt(&self) -> u32 {
        self.core.attempt
    }

    /// The outputs of `node`, which this node depends on (directly or not), as its task's
    /// output type `T`.
    ///
    /// Fails (fatally, naming both nodes) when `node` is not a done dependency of this one or
    /// its outputs are not a `T`: a missing input is never replaced by a guess.
    pub fn input<T: DeserializeOwned>(&self, node: &NodeId) -> Result<T, TaskError> {
        let Some(Input { outputs: value, .. }) = self.core.inputs.get(node) else {
            return Err(TaskError::fatal(format!(
                "{} needs the outputs of {node}, which are not journaled",
                self.core.node
            ))
            .with_code("MissingInput")
            .with_hint("resume the run: the step that makes them runs first"));
        };
        serde_json::from_value(value.clone()).map_err(|e| {
            TaskError::fatal(format!(
                "{} cannot read the outputs of {node} ({e})",
                self.core.node
            ))
            .with_code("UnreadableInput")
            .with_hint("the journal was written by another trailhub version or altered: start a new run with `trailhub apply`")
        })
    }

    /// Whether the apply of `node`, which this node depends on, changed anything in this run;
    /// `true` when `node` is not one of its inputs (nothing is assumed then). What a node read
    /// and left unchanged need not be read again by the nodes after it.
    pub fn input_changed(&self, node: &NodeId) -> bool {
        self.core.inputs.get(node).is_none_or(|i| i.changed)
    }

    /// Reports an API call for the run's history. Mutating calls must be reported (just
    /// before they are made); read-only ones may be.
    pub fn call(&self, service: &str, operation: &str, mutating: bool, detail: impl Into<String>) {
        let detail = detail.into();
        match &self.core.sink {
            Sink::Engine(tx) => {
                let _ = tx.send(Msg::Call {
                    node: self.core.node.clone(),
                    service: service.to_string(),
                    operation: operation.to_string(),
                    mutating,
                    detail,
                });
            }
            memory => memory.record(format!("{service}:{operation}"), mutating, detail),
        }
    }

    /// Adds a free-form note to the run's history.
    pub fn note(&self, message: impl Into<String>) {
        let message = message.into();
        match &self.core.sink {
            Sink::Engine(tx) => {
                let _ = tx.send(Msg::Note {
                    node: self.core.node.clone(),
                    message,
                });
            }
            memory => memory.record("note".into(), false, message),
        }
    }

    /// Waits for, then holds, the named exclusive resource (shared by every node of the run).
    pub async fn exclusive(&self, name: &str) -> ExclusiveGuard {
        self.core.locks.lock(name).await
    }
}

impl<U: Serialize + DeserializeOwned> ApplyCtx<U> {
    /// The undo record journaled by an earlier attempt of this node (in this process or an
    /// earlier one), if any. When set, the state it describes is the state before the node
    /// first ran, which is what rollback must restore.
    pub fn prior_undo(&self) -> Result<Option<U>, TaskError> {
        self.core
            .prior_undo()
            .map(|v| decode_undo(&self.core.node, v))
            .transpose()
    }

    /// Journals `undo` durably before the caller mutates anything, and returns the node's
    /// effective undo record: the first one ever journaled for the node (an earlier attempt's
    /// wins, as it saw the state before any of this node's changes).
    pub async fn record_undo(&self, undo: U) -> Result<U, TaskError> {
        if let Some(existing) = self.prior_undo()? {
            return Ok(existing);
        }
        self.journal_undo(undo, false).await
    }

    /// Journals `undo` in place of the node's record: for what the record can only learn from
    /// the mutation it guards (the id of what was just created). The caller carries over what
    /// the record said of the state before.
    pub async fn amend_undo(&self, undo: U) -> Result<U, TaskError> {
        self.journal_undo(undo, true).await
    }

    async fn journal_undo(&self, undo: U, amend: bool) -> Result<U, TaskError> {
        let value = serde_json::to_value(&undo).map_err(|e| {
            TaskError::fatal(format!(
                "the undo record of {} cannot be written: {e}",
                self.core.node
            ))
        })?;
        let effective = match &self.core.sink {
            Sink::Engine(tx) => {
                let (ack, done) = oneshot::channel();
                tx.send(Msg::Undo {
                    node: self.core.node.clone(),
                    undo: value,
                    amend,
                    ack,
                })
                .map_err(|_| TaskError::fatal("the run is shutting down"))?;
                done.await
                    .map_err(|_| TaskError::fatal("the journal could not record the undo record"))?
                    .map_err(|why| {
                        TaskError::retryable(format!(
                            "the undo record of {} could not reach the shared journal ({why}); nothing was changed",
                            self.core.node
                        ))
                        .with_code("StateNotShared")
                        .with_hint("check access to the --state bucket; `trailhub resume` continues")
                    })?
            }
            memory => {
                memory.record("undo".into(), false, value.to_string());
                value
            }
        };
        *self
            .core
            .undo
            .lock()
            .expect("undo slot should not be poisoned") = Some(effective.clone());
        decode_undo(&self.core.node, effective)
    }
}

/// Decodes a journaled undo record into the node's type, or says which node's record is
/// unreadable (the rollback of that node then fails instead of doing nothing).
fn decode_undo<U: DeserializeOwned>(node: &NodeId, value: Value) -> Result<U, TaskError> {
    serde_json::from_value(value).map_err(|e| {
        TaskError::fatal(format!(
            "the undo record of {node} cannot be read ({e}); nothing was undone"
        ))
        .with_code("UnreadableUndo")
        .with_hint(format!(
            "the journal was written by another trailhub version or altered: `trailhub history` shows what {node} changed; undo it by hand"
        ))
    })
}

/// A task as the engine holds it: undo records and outputs as JSON.
#[async_trait]
pub(crate) trait ErasedTask: Send + Sync {
    fn describe(&self) -> String;
    async fn plan(&self, ctx: &PlanCtx) -> Result<Plan, TaskError>;
    async fn apply(&self, core: Arc<Attempt>) -> Result<Applied<Value>, TaskError>;
    async fn rollback(
        &self,
        undo: Option<Value>,
        core: Arc<Attempt>,
    ) -> Result<RolledBack, TaskError>;
}

#[async_trait]
impl<T: Task> ErasedTask for T {
    fn describe(&self) -> String {
        Task::describe(self)
    }

    async fn plan(&self, ctx: &PlanCtx) -> Result<Plan, TaskError> {
        Task::plan(self, ctx).await
    }

    async fn apply(&self, core: Arc<Attempt>) -> Result<Applied<Value>, TaskError> {
        let node = core.node.clone();
        let ctx = ApplyCtx::<T::Undo>::from_core(core);
        let applied = Task::apply(self, &ctx).await?;
        let outputs = serde_json::to_value(&applied.outputs).map_err(|e| {
            TaskError::fatal(format!("the outputs of {node} cannot be written: {e}"))
        })?;
        Ok(Applied {
            outputs,
            changed: applied.changed,
        })
    }

    async fn rollback(
        &self,
        undo: Option<Value>,
        core: Arc<Attempt>,
    ) -> Result<RolledBack, TaskError> {
        let undo = undo.map(|v| decode_undo(&core.node, v)).transpose()?;
        let ctx = ApplyCtx::<T::Undo>::from_core(core);
        Task::rollback(self, undo, &ctx).await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::plan::PlanAction;

    /// A task that does nothing, for graph tests.
    pub(crate) struct Noop;

    #[async_trait]
    impl Task for Noop {
        type Undo = ();
        type Output = ();

        fn describe(&self) -> String {
            "does nothing".into()
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

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Was {
        status: String,
    }

    struct Restores;

    #[async_trait]
    impl Task for Restores {
        type Undo = Was;
        type Output = ();

        fn describe(&self) -> String {
            "restores a status".into()
        }
        async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
            Ok(Plan::new(PlanAction::NoOp))
        }
        async fn apply(&self, _ctx: &ApplyCtx<Was>) -> Result<Applied<()>, TaskError> {
            Ok(Applied::unchanged(()))
        }
        async fn rollback(
            &self,
            undo: Option<Was>,
            _ctx: &ApplyCtx<Was>,
        ) -> Result<RolledBack, TaskError> {
            let was = undo.expect("an undo record");
            Ok(RolledBack::undone(format!("back to {}", was.status)))
        }
    }

    #[tokio::test]
    async fn an_undo_record_that_does_not_decode_fails_the_rollback_naming_the_node() {
        let node = NodeId::new("g", "restores");
        let (ctx, _log) = ApplyCtx::<Was>::detached(&node, BTreeMap::new(), None);
        let good = ErasedTask::rollback(
            &Restores,
            Some(serde_json::json!({ "status": "Enabled" })),
            ctx.core.clone(),
        )
        .await
        .expect("a record of the task's type");
        assert_eq!(good.note.as_deref(), Some("back to Enabled"));
        let err = ErasedTask::rollback(
            &Restores,
            Some(serde_json::json!({ "existed": false })),
            ctx.core.clone(),
        )
        .await
        .expect_err("a record of another shape");
        assert_eq!(err.code.as_deref(), Some("UnreadableUndo"));
        assert!(err.message.contains("g/restores"), "{}", err.message);
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn an_earlier_undo_record_wins_and_inputs_are_typed() {
        let node = NodeId::new("g", "restores");
        let dep = NodeId::new("g", "before");
        let inputs = BTreeMap::from([(dep.clone(), serde_json::json!({ "status": "x" }))]);
        let (ctx, log) = ApplyCtx::<Was>::detached(
            &node,
            inputs,
            Some(serde_json::json!({ "status": "Suspended" })),
        );
        let effective = ctx
            .record_undo(Was {
                status: "Enabled".into(),
            })
            .await
            .expect("recorded");
        assert_eq!(effective.status, "Suspended");
        assert!(log.lock().expect("log").is_empty(), "nothing new journaled");
        let read: Was = ctx.input(&dep).expect("typed input");
        assert_eq!(read.status, "x");
        let missing = ctx
            .input::<Was>(&NodeId::new("g", "other"))
            .expect_err("not an input");
        assert_eq!(missing.code.as_deref(), Some("MissingInput"));
    }
}
