//! The archive lock as tasks take it: around each read-modify-write of the archive's bucket
//! policy and key policy, when the state is shared (`--state s3://…`); nothing at all with a
//! local state, whose directory lock already makes one process the only writer of its runs.
//!
//! Taking it may wait (up to `--lock-timeout`) for another process; the wait is noted in the
//! node's history. [`ArchiveHold::fence`] comes right before each archive write: once a
//! renewal found the lock no longer this process's, no further archive write is made.

use super::StepContext;
use trailhub_engine::{ApplyCtx, TaskError};
use trailhub_state::remote::{Hold, LockError};

/// A writer's share of the archive lock (none with a local state).
#[derive(Debug)]
pub(crate) struct ArchiveHold(Option<Hold>);

impl ArchiveHold {
    /// Which taking of the lock this is (0 with a local state): a write made under another
    /// epoch may have been followed by another process's.
    pub(crate) fn epoch(&self) -> u64 {
        self.0.as_ref().map_or(0, Hold::epoch)
    }

    /// Fails when the lock is no longer this process's; call right before an archive write.
    pub(crate) async fn fence(&self) -> Result<(), TaskError> {
        match &self.0 {
            Some(hold) => hold.fence().await.map_err(lock_error),
            None => Ok(()),
        }
    }
}

/// Takes (or shares) the archive lock for a write of the archive's policies.
pub(crate) async fn hold<U>(
    step: &StepContext,
    ctx: &ApplyCtx<U>,
) -> Result<ArchiveHold, TaskError> {
    let Some(keeper) = &step.archive_lock else {
        return Ok(ArchiveHold(None));
    };
    let caller = step
        .accounts
        .get(&step.setting.archive.account_id)
        .await?
        .caller_arn
        .clone();
    let hold = keeper.hold(Some(&caller)).await.map_err(lock_error)?;
    if let Some((waited, other)) = &hold.waited {
        ctx.note(format!(
            "waited {:.1}s for the archive lock, held by another process: {}",
            waited.as_secs_f64(),
            other.describe()
        ));
    }
    Ok(ArchiveHold(Some(hold)))
}

fn lock_error(e: LockError) -> TaskError {
    let message = e.to_string();
    match e {
        LockError::Held { info, .. } => TaskError::fatal(message)
            .with_code("ArchiveLocked")
            .with_hint(format!(
                "wait for it (--lock-timeout DURATION) and `trailhub resume`; if its holder ({}@{}, pid {}) is gone, `trailhub force-unlock {}` first",
                info.user, info.host, info.pid, info.id
            )),
        LockError::Lost { .. } => TaskError::fatal(message)
            .with_code("LockLost")
            .with_hint("`trailhub resume` continues once the other run has finished"),
        _ => TaskError::retryable(message).with_code("LockUnavailable"),
    }
}
