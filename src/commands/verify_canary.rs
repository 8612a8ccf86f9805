//! `verify --canary`: placeholder until the canary lands (issue 5); refuses clearly.

use crate::cli::Cli;
use crate::errors::{CliError, Outcome};
use std::time::Duration;
use trailhub_steps::SourceSpec;
use trailhub_steps::tasks::StepContext;

pub async fn run(
    _cli: &Cli,
    _ctx: &StepContext,
    _sources: &[SourceSpec],
    _timeout: Duration,
) -> Result<Outcome, CliError> {
    Err(CliError::Usage("--canary is not available yet".into()))
}
