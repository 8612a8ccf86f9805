//! Fuzzes the inventory parser, `trailhub_workflows::parse(text, "fuzz")`.
//!
//! The first byte of the input chooses the mode:
//! - even: the rest, as UTF-8 (lossily), is the inventory text as is;
//! - odd: the rest drives `arbitrary` to build an inventory-shaped TOML table (each known key
//!   absent, valid for its key, often a `{account_id}` template, or a raw value made of near
//!   misses; account ids from a pool of five), serialized with `toml`, so that inputs get past
//!   the TOML syntax, reach the validation, and are often valid.
//!
//! Properties: `parse` never panics; an error renders; and when it returns `Ok`:
//! - the archive's and every source's account id is 12 ASCII digits;
//! - no source has the archive's account id, and no two sources share one;
//! - every bucket name (the archive's and the sources') passes S3's naming rules, checked here
//!   independently of the project's own check, and no two of them are the same;
//! - a role to assume is a role ARN in the account's own id and partition; a profile is a
//!   non-empty name; role, stack and storage class names are non-empty;
//! - there is at least one source (the parser's own message: "at least one [[source]]");
//! - the partition agrees with the region, `text` is the input, and parsing is deterministic.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeSet;
use toml::{Table, Value};
use trailhub_steps::Credentials;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let mut u = Unstructured::new(rest);
        let Ok(doc) = Doc::arbitrary(&mut u) else {
            return;
        };
        match toml::to_string(&doc.table()) {
            Ok(text) => text,
            Err(_) => return,
        }
    };
    check(&text);
});

fn check(text: &str) {
    let result = trailhub_workflows::parse(text, "fuzz");
    let inv = match result {
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.starts_with("inventory fuzz "), "{shown}");
            if let trailhub_workflows::InventoryError::Invalid { problems, .. } = &e {
                assert!(!problems.is_empty(), "an Invalid error with no problem");
            }
            return;
        }
        Ok(inv) => inv,
    };
    assert_eq!(inv.text, text, "the inventory keeps its text");
    let again = trailhub_workflows::parse(text, "fuzz").expect("parsed once, parses again");
    assert_eq!(again, inv, "parse is deterministic");

    let expected_partition = if inv.region.starts_with("cn-") {
        "aws-cn"
    } else if inv.region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    };
    assert!(!inv.region.is_empty(), "valid with no region");
    assert_eq!(inv.partition, expected_partition, "region {}", inv.region);

    let archive = &inv.archive;
    assert!(
        is_account_id(&archive.account_id),
        "archive id {:?}",
        archive.account_id
    );
    assert_bucket(&archive.bucket);
    assert_credentials(&archive.credentials, &archive.account_id, &inv.partition);

    // Finding 4 (fixed in c875cf6): `source = []` passed with no source.
    assert!(!inv.sources.is_empty(), "valid with no source");
    let mut ids = BTreeSet::new();
    let mut buckets = BTreeSet::from([archive.bucket.as_str()]);
    for s in &inv.sources {
        assert!(is_account_id(&s.account_id), "source id {:?}", s.account_id);
        assert_ne!(s.account_id, archive.account_id, "the archive is a source");
        assert!(
            ids.insert(s.account_id.as_str()),
            "source {} twice",
            s.account_id
        );
        assert_bucket(&s.bucket);
        assert!(
            buckets.insert(s.bucket.as_str()),
            "bucket {} used twice",
            s.bucket
        );
        assert!(!s.role_name.is_empty() && !s.stack_name.is_empty());
        assert!(!s.storage_class.is_empty());
        assert!(s.trail.as_deref() != Some(""), "empty trail accepted");
        assert!(s.prefix.len() <= 1024);
        assert_credentials(&s.credentials, &s.account_id, &inv.partition);
    }
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// S3's naming rules for general purpose buckets, as AWS documents them.
fn assert_bucket(name: &str) {
    let b = name.as_bytes();
    assert!((3..=63).contains(&b.len()), "bucket {name:?}: length");
    assert!(
        b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-'),
        "bucket {name:?}: characters"
    );
    assert!(
        b[0].is_ascii_alphanumeric() && b[b.len() - 1].is_ascii_alphanumeric(),
        "bucket {name:?}: first or last character"
    );
    assert!(!name.contains(".."), "bucket {name:?}: adjacent dots");
    let parts: Vec<&str> = name.split('.').collect();
    assert!(
        !(parts.len() == 4 && parts.iter().all(|p| p.parse::<u8>().is_ok())),
        "bucket {name:?}: an IP address"
    );
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        assert!(
            !name.starts_with(prefix),
            "bucket {name:?}: reserved prefix"
        );
    }
    for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        assert!(!name.ends_with(suffix), "bucket {name:?}: reserved suffix");
    }
}

