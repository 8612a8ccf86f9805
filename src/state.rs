//! Where the journal is: a local state directory (`--state DIR`), or a shared journal in S3
//! (`--state s3://BUCKET/PREFIX`) with a local working copy in the user's cache directory, one
//! per state URL, and the archive lock. This module wires trailhub-state's shared journal to
//! trailhub-steps' S3 store; nothing else in the binary knows which one it has.

use crate::cli::Cli;
use crate::errors::CliError;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use trailhub_state::Journal;
use trailhub_state::remote::{Holder, LockKeeper, RemoteStore};
use trailhub_steps::Connector;
use trailhub_steps::spec::Credentials;
use trailhub_steps::state_store::S3Store;
use trailhub_workflows::JournalMigration;

/// What `--state` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local state directory.
    Local(PathBuf),
    /// A shared journal in S3.
    Shared(SharedUrl),
}

/// `s3://BUCKET/PREFIX[?region=R&profile=P]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedUrl {
    /// The bucket.
    pub bucket: String,
    /// The prefix, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// The bucket's region (default: the standard chain's, else us-east-1).
    pub region: Option<String>,
    /// The profile whose credentials reach it (default: the standard chain).
    pub profile: Option<String>,
}

impl SharedUrl {
    /// The URL as the operator would write it.
    pub fn display(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

impl Location {
    /// Parses `--state`: an `s3://` URL, else a directory.
    pub fn parse(text: &str) -> Result<Location, CliError> {
        let Some(rest) = text.strip_prefix("s3://") else {
            if text.contains("://") {
                return Err(CliError::Usage(format!(
                    "--state {text}: only a directory or an s3://BUCKET/PREFIX URL can hold the state"
                )));
            }
            return Ok(Location::Local(PathBuf::from(text)));
        };
        let bad = |why: &str| {
            CliError::Usage(format!(
                "--state {text} is not a state URL ({why}); write s3://BUCKET/PREFIX, e.g. s3://my-team-trailhub-state/archive-prod"
            ))
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && bucket.as_bytes()[0].is_ascii_alphanumeric()
            && bucket.as_bytes()[bucket.len() - 1].is_ascii_alphanumeric();
        if !valid_bucket {
            return Err(bad(&format!("`{bucket}` is not an S3 bucket name")));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.contains("//") || prefix.split('/').any(|p| p == "." || p == "..") {
            return Err(bad("the prefix has an empty, `.` or `..` part"));
        }
        let mut url = SharedUrl {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            region: None,
            profile: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("region", r)) if !r.is_empty() => url.region = Some(r.to_string()),
                Some(("profile", p)) if !p.is_empty() => url.profile = Some(p.to_string()),
                _ => {
                    return Err(bad(&format!(
                        "unknown parameter `{pair}` (region=, profile=)"
                    )));
                }
            }
        }
        Ok(Location::Shared(url))
    }
}

/// The journal a command works on, and, for a shared one, its store and the archive lock.
pub struct State {
    /// The journal (a shared journal's local working copy).
    pub journal: Journal,
    /// The shared journal's store.
    pub shared: Option<Shared>,
    keeper: Option<Arc<LockKeeper>>,
    keep_scratch: std::cell::Cell<bool>,
}

impl Drop for State {
    fn drop(&mut self) {
        if let Some(scratch) = self.shared.as_ref().and_then(|s| s.scratch.as_ref())
            && !self.keep_scratch.get()
        {
            let _ = std::fs::remove_dir_all(scratch);
        }
    }
}

/// A shared journal.
pub struct Shared {
    /// The store.
    pub store: Arc<S3Store>,
    /// The URL.
    pub url: SharedUrl,
    /// A working copy of this command's own, removed when it ends (the usual one was busy).
    scratch: Option<PathBuf>,
}

/// How a command opens the journal.
#[derive(Debug, Clone, Copy)]
pub struct Open<'a> {
    /// Create it if there is none (a command that creates runs).
    pub create: bool,
    /// Bring a working copy up to date first (every command that reads existing runs).
    pub pull: bool,
    /// The archive bucket, when the command knows it (refused as the state bucket).
    pub archive: Option<&'a str>,
}

/// How long a shared state bucket's check holds: it is checked again after that.
const CHECK_VALID: Duration = Duration::from_secs(3600);

/// How long after they were committed transitions reach a shared journal, at most.
const PERIOD: Duration = trailhub_state::remote::DEFAULT_PERIOD;

impl State {
    /// Opens the journal `--state` names, as `how` says.
    pub async fn open(cli: &Cli, how: Open<'_>) -> Result<State, CliError> {
        match Location::parse(&cli.state)? {
            Location::Local(dir) => {
                let migration = JournalMigration::default();
                Ok(State {
                    journal: Journal::open_migrating(&dir, how.create, &migration)?,
                    shared: None,
                    keeper: None,
                    keep_scratch: Default::default(),
                })
            }
            Location::Shared(url) => open_shared(cli, url, how).await,
        }
    }

    /// Where the journal is, for messages.
    pub fn describe(&self) -> String {
        match &self.shared {
            Some(shared) => format!(
                "{} (working copy {})",
                shared.url.display(),
                self.journal.dir().display()
            ),
            None => self.journal.dir().display().to_string(),
        }
    }

