//! The shared journal: a working copy's runs kept in a remote store (S3) that any machine with
//! access can read, resume and roll back, and the archive lock that serializes policy writes
//! across processes.
//!
//! This crate defines what it needs of the store ([`RemoteStore`]: create-only and
//! compare-and-swap writes, reads, listing, conditional deletes) and never names an SDK; the
//! binary hands it an implementation.
//!
//! - [`store`]: the trait and its errors (412 and 409 told apart by code, never by message).
//! - [`segment`]: the objects' layout and format.
//! - [`mirror`]: the writer of a working copy's commits.
//! - [`sync`]: creating runs, pulling, pushing a local journal.
//! - [`lock`]: the archive lock and the keeper a process holds it through.

pub mod lock;
pub(crate) mod mirror;
pub(crate) mod segment;
pub mod store;
mod sync;

pub use lock::{
    DEFAULT_HEARTBEAT, DEFAULT_LINGER, FoundLock, Hold, Holder, LockError, LockInfo, LockKeeper,
    force_unlock, list_locks, lock_key,
};
pub use mirror::{DEFAULT_PERIOD, Receipt};
pub use segment::SEGMENT_FORMAT;
pub use store::{ETag, RemoteError, RemoteStore};

#[cfg(test)]
mod tests;
