//! `trailhub init --from-aws-config`: writes an inventory from the AWS config file's profiles
//! (read by the SDK's own parser), one source per account a profile reaches, and says which
//! profiles it left out and why. Makes no AWS request.

use crate::cli::{Cli, OutputFormat};
use crate::errors::{CliError, Outcome};
use crate::output::json_line;
use crate::print::{errln, out, outln};
use serde_json::json;
use std::path::Path;
use trailhub_workflows::init::{InitRequest, draft};

/// What `trailhub init` was asked.
pub struct InitArgs<'a> {
    /// `--match`: which profile to prefer when several reach one account.
    pub prefer: Option<&'a str>,
    /// `--archive`.
    pub archive: Option<&'a str>,
    /// `--region`.
    pub region: Option<&'a str>,
    /// `-o`: the inventory file, `-` for stdout.
    pub out: &'a Path,
    /// `--force`: replace an existing file.
    pub force: bool,
}

/// Where the SDK reads the config file from, as the operator would name it.
fn origin() -> String {
    match std::env::var_os("AWS_CONFIG_FILE") {
        Some(path) => Path::new(&path).display().to_string(),
        None => "~/.aws/config".to_string(),
    }
}

pub async fn init(cli: &Cli, args: &InitArgs<'_>) -> Result<Outcome, CliError> {
    let prefer = match args.prefer {
        Some(pattern) => Some(regex::Regex::new(pattern).map_err(|e| {
            CliError::Usage(format!(
                "--match `{pattern}` is not a regular expression: {e}"
            ))
        })?),
        None => None,
    };
    let to_stdout = args.out == Path::new("-");
    if !to_stdout && !args.force && args.out.exists() {
        return Err(CliError::Usage(format!(
            "{} exists: pass --force to replace it, or -o another file",
            args.out.display()
        )));
    }
    let profiles = trailhub_steps::profiles::load().await?;
    let origin = origin();
    let matches = |name: &str| prefer.as_ref().is_some_and(|re| re.is_match(name));
    let drafted = draft(&InitRequest {
        profiles: &profiles,
        archive: args.archive,
        prefer: &matches,
        region: args.region,
        origin: &origin,
    })?;
    if to_stdout {
        out!("{}", drafted.text);
    } else {
        std::fs::write(args.out, &drafted.text).map_err(|e| {
            CliError::Environment(format!("cannot write {}: {e}", args.out.display()))
        })?;
    }
    let (archive, archive_profile) = &drafted.archive;
    if cli.output == OutputFormat::Json {
        json_line(&json!({
            "type": "init", "out": args.out, "region": drafted.inventory.region,
            "archive": { "account": archive, "profile": archive_profile },
            "sources": drafted.sources.iter().map(|s| json!({ "account": s.account, "profile": s.profile })).collect::<Vec<_>>(),
            "skipped": drafted.skipped.iter().map(|s| json!({ "profile": s.profile, "reason": s.reason })).collect::<Vec<_>>(),
        }));
        return Ok(Outcome::Ok);
    }
    // With the inventory on stdout, what init says goes to stderr.
    let say = |line: String| {
        if to_stdout {
            errln!("{line}");
        } else {
            outln!("{line}");
        }
    };
    let via = archive_profile
        .as_ref()
        .map_or("the standard credential chain".to_string(), |p| {
            format!("profile {p}")
        });
    say(format!(
        "Wrote {}: the archive {archive} (through {via}) and {} source account{}, each through its own profile; region {} (from {}).",
        if to_stdout {
            "the inventory".to_string()
        } else {
            args.out.display().to_string()
        },
        drafted.sources.len(),
        if drafted.sources.len() == 1 { "" } else { "s" },
        drafted.inventory.region,
        drafted.region_from,
    ));
    if !drafted.skipped.is_empty() {
        say(format!(
            "Skipped {} profile{}:",
            drafted.skipped.len(),
            if drafted.skipped.len() == 1 { "" } else { "s" }
        ));
        for s in &drafted.skipped {
            say(format!("  {}: {}", s.profile, s.reason));
        }
    }
    say(if to_stdout {
        "Next: save it, check each source's bucket and trail, then `trailhub plan -c FILE`."
            .to_string()
    } else {
        let file = args.out.display();
        format!(
            "Next: check each source's bucket and trail in {file}, then `trailhub plan -c {file}`."
        )
    });
    Ok(Outcome::Ok)
}
