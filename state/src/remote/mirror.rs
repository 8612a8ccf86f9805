//! The working copy's writer to the shared journal: what the local journal commits is queued
//! here and written to the store as segments, by one background task, in commit order.
//!
//! Writes that must be shared before the caller goes on (an undo record, before the mutation
//! it precedes) are flushed at once and answered once the store has them; once a run has made
//! such a write, the others go at most the mirror's period after they were committed; all of
//! them go when the mirror closes.
//! Whatever was pending when a flush fails stays queued for the next one.

use super::segment::{SEGMENT_FORMAT, Segment, SharedWrite, parse_segment_key, run_prefix};
use super::segment::{segment_key, sequence_of};
use super::store::{RemoteError, RemoteStore, retrying};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot};

/// The delay after which committed writes reach the store, at most (besides the time to write
/// them).
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(1);

/// Sends a working copy's commits to the shared journal.
#[derive(Debug)]
pub struct Mirror {
    inner: Arc<Inner>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn RemoteStore>,
    /// The working copy's record of the segments it has (see [`crate::journal::Shared`]):
    /// what this writer wrote is not replayed again.
    applied: sled::Tree,
    period: Duration,
    queue: Mutex<Queue>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct Queue {
    /// Writes not yet in the store, per run sequence, in commit order.
    pending: BTreeMap<u64, Vec<SharedWrite>>,
    /// Answered once everything pending when they were queued is in the store.
    waiters: Vec<oneshot::Sender<Result<(), RemoteError>>>,
    /// The next segment number of each run, once known.
    next_segment: HashMap<u64, u64>,
    /// When the oldest pending write was queued.
    since: Option<Instant>,
    urgent: bool,
    /// Whether an urgent write was made (the run changes something): from then on, pending
    /// writes go out a period after they were made.
    eager: bool,
    closing: bool,
    /// The last failure, reported by `close` if writes are still pending then.
    failed: Option<RemoteError>,
    /// Segments written by this process, for tests and reports.
    written: u64,
}

/// Answered once the writes of a commit are in the shared journal.
#[derive(Debug)]
pub struct Receipt(Option<oneshot::Receiver<Result<(), RemoteError>>>);

impl Receipt {
    /// A receipt for writes that need no store (a local journal).
    pub fn local() -> Receipt {
        Receipt(None)
    }

