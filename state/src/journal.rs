//! The journal itself: opening a state directory, and atomic, durable writes of run records,
//! node records and events.

use crate::StateError;
use crate::ids::{GraphRecord, NodeId};
use crate::lock::DirLock;
use crate::records::{Event, EventKind, NodeRecord, RunRecord, RunStatus, now_ms};
use crate::remote::mirror::{Mirror, Receipt};
use crate::remote::segment::SharedWrite;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The journal format this binary writes.
///
/// Rule: a reader accepts this version and every older one, migrating an older journal when it
/// is opened with a [`Migration`]; a writer refuses a journal whose marker names a newer
/// version, and says so, rather than corrupt what it does not understand.
///
/// - 1: the first release.
/// - 2: each run journals its graph ([`RunRecord::graph`]); node records say whether their
///   apply changed anything; undo records and outputs are the steps' typed records (their
///   shapes are the steps' business: the [`Migration`] rewrites them).
pub const FORMAT_VERSION: u32 = 2;

/// What turns a journal of an older format into this one, for what this crate does not know:
/// the workflow that made each run's graph, and the steps' undo records and outputs.
///
/// Both methods must be idempotent: a migration killed after it committed its writes but before
/// it updated the format marker runs again on records it already rewrote.
pub trait Migration {
    /// The graph of a run journaled before runs carried one.
    fn graph(&self, run: &RunRecord) -> Result<GraphRecord, String>;

    /// Rewrites, in place, node `id`'s record of run `run`, written in format `from`.
    fn node(
        &self,
        from: u32,
        run: &RunRecord,
        id: &NodeId,
        record: &mut NodeRecord,
    ) -> Result<(), String>;
}

/// What [`Journal::create_run`] journals.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    /// The workflow's name (`onboard`).
    pub workflow: &'a str,
    /// The frozen definition (the inventory's text).
    pub definition: &'a str,
    /// Where the definition was read from, for messages.
    pub source: Option<String>,
    /// Options as the CLI gave them.
    pub options: serde_json::Value,
    /// The run's graph.
    pub graph: Option<GraphRecord>,
}

const MARKER: &str = "trailhub.json";
/// The marker's new text before it is renamed over the marker.
const MARKER_TMP: &str = "trailhub.json.new";
const DB_DIR: &str = "journal";

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    format: String,
    version: u32,
}

/// One write of a [`Journal::commit`].
#[derive(Debug, Clone)]
pub enum Write {
    /// Insert or replace a run record.
    Run(RunRecord),
    /// Insert or replace a node record.
    Node {
        /// The run.
        run: String,
        /// The node id.
        node: NodeId,
        /// The record.
        record: NodeRecord,
    },
    /// Append an event to the run's history.
    Event {
        /// The run.
        run: String,
        /// The node concerned, if any.
        node: Option<NodeId>,
        /// What happened.
        kind: EventKind,
    },
}

/// An open, locked journal.
///
/// Every `commit` is atomic (all its writes or none) and durable: when it returns `Ok`, the
/// writes have been flushed and fsynced, and survive a `kill -9` or a crash of the process.
///
/// A journal may be the working copy of a shared one ([`Journal::share`]): its commits then
/// also go to the shared store, in order, at most a period given to [`Journal::share`] later, and
/// [`Journal::commit_shared`]'s as soon as they are made.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    db: sled::Db,
    runs: sled::Tree,
    nodes: sled::Tree,
    events: sled::Tree,
    pub(crate) shared: Option<Shared>,
    _lock: DirLock,
}

/// What a working copy keeps of its shared journal.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) mirror: Mirror,
    /// Per run sequence (big-endian), the last segment this working copy has (replayed or
    /// written itself), big-endian.
    pub(crate) applied: sled::Tree,
}

impl Journal {
    /// Opens the journal in `dir`, creating the directory (mode 0700) and the journal if needed.
    ///
    /// A directory that existed before is made as private as a new one once it is known to be a
    /// journal or empty (every opening does this, [`Journal::open_existing`]'s too): this
    /// user's own is set to 0700 if group or others had any access to it; another user's that
    /// group or others can write to is refused with [`StateError::NotPrivate`], since whoever
    /// can write there could change what trailhub later undoes. A directory holding other files
    /// is refused before anything in it is changed, its mode included.
    ///
    /// Fails with [`StateError::Locked`] if another process has it open,
    /// [`StateError::NotAJournal`] if `dir` holds other files, [`StateError::NewerFormat`] if a
    /// newer trailhub wrote it, and [`StateError::OlderFormat`] if an older one did (open it
    /// with [`Journal::open_migrating`]).
    pub fn open(dir: &Path) -> Result<Journal, StateError> {
        create_private_dir(dir)?;
        Self::open_dir(dir, None)
    }

