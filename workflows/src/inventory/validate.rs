//! The one pass over a [`RawInventory`]: templates expanded, defaults applied, names checked,
//! and every problem collected with its key; no problem stops the pass.

use super::Inventory;
use super::raw::{
    ARCHIVE_KEYS, Field, LIFECYCLE_KEYS, RETENTION_KEYS, RawArchive, RawInventory, RawLifecycle,
    RawRetention, RawSource, SOURCE_KEYS, TOP_KEYS, UnknownKeys,
};
use crate::names;
use std::collections::{BTreeMap, BTreeSet};
use toml::Value;
use trailhub_steps::policy::accounts_sid;
use trailhub_steps::spec::UnknownPolicyMode;
use trailhub_steps::{
    ArchiveSpec, Credentials, ExistingReplication, Lifecycle, PolicyMode, Retention, RetentionMode,
    RetentionPeriod, SourceSpec, Transition,
};

/// Checks `raw` as a whole: the inventory, or every problem, each `key: message`, sorted by key
/// (`source[10]` after `source[9]`).
pub(super) fn inventory(raw: &RawInventory, text: &str) -> Result<Inventory, Vec<String>> {
    let mut p = Problems::default();
    p.unknown_keys(&raw.unknown, TOP_KEYS, "");
    let region = region(&raw.region, &mut p);
    let partition = names::partition(&region);
    let policy = policy(&raw.policy, &mut p);
    let archive = archive(&raw.archive, partition, &mut p);
    let no_defaults = RawSource::default();
    let defaults = defaults(&raw.source_defaults, &mut p).unwrap_or(&no_defaults);
    let mut sources = Sources::new(defaults, &archive, partition);
    for (i, source) in source_tables(&raw.source, &mut p).into_iter().enumerate() {
        sources.check(i, source, &mut p);
    }
    if policy == PolicyMode::Accounts {
        distinct_sids(&sources.specs, &mut p);
    }
    let sources = sources.specs;
    p.finish()?;
    Ok(Inventory {
        region,
        partition: partition.to_string(),
        policy,
        archive,
        sources,
        text: text.to_string(),
    })
}

fn region(field: &Field<String>, p: &mut Problems) -> String {
    let region = p.string(field, "region").unwrap_or_default();
    if region.is_empty() {
        p.add("region", "is required (e.g. region = \"ap-northeast-1\")");
    } else {
        p.check("region", names::region(&region));
    }
    region
}

fn policy(field: &Field<PolicyMode>, p: &mut Problems) -> PolicyMode {
    match field {
        Field::Absent => {}
        Field::Given(mode) => return *mode,
        // A string that did not deserialize as a mode is no mode's name.
        Field::Wrong(Value::String(name)) => {
            p.add("policy", &UnknownPolicyMode(name.clone()).to_string());
        }
        Field::Wrong(other) => p.add(
            "policy",
            &format!("must be a string, not {}", other.type_str()),
        ),
    }
    PolicyMode::default()
}

fn archive(field: &Field<RawArchive>, partition: &str, p: &mut Problems) -> ArchiveSpec {
    let empty = RawArchive::default();
    let table = match field {
        Field::Given(table) => table,
        Field::Wrong(_) => {
            p.add("archive", "must be a table ([archive])");
            &empty
        }
        Field::Absent => {
            p.add("archive", "is required: an [archive] table with account_id");
            &empty
        }
    };
    p.unknown_keys(&table.unknown, ARCHIVE_KEYS, "archive.");
    let id = p.account(&table.account_id, "archive.account_id");
    let bucket = p
        .template(&table.bucket, "archive.bucket", &id)
        .unwrap_or_else(|| format!("aggregation-cloudtrail-logs-{id}"));
    if !id.is_empty() {
        p.check("archive.bucket", names::bucket(&bucket));
    }
    let credentials = credentials(
        &table.profile,
        &table.assume_role,
        "archive.",
        &id,
        partition,
        p,
    );
    let kms_key = p.string(&table.kms_key, "archive.kms_key");
    let retention = retention(&table.retention, p);
    let lifecycle = lifecycle(&table.lifecycle, retention.as_ref(), p);
    ArchiveSpec {
        account_id: id,
        bucket,
        kms_key,
        retention,
        lifecycle,
        credentials,
    }
}

