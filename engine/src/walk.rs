//! The dispatcher shared by apply and rollback: walks the selected nodes, starting one only
//! when what it waits for has finished, runs attempts in executors it polls itself, and alone
//! writes the journal, one durable commit per batch of reports.
//!
//! The executors are futures of the walk (a `FuturesUnordered`), not spawned tasks: when the
//! walk is dropped (its caller stops waiting, or returns on a journal error) every attempt is
//! dropped with it, at once, and none runs afterwards. Spawned and aborted, an attempt being
//! polled on another worker went on until its next await, and could still change the world
//! after the journal had been closed and reopened.
//!
//! What the loop tracks lives in one struct, [`Drain`], with one short method per message (the
//! shape of cargo's job queue). Contract on stop (shutdown future, e.g. Ctrl-C): running
//! attempts are not cancelled, new nodes are not started, and retries stop at the next backoff.

use crate::dag::{Built, Dag};
use crate::errors::{EngineError, TaskError};
use crate::events::{Observer, Progress};
use crate::gate::GroupGate;
use crate::retry::RetryPolicy;
use crate::task::{Applied, Attempt, ErasedTask, Input, Locks, Msg, Outcome, RolledBack};
use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use trailhub_state::{EventKind, Journal, NodeId, NodeRecord, NodeState, Write, now_ms};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Apply,
    Rollback,
}

impl Mode {
    /// The states in which a node of this walk is finished for good.
    fn finished_states(self) -> &'static [NodeState] {
        match self {
            Mode::Apply => &[NodeState::Done, NodeState::Failed, NodeState::Blocked],
            Mode::Rollback => &[NodeState::RolledBack, NodeState::RollbackFailed],
        }
    }
}

/// What the walk ended with, per node.
pub(crate) struct WalkResult {
    pub(crate) records: HashMap<NodeId, NodeRecord>,
    pub(crate) stopped: bool,
    /// Nodes of the selection that could not start because something they wait for failed.
    pub(crate) blocked: BTreeMap<NodeId, Option<NodeId>>,
    pub(crate) changed: BTreeSet<NodeId>,
    pub(crate) notes: BTreeMap<NodeId, String>,
}

/// What a walk is asked to do.
pub(crate) struct Walk<'a> {
    pub(crate) dag: &'a Dag<Built>,
    pub(crate) journal: &'a Journal,
    pub(crate) run: &'a str,
    pub(crate) mode: Mode,
    pub(crate) concurrency: usize,
    pub(crate) retry: &'a RetryPolicy,
    pub(crate) observer: &'a dyn Observer,
    /// Every node's record at the start (pending ones included).
    pub(crate) records: HashMap<NodeId, NodeRecord>,
    /// The nodes to work on.
    pub(crate) selected: BTreeSet<NodeId>,
    /// For each selected node, the selected nodes it must wait for.
    pub(crate) waits_for: HashMap<NodeId, BTreeSet<NodeId>>,
}

type AttemptAck = (u32, Option<Value>);

/// The executors in flight, polled by the walk's loop.
type Attempts = FuturesUnordered<BoxFuture<'static, ()>>;

/// For each selected node, the selected nodes among `related(node)`: what it waits for.
pub(crate) fn waits_for<'d>(
    selected: &BTreeSet<NodeId>,
    related: impl Fn(&NodeId) -> Vec<&'d NodeId>,
) -> HashMap<NodeId, BTreeSet<NodeId>> {
    selected
        .iter()
        .map(|id| {
            let waits = related(id)
                .into_iter()
                .filter(|r| selected.contains(*r))
                .cloned()
                .collect();
            (id.clone(), waits)
        })
        .collect()
}

/// An answer that waits for the shared journal: `Err` says why the writes could not reach it.
type SharedAck = Box<dyn FnOnce(Result<(), String>) + Send>;

/// What one batch of reports journals (in one commit), answers and shows, in that order.
#[derive(Default)]
struct Batch {
    writes: Vec<Write>,
    acks: Vec<Box<dyn FnOnce() + Send>>,
    /// Answered only once the batch is in the shared journal (when the journal is a working
    /// copy of one): undo records, which must survive the machine before their mutation.
    shared_acks: Vec<SharedAck>,
    events: Vec<Progress>,
}

