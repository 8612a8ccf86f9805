//! The command line: global flags and subcommands (DESIGN.md, "The CLI"), with examples in help.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Gathers every account's CloudTrail logs into one log-archive account, without AWS
/// Organizations, by S3 cross-account replication, as a durable, resumable workflow.
#[derive(Debug, Parser)]
#[command(name = "trailhub", version, about, long_about = None, after_help = EXAMPLES)]
pub struct Cli {
    /// Where the journal of runs is: a local state directory, or a shared journal in S3
    /// (s3://BUCKET/PREFIX, optionally ?region=R&profile=P) that a team and its CI share, with
    /// a working copy in the user's cache directory (README, "Team use").
    #[arg(
        long,
        global = true,
        env = "TRAILHUB_STATE",
        default_value = ".trailhub",
        value_name = "DIR|s3://BUCKET/PREFIX"
    )]
    pub state: String,
    /// With a shared state, how long to wait for another process's archive lock before giving
    /// up (exit 2, showing the lock); 0 fails at once.
    #[arg(long, global = true, default_value = "0s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub lock_timeout: std::time::Duration,
    /// Send every AWS request to this endpoint (e.g. a local emulator); S3 then uses path-style
    /// addressing.
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Output format of reports.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// More logging (-v: info, -vv: debug with every AWS call); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors and the final result.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

const EXAMPLES: &str = "Examples:
  trailhub plan -c inventory.toml            what apply would do, changing nothing
  trailhub apply -c inventory.toml           onboard every account of the inventory
  trailhub status                            per account and step, of the latest run
  trailhub resume                            continue the latest run after fixing a failure
  trailhub rollback --account 222222222222   undo one account's enrollment, across runs
  trailhub verify -c inventory.toml          detect drift from the article's configuration";

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Tables and sentences for people.
    Text,
    /// One JSON object per line, with stable field names.
    Json,
}

/// Graph formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// One line per node.
    Text,
    /// Graphviz DOT.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
    /// SVG, drawn by Graphviz `dot` (which must be installed).
    Svg,
}

/// `trailhub state …`.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Copy a local state directory's runs (--state DIR) into an empty shared state in S3.
    #[command(
        after_help = "Example:\n  trailhub --state .trailhub state push --to s3://team-state/prod\n  then use --state s3://team-state/prod (or TRAILHUB_STATE) from now on"
    )]
    Push {
        /// The shared state: s3://BUCKET/PREFIX (an empty prefix of a versioned bucket).
        #[arg(long, value_name = "s3://BUCKET/PREFIX")]
        to: String,
    },
}

