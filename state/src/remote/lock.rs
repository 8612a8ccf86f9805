//! The archive lock: one object per archive in the shared journal's store, created only where
//! none is (`If-None-Match: *`), renewed by its holder with `If-Match` on its ETag, released
//! with a delete conditioned on that ETag. Never broken automatically: `force-unlock` breaks
//! one by its id, conditioned on the ETag it read.
//!
//! A process holds an archive's lock through a [`LockKeeper`]: the first archive write takes
//! it (waiting up to the keeper's timeout while another process holds it), later writes share
//! it, and it is released a moment after the last one ([`LockKeeper::linger`]) or when the
//! command ends. A heartbeat renews it meanwhile; once a renewal finds the lock no longer this
//! process's (broken, or taken by another since), the keeper is *lost* for good: every later
//! [`Hold::fence`] fails, so the process makes no further archive write.

use super::segment::LOCKS;
use super::store::{ETag, RemoteError, RemoteStore, retrying};
use crate::records::now_ms;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a lock object says: who holds it, for what, since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// The lock's id, what `trailhub force-unlock` takes.
    pub id: String,
    /// The archive bucket it serializes the policy writes of.
    pub archive: String,
    /// The holder's user name.
    pub user: String,
    /// The holder's host name.
    pub host: String,
    /// The holder's process id.
    pub pid: u32,
    /// The ARN the holder's archive credentials resolve to, when known.
    #[serde(default)]
    pub caller_arn: Option<String>,
    /// The command holding it (`apply`, `resume`, `rollback`).
    pub command: String,
    /// The run it writes for.
    #[serde(default)]
    pub run: Option<String>,
    /// When it was taken (ms since the epoch).
    pub since_ms: u64,
    /// The holder's last renewal.
    pub heartbeat_ms: u64,
    /// How often the holder renews it.
    pub heartbeat_every_ms: u64,
    /// The holder's trailhub version.
    pub version: String,
}

impl LockInfo {
    /// How long ago it was taken.
    pub fn age(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.since_ms))
    }

    /// How long ago its holder last renewed it.
    pub fn silent_for(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.heartbeat_ms))
    }

    /// Whether its holder missed three renewals: most likely dead (killed, or its machine
    /// gone). A stale lock is still held: only `force-unlock` breaks it.
    pub fn is_stale(&self) -> bool {
        self.silent_for() > Duration::from_millis(self.heartbeat_every_ms.saturating_mul(3))
    }

    /// One line naming the holder, what for, and its age.
    pub fn describe(&self) -> String {
        let caller = self
            .caller_arn
            .as_deref()
            .map(|a| format!(" as {a}"))
            .unwrap_or_default();
        let run = self
            .run
            .as_deref()
            .map(|r| format!(" run {r}"))
            .unwrap_or_default();
        format!(
            "lock {} on archive {} held by {}@{} (pid {}{caller}), `trailhub {}`{run}, trailhub {}, taken {} ago, last heartbeat {} ago{}",
            self.id,
            self.archive,
            self.user,
            self.host,
            self.pid,
            self.command,
            self.version,
            short(self.age()),
            short(self.silent_for()),
            if self.is_stale() {
                " (stale: its holder stopped renewing it)"
            } else {
                ""
            }
        )
    }
}

fn short(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    }
}

/// What can go wrong taking, keeping or breaking a lock.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LockError {
    /// Another process holds it, and the wait (`--lock-timeout`) is over.
    #[error("the archive is locked by another trailhub process: {}; {}", .info.describe(), held_hint(.info, .waited))]
    Held {
        /// The lock as found.
        info: Box<LockInfo>,
        /// How long this process waited.
        waited: Duration,
    },
    /// This process held it, and a renewal found it no longer its own.
    #[error(
        "the archive lock {id} on {archive} is no longer this process's ({why}): trailhub stopped before its next write of the archive's policies; once the other run is done, `trailhub resume` continues this one"
    )]
    Lost {
        /// The lock's id.
        id: String,
        /// The archive.
        archive: String,
        /// What the renewal found.
        why: String,
    },
    /// No lock has this id.
    #[error("no archive lock has id {id} in {location}; `trailhub status` lists the locks held")]
    NotFound {
        /// The id asked for.
        id: String,
        /// The store.
        location: String,
    },
    /// A lock object that does not decode.
    #[error("the lock object {key} in {location} is not a trailhub lock ({reason})")]
    Unreadable {
        /// Its key.
        key: String,
        /// The store.
        location: String,
        /// Why.
        reason: String,
    },
    /// The store failed.
    #[error("the archive lock could not be read or written in {location}: {source}")]
    Remote {
        /// The store.
        location: String,
        /// The error.
        #[source]
        source: RemoteError,
    },
}

