//! The shared journal and the archive lock on an in-memory store that answers as S3 does
//! (create-only and compare-and-swap writes, conditional deletes, injected 409s).

use super::*;
use crate::journal::{Journal, NewRun, Write};
use crate::records::{EventKind, NodeRecord, NodeState};
use crate::{NodeId, StateError};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Default)]
struct Memory {
    objects: Mutex<BTreeMap<String, (Vec<u8>, String)>>,
    tags: AtomicU64,
    /// Conditional requests still to be answered 409.
    conflicts: AtomicU32,
    requests: AtomicU32,
}

impl Memory {
    fn conflict(&self, key: &str) -> Result<(), RemoteError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let left = self.conflicts.load(Ordering::SeqCst);
        if left > 0 {
            self.conflicts.store(left - 1, Ordering::SeqCst);
            return Err(RemoteError::Conflict { key: key.into() });
        }
        Ok(())
    }
    fn tag(&self) -> String {
        format!("\"{}\"", self.tags.fetch_add(1, Ordering::SeqCst))
    }
    fn keys(&self, prefix: &str) -> Vec<String> {
        let objects = self.objects.lock().expect("objects");
        objects
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }
}

#[async_trait]
impl RemoteStore for Memory {
    async fn put_if_absent(&self, key: &str, body: Vec<u8>) -> Result<ETag, RemoteError> {
        self.conflict(key)?;
        let mut objects = self.objects.lock().expect("objects");
        if objects.contains_key(key) {
            return Err(RemoteError::PreconditionFailed { key: key.into() });
        }
        let tag = self.tag();
        objects.insert(key.into(), (body, tag.clone()));
        Ok(tag)
    }
    async fn put_if_match(
        &self,
        key: &str,
        body: Vec<u8>,
        etag: &str,
    ) -> Result<ETag, RemoteError> {
        self.conflict(key)?;
        let mut objects = self.objects.lock().expect("objects");
        match objects.get(key) {
            Some((_, t)) if t == etag => {
                let tag = self.tag();
                objects.insert(key.into(), (body, tag.clone()));
                Ok(tag)
            }
            _ => Err(RemoteError::PreconditionFailed { key: key.into() }),
        }
    }
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, ETag)>, RemoteError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        Ok(self.objects.lock().expect("objects").get(key).cloned())
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, RemoteError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        Ok(self.keys(prefix))
    }
    async fn delete_if_match(&self, key: &str, etag: &str) -> Result<(), RemoteError> {
        self.conflict(key)?;
        let mut objects = self.objects.lock().expect("objects");
        match objects.get(key) {
            Some((_, t)) if t == etag => {
                objects.remove(key);
                Ok(())
            }
            _ => Err(RemoteError::PreconditionFailed { key: key.into() }),
        }
    }
    fn location(&self) -> String {
        "memory://".into()
    }
}

fn new_run() -> NewRun<'static> {
    NewRun {
        workflow: "onboard",
        definition: "region = \"x\"",
        source: None,
        options: serde_json::Value::Null,
        graph: None,
    }
}

fn working_copy(dir: &std::path::Path, store: &Arc<Memory>) -> Journal {
    let mut journal = Journal::open(dir).expect("open");
    let store: Arc<dyn RemoteStore> = store.clone();
    journal
        .share(store, Duration::from_millis(50))
        .expect("share");
    journal
}

