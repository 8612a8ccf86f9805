//! The inventory file (DESIGN.md, "The inventory"): parsed from TOML, templates expanded, and
//! validated as a whole before any AWS call, so that every problem is reported at once.
//!
//! Unknown keys are errors (a typo must not silently fall back to a default). Every source key
//! has the article's value as its default, may be set in `[source_defaults]`, and overridden per
//! `[[source]]`. Strings may use `{account_id}`, the account's own id.
//!
//! Two steps: `raw` deserializes the TOML into serde structs, and `validate` checks them in one
//! pass. Plain serde would stop at the first problem: `#[serde(deny_unknown_fields)]` fails on
//! the first unknown key, and a value of the wrong type fails the whole deserialization. So
//! every key is a lenient `Field` (absent, of its type, or the TOML value of another type, kept
//! for the message), and each table collects the keys it does not know into a map with
//! `#[serde(flatten)]`, to report them with the table's known keys. `serde_ignored` would see
//! unknown keys only where deserialization streams, not inside a value `Field` has buffered to
//! try its type, and every table here is such a value.

mod raw;
mod validate;

use crate::errors::InventoryError;
use raw::RawInventory;
use std::path::Path;
use trailhub_steps::{ArchiveSpec, PolicyMode, SourceSpec};

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

/// Reads and validates the inventory at `path`.
pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
    let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Validates inventory `text`; `origin` names it in messages. Only TOML syntax fails the