fn held_hint(info: &LockInfo, waited: &Duration) -> String {
    let waited = if waited.is_zero() {
        "pass --lock-timeout DURATION (e.g. --lock-timeout 10m) to wait for it".to_string()
    } else {
        format!(
            "waited {} for it; pass a longer --lock-timeout to wait more",
            short(*waited)
        )
    };
    let broken = if info.is_stale() {
        format!(
            "; if its holder is gone, break it with `trailhub force-unlock {}`",
            info.id
        )
    } else {
        format!(
            "; only if you know its holder is gone, `trailhub force-unlock {}` breaks it",
            info.id
        )
    };
    format!("{waited}{broken}")
}

/// Who takes a lock: this process, for a command.
#[derive(Debug, Clone)]
pub struct Holder {
    /// The user name.
    pub user: String,
    /// The host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// The command.
    pub command: String,
    /// The run.
    pub run: Option<String>,
    /// trailhub's version.
    pub version: String,
}

impl Holder {
    /// This process, running `command` (for run `run`), as trailhub `version`.
    pub fn this_process(command: &str, run: Option<String>, version: &str) -> Holder {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into());
        Holder {
            user,
            host: host_name(),
            pid: std::process::id(),
            command: command.to_string(),
            run,
            version: version.to_string(),
        }
    }
}

#[cfg(unix)]
fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[cfg(not(unix))]
fn host_name() -> String {
    std::env::var("COMPUTERNAME").unwrap_or_else(|_| "unknown".into())
}

/// The key of `archive`'s lock.
pub fn lock_key(archive: &str) -> String {
    format!("{LOCKS}{archive}.json")
}

/// A lock found in the store.
#[derive(Debug, Clone)]
pub struct FoundLock {
    /// Its key.
    pub key: String,
    /// What it says.
    pub info: LockInfo,
    /// Its ETag when read.
    pub etag: ETag,
}

/// Every lock held in `store`.
pub async fn list_locks(store: &dyn RemoteStore) -> Result<Vec<FoundLock>, LockError> {
    let remote = |source| LockError::Remote {
        location: store.location(),
        source,
    };
    let keys = retrying(|| store.list(LOCKS)).await.map_err(remote)?;
    let mut found = Vec::new();
    for key in keys {
        if let Some((body, etag)) = retrying(|| store.get(&key)).await.map_err(remote)? {
            let info = decode(store, &key, &body)?;
            found.push(FoundLock { key, info, etag });
        }
    }
    Ok(found)
}

fn decode(store: &dyn RemoteStore, key: &str, body: &[u8]) -> Result<LockInfo, LockError> {
    serde_json::from_slice(body).map_err(|e| LockError::Unreadable {
        key: key.to_string(),
        location: store.location(),
        reason: e.to_string(),
    })
}

/// Breaks the lock whose id is `id`, with a delete conditioned on the ETag it was read with
/// (so that a lock taken again since is not deleted). Its contents.
pub async fn force_unlock(store: &dyn RemoteStore, id: &str) -> Result<LockInfo, LockError> {
    // A live holder's heartbeat may change the ETag between the read and the delete: read
    // again, a few times, while it is still the same lock.
    for _ in 0..5 {
        let Some(lock) = list_locks(store)
            .await?
            .into_iter()
            .find(|l| l.info.id == id)
        else {
            break;
        };
        match retrying(|| store.delete_if_match(&lock.key, &lock.etag)).await {
            Ok(()) => return Ok(lock.info),
            Err(RemoteError::PreconditionFailed { .. }) => continue,
            Err(source) => {
                return Err(LockError::Remote {
                    location: store.location(),
                    source,
                });
            }
        }
    }
    Err(LockError::NotFound {
        id: id.to_string(),
        location: store.location(),
    })
}

/// How long a keeper keeps a lock after its last writer let it go, in case another write
/// follows (grants finish in waves): taking it again costs a write and a delete.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(1500);

/// How often a held lock is renewed.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);

