//! End-to-end tests: the `trailhub` binary run as a user runs it, against the patched local
//! emulator (moto's server, started per test on a free 127.0.0.1 port), with live state read
//! back independently through the AWS SDK and moto's request recorder.
//!
//! The emulator must be installed first: `scripts/setup-emulator` (scripts/test does it).

// Test helpers unwrap like the tests do: a panic is the failure report (clippy.toml allows
// it in #[test] functions only).
#![allow(clippy::unwrap_used, reason = "in tests a panic is the failure report")]

mod apply;
mod archive_retention;
mod bad_input;
mod corruption;
mod delivery;
mod dryrun;
mod fleet;
mod init;
mod isolation;
mod layouts;
mod migration;
mod operator;
mod ownership;
mod prediction;
mod recovery;
mod reliability;
mod report;
mod rollback;
mod scope;
mod support;
mod team;
mod verify;
