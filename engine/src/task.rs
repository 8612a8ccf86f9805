//! The `Task` trait every node implements, and the contexts the engine hands to it.
//!
//! A task attempt never writes the journal: it reports to the scheduler through its context
//! (undo record, API calls, result), and the scheduler journals.

use crate::errors::TaskError;
use crate::plan::Plan;
use async_trait::async_trait;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedMutexGuard, mpsc, oneshot};

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
    /// One line saying what the node does, for `plan` and `graph`.
    fn describe(&self) -> String;

    /// What `apply` would do, without changing anything.
    async fn plan(&self, ctx: &PlanCtx) -> Result<Plan, TaskError>;

    /// Brings live state to the desired state.
    async fn apply(&self, ctx: &ApplyCtx) -> Result<Applied, TaskError>;

    /// Undoes what `apply` did, from the undo record.
    async fn rollback(&self, undo: Option<&Value>, ctx: &ApplyCtx)
    -> Result<RolledBack, TaskError>;
}

/// The result of a successful `apply`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Applied {
    /// Values later nodes may read with [`ApplyCtx::input`] (journaled; never secrets).
    pub outputs: Value,
    /// Whether anything was changed.
    pub changed: bool,
}

impl Applied {
    /// Nothing was changed.
    pub fn unchanged(outputs: Value) -> Self {
        Applied {
            outputs,
            changed: false,
        }
    }

    /// Something was changed.
    pub fn changed(outputs: Value) -> Self {
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

/// The context of a `plan` call.
#[derive(Debug, Clone)]
pub struct PlanCtx {
    /// The node's id.
    pub node: String,
    /// The node's group.
    pub group: String,
}

pub(crate) enum Msg {
    AttemptStarted {
        node: String,
        /// Answered, once journaled, with the attempt number and the node's undo record.
        ack: oneshot::Sender<(u32, Option<Value>)>,
    },
    Undo {
        node: String,
        undo: Value,
        ack: oneshot::Sender<Value>,
    },
    Call {
        node: String,
        service: String,
        operation: String,
        mutating: bool,
        detail: String,
    },
    Note {
        node: String,
        message: String,
    },
    CallRetried {
        node: String,
        service: String,
        operation: String,
        attempt: u32,
        reason: String,
    },
    AttemptFailed {
        node: String,
        attempt: u32,
        error: TaskError,
        retry_in_ms: u64,
    },
    Finished {
        node: String,
        outcome: Outcome,
    },
}

pub(crate) enum Outcome {
    Applied(Applied),
    RolledBack(RolledBack),
    Failed(TaskError),
    NotStarted,
}

/// One API call (or note) reported by a task outside of the engine, see [`ApplyCtx::detached`].
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// `service:Operation`, or `note` for notes.
    pub what: String,
    /// Whether it mutates.
    pub mutating: bool,
    /// Detail.
    pub detail: String,
}

#[derive(Clone)]
enum Sink {
    Engine(mpsc::UnboundedSender<Msg>),
    Memory(Arc<Mutex<Vec<Recorded>>>),
}

/// Reports, from deep inside an attempt (an SDK interceptor), to the attempt's node.
#[derive(Clone)]
pub(crate) struct AttemptReporter {
    node: String,
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
        Sink::Memory(log) => log
            .lock()
            .expect("log should not be poisoned")
            .push(Recorded {
                what: format!("{service}:{operation}"),
                mutating: false,
                detail: format!("retry {attempt} after {reason}"),
            }),
    });
}