/// `[archive] retention`: a mode, and a number of days or of years (S3 takes one, never both).
fn retention(field: &Field<RawRetention>, p: &mut Problems) -> Option<Retention> {
    const AT: &str = "archive.retention";
    let table = match field {
        Field::Absent => return None,
        Field::Wrong(_) => {
            p.add(
                AT,
                "must be a table, e.g. retention = { mode = \"GOVERNANCE\", days = 365 }",
            );
            return None;
        }
        Field::Given(table) => table,
    };
    p.unknown_keys(&table.unknown, RETENTION_KEYS, "archive.retention.");
    let mode_at = "archive.retention.mode";
    let mode = match p.string(&table.mode, mode_at) {
        Some(name) => name
            .parse::<RetentionMode>()
            .map_err(|e| p.add(mode_at, &e))
            .ok(),
        None => {
            if !table.mode.is_present() {
                p.add(mode_at, "is required: \"GOVERNANCE\" or \"COMPLIANCE\"");
            }
            None
        }
    };
    let period = match (table.days.is_present(), table.years.is_present()) {
        (true, true) => {
            p.add(AT, "set either `days` or `years`, not both");
            None
        }
        (false, false) => {
            p.add(AT, "needs a period: `days = N` or `years = N`");
            None
        }
        (true, false) => p
            .positive(&table.days, "archive.retention.days")
            .map(RetentionPeriod::Days),
        (false, true) => p
            .positive(&table.years, "archive.retention.years")
            .map(RetentionPeriod::Years),
    };
    Some(Retention {
        mode: mode?,
        period: period?,
    })
}

/// `[archive] lifecycle`: trailhub's rule on the archive bucket, checked against itself and
/// against the retention (an expiry shorter than the retention would ask S3 to delete what
/// Object Lock keeps).
fn lifecycle(
    field: &Field<RawLifecycle>,
    retention: Option<&Retention>,
    p: &mut Problems,
) -> Option<Lifecycle> {
    const AT: &str = "archive.lifecycle";
    let table = match field {
        Field::Absent => return None,
        Field::Wrong(_) => {
            p.add(
                AT,
                "must be a table, e.g. lifecycle = { transition_days = 90, storage_class = \"GLACIER_IR\" }",
            );
            return None;
        }
        Field::Given(table) => table,
    };
    p.unknown_keys(&table.unknown, LIFECYCLE_KEYS, "archive.lifecycle.");
    let transition = lifecycle_transition(table, p);
    let expire_days = p.positive(&table.expire_days, "archive.lifecycle.expire_days");
    let noncurrent_expire_days = p.positive(
        &table.noncurrent_expire_days,
        "archive.lifecycle.noncurrent_expire_days",
    );
    if !table.transition_days.is_present()
        && !table.storage_class.is_present()
        && !table.expire_days.is_present()
        && !table.noncurrent_expire_days.is_present()
    {
        p.add(
            AT,
            "sets nothing: give transition_days with storage_class, expire_days or noncurrent_expire_days (or remove it)",
        );
    }
    if let (Some(t), Some(expire)) = (&transition, expire_days)
        && expire <= t.days
    {
        p.add(
            "archive.lifecycle.expire_days",
            &format!(
                "{expire} days is not after transition_days ({}): objects would expire before they move to {}",
                t.days, t.storage_class
            ),
        );
    }
    if let Some(retention) = retention {
        lifecycle_within_retention(expire_days, noncurrent_expire_days, retention, p);
    }
    Some(Lifecycle {
        transition,
        expire_days,
        noncurrent_expire_days,
    })
}

/// trailhub's lifecycle transition: `transition_days` and `storage_class` together, a class a
/// lifecycle rule can move to, no sooner than S3 allows.
fn lifecycle_transition(table: &RawLifecycle, p: &mut Problems) -> Option<Transition> {
    let days_at = "archive.lifecycle.transition_days";
    let class_at = "archive.lifecycle.storage_class";
    let transition_days = p.positive(&table.transition_days, days_at);
    let storage_class = p.string(&table.storage_class, class_at);
    if let Some(class) = &storage_class {
        p.check(class_at, names::lifecycle_storage_class(class));
    }
    let transition = match (table.transition_days.is_present(), &storage_class) {
        (true, None) if !table.storage_class.is_present() => {
            p.add(
                class_at,
                "is required with transition_days (e.g. \"GLACIER_IR\")",
            );
            None
        }
        (false, Some(_)) => {
            p.add(days_at, "is required with storage_class");
            None
        }
        (_, Some(class)) => transition_days.map(|days| Transition {
            days,
            storage_class: class.clone(),
        }),
        (_, None) => None,
    };
    // S3 moves objects to STANDARD_IA or ONEZONE_IA no sooner than 30 days after they were
    // written; the other classes take any number of days. (The API Reference's `Transition` says
    // "greater than 30", the User Guide's transition constraints "at least 30 days" and its
    // examples transition after 30: 30 is accepted here, and S3 has the last word at apply.)
    if let Some(t) = &transition
        && ["STANDARD_IA", "ONEZONE_IA"].contains(&t.storage_class.as_str())
        && t.days < 30
    {
        p.add(
            days_at,
            &format!(
                "S3 moves objects to {} no sooner than 30 days after they were written, not {}",
                t.storage_class, t.days
            ),
        );
    }
    transition
}

