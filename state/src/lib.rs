//! trailhub's journal: every run, node transition and event, durably on sled; nothing else
//! in trailhub names sled.
//!
//! The journal lives in one state directory, owned by one process at a time (a lock file), with
//! a versioned format marker beside the sled database. Records are JSON values in sled trees;
//! they never hold credentials. A journal may be the working copy of a shared one kept in a
//! remote store ([`remote`]), with a lock per archive.

mod errors;
mod ids;
mod journal;
mod lock;
mod records;
pub mod remote;

pub use errors::StateError;
pub use ids::{GraphRecord, NodeId};
pub use journal::{FORMAT_VERSION, Journal, Migration, NewRun, Write};
pub use records::{
    ErrorRecord, Event, EventKind, NodeRecord, NodeState, RunRecord, RunStatus, now_ms,
};