/// Runs `fut` as the attempt of `ctx`'s node: [`report_call_retry`] inside it reaches that node.
pub(crate) async fn in_attempt<F: std::future::Future>(ctx: &ApplyCtx, fut: F) -> F::Output {
    let reporter = AttemptReporter {
        node: ctx.node.clone(),
        sink: ctx.sink.clone(),
    };
    ATTEMPT.scope(reporter, fut).await
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

/// The context of one `apply` or `rollback` attempt.
pub struct ApplyCtx {
    node: String,
    group: String,
    attempt: u32,
    inputs: BTreeMap<String, Value>,
    undo: Mutex<Option<Value>>,
    sink: Sink,
    locks: Arc<Locks>,
}

impl ApplyCtx {
    pub(crate) fn new(
        node: String,
        group: String,
        attempt: u32,
        inputs: BTreeMap<String, Value>,
        undo: Option<Value>,
        tx: mpsc::UnboundedSender<Msg>,
        locks: Arc<Locks>,
    ) -> Self {
        ApplyCtx {
            node,
            group,
            attempt,
            inputs,
            undo: Mutex::new(undo),
            sink: Sink::Engine(tx),
            locks,
        }
    }

    /// A context outside of any run, for testing a task on its own: undo records and calls are
    /// kept in memory and returned by the second value.
    pub fn detached(
        node: &str,
        group: &str,
        inputs: BTreeMap<String, Value>,
        prior_undo: Option<Value>,
    ) -> (Self, Arc<Mutex<Vec<Recorded>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let ctx = ApplyCtx {
            node: node.to_string(),
            group: group.to_string(),
            attempt: 1,
            inputs,
            undo: Mutex::new(prior_undo),
            sink: Sink::Memory(log.clone()),
            locks: Arc::new(Locks::default()),
        };
        (ctx, log)
    }

    /// The node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The node's group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The attempt number, 1-based, over the node's whole life (all processes).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The outputs of a direct dependency, by node id.
    pub fn input(&self, node: &str) -> Option<&Value> {
        self.inputs.get(node)
    }

    /// The undo record journaled by an earlier attempt of this node (in this process or an
    /// earlier one), if any. When set, the state it describes is the state before the node
    /// first ran, which is what rollback must restore.
    pub fn prior_undo(&self) -> Option<Value> {
        self.undo
            .lock()
            .expect("undo slot should not be poisoned")
            .clone()
    }

    /// Journals `undo` durably before the caller mutates anything, and returns the node's
    /// effective undo record: the first one ever journaled for the node (an earlier attempt's
    /// wins, as it saw the state before any of this node's changes).
    pub async fn record_undo(&self, undo: Value) -> Result<Value, TaskError> {
        if let Some(existing) = self.prior_undo() {
            return Ok(existing);
        }
        let effective = match &self.sink {
            Sink::Engine(tx) => {
                let (ack, done) = oneshot::channel();
                tx.send(Msg::Undo {
                    node: self.node.clone(),
                    undo,
                    ack,
                })
                .map_err(|_| TaskError::fatal("the run is shutting down"))?;
                done.await
                    .map_err(|_| TaskError::fatal("the journal could not record the undo record"))?
            }
            Sink::Memory(log) => {
                log.lock()
                    .expect("log should not be poisoned")
                    .push(Recorded {
                        what: "undo".into(),
                        mutating: false,
                        detail: undo.to_string(),
                    });
                undo
            }
        };
        *self.undo.lock().expect("undo slot should not be poisoned") = Some(effective.clone());
        Ok(effective)
    }

    /// Reports an API call for the run's history. Mutating calls must be reported (just
    /// before they are made); read-only ones may be.
    pub fn call(&self, service: &str, operation: &str, mutating: bool, detail: impl Into<String>) {
        let detail = detail.into();
        match &self.sink {
            Sink::Engine(tx) => {
                let _ = tx.send(Msg::Call {
                    node: self.node.clone(),
                    service: service.to_string(),
                    operation: operation.to_string(),
                    mutating,
                    detail,
                });
            }
            Sink::Memory(log) => log
                .lock()
                .expect("log should not be poisoned")
                .push(Recorded {
                    what: format!("{service}:{operation}"),
                    mutating,
                    detail,
                }),
        }
    }

    /// Adds a free-form note to the run's history.
    pub fn note(&self, message: impl Into<String>) {
        let message = message.into();
        match &self.sink {
            Sink::Engine(tx) => {
                let _ = tx.send(Msg::Note {
                    node: self.node.clone(),
                    message,
                });
            }
            Sink::Memory(log) => log
                .lock()
                .expect("log should not be poisoned")
                .push(Recorded {
                    what: "note".into(),
                    mutating: false,
                    detail: message,
                }),
        }
    }

    /// Waits for, then holds, the named exclusive resource (shared by every node of the run).
    pub async fn exclusive(&self, name: &str) -> ExclusiveGuard {
        self.locks.lock(name).await
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
        fn describe(&self) -> String {
            "does nothing".into()
        }
        async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
            Ok(Plan::new(PlanAction::NoOp))
        }
        async fn apply(&self, _ctx: &ApplyCtx) -> Result<Applied, TaskError> {
            Ok(Applied::unchanged(Value::Null))
        }
        async fn rollback(
            &self,
            _undo: Option<&Value>,
            _ctx: &ApplyCtx,
        ) -> Result<RolledBack, TaskError> {
            Ok(RolledBack::default())
        }
    }
}