/// The channels and shared resources every executor of the walk gets.
struct Wiring {
    tx: mpsc::UnboundedSender<Msg>,
    stop: watch::Receiver<bool>,
    permits: Arc<Semaphore>,
    locks: Arc<Locks>,
}

/// The loop's state.
struct Drain<'a> {
    walk: Walk<'a>,
    /// How many of what it waits for each selected node still waits for.
    waiting: HashMap<NodeId, usize>,
    /// For each node, the selected nodes waiting for it.
    released_by: HashMap<NodeId, Vec<NodeId>>,
    ready: BTreeSet<NodeId>,
    /// Ready nodes of groups the gate holds back for now.
    held: BTreeSet<NodeId>,
    gate: GroupGate,
    in_flight: usize,
    stopped: bool,
    blocked: BTreeMap<NodeId, Option<NodeId>>,
    changed: BTreeSet<NodeId>,
    notes: BTreeMap<NodeId, String>,
    batch: Batch,
}

impl<'a> Walk<'a> {
    pub(crate) async fn run(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<WalkResult, EngineError> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
        let (stop_tx, stop_rx) = watch::channel(false);
        let wiring = Wiring {
            tx,
            stop: stop_rx,
            permits: Arc::new(Semaphore::new(self.concurrency.max(1))),
            locks: Arc::new(Locks::default()),
        };
        let mut attempts: Attempts = FuturesUnordered::new();
        let mut drain = Drain::new(self);
        tokio::pin!(shutdown);
        loop {
            drain.start_ready(&mut attempts, &wiring);
            if drain.in_flight == 0 {
                break;
            }
            let first = tokio::select! {
                biased;
                () = &mut shutdown, if !drain.stopped => {
                    drain.stopped = true;
                    let _ = stop_tx.send(true);
                    drain.walk.observer.event(&Progress::Stopping);
                    continue;
                }
                msg = rx.recv() => msg.expect("the dispatcher holds a sender"),
                // Drives the executors; what they report arrives on the channel.
                Some(()) = attempts.next(), if !attempts.is_empty() => continue,
            };
            drain.handle(first);
            while let Ok(msg) = rx.try_recv() {
                drain.handle(msg);
            }
            drain.flush()?;
        }
        // Every executor has reported its end: let each return.
        while attempts.next().await.is_some() {}
        drain.finish()
    }
}