/// An expiry shorter than the retention would ask S3 to delete what Object Lock keeps.
fn lifecycle_within_retention(
    expire_days: Option<i32>,
    noncurrent_expire_days: Option<i32>,
    retention: &Retention,
    p: &mut Problems,
) {
    for (key, days) in [
        ("expire_days", expire_days),
        ("noncurrent_expire_days", noncurrent_expire_days),
    ] {
        if let Some(days) = days
            && i64::from(days) < retention.period.days()
        {
            p.add(
                &format!("archive.lifecycle.{key}"),
                &format!(
                    "{days} days is shorter than archive.retention ({} {}, {} days): S3 would be asked to expire logs that Object Lock still retains; set it to at least {} or shorten the retention",
                    retention.mode.as_str(),
                    retention.period,
                    retention.period.days(),
                    retention.period.days()
                ),
            );
        }
    }
}

/// `[source_defaults]`, if it is a table.
fn defaults<'a>(field: &'a Field<RawSource>, p: &mut Problems) -> Option<&'a RawSource> {
    match field {
        Field::Given(defaults) => {
            if defaults.account_id.is_present() {
                p.add(
                    "source_defaults.account_id",
                    "cannot be a default: every [[source]] names its own",
                );
            }
            p.unknown_keys(&defaults.unknown, SOURCE_KEYS, "source_defaults.");
            Some(defaults)
        }
        Field::Wrong(_) => {
            p.add("source_defaults", "must be a table ([source_defaults])");
            None
        }
        Field::Absent => None,
    }
}

/// The `[[source]]` tables in file order; an entry that is not a table is reported and left out
/// (and the tables after it are numbered without it, as they always were).
fn source_tables<'a>(
    field: &'a Field<Vec<Field<RawSource>>>,
    p: &mut Problems,
) -> Vec<&'a RawSource> {
    const AT_LEAST_ONE: &str = "at least one [[source]] with an account_id is required";
    match field {
        Field::Absent => {
            p.add("source", AT_LEAST_ONE);
            Vec::new()
        }
        Field::Wrong(_) => {
            p.add("source", "must be an array of tables ([[source]])");
            Vec::new()
        }
        Field::Given(list) => {
            let mut tables = Vec::new();
            for (i, entry) in list.iter().enumerate() {
                match entry {
                    Field::Given(table) => tables.push(table),
                    Field::Wrong(_) | Field::Absent => {
                        p.add(&format!("source[{i}]"), "must be a table ([[source]])");
                    }
                }
            }
            if tables.is_empty() {
                p.add("source", &format!("is empty: {AT_LEAST_ONE}"));
            }
            tables
        }
    }
}

/// What the check of each `[[source]]` shares: the defaults, the archive, the ids and buckets
/// already taken, and the sources checked so far.
struct Sources<'a> {
    defaults: &'a RawSource,
    archive_id: &'a str,
    partition: &'a str,
    /// Each account id, and the first source that has it.
    ids: BTreeMap<String, usize>,
    /// Each bucket, and what it is the bucket of.
    buckets: BTreeMap<String, String>,
    specs: Vec<SourceSpec>,
}

impl<'a> Sources<'a> {
    fn new(defaults: &'a RawSource, archive: &'a ArchiveSpec, partition: &'a str) -> Self {
        Sources {
            defaults,
            archive_id: &archive.account_id,
            partition,
            ids: BTreeMap::new(),
            buckets: BTreeMap::from([(archive.bucket.clone(), "the archive".to_string())]),
            specs: Vec::new(),
        }
    }

