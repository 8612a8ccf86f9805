//! The dispatcher shared by apply and rollback: walks the selected nodes, starting one only
//! when what it waits for has finished, runs attempts in spawned executors, and alone writes
//! the journal, one durable commit per batch of reports.
//!
//! Contract on stop (shutdown future, e.g. Ctrl-C): running attempts are not cancelled, new
//! nodes are not started, and retries stop at the next backoff.

use crate::dag::{Built, Dag};
use crate::errors::{EngineError, TaskError};
use crate::events::{Observer, Progress};
use crate::retry::RetryPolicy;
use crate::task::{ApplyCtx, Locks, Msg, Outcome, Task, in_attempt};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use trailhub_state::{EventKind, Journal, NodeRecord, NodeState, Write, now_ms};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Apply,
    Rollback,
}

/// What the walk ended with, per node.
pub(crate) struct WalkResult {
    pub(crate) records: HashMap<String, NodeRecord>,
    pub(crate) stopped: bool,
    /// Nodes of the selection that could not start because something they wait for failed.
    pub(crate) blocked: BTreeMap<String, String>,
    pub(crate) changed: BTreeSet<String>,
    pub(crate) notes: BTreeMap<String, String>,
}

pub(crate) struct Walk<'a> {
    pub(crate) dag: &'a Dag<Built>,
    pub(crate) journal: &'a Journal,
    pub(crate) run: &'a str,
    pub(crate) mode: Mode,
    pub(crate) concurrency: usize,
    pub(crate) retry: &'a RetryPolicy,
    pub(crate) observer: &'a dyn Observer,
    /// Every node's record at the start (pending ones included).
    pub(crate) records: HashMap<String, NodeRecord>,
    /// The nodes to work on.
    pub(crate) selected: BTreeSet<String>,
    /// For each selected node, the selected nodes it must wait for.
    pub(crate) waits_for: HashMap<String, BTreeSet<String>>,
}

type AttemptAck = (u32, Option<Value>);

/// For each selected node, the selected nodes among `related(node)`: what it waits for.
pub(crate) fn waits_for<'d>(
    selected: &BTreeSet<String>,
    related: impl Fn(&str) -> Vec<&'d str>,
) -> HashMap<String, BTreeSet<String>> {
    selected
        .iter()
        .map(|id| {
            let waits = related(id)
                .into_iter()
                .filter(|r| selected.contains(*r))
                .map(str::to_string)
                .collect();
            (id.clone(), waits)
        })
        .collect()
}

/// Journals `run` (its status changed) with a run-level event, durably.
pub(crate) fn commit_run(
    journal: &Journal,
    mut run: trailhub_state::RunRecord,
    kind: EventKind,
) -> Result<(), trailhub_state::StateError> {
    run.updated_at_ms = now_ms();
    let id = run.id.clone();
    journal.commit(vec![
        Write::Run(run),
        Write::Event {
            run: id,
            node: None,
            kind,
        },
    ])
}

/// How many groups (accounts) may be in progress at once: as many as the walk's concurrency.
///
/// Without it every group's first node is started at once and, with more groups than permits,
/// each group's later nodes queue behind the other groups' first ones: hundreds of accounts all
/// half-done at the same time, each holding its clients (memory grows with the accounts, not
/// the concurrency). A node of a group that has not started waits while `limit` groups are in
/// progress; a group whose nodes another group waits for (the archive's) is never held back, so
/// a started group always has what it waits for.
struct GroupGate {
    limit: usize,
    /// Nodes of each group not yet finished (done, failed, blocked, rolled back).
    remaining: HashMap<String, usize>,
    /// Groups that other groups' nodes wait for.
    exempt: BTreeSet<String>,
    started: BTreeSet<String>,
    active: usize,
}

impl GroupGate {
    fn new(
        selected: &BTreeSet<String>,
        waits_for: &HashMap<String, BTreeSet<String>>,
        group: impl Fn(&str) -> String,
        limit: usize,
    ) -> Self {
        let mut remaining: HashMap<String, usize> = HashMap::new();
        let mut exempt = BTreeSet::new();
        for node in selected {
            let g = group(node);
            *remaining.entry(g.clone()).or_default() += 1;
            for w in waits_for.get(node).into_iter().flatten() {
                let wg = group(w);
                if wg != g {
                    exempt.insert(wg);
                }
            }
        }
        GroupGate {
            limit: limit.max(1),
            remaining,
            exempt,
            started: BTreeSet::new(),
            active: 0,
        }
    }