    /// Waits until the store has the writes; an error when it could not be written (the
    /// writes stay queued, and a later flush tries again).
    pub async fn shared(self) -> Result<(), RemoteError> {
        match self.0 {
            None => Ok(()),
            Some(rx) => rx.await.unwrap_or_else(|_| {
                Err(RemoteError::Failed {
                    message: "the shared journal's writer stopped".into(),
                    code: None,
                    retryable: false,
                })
            }),
        }
    }
}

impl Mirror {
    /// Starts the background writer to `store`, flushing at most `period` after a commit,
    /// noting in `applied` the segments it wrote. Must be called inside a Tokio runtime.
    pub(crate) fn start(
        store: Arc<dyn RemoteStore>,
        period: Duration,
        applied: sled::Tree,
    ) -> Mirror {
        let inner = Arc::new(Inner {
            store,
            applied,
            period,
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
        });
        let task = tokio::spawn(inner.clone().run());
        Mirror {
            inner,
            task: Mutex::new(Some(task)),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn RemoteStore> {
        &self.inner.store
    }

    /// Segments this process wrote so far (run creations excluded).
    pub fn segments_written(&self) -> u64 {
        self.queue().written
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.inner
            .queue
            .lock()
            .expect("the mirror's queue should not be poisoned")
    }

    /// Records that run `sequence` has segments up to `last` in the store.
    pub(crate) fn known_segments(&self, sequence: u64, last: u64) {
        let mut q = self.queue();
        let next = q.next_segment.entry(sequence).or_insert(0);
        *next = (*next).max(last + 1);
    }

    /// Queues `writes` (one commit); with `urgent`, flushes now and returns a receipt answered
    /// once they are in the store.
    pub(crate) fn enqueue(&self, writes: Vec<SharedWrite>, urgent: bool) -> Receipt {
        let mut q = self.queue();
        for write in writes {
            q.pending
                .entry(sequence_of(write.run()))
                .or_default()
                .push(write);
        }
        q.since.get_or_insert_with(Instant::now);
        let receipt = if urgent {
            q.urgent = true;
            q.eager = true;
            let (tx, rx) = oneshot::channel();
            q.waiters.push(tx);
            Receipt(Some(rx))
        } else {
            Receipt(None)
        };
        drop(q);
        if urgent {
            self.inner.wake.notify_one();
        }
        receipt
    }

    /// Writes everything still pending and stops the writer. An error when some writes could
    /// not be written (they are in the local working copy only).
    pub async fn close(&self) -> Result<(), RemoteError> {
        self.queue().closing = true;
        self.inner.wake.notify_one();
        let task = self
            .task
            .lock()
            .expect("the mirror's task slot should not be poisoned")
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let q = self.queue();
        match (&q.failed, q.pending.is_empty()) {
            (Some(e), false) => Err(e.clone()),
            _ => Ok(()),
        }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.task.lock()
            && let Some(task) = slot.take()
        {
            task.abort();
        }
    }
}

/// What one flush takes from the queue.
struct Flush {
    runs: BTreeMap<u64, Vec<SharedWrite>>,
    waiters: Vec<oneshot::Sender<Result<(), RemoteError>>>,
}

/// A run's writes and the segment number they go to.
type Planned = Vec<(u64, u64, Vec<SharedWrite>)>;

/// Segment writes in flight at once: an undo record waits for its own write, not for the
/// writes before it (their numbers, given in commit order, keep the order).
const IN_FLIGHT: usize = 8;

impl Inner {
    async fn run(self: Arc<Self>) {
        let mut in_flight = tokio::task::JoinSet::new();
        loop {
            match self.next_flush().await {
                Some(flush) => {
                    while in_flight.len() >= IN_FLIGHT {
                        in_flight.join_next().await;
                    }
                    match self.plan(&flush.runs).await {
                        Ok(planned) => {
                            let me = self.clone();
                            in_flight.spawn(async move { me.write(planned, flush.waiters).await });
                        }
                        Err(e) => {
                            let planned = flush.runs.into_iter().map(|(s, w)| (s, 0, w)).collect();
                            self.failed(planned, e.clone());
                            for waiter in flush.waiters {
                                let _ = waiter.send(Err(e.clone()));
                            }
                        }
                    }
                }
                None => {
                    while in_flight.join_next().await.is_some() {}
                    let q = self.queue();
                    // Closing: done, unless writes came back from a failed flush and may be
                    // tried once more (a failure reported at close stops here).
                    if q.pending.is_empty() || q.failed.is_some() {
                        return;
                    }
                }
            }
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .expect("the mirror's queue should not be poisoned")
    }

    /// Waits until something is to be written and takes it; `None` when closing with nothing
    /// left. Due: an urgent write, closing, or (once the run has made its first urgent write,
    /// i.e. once it changes something) the oldest pending write `period` old. Before that,
    /// what is pending tells of reads only (a converged re-apply), and goes at the end: two
    /// requests for such a run, its creation and its end.
    async fn next_flush(&self) -> Option<Flush> {
        loop {
            let wait = {
                let mut q = self.queue();
                let due = q.since.filter(|_| q.eager).map(|s| s + self.period);
                let now = Instant::now();
                let ready = !q.pending.is_empty()
                    && (q.urgent || q.closing || due.is_some_and(|d| d <= now));
                if ready {
                    q.urgent = false;
                    q.since = None;
                    return Some(Flush {
                        runs: std::mem::take(&mut q.pending),
                        waiters: std::mem::take(&mut q.waiters),
                    });
                }
                if q.pending.is_empty() {
                    for waiter in q.waiters.drain(..) {
                        let _ = waiter.send(Ok(()));
                    }
                    if q.closing {
                        return None;
                    }
                }
                due.map(|d| d.saturating_duration_since(now))
            };
            match wait {
                Some(delay) => {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.wake.notified() => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }

    /// Gives each run's writes its next segment number, in commit order.
    async fn plan(&self, runs: &BTreeMap<u64, Vec<SharedWrite>>) -> Result<Planned, RemoteError> {
        let mut planned = Vec::with_capacity(runs.len());
        for (sequence, writes) in runs {
            let known = self.queue().next_segment.get(sequence).copied();
            let segment = match known {
                Some(n) => n,
                None => self.last_segment(*sequence).await? + 1,
            };
            self.queue().next_segment.insert(*sequence, segment + 1);
            planned.push((*sequence, segment, writes.clone()));
        }
        Ok(planned)
    }

    /// Writes each planned segment (create-only), then answers `waiters`. What could not be
    /// written goes back to the queue, for the next flush.
    async fn write(
        &self,
        planned: Planned,
        waiters: Vec<oneshot::Sender<Result<(), RemoteError>>>,
    ) {
        let mut left = planned.into_iter();
        let mut result = Ok(());
        for (sequence, segment, writes) in left.by_ref() {
            if let Err(e) = self.write_segment(sequence, segment, &writes).await {
                let mut unwritten = vec![(sequence, segment, writes)];
                unwritten.extend(left.by_ref());
                self.failed(unwritten, e.clone());
                result = Err(e);
                break;
            }
        }
        if result.is_ok() {
            self.queue().failed = None;
        }
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }

    /// Puts writes that could not be written back in the queue, before what was queued
    /// since. (A later segment may be in the store already: they then come after it, and a
    /// working copy replaying them sees those records a moment older; the next write of each
    /// node sets it right.)
    fn failed(&self, unwritten: Planned, e: RemoteError) {
        let mut q = self.queue();
        for (sequence, _, mut writes) in unwritten.into_iter().rev() {
            let later = q.pending.remove(&sequence).unwrap_or_default();
            writes.extend(later);
            q.pending.insert(sequence, writes);
        }
        q.since.get_or_insert_with(Instant::now);
        q.failed = Some(e);
    }

    /// Writes one segment, after what another process appended to the run if its number is
    /// taken.
    async fn write_segment(
        &self,
        sequence: u64,
        mut segment: u64,
        writes: &[SharedWrite],
    ) -> Result<(), RemoteError> {
        let body = serde_json::to_vec(&Segment {
            format: SEGMENT_FORMAT,
            writes: writes.to_vec(),
        })
        .expect("a segment should always serialize");
        let mut collisions = 0;
        loop {
            let key = segment_key(sequence, segment);
            match retrying(|| self.store.put_if_absent(&key, body.clone())).await {
                Ok(_) => break,
                // Another process appended to the same run (a resume elsewhere): go after
                // what it wrote, a few times at most.
                Err(RemoteError::PreconditionFailed { .. }) if collisions < 5 => {
                    collisions += 1;
                    let last = self.last_segment(sequence).await?;
                    let mut q = self.queue();
                    let next = q.next_segment.entry(sequence).or_insert(0);
                    segment = (*next).max(last + 1);
                    *next = segment + 1;
                }
                Err(e) => return Err(e),
            }
        }
        let _ = self
            .applied
            .fetch_and_update(sequence.to_be_bytes(), |old| {
                let old = old.and_then(decode_u64).unwrap_or(0);
                Some(old.max(segment).to_be_bytes().to_vec())
            });
        self.queue().written += 1;
        Ok(())
    }

    /// The highest segment number run `sequence` has in the store (0 when it has none).
    async fn last_segment(&self, sequence: u64) -> Result<u64, RemoteError> {
        let prefix = run_prefix(sequence);
        let keys = retrying(|| self.store.list(&prefix)).await?;
        Ok(keys
            .iter()
            .filter_map(|k| parse_segment_key(k))
            .map(|(_, n)| n)
            .max()
            .unwrap_or(0))
    }
}

/// A big-endian `u64`, as the bookkeeping tree stores them.
pub(crate) fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}