    /// The archive lock keeper of `archive` for `command`, made once (none for a local state).
    pub fn keeper(&mut self, cli: &Cli, archive: &str, command: &str) -> Option<Arc<LockKeeper>> {
        let shared = self.shared.as_ref()?;
        if let Some(k) = &self.keeper {
            return Some(k.clone());
        }
        let holder = Holder::this_process(command, None, env!("CARGO_PKG_VERSION"));
        let store: Arc<dyn RemoteStore> = shared.store.clone();
        let mut keeper = LockKeeper::new(store, archive, holder, cli.lock_timeout);
        if let Some(ms) = env_ms("TRAILHUB_LOCK_HEARTBEAT_MS") {
            keeper = keeper.with_heartbeat(Duration::from_millis(ms));
        }
        if let Some(ms) = env_ms("TRAILHUB_LOCK_LINGER_MS") {
            keeper = keeper.with_linger(Duration::from_millis(ms));
        }
        let keeper = Arc::new(keeper);
        self.keeper = Some(keeper.clone());
        Some(keeper)
    }

    /// Releases the archive lock if held, and writes what is still queued for the shared
    /// journal.
    pub async fn close(&self) -> Result<(), CliError> {
        if let Some(keeper) = &self.keeper {
            keeper.close().await;
        }
        let closed = self.journal.close().await;
        if closed.is_err() {
            // What could not be shared is only in it: keep it for the next command.
            self.keep_scratch.set(true);
        }
        Ok(closed?)
    }
}

fn env_ms(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The S3 store of `url`, with the standard chain's credentials (or the URL's profile).
pub async fn connect(cli: &Cli, url: &SharedUrl) -> S3Store {
    let region = url
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .unwrap_or_else(|| "us-east-1".into());
    let connector = Connector::new(&region, cli.endpoint_url.clone());
    let credentials = match &url.profile {
        Some(p) => Credentials::Profile(p.clone()),
        None => Credentials::Default,
    };
    let config = connector.config(&credentials).await;
    let client = S3Store::client(&config, cli.endpoint_url.is_some());
    S3Store::new(client, &url.bucket, &url.prefix)
}

/// Where a state URL's working copy and its bookkeeping live: one folder per URL in the user's
/// cache directory (`$XDG_CACHE_HOME/trailhub/s3/BUCKET/PREFIX`, `~/.cache/…` by default).
fn cache_of(url: &SharedUrl) -> Result<PathBuf, CliError> {
    let base = cache_dir().ok_or_else(|| {
        CliError::Usage(
            "no cache directory to keep the shared state's working copy in: set HOME or XDG_CACHE_HOME".into(),
        )
    })?;
    let prefix = if url.prefix.is_empty() {
        "_".to_string()
    } else {
        url.prefix.replace('/', "%2F")
    };
    Ok(base
        .join("trailhub")
        .join("s3")
        .join(&url.bucket)
        .join(prefix))
}

/// The user's cache directory, as the XDG Base Directory Specification defines it
/// (`$XDG_CACHE_HOME` when it is an absolute path, else `$HOME/.cache`; macOS:
/// `~/Library/Caches`). Written here rather than taken from the `dirs` crate, whose
/// dependency `option-ext` is MPL-2.0, a license deny.toml does not allow.
fn cache_dir() -> Option<PathBuf> {
    let home = || {
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
    };
    if cfg!(target_os = "macos") {
        return home().map(|h| h.join("Library").join("Caches"));
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| home().map(|h| h.join(".cache")))
}

async fn open_shared(cli: &Cli, url: SharedUrl, how: Open<'_>) -> Result<State, CliError> {
    let cache = cache_of(&url)?;
    let store = Arc::new(connect(cli, &url).await);
    let stamp = cache.join("checked");
    if how.archive == Some(url.bucket.as_str()) || !recently_checked(&stamp) {
        store.check(how.archive).await?;
    }
    let dir = cache.join("working-copy");
    let migration = JournalMigration::default();
    // The working copy always exists once the bucket passed: a new machine starts with an
    // empty one and pulls. One held by another command of this user (two CI jobs on one
    // runner, a `status` beside an `apply`) is not waited for: this command gets a working
    // copy of its own, pulled fresh and removed when it ends.
    let (mut journal, scratch) = match Journal::open_migrating(&dir, true, &migration) {
        Ok(journal) => (journal, None),
        Err(trailhub_state::StateError::Locked { .. }) => {
            let own = cache.join(format!("working-copy-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&own);
            (Journal::open_migrating(&own, true, &migration)?, Some(own))
        }
        Err(e) => return Err(e.into()),
    };
    let pull = how.pull || scratch.is_some();
    let _ = std::fs::write(&stamp, trailhub_state::now_ms().to_string());
    let dyn_store: Arc<dyn RemoteStore> = store.clone();
    journal.share(dyn_store, PERIOD)?;
    if pull {
        journal.pull().await?;
    }
    Ok(State {
        journal,
        shared: Some(Shared {
            store,
            url,
            scratch,
        }),
        keeper: None,
        keep_scratch: Default::default(),
    })
}

fn recently_checked(stamp: &Path) -> bool {
    std::fs::read_to_string(stamp)
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .is_some_and(|at| {
            trailhub_state::now_ms().saturating_sub(at) < CHECK_VALID.as_millis() as u64
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_urls_parse_or_say_what_is_wrong() {
        assert_eq!(
            Location::parse(".trailhub").expect("dir"),
            Location::Local(".trailhub".into())
        );
        let Location::Shared(url) =
            Location::parse("s3://team-state/prod/archive/?region=eu-west-1").expect("url")
        else {
            panic!("shared");
        };
        assert_eq!(
            (
                url.bucket.as_str(),
                url.prefix.as_str(),
                url.region.as_deref()
            ),
            ("team-state", "prod/archive", Some("eu-west-1"))
        );
        for bad in [
            "s3://",
            "s3://UPPER/x",
            "s3://a/x",
            "s3://ok-bucket/a//b",
            "s3://ok-bucket/../b",
            "s3://ok-bucket/x?color=red",
            "gs://bucket/x",
        ] {
            let err = Location::parse(bad).expect_err(bad);
            assert!(matches!(err, CliError::Usage(_)), "{bad}: {err}");
        }
    }
}