    /// Whether a node of `group` may start now; counts the group as in progress if so.
    fn admit(&mut self, group: &str) -> bool {
        if self.started.contains(group) || self.exempt.contains(group) {
            return true;
        }
        if !self.has_room() {
            return false;
        }
        self.started.insert(group.to_string());
        self.active += 1;
        true
    }

    /// Whether a group that has not started may start now.
    fn has_room(&self) -> bool {
        self.active < self.limit
    }

    /// A node of `group` finished for good.
    fn finished(&mut self, group: &str) {
        if let Some(n) = self.remaining.get_mut(group) {
            *n = n.saturating_sub(1);
            if *n == 0 && self.started.contains(group) {
                self.active -= 1;
            }
        }
    }
}

impl<'a> Walk<'a> {
    pub(crate) async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<WalkResult, EngineError> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
        let (stop_tx, stop_rx) = watch::channel(false);
        let permits = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let locks = Arc::new(Locks::default());
        let mut set = JoinSet::new();

        let mut waiting: HashMap<String, usize> = HashMap::new();
        let mut released_by: HashMap<String, Vec<String>> = HashMap::new();
        for node in &self.selected {
            let waits = self.waits_for.get(node).cloned().unwrap_or_default();
            waiting.insert(node.clone(), waits.len());
            for w in waits {
                released_by.entry(w).or_default().push(node.clone());
            }
        }
        let mut ready: BTreeSet<String> = waiting
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(id, _)| id.clone())
            .collect();
        let mut gate = GroupGate::new(
            &self.selected,
            &self.waits_for,
            |n| self.group(n),
            self.concurrency,
        );
        // Ready nodes of groups the gate holds back for now.
        let mut held: BTreeSet<String> = BTreeSet::new();
        let mut in_flight = 0usize;
        let mut stopped = false;
        let mut blocked: BTreeMap<String, String> = BTreeMap::new();
        let mut changed = BTreeSet::new();
        let mut notes = BTreeMap::new();
        tokio::pin!(shutdown);

        loop {
            if !stopped {
                // Held nodes are looked at again only once a group has finished.
                if gate.has_room() {
                    ready.append(&mut held);
                }
                for node in std::mem::take(&mut ready) {
                    if !gate.admit(&self.group(&node)) {
                        held.insert(node);
                        continue;
                    }
                    in_flight += 1;
                    self.spawn(&mut set, &node, &tx, &stop_rx, &permits, &locks);
                }
            }
            if in_flight == 0 {
                break;
            }
            let first = tokio::select! {
                biased;
                () = &mut shutdown, if !stopped => {
                    stopped = true;
                    let _ = stop_tx.send(true);
                    self.observer.event(&Progress::Stopping);
                    continue;
                }
                msg = rx.recv() => msg.expect("the dispatcher holds a sender"),
            };
            let mut batch = vec![first];
            while let Ok(msg) = rx.try_recv() {
                batch.push(msg);
            }
            let mut writes = Vec::new();
            let mut after: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
            let mut events = Vec::new();
            for msg in batch {
                self.handle(
                    msg,
                    &mut writes,
                    &mut after,
                    &mut events,
                    &mut in_flight,
                    &mut ready,
                    &mut waiting,
                    &released_by,
                    &mut blocked,
                    &mut changed,
                    &mut notes,
                    &mut gate,
                );
            }
            self.journal.commit(writes)?;
            for f in after {
                f();
            }
            for event in events {
                self.observer.event(&event);
            }
        }
        // Drain: executors have all reported; make sure none is left running.
        set.shutdown().await;

        // Anything selected that never started is blocked by a failure upstream, unless the
        // walk stopped on request.
        if !stopped {
            let finished_states: &[NodeState] = match self.mode {
                Mode::Apply => &[NodeState::Done, NodeState::Failed, NodeState::Blocked],
                Mode::Rollback => &[NodeState::RolledBack, NodeState::RollbackFailed],
            };
            let stuck: Vec<String> = self
                .selected
                .iter()
                .filter(|n| !finished_states.contains(&self.records[*n].state))
                .filter(|n| !blocked.contains_key(*n))
                .cloned()
                .collect();
            let mut writes = Vec::new();
            for node in stuck {
                let by = self.waits_for[&node]
                    .iter()
                    .find(|w| {
                        blocked.contains_key(*w)
                            || matches!(
                                self.records[*w].state,
                                NodeState::Failed | NodeState::RollbackFailed
                            )
                    })
                    .cloned()
                    .unwrap_or_default();
                writes.push(Write::Event {
                    run: self.run.to_string(),
                    node: Some(node.clone()),
                    kind: EventKind::NodeBlocked { by: by.clone() },
                });
                blocked.insert(node, by);
            }
            self.journal.commit(writes)?;
        }
        Ok(WalkResult {
            records: self.records,
            stopped,
            blocked,
            changed,
            notes,
        })
    }

    fn spawn(
        &self,
        set: &mut JoinSet<()>,
        node: &str,
        tx: &mpsc::UnboundedSender<Msg>,
        stop: &watch::Receiver<bool>,
        permits: &Arc<Semaphore>,
        locks: &Arc<Locks>,
    ) {
        let task = self
            .dag
            .task(node)
            .expect("selected nodes should be in the graph")
            .clone();
        let info = self.dag.node(node).expect("selected node").clone();
        let inputs: BTreeMap<String, Value> = self
            .dag
            .dependencies(node)
            .into_iter()
            .filter_map(|d| {
                let out = self.records.get(d)?.outputs.clone()?;
                Some((d.to_string(), out))
            })
            .collect();
        let executor = Executor {
            node: info.id,
            group: info.group,
            task,
            inputs,
            mode: self.mode,
            retry: self.retry.clone(),
            tx: tx.clone(),
            stop: stop.clone(),
            permits: permits.clone(),
            locks: locks.clone(),
        };
        set.spawn(executor.run());
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the dispatcher's state, split for borrowing"
    )]
    fn handle(
        &mut self,
        msg: Msg,
        writes: &mut Vec<Write>,
        after: &mut Vec<Box<dyn FnOnce() + Send>>,
        events: &mut Vec<Progress>,
        in_flight: &mut usize,
        ready: &mut BTreeSet<String>,
        waiting: &mut HashMap<String, usize>,
        released_by: &HashMap<String, Vec<String>>,
        blocked: &mut BTreeMap<String, String>,
        changed: &mut BTreeSet<String>,
        notes: &mut BTreeMap<String, String>,
        gate: &mut GroupGate,
    ) {
        let run = self.run.to_string();
        let now = now_ms();
        let event = |node: &str, kind: EventKind| Write::Event {
            run: run.clone(),
            node: Some(node.to_string()),
            kind,
        };
        match msg {
            Msg::AttemptStarted { node, ack } => {
                let group = self.group(&node);
                let rec = self
                    .records
                    .get_mut(&node)
                    .expect("started node has a record");
                let attempt = match self.mode {
                    Mode::Apply => {
                        rec.state = NodeState::Running;
                        rec.attempts += 1;
                        rec.started_at_ms.get_or_insert(now);
                        writes.push(event(
                            &node,
                            EventKind::AttemptStarted {
                                attempt: rec.attempts,
                            },
                        ));
                        rec.attempts
                    }
                    Mode::Rollback => {
                        rec.state = NodeState::RollingBack;
                        rec.rollback_attempts += 1;
                        writes.push(event(
                            &node,
                            EventKind::RollbackStarted {
                                attempt: rec.rollback_attempts,
                            },
                        ));
                        rec.rollback_attempts
                    }
                };
                writes.push(self.node_write(&node));
                let undo = self.records[&node].undo.clone();
                let reply: AttemptAck = (attempt, undo);
                after.push(Box::new(move || {
                    let _ = ack.send(reply);
                }));
                events.push(Progress::NodeStarted {
                    node,
                    group,
                    attempt,
                });
            }
            Msg::Undo { node, undo, ack } => {
                let rec = self.records.get_mut(&node).expect("node has a record");
                if rec.undo.is_none() {
                    rec.undo = Some(undo);
                    writes.push(self.node_write(&node));
                    writes.push(event(&node, EventKind::UndoRecorded));
                }
                let effective = self.records[&node].undo.clone().expect("undo was just set");
                after.push(Box::new(move || {
                    let _ = ack.send(effective);
                }));
            }
            Msg::Call {
                node,
                service,
                operation,
                mutating,
                detail,
            } => writes.push(event(
                &node,
                EventKind::Call {
                    service,
                    operation,
                    mutating,
                    detail,
                },
            )),
            Msg::Note { node, message } => {
                writes.push(event(&node, EventKind::Note { message }));
            }
            Msg::CallRetried {
                node,
                service,
                operation,
                attempt,
                reason,
            } => writes.push(event(
                &node,
                EventKind::CallRetried {
                    service,
                    operation,
                    attempt,
                    reason,
                },
            )),
            Msg::AttemptFailed {
                node,
                attempt,
                error,
                retry_in_ms,
            } => {
                let group = self.group(&node);
                let record = error.to_record();
                self.records
                    .get_mut(&node)
                    .expect("node has a record")
                    .last_error = Some(record.clone());
                writes.push(self.node_write(&node));
                writes.push(event(
                    &node,
                    EventKind::AttemptFailed {
                        attempt,
                        error: record.clone(),
                        retry_in_ms: Some(retry_in_ms),
                    },
                ));
                events.push(Progress::NodeRetrying {
                    node,
                    group,
                    attempt,
                    error: record,
                    delay_ms: retry_in_ms,
                });
            }
            Msg::Finished { node, outcome } => {
                *in_flight -= 1;
                let group = self.group(&node);
                match outcome {
                    Outcome::Applied(applied) => {
                        let rec = self.records.get_mut(&node).expect("node has a record");
                        rec.state = NodeState::Done;
                        rec.outputs = Some(applied.outputs);
                        rec.last_error = None;
                        rec.finished_at_ms = Some(now);
                        if applied.changed {
                            changed.insert(node.clone());
                        }
                        writes.push(self.node_write(&node));
                        writes.push(event(
                            &node,
                            EventKind::NodeDone {
                                changed: applied.changed,
                            },
                        ));
                        gate.finished(&group);
                        self.release(&node, ready, waiting, released_by);
                        events.push(Progress::NodeDone {
                            node,
                            group,
                            changed: applied.changed,
                            note: None,
                        });
                    }
                    Outcome::RolledBack(rolled) => {
                        let rec = self.records.get_mut(&node).expect("node has a record");
                        rec.state = NodeState::RolledBack;
                        rec.rollback_note = rolled.note.clone();
                        rec.finished_at_ms = Some(now);
                        if rolled.changed {
                            changed.insert(node.clone());
                        }
                        if let Some(note) = &rolled.note {
                            notes.insert(node.clone(), note.clone());
                        }
                        writes.push(self.node_write(&node));
                        writes.push(event(
                            &node,
                            EventKind::RolledBack {
                                note: rolled.note.clone(),
                            },
                        ));
                        gate.finished(&group);
                        self.release(&node, ready, waiting, released_by);
                        events.push(Progress::NodeDone {
                            node,
                            group,
                            changed: rolled.changed,
                            note: rolled.note,
                        });
                    }
                    Outcome::Failed(error) => {
                        let record = error.to_record();
                        let rec = self.records.get_mut(&node).expect("node has a record");
                        rec.last_error = Some(record.clone());
                        rec.finished_at_ms = Some(now);
                        match self.mode {
                            Mode::Apply => {
                                rec.state = NodeState::Failed;
                                writes.push(self.node_write(&node));
                                writes.push(event(
                                    &node,
                                    EventKind::NodeFailed {
                                        error: record.clone(),
                                    },
                                ));
                            }
                            Mode::Rollback => {
                                rec.state = NodeState::RollbackFailed;
                                writes.push(self.node_write(&node));
                                writes.push(event(
                                    &node,
                                    EventKind::RollbackFailed {
                                        error: record.clone(),
                                    },
                                ));
                            }
                        }
                        gate.finished(&group);
                        events.push(Progress::NodeFailed {
                            node: node.clone(),
                            group,
                            error: record,
                        });
                        self.block_after(&node, writes, events, released_by, blocked, gate);
                    }
                    Outcome::NotStarted => {
                        let rec = self.records.get_mut(&node).expect("node has a record");
                        rec.state = match (self.mode, rec.state) {
                            (Mode::Apply, NodeState::Running) => NodeState::Pending,
                            (Mode::Rollback, NodeState::RollingBack) => NodeState::Done,
                            (_, state) => state,
                        };
                        writes.push(self.node_write(&node));
                    }
                }
            }
        }
    }

    fn release(
        &self,
        node: &str,
        ready: &mut BTreeSet<String>,
        waiting: &mut HashMap<String, usize>,
        released_by: &HashMap<String, Vec<String>>,
    ) {
        for next in released_by.get(node).into_iter().flatten() {
            let n = waiting.get_mut(next).expect("released node is selected");
            *n -= 1;
            if *n == 0 {
                ready.insert(next.clone());
            }
        }
    }

    /// Marks everything that waits, directly or not, on a failed node as blocked.
    fn block_after(
        &mut self,
        failed: &str,
        writes: &mut Vec<Write>,
        events: &mut Vec<Progress>,
        released_by: &HashMap<String, Vec<String>>,
        blocked: &mut BTreeMap<String, String>,
        gate: &mut GroupGate,
    ) {
        let mut stack = vec![failed.to_string()];
        while let Some(n) = stack.pop() {
            for next in released_by.get(&n).into_iter().flatten() {
                if blocked.contains_key(next) {
                    continue;
                }
                blocked.insert(next.clone(), failed.to_string());
                gate.finished(&self.group(next));
                if self.mode == Mode::Apply {
                    let rec = self.records.get_mut(next).expect("node has a record");
                    rec.state = NodeState::Blocked;
                    rec.last_error = None;
                    writes.push(self.node_write(next));
                }
                writes.push(Write::Event {
                    run: self.run.to_string(),
                    node: Some(next.clone()),
                    kind: EventKind::NodeBlocked {
                        by: failed.to_string(),
                    },
                });
                events.push(Progress::NodeBlocked {
                    node: next.clone(),
                    group: self.group(next),
                    by: failed.to_string(),
                });
                stack.push(next.clone());
            }
        }
    }

    fn group(&self, node: &str) -> String {
        self.dag
            .node(node)
            .map(|n| n.group.clone())
            .unwrap_or_default()
    }

    fn node_write(&self, node: &str) -> Write {
        Write::Node {
            run: self.run.to_string(),
            node: node.to_string(),
            record: self.records[node].clone(),
        }
    }
}

