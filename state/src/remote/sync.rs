//! A working copy and its shared journal: attaching one to the other, creating runs (their
//! sequence allocated by a create-only write), bringing the working copy up to date, pushing a
//! local journal into an empty store.

use super::mirror::{Mirror, decode_u64};
use super::segment::{RUNS, SEGMENT_FORMAT, Segment, SharedWrite, parse_segment_key, segment_key};
use super::store::{RemoteError, RemoteStore, retrying};
use crate::StateError;
use crate::journal::{Journal, NewRun, Shared};
use crate::records::RunRecord;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

impl Journal {
    /// Makes this journal the working copy of the shared journal in `store`: every commit is
    /// also written there (at most `period` later, [`Journal::commit_shared`]'s at once).
    /// Must be called inside a Tokio runtime.
    pub fn share(
        &mut self,
        store: Arc<dyn RemoteStore>,
        period: Duration,
    ) -> Result<(), StateError> {
        let applied = self.db().open_tree("shared")?;
        let mirror = Mirror::start(store, period, applied.clone());
        self.shared = Some(Shared { mirror, applied });
        Ok(())
    }

    /// The shared store, when this journal is a working copy.
    pub fn store(&self) -> Option<&Arc<dyn RemoteStore>> {
        self.shared.as_ref().map(|s| s.mirror.store())
    }

    /// Segments written to the shared store so far by this process (run creations excluded).
    pub fn segments_written(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |s| s.mirror.segments_written())
    }

    /// Writes what is still queued for the shared store and stops its writer. An error names
    /// what could not be written (it is in this working copy only; the next command that
    /// commits to the same run writes it).
    pub async fn close(&self) -> Result<(), StateError> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        shared.mirror.close().await.map_err(|source| {
            remote_error(
                shared.mirror.store().as_ref(),
                "writing the last changes",
                source,
            )
        })
    }

    /// Creates a run, as [`Journal::create_run`]; in a working copy, its sequence is allocated
    /// in the shared journal with a create-only write of its first segment (its record and
    /// graph), so that no other machine creates the same run, and the run is in the store
    /// before this returns.
    pub async fn new_run(&self, new: NewRun<'_>) -> Result<RunRecord, StateError> {
        let Some(shared) = &self.shared else {
            return self.create_run(new);
        };
        let store = shared.mirror.store().clone();
        let mut floor = self.runs()?.last().map_or(0, |r| r.sequence);
        for _ in 0..32 {
            let seq = floor + 1;
            let (run, writes) = self.make_run(&new, seq)?;
            let body = encode_segment(&writes);
            let key = segment_key(seq, 0);
            match retrying(|| store.put_if_absent(&key, body.clone())).await {
                Ok(_) => {
                    self.store_local(&writes, Some((seq, 0)))?;
                    shared.mirror.known_segments(seq, 0);
                    return Ok(run);
                }
                Err(RemoteError::PreconditionFailed { .. }) => {
                    // Another machine made that run: go past the highest one there is.
                    let keys = retrying(|| store.list(RUNS))
                        .await
                        .map_err(|e| remote_error(store.as_ref(), "listing the runs", e))?;
                    let highest = keys
                        .iter()
                        .filter_map(|k| parse_segment_key(k))
                        .map(|(s, _)| s)
                        .max()
                        .unwrap_or(0);
                    floor = floor.max(highest).max(seq);
                }
                Err(e) => return Err(remote_error(store.as_ref(), "creating the run", e)),
            }
        }
        Err(remote_error(
            store.as_ref(),
            "creating the run",
            RemoteError::Failed {
                message: "every run sequence tried was taken by another machine meanwhile".into(),
                code: None,
                retryable: true,
            },
        ))
    }

    /// Brings this working copy up to date with the shared journal: every segment it does not
    /// have yet is read and replayed, run by run, in order. How many were replayed.
    pub async fn pull(&self) -> Result<usize, StateError> {
        let Some(shared) = &self.shared else {
            return Ok(0);
        };
        let store = shared.mirror.store().clone();
        let keys = retrying(|| store.list(RUNS))
            .await
            .map_err(|e| remote_error(store.as_ref(), "listing the runs", e))?;
        let mut runs: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for key in &keys {
            if let Some((seq, segment)) = parse_segment_key(key) {
                runs.entry(seq).or_default().push(segment);
            }
        }
        let mut wanted = Vec::new();
        for (seq, segments) in &runs {
            let have = shared
                .applied
                .get(seq.to_be_bytes())?
                .and_then(|v| decode_u64(&v));
            if let Some(last) = segments.iter().max() {
                shared.mirror.known_segments(*seq, *last);
            }
            wanted.extend(
                segments
                    .iter()
                    .filter(|s| have.is_none_or(|h| **s > h))
                    .map(|s| (*seq, *s)),
            );
        }
        let fetched = fetch_all(&store, &wanted).await?;
        let mut replayed = 0;
        for ((seq, segment), body) in fetched {
            let key = segment_key(seq, segment);
            let Some(body) = body else { continue };
            let parsed: Segment =
                serde_json::from_slice(&body).map_err(|source| StateError::Decode {
                    key: format!("{}/{key}", store.location()),
                    source,
                })?;
            if parsed.format > SEGMENT_FORMAT {
                return Err(StateError::NewerSegment {
                    key: format!("{}/{key}", store.location()),
                    found: parsed.format,
                    supported: SEGMENT_FORMAT,
                });
            }
            let mut writes = parsed.writes;
            for write in &mut writes {
                if let SharedWrite::Event { event, .. } = write {
                    event.seq = self.next_event_seq()?;
                }
            }
            self.store_local(&writes, Some((seq, segment)))?;
            replayed += 1;
        }
        Ok(replayed)
    }

    /// Writes every run of this (local) journal into the empty shared journal in `store`, one
    /// segment per run, each create-only, keeping the runs' ids and sequences. Refused when the
    /// store already holds runs. How many runs were pushed.
    pub async fn push_to(&self, store: &dyn RemoteStore) -> Result<usize, StateError> {
        let existing = retrying(|| store.list(RUNS))
            .await
            .map_err(|e| remote_error(store, "listing the runs", e))?;
        if existing.iter().any(|k| parse_segment_key(k).is_some()) {
            return Err(StateError::SharedNotEmpty {
                location: store.location(),
            });
        }
        let runs = self.runs()?;
        for run in &runs {
            let mut writes = vec![SharedWrite::Run {
                record: run.clone(),
            }];
            for (node, record) in self.nodes(&run.id)? {
                writes.push(SharedWrite::Node {
                    run: run.id.clone(),
                    node,
                    record,
                });
            }
            for event in self.events(&run.id)? {
                writes.push(SharedWrite::Event {
                    run: run.id.clone(),
                    event,
                });
            }
            let key = segment_key(run.sequence, 0);
            let body = encode_segment(&writes);
            retrying(|| store.put_if_absent(&key, body.clone()))
                .await
                .map_err(|e| remote_error(store, &format!("pushing run {}", run.id), e))?;
        }
        Ok(runs.len())
    }
}

