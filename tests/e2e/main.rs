//! End-to-end tests: the `trailhub` binary run as a user runs it, against the patched local
//! emulator (moto's server, started per test on a free 127.0.0.1 port), with live state read
//! back independently through the AWS SDK and moto's request recorder.
//!
//! The emulator must be installed first: `scripts/setup-emulator` (scripts/test does it).

mod apply;
mod dryrun;
mod recovery;
mod rollback;
mod support;
