//! The inventory file (DESIGN.md, "The inventory"): parsed from TOML, templates expanded, and
//! validated as a whole before any AWS call, so that every problem is reported at once.
//!
//! Unknown keys are errors (a typo must not silently fall back to a default). Every source key
//! has the article's value as its default, may be set in `[source_defaults]`, and overridden per
//! `[[source]]`. Strings may use `{account_id}`, the account's own id.

use crate::errors::InventoryError;
use crate::names;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use toml::{Table, Value};
use trailhub_steps::{ArchiveSpec, Credentials, PolicyMode, SourceSpec};

/// A validated inventory.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    /// The region of every bucket and stack.
    pub region: String,
    /// The ARN partition of the region.
    pub partition: String,
    /// The archive bucket policy's form.
    pub policy: PolicyMode,
    /// The archive account.
    pub archive: ArchiveSpec,
    /// The source accounts, in file order.
    pub sources: Vec<SourceSpec>,
    /// The file's text as read (journaled with a run: the run's frozen inventory).
    pub text: String,
}

const TOP_KEYS: &[&str] = &["region", "policy", "archive", "source_defaults", "source"];
const ARCHIVE_KEYS: &[&str] = &["account_id", "assume_role", "profile", "bucket"];
const SOURCE_KEYS: &[&str] = &[
    "account_id",
    "bucket",
    "trail",
    "role_name",
    "stack_name",
    "prefix",
    "storage_class",
    "replication_time_control",
    "assume_role",
    "profile",
];

/// Reads and validates the inventory at `path`.
pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
    let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Validates inventory `text`; `origin` names it in messages.
