//! Tests of the engine through its public API, on in-process test tasks whose effects are kept
//! in a shared `World` (or, for the crash test, a file), read back independently of the engine.

// Test helpers unwrap like the tests do: a panic is the failure report (clippy.toml allows
// it in #[test] functions only).
#![allow(clippy::unwrap_used, reason = "in tests a panic is the failure report")]

mod crash;
mod plan;
mod props;
mod render;
mod rollback;
mod scheduler;
mod support;
