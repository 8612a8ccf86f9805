//! Errors of the journal: each names the state directory and what the operator can do.

use std::path::PathBuf;

/// What can go wrong opening, reading or writing a journal.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another live process holds the state directory's lock.
    #[error(
        "state directory {path} is locked by another trailhub process (pid {pid}); wait for it to \
         finish, or pass another --state directory"
    )]
    Locked {
        /// The state directory.
        path: PathBuf,
        /// The pid written by the lock holder, as found in the lock file.
        pid: String,
    },
    /// The directory holds files but no trailhub marker.
    #[error(
        "{path} is not a trailhub state directory (it holds other files and no trailhub.json); \
         pass --state with a new or empty directory"
    )]
    NotAJournal {
        /// The directory.
        path: PathBuf,
    },
    /// Group or others can write to the state directory, and it is another user's, so trailhub
    /// cannot make it private.
    #[error(
        "state directory {path} can be written by its group or others (mode {mode:03o}) and \
         belongs to uid {owner}, not to this user (uid {user}), so trailhub cannot make it \
         private: anyone who can write there could change what trailhub undoes; pass --state \
         with a directory of your own"
    )]
    NotPrivate {
        /// The state directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// The uid that owns it.
        owner: u32,
        /// This process's effective uid.
        user: u32,
    },
    /// The marker exists but cannot be understood.
    #[error(
        "{path} has an unreadable trailhub.json marker ({reason}); it is not a journal this trailhub can open"
    )]
    BadMarker {
        /// The marker file.
        path: PathBuf,
        /// Why it could not be read.
        reason: String,
    },
    /// Written by a newer trailhub: this one refuses to write it.
    #[error(
        "journal at {path} has format version {found}, newer than this trailhub writes ({supported}); \
         upgrade trailhub to use it (nothing was changed)"
    )]
    NewerFormat {
        /// The state directory.
        path: PathBuf,
        /// The version found in the marker.
        found: u32,
        /// The version this binary writes.
        supported: u32,
    },
    /// Written by an older trailhub, and opened without the migration that would update it.
    #[error(
        "journal at {path} has format version {found}, older than this trailhub writes; open it \
         with the trailhub command, which migrates it (nothing was changed)"
    )]
    OlderFormat {
        /// The state directory.
        path: PathBuf,
        /// The version found in the marker.
        found: u32,
    },
    /// An older journal could not be migrated; it was left as it was.
    #[error(
        "journal at {path} (format version {from}) could not be migrated to this trailhub's \
         format: {reason}; nothing was changed: use the trailhub that wrote it"
    )]
    Migration {
        /// The state directory.
        path: PathBuf,
        /// The version it was written in.
        from: u32,
        /// What could not be migrated.
        reason: String,
    },
    /// A key of the journal is not what this trailhub writes.
    #[error("corrupt journal key {key}: {reason}")]
    BadKey {
        /// The key, printable.
        key: String,
        /// Why it cannot be read.
        reason: String,
    },
    /// The state directory does not exist and was not to be created.
    #[error("no trailhub journal at {path}; run `trailhub apply` first, or pass --state")]
    Missing {
        /// The state directory.
        path: PathBuf,
    },
    /// A filesystem error on the state directory.
    #[error("error accessing state directory {path}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// sled refused to open the database.
    #[error("error opening journal at {path}")]
    Open {
        /// The database path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: sled::Error,
    },
    /// sled found its files damaged when opening them (a checksum that does not match).
    #[error(
        "journal at {path} is damaged: its files fail sled's checksums (a disk error, or a file \
         changed by hand), and trailhub cannot read it; restore the state directory from a copy, \
         or pass a new --state: `apply` then finds in AWS what is already done, but what this \
         journal kept for rollback is lost"
    )]
    Corrupt {
        /// The state directory.
        path: PathBuf,
    },
    /// A read or write of the database failed.
    #[error("journal read or write failed")]
    Db(#[from] sled::Error),
    /// A record could not be decoded.
    #[error("corrupt journal record {key}")]
    Decode {
        /// The record's key, printable.
        key: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// No run with this id.
    #[error("no run `{id}` in this journal; `trailhub runs` lists the runs")]
    UnknownRun {
        /// The id asked for.
        id: String,
    },
    /// The shared journal's store could not be read or written.
    #[error("error {what} in the shared journal at {location}: {source}")]
    Remote {
        /// The store (`s3://bucket/prefix`).
        location: String,
        /// What was being done.
        what: String,
        /// The store's error.
        #[source]
        source: crate::remote::RemoteError,
    },
    /// A segment of the shared journal was written by a newer trailhub.
    #[error(
        "{key} has segment format {found}, newer than this trailhub reads ({supported}); upgrade trailhub to use this state (nothing was changed)"
    )]
    NewerSegment {
        /// The segment's location.
        key: String,
        /// Its format.
        found: u32,
        /// What this binary reads.
        supported: u32,
    },
    /// `state push` into a store that already holds runs.
    #[error(
        "{location} already holds runs; push a local state only into an empty state prefix (pick another PREFIX)"
    )]
    SharedNotEmpty {
        /// The store.
        location: String,
    },
    /// A background read of the shared journal stopped.
    #[error("reading the shared journal stopped: {reason}")]
    SharedTask {
        /// Why.
        reason: String,
    },
    /// The journal holds no run at all.
    #[error("this journal holds no run yet; start one with `trailhub apply -c INVENTORY`")]
    NoRuns,
}