/// Runs the attempts of one node: waits for a permit, then attempts until success, a fatal
/// error, retries exhausted, or stop.
struct Executor {
    node: String,
    group: String,
    task: Arc<dyn Task>,
    inputs: BTreeMap<String, Value>,
    mode: Mode,
    retry: RetryPolicy,
    tx: mpsc::UnboundedSender<Msg>,
    stop: watch::Receiver<bool>,
    permits: Arc<Semaphore>,
    locks: Arc<Locks>,
}

impl Executor {
    async fn run(mut self) {
        let outcome = self.attempts().await;
        let _ = self.tx.send(Msg::Finished {
            node: self.node.clone(),
            outcome,
        });
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
            let (ack, acked) = oneshot::channel::<AttemptAck>();
            if self
                .tx
                .send(Msg::AttemptStarted {
                    node: self.node.clone(),
                    ack,
                })
                .is_err()
            {
                return Outcome::NotStarted;
            }
            let Ok((attempt, undo)) = acked.await else {
                return Outcome::NotStarted;
            };
            let ctx = ApplyCtx::new(
                self.node.clone(),
                self.group.clone(),
                attempt,
                self.inputs.clone(),
                undo.clone(),
                self.tx.clone(),
                self.locks.clone(),
            );
            let result = match self.mode {
                Mode::Apply => in_attempt(&ctx, self.task.apply(&ctx))
                    .await
                    .map(Outcome::Applied),
                Mode::Rollback => in_attempt(&ctx, self.task.rollback(undo.as_ref(), &ctx))
                    .await
                    .map(Outcome::RolledBack),
            };
            made += 1;
            let error: TaskError = match result {
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
