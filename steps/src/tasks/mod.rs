//! One task per step of the article (DESIGN.md, "The DAG of one run"), and what they share.
//!
//! Every task is idempotent: it probes live state, and acts only where it differs from the
//! article's. Before its first mutation it journals the state it found (write-ahead undo record).

mod archive_bucket;
mod bucket_check;
mod context;
mod grant;
mod identity;
mod replication;
mod role_stack;
mod verify;
mod versioning;

pub use archive_bucket::ArchiveBucket;
pub use bucket_check::BucketCheck;
pub use grant::{Grant, PolicyWriter};
pub use identity::Identity;
pub use replication::Replication;
pub use role_stack::RoleStack;
pub use verify::Verify;
pub use versioning::Versioning;

pub(crate) use archive_bucket::object_lock_enabled as bucket_object_lock;
pub(crate) use bucket_check::trail_bucket as trail_check;
pub use context::StepContext;
pub(crate) use context::{bucket_owned, call};
pub(crate) use grant::read_policy as archive_policy;
pub(crate) use replication::live_replication as bucket_replication;
pub(crate) use versioning::versioning_status as bucket_versioning;