#[tokio::test]
async fn two_working_copies_never_make_the_same_run_and_each_sees_the_others() {
    let store = Arc::new(Memory::default());
    store.conflicts.store(2, Ordering::SeqCst);
    let (a_dir, b_dir) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    let a = working_copy(a_dir.path(), &store);
    let b = working_copy(b_dir.path(), &store);
    let first = a.new_run(new_run()).await.expect("a's run");
    // b knows of no run yet: its first try at sequence 1 fails the precondition.
    let second = b.new_run(new_run()).await.expect("b's run");
    assert_eq!((first.sequence, second.sequence), (1, 2));
    let node: NodeId = "g/step".parse().expect("id");
    let mut record = NodeRecord::pending();
    record.state = NodeState::Done;
    record.undo = Some(serde_json::json!({ "status": null }));
    let receipt = a
        .commit_shared(vec![
            Write::Node {
                run: first.id.clone(),
                node: node.clone(),
                record: record.clone(),
            },
            Write::Event {
                run: first.id.clone(),
                node: Some(node.clone()),
                kind: EventKind::UndoRecorded,
            },
        ])
        .expect("commit");
    receipt.shared().await.expect("in the store");
    assert!(
        store
            .keys("runs/0000000001/")
            .contains(&"runs/0000000001/0000000001.json".to_string()),
        "{:?}",
        store.keys("")
    );
    a.commit(vec![Write::Event {
        run: first.id.clone(),
        node: None,
        kind: EventKind::Note {
            message: "later".into(),
        },
    }])
    .expect("commit");
    a.close().await.expect("closed");

    assert_eq!(b.pull().await.expect("pull"), 3);
    assert_eq!(b.pull().await.expect("pull again"), 0, "nothing twice");
    let runs: Vec<u64> = b.runs().expect("runs").iter().map(|r| r.sequence).collect();
    assert_eq!(runs, [1, 2]);
    assert_eq!(b.node(&first.id, &node).expect("read"), Some(record));
    let theirs = b.events(&first.id).expect("events");
    let mine = a.events(&first.id).expect("events");
    assert_eq!(theirs.len(), 3);
    let times = |e: &[crate::Event]| {
        e.iter()
            .map(|e| (e.at_ms, e.kind.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        times(&theirs),
        times(&mine),
        "same events, same times, same order"
    );
    // a's own segments are not replayed into a.
    assert_eq!(a.pull().await.expect("pull"), 1, "only b's run");
    assert_eq!(a.events(&first.id).expect("events").len(), 3);
}

#[tokio::test]
async fn a_failed_flush_keeps_its_writes_for_the_next() {
    let store = Arc::new(Memory::default());
    let dir = tempfile::tempdir().expect("dir");
    let a = working_copy(dir.path(), &store);
    let run = a.new_run(new_run()).await.expect("run");
    store.conflicts.store(100, Ordering::SeqCst);
    let receipt = a
        .commit_shared(vec![Write::Event {
            run: run.id.clone(),
            node: None,
            kind: EventKind::UndoRecorded,
        }])
        .expect("commit");
    let err = receipt
        .shared()
        .await
        .expect_err("the store refuses for now");
    assert!(matches!(err, RemoteError::Conflict { .. }), "{err}");
    store.conflicts.store(0, Ordering::SeqCst);
    a.close().await.expect("written at close");
    assert_eq!(store.keys("runs/0000000001/").len(), 2);
}

fn keeper(store: &Arc<Memory>, pid: u32, timeout: Duration) -> Arc<LockKeeper> {
    let mut holder = Holder::this_process("apply", Some(format!("run-{pid}")), "0.1.0");
    holder.pid = pid;
    let store: Arc<dyn RemoteStore> = store.clone();
    Arc::new(
        LockKeeper::new(store, "archive", holder, timeout)
            .with_heartbeat(Duration::from_millis(30))
            .with_linger(Duration::ZERO),
    )
}

#[tokio::test]
async fn the_lock_is_one_holder_at_a_time_and_a_waiter_gets_it_when_released() {
    let store = Arc::new(Memory::default());
    let a = keeper(&store, 1, Duration::ZERO);
    let held = a.hold(Some("arn:aws:iam::1:role/a")).await.expect("free");
    let shared = a.hold(None).await.expect("shared within the process");
    assert_eq!(shared.epoch(), held.epoch());
    let b = keeper(&store, 2, Duration::ZERO);
    let err = b.hold(None).await.expect_err("held");
    let LockError::Held { info, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!((info.pid, info.run.as_deref()), (1, Some("run-1")));
    assert_eq!(info.caller_arn.as_deref(), Some("arn:aws:iam::1:role/a"));
    assert!(err.to_string().contains("--lock-timeout"), "{err}");
    assert!(!info.is_stale());

    let waiting = keeper(&store, 3, Duration::from_secs(10));
    let waiter = tokio::spawn(async move {
        let hold = waiting.hold(None).await.expect("taken once released");
        hold.waited.clone()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(shared);
    drop(held);
    let waited = waiter.await.expect("joined").expect("it waited");
    assert_eq!(waited.1.pid, 1);
}

#[tokio::test]
async fn after_force_unlock_the_old_holder_is_fenced_and_releases_nothing_of_the_new() {
    let store = Arc::new(Memory::default());
    store.conflicts.store(1, Ordering::SeqCst);
    let a = keeper(&store, 1, Duration::ZERO);
    let held = a.hold(None).await.expect("taken after a 409");
    let found = list_locks(&*store).await.expect("list");
    assert_eq!(found.len(), 1);
    let broken = force_unlock(&*store, &found[0].info.id)
        .await
        .expect("broken");
    assert_eq!(broken.pid, 1);
    let b = keeper(&store, 2, Duration::ZERO);
    let theirs = b.hold(None).await.expect("free again");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = held.fence().await.expect_err("fenced");
    assert!(matches!(err, LockError::Lost { .. }), "{err}");
    assert!(err.to_string().contains("broken and taken again"), "{err}");
    assert!(
        matches!(a.hold(None).await, Err(LockError::Lost { .. })),
        "lost for good"
    );
    drop(held);
    a.close().await;
    let left = list_locks(&*store).await.expect("list");
    assert_eq!(left.len(), 1, "b's lock stays");
    assert_eq!(left[0].info.pid, 2);
    theirs.fence().await.expect("b's is b's");
    assert!(matches!(
        force_unlock(&*store, "no-such-id").await,
        Err(LockError::NotFound { .. })
    ));
}

#[test]
fn a_push_refuses_a_store_with_runs() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let store = Memory::default();
    let dir = tempfile::tempdir().expect("dir");
    let journal = Journal::open(dir.path()).expect("open");
    journal.create_run(new_run()).expect("run");
    assert_eq!(rt.block_on(journal.push_to(&store)).expect("pushed"), 1);
    let again = rt.block_on(journal.push_to(&store));
    assert!(
        matches!(again, Err(StateError::SharedNotEmpty { .. })),
        "{again:?}"
    );
}