/// One process's hold on one archive's lock, shared by its writers.
#[derive(Debug)]
pub struct LockKeeper {
    store: Arc<dyn RemoteStore>,
    key: String,
    archive: String,
    holder: Holder,
    /// The run written for (set once it is known: a run is created after its workflow).
    run: Mutex<Option<String>>,
    timeout: Duration,
    heartbeat: Duration,
    linger: Duration,
    /// Taken while the lock is being acquired or released, so that one process never races
    /// itself.
    turn: tokio::sync::Mutex<()>,
    state: Mutex<KeeperState>,
}

#[derive(Debug)]
enum KeeperState {
    Free,
    Held {
        lock: Arc<HeldLock>,
        users: usize,
        /// Bumped when the last user lets go, so that a release planned then is skipped if
        /// the lock was used again meanwhile.
        idle_generation: u64,
    },
    Lost(Box<LockError>),
}

#[derive(Debug)]
struct HeldLock {
    info: Mutex<LockInfo>,
    etag: Mutex<ETag>,
    renewed: Mutex<Instant>,
    lost: AtomicBool,
    heartbeat: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Which taking of the lock by this process this is (1 for the first).
    epoch: u64,
}

/// A writer's share of the held lock; the lock is kept while any is alive.
#[derive(Debug)]
pub struct Hold {
    keeper: Arc<LockKeeper>,
    lock: Arc<HeldLock>,
    /// How long this writer waited for another process's lock, and whose.
    pub waited: Option<(Duration, LockInfo)>,
}

impl LockKeeper {
    /// A keeper of `archive`'s lock in `store` for `holder`, waiting at most `timeout` for
    /// another process's lock.
    pub fn new(
        store: Arc<dyn RemoteStore>,
        archive: &str,
        holder: Holder,
        timeout: Duration,
    ) -> LockKeeper {
        LockKeeper {
            store,
            key: lock_key(archive),
            archive: archive.to_string(),
            run: Mutex::new(holder.run.clone()),
            holder,
            timeout,
            heartbeat: DEFAULT_HEARTBEAT,
            linger: DEFAULT_LINGER,
            turn: tokio::sync::Mutex::new(()),
            state: Mutex::new(KeeperState::Free),
        }
    }

