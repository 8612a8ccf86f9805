//! The shared state's own commands: `force-unlock` and `state push`, and the archive locks as
//! `status` shows them.

use crate::cli::{Cli, OutputFormat};
use crate::errors::{CliError, Outcome};
use crate::output::json_line;
use crate::print::outln;
use crate::state::{Location, State, connect};
use serde_json::json;
use trailhub_state::Journal;
use trailhub_state::remote::{force_unlock as break_lock, list_locks};
use trailhub_workflows::JournalMigration;

/// `trailhub force-unlock LOCK_ID`.
pub async fn force_unlock(cli: &Cli, id: &str) -> Result<Outcome, CliError> {
    let Location::Shared(url) = Location::parse(&cli.state)? else {
        return Err(CliError::Usage(
            "force-unlock breaks an archive lock of a shared state: pass --state s3://BUCKET/PREFIX (a local state directory's lock goes when its holder exits, even killed)".into(),
        ));
    };
    let store = connect(cli, &url).await;
    store.check(None).await?;
    let info = break_lock(&store, id).await?;
    match cli.output {
        OutputFormat::Json => json_line(&json!({ "type": "force-unlock", "lock": info })),
        OutputFormat::Text => {
            outln!("Broke {}.", info.describe());
            if let Some(run) = &info.run {
                outln!(
                    "If its holder is really gone, `trailhub resume {run}` continues its run (its archive writes are taken again under a new lock)."
                );
            }
        }
    }
    Ok(Outcome::Ok)
}

/// `trailhub state push --to s3://…`: the local state's runs into an empty shared state.
pub async fn push(cli: &Cli, to: &str) -> Result<Outcome, CliError> {
    let Location::Local(dir) = Location::parse(&cli.state)? else {
        return Err(CliError::Usage(
            "state push copies a local state directory: pass it with --state DIR".into(),
        ));
    };
    let Location::Shared(url) = Location::parse(to)? else {
        return Err(CliError::Usage(format!(
            "--to {to}: push to a shared state, s3://BUCKET/PREFIX"
        )));
    };
    let journal = Journal::open_migrating(&dir, false, &JournalMigration::default())?;
    let store = connect(cli, &url).await;
    store.check(None).await?;
    let runs = journal.push_to(&store).await?;
    match cli.output {
        OutputFormat::Json => json_line(&json!({
            "type": "state-pushed", "from": dir.display().to_string(), "to": url.display(), "runs": runs,
        })),
        OutputFormat::Text => outln!(
            "Pushed {runs} run{} from {} to {}. Use --state {} (or TRAILHUB_STATE) from now on; {} is left as it was: remove it once you no longer need it.",
            if runs == 1 { "" } else { "s" },
            dir.display(),
            url.display(),
            url.display(),
            dir.display()
        ),
    }
    Ok(Outcome::Ok)
}

/// The archive locks held in a shared state, for `status`.
pub async fn print_locks(cli: &Cli, state: &State) -> Result<(), CliError> {
    let Some(shared) = &state.shared else {
        return Ok(());
    };
    let locks = list_locks(&*shared.store).await?;
    if cli.output == OutputFormat::Json {
        for lock in &locks {
            json_line(&json!({
                "type": "lock", "lock": lock.info, "stale": lock.info.is_stale(),
                "age_ms": lock.info.age().as_millis() as u64,
                "heartbeat_age_ms": lock.info.silent_for().as_millis() as u64,
            }));
        }
        return Ok(());
    }
    for lock in &locks {
        outln!("\nArchive {}", lock.info.describe());
        if lock.info.is_stale() {
            outln!(
                "  if its holder is gone: `trailhub force-unlock {}`",
                lock.info.id
            );
        }
    }
    Ok(())
}
