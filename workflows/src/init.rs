//! `trailhub init --from-aws-config`: an inventory drafted from the AWS config file's profiles.
//! One source per account that a profile reaches, through that profile; the archive named by
//! the operator; every profile left out is said, with why. The draft is validated as any
//! inventory is before it is handed back, so what is written always loads.

use crate::inventory::{Inventory, parse};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use trailhub_steps::profiles::{ProfileAccount, Reach};

/// What the operator asked of the draft.
pub struct InitRequest<'a> {
    /// The profiles, as read from the AWS config files.
    pub profiles: &'a [ProfileAccount],
    /// The archive account (`--archive`); without it, the one account that profiles named
    /// like `*archive*` reach.
    pub archive: Option<&'a str>,
    /// Which profile to prefer when several reach one account (`--match`).
    pub prefer: &'a dyn Fn(&str) -> bool,
    /// The inventory's region (`--region`); without it, the archive profile's, else the one
    /// most of the chosen profiles set.
    pub region: Option<&'a str>,
    /// Where the profiles were read from, for the file's first comment.
    pub origin: &'a str,
}

/// A profile left out of the inventory, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The profile.
    pub profile: String,
    /// Why it was left out.
    pub reason: String,
}

/// A source of the draft: an account and the profile that reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// The account.
    pub account: String,
    /// The profile.
    pub profile: String,
}

/// The drafted inventory.
#[derive(Debug)]
pub struct Draft {
    /// The file's text.
    pub text: String,
    /// The text, validated.
    pub inventory: Inventory,
    /// The archive account and the profile that reaches it, if one does.
    pub archive: (String, Option<String>),
    /// The sources, in account order.
    pub sources: Vec<Chosen>,
    /// Every profile left out.
    pub skipped: Vec<Skipped>,
    /// Where the region came from.
    pub region_from: String,
}

/// Why no inventory could be drafted.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// No profile names an account.
    #[error("no profile in {origin} names an account (sso_account_id or role_arn)")]
    NoAccounts {
        /// Where the profiles were read from.
        origin: String,
    },
    /// The archive account is not known.
    #[error(
        "which account is the log archive? pass --archive ACCOUNT (the profiles reach {candidates})"
    )]
    NoArchive {
        /// The accounts the profiles reach.
        candidates: String,
    },
    /// `--archive` is not an account id.
    #[error("--archive `{0}` is not a 12-digit account id")]
    BadArchive(String),
    /// No region is known.
    #[error("no profile of the chosen accounts sets a region: pass --region REGION")]
    NoRegion,
    /// Nothing is left to onboard.
    #[error("every account the profiles reach is the archive: no source account to onboard")]
    NoSources,
    /// The draft did not validate (a profile name the inventory refuses, say).
    #[error("the drafted inventory does not validate")]
    Invalid(#[source] crate::InventoryError),
}

/// Drafts the inventory of `request`.
pub fn draft(request: &InitRequest<'_>) -> Result<Draft, InitError> {
    let mut skipped = Vec::new();
    let mut by_account: BTreeMap<&str, Vec<&ProfileAccount>> = BTreeMap::new();
    for p in request.profiles {
        match (&p.account, &p.problem) {
            (Some(account), _) => by_account.entry(account).or_default().push(p),
            (None, Some(problem)) => skipped.push(Skipped {
                profile: p.name.clone(),
                reason: problem.clone(),
            }),
            (None, None) => skipped.push(Skipped {
                profile: p.name.clone(),
                reason: "names no account: it has neither sso_account_id nor role_arn".into(),
            }),
        }
    }
    if by_account.is_empty() {
        return Err(InitError::NoAccounts {
            origin: request.origin.to_string(),
        });
    }
    let archive = archive_account(request, &by_account)?;
    let mut sources = Vec::new();
    let mut archive_profile = None;
    for (account, profiles) in &by_account {
        let chosen = choose(profiles, request.prefer);
        let is_archive = *account == archive.0;
        for p in profiles.iter().filter(|p| p.name != chosen.name) {
            let why = if (request.prefer)(&chosen.name) && !(request.prefer)(&p.name) {
                ", which matches --match"
            } else {
                ""
            };
            let reason = if is_archive {
                format!(
                    "the archive account {account}, whose steps use profile {}{why}",
                    chosen.name
                )
            } else {
                format!(
                    "a duplicate: account {account} is reached through profile {}{why}",
                    chosen.name
                )
            };
            skipped.push(Skipped {
                profile: p.name.clone(),
                reason,
            });
        }
        if is_archive {
            archive_profile = Some(chosen);
        } else {
            sources.push((*account, chosen));
        }
    }
    if sources.is_empty() {
        return Err(InitError::NoSources);
    }
    let (region, region_from) = region(request, archive_profile, &sources)?;
    skipped.sort_by(|a, b| a.profile.cmp(&b.profile));
    let text = render(
        request,
        &archive.0,
        archive_profile,
        &sources,
        &region,
        &region_from,
    );
    let inventory = parse(&text, "the drafted inventory").map_err(InitError::Invalid)?;
    Ok(Draft {
        text,
        inventory,
        archive: (archive.0.clone(), archive_profile.map(|p| p.name.clone())),
        sources: sources
            .iter()
            .map(|(a, p)| Chosen {
                account: a.to_string(),
                profile: p.name.clone(),
            })
            .collect(),
        skipped,
        region_from,
    })
}