fn assert_credentials(c: &Credentials, account: &str, partition: &str) {
    match c {
        Credentials::Default => {}
        Credentials::Profile(p) => {
            assert!(
                !p.is_empty() && !p.contains(char::is_whitespace),
                "profile {p:?}"
            );
        }
        Credentials::AssumeRole(arn) => {
            let prefix = format!("arn:{partition}:iam::{account}:role/");
            let name = arn.strip_prefix(&prefix);
            assert!(
                name.is_some_and(|n| !n.is_empty()),
                "role {arn:?} is not a role of {account} in {partition}"
            );
        }
    }
}

// ---- The structured mode: an inventory-shaped document. ----
//
// Every key is absent, a value that is valid for it (often a template with `{account_id}`), or
// a raw value (a string made of pieces, an integer, a boolean, an empty array or table), in
// roughly 7 : 8 : 1 proportions (account ids and the region mostly valid, profile and
// assume_role mostly absent), so that many documents are valid and the rest are wrong in one
// or two places. Account ids come from a pool of five, so sources repeat and meet the archive.
// `source_defaults` has an `account_id` (an error) only rarely; `[archive]` only its own keys.

#[derive(Debug, Arbitrary)]
struct Doc {
    region: Often,
    policy: Field,
    archive: Option<Section>,
    source_defaults: Option<Section>,
    defaults_account: Rare<Val>,
    sources: Option<Vec<Section>>,
    /// A top-level unknown key, `archive = "x"`, a source that is not a table…
    oddity: Rare<(Oddity, Val)>,
}

#[derive(Debug, Arbitrary)]
enum Oddity {
    UnknownTopKey,
    ArchiveNotTable,
    SourceDefaultsNotTable,
    SourceNotArray,
    SourceItemNotTable,
}

#[derive(Debug, Arbitrary)]
struct Section {
    account_id: Often,
    bucket: Field,
    trail: Field,
    role_name: Field,
    stack_name: Field,
    prefix: Field,
    storage_class: Field,
    replication_time_control: Field,
    assume_role: Seldom,
    profile: Seldom,
    unknown: Rare<Val>,
}

/// A key's value: absent when the selector byte is below `GOOD`, raw from `RAW` on, else valid.
#[derive(Debug)]
enum Field<const GOOD: u8 = 112, const RAW: u8 = 240> {
    Absent,
    Good(u8),
    Raw(Val),
}

/// Mostly present and valid (account ids, the region).
type Often = Field<16, 240>;
/// Mostly absent (profile and assume_role: both at once is an error).
type Seldom = Field<192, 248>;

impl<'a, const GOOD: u8, const RAW: u8> Arbitrary<'a> for Field<GOOD, RAW> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        // An exhausted input reads as zeros: absent.
        let sel = u8::arbitrary(u)?;
        Ok(if sel < GOOD {
            Field::Absent
        } else if sel < RAW {
            Field::Good(u.arbitrary()?)
        } else {
            Field::Raw(u.arbitrary()?)
        })
    }
}

/// Present one time in sixteen.
#[derive(Debug)]
struct Rare<T>(Option<T>);