impl<'a> Drain<'a> {
    fn new(walk: Walk<'a>) -> Self {
        let mut waiting = HashMap::new();
        let mut released_by: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
        for node in &walk.selected {
            let waits = walk.waits_for.get(node).cloned().unwrap_or_default();
            waiting.insert(node.clone(), waits.len());
            for w in waits {
                released_by.entry(w).or_default().push(node.clone());
            }
        }
        let ready = waiting
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(id, _)| id.clone())
            .collect();
        let gate = GroupGate::new(&walk.selected, &walk.waits_for, walk.concurrency);
        Drain {
            walk,
            waiting,
            released_by,
            ready,
            held: BTreeSet::new(),
            gate,
            in_flight: 0,
            stopped: false,
            blocked: BTreeMap::new(),
            changed: BTreeSet::new(),
            notes: BTreeMap::new(),
            batch: Batch::default(),
        }
    }

    /// Starts every ready node the group gate admits; the rest wait until a group finishes.
    fn start_ready(&mut self, attempts: &mut Attempts, wiring: &Wiring) {
        if self.stopped {
            return;
        }
        if self.gate.has_room() {
            self.ready.append(&mut self.held);
        }
        for node in std::mem::take(&mut self.ready) {
            if !self.gate.admit(node.group()) {
                self.held.insert(node);
                continue;
            }
            self.in_flight += 1;
            attempts.push(self.executor(&node, wiring).run().boxed());
        }
    }

    fn executor(&self, node: &NodeId, wiring: &Wiring) -> Executor {
        let dag = self.walk.dag;
        let inputs: BTreeMap<NodeId, Input> = dag
            .ancestors(node)
            .into_iter()
            .filter_map(|d| {
                let record = self.walk.records.get(d)?;
                let input = Input {
                    outputs: record.outputs.clone()?,
                    changed: record.changed,
                };
                Some((d.clone(), input))
            })
            .collect();
        Executor {
            node: node.clone(),
            task: dag
                .task(node)
                .expect("selected nodes should be in the graph")
                .clone(),
            inputs,
            mode: self.walk.mode,
            retry: self.walk.retry.clone(),
            tx: wiring.tx.clone(),
            stop: wiring.stop.clone(),
            permits: wiring.permits.clone(),
            locks: wiring.locks.clone(),
            run: Arc::from(self.walk.run),
        }
    }

    /// Journals the batch in one durable commit, then answers and shows it. Undo records are
    /// answered once the shared journal has them too, without holding up the walk.
    fn flush(&mut self) -> Result<(), EngineError> {
        let batch = std::mem::take(&mut self.batch);
        if self.walk.journal.store().is_none() {
            self.walk.journal.commit(batch.writes)?;
            for ack in batch.shared_acks {
                ack(Ok(()));
            }
        } else if batch.shared_acks.is_empty() {
            self.walk.journal.commit(batch.writes)?;
        } else {
            let receipt = self.walk.journal.commit_shared(batch.writes)?;
            let acks = batch.shared_acks;
            tokio::spawn(async move {
                let shared = receipt.shared().await.map_err(|e| e.to_string());
                for ack in acks {
                    ack(shared.clone());
                }
            });
        }
        for ack in batch.acks {
            ack();
        }
        for event in batch.events {
            self.walk.observer.event(&event);
        }
        Ok(())
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::AttemptStarted { node, ack } => self.attempt_started(node, ack),
            Msg::Undo {
                node,
                undo,
                amend,
                ack,
            } => self.undo(node, undo, amend, ack),
            Msg::Call {
                node,
                service,
                operation,
                mutating,
                detail,
            } => self.event(
                &node,
                EventKind::Call {
                    service,
                    operation,
                    mutating,
                    detail,
                },
            ),
            Msg::Note { node, message } => self.event(&node, EventKind::Note { message }),
            Msg::CallRetried {
                node,
                service,
                operation,
                attempt,
                reason,
            } => self.event(
                &node,
                EventKind::CallRetried {
                    service,
                    operation,
                    attempt,
                    reason,
                },
            ),
            Msg::AttemptFailed {
                node,
                attempt,
                error,
                retry_in_ms,
            } => self.attempt_failed(node, attempt, error, retry_in_ms),
            Msg::Finished { node, outcome } => {
                self.in_flight -= 1;
                match outcome {
                    Outcome::Applied(applied) => self.applied(node, applied),
                    Outcome::RolledBack(rolled) => self.rolled_back(node, rolled),
                    Outcome::Failed(error) => self.failed(node, error),
                    Outcome::NotStarted => self.not_started(node),
                }
            }
        }
    }

    fn event(&mut self, node: &NodeId, kind: EventKind) {
        self.batch.writes.push(Write::Event {
            run: self.walk.run.to_string(),
            node: Some(node.clone()),
            kind,
        });
    }

    fn record(&mut self, node: &NodeId) -> &mut NodeRecord {
        self.walk
            .records
            .get_mut(node)
            .expect("every node of the walk has a record")
    }

    fn write_record(&mut self, node: &NodeId) {
        let record = self.walk.records[node].clone();
        self.batch.writes.push(Write::Node {
            run: self.walk.run.to_string(),
            node: node.clone(),
            record,
        });
    }

    fn attempt_started(&mut self, node: NodeId, ack: oneshot::Sender<AttemptAck>) {
        let mode = self.walk.mode;
        let rec = self.record(&node);
        let (attempt, kind) = match mode {
            Mode::Apply => {
                rec.state = NodeState::Running;
                rec.attempts += 1;
                rec.started_at_ms.get_or_insert(now_ms());
                let attempt = rec.attempts;
                (attempt, EventKind::AttemptStarted { attempt })
            }
            Mode::Rollback => {
                rec.state = NodeState::RollingBack;
                rec.rollback_attempts += 1;
                let attempt = rec.rollback_attempts;
                (attempt, EventKind::RollbackStarted { attempt })
            }
        };
        let reply: AttemptAck = (attempt, rec.undo.clone());
        self.event(&node, kind);
        self.write_record(&node);
        self.batch.acks.push(Box::new(move || {
            let _ = ack.send(reply);
        }));
        self.batch
            .events
            .push(Progress::NodeStarted { node, attempt });
    }

    fn undo(
        &mut self,
        node: NodeId,
        undo: Value,
        amend: bool,
        ack: oneshot::Sender<Result<Value, String>>,
    ) {
        if amend || self.walk.records[&node].undo.is_none() {
            self.record(&node).undo = Some(undo);
            self.write_record(&node);
            self.event(&node, EventKind::UndoRecorded);
        }
        let effective = self.walk.records[&node]
            .undo
            .clone()
            .expect("undo was just set");
        self.batch.shared_acks.push(Box::new(move |shared| {
            let _ = ack.send(shared.map(|()| effective));
        }));
    }

    fn attempt_failed(&mut self, node: NodeId, attempt: u32, error: TaskError, delay_ms: u64) {
        let record = error.to_record();
        self.record(&node).last_error = Some(record.clone());
        self.write_record(&node);
        self.event(
            &node,
            EventKind::AttemptFailed {
                attempt,
                error: record.clone(),
                retry_in_ms: Some(delay_ms),
            },
        );
        self.batch.events.push(Progress::NodeRetrying {
            node,
            attempt,
            error: record,
            delay_ms,
        });
    }

    fn applied(&mut self, node: NodeId, applied: Applied<Value>) {
        let rec = self.record(&node);
        rec.state = NodeState::Done;
        rec.outputs = Some(applied.outputs);
        rec.last_error = None;
        rec.changed = applied.changed;
        rec.finished_at_ms = Some(now_ms());
        if applied.changed {
            self.changed.insert(node.clone());
        }
        self.write_record(&node);
        self.event(
            &node,
            EventKind::NodeDone {
                changed: applied.changed,
            },
        );
        self.finished_ok(node, applied.changed, None);
    }

    fn rolled_back(&mut self, node: NodeId, rolled: RolledBack) {
        let rec = self.record(&node);
        rec.state = NodeState::RolledBack;
        rec.rollback_note = rolled.note.clone();
        rec.finished_at_ms = Some(now_ms());
        if rolled.changed {
            self.changed.insert(node.clone());
        }
        if let Some(note) = &rolled.note {
            self.notes.insert(node.clone(), note.clone());
        }
        self.write_record(&node);
        self.event(
            &node,
            EventKind::RolledBack {
                note: rolled.note.clone(),
            },
        );
        self.finished_ok(node, rolled.changed, rolled.note);
    }

    /// A node finished well: what waits for it may start.
    fn finished_ok(&mut self, node: NodeId, changed: bool, note: Option<String>) {
        self.gate.finished(node.group());
        for next in self.released_by.get(&node).into_iter().flatten() {
            let n = self
                .waiting
                .get_mut(next)
                .expect("released node is selected");
            *n -= 1;
            if *n == 0 {
                self.ready.insert(next.clone());
            }
        }
        self.batch.events.push(Progress::NodeDone {
            node,
            changed,
            note,
        });
    }

    fn failed(&mut self, node: NodeId, error: TaskError) {
        let record = error.to_record();
        let mode = self.walk.mode;
        let rec = self.record(&node);
        rec.last_error = Some(record.clone());
        rec.finished_at_ms = Some(now_ms());
        let kind = match mode {
            Mode::Apply => {
                rec.state = NodeState::Failed;
                EventKind::NodeFailed {
                    error: record.clone(),
                }
            }
            Mode::Rollback => {
                rec.state = NodeState::RollbackFailed;
                EventKind::RollbackFailed {
                    error: record.clone(),
                }
            }
        };
        self.write_record(&node);
        self.event(&node, kind);
        self.gate.finished(node.group());
        self.batch.events.push(Progress::NodeFailed {
            node: node.clone(),
            error: record,
        });
        self.block_after(&node);
    }

    fn not_started(&mut self, node: NodeId) {
        let mode = self.walk.mode;
        let rec = self.record(&node);
        rec.state = match (mode, rec.state) {
            (Mode::Apply, NodeState::Running) => NodeState::Pending,
            (Mode::Rollback, NodeState::RollingBack) => NodeState::Done,
            (_, state) => state,
        };
        self.write_record(&node);
    }

    /// Marks everything that waits, directly or not, on a failed node as blocked.
    fn block_after(&mut self, failed: &NodeId) {
        let mut stack = vec![failed.clone()];
        while let Some(n) = stack.pop() {
            let nexts = self.released_by.get(&n).cloned().unwrap_or_default();
            for next in nexts {
                if self.blocked.contains_key(&next) {
                    continue;
                }
                self.block(&next, Some(failed.clone()));
                stack.push(next);
            }
        }
    }

    fn block(&mut self, node: &NodeId, by: Option<NodeId>) {
        self.blocked.insert(node.clone(), by.clone());
        self.gate.finished(node.group());
        if self.walk.mode == Mode::Apply {
            let rec = self.record(node);
            rec.state = NodeState::Blocked;
            rec.last_error = None;
            self.write_record(node);
        }
        self.event(node, EventKind::NodeBlocked { by: by.clone() });
        self.batch.events.push(Progress::NodeBlocked {
            node: node.clone(),
            by,
        });
    }

    /// Anything selected that never started is blocked by a failure upstream, unless the walk
    /// stopped on request.
    fn finish(mut self) -> Result<WalkResult, EngineError> {
        if !self.stopped {
            let finished = self.walk.mode.finished_states();
            let stuck: Vec<NodeId> = self
                .walk
                .selected
                .iter()
                .filter(|n| !finished.contains(&self.walk.records[*n].state))
                .filter(|n| !self.blocked.contains_key(*n))
                .cloned()
                .collect();
            for node in stuck {
                let by = self.walk.waits_for[&node]
                    .iter()
                    .find(|w| {
                        self.blocked.contains_key(*w)
                            || matches!(
                                self.walk.records[*w].state,
                                NodeState::Failed | NodeState::RollbackFailed
                            )
                    })
                    .cloned();
                self.blocked.insert(node.clone(), by.clone());
                self.event(&node, EventKind::NodeBlocked { by });
            }
            self.flush()?;
        }
        Ok(WalkResult {
            records: self.walk.records,
            stopped: self.stopped,
            blocked: self.blocked,
            changed: self.changed,
            notes: self.notes,
        })
    }
}