/// The archive account: `--archive`, or the one account reached by profiles named `*archive*`.
fn archive_account(
    request: &InitRequest<'_>,
    by_account: &BTreeMap<&str, Vec<&ProfileAccount>>,
) -> Result<(String, String), InitError> {
    if let Some(id) = request.archive {
        if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InitError::BadArchive(id.to_string()));
        }
        return Ok((id.to_string(), "--archive".into()));
    }
    let named: Vec<&str> = by_account
        .iter()
        .filter(|(_, ps)| ps.iter().any(|p| p.name.to_lowercase().contains("archive")))
        .map(|(a, _)| *a)
        .collect();
    match named.as_slice() {
        [one] => Ok((one.to_string(), "a profile named *archive*".into())),
        _ => Err(InitError::NoArchive {
            candidates: by_account.keys().copied().collect::<Vec<_>>().join(", "),
        }),
    }
}

/// Of the profiles reaching one account: the first that `prefer` takes, else the first by name.
fn choose<'a>(
    profiles: &[&'a ProfileAccount],
    prefer: &dyn Fn(&str) -> bool,
) -> &'a ProfileAccount {
    profiles
        .iter()
        .find(|p| prefer(&p.name))
        .or_else(|| profiles.first())
        .copied()
        .expect("an account is listed with at least one profile")
}

fn region(
    request: &InitRequest<'_>,
    archive: Option<&ProfileAccount>,
    sources: &[(&str, &ProfileAccount)],
) -> Result<(String, String), InitError> {
    if let Some(r) = request.region {
        return Ok((r.to_string(), "--region".into()));
    }
    if let Some(r) = archive.and_then(|p| p.region.as_deref()) {
        return Ok((r.to_string(), "the archive's profile".into()));
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, p) in sources {
        if let Some(r) = p.region.as_deref() {
            *counts.entry(r).or_default() += 1;
        }
    }
    let best = counts
        .iter()
        .max_by_key(|(r, n)| (**n, std::cmp::Reverse(**r)));
    match best {
        Some((r, n)) => Ok((
            r.to_string(),
            format!("{n} of the {} source profiles", sources.len()),
        )),
        None => Err(InitError::NoRegion),
    }
}

/// How a profile reaches its account, as a comment.
fn reach(p: &ProfileAccount) -> String {
    match &p.reach {
        Reach::Sso { role: Some(role) } => format!("SSO, permission set {role}"),
        Reach::Sso { role: None } => "SSO".into(),
        Reach::AssumeRole {
            role_arn,
            source_profile: Some(from),
        } => format!("assumes {role_arn} from profile {from}"),
        Reach::AssumeRole { role_arn, .. } => format!("assumes {role_arn}"),
        Reach::Unknown => String::new(),
    }
}

