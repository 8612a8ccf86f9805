//! The inventory as the TOML file gives it, before any check: serde structs whose every key is a
//! lenient [`Field`], so that deserializing never fails on content, only on TOML syntax.

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny};
use std::collections::BTreeMap;
use toml::Value;
use toml::value::Datetime;
use trailhub_steps::PolicyMode;

/// Keys of the top level.
pub(super) const TOP_KEYS: &[&str] = &["region", "policy", "archive", "source_defaults", "source"];
/// Keys of `[archive]`.
pub(super) const ARCHIVE_KEYS: &[&str] = &[
    "account_id",
    "assume_role",
    "profile",
    "bucket",
    "kms_key",
    "retention",
    "lifecycle",
];
/// Keys of `[archive] retention`.
pub(super) const RETENTION_KEYS: &[&str] = &["mode", "days", "years"];
/// Keys of `[archive] lifecycle`.
pub(super) const LIFECYCLE_KEYS: &[&str] = &[
    "transition_days",
    "storage_class",
    "expire_days",
    "noncurrent_expire_days",
];
/// Keys of `[source_defaults]` and of each `[[source]]`.
pub(super) const SOURCE_KEYS: &[&str] = &[
    "account_id",
    "bucket",
    "trail",
    "role_name",
    "stack_name",
    "prefix",
    "region",
    "trust_conditions",
    "existing_replication",
    "storage_class",
    "replication_time_control",
    "assume_role",
    "profile",
];

/// Keys a table has beyond its fields, collected by `#[serde(flatten)]` rather than refused, so
/// that every unknown key of every table is reported, each with the table's known keys.
pub(super) type UnknownKeys = BTreeMap<String, IgnoredAny>;

/// One key's value: absent, of the type the key takes, or of another type. A value of another
/// type is kept rather than refused, so that one wrong value does not hide the rest of the
/// file's problems, and so that its message can name what was written (the account id given
/// as an integer, the policy name that is not one).
#[derive(Debug, Default)]
pub(super) enum Field<T> {
    /// The key is not in its table.
    #[default]
    Absent,
    /// The key's value, of the type it takes.
    Given(T),
    /// The key's value, of a type it does not take.
    Wrong(Value),
}

impl<T> Field<T> {
    /// Whether the key is in its table, whatever its value.
    pub(super) fn is_present(&self) -> bool {
        !matches!(self, Field::Absent)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Tried in order on the value, buffered by serde (untagged). The buffer keeps a date as
        /// TOML's deserializer gives it (a map with one private key), so it is still a date in
        /// a table nested inside the value; `toml::Value`'s own deserializer would turn it into
        /// a string, and `bucket = 2024-01-01` would then pass as a name. `Other` takes every
        /// TOML value, so nothing fails here but an integer beyond 64 bits, which TOML forbids.
        #[derive(Deserialize)]
        #[serde(untagged, expecting = "an integer out of TOML's range (64-bit signed)")]
        enum Lenient<T> {
            /// First, or a table would read a date as a table with one unknown key.
            Date(Datetime),
            Given(T),
            Other(Value),
        }
        Ok(match Lenient::deserialize(deserializer)? {
            Lenient::Date(date) => Field::Wrong(Value::Datetime(date)),
            Lenient::Given(given) => Field::Given(given),
            Lenient::Other(value) => Field::Wrong(value),
        })
    }
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawInventory {
    pub(super) region: Field<String>,
    pub(super) policy: Field<PolicyMode>,
    pub(super) archive: Field<RawArchive>,
    pub(super) source_defaults: Field<RawSource>,
    pub(super) source: Field<Vec<Field<RawSource>>>,
    #[serde(flatten)]
    pub(super) unknown: UnknownKeys,
}

/// `[archive]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawArchive {
    pub(super) account_id: Field<String>,
    pub(super) assume_role: Field<String>,
    pub(super) profile: Field<String>,
    pub(super) bucket: Field<String>,
    pub(super) kms_key: Field<String>,
    pub(super) retention: Field<RawRetention>,
    pub(super) lifecycle: Field<RawLifecycle>,
    #[serde(flatten)]
    pub(super) unknown: UnknownKeys,
}