/// Runs the attempts of one node: waits for a permit, then attempts until success, a fatal
/// error, retries exhausted, or stop.
struct Executor {
    node: NodeId,
    task: Arc<dyn ErasedTask>,
    inputs: BTreeMap<NodeId, Input>,
    mode: Mode,
    retry: RetryPolicy,
    tx: mpsc::UnboundedSender<Msg>,
    stop: watch::Receiver<bool>,
    permits: Arc<Semaphore>,
    locks: Arc<Locks>,
    run: Arc<str>,
}

impl Executor {
    async fn run(mut self) {
        let outcome = self.attempts().await;
        let _ = self.tx.send(Msg::Finished {
            node: self.node.clone(),
            outcome,
        });
    }

    /// Asks the dispatcher to journal a new attempt; `None` when the run is going away.
    async fn begin(&self) -> Option<AttemptAck> {
        let (ack, acked) = oneshot::channel::<AttemptAck>();
        self.tx
            .send(Msg::AttemptStarted {
                node: self.node.clone(),
                ack,
            })
            .ok()?;
        acked.await.ok()
    }

    async fn attempt(&self, attempt: u32, undo: Option<Value>) -> Result<Outcome, TaskError> {
        let core = Attempt::new(
            self.node.clone(),
            self.run.clone(),
            attempt,
            self.inputs.clone(),
            undo.clone(),
            self.tx.clone(),
            self.locks.clone(),
        );
        match self.mode {
            Mode::Apply => core
                .scope(self.task.apply(core.clone()))
                .await
                .map(Outcome::Applied),
            Mode::Rollback => core
                .scope(self.task.rollback(undo, core.clone()))
                .await
                .map(Outcome::RolledBack),
        }
    }

    async fn attempts(&mut self) -> Outcome {
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return Outcome::NotStarted;
        };
        let mut schedule = self.retry.schedule();
        let mut made = 0u32;
        loop {
            if *self.stop.borrow() {
                return Outcome::NotStarted;
            }
            let Some((attempt, undo)) = self.begin().await else {
                return Outcome::NotStarted;
            };
            made += 1;
            let error = match self.attempt(attempt, undo).await {
                Ok(outcome) => return outcome,
                Err(e) => e,
            };
            if !error.is_retryable() {
                return Outcome::Failed(error);
            }
            let Some(delay) = schedule.next_delay(made) else {
                return Outcome::Failed(error.with_retries_exhausted(made));
            };
            let _ = self.tx.send(Msg::AttemptFailed {
                node: self.node.clone(),
                attempt,
                error,
                retry_in_ms: delay.as_millis() as u64,
            });
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = self.stop.wait_for(|stop| *stop) => return Outcome::NotStarted,
            }
        }
    }
}