    /// Checks `source[i]` with its defaults applied, and keeps it.
    fn check(&mut self, i: usize, own: &RawSource, p: &mut Problems) {
        let at = format!("source[{i}].");
        p.unknown_keys(&own.unknown, SOURCE_KEYS, &at);
        let id = p.account(&own.account_id, &format!("{at}account_id"));
        self.claim_id(i, &at, &id, p);
        let keys = Keys {
            own,
            defaults: self.defaults,
            at: &at,
            account: &id,
        };
        let (bucket, bucket_at) = keys.text(
            p,
            |s| &s.bucket,
            "bucket",
            "cm-members-cloudtrail-{account_id}",
        );
        if !id.is_empty() {
            p.check(&bucket_at, names::bucket(&bucket));
            self.claim_bucket(i, &at, &bucket, p);
        }
        let spec = SourceSpec {
            bucket,
            trail: keys.trail(p),
            role_name: keys.name(
                p,
                |s| &s.role_name,
                "role_name",
                "S3ReplicationRole",
                names::role_name,
            ),
            stack_name: keys.name(
                p,
                |s| &s.stack_name,
                "stack_name",
                "cloudtrail-replication-role",
                names::stack_name,
            ),
            prefix: keys.prefix(p),
            region: keys.region(p),
            trust_conditions: keys.trust_conditions(p),
            existing_replication: keys.existing_replication(p),
            storage_class: keys.name(
                p,
                |s| &s.storage_class,
                "storage_class",
                "STANDARD_IA",
                names::storage_class,
            ),
            replication_time_control: keys.replication_time_control(p),
            credentials: keys.credentials(p, self.partition),
            account_id: id,
        };
        self.specs.push(spec);
    }

    fn claim_id(&mut self, i: usize, at: &str, id: &str, p: &mut Problems) {
        if id.is_empty() {
            return;
        }
        let key = format!("{at}account_id");
        if id == self.archive_id {
            p.add(
                &key,
                &format!("`{id}` is the archive account; the archive is not a source"),
            );
        }
        if let Some(first) = self.ids.insert(id.to_string(), i) {
            p.add(
                &key,
                &format!("`{id}` is listed twice (also source[{first}])"),
            );
        }
    }

    fn claim_bucket(&mut self, i: usize, at: &str, bucket: &str, p: &mut Problems) {
        if let Some(owner) = self
            .buckets
            .insert(bucket.to_string(), format!("source[{i}]"))
        {
            p.add(
                &format!("{at}bucket"),
                &format!("`{bucket}` is also the bucket of {owner}"),
            );
        }
    }
}

/// One source's keys: each its own value if it sets the key, else the default's.
struct Keys<'a> {
    own: &'a RawSource,
    defaults: &'a RawSource,
    /// `source[i].`
    at: &'a str,
    /// The source's account id, what `{account_id}` stands for (`""` if it is not valid).
    account: &'a str,
}

impl<'a> Keys<'a> {
    /// The key's value, and the key its problems are reported under: the source's own, or
    /// `source_defaults.KEY` when inherited (one mistake in the defaults, one message).
    fn get<T>(&self, pick: fn(&RawSource) -> &Field<T>, name: &str) -> (&'a Field<T>, String) {
        let own = pick(self.own);
        if own.is_present() {
            (own, format!("{}{name}", self.at))
        } else {
            (pick(self.defaults), format!("source_defaults.{name}"))
        }
    }

    /// A string key with `{account_id}` expanded, or `fallback` (expanded too) when it is not
    /// set or not a string; and the key its problems are reported under.
    fn text(
        &self,
        p: &mut Problems,
        pick: fn(&RawSource) -> &Field<String>,
        name: &str,
        fallback: &str,
    ) -> (String, String) {
        let (field, at) = self.get(pick, name);
        let value = p
            .template(field, &at, self.account)
            .unwrap_or_else(|| fallback.replace("{account_id}", self.account));
        (value, at)
    }

    /// A string key as [`Self::text`] gives it, checked by `valid`.
    fn name(
        &self,
        p: &mut Problems,
        pick: fn(&RawSource) -> &Field<String>,
        name: &str,
        fallback: &str,
        valid: fn(&str) -> Result<(), String>,
    ) -> String {
        let (value, at) = self.text(p, pick, name, fallback);
        p.check(&at, valid(&value));
        value
    }

    /// The key prefix the trails must use, when the inventory sets one.
    fn prefix(&self, p: &mut Problems) -> Option<String> {
        let (field, at) = self.get(|s| &s.prefix, "prefix");
        let prefix = p.template(field, &at, self.account)?;
        p.check(&at, literal_prefix(&prefix));
        Some(prefix)
    }