impl<'a, T: Arbitrary<'a>> Arbitrary<'a> for Rare<T> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Rare(if u8::arbitrary(u)? >= 240 {
            Some(u.arbitrary()?)
        } else {
            None
        }))
    }
}

#[derive(Debug, Arbitrary)]
enum Val {
    Str(Vec<Piece>),
    Int(i64),
    Bool(bool),
    EmptyArray,
    EmptyTable,
}

/// A piece of a raw string; the string is the concatenation of its pieces.
#[derive(Debug, Arbitrary)]
enum Piece {
    Account(u8),
    Word(u8),
    Placeholder,
    OtherPlaceholder,
    Open,
    Close,
    Free(String),
}

const REGIONS: &[&str] = &[
    "ap-northeast-1",
    "us-east-1",
    "eu-west-1",
    "cn-north-1",
    "us-gov-west-1",
];
const POLICIES: &[&str] = &["article", "least-privilege", "accounts"];
const ACCOUNTS: &[&str] = &[
    "111111111111",
    "222222222222",
    "333333333333",
    "444444444444",
    "012345678901",
];
const BUCKETS: &[&str] = &[
    "cm-members-cloudtrail-{account_id}",
    "aggregation-cloudtrail-logs-{account_id}",
    "logs.{account_id}.example",
    "shared-cloudtrail-bucket",
    "{account_id}",
];
const TRAILS: &[&str] = &["Members", "trail-{account_id}"];
const ROLE_NAMES: &[&str] = &["S3ReplicationRole", "Repl_{account_id}+x=y,z.w@v-u"];
const STACK_NAMES: &[&str] = &["cloudtrail-replication-role", "Stack-{account_id}"];
const PREFIXES: &[&str] = &["AWSLogs/", "", "logs/{account_id}/"];
const STORAGE_CLASSES: &[&str] = &["STANDARD_IA", "GLACIER", "STANDARD", "DEEP_ARCHIVE"];
const ROLE_ARNS: &[&str] = &[
    "arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole",
    "arn:aws:iam::{account_id}:role/path/Admin",
    "arn:aws:iam::111111111111:role/Admin",
    "arn:aws-cn:iam::{account_id}:role/path/to/Admin",
    "arn:aws-us-gov:iam::{account_id}:role/Admin",
];
const PROFILES: &[&str] = &["member-{account_id}", "default"];

/// Pieces of raw strings: near misses of the values above.
const WORDS: &[&str] = &[
    "mars-north-1",
    "ap-northeast-1",
    "cm-members-cloudtrail-",
    "arn:aws:iam::",
    "arn:aws-iso:iam::",
    ":role/",
    ":user/",
    "S3ReplicationRole",
    "AWSLogs/",
    "STANDARD_IA",
    "CHEAP",
    "a",
    "ab",
    "Z",
    "-",
    ".",
    "..",
    ".-",
    "_",
    "/",
    " ",
    "[",
    "1111111111",
    "192.168.1.1",
    "1.2.3",
    "xn--",
    "sthree-",
    "amzn-s3-demo-",
    "-s3alias",
    "--ol-s3",
    ".mrap",
    "--x-s3",
    "--table-s3",
];
const BAD_ACCOUNTS: &[&str] = &[
    "1234",
    "11111111111a",
    "1111111111111",
    "１１１１１１１１１１１１",
];

fn pick(list: &[&str], i: u8) -> String {
    list[i as usize % list.len()].to_string()
}

impl Val {
    fn to_value(&self) -> Value {
        match self {
            Val::Str(pieces) => {
                let mut s = String::new();
                for p in pieces {
                    match p {
                        Piece::Account(i) if i % 2 == 0 => s.push_str(&pick(ACCOUNTS, i / 2)),
                        Piece::Account(i) => s.push_str(&pick(BAD_ACCOUNTS, i / 2)),
                        Piece::Word(i) => s.push_str(&pick(WORDS, *i)),
                        Piece::Placeholder => s.push_str("{account_id}"),
                        Piece::OtherPlaceholder => s.push_str("{account}"),
                        Piece::Open => s.push('{'),
                        Piece::Close => s.push('}'),
                        Piece::Free(f) => s.push_str(f),
                    }
                }
                Value::String(s)
            }
            Val::Int(n) => Value::Integer(*n),
            Val::Bool(b) => Value::Boolean(*b),
            Val::EmptyArray => Value::Array(Vec::new()),
            Val::EmptyTable => Value::Table(Table::new()),
        }
    }
}

