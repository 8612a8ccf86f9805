//! One task per step of the article (DESIGN.md, "The DAG of one run"), and what they share.
//!
//! Every task is idempotent: it probes live state, and acts only where it differs from the
//! article's. Before its first mutation it journals the state it found (write-ahead undo record).
//! Each step's module owns its resource: how it is read, the one comparison with what the
//! inventory implies (used by plan, apply and verify alike), and its typed undo record and
//! outputs.

pub(crate) mod archive_bucket;
pub(crate) mod bucket_check;
mod context;
pub(crate) mod grant;
mod identity;
pub(crate) mod replication;
pub(crate) mod role_stack;
mod verify;
pub(crate) mod versioning;

pub use archive_bucket::{ArchiveBucket, ArchiveBucketUndo, BucketOutput};
pub use bucket_check::{BucketCheck, BucketCheckOutput};
pub use grant::{Grant, GrantOutput, GrantUndo, PolicyWriter};
pub use identity::{Identity, IdentityOutput};
pub use replication::{Replication, ReplicationOutput, ReplicationUndo};
pub use role_stack::{RoleStack, RoleStackOutput, RoleStackUndo};
pub use verify::{Verify, VerifyInputs, VerifyOutput};
pub use versioning::{Versioning, VersioningOutput, VersioningUndo};

pub use context::StepContext;
pub(crate) use context::{call, mutate};
pub(crate) use grant::read_policy as archive_policy;
pub(crate) use versioning::versioning_status as bucket_versioning;