/// `[archive] retention = { mode = "…", days = N }` (or `years = N`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawRetention {
    pub(super) mode: Field<String>,
    pub(super) days: Field<i64>,
    pub(super) years: Field<i64>,
    #[serde(flatten)]
    pub(super) unknown: UnknownKeys,
}

/// `[archive] lifecycle = { transition_days = N, storage_class = "…", expire_days = N,
/// noncurrent_expire_days = N }`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawLifecycle {
    pub(super) transition_days: Field<i64>,
    pub(super) storage_class: Field<String>,
    pub(super) expire_days: Field<i64>,
    pub(super) noncurrent_expire_days: Field<i64>,
    #[serde(flatten)]
    pub(super) unknown: UnknownKeys,
}

/// `[source_defaults]` or one `[[source]]`: the same keys (a default `account_id` is refused
/// by the validation, with its own message).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawSource {
    pub(super) account_id: Field<String>,
    pub(super) bucket: Field<String>,
    pub(super) trail: Field<String>,
    pub(super) role_name: Field<String>,
    pub(super) stack_name: Field<String>,
    pub(super) prefix: Field<String>,
    pub(super) region: Field<String>,
    pub(super) trust_conditions: Field<bool>,
    pub(super) existing_replication: Field<String>,
    pub(super) storage_class: Field<String>,
    pub(super) replication_time_control: Field<bool>,
    pub(super) assume_role: Field<String>,
    pub(super) profile: Field<String>,
    #[serde(flatten)]
    pub(super) unknown: UnknownKeys,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table with every one of `keys`, each set to a string.
    fn table_of(keys: &[&str]) -> String {
        keys.iter()
            .map(|k| format!("{k} = \"x\"\n"))
            .collect::<String>()
    }

    #[test]
    fn the_listed_keys_are_the_structs_fields() {
        let archive: RawArchive = toml::from_str(&table_of(ARCHIVE_KEYS)).expect("lenient");
        assert!(archive.unknown.is_empty(), "{:?}", archive.unknown);
        let source: RawSource = toml::from_str(&table_of(SOURCE_KEYS)).expect("lenient");
        assert!(source.unknown.is_empty(), "{:?}", source.unknown);
        let top: RawInventory = toml::from_str(&table_of(TOP_KEYS)).expect("lenient");
        assert!(top.unknown.is_empty(), "{:?}", top.unknown);
        let retention: RawRetention = toml::from_str(&table_of(RETENTION_KEYS)).expect("lenient");
        assert!(retention.unknown.is_empty(), "{:?}", retention.unknown);
        let lifecycle: RawLifecycle = toml::from_str(&table_of(LIFECYCLE_KEYS)).expect("lenient");
        assert!(lifecycle.unknown.is_empty(), "{:?}", lifecycle.unknown);
    }

    #[test]
    fn a_wrong_value_is_kept_and_the_rest_still_read() {
        let raw: RawInventory = toml::from_str(
            "region = 1\npolicy = \"strict\"\narchive = \"x\"\ncolour = 2\n\
             [[source]]\naccount_id = 3\nbucket = 2024-01-01\nreplication_time_control = \"no\"\n\
             [[source]]\naccount_id = \"222222222222\"\n",
        )
        .expect("lenient");
        assert!(matches!(raw.region, Field::Wrong(Value::Integer(1))));
        assert!(matches!(raw.policy, Field::Wrong(Value::String(_))));
        assert!(matches!(raw.archive, Field::Wrong(Value::String(_))));
        assert_eq!(raw.unknown.keys().collect::<Vec<_>>(), ["colour"]);
        let Field::Given(sources) = &raw.source else {
            panic!("{:?}", raw.source);
        };
        let Field::Given(first) = &sources[0] else {
            panic!("{sources:?}");
        };
        assert!(matches!(first.account_id, Field::Wrong(Value::Integer(3))));
        assert!(matches!(first.bucket, Field::Wrong(Value::Datetime(_))));
        assert!(matches!(first.replication_time_control, Field::Wrong(_)));
        let Field::Given(second) = &sources[1] else {
            panic!("{sources:?}");
        };
        assert!(matches!(&second.account_id, Field::Given(id) if id == "222222222222"));
    }
}
