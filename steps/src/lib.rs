//! The article's steps as trailhub tasks on the AWS SDK; the only crate that names an AWS SDK.
//!
//! - [`spec`]: the resolved description of the archive and of each source account.
//! - [`clients`]: credentials (standard chain, profile, assume-role), clients per account, and
//!   the identity check every account passes before any mutation.
//! - [`tasks`]: one [`trailhub_engine::Task`] per step of the article.
//! - [`checks`]: reading live state back and comparing it with the specification (the
//!   `S/verify` node and `trailhub verify`).
//! - [`delivery`]: the delivery check: would S3 deliver a log, from the policies already read.
//! - [`evaluate`]: an IAM policy evaluator (AWS's evaluation logic) for the delivery check.
//! - [`policy`]: merging principals into, and out of, the archive bucket policy.
//! - [`rules`]: replication rules that are not trailhub's, refused or kept beside its own.
//! - [`lifecycle_doc`]: lifecycle rules as journaled records, and trailhub's own rule.
//! - [`profiles`]: the AWS config file's profiles and the accounts they reach (`trailhub init`).
//! - [`state_store`]: the shared journal's store on S3 (`--state s3://…`) and its checks.

pub mod bucket_protection;
pub mod canary;
pub mod checks;
pub mod clients;
pub mod delivery;
mod drift;
mod errors;
pub mod evaluate;
pub mod history;
pub mod lifecycle_doc;
pub mod logs;
pub mod migrate;
pub mod policy;
pub mod profiles;
mod replication_doc;
mod retry_history;
pub mod rules;
mod source_keys;
pub mod spec;
pub mod state_store;
pub mod tags;
pub mod tasks;
mod template;

pub use clients::{AccountClients, Accounts, Connector};
pub use errors::classify;
pub use spec::{
    ArchiveSpec, Credentials, ExistingReplication, Lifecycle, PolicyMode, Retention, RetentionMode,
    RetentionPeriod, Setting, SourceSpec, Transition,
};
pub use template::{resolved_inline_policy, role_template, trust_policy};