impl<const GOOD: u8, const RAW: u8> Field<GOOD, RAW> {
    /// The field's value, if present, where `good` is the list of valid values for its key.
    fn value(&self, good: &[&str]) -> Option<Value> {
        match self {
            Field::Absent => None,
            Field::Good(i) => Some(Value::String(pick(good, *i))),
            Field::Raw(v) => Some(v.to_value()),
        }
    }

    fn insert(&self, t: &mut Table, key: &str, good: &[&str]) {
        if let Some(v) = self.value(good) {
            t.insert(key.into(), v);
        }
    }
}

impl Section {
    fn table(&self) -> Table {
        let mut t = Table::new();
        self.account_id.insert(&mut t, "account_id", ACCOUNTS);
        self.bucket.insert(&mut t, "bucket", BUCKETS);
        self.trail.insert(&mut t, "trail", TRAILS);
        self.role_name.insert(&mut t, "role_name", ROLE_NAMES);
        self.stack_name.insert(&mut t, "stack_name", STACK_NAMES);
        self.prefix.insert(&mut t, "prefix", PREFIXES);
        self.storage_class
            .insert(&mut t, "storage_class", STORAGE_CLASSES);
        match &self.replication_time_control {
            Field::Absent => {}
            Field::Good(i) => {
                t.insert(
                    "replication_time_control".into(),
                    Value::Boolean(i % 2 == 0),
                );
            }
            Field::Raw(v) => {
                t.insert("replication_time_control".into(), v.to_value());
            }
        }
        self.assume_role.insert(&mut t, "assume_role", ROLE_ARNS);
        self.profile.insert(&mut t, "profile", PROFILES);
        if let Some(v) = &self.unknown.0 {
            t.insert("colour".into(), v.to_value());
        }
        t
    }
}

impl Doc {
    fn table(&self) -> Table {
        let mut t = Table::new();
        self.region.insert(&mut t, "region", REGIONS);
        self.policy.insert(&mut t, "policy", POLICIES);
        if let Some(s) = &self.archive {
            // The archive has only some of a source's keys (the others are unknown there).
            let mut a = s.table();
            let keys = ["account_id", "assume_role", "profile", "bucket", "colour"];
            a.retain(|k, _| keys.contains(&k));
            t.insert("archive".into(), Value::Table(a));
        }
        if let Some(s) = &self.source_defaults {
            let mut d = s.table();
            d.remove("account_id");
            if let Some(v) = &self.defaults_account.0 {
                d.insert("account_id".into(), v.to_value());
            }
            t.insert("source_defaults".into(), Value::Table(d));
        }
        if let Some(list) = &self.sources {
            let list = list.iter().map(|s| Value::Table(s.table())).collect();
            t.insert("source".into(), Value::Array(list));
        }
        if let Some((odd, v)) = &self.oddity.0 {
            let v = v.to_value();
            match odd {
                Oddity::UnknownTopKey => {
                    t.insert("colour".into(), v);
                }
                Oddity::ArchiveNotTable => {
                    t.insert("archive".into(), v);
                }
                Oddity::SourceDefaultsNotTable => {
                    t.insert("source_defaults".into(), v);
                }
                Oddity::SourceNotArray => {
                    t.insert("source".into(), v);
                }
                Oddity::SourceItemNotTable => {
                    if let Some(Value::Array(list)) = t.get_mut("source") {
                        list.push(v);
                    }
                }
            }
        }
        t
    }
}
