//! Every error the binary expects, and its exit code, in one place.
//!
//! Exit codes: 0 all done; 1 some steps failed (the rest finished), or something could not be
//! read; 2 bad input (inventory, arguments, state directory or bucket, a held archive lock),
//! reported before any AWS request (a held lock: before the archive's policies are written);
//! 3 drift found by `verify`.

use trailhub_engine::EngineError;
use trailhub_state::StateError;
use trailhub_state::remote::LockError;
use trailhub_steps::state_store::StateBucketError;
use trailhub_workflows::InventoryError;

/// An error that ends the command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The inventory is unusable.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// The state directory or journal is unusable.
    #[error(transparent)]
    State(#[from] StateError),
    /// The engine refused or the graph is invalid.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The AWS config files could not be read (`init`).
    #[error(transparent)]
    Profiles(#[from] trailhub_steps::profiles::ProfilesError),
    /// No inventory could be drafted from the profiles (`init`).
    #[error(transparent)]
    Init(#[from] trailhub_workflows::init::InitError),
    /// The shared state's bucket cannot hold state.
    #[error(transparent)]
    StateBucket(#[from] StateBucketError),
    /// The archive lock could not be taken, kept or broken.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A run stopped at the archive's policies, locked by another process.
    #[error("{0}")]
    ArchiveLocked(String),
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// A tool or file outside trailhub failed.
    #[error("{0}")]
    Environment(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Inventory(_)
            | CliError::Usage(_)
            | CliError::Profiles(_)
            | CliError::Init(_) => 2,
            CliError::StateBucket(StateBucketError::Unreadable { .. }) => 1,
            CliError::StateBucket(_) | CliError::ArchiveLocked(_) => 2,
            CliError::Lock(LockError::Held { .. } | LockError::NotFound { .. }) => 2,
            CliError::Lock(_) => 1,
            CliError::State(e) => state_code(e),
            CliError::Engine(EngineError::Journal(e)) => state_code(e),
            CliError::Engine(EngineError::Invalid(_) | EngineError::Refused(_)) => 2,
            CliError::Environment(_) => 1,
        }
    }
}

fn state_code(e: &StateError) -> u8 {
    match e {
        StateError::Db(_)
        | StateError::Decode { .. }
        | StateError::BadKey { .. }
        | StateError::Remote { .. }
        | StateError::SharedTask { .. }
        | StateError::Io { .. } => 1,
        _ => 2,
    }
}

/// How a command that ran to its end went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything as asked.
    Ok,
    /// Some steps failed, were blocked or were interrupted; or something could not be read.
    Failed,
    /// `verify` found drift.
    Drift,
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Ok => 0,
            Outcome::Failed => 1,
            Outcome::Drift => 3,
        }
    }
}