/// A TOML basic string.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn render(
    request: &InitRequest<'_>,
    archive: &str,
    archive_profile: Option<&ProfileAccount>,
    sources: &[(&str, &ProfileAccount)],
    region: &str,
    region_from: &str,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Written by `trailhub init --from-aws-config` from the profiles of {}:\n\
         # {} source account{}, each reached through its own profile. Check each source's `bucket`\n\
         # (and `trail`) below, then `trailhub plan -c <this file>` before anything is applied.",
        request.origin,
        sources.len(),
        if sources.len() == 1 { "" } else { "s" },
    );
    let _ = writeln!(out, "region = {}   # from {region_from}\n", quoted(region));
    let _ = writeln!(out, "[archive]\naccount_id = {}", quoted(archive));
    match archive_profile {
        Some(p) => {
            let _ = writeln!(out, "profile = {}   # {}", quoted(&p.name), reach(p));
        }
        None => out.push_str(
            "# No profile reaches the archive: its steps use the standard credential chain.\n\
             # profile = \"log-archive\"\n",
        ),
    }
    out.push_str(
        "\n[source_defaults]\n\
         # Where each account's CloudTrail logs are (the article's names; `{account_id}` is the\n\
         # account's own id). Set them to yours, here or per [[source]].\n\
         bucket = \"cm-members-cloudtrail-{account_id}\"\n\
         # trail = \"Members\"   # pin one trail; unset, every trail that delivers to the bucket\n",
    );
    for (account, p) in sources {
        let _ = writeln!(
            out,
            "\n[[source]]\naccount_id = {}\nprofile = {}   # {}",
            quoted(account),
            quoted(&p.name),
            reach(p)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sso(name: &str, account: &str, role: &str) -> ProfileAccount {
        ProfileAccount {
            name: name.into(),
            account: Some(account.into()),
            problem: None,
            reach: Reach::Sso {
                role: Some(role.into()),
            },
            region: Some("eu-west-1".into()),
        }
    }

    fn request<'a>(
        profiles: &'a [ProfileAccount],
        archive: Option<&'a str>,
        prefer: &'a dyn Fn(&str) -> bool,
    ) -> InitRequest<'a> {
        InitRequest {
            profiles,
            archive,
            prefer,
            region: None,
            origin: "~/.aws/config",
        }
    }

    #[test]
    fn one_source_per_account_preferring_the_matching_profile() {
        let profiles = vec![
            sso("a-admin", "200000000001", "AdministratorAccess"),
            sso("a-read", "200000000001", "ReadOnlyAccess"),
            sso("b-read", "200000000002", "ReadOnlyAccess"),
            sso("log-archive", "111111111111", "AdministratorAccess"),
            ProfileAccount {
                name: "default".into(),
                account: None,
                problem: None,
                reach: Reach::Unknown,
                region: Some("eu-west-1".into()),
            },
        ];
        let prefer = |name: &str| name.ends_with("-read");
        let draft = draft(&request(&profiles, None, &prefer)).expect("a draft");
        assert_eq!(
            draft.archive,
            ("111111111111".into(), Some("log-archive".into()))
        );
        assert_eq!(
            draft.sources,
            [
                Chosen {
                    account: "200000000001".into(),
                    profile: "a-read".into()
                },
                Chosen {
                    account: "200000000002".into(),
                    profile: "b-read".into()
                },
            ]
        );
        assert_eq!(draft.inventory.sources.len(), 2);
        assert_eq!(draft.inventory.region, "eu-west-1");
        let reasons: Vec<String> = draft
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.profile, s.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                "a-admin: a duplicate: account 200000000001 is reached through profile a-read, which matches --match",
                "default: names no account: it has neither sso_account_id nor role_arn",
            ]
        );
    }

    #[test]
    fn without_an_archive_the_draft_asks_for_one() {
        let profiles = vec![
            sso("a", "200000000001", "Admin"),
            sso("b", "200000000002", "Admin"),
        ];
        let none = |_: &str| false;
        let err = draft(&request(&profiles, None, &none)).expect_err("no archive");
        assert!(
            err.to_string()
                .contains("pass --archive ACCOUNT (the profiles reach 200000000001, 200000000002)")
        );
        let draft = draft(&request(&profiles, Some("111111111111"), &none)).expect("a draft");
        assert!(draft.text.contains("No profile reaches the archive"));
        assert_eq!(draft.inventory.archive.account_id, "111111111111");
    }
}
