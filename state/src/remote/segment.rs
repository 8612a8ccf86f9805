//! The shared journal's objects: per run, an append-only series of segments, each one batch of
//! the journal's writes, written create-only.
//!
//! Layout under the store's root:
//! - `runs/<sequence>/<segment>.json` (both zero-padded to 10 digits): segment 0 is the run's
//!   creation (its record, graph included, and its `run-created` event). Creating it is what
//!   allocates the run's sequence: two machines never make the same run, since only one
//!   create-only write of `runs/<sequence>/0000000000.json` succeeds. Later segments hold the
//!   node records, events and run records as the working copy committed them, in order.
//! - `locks/<archive bucket>.json`: the archive's lock ([`super::lock`]).
//!
//! Replaying a run's segments in order into an empty working copy gives its journal: a node
//! record or a run record in a segment replaces the one before; events are appended.

use crate::ids::NodeId;
use crate::records::{Event, NodeRecord, RunRecord};
use serde::{Deserialize, Serialize};

/// The segment format this binary writes.
///
/// Rule (as the journal's [`crate::FORMAT_VERSION`]): a reader accepts this version and older
/// ones; a segment of a newer version is refused, naming its key, rather than misread.
pub const SEGMENT_FORMAT: u32 = 1;

/// One batch of writes as shared.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Segment {
    pub(crate) format: u32,
    pub(crate) writes: Vec<SharedWrite>,
}

/// One write of the journal, resolved: an event carries its time as first journaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub(crate) enum SharedWrite {
    /// A run record, replacing the one before.
    Run {
        /// The record.
        record: RunRecord,
    },
    /// A node record, replacing the one before.
    Node {
        /// The run's id.
        run: String,
        /// The node.
        node: NodeId,
        /// The record.
        record: NodeRecord,
    },
    /// An event, appended to the run's history.
    Event {
        /// The run's id.
        run: String,
        /// The event (its `seq` is renumbered by the working copy that replays it).
        event: Event,
    },
}

impl SharedWrite {
    /// The id of the run the write belongs to.
    pub(crate) fn run(&self) -> &str {
        match self {
            SharedWrite::Run { record } => &record.id,
            SharedWrite::Node { run, .. } | SharedWrite::Event { run, .. } => run,
        }
    }
}

/// Where the runs are.
pub(crate) const RUNS: &str = "runs/";

/// Where the locks are.
pub(crate) const LOCKS: &str = "locks/";

/// The folder of run `sequence`'s segments.
pub(crate) fn run_prefix(sequence: u64) -> String {
    format!("{RUNS}{sequence:010}/")
}

/// The key of segment `segment` of run `sequence`.
pub(crate) fn segment_key(sequence: u64, segment: u64) -> String {
    format!("{RUNS}{sequence:010}/{segment:010}.json")
}

/// The run sequence and segment number a key names, if it is a segment's key.
pub(crate) fn parse_segment_key(key: &str) -> Option<(u64, u64)> {
    let rest = key.strip_prefix(RUNS)?;
    let (sequence, file) = rest.split_once('/')?;
    let segment = file.strip_suffix(".json")?;
    let digits = |s: &str| s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(sequence) || !digits(segment) {
        return None;
    }
    Some((sequence.parse().ok()?, segment.parse().ok()?))
}

/// The sequence a run id ends with; 0 for an id the journal did not make.
pub(crate) fn sequence_of(run: &str) -> u64 {
    RunRecord::sequence_in_id(run).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_keys_round_trip_and_other_keys_are_not_segments() {
        let key = segment_key(7, 12);
        assert_eq!(key, "runs/0000000007/0000000012.json");
        assert_eq!(parse_segment_key(&key), Some((7, 12)));
        assert!(key.starts_with(&run_prefix(7)));
        for other in [
            "locks/archive.json",
            "runs/7/12.json",
            "runs/0000000007/0000000012.txt",
            "runs/000000000x/0000000012.json",
        ] {
            assert_eq!(parse_segment_key(other), None, "{other}");
        }
    }
}