    /// Opens an existing journal; [`StateError::Missing`] if there is none at `dir`.
    pub fn open_existing(dir: &Path) -> Result<Journal, StateError> {
        Self::require_existing(dir)?;
        Self::open_dir(dir, None)
    }

    /// Opens (and with `create`, creates) the journal in `dir`, migrating one of an older format
    /// with `migration` first: every run and node record is rewritten in one durable commit,
    /// then the format marker says the new version. Nothing is changed if the migration fails.
    pub fn open_migrating(
        dir: &Path,
        create: bool,
        migration: &dyn Migration,
    ) -> Result<Journal, StateError> {
        if create {
            create_private_dir(dir)?;
        } else {
            Self::require_existing(dir)?;
        }
        Self::open_dir(dir, Some(migration))
    }

    fn require_existing(dir: &Path) -> Result<(), StateError> {
        if dir.join(MARKER).exists() {
            return Ok(());
        }
        if dir.is_dir() && !is_empty_dir(dir)? && !only_first_open_leftovers(dir)? {
            return Err(StateError::NotAJournal {
                path: dir.to_path_buf(),
            });
        }
        Err(StateError::Missing {
            path: dir.to_path_buf(),
        })
    }

    fn open_dir(dir: &Path, migration: Option<&dyn Migration>) -> Result<Journal, StateError> {
        let marker_path = dir.join(MARKER);
        let found = if marker_path.exists() {
            Some(check_marker(&marker_path, dir)?)
        } else if is_empty_dir(dir)? || only_first_open_leftovers(dir)? {
            None
        } else {
            return Err(StateError::NotAJournal {
                path: dir.to_path_buf(),
            });
        };
        if let Some(version) = found
            && version < FORMAT_VERSION
            && migration.is_none()
        {
            return Err(StateError::OlderFormat {
                path: dir.to_path_buf(),
                found: version,
            });
        }
        make_private(dir)?;
        let lock = DirLock::acquire(dir)?;
        if found.is_none() {
            write_marker(&marker_path)?;
        }
        let db_path = dir.join(DB_DIR);
        let db = open_db(dir, &db_path)?;
        let runs = db.open_tree("runs")?;
        let nodes = db.open_tree("nodes")?;
        let events = db.open_tree("events")?;
        let journal = Journal {
            dir: dir.to_path_buf(),
            db,
            runs,
            nodes,
            events,
            shared: None,
            _lock: lock,
        };
        if let (Some(version), Some(migration)) = (found, migration)
            && version < FORMAT_VERSION
        {
            journal.migrate(version, migration)?;
            write_marker(&marker_path)?;
        }
        journal.restrict_permissions();
        Ok(journal)
    }