fn encode_segment(writes: &[SharedWrite]) -> Vec<u8> {
    serde_json::to_vec(&Segment {
        format: SEGMENT_FORMAT,
        writes: writes.to_vec(),
    })
    .expect("a segment should always serialize")
}

/// Reads the segments `wanted`, a few at once; in key order (`None`: gone meanwhile).
async fn fetch_all(
    store: &Arc<dyn RemoteStore>,
    wanted: &[(u64, u64)],
) -> Result<Vec<((u64, u64), Option<Vec<u8>>)>, StateError> {
    let limit = Arc::new(tokio::sync::Semaphore::new(16));
    let mut set = tokio::task::JoinSet::new();
    for &(seq, segment) in wanted {
        let store = store.clone();
        let limit = limit.clone();
        set.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let key = segment_key(seq, segment);
            let got = retrying(|| store.get(&key)).await;
            ((seq, segment), got)
        });
    }
    let mut out = Vec::with_capacity(wanted.len());
    while let Some(joined) = set.join_next().await {
        let (at, got) = joined.map_err(|e| StateError::SharedTask {
            reason: e.to_string(),
        })?;
        let got = got.map_err(|e| remote_error(store.as_ref(), "reading the runs", e))?;
        out.push((at, got.map(|(body, _)| body)));
    }
    out.sort_by_key(|(at, _)| *at);
    Ok(out)
}

fn remote_error(store: &dyn RemoteStore, what: &str, source: RemoteError) -> StateError {
    StateError::Remote {
        location: store.location(),
        what: what.to_string(),
        source,
    }
}