    /// The bucket's region, when the inventory pins it.
    fn region(&self, p: &mut Problems) -> Option<String> {
        let (field, at) = self.get(|s| &s.region, "region");
        let region = p.string(field, &at)?;
        p.check(&at, names::region(&region));
        Some(region)
    }

    /// Whether the role's trust policy carries the confused-deputy conditions (opt-in).
    fn trust_conditions(&self, p: &mut Problems) -> bool {
        let (field, at) = self.get(|s| &s.trust_conditions, "trust_conditions");
        match field {
            Field::Absent => false,
            Field::Given(on) => *on,
            Field::Wrong(_) => {
                p.add(&at, "must be true or false");
                false
            }
        }
    }

    /// What to do with replication rules that are not trailhub's (`refuse` unless set).
    fn existing_replication(&self, p: &mut Problems) -> ExistingReplication {
        let (field, at) = self.get(|s| &s.existing_replication, "existing_replication");
        let choice = p.string(field, &at);
        match choice.as_deref() {
            None | Some("refuse") => ExistingReplication::Refuse,
            Some("merge") => ExistingReplication::Merge,
            Some(other) => {
                p.add(
                    &at,
                    &format!(
                        "`{other}` is not a choice; use \"refuse\" (the default) or \"merge\""
                    ),
                );
                ExistingReplication::Refuse
            }
        }
    }

    /// The trail to check, if any.
    fn trail(&self, p: &mut Problems) -> Option<String> {
        let (field, at) = self.get(|s| &s.trail, "trail");
        let trail = p.template(field, &at, self.account);
        if trail.as_deref() == Some("") {
            p.add(&at, "is empty; remove it to skip the trail check");
        }
        trail
    }

    fn replication_time_control(&self, p: &mut Problems) -> bool {
        let (field, at) = self.get(|s| &s.replication_time_control, "replication_time_control");
        match field {
            Field::Absent => true,
            Field::Given(on) => *on,
            Field::Wrong(_) => {
                p.add(&at, "must be true or false");
                true
            }
        }
    }

    /// `profile` and `assume_role` are one choice: a source that makes it replaces the
    /// default's. Its problems are reported under the source even when inherited, as they
    /// always were: a default role ARN is checked against each source's own account.
    fn credentials(&self, p: &mut Problems, partition: &str) -> Credentials {
        let choice = if self.own.profile.is_present() || self.own.assume_role.is_present() {
            self.own
        } else {
            self.defaults
        };
        let (profile, role) = (&choice.profile, &choice.assume_role);
        credentials(profile, role, self.at, self.account, partition, p)
    }
}

/// A prefix is a literal key prefix. S3 limits a replication rule's prefix to 1024 characters;
/// and least-privilege mode writes the prefix into the archive policy's `Resource`, where `*`
/// and `?` are wildcards and `$` begins a policy variable (`${aws:username}`), so a prefix
/// holding one would grant the source role keys that are not its own. They are refused in
/// every mode: a prefix must not mean one thing in the rule and another in the policy.
fn literal_prefix(prefix: &str) -> Result<(), String> {
    if prefix.len() > 1024 {
        return Err("is longer than 1024 characters".to_string());
    }
    let special: Vec<String> = ['*', '?', '$']
        .into_iter()
        .filter(|c| prefix.contains(*c))
        .map(|c| format!("`{c}`"))
        .collect();
    if special.is_empty() {
        return Ok(());
    }
    Err(format!(
        "`{prefix}` holds {}: a prefix is a literal key prefix, and in a bucket policy's \
         Resource `*` and `?` are wildcards and `$` begins a policy variable",
        special.join(" and ")
    ))
}

/// In accounts mode each role name has one statement, whose Sid keeps only the name's letters
/// and digits ([`accounts_sid`]). Two role names that differ only in other characters would
/// need two statements with one Sid: S3 refuses that policy, after the grants before it were
/// written. (Least-privilege Sids end in the account id, which is unique already.)
fn distinct_sids(specs: &[SourceSpec], p: &mut Problems) {
    let mut first: BTreeMap<String, (usize, &str)> = BTreeMap::new();
    for (i, spec) in specs.iter().enumerate() {
        if names::role_name(&spec.role_name).is_err() {
            continue;
        }
        let sid = accounts_sid(&spec.role_name);
        match first.get(&sid) {
            Some((j, name)) if *name != spec.role_name => p.add(
                &format!("source[{i}].role_name"),
                &format!(
                    "`{}` and `{name}` (source[{j}]) both make the accounts-mode Sid `{sid}` (a Sid \
                     keeps only letters and digits); use one role name, or names that differ in \
                     a letter or digit",
                    spec.role_name
                ),
            ),
            Some(_) => {}
            None => {
                first.insert(sid, (i, &spec.role_name));
            }
        }
    }
}