    /// Rewrites every run and node record of format `from` in this format, in one commit.
    fn migrate(&self, from: u32, migration: &dyn Migration) -> Result<(), StateError> {
        let failed = |reason: String| StateError::Migration {
            path: self.dir.clone(),
            from,
            reason,
        };
        let mut writes = Vec::new();
        for mut run in self.runs()? {
            for (id, mut record) in self.nodes(&run.id)? {
                migration
                    .node(from, &run, &id, &mut record)
                    .map_err(|e| failed(format!("run {}, node {id}: {e}", run.id)))?;
                writes.push(Write::Node {
                    run: run.id.clone(),
                    node: id,
                    record,
                });
            }
            if run.graph.is_none() {
                let graph = migration
                    .graph(&run)
                    .map_err(|e| failed(format!("run {}: {e}", run.id)))?;
                run.graph = Some(graph);
            }
            writes.push(Write::Run(run));
        }
        self.commit(writes)
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates a run with status `pending` and journals its `run-created` event, durably (in
    /// this journal only: a working copy of a shared journal creates runs with
    /// [`Journal::new_run`]).
    pub fn create_run(&self, new: NewRun<'_>) -> Result<RunRecord, StateError> {
        // The lock makes this process the only writer, so one more than the highest sequence
        // is unique, and orders this run after every other whatever the clock says.
        let seq = self.runs()?.last().map_or(0, |r| r.sequence) + 1;
        let (run, writes) = self.make_run(&new, seq)?;
        self.store_local(&writes, None)?;
        Ok(run)
    }

    /// The record and the creation writes (the record, its `run-created` event) of a run of
    /// sequence `seq`.
    pub(crate) fn make_run(
        &self,
        new: &NewRun<'_>,
        seq: u64,
    ) -> Result<(RunRecord, Vec<SharedWrite>), StateError> {
        let now = now_ms();
        let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let compact: String = stamp
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let run = RunRecord {
            id: format!("{compact}-{seq:04}"),
            sequence: seq,
            created_at_ms: now,
            updated_at_ms: now,
            workflow: new.workflow.to_string(),
            definition: new.definition.to_string(),
            source: new.source.clone(),
            status: RunStatus::Pending,
            options: new.options.clone(),
            pending_rollback: None,
            graph: new.graph.clone(),
        };
        let writes = self.resolve(vec![
            Write::Run(run.clone()),
            Write::Event {
                run: run.id.clone(),
                node: None,
                kind: EventKind::RunCreated,
            },
        ])?;
        Ok((run, writes))
    }

    /// The run with this id.
    pub fn run(&self, id: &str) -> Result<RunRecord, StateError> {
        match self.runs.get(id.as_bytes())? {
            Some(bytes) => decode_run(id, &bytes),
            None => Err(StateError::UnknownRun { id: id.to_string() }),
        }
    }

    /// The run with this id, or the latest one (the highest sequence) when `id` is `None`.
    pub fn resolve_run(&self, id: Option<&str>) -> Result<RunRecord, StateError> {
        match id {
            Some(id) => self.run(id),
            None => self.runs()?.pop().ok_or(StateError::NoRuns),
        }
    }

    /// Every run, in sequence order: oldest first, whatever their creation times say.
    pub fn runs(&self) -> Result<Vec<RunRecord>, StateError> {
        let mut runs = Vec::new();
        for item in self.runs.iter() {
            let (key, value) = item?;
            runs.push(decode_run(&String::from_utf8_lossy(&key), &value)?);
        }
        runs.sort_by(|a, b| (a.sequence, &a.id).cmp(&(b.sequence, &b.id)));
        Ok(runs)
    }

    /// The record of one node, if it was ever journaled.
    pub fn node(&self, run: &str, node: &NodeId) -> Result<Option<NodeRecord>, StateError> {
        let key = node_key(run, node);
        match self.nodes.get(&key)? {
            Some(bytes) => Ok(Some(decode(node.as_str(), &bytes)?)),
            None => Ok(None),
        }
    }

    /// Every journaled node of a run, by node id.
    pub fn nodes(&self, run: &str) -> Result<BTreeMap<NodeId, NodeRecord>, StateError> {
        let prefix = run_prefix(run);
        let mut out = BTreeMap::new();
        for item in self.nodes.scan_prefix(&prefix) {
            let (key, value) = item?;
            let text = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            let node: NodeId = text.parse().map_err(|reason| StateError::BadKey {
                key: format!("{run}/{text}"),
                reason,
            })?;
            let record = decode(&text, &value)?;
            out.insert(node, record);
        }
        Ok(out)
    }

    /// The run's history, in the order it was journaled.
    pub fn events(&self, run: &str) -> Result<Vec<Event>, StateError> {
        let prefix = run_prefix(run);
        let mut out = Vec::new();
        for item in self.events.scan_prefix(&prefix) {
            let (key, value) = item?;
            out.push(decode(&String::from_utf8_lossy(&key), &value)?);
        }
        Ok(out)
    }

    /// Applies `writes` atomically and durably.
    ///
    /// If this returns `Ok`, every write is on disk (flushed and fsynced) and will be found
    /// after a crash or `kill -9`; if the process dies before it returns, either all of the
    /// writes are found or none. In a working copy of a shared journal, they are also queued
    /// for the shared store (written at most a period given to [`Journal::share`] later).
    pub fn commit(&self, writes: Vec<Write>) -> Result<(), StateError> {
        self.commit_with(writes, false).map(|_| ())
    }

    /// As [`Journal::commit`], and sent to the shared store at once: the receipt is answered
    /// once the store has them (at once in a journal that is not shared). What must survive
    /// the machine before the caller goes on (an undo record, before its mutation) is
    /// committed so.
    pub fn commit_shared(&self, writes: Vec<Write>) -> Result<Receipt, StateError> {
        self.commit_with(writes, true)
    }

    fn commit_with(&self, writes: Vec<Write>, urgent: bool) -> Result<Receipt, StateError> {
        if writes.is_empty() {
            return Ok(Receipt::local());
        }
        let resolved = self.resolve(writes)?;
        self.store_local(&resolved, None)?;
        Ok(match &self.shared {
            Some(shared) => shared.mirror.enqueue(resolved, urgent),
            None => Receipt::local(),
        })
    }

    /// The writes with what the journal decides: each event's position and time.
    fn resolve(&self, writes: Vec<Write>) -> Result<Vec<SharedWrite>, StateError> {
        let now = now_ms();
        let mut resolved = Vec::with_capacity(writes.len());
        for write in writes {
            resolved.push(match write {
                Write::Run(record) => SharedWrite::Run { record },
                Write::Node { run, node, record } => SharedWrite::Node { run, node, record },
                Write::Event { run, node, kind } => SharedWrite::Event {
                    run,
                    event: Event {
                        seq: self.db.generate_id()?,
                        at_ms: now,
                        node,
                        kind,
                    },
                },
            });
        }
        Ok(resolved)
    }

    /// Writes resolved `writes` into this journal, atomically and durably; with `segment`
    /// (a run sequence and segment number), records that this working copy has that segment
    /// of the shared journal, in the same transaction.
    pub(crate) fn store_local(
        &self,
        writes: &[SharedWrite],
        segment: Option<(u64, u64)>,
    ) -> Result<(), StateError> {
        let mut encoded: Vec<(u8, Vec<u8>, Vec<u8>)> = Vec::with_capacity(writes.len() + 1);
        for write in writes {
            match write {
                SharedWrite::Run { record } => {
                    encoded.push((0, record.id.clone().into_bytes(), encode(record)))
                }
                SharedWrite::Node { run, node, record } => {
                    encoded.push((1, node_key(run, node), encode(record)))
                }
                SharedWrite::Event { run, event } => {
                    let mut key = run_prefix(run);
                    key.extend_from_slice(&event.seq.to_be_bytes());
                    encoded.push((2, key, encode(event)));
                }
            }
        }
        let applied = match (&self.shared, segment) {
            (Some(shared), Some((seq, n))) => {
                encoded.push((3, seq.to_be_bytes().to_vec(), n.to_be_bytes().to_vec()));
                Some(&shared.applied)
            }
            _ => None,
        };
        let done = match applied {
            Some(applied) => (&self.runs, &self.nodes, &self.events, applied)
                .transaction(|(r, n, e, a)| insert_all(&encoded, [r, n, e, a])),
            None => (&self.runs, &self.nodes, &self.events)
                .transaction(|(r, n, e)| insert_all(&encoded, [r, n, e, e])),
        };
        done.map_err(|e| match e {
            sled::transaction::TransactionError::Storage(e) => StateError::Db(e),
            sled::transaction::TransactionError::Abort(()) => {
                unreachable!("the journal's transactions never abort")
            }
        })?;
        self.db.flush()?;
        Ok(())
    }

    /// A new event position, for an event replayed from the shared journal.
    pub(crate) fn next_event_seq(&self) -> Result<u64, StateError> {
        Ok(self.db.generate_id()?)
    }

    /// The database, for the shared journal's bookkeeping tree.
    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Sets permissions to 0600 on every file of the state directory (sled creates its files
    /// with the process umask; the directory itself is 0700 already).
    fn restrict_permissions(&self) {
        #[cfg(unix)]
        restrict_tree(&self.dir);
    }
}

/// Opens sled's database. Our directory lock is held, so no other process has it open; sled's
/// own lock can still be held for a moment by a `Db` of this process being dropped (its flusher
/// thread lets go of it on its next tick), which happens when one process closes a journal and
/// opens it again. That wait is bounded (2 s); any other error is returned at once, a failed
/// checksum as [`StateError::Corrupt`] (sled checks its files when it opens them).
fn open_db(dir: &Path, db_path: &Path) -> Result<sled::Db, StateError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let opened = sled::Config::new()
            .path(db_path)
            .mode(sled::Mode::LowSpace)
            .cache_capacity(8 * 1024 * 1024)
            .open();
        match opened {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(sled::Error::Corruption { .. }) => {
                return Err(StateError::Corrupt {
                    path: dir.to_path_buf(),
                });
            }
            other => {
                return other.map_err(|source| StateError::Open {
                    path: db_path.to_path_buf(),
                    source,
                });
            }
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.db.flush();
        self.restrict_permissions();
    }
}

#[cfg(unix)]
fn restrict_tree(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700));
            restrict_tree(&path);
        } else if meta.permissions().mode() & 0o077 != 0 {
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<(), StateError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| StateError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let io = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = options.open(path).map_err(io)?;
    std::io::Write::write_all(&mut file, bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

fn is_empty_dir(dir: &Path) -> Result<bool, StateError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(StateError::NotAJournal {
            path: dir.to_path_buf(),
        }),
        Err(source) => Err(StateError::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Whether the directory holds nothing but what a first opening writes before its marker is in
/// place: the lock file, and the marker's temporary file (see [`write_marker`]). A process that
/// died between taking the lock and renaming the marker left them; they are not someone else's
/// data, and a later opening takes the directory as new (the lock tells whether the process
/// that wrote them is still alive).
fn only_first_open_leftovers(dir: &Path) -> Result<bool, StateError> {
    let io = |source| StateError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let names: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    Ok(!names.is_empty()
        && names
            .iter()
            .all(|name| *name == "lock" || *name == MARKER_TMP))
}

/// Makes the state directory private (see [`Journal::open`]): 0700 when it is this user's,
/// refused when it is another user's and group or others can write to it. Called only once
/// the directory is known to be a journal or empty.
#[cfg(unix)]
fn make_private(dir: &Path) -> Result<(), StateError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let io = |source| StateError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(dir).map_err(io)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let user = rustix::process::geteuid().as_raw();
    if meta.uid() == user {
        return std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io);
    }
    if mode & 0o022 != 0 {
        return Err(StateError::NotPrivate {
            path: dir.to_path_buf(),
            mode: mode & 0o777,
            owner: meta.uid(),
            user,
        });
    }
    // Another user's directory that only they can write to (root reading a user's journal, say)
    // is theirs to keep as it is.
    Ok(())
}

#[cfg(not(unix))]
fn make_private(_dir: &Path) -> Result<(), StateError> {
    Ok(())
}

/// Writes the marker of this format, durably (a new file, then renamed over the old one).
fn write_marker(marker_path: &Path) -> Result<(), StateError> {
    let marker = Marker {
        format: "trailhub-journal".into(),
        version: FORMAT_VERSION,
    };
    let text = serde_json::to_string_pretty(&marker).expect("marker should serialize");
    let tmp = marker_path.with_file_name(MARKER_TMP);
    write_private_file(&tmp, text.as_bytes())?;
    std::fs::rename(&tmp, marker_path).map_err(|source| StateError::Io {
        path: marker_path.to_path_buf(),
        source,
    })
}

/// Checks the marker and returns the format version it names.
fn check_marker(marker_path: &Path, dir: &Path) -> Result<u32, StateError> {
    let bad = |reason: String| StateError::BadMarker {
        path: marker_path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(marker_path).map_err(|e| bad(e.to_string()))?;
    let marker: Marker = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if marker.format != "trailhub-journal" {
        return Err(bad(format!("format is `{}`", marker.format)));
    }
    if marker.version > FORMAT_VERSION {
        return Err(StateError::NewerFormat {
            path: dir.to_path_buf(),
            found: marker.version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(marker.version)
}

/// Inserts every encoded write into its tree (0 runs, 1 nodes, 2 events, 3 the shared
/// journal's bookkeeping; a journal that is not shared has no write for 3).
fn insert_all(
    encoded: &[(u8, Vec<u8>, Vec<u8>)],
    trees: [&sled::transaction::TransactionalTree; 4],
) -> Result<(), ConflictableTransactionError<()>> {
    for (tree, key, value) in encoded {
        trees[usize::from((*tree).min(3))].insert(key.as_slice(), value.as_slice())?;
    }
    Ok(())
}

fn run_prefix(run: &str) -> Vec<u8> {
    let mut key = run.as_bytes().to_vec();
    key.push(0);
    key
}

fn node_key(run: &str, node: &NodeId) -> Vec<u8> {
    let mut key = run_prefix(run);
    key.extend_from_slice(node.as_str().as_bytes());
    key
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("journal records should always serialize")
}

/// A run record, with the sequence of a run journaled before runs carried one taken from its id.
fn decode_run(key: &str, bytes: &[u8]) -> Result<RunRecord, StateError> {
    let mut run: RunRecord = decode(key, bytes)?;
    if run.sequence == 0 {
        run.sequence = RunRecord::sequence_in_id(&run.id).unwrap_or(0);
    }
    Ok(run)
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(bytes).map_err(|source| StateError::Decode {
        key: key.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::NodeState;

    fn new_run(definition: &str) -> NewRun<'_> {
        NewRun {
            workflow: "onboard",
            definition,
            source: None,
            options: serde_json::Value::Null,
            graph: None,
        }
    }

    fn id(text: &str) -> NodeId {
        text.parse().expect("a node id")
    }

    #[test]
    fn writes_survive_reopening_and_events_keep_their_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run_id;
        {
            let journal = Journal::open(dir.path()).expect("open");
            let run = journal.create_run(new_run("region = \"x\"")).expect("run");
            run_id = run.id.clone();
            let mut record = NodeRecord::pending();
            record.state = NodeState::Done;
            record.undo = Some(serde_json::json!({"status": null}));
            journal
                .commit(vec![
                    Write::Node {
                        run: run_id.clone(),
                        node: id("a/versioning"),
                        record,
                    },
                    Write::Event {
                        run: run_id.clone(),
                        node: Some(id("a/versioning")),
                        kind: EventKind::NodeDone { changed: true },
                    },
                ])
                .expect("commit");
        }
        let journal = Journal::open(dir.path()).expect("reopen");
        assert_eq!(journal.resolve_run(None).expect("latest").id, run_id);
        let node = journal
            .node(&run_id, &id("a/versioning"))
            .expect("read")
            .expect("node");
        assert_eq!(node.state, NodeState::Done);
        let events = journal.events(&run_id).expect("events");
        assert_eq!(events.len(), 2);
        assert!(matches!(events[0].kind, EventKind::RunCreated));
        assert!(events[0].seq < events[1].seq);
        assert!(matches!(
            journal.run("nope"),
            Err(StateError::UnknownRun { .. })
        ));
    }

    #[test]
    fn the_latest_run_is_the_highest_sequence_even_when_the_clock_went_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(dir.path()).expect("open");
        let first = journal.create_run(new_run("first")).expect("run");
        let mut second = journal.create_run(new_run("second")).expect("run");
        assert_eq!((first.sequence, second.sequence), (1, 2));
        // The clock was set back an hour between the two applies.
        second.created_at_ms = first.created_at_ms - 3_600_000;
        second.updated_at_ms = second.created_at_ms;
        journal
            .commit(vec![Write::Run(second.clone())])
            .expect("commit");
        let ids = |runs: Vec<RunRecord>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(
            ids(journal.runs().expect("runs")),
            [first.id.clone(), second.id.clone()]
        );
        assert_eq!(journal.resolve_run(None).expect("latest").id, second.id);
        let third = journal.create_run(new_run("third")).expect("run");
        assert_eq!(third.sequence, 3);
        assert!(third.id.ends_with("-0003"), "{}", third.id);
    }

    #[test]
    fn a_run_journaled_without_a_sequence_takes_it_from_its_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(dir.path()).expect("open");
        // Written before runs carried a sequence, with a clock that went back: -0002 is older
        // by its creation time, and still the latest.
        for (id, created) in [
            ("20261128T101500Z-0001", 2_000),
            ("20261128T091500Z-0002", 1_000),
        ] {
            let record = serde_json::json!({
                "id": id, "created_at_ms": created, "updated_at_ms": created,
                "workflow": "onboard", "definition": "", "status": "succeeded",
            });
            journal
                .runs
                .insert(id.as_bytes(), encode(&record))
                .expect("insert");
        }
        assert_eq!(
            journal.run("20261128T091500Z-0002").expect("run").sequence,
            2
        );
        let latest = journal.resolve_run(None).expect("latest");
        assert_eq!(latest.id, "20261128T091500Z-0002");
        assert_eq!(journal.create_run(new_run("")).expect("run").sequence, 3);
    }

    #[test]
    fn a_newer_format_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Journal::open(dir.path()).expect("open"));
        let marker = dir.path().join(MARKER);
        let newer = r#"{"format":"trailhub-journal","version":99}"#;
        std::fs::write(&marker, newer).expect("write");
        let err = Journal::open(dir.path()).expect_err("refused");
        assert!(matches!(err, StateError::NewerFormat { found: 99, .. }));
        assert!(err.to_string().contains("upgrade trailhub"));
        assert_eq!(std::fs::read_to_string(&marker).expect("read"), newer);
    }

    struct Upgrade;

    impl Migration for Upgrade {
        fn graph(&self, run: &RunRecord) -> Result<GraphRecord, String> {
            Ok(GraphRecord {
                nodes: vec![id(&format!("{}/step", run.definition))],
                edges: Vec::new(),
            })
        }
        fn node(
            &self,
            from: u32,
            _run: &RunRecord,
            _id: &NodeId,
            record: &mut NodeRecord,
        ) -> Result<(), String> {
            assert_eq!(from, 1);
            record.outputs = Some(serde_json::json!({ "migrated": true }));
            Ok(())
        }
    }

    /// Writes a journal as format 1 did: no graph on the run, marker version 1.
    fn format_one(dir: &Path) -> String {
        let journal = Journal::open(dir).expect("open");
        let run = journal.create_run(new_run("g")).expect("run");
        let mut record = NodeRecord::pending();
        record.state = NodeState::Done;
        journal
            .commit(vec![Write::Node {
                run: run.id.clone(),
                node: id("g/step"),
                record,
            }])
            .expect("commit");
        drop(journal);
        std::fs::write(
            dir.join(MARKER),
            r#"{"format":"trailhub-journal","version":1}"#,
        )
        .expect("marker");
        run.id
    }

    #[test]
    fn an_older_format_is_migrated_when_opened_with_its_migration_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = format_one(dir.path());
        let err = Journal::open(dir.path()).expect_err("refused without a migration");
        assert!(
            matches!(err, StateError::OlderFormat { found: 1, .. }),
            "{err}"
        );
        let journal = Journal::open_migrating(dir.path(), false, &Upgrade).expect("migrated");
        let graph = journal
            .run(&run)
            .expect("run")
            .graph
            .expect("graph filled in");
        assert_eq!(graph.nodes, vec![id("g/step")]);
        let node = journal
            .node(&run, &id("g/step"))
            .expect("read")
            .expect("node");
        assert_eq!(node.outputs, Some(serde_json::json!({ "migrated": true })));
        drop(journal);
        let marker = std::fs::read_to_string(dir.path().join(MARKER)).expect("marker");
        assert!(
            marker.contains(&format!("\"version\": {FORMAT_VERSION}")),
            "{marker}"
        );
        drop(Journal::open(dir.path()).expect("the current format opens without a migration"));
    }

    struct Refuse;

    impl Migration for Refuse {
        fn graph(&self, _run: &RunRecord) -> Result<GraphRecord, String> {
            Err("no workflow `g`".into())
        }
        fn node(
            &self,
            _: u32,
            _: &RunRecord,
            _: &NodeId,
            _: &mut NodeRecord,
        ) -> Result<(), String> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_migration_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = format_one(dir.path());
        let err = Journal::open_migrating(dir.path(), false, &Refuse).expect_err("fails");
        assert!(err.to_string().contains("no workflow `g`"), "{err}");
        let journal = Journal::open_migrating(dir.path(), false, &Upgrade).expect("migrated");
        assert!(journal.run(&run).expect("run").graph.is_some());
    }

    #[test]
    fn a_directory_with_only_a_lock_file_is_taken_as_new() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("lock"), "12345").expect("lock left by a dead process");
        drop(Journal::open(dir.path()).expect("opened"));
        assert!(dir.path().join(MARKER).exists());
    }

    #[test]
    fn a_first_opening_killed_while_writing_its_marker_is_taken_as_new() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("lock"), "12345").expect("lock left by a dead process");
        std::fs::write(dir.path().join(MARKER_TMP), "{\"form").expect("a torn marker");
        let journal = Journal::open_existing(dir.path());
        assert!(
            matches!(journal, Err(StateError::Missing { .. })),
            "not a journal yet, and not someone else's files: {journal:?}"
        );
        let journal = Journal::open(dir.path()).expect("opened as new");
        journal.create_run(new_run("")).expect("run");
        drop(journal);
        assert!(!dir.path().join(MARKER_TMP).exists());
        assert_eq!(
            Journal::open(dir.path())
                .expect("reopened")
                .runs()
                .expect("runs")
                .len(),
            1
        );
    }

    /// A journal with two runs, a node record and events, in `dir`; its state directory.
    fn a_journal(dir: &Path) -> PathBuf {
        let state = dir.join("state");
        let journal = Journal::open(&state).expect("open");
        for definition in ["one", "two"] {
            let run = journal.create_run(new_run(definition)).expect("run");
            let mut record = NodeRecord::pending();
            record.state = NodeState::Done;
            journal
                .commit(vec![
                    Write::Node {
                        run: run.id.clone(),
                        node: id("a/versioning"),
                        record,
                    },
                    Write::Event {
                        run: run.id.clone(),
                        node: Some(id("a/versioning")),
                        kind: EventKind::NodeDone { changed: true },
                    },
                ])
                .expect("commit");
        }
        state
    }

    /// Reads everything a command reads: every run, its nodes and its events.
    fn read_all(state: &Path) -> Result<usize, StateError> {
        let journal = Journal::open_existing(state)?;
        let mut count = 0;
        for run in journal.runs()? {
            count += journal.nodes(&run.id)?.len() + journal.events(&run.id)?.len() + 1;
        }
        Ok(count)
    }

    #[test]
    fn a_record_that_does_not_decode_is_an_error_naming_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = a_journal(dir.path());
        let journal = Journal::open_existing(&state).expect("open");
        let run = journal.runs().expect("runs").remove(0);
        let key = node_key(&run.id, &id("a/versioning"));
        let mut bytes = journal
            .nodes
            .get(&key)
            .expect("get")
            .expect("node")
            .to_vec();
        bytes[0] ^= 0xff;
        journal.nodes.insert(key, bytes).expect("insert");
        let (event_key, _) = journal
            .events
            .scan_prefix(run_prefix(&run.id))
            .next()
            .expect("an event")
            .expect("read");
        journal
            .events
            .insert(event_key, &b"{\"seq\": 1"[..])
            .expect("insert");
        let mut run_bytes = journal
            .runs
            .get(run.id.as_bytes())
            .expect("get")
            .expect("run")
            .to_vec();
        let last = run_bytes.len() - 1;
        run_bytes[last] = b'!';
        journal
            .runs
            .insert(run.id.as_bytes(), run_bytes)
            .expect("insert");
        journal
            .nodes
            .insert(run_prefix(&run.id), &b"{}"[..])
            .expect("insert");
        drop(journal);

        let journal = Journal::open_existing(&state).expect("open");
        let err = journal.runs().expect_err("a run record does not decode");
        assert!(
            matches!(err, StateError::Decode { ref key, .. } if *key == run.id),
            "{err}"
        );
        assert!(matches!(
            journal.nodes(&run.id),
            Err(StateError::BadKey { .. })
        ));
        let err = journal
            .node(&run.id, &id("a/versioning"))
            .expect_err("does not decode");
        assert!(
            err.to_string()
                .starts_with("corrupt journal record a/versioning"),
            "{err}"
        );
        assert!(matches!(
            journal.events(&run.id),
            Err(StateError::Decode { .. })
        ));
    }

    /// sled checks its configuration, its log messages and its snapshot against CRCs: a flipped
    /// byte in one is found when the database is opened and reported as damage; one elsewhere
    /// (padding) changes nothing. Either is fine; a panic, or a record silently lost, is not.
    #[test]
    fn flipped_bytes_in_the_database_files_are_an_error_or_harmless_never_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let original = a_journal(dir.path());
        let expected = read_all(&original).expect("intact");
        let mut corrupt = 0;
        let mut panics = Vec::new();
        for entry in std::fs::read_dir(original.join(DB_DIR))
            .expect("read_dir")
            .flatten()
        {
            let name = entry.file_name();
            if entry.path().is_dir() {
                continue;
            }
            let bytes = std::fs::read(entry.path()).expect("read");
            // sled preallocates its segments: only the bytes up to the last one written matter.
            let used = bytes
                .iter()
                .rposition(|b| *b != 0)
                .map_or(0, |last| last + 1);
            for offset in (0..used).step_by(used / 120 + 1) {
                let copy = dir.path().join("flipped");
                copy_dir(&original, &copy);
                let mut flipped = bytes.clone();
                flipped[offset] ^= 0x5a;
                std::fs::write(copy.join(DB_DIR).join(&name), &flipped).expect("write");
                match std::panic::catch_unwind(|| read_all(&copy)) {
                    Ok(Ok(count)) => assert_eq!(count, expected, "{name:?} {offset}"),
                    Ok(Err(StateError::Corrupt { .. })) => corrupt += 1,
                    Ok(Err(e)) => panic!("{name:?} {offset}: not reported as damage: {e}"),
                    Err(_) => panics.push((name.clone(), offset)),
                }
                std::fs::remove_dir_all(&copy).expect("clean up");
            }
        }
        assert!(panics.is_empty(), "sled panicked at {panics:?}");
        assert!(corrupt > 100, "{corrupt} flipped bytes were noticed");
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
            let target = to.join(entry.file_name());
            if entry.path().is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).expect("copy");
            }
        }
    }

    #[test]
    fn a_directory_of_other_files_is_not_a_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("notes.txt"), "hello").expect("write");
        let err = Journal::open(dir.path()).expect_err("refused");
        assert!(matches!(err, StateError::NotAJournal { .. }), "{err}");
        let missing = dir.path().join("missing");
        assert!(matches!(
            Journal::open_existing(&missing),
            Err(StateError::Missing { .. })
        ));
        assert!(
            !missing.exists(),
            "opening an existing journal creates nothing"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_state_directory_others_can_write_is_made_private_or_refused() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        let chmod = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod")
        };
        let dir = tempfile::tempdir().expect("tempdir");

        let empty = dir.path().join("made-by-mkdir");
        std::fs::create_dir(&empty).expect("mkdir");
        chmod(&empty, 0o777);
        drop(Journal::open(&empty).expect("an empty directory of this user's"));
        assert_eq!(mode(&empty), 0o700);

        chmod(&empty, 0o775);
        drop(Journal::open_existing(&empty).expect("a journal of this user's"));
        assert_eq!(
            mode(&empty),
            0o700,
            "every opening checks, a reading one too"
        );

        let other_files = dir.path().join("someone-elses");
        std::fs::create_dir(&other_files).expect("mkdir");
        std::fs::write(other_files.join("notes.txt"), "hello").expect("write");
        chmod(&other_files, 0o775);
        assert!(matches!(
            Journal::open(&other_files),
            Err(StateError::NotAJournal { .. })
        ));
        assert_eq!(
            mode(&other_files),
            0o775,
            "a directory that is not ours is left alone"
        );

        if rustix::process::geteuid().is_root() {
            let nobody = 65534;
            let shared = dir.path().join("another-users");
            std::fs::create_dir(&shared).expect("mkdir");
            std::os::unix::fs::chown(&shared, Some(nobody), Some(nobody)).expect("chown");
            chmod(&shared, 0o777);
            let err = Journal::open(&shared).expect_err("refused");
            assert!(
                matches!(
                    err,
                    StateError::NotPrivate {
                        mode: 0o777,
                        owner: 65534,
                        ..
                    }
                ),
                "{err}"
            );
            assert!(err.to_string().contains("cannot make it private"), "{err}");
            assert_eq!(mode(&shared), 0o777, "refused, and left as it was");
            assert!(
                is_empty_dir(&shared).expect("read"),
                "nothing was written in it"
            );
            chmod(&shared, 0o755);
            drop(Journal::open(&shared).expect("another user's, that only they can write"));
            assert_eq!(mode(&shared), 0o755);
        }
    }

    #[cfg(unix)]
    #[test]
    fn the_state_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        {
            let journal = Journal::open(&state).expect("open");
            journal.create_run(new_run("")).expect("run");
        }
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        let mut stack = vec![state];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
                let p = entry.path();
                if p.is_dir() {
                    assert_eq!(mode(&p), 0o700, "{}", p.display());
                    stack.push(p);
                } else {
                    assert_eq!(mode(&p), 0o600, "{}", p.display());
                }
            }
        }
    }
}