    /// Renews every `heartbeat` (a lock not renewed for three of them reads as stale).
    pub fn with_heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = heartbeat.max(Duration::from_millis(10));
        self
    }

    /// Keeps the lock `linger` after its last writer let it go.
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Names `run` as what a lock taken from now on is held for.
    pub fn set_run(&self, run: &str) {
        *self
            .run
            .lock()
            .expect("the keeper's run should not be poisoned") = Some(run.to_string());
    }

    /// The archive whose lock this is.
    pub fn archive(&self) -> &str {
        &self.archive
    }

    /// How long a writer waits for another process's lock.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How long the lock is kept after its last writer let it go.
    pub fn linger(&self) -> Duration {
        self.linger
    }

    fn state(&self) -> std::sync::MutexGuard<'_, KeeperState> {
        self.state
            .lock()
            .expect("the lock keeper's state should not be poisoned")
    }

    /// A share of the lock: this process's if it holds it already, else taken (waiting up to
    /// the keeper's timeout while another holds it). `caller_arn` goes into a lock taken now.
    pub async fn hold(self: &Arc<Self>, caller_arn: Option<&str>) -> Result<Hold, LockError> {
        let _turn = self.turn.lock().await;
        if let Some(hold) = self.share()? {
            return Ok(hold);
        }
        let (lock, waited) = self.acquire(caller_arn).await?;
        let lock = Arc::new(lock);
        let heartbeat = tokio::spawn(self.clone().beat(lock.clone()));
        *lock
            .heartbeat
            .lock()
            .expect("the heartbeat slot should not be poisoned") = Some(heartbeat);
        *self.state() = KeeperState::Held {
            lock: lock.clone(),
            users: 1,
            idle_generation: 0,
        };
        Ok(Hold {
            keeper: self.clone(),
            lock,
            waited,
        })
    }

    /// A share of the lock this process holds already, if it does.
    fn share(self: &Arc<Self>) -> Result<Option<Hold>, LockError> {
        let mut state = self.state();
        match &mut *state {
            KeeperState::Held { lock, users, .. } => {
                *users += 1;
                Ok(Some(Hold {
                    keeper: self.clone(),
                    lock: lock.clone(),
                    waited: None,
                }))
            }
            KeeperState::Lost(e) => Err((**e).clone()),
            KeeperState::Free => Ok(None),
        }
    }

    fn remote(&self, source: RemoteError) -> LockError {
        LockError::Remote {
            location: self.store.location(),
            source,
        }
    }

    /// Takes the lock with a create-only write, waiting with backoff while another holds it.
    async fn acquire(
        &self,
        caller_arn: Option<&str>,
    ) -> Result<(HeldLock, Option<(Duration, LockInfo)>), LockError> {
        let started = Instant::now();
        let epoch = self.next_epoch();
        let mut wait = Duration::from_millis(100);
        let mut seen: Option<LockInfo> = None;
        loop {
            let now = now_ms();
            let info = LockInfo {
                id: format!("{now:x}-{:x}", self.holder.pid),
                archive: self.archive.clone(),
                user: self.holder.user.clone(),
                host: self.holder.host.clone(),
                pid: self.holder.pid,
                caller_arn: caller_arn.map(str::to_string),
                command: self.holder.command.clone(),
                run: self
                    .run
                    .lock()
                    .expect("the keeper's run should not be poisoned")
                    .clone(),
                since_ms: now,
                heartbeat_ms: now,
                heartbeat_every_ms: self.heartbeat.as_millis() as u64,
                version: self.holder.version.clone(),
            };
            let body = serde_json::to_vec(&info).expect("a lock should always serialize");
            match retrying(|| self.store.put_if_absent(&self.key, body.clone())).await {
                Ok(etag) => {
                    let lock = HeldLock {
                        info: Mutex::new(info),
                        etag: Mutex::new(etag),
                        renewed: Mutex::new(Instant::now()),
                        lost: AtomicBool::new(false),
                        heartbeat: Mutex::new(None),
                        epoch,
                    };
                    let waited = seen.map(|other| (started.elapsed(), other));
                    return Ok((lock, waited));
                }
                Err(RemoteError::PreconditionFailed { .. }) => {}
                Err(e) => return Err(self.remote(e)),
            }
            let Some((body, _)) = retrying(|| self.store.get(&self.key))
                .await
                .map_err(|e| self.remote(e))?
            else {
                // Released between the two requests: try again at once.
                continue;
            };
            let other = decode(&*self.store, &self.key, &body)?;
            let elapsed = started.elapsed();
            if elapsed >= self.timeout {
                return Err(LockError::Held {
                    info: Box::new(other),
                    waited: elapsed,
                });
            }
            seen = Some(other);
            let left = self.timeout - elapsed;
            tokio::time::sleep(jittered(wait).min(left)).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    fn next_epoch(&self) -> u64 {
        static EPOCHS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        EPOCHS.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Renews the held lock every heartbeat until it is released or lost.
    async fn beat(self: Arc<Self>, lock: Arc<HeldLock>) {
        loop {
            tokio::time::sleep(self.heartbeat).await;
            if lock.lost.load(Ordering::SeqCst) {
                return;
            }
            match self.renew(&lock).await {
                Ok(()) => {}
                Err(LockError::Lost { .. }) => return,
                // A failed renewal is tried again at the next beat; the lock only goes stale
                // if three in a row fail.
                Err(_) => {}
            }
        }
    }

    /// Writes a new heartbeat into the lock, conditioned on its ETag; marks the keeper lost if
    /// the lock is no longer this process's.
    async fn renew(&self, lock: &HeldLock) -> Result<(), LockError> {
        let mut info = lock
            .info
            .lock()
            .expect("the lock's info should not be poisoned")
            .clone();
        info.heartbeat_ms = now_ms();
        let body = serde_json::to_vec(&info).expect("a lock should always serialize");
        let etag = lock
            .etag
            .lock()
            .expect("the lock's etag should not be poisoned")
            .clone();
        let renewed = retrying(|| self.store.put_if_match(&self.key, body.clone(), &etag)).await;
        let renewed = match renewed {
            Err(RemoteError::PreconditionFailed { .. }) => {
                // A renewal that succeeded but whose answer was lost looks the same as a lock
                // taken by another: read it to tell them apart.
                match retrying(|| self.store.get(&self.key)).await {
                    Ok(Some((found, etag))) if found == body => Ok(etag),
                    Ok(Some((found, _))) => {
                        let why = match decode(&*self.store, &self.key, &found) {
                            Ok(other) if other.id != info.id => {
                                format!("it was broken and taken again: {}", other.describe())
                            }
                            Ok(_) => "it was changed by another writer".to_string(),
                            Err(e) => e.to_string(),
                        };
                        return Err(self.lose(lock, &info, why));
                    }
                    Ok(None) => {
                        return Err(self.lose(
                            lock,
                            &info,
                            "it was broken with `trailhub force-unlock`".to_string(),
                        ));
                    }
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        let etag = renewed.map_err(|e| self.remote(e))?;
        *lock
            .etag
            .lock()
            .expect("the lock's etag should not be poisoned") = etag;
        *lock
            .info
            .lock()
            .expect("the lock's info should not be poisoned") = info;
        *lock
            .renewed
            .lock()
            .expect("the renewal time should not be poisoned") = Instant::now();
        Ok(())
    }

    fn lose(&self, lock: &HeldLock, info: &LockInfo, why: String) -> LockError {
        lock.lost.store(true, Ordering::SeqCst);
        let error = LockError::Lost {
            id: info.id.clone(),
            archive: self.archive.clone(),
            why,
        };
        *self.state() = KeeperState::Lost(Box::new(error.clone()));
        error
    }

    /// A writer let go: with no writer left, the lock is released after the linger, unless
    /// one took it again meanwhile.
    fn let_go(self: &Arc<Self>) {
        let generation = {
            let mut state = self.state();
            let KeeperState::Held {
                users,
                idle_generation,
                ..
            } = &mut *state
            else {
                return;
            };
            *users = users.saturating_sub(1);
            if *users > 0 {
                return;
            }
            *idle_generation += 1;
            *idle_generation
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let keeper = self.clone();
        runtime.spawn(async move {
            tokio::time::sleep(keeper.linger).await;
            keeper.release_if_idle(Some(generation)).await;
        });
    }

    /// Releases the lock if no writer holds it (and, with `generation`, none took it since
    /// that generation went idle).
    async fn release_if_idle(&self, generation: Option<u64>) {
        let _turn = self.turn.lock().await;
        let lock = {
            let mut state = self.state();
            match &*state {
                KeeperState::Held {
                    users,
                    idle_generation,
                    lock,
                } if *users == 0 && generation.is_none_or(|g| g == *idle_generation) => {
                    let lock = lock.clone();
                    *state = KeeperState::Free;
                    lock
                }
                _ => return,
            }
        };
        self.release_lock(&lock).await;
    }

    async fn release_lock(&self, lock: &HeldLock) {
        if let Some(task) = lock
            .heartbeat
            .lock()
            .expect("the heartbeat slot should not be poisoned")
            .take()
        {
            task.abort();
        }
        let etag = lock
            .etag
            .lock()
            .expect("the lock's etag should not be poisoned")
            .clone();
        // Conditioned on this process's own ETag: a lock broken and taken by another since is
        // theirs, and stays.
        let _ = retrying(|| self.store.delete_if_match(&self.key, &etag)).await;
    }

    /// Releases the lock now, whoever still shares it (the command is ending).
    pub async fn close(&self) {
        let _turn = self.turn.lock().await;
        let lock = {
            let mut state = self.state();
            match &*state {
                KeeperState::Held { lock, .. } => {
                    let lock = lock.clone();
                    *state = KeeperState::Free;
                    lock
                }
                _ => return,
            }
        };
        self.release_lock(&lock).await;
    }
}

impl Hold {
    /// Which taking of the lock this is: a writer whose earlier write was made under another
    /// epoch knows that other processes may have written since.
    pub fn epoch(&self) -> u64 {
        self.lock.epoch
    }

    /// The lock's id.
    pub fn id(&self) -> String {
        self.lock
            .info
            .lock()
            .expect("the lock's info should not be poisoned")
            .id
            .clone()
    }

    /// Call before each archive write: fails when a renewal found the lock no longer this
    /// process's, and renews it first when the last renewal is a heartbeat old (a heartbeat
    /// that fell behind must not let a write through unchecked).
    pub async fn fence(&self) -> Result<(), LockError> {
        if self.lock.lost.load(Ordering::SeqCst)
            && let KeeperState::Lost(e) = &*self.keeper.state()
        {
            return Err((**e).clone());
        }
        let last = *self
            .lock
            .renewed
            .lock()
            .expect("the renewal time should not be poisoned");
        if last.elapsed() >= self.keeper.heartbeat {
            self.keeper.renew(&self.lock).await?;
        }
        Ok(())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.keeper.let_go();
    }
}

/// `wait`, give or take a quarter, so that waiting processes do not retry in step.
fn jittered(wait: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let quarter = wait / 4;
    let offset = quarter.mul_f64(f64::from(nanos % 1000) / 1000.0 * 2.0);
    wait - quarter + offset
}