/// deserialization (every key's value is taken, whatever its type), so an error from it is the
/// parser's, with line and column.
pub fn parse(text: &str, origin: &str) -> Result<Inventory, InventoryError> {
    let raw: RawInventory =
        toml::from_str(text).map_err(|e: toml::de::Error| InventoryError::Syntax {
            origin: origin.to_string(),
            message: e.to_string().trim_end().replace('\n', "\n    "),
        })?;
    validate::inventory(&raw, text).map_err(|problems| InventoryError::Invalid {
        origin: origin.to_string(),
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailhub_steps::{
        Credentials, Lifecycle, Retention, RetentionMode, RetentionPeriod, Transition,
    };

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
    fn wrong_types_and_unknown_keys_in_every_table_are_reported_together() {
        let bad = r#"
region = 1
policy = "strict"
colour = "blue"
[archive]
account_id = "111111111111"
bucket = 2024-01-01
shade = 1
[source_defaults]
account_id = "999999999999"
storage_class = 7
prefix = "logs-{acount}/"
[[source]]
account_id = "222222222222"
replication_time_control = "yes"
hue = true
[[source]]
account_id = 333333333333
trail = ""
"#;
        let err = parse(bad, "bad.toml").expect_err("invalid");
        let InventoryError::Invalid { problems, .. } = &err else {
            panic!("{err}");
        };
        let source_keys = "account_id, bucket, trail, role_name, stack_name, prefix, region, trust_conditions, existing_replication, storage_class, replication_time_control, assume_role, profile";
        assert_eq!(
            problems,
            &[
                "archive.bucket: must be a string, not datetime".to_string(),
                "archive.shade: unknown key; known keys here: account_id, assume_role, profile, bucket, kms_key, retention, lifecycle".into(),
                "colour: unknown key; known keys here: region, policy, archive, source_defaults, source".into(),
                "policy: `strict` is not a policy; use \"article\", \"least-privilege\" or \"accounts\"".into(),
                "region: is required (e.g. region = \"ap-northeast-1\")".into(),
                "region: must be a string, not integer".into(),
                format!("source[0].hue: unknown key; known keys here: {source_keys}"),
                "source[0].replication_time_control: must be true or false".into(),
                "source[1].account_id: write the account id as a string, \"333333333333\" (an id may begin with 0)".into(),
                "source[1].trail: is empty; remove it to skip the trail check".into(),
                "source_defaults.account_id: cannot be a default: every [[source]] names its own".into(),
                "source_defaults.prefix: unknown placeholder `{acount}`; only {account_id} is defined".into(),
                "source_defaults.storage_class: must be a string, not integer".into(),
            ]
        );
    }

    /// An inventory of `policy` whose `[source_defaults]` and sources add `defaults` and
    /// `sources` (one TOML fragment per source) to their account ids.
    fn with_sources(policy: &str, defaults: &str, sources: &[&str]) -> String {
        let mut text = format!(
            "region = \"us-east-1\"\npolicy = \"{policy}\"\n[archive]\naccount_id = \"111111111111\"\n[source_defaults]\n{defaults}\n"
        );
        for (i, extra) in sources.iter().enumerate() {
            let id = 222_222_222_222_u64 + i as u64;
            text.push_str(&format!("[[source]]\naccount_id = \"{id}\"\n{extra}\n"));
        }
        text
    }

    fn problems(text: &str) -> Vec<String> {
        match parse(text, "t.toml") {
            Err(InventoryError::Invalid { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn a_prefix_is_literal_wildcards_and_policy_variables_are_refused() {
        let text = with_sources(
            "least-privilege",
            "prefix = \"AWS*Logs/\"",
            &["", "prefix = \"logs?/\"", "prefix = \"${aws:username}/\""],
        );
        assert_eq!(
            problems(&text),
            [
                "source[1].prefix: `logs?/` holds `?`: a prefix is a literal key prefix, and in a \
                 bucket policy's Resource `*` and `?` are wildcards and `$` begins a policy variable",
                "source[2].prefix: `${aws:username}/` holds `$`: a prefix is a literal key prefix, \
                 and in a bucket policy's Resource `*` and `?` are wildcards and `$` begins a \
                 policy variable",
                "source[2].prefix: unknown placeholder `{aws:username}`; only {account_id} is \
                 defined",
                "source_defaults.prefix: `AWS*Logs/` holds `*`: a prefix is a literal key prefix, \
                 and in a bucket policy's Resource `*` and `?` are wildcards and `$` begins a \
                 policy variable",
            ]
        );
        let every = with_sources("article", "", &["prefix = \"*?$\""]);
        let found = problems(&every);
        assert!(found[0].contains("holds `*` and `?` and `$`"), "{found:?}");
        let fine = with_sources(
            "least-privilege",
            "prefix = \"logs-{account_id}/a.b+c=d/\"",
            &[""],
        );
        let inv = parse(&fine, "fine.toml").expect("a literal prefix is valid");
        assert_eq!(
            inv.sources[0].prefix.as_deref(),
            Some("logs-222222222222/a.b+c=d/")
        );
    }

    #[test]
    fn role_names_whose_accounts_mode_sids_collide_are_refused_naming_both_sources() {
        let names = [
            "role_name = \"S3-Replication\"",
            "role_name = \"S3Replication\"",
            "role_name = \"a_b\"",
            "",
            "role_name = \"ab\"",
        ];
        let text = with_sources("accounts", "role_name = \"a_b\"", &names);
        assert_eq!(
            problems(&text),
            [
                "source[1].role_name: `S3Replication` and `S3-Replication` (source[0]) both make \
                 the accounts-mode Sid `TrailhubReplicationByAccountS3Replication` (a Sid keeps \
                 only letters and digits); use one role name, or names that differ in a letter \
                 or digit",
                "source[4].role_name: `ab` and `a_b` (source[2]) both make the accounts-mode Sid \
                 `TrailhubReplicationByAccountab` (a Sid keeps only letters and digits); use one \
                 role name, or names that differ in a letter or digit",
            ]
        );
        // One role name shared by many sources is one statement; other modes key their
        // statements by account, so the same names are valid there.
        let shared = with_sources(
            "accounts",
            "role_name = \"a_b\"",
            &["", "", "role_name = \"A_B\""],
        );
        assert!(parse(&shared, "shared.toml").is_ok());
        for mode in ["article", "least-privilege"] {
            let text = with_sources(mode, "", &names);
            assert!(parse(&text, mode).is_ok(), "{mode}");
        }
    }

    /// The problems of `archive`'s lines in an otherwise valid inventory.
    fn archive_problems(archive: &str) -> Vec<String> {
        let text = format!(
            "region = \"ap-northeast-1\"\n[archive]\naccount_id = \"111111111111\"\n{archive}\n[[source]]\naccount_id = \"222222222222\"\n"
        );
        match parse(&text, "a.toml") {
            Ok(_) => Vec::new(),
            Err(InventoryError::Invalid { problems, .. }) => problems,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn retention_and_lifecycle_parse_into_the_archive() {
        let text = format!(
            "{EXAMPLE}\n[archive.retention]\nmode = \"COMPLIANCE\"\nyears = 7\n[archive.lifecycle]\ntransition_days = 90\nstorage_class = \"GLACIER_IR\"\nexpire_days = 2555\nnoncurrent_expire_days = 2555\n"
        );
        let inv = parse(&text, "x").expect("valid");
        assert_eq!(
            inv.archive.retention,
            Some(Retention {
                mode: RetentionMode::Compliance,
                period: RetentionPeriod::Years(7),
            })
        );
        assert_eq!(
            inv.archive.lifecycle,
            Some(Lifecycle {
                transition: Some(Transition {
                    days: 90,
                    storage_class: "GLACIER_IR".into(),
                }),
                expire_days: Some(2555),
                noncurrent_expire_days: Some(2555),
            })
        );
        assert!(
            archive_problems(
                "retention = { mode = \"GOVERNANCE\", days = 30 }\nlifecycle = { noncurrent_expire_days = 30 }"
            )
            .is_empty()
        );
        let inv = parse(EXAMPLE, "x").expect("valid");
        assert_eq!((inv.archive.retention, inv.archive.lifecycle), (None, None));
    }

    #[test]
    fn retention_problems_name_their_key() {
        for (lines, want) in [
            (
                "retention = { mode = \"STRICT\", days = 30 }",
                vec![
                    "archive.retention.mode: `STRICT` is not a retention mode; use \"GOVERNANCE\" or \"COMPLIANCE\"",
                ],
            ),
            (
                "retention = { days = 30 }",
                vec!["archive.retention.mode: is required: \"GOVERNANCE\" or \"COMPLIANCE\""],
            ),
            (
                "retention = { mode = \"GOVERNANCE\", days = 30, years = 1 }",
                vec!["archive.retention: set either `days` or `years`, not both"],
            ),
            (
                "retention = { mode = \"GOVERNANCE\" }",
                vec!["archive.retention: needs a period: `days = N` or `years = N`"],
            ),
            (
                "retention = { mode = \"GOVERNANCE\", days = 0 }",
                vec!["archive.retention.days: must be a positive integer, not 0"],
            ),
            (
                "retention = { mode = \"GOVERNANCE\", years = \"7\" }",
                vec!["archive.retention.years: must be a positive integer, not string"],
            ),
            (
                "retention = { mode = \"GOVERNANCE\", days = 1.5 }",
                vec!["archive.retention.days: must be a positive integer, not float"],
            ),
            (
                "retention = { mode = \"GOVERNANCE\", days = 3000000000 }",
                vec!["archive.retention.days: must be a positive integer, not 3000000000"],
            ),
            (
                "retention = { mode = \"GOVERNANCE\", days = 1, until = 2 }",
                vec!["archive.retention.until: unknown key; known keys here: mode, days, years"],
            ),
            (
                "retention = \"GOVERNANCE\"",
                vec![
                    "archive.retention: must be a table, e.g. retention = { mode = \"GOVERNANCE\", days = 365 }",
                ],
            ),
        ] {
            assert_eq!(archive_problems(lines), want, "{lines}");
        }
    }

    #[test]
    fn lifecycle_problems_name_their_key() {
        for (lines, want) in [
            (
                "lifecycle = { transition_days = 90, storage_class = \"STANDARD\" }",
                vec![
                    "archive.lifecycle.storage_class: `STANDARD` is not a storage class a lifecycle rule moves objects to; use one of GLACIER_IR, GLACIER, DEEP_ARCHIVE, STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING",
                ],
            ),
            (
                "lifecycle = { transition_days = 90 }",
                vec![
                    "archive.lifecycle.storage_class: is required with transition_days (e.g. \"GLACIER_IR\")",
                ],
            ),
            (
                "lifecycle = { storage_class = \"GLACIER\" }",
                vec!["archive.lifecycle.transition_days: is required with storage_class"],
            ),
            (
                "lifecycle = { transition_days = 10, storage_class = \"STANDARD_IA\" }",
                vec![
                    "archive.lifecycle.transition_days: S3 moves objects to STANDARD_IA no sooner than 30 days after they were written, not 10",
                ],
            ),
            (
                "lifecycle = { transition_days = 90, storage_class = \"GLACIER_IR\", expire_days = 90 }",
                vec![
                    "archive.lifecycle.expire_days: 90 days is not after transition_days (90): objects would expire before they move to GLACIER_IR",
                ],
            ),
            (
                "lifecycle = { expire_days = -1, noncurrent_expire_days = 0 }",
                vec![
                    "archive.lifecycle.expire_days: must be a positive integer, not -1",
                    "archive.lifecycle.noncurrent_expire_days: must be a positive integer, not 0",
                ],
            ),
            (
                "lifecycle = {}",
                vec![
                    "archive.lifecycle: sets nothing: give transition_days with storage_class, expire_days or noncurrent_expire_days (or remove it)",
                ],
            ),
            (
                "lifecycle = { expire_days = 30, delete = true }",
                vec![
                    "archive.lifecycle.delete: unknown key; known keys here: transition_days, storage_class, expire_days, noncurrent_expire_days",
                ],
            ),
        ] {
            assert_eq!(archive_problems(lines), want, "{lines}");
        }
    }

    #[test]
    fn an_expiry_shorter_than_the_retention_names_both_keys() {
        let problems = archive_problems(
            "retention = { mode = \"COMPLIANCE\", years = 7 }\nlifecycle = { expire_days = 2554, noncurrent_expire_days = 30 }",
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        for (problem, key) in problems
            .iter()
            .zip(["expire_days: 2554 days", "noncurrent_expire_days: 30 days"])
        {
            assert!(
                problem.starts_with(&format!("archive.lifecycle.{key} is shorter than archive.retention (COMPLIANCE 7 years, 2555 days)")),
                "{problem}"
            );
        }
        assert!(
            archive_problems(
                "retention = { mode = \"GOVERNANCE\", days = 30 }\nlifecycle = { expire_days = 30 }"
            )
            .is_empty(),
            "as long as the retention is enough"
        );
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
    use trailhub_steps::Credentials;

    #[test]
    fn the_examples_in_the_repository_are_valid() {
        for (name, text) in [
            (
                "three-accounts-profiles",
                include_str!("../../../examples/three-accounts-profiles.toml"),
            ),
            (
                "fifty-accounts-assume-role",
                include_str!("../../../examples/fifty-accounts-assume-role.toml"),
            ),
            (
                "overrides",
                include_str!("../../../examples/overrides.toml"),
            ),
        ] {
            let inv = parse(text, name).unwrap_or_else(|e| panic!("{e}"));
            assert!(!inv.sources.is_empty(), "{name}");
        }
        let fifty = parse(
            include_str!("../../../examples/fifty-accounts-assume-role.toml"),
            "50",
        )
        .expect("valid");
        assert_eq!(fifty.sources.len(), 50);
        let overrides =
            parse(include_str!("../../../examples/overrides.toml"), "o").expect("valid");
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
        assert_eq!(
            overrides.archive.retention.map(|r| r.period.days()),
            Some(400)
        );
        assert_eq!(
            overrides.archive.lifecycle.and_then(|l| l.expire_days),
            Some(400)
        );
    }
}