/// The credentials `profile` or `assume_role` choose, reported under `at`.
fn credentials(
    profile: &Field<String>,
    assume_role: &Field<String>,
    at: &str,
    account: &str,
    partition: &str,
    p: &mut Problems,
) -> Credentials {
    let profile_at = format!("{at}profile");
    let role_at = format!("{at}assume_role");
    let profile = p.template(profile, &profile_at, account);
    let role = p.template(assume_role, &role_at, account);
    match (profile, role) {
        (Some(_), Some(_)) => {
            p.add(
                &profile_at,
                "set either `profile` or `assume_role`, not both",
            );
            Credentials::Default
        }
        (Some(name), None) => {
            p.check(&profile_at, names::profile(&name));
            Credentials::Profile(name)
        }
        (None, Some(arn)) => {
            match names::role_arn(&arn, partition) {
                Ok(in_arn) if !account.is_empty() && in_arn != account => p.add(
                    &role_at,
                    &format!("`{arn}` is a role in account {in_arn}, not in {account}"),
                ),
                Ok(_) => {}
                Err(e) => p.add(&role_at, &e),
            }
            Credentials::AssumeRole(arn)
        }
        (None, None) => Credentials::Default,
    }
}

/// Every problem found so far, `key: message`, each once.
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

    /// `Ok` if nothing was found, else every problem, sorted by key.
    fn finish(self) -> Result<(), Vec<String>> {
        if self.0.is_empty() {
            return Ok(());
        }
        let mut problems: Vec<String> = self.0.into_iter().collect();
        problems.sort_by_key(|p| natural_key(p));
        Err(problems)
    }

    fn unknown_keys(&mut self, unknown: &UnknownKeys, known: &[&str], at: &str) {
        for key in unknown.keys() {
            self.add(
                &format!("{at}{key}"),
                &format!("unknown key; known keys here: {}", known.join(", ")),
            );
        }
    }

    fn string(&mut self, field: &Field<String>, key: &str) -> Option<String> {
        match field {
            Field::Absent => None,
            Field::Given(s) => Some(s.clone()),
            Field::Wrong(other) => {
                self.add(key, &format!("must be a string, not {}", other.type_str()));
                None
            }
        }
    }

    /// A string with `{account_id}` expanded; other placeholders are errors.
    fn template(&mut self, field: &Field<String>, key: &str, account: &str) -> Option<String> {
        let raw = self.string(field, key)?;
        let mut rest = raw.as_str();
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            match after.find('}') {
                Some(close) if &after[..close] == "account_id" => rest = &after[close + 1..],
                Some(close) => {
                    self.add(
                        key,
                        &format!(
                            "unknown placeholder `{{{}}}`; only {{account_id}} is defined",
                            &after[..close]
                        ),
                    );
                    break;
                }
                None => {
                    self.add(key, "has an unclosed `{`");
                    break;
                }
            }
        }
        Some(raw.replace("{account_id}", account))
    }

    /// A positive whole number that fits S3's 32-bit fields (days, years), or `None` with the
    /// problem recorded (or when the key is absent).
    fn positive(&mut self, field: &Field<i64>, key: &str) -> Option<i32> {
        let problem = match field {
            Field::Absent => return None,
            Field::Given(n) => match i32::try_from(*n) {
                Ok(n) if n > 0 => return Some(n),
                _ => format!("must be a positive integer, not {n}"),
            },
            Field::Wrong(other) => format!("must be a positive integer, not {}", other.type_str()),
        };
        self.add(key, &problem);
        None
    }

    /// A valid account id, or `""` with the problem recorded.
    fn account(&mut self, field: &Field<String>, key: &str) -> String {
        let problem = match field {
            Field::Given(id) => match names::account_id(id) {
                Ok(()) => return id.clone(),
                Err(e) => e,
            },
            Field::Wrong(Value::Integer(n)) => {
                format!("write the account id as a string, \"{n:012}\" (an id may begin with 0)")
            }
            Field::Wrong(other) => format!("must be a 12-digit string, not {}", other.type_str()),
            Field::Absent => "is required".to_string(),
        };
        self.add(key, &problem);
        String::new()
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