pub fn parse(text: &str, origin: &str) -> Result<Inventory, InventoryError> {
    let table: Table = text
        .parse()
        .map_err(|e: toml::de::Error| InventoryError::Syntax {
            origin: origin.to_string(),
            message: e.to_string().trim_end().replace('\n', "\n    "),
        })?;
    let mut p = Problems::default();
    unknown_keys(&table, TOP_KEYS, "", &mut p);

    let region = p.string(&table, "region", "").unwrap_or_default();
    if region.is_empty() {
        p.add("region", "is required (e.g. region = \"ap-northeast-1\")");
    } else {
        p.check("region", names::region(&region));
    }
    let partition = names::partition(&region).to_string();
    let policy = match p.string(&table, "policy", "").as_deref() {
        None | Some("article") => PolicyMode::Article,
        Some("least-privilege") => PolicyMode::LeastPrivilege,
        Some("accounts") => PolicyMode::Accounts,
        Some(other) => {
            p.add(
                "policy",
                &format!(
                    "`{other}` is not a policy; use \"article\", \"least-privilege\" or \"accounts\""
                ),
            );
            PolicyMode::Article
        }
    };

    let empty = Table::new();
    let archive_table = match table.get("archive") {
        Some(Value::Table(t)) => t,
        Some(_) => {
            p.add("archive", "must be a table ([archive])");
            &empty
        }
        None => {
            p.add("archive", "is required: an [archive] table with account_id");
            &empty
        }
    };
    unknown_keys(archive_table, ARCHIVE_KEYS, "archive.", &mut p);
    let archive_id = p.account(archive_table, "archive.account_id");
    let archive_bucket = p
        .template(archive_table, "bucket", "archive.", &archive_id)
        .unwrap_or_else(|| format!("aggregation-cloudtrail-logs-{archive_id}"));
    if !archive_id.is_empty() {
        p.check("archive.bucket", names::bucket(&archive_bucket));
    }
    let archive_credentials = p.credentials(
        archive_table,
        &BTreeMap::new(),
        "archive.",
        &archive_id,
        &partition,
    );
    let archive = ArchiveSpec {
        account_id: archive_id.clone(),
        bucket: archive_bucket,
        credentials: archive_credentials,
    };

    let defaults = match table.get("source_defaults") {
        Some(Value::Table(t)) => {
            let mut t = t.clone();
            if t.remove("account_id").is_some() {
                p.add(
                    "source_defaults.account_id",
                    "cannot be a default: every [[source]] names its own",
                );
            }
            unknown_keys(&t, SOURCE_KEYS, "source_defaults.", &mut p);
            t
        }
        Some(_) => {
            p.add("source_defaults", "must be a table ([source_defaults])");
            Table::new()
        }
        None => Table::new(),
    };
    let defaults: BTreeMap<String, Value> = defaults.into_iter().collect();

    let mut sources = Vec::new();
    let raw_sources: Vec<&Table> = match table.get("source") {
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .filter_map(|(i, v)| match v {
                Value::Table(t) => Some(t),
                _ => {
                    p.add(&format!("source[{i}]"), "must be a table ([[source]])");
                    None
                }
            })
            .collect(),
        Some(_) => {
            p.add("source", "must be an array of tables ([[source]])");
            Vec::new()
        }
        None => {
            p.add(
                "source",
                "at least one [[source]] with an account_id is required",
            );
            Vec::new()
        }
    };
    if raw_sources.is_empty() && table.get("source").is_some_and(Value::is_array) {
        p.add(
            "source",
            "is empty: at least one [[source]] with an account_id is required",
        );
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut buckets: BTreeMap<String, String> = BTreeMap::new();
    buckets.insert(archive.bucket.clone(), "the archive".into());
    for (i, raw) in raw_sources.iter().enumerate() {
        let at = format!("source[{i}].");
        unknown_keys(raw, SOURCE_KEYS, &at, &mut p);
        let mut merged: Table = defaults.clone().into_iter().collect();
        // `profile` and `assume_role` are one choice: a source that makes it replaces the default's.
        if raw.contains_key("profile") || raw.contains_key("assume_role") {
            merged.remove("profile");
            merged.remove("assume_role");
        }
        for (k, v) in raw.iter() {
            merged.insert(k.clone(), v.clone());
        }
        let id = p.account(&merged, &format!("{at}account_id"));
        if !id.is_empty() {
            if id == archive_id {
                p.add(
                    &format!("{at}account_id"),
                    &format!("`{id}` is the archive account; the archive is not a source"),
                );
            }
            if let Some(first) = seen.insert(id.clone(), i) {
                p.add(
                    &format!("{at}account_id"),
                    &format!("`{id}` is listed twice (also source[{first}])"),
                );
            }
        }
        let origin = |key: &str| {
            if raw.contains_key(key) {
                at.clone()
            } else {
                "source_defaults.".to_string()
            }
        };
        let get = |p: &mut Problems, key: &str, default: &str| {
            p.template(&merged, key, &origin(key), &id)
                .unwrap_or_else(|| default.replace("{account_id}", &id))
        };
        let bucket = get(&mut p, "bucket", "cm-members-cloudtrail-{account_id}");
        let trail = p.template(&merged, "trail", &origin("trail"), &id);
        let role_name = get(&mut p, "role_name", "S3ReplicationRole");
        let stack_name = get(&mut p, "stack_name", "cloudtrail-replication-role");
        let prefix = get(&mut p, "prefix", "AWSLogs/");
        let storage_class = get(&mut p, "storage_class", "STANDARD_IA");
        let rtc = match merged.get("replication_time_control") {
            None => true,
            Some(Value::Boolean(b)) => *b,
            Some(_) => {
                p.add(
                    &format!(
                        "{}replication_time_control",
                        origin("replication_time_control")
                    ),
                    "must be true or false",
                );
                true
            }
        };
        if !id.is_empty() {
            p.check(
                &format!("{}bucket", origin("bucket")),
                names::bucket(&bucket),
            );
            if let Some(owner) = buckets.insert(bucket.clone(), format!("source[{i}]")) {
                p.add(
                    &format!("{at}bucket"),
                    &format!("`{bucket}` is also the bucket of {owner}"),
                );
            }
        }
        p.check(
            &format!("{}role_name", origin("role_name")),
            names::role_name(&role_name),
        );
        p.check(
            &format!("{}stack_name", origin("stack_name")),
            names::stack_name(&stack_name),
        );
        p.check(
            &format!("{}storage_class", origin("storage_class")),
            names::storage_class(&storage_class),
        );
        if prefix.len() > 1024 {
            p.add(
                &format!("{}prefix", origin("prefix")),
                "is longer than 1024 characters",
            );
        }
        if let Some(t) = &trail
            && t.is_empty()
        {
            p.add(
                &format!("{}trail", origin("trail")),
                "is empty; remove it to skip the trail check",
            );
        }
        let credentials = p.credentials(&merged, &defaults, &at, &id, &partition);
        sources.push(SourceSpec {
            account_id: id,
            bucket,
            trail,
            role_name,
            stack_name,
            prefix,
            storage_class,
            replication_time_control: rtc,
            credentials,
        });
    }

    if p.0.is_empty() {
        Ok(Inventory {
            region,
            partition,
            policy,
            archive,
            sources,
            text: text.to_string(),
        })
    } else {
        let mut problems: Vec<String> = p.0.into_iter().collect();
        problems.sort_by_key(|p| natural_key(p));
        Err(InventoryError::Invalid {
            origin: origin.to_string(),
            problems,
        })
    }
}

/// Sorts `source[10]` after `source[9]`.
fn natural_key(s: &str) -> (String, usize, String) {
    if let Some(rest) = s.strip_prefix("source[")
        && let Some((n, tail)) = rest.split_once(']')
        && let Ok(n) = n.parse::<usize>()
    {
        return ("source[".into(), n, tail.to_string());
    }
    (s.to_string(), 0, String::new())
}

fn unknown_keys(table: &Table, known: &[&str], at: &str, p: &mut Problems) {
    for key in table.keys() {
        if !known.contains(&key.as_str()) {
            p.add(
                &format!("{at}{key}"),
                &format!("unknown key; known keys here: {}", known.join(", ")),
            );
        }
    }
}

#[derive(Default)]
struct Problems(BTreeSet<String>);

impl Problems {
    fn add(&mut self, key: &str, message: &str) {
        self.0.insert(format!("{key}: {message}"));
    }

    fn check(&mut self, key: &str, result: Result<(), String>) {
        if let Err(e) = result {
            self.add(key, &e);
        }
    }

    fn string(&mut self, table: &Table, key: &str, at: &str) -> Option<String> {
        match table.get(key) {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.add(
                    &format!("{at}{key}"),
                    &format!("must be a string, not {}", other.type_str()),
                );
                None
            }
        }
    }

    /// A string with `{account_id}` expanded; other placeholders are errors.
    fn template(&mut self, table: &Table, key: &str, at: &str, account: &str) -> Option<String> {
        let raw = self.string(table, key, at)?;
        let mut rest = raw.as_str();
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            match after.find('}') {
                Some(close) if &after[..close] == "account_id" => rest = &after[close + 1..],
                Some(close) => {
                    self.add(
                        &format!("{at}{key}"),
                        &format!(
                            "unknown placeholder `{{{}}}`; only {{account_id}} is defined",
                            &after[..close]
                        ),
                    );
                    return Some(raw.replace("{account_id}", account));
                }
                None => {
                    self.add(&format!("{at}{key}"), "has an unclosed `{`");
                    return Some(raw.replace("{account_id}", account));
                }
            }
        }
        Some(raw.replace("{account_id}", account))
    }

    fn account(&mut self, table: &Table, key: &str) -> String {
        let short = key.rsplit('.').next().unwrap_or(key);
        match table.get(short) {
            Some(Value::String(s)) => match names::account_id(s) {
                Ok(()) => s.clone(),
                Err(e) => {
                    self.add(key, &e);
                    String::new()
                }
            },
            Some(Value::Integer(n)) => {
                self.add(
                    key,
                    &format!(
                        "write the account id as a string, \"{n:012}\" (an id may begin with 0)"
                    ),
                );
                String::new()
            }
            Some(other) => {
                self.add(
                    key,
                    &format!("must be a 12-digit string, not {}", other.type_str()),
                );
                String::new()
            }
            None => {
                self.add(key, "is required");
                String::new()
            }
        }
    }

    fn credentials(
        &mut self,
        table: &Table,
        defaults: &BTreeMap<String, Value>,
        at: &str,
        account: &str,
        partition: &str,
    ) -> Credentials {
        let own = |key: &str| {
            if defaults.contains_key(key) && !table.contains_key(key) {
                "source_defaults.".to_string()
            } else {
                at.to_string()
            }
        };
        let profile = self.template(table, "profile", &own("profile"), account);
        let role = self.template(table, "assume_role", &own("assume_role"), account);
        match (profile, role) {
            (Some(_), Some(_)) => {
                self.add(
                    &format!("{at}profile"),
                    "set either `profile` or `assume_role`, not both",
                );
                Credentials::Default
            }
            (Some(p), None) => {
                self.check(&format!("{}profile", own("profile")), names::profile(&p));
                Credentials::Profile(p)
            }
            (None, Some(arn)) => {
                match names::role_arn(&arn, partition) {
                    Ok(in_arn) if !account.is_empty() && in_arn != account => self.add(
                        &format!("{}assume_role", own("assume_role")),
                        &format!("`{arn}` is a role in account {in_arn}, not in {account}"),
                    ),
                    Ok(_) => {}
                    Err(e) => self.add(&format!("{}assume_role", own("assume_role")), &e),
                }
                Credentials::AssumeRole(arn)
            }
            (None, None) => Credentials::Default,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
region = "ap-northeast-1"
[archive]
account_id = "111111111111"
assume_role = "arn:aws:iam::111111111111:role/OrganizationAccountAccessRole"
bucket = "aggregation-cloudtrail-logs-{account_id}"
[source_defaults]
bucket = "cm-members-cloudtrail-{account_id}"
trail = "Members"
role_name = "S3ReplicationRole"
stack_name = "cloudtrail-replication-role"
prefix = "AWSLogs/"
storage_class = "STANDARD_IA"
replication_time_control = true
assume_role = "arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole"
[[source]]
account_id = "222222222222"
[[source]]
account_id = "333333333333"
profile = "member-3"
"#;

    #[test]
    fn the_design_example_parses_with_templates_and_overrides() {
        let inv = parse(EXAMPLE, "example.toml").expect("valid");
        assert_eq!(
            inv.archive.bucket,
            "aggregation-cloudtrail-logs-111111111111"
        );
        assert_eq!(inv.sources.len(), 2);
        let s2 = &inv.sources[0];
        assert_eq!(s2.bucket, "cm-members-cloudtrail-222222222222");
        assert_eq!(s2.trail.as_deref(), Some("Members"));
        assert_eq!(
            s2.credentials,
            Credentials::AssumeRole(
                "arn:aws:iam::222222222222:role/OrganizationAccountAccessRole".into()
            )
        );
        let s3 = &inv.sources[1];
        assert_eq!(
            s3.credentials,
            Credentials::Profile("member-3".into()),
            "a profile overrides the default role"
        );
        assert!(s3.replication_time_control);
    }

    #[test]
    fn every_problem_is_reported_at_once_sorted() {
        let bad = r#"
region = "mars-north-1"
colour = "blue"
[archive]
account_id = 111111111111
[source_defaults]
bucket = "Bad_Bucket-{account}"
[[source]]
account_id = "222"
[[source]]
account_id = "333333333333"
storage_class = "CHEAP"
[[source]]
account_id = "333333333333"
[[source]]
account_id = "444444444444"
profile = "p"
assume_role = "arn:aws:iam::444444444444:role/x"
"#;
        let err = parse(bad, "bad.toml").expect_err("invalid");
        let InventoryError::Invalid { problems, .. } = &err else {
            panic!("{err}");
        };
        let text = problems.join("\n");
        for needle in [
            "archive.account_id: write the account id as a string, \"111111111111\"",
            "colour: unknown key",
            "region: unknown region `mars-north-1`",
            "source[0].account_id: `222` is not an AWS account id",
            "source[1].storage_class: `CHEAP` is not a storage class",
            "source[2].account_id: `333333333333` is listed twice (also source[1])",
            "source[3].profile: set either `profile` or `assume_role`, not both",
            "source_defaults.bucket: unknown placeholder `{account}`",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert!(err.to_string().starts_with("inventory bad.toml has"));
    }

    #[test]
    fn the_archive_is_not_a_source_and_toml_errors_name_the_line() {
        let text = "region = \"us-east-1\"\n[archive]\naccount_id = \"111111111111\"\n[[source]]\naccount_id = \"111111111111\"\n";
        let err = parse(text, "x").expect_err("invalid").to_string();
        assert!(err.contains("is the archive account"), "{err}");
        let err = parse("region = \n", "y.toml")
            .expect_err("syntax")
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}

#[cfg(test)]
mod examples {
    use super::*;

    #[test]
    fn the_examples_in_the_repository_are_valid() {
        for (name, text) in [
            (
                "three-accounts-profiles",
                include_str!("../../examples/three-accounts-profiles.toml"),
            ),
            (
                "fifty-accounts-assume-role",
                include_str!("../../examples/fifty-accounts-assume-role.toml"),
            ),
            ("overrides", include_str!("../../examples/overrides.toml")),
        ] {
            let inv = parse(text, name).unwrap_or_else(|e| panic!("{e}"));
            assert!(!inv.sources.is_empty(), "{name}");
        }
        let fifty = parse(
            include_str!("../../examples/fifty-accounts-assume-role.toml"),
            "50",
        )
        .expect("valid");
        assert_eq!(fifty.sources.len(), 50);
        let overrides = parse(include_str!("../../examples/overrides.toml"), "o").expect("valid");
        assert_eq!(overrides.policy, PolicyMode::LeastPrivilege);
        assert_eq!(
            overrides.sources[1].bucket,
            "legacy-cloudtrail-333333333333"
        );
        assert_eq!(
            overrides.sources[2].credentials,
            Credentials::Profile("sandbox".into())
        );
        assert!(!overrides.sources[2].replication_time_control);
    }
}
