//! The AWS steps against mocked AWS answers (aws-smithy-mocks), for what the local emulator cannot
//! show: S3 Batch Replication jobs, CloudFormation stacks in progress or rolled back, IAM propagation on a bucket policy,
//! throttling and 5xx answers, access denied, bucket names taken by another account, and how each
//! SDK error is classified.
//!
//! Every test builds the step over mocked clients (`support`), applies it, either on its own
//! (`ApplyCtx::detached`, which keeps the undo records and calls the step reports) or as a
//! one-node run through the engine (`execute`, journaled in a temporary directory), and checks
//! what a user would: the calls made and their order, the outputs, the undo record, the error.

#[path = "mocks/support.rs"]
mod support;

#[path = "mocks/archive_bucket.rs"]
mod archive_bucket;
#[path = "mocks/backfill.rs"]
mod backfill;
#[path = "mocks/canary.rs"]
mod canary;
#[path = "mocks/classify.rs"]
mod classify;
#[path = "mocks/grant.rs"]
mod grant;
#[path = "mocks/lifecycle.rs"]
mod lifecycle;
#[path = "mocks/regions.rs"]
mod regions;
#[path = "mocks/replication.rs"]
mod replication;
#[path = "mocks/retries.rs"]
mod retries;
#[path = "mocks/role_stack.rs"]
mod role_stack;
#[path = "mocks/state_store.rs"]
mod state_store;

#[path = "mocks/verify.rs"]
mod verify;