/// The inventory file.
#[derive(Debug, Args)]
pub struct InventoryArg {
    /// The inventory file (TOML).
    #[arg(short = 'c', long = "config", value_name = "INVENTORY")]
    pub config: PathBuf,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Dry run: probe live state read-only and show what apply would do per account and step.
    #[command(after_help = "Example:\n  trailhub plan -c inventory.toml")]
    Plan {
        #[command(flatten)]
        inventory: InventoryArg,
        /// Only these source accounts (repeatable).
        #[arg(long = "account", value_name = "ID")]
        accounts: Vec<String>,
        /// List every account in full (a fleet's plan shows identical accounts once).
        #[arg(long)]
        all: bool,
    },
    /// Print the workflow's DAG; with --run, nodes carry their journaled state.
    #[command(
        after_help = "Examples:\n  trailhub graph -c inventory.toml --format mermaid\n  trailhub graph --run 20261128T101500Z-0001 --format svg > run.svg"
    )]
    Graph {
        /// The inventory file (not needed with --run: the run's own inventory is used).
        #[arg(
            short = 'c',
            long = "config",
            value_name = "INVENTORY",
            required_unless_present = "run"
        )]
        config: Option<PathBuf>,
        /// Color nodes by this run's journaled state.
        #[arg(long, value_name = "ID")]
        run: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
        format: GraphFormat,
    },
    /// Start a new run that onboards the inventory's accounts; prints the run's id.
    #[command(
        after_help = "Examples:\n  trailhub apply -c inventory.toml\n  trailhub apply -c inventory.toml --account 222222222222 --concurrency 8"
    )]
    Apply {
        #[command(flatten)]
        inventory: InventoryArg,
        /// Node attempts in flight at most.
        #[arg(long, default_value_t = crate::DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..=1024))]
        concurrency: u16,
        /// Only these source accounts (repeatable); the archive steps always run.
        #[arg(long = "account", value_name = "ID")]
        accounts: Vec<String>,
        /// List every account in the summary (a fleet's lists only the accounts not done).
        #[arg(long)]
        all: bool,
    },
    /// Copy to the archive the logs that live replication never copied (written before the
    /// account was onboarded; with --include-failed, those whose replication failed): one S3
    /// Batch Replication job per source, journaled like any run.
    #[command(
        after_help = "Examples:\n  trailhub backfill -c inventory.toml\n  trailhub backfill -c inventory.toml --account 222222222222 --include-failed --yes --wait"
    )]
    Backfill {
        #[command(flatten)]
        inventory: InventoryArg,
        /// Only these source accounts (repeatable).
        #[arg(long = "account", value_name = "ID")]
        accounts: Vec<String>,
        /// Also replicate objects whose replication failed (status FAILED).
        #[arg(long)]
        include_failed: bool,
        /// Start the jobs at once; without it each job waits for a confirmation (S3 Batch
        /// Operations' own), which `status` shows how to give.
        #[arg(long)]
        yes: bool,
        /// Wait until each job has finished (or waits for its confirmation), showing progress.
        #[arg(long)]
        wait: bool,
        /// Node attempts in flight at most.
        #[arg(long, default_value_t = crate::DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..=1024))]
        concurrency: u16,
        /// List every account in the summary (a fleet's lists only the accounts not done).
        #[arg(long)]
        all: bool,
    },
    /// Continue a run (default: the latest) from its journal; finished steps are not run again.
    #[command(after_help = "Examples:\n  trailhub resume\n  trailhub resume 20261128T101500Z-0001")]
    Resume {
        /// The run (default: the latest).
        run: Option<String>,
        /// Node attempts in flight at most (default: the run's own).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
        concurrency: Option<u16>,
        /// List every account in the summary (a fleet's lists only the accounts not done).
        #[arg(long)]
        all: bool,
    },
    /// Undo journaled effects in reverse dependency order (log objects are never deleted): an
    /// account's enrollment across every run (--account without a run), or one run's changes.
    #[command(
        long_about = "Undo journaled effects in reverse dependency order; log objects are never deleted.\n\n\
With --account and no run, undo those accounts' enrollment across every run that touched them, \
newest run first, back to the state found before the first of them (the archive's own steps are \
not part of it).\n\n\
With a run (or none: the latest run), undo that run's changes, limited by --account and --to. \
A node that a later run changed again or relies on is not undone under it: the rollback is refused \
(exit 2, nothing changed) naming the later runs, unless --force.",
        after_help = "Examples:\n  trailhub rollback --account 222222222222                  undo the account across every run\n  trailhub rollback --account 222222222222 --to role-stack  only what came after its stack\n  trailhub rollback                                         the latest run\n  trailhub rollback 20261128T101500Z-0001                   one run, refused if a later run built on it\n  trailhub rollback 20261128T101500Z-0001 --force           that run anyway, over the later runs"
    )]
    Rollback {
        /// The run (default: the latest; with --account and no run: every run of the accounts).
        run: Option<String>,
        /// Only these accounts (repeatable); `archive` names the archive's own steps (with a run).
        #[arg(long = "account", value_name = "ID")]
        accounts: Vec<String>,
        /// Only the steps after this one (e.g. role-stack).
        #[arg(long = "to", value_name = "STEP")]
        to: Option<String>,
        /// Undo the run's changes even where a later run changed them again or relies on them
        /// (the later runs' journals then describe resources that are no longer so).
        #[arg(long)]
        force: bool,
        /// Node rollbacks in flight at most.
        #[arg(long, default_value_t = crate::DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..=1024))]
        concurrency: u16,
        /// List every account in the summary (a fleet's lists only the accounts not done).
        #[arg(long)]
        all: bool,
    },
    /// Per account and step: state, attempts, last error and what to do, times. A fleet's
    /// status gives the counts, the failures grouped by cause, and the accounts not done.
    #[command(
        after_help = "Examples:\n  trailhub status\n  trailhub status --all            every account and step\n  trailhub status --output json"
    )]
    Status {
        /// The run (default: the latest).
        run: Option<String>,
        /// Every account and step, also of a fleet.
        #[arg(long)]
        all: bool,
    },
    /// List the runs of the state directory.
    Runs,
    /// A run's event log: every attempt and every mutating AWS call, in order, with times.
    #[command(after_help = "Example:\n  trailhub history 20261128T101500Z-0001")]
    History {
        /// The run (default: the latest).
        run: Option<String>,
    },
    /// Audit live state against the inventory (drift); exit 3 on drift.
    #[command(
        after_help = "Examples:\n  trailhub verify -c inventory.toml\n  trailhub verify -c inventory.toml --canary --timeout 20m"
    )]
    Verify {
        #[command(flatten)]
        inventory: InventoryArg,
        /// Also write a canary object in each source bucket and wait until it is replicated.
        #[arg(long)]
        canary: bool,
        /// How long the canary may take (RTC promises 15 minutes).
        #[arg(long, default_value = "20m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// Only these source accounts (repeatable).
        #[arg(long = "account", value_name = "ID")]
        accounts: Vec<String>,
    },
    /// Write one self-contained HTML report of a run: the graph, a timeline of every attempt,
    /// and each account's result and errors.
    #[command(
        after_help = "Examples:\n  trailhub report -o report.html\n  trailhub report 20261128T101500Z-0001 -o run.html"
    )]
    Report {
        /// The run (default: the latest).
        run: Option<String>,
        /// Where to write the report.
        #[arg(
            short = 'o',
            long = "out",
            value_name = "FILE",
            default_value = "trailhub-report.html"
        )]
        out: std::path::PathBuf,
    },
    /// Write an inventory from the AWS config file's profiles: one source per account that an
    /// SSO or assume-role profile reaches, through that profile. Makes no AWS request.
    #[command(
        after_help = "Examples:\n  trailhub init --from-aws-config --archive 111111111111\n  trailhub init --from-aws-config --match 'AdministratorAccess$' -o fleet.toml\n  AWS_CONFIG_FILE=./sso-config trailhub init --from-aws-config -o -"
    )]
    Init {
        /// Read the AWS config file (`AWS_CONFIG_FILE`, default ~/.aws/config) and the shared
        /// credentials file, with the AWS SDK's profile parser.
        #[arg(long, required = true)]
        from_aws_config: bool,
        /// When several profiles reach one account, prefer the one whose name matches this
        /// regular expression (e.g. the permission set you onboard with).
        #[arg(long = "match", value_name = "REGEX")]
        prefer: Option<String>,
        /// The log-archive account (default: the one account that profiles named like
        /// *archive* reach).
        #[arg(long, value_name = "ACCOUNT")]
        archive: Option<String>,
        /// The inventory's region (default: the archive profile's, else the one most source
        /// profiles set).
        #[arg(long, value_name = "REGION")]
        region: Option<String>,
        /// Where to write the inventory (`-`: stdout).
        #[arg(
            short = 'o',
            long = "out",
            value_name = "FILE",
            default_value = "inventory.toml"
        )]
        out: PathBuf,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Break an archive lock of a shared state (--state s3://…) whose holder is gone: a
    /// delete conditioned on the lock as read, so that a lock taken again meanwhile stays.
    #[command(
        after_help = "Example:\n  trailhub --state s3://team-state/prod force-unlock 18c2f9a1b20-3f1a\n\nThe id is in the message of the command that found the lock, and in `trailhub status`."
    )]
    ForceUnlock {
        /// The lock's id.
        lock_id: String,
    },
    /// Manage the state itself.
    State {
        /// What to do.
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  trailhub completions bash > /etc/bash_completion.d/trailhub"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}
