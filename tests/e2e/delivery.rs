//! Logs arrive (issue "Prove that the logs arrive"). For each policy mode and each layout the
//! steps support, `apply`, then a CloudTrail-shaped log is written into the source bucket as
//! CloudTrail writes it, and the SDK reads back what the emulator did with it: the emulator
//! replicates as the rule's role, deciding every request S3 makes with the policies AWS
//! evaluates (emulator/server.py, patches k–q). Delivered means: the same key in the archive,
//! `REPLICA`, in `STANDARD_IA`, locked as `[archive] retention` says, encrypted with the
//! archive's key when the log is SSE-KMS, and the source version `COMPLETED`.
//!
//! The three modes run side by side in one emulator, each with its own archive account and
//! seven source accounts, one per layout; the outcome of every (mode, layout) is printed as a
//! table, with the emulator's reason for each log that did not arrive.

use crate::support::article::archive_policy;
use crate::support::*;
use aws_sdk_s3::types::{
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule,
};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

/// Where and how a source account's logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// The article's: SSE-S3, `AWSLogs/`, the inventory's region.
    Plain,
    /// The trail writes under a key prefix (`org-logs/AWSLogs/…`).
    TrailPrefix,
    /// The trail encrypts with a KMS key of the account (SSE-KMS, no Bucket Key).
    TrailKms,
    /// The bucket's default encryption is SSE-KMS with a key of the account.
    BucketKms,
    /// The same with an S3 Bucket Key (AWS's advice for CloudTrail buckets).
    BucketKey,
    /// The bucket is in another region, its default key given as an alias, which in the
    /// inventory's region names another key.
    OtherRegion,
    /// The bucket already replicates to a DR copy; trailhub's rule is merged beside it.
    Merged,
}

pub(crate) const LAYOUTS: [Layout; 7] = [
    Layout::Plain,
    Layout::TrailPrefix,
    Layout::TrailKms,
    Layout::BucketKms,
    Layout::BucketKey,
    Layout::OtherRegion,
    Layout::Merged,
];

pub(crate) const REGION: &str = "ap-northeast-1";
const OTHER_REGION: &str = "us-east-1";
/// The day the tests' logs claim to be of.
const DAY: &str = "2026/12/01";

impl Layout {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Layout::Plain => "plain",
            Layout::TrailPrefix => "trail key prefix",
            Layout::TrailKms => "trail KMS key",
            Layout::BucketKms => "bucket default KMS",
            Layout::BucketKey => "bucket KMS + Bucket Key",
            Layout::OtherRegion => "bucket in another region",
            Layout::Merged => "existing rule merged",
        }
    }

    fn region(self) -> &'static str {
        if self == Layout::OtherRegion {
            OTHER_REGION
        } else {
            REGION
        }
    }

    fn prefix(self) -> &'static str {
        if self == Layout::TrailPrefix {
            "org-logs/AWSLogs/"
        } else {
            "AWSLogs/"
        }
    }

    fn kms(self) -> bool {
        matches!(
            self,
            Layout::TrailKms | Layout::BucketKms | Layout::BucketKey | Layout::OtherRegion
        )
    }
}

/// One policy mode's run: its archive account and its sources, one per layout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mode {
    pub(crate) policy: &'static str,
    pub(crate) archive: &'static str,
    pub(crate) first_source: u64,
}

pub(crate) const MODES: [Mode; 3] = [
    Mode {
        policy: "article",
        archive: "111111111111",
        first_source: 210_000_000_001,
    },
    Mode {
        policy: "least-privilege",
        archive: "111111111112",
        first_source: 220_000_000_001,
    },
    Mode {
        policy: "accounts",
        archive: "111111111113",
        first_source: 230_000_000_001,
    },
];

impl Mode {
    pub(crate) fn sources(self) -> Vec<(String, Layout)> {
        LAYOUTS
            .iter()
            .enumerate()
            .map(|(i, l)| ((self.first_source + i as u64).to_string(), *l))
            .collect()
    }

    pub(crate) fn archive_bucket(self) -> String {
        format!("aggregation-cloudtrail-logs-{}", self.archive)
    }

    /// The inventory: the mode, a one-day GOVERNANCE retention, every source following its
    /// trails (none pinned), the DR source merging.
    pub(crate) fn inventory(self) -> String {
        let mut text = format!(
            "region = \"{REGION}\"\npolicy = \"{}\"\n\n[archive]\naccount_id = \"{}\"\nprofile = \"acct-{}\"\n\n[archive.retention]\nmode = \"GOVERNANCE\"\ndays = 1\n\n[source_defaults]\nprofile = \"acct-{{account_id}}\"\n",
            self.policy, self.archive, self.archive
        );
        for (account, layout) in self.sources() {
            text.push_str(&format!("\n[[source]]\naccount_id = \"{account}\"\n"));
            if layout == Layout::Merged {
                text.push_str("existing_replication = \"merge\"\n");
            }
        }
        text
    }
}

/// A KMS key of `account` in `region` (the default key policy, which delegates to IAM).
fn key(emu: &Emulator, account: &str, region: &str) -> String {
    let kms = emu.kms_in(account, region);
    emu.rt.block_on(async {
        let key = kms.create_key().send().await.expect("create key");
        key.key_metadata().unwrap().arn().unwrap().to_string()
    })
}

fn alias(emu: &Emulator, account: &str, region: &str, name: &str, key: &str) {
    let kms = emu.kms_in(account, region);
    emu.rt.block_on(async {
        kms.create_alias()
            .alias_name(name)
            .target_key_id(key)
            .send()
            .await
            .expect("create alias");
    });
}

/// Gives `bucket` a default SSE-KMS encryption with `key` (an ARN, an alias or an id).
fn default_kms(emu: &Emulator, account: &str, region: &str, key: &str, bucket_key: bool) {
    let s3 = emu.s3_in(account, region);
    emu.rt.block_on(async {
        s3.put_bucket_encryption()
            .bucket(source_bucket(account))
            .server_side_encryption_configuration(
                ServerSideEncryptionConfiguration::builder()
                    .rules(
                        ServerSideEncryptionRule::builder()
                            .apply_server_side_encryption_by_default(
                                ServerSideEncryptionByDefault::builder()
                                    .sse_algorithm(ServerSideEncryption::AwsKms)
                                    .kms_master_key_id(key)
                                    .build()
                                    .unwrap(),
                            )
                            .bucket_key_enabled(bucket_key)
                            .build(),
                    )
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("default encryption");
    });
}

/// Seeds `account` as `layout` says: its bucket, its trail `Members` (logging), keys, default
/// encryption, a DR rule. Returns the key the trail encrypts with, if it does.
pub(crate) fn seed(emu: &Emulator, account: &str, layout: Layout) -> Option<String> {
    let bucket = source_bucket(account);
    let s3 = emu.s3_in(account, layout.region());
    emu.rt.block_on(async {
        let mut create = s3.create_bucket().bucket(&bucket);
        if layout.region() != "us-east-1" {
            create = create.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                        layout.region(),
                    ))
                    .build(),
            );
        }
        create.send().await.expect("create bucket");
    });
    let trail_key = match layout {
        Layout::TrailKms => Some(key(emu, account, REGION)),
        Layout::BucketKms | Layout::BucketKey => {
            let k = key(emu, account, REGION);
            default_kms(emu, account, REGION, &k, layout == Layout::BucketKey);
            None
        }
        Layout::OtherRegion => {
            // The same alias names a key in each region: S3 resolves the bucket's in its own.
            let there = key(emu, account, OTHER_REGION);
            alias(emu, account, OTHER_REGION, "alias/trail-logs", &there);
            let decoy = key(emu, account, REGION);
            alias(emu, account, REGION, "alias/trail-logs", &decoy);
            default_kms(emu, account, OTHER_REGION, "alias/trail-logs", false);
            None
        }
        Layout::Merged => {
            crate::ownership::dr_replication(emu, account);
            None
        }
        Layout::Plain | Layout::TrailPrefix => None,
    };
    let trail = emu.cloudtrail_in(account, REGION);
    emu.rt.block_on(async {
        trail
            .create_trail()
            .name("Members")
            .s3_bucket_name(&bucket)
            .set_s3_key_prefix((layout == Layout::TrailPrefix).then(|| "org-logs".to_string()))
            .set_kms_key_id(trail_key.clone())
            .send()
            .await
            .expect("create trail");
        trail
            .start_logging()
            .name("Members")
            .send()
            .await
            .expect("start logging");
    });
    trail_key
}

/// A log file's key as CloudTrail names it.
pub(crate) fn log_key(account: &str, layout: Layout, name: &str) -> String {
    format!(
        "{}{account}/CloudTrail/{REGION}/{DAY}/{account}_CloudTrail_{REGION}_20261201T0005Z_{name}.json.gz",
        layout.prefix()
    )
}

/// Writes a log as CloudTrail does: encrypted with the trail's key when it has one, else as
/// the bucket's default encryption says. `bucket_key: Some(false)` writes it without the
/// bucket's S3 Bucket Key (an object written before the Bucket Key was turned on).
pub(crate) fn write_log(
    emu: &Emulator,
    account: &str,
    layout: Layout,
    key: &str,
    trail_key: Option<&str>,
    bucket_key: Option<bool>,
) {
    let s3 = emu.s3_in(account, layout.region());
    emu.rt.block_on(async {
        let mut put = s3
            .put_object()
            .bucket(source_bucket(account))
            .key(key)
            .content_type("application/json")
            .content_encoding("gzip")
            .body(aws_sdk_s3::primitives::ByteStream::from_static(
                b"{\"Records\":[]}",
            ));
        if let Some(k) = trail_key {
            put = put
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(k);
        }
        if let Some(enabled) = bucket_key {
            put = put.bucket_key_enabled(enabled);
        }
        put.send().await.expect("put the log");
    });
}

/// The emulator's outcome for `key` replicated to `destination`, as its log says it.
pub(crate) fn event(emu: &Emulator, source: &str, key: &str, destination: &str) -> Option<Value> {
    emu.replication_log(source)
        .into_iter()
        .find(|e| e["key"] == key && e["destination_bucket"] == destination)
}

/// Whether the log `key` of `account` arrived in `mode`'s archive as it must; `Err` says why
/// not (the emulator's reason first).
fn delivered(
    emu: &Emulator,
    mode: Mode,
    account: &str,
    layout: Layout,
    key: &str,
) -> Result<(), String> {
    let archive = mode.archive_bucket();
    let bucket = source_bucket(account);
    let Some(e) = event(emu, &bucket, key, &archive) else {
        return Err("the emulator did not replicate it at all (no rule applied)".into());
    };
    if e["status"] != "COMPLETED" {
        let denied = &e["denied"];
        return Err(format!(
            "{}: {} {} denied by {} ({}){}",
            e["status"].as_str().unwrap_or("?"),
            denied["action"].as_str().unwrap_or("?"),
            denied["resource"].as_str().unwrap_or("?"),
            denied["policy"].as_str().unwrap_or("?"),
            denied["reason"].as_str().unwrap_or("?"),
            match denied["unmatched"].as_array() {
                Some(u) if !u.is_empty() => format!("; conditions not met: {}", json!(u)),
                _ => e["reason"]
                    .as_str()
                    .map(|r| format!("; {r}"))
                    .unwrap_or_default(),
            }
        ));
    }
    let (archive_s3, source_s3) = (
        emu.s3_in(mode.archive, REGION),
        emu.s3_in(account, layout.region()),
    );
    let (copy, source) = emu.rt.block_on(async {
        let copy = archive_s3
            .head_object()
            .bucket(&archive)
            .key(key)
            .send()
            .await;
        let source = source_s3
            .head_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await;
        (copy, source)
    });
    let copy = copy.map_err(|e| format!("no copy in the archive: {e:?}"))?;
    let source = source.map_err(|e| format!("the source is gone: {e:?}"))?;
    let mut wrong = Vec::new();
    let status = |s: Option<&aws_sdk_s3::types::ReplicationStatus>| {
        s.map(|s| s.as_str().to_string()).unwrap_or_default()
    };
    if status(copy.replication_status()) != "REPLICA" {
        wrong.push(format!("copy {}", status(copy.replication_status())));
    }
    if status(source.replication_status()) != "COMPLETED" {
        wrong.push(format!("source {}", status(source.replication_status())));
    }
    if copy.storage_class().map(|c| c.as_str()) != Some("STANDARD_IA") {
        wrong.push(format!("storage class {:?}", copy.storage_class()));
    }
    let locked_until = copy
        .object_lock_retain_until_date()
        .and_then(|d| SystemTime::try_from(*d).ok());
    let a_day = SystemTime::now() + Duration::from_secs(86_400 - 600);
    if copy.object_lock_mode().map(|m| m.as_str()) != Some("GOVERNANCE")
        || locked_until.is_none_or(|t| t < a_day)
    {
        wrong.push(format!(
            "lock {:?} until {:?}",
            copy.object_lock_mode(),
            copy.object_lock_retain_until_date()
        ));
    }
    let archive_key = format!("arn:aws:kms:{REGION}:{}:key/", mode.archive);
    if layout.kms()
        && !copy
            .ssekms_key_id()
            .is_some_and(|k| k.starts_with(&archive_key))
    {
        wrong.push(format!(
            "encrypted with {:?}, not the archive's key",
            copy.ssekms_key_id()
        ));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("arrived, but: {}", wrong.join(", ")))
    }
}

/// One mode end to end: seed, apply, verify, write a log per source (two under a Bucket Key:
/// one with it and one written before it), and each log's outcome.
fn run_mode(emu: &Emulator, mode: Mode) -> Vec<(Mode, Layout, String, Result<(), String>)> {
    let sources = mode.sources();
    let mut trail_keys = Vec::new();
    for (account, layout) in &sources {
        trail_keys.push(seed(emu, account, *layout));
    }
    let th = Trailhub::new(emu);
    let ids: Vec<String> = sources.iter().map(|(a, _)| a.clone()).collect();
    th.profiles(&ids);
    th.profile(mode.archive, mode.archive);
    let inv = th.write_inventory(&mode.inventory());
    let inv = inv.to_str().unwrap();
    th.expect(&["apply", "-c", inv], 0);
    th.expect(&["verify", "-c", inv], 0);
    let mut logs = Vec::new();
    for ((account, layout), trail_key) in sources.iter().zip(&trail_keys) {
        let key = log_key(account, *layout, "a");
        write_log(emu, account, *layout, &key, trail_key.as_deref(), None);
        logs.push((*layout, account.clone(), key, "".to_string()));
        if *layout == Layout::BucketKey {
            let before = log_key(account, *layout, "before-bucket-key");
            write_log(emu, account, *layout, &before, None, Some(false));
            logs.push((
                *layout,
                account.clone(),
                before,
                " (written without the Bucket Key)".into(),
            ));
        }
    }
    logs.into_iter()
        .map(|(layout, account, key, note)| {
            let outcome = delivered(emu, mode, &account, layout, &key);
            (mode, layout, note, outcome)
        })
        .collect()
}

#[test]
fn every_layout_delivers_its_logs_to_the_archive_locked_in_every_policy_mode() {
    let emu = Emulator::start();
    let outcomes: Vec<_> = std::thread::scope(|scope| {
        let runs: Vec<_> = MODES
            .iter()
            .map(|mode| {
                let emu = &emu;
                scope.spawn(move || run_mode(emu, *mode))
            })
            .collect();
        runs.into_iter()
            .flat_map(|r| r.join().expect("a mode's run"))
            .collect()
    });
    let mut table = String::from(
        "mode             | layout                                           | outcome\n",
    );
    for (mode, layout, note, outcome) in &outcomes {
        table.push_str(&format!(
            "{:<16} | {:<48} | {}\n",
            mode.policy,
            format!("{}{note}", layout.name()),
            match outcome {
                Ok(()) => "delivered".to_string(),
                Err(why) => format!("NOT DELIVERED: {why}"),
            }
        ));
    }
    println!("{table}");
    assert_eq!(outcomes.len(), MODES.len() * (LAYOUTS.len() + 1));
    assert!(
        outcomes.iter().all(|(_, _, _, o)| o.is_ok()),
        "every log must arrive:\n{table}"
    );
}

/// Takes `principal` out of every statement of the archive policy (a grant removed by hand).
pub(crate) fn remove_grant(emu: &Emulator, bucket: &str, principal: &str) {
    let mut policy = archive_policy(emu).expect("a policy");
    let statements = policy["Statement"].as_array_mut().unwrap();
    for s in statements.iter_mut() {
        if let Some(list) = s["Principal"]["AWS"].as_array_mut() {
            list.retain(|p| p != principal);
        } else if s["Principal"]["AWS"] == principal {
            s["Principal"]["AWS"] = json!([]);
        }
    }
    statements.retain(|s| {
        s["Principal"]["AWS"]
            .as_array()
            .is_none_or(|l| !l.is_empty())
    });
    let s3 = emu.s3(ARCHIVE);
    emu.rt.block_on(async {
        s3.put_bucket_policy()
            .bucket(bucket)
            .policy(policy.to_string())
            .send()
            .await
            .expect("put the edited policy");
    });
}

#[test]
fn a_grant_removed_by_hand_fails_the_logs_and_verify_names_it_and_rollback_keeps_what_arrived() {
    let emu = Emulator::start();
    let sources = accounts(2);
    let (member, organization) = (&sources[0], &sources[1]);
    emu.seed_source(member);
    // A trail that is an organization's writes under AWSLogs/<org id>/<account>/: refused.
    emu.seed_bucket(organization);
    let trail = emu.cloudtrail(organization);
    emu.rt.block_on(async {
        trail
            .create_trail()
            .name("Members")
            .s3_bucket_name(source_bucket(organization))
            .is_organization_trail(true)
            .send()
            .await
            .unwrap();
        trail.start_logging().name("Members").send().await.unwrap();
    });
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    let inv = inv.to_str().unwrap();
    let status = th.json(&["apply", "-c", inv], 1);
    let refused = th
        .json(&["status"], 0)
        .into_iter()
        .find(|l| {
            l["type"] == "node" && l["account"] == organization.as_str() && l["state"] == "failed"
        })
        .unwrap_or_else(|| panic!("the organization trail's account fails: {status:?}"));
    assert_eq!(refused["step"], "bucket-check");
    assert_eq!(refused["error"]["code"], "OrganizationTrail");

    let archive = archive_bucket();
    let first = log_key(member, Layout::Plain, "before");
    write_log(&emu, member, Layout::Plain, &first, None, None);
    let arrived =
        |key: &str| event(&emu, &source_bucket(member), key, &archive).map(|e| e["status"].clone());
    assert_eq!(arrived(&first), Some(json!("COMPLETED")));

    remove_grant(&emu, &archive, &role_arn(member));
    let second = log_key(member, Layout::Plain, "after");
    write_log(&emu, member, Layout::Plain, &second, None, None);
    let failed = event(&emu, &source_bucket(member), &second, &archive).expect("an outcome");
    assert_eq!(failed["status"], "FAILED", "{failed}");
    assert_eq!(failed["denied"]["action"], "s3:ReplicateObject", "{failed}");
    assert_eq!(
        failed["denied"]["policy"],
        format!("bucket policy of {archive}"),
        "{failed}"
    );
    let member_s3 = emu.s3(member);
    let source_status = emu.rt.block_on(async {
        member_s3
            .head_object()
            .bucket(source_bucket(member))
            .key(&second)
            .send()
            .await
            .unwrap()
            .replication_status()
            .map(|s| s.as_str().to_string())
    });
    assert_eq!(source_status.as_deref(), Some("FAILED"));
    let one = th.write_inventory(&inventory(&sources[..1], ""));
    let (out, _) = th.expect(&["verify", "-c", one.to_str().unwrap()], 3);
    assert!(
        out.contains("Statement[AllowReplicationFromSourceAccount]") && out.contains("(missing)"),
        "verify names the missing grant:\n{out}"
    );

    // Rollback undoes trailhub's footprint and keeps every log, at the source and archived.
    th.expect(&["rollback"], 0);
    let archive_s3 = emu.s3(ARCHIVE);
    emu.rt.block_on(async {
        for key in [&first, &second] {
            member_s3
                .head_object()
                .bucket(source_bucket(member))
                .key(key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{key} is kept at the source: {e:?}"));
        }
        let copy = archive_s3
            .head_object()
            .bucket(&archive)
            .key(&first)
            .send()
            .await
            .expect("the delivered log stays in the archive");
        assert_eq!(
            copy.replication_status().map(|s| s.as_str()),
            Some("REPLICA")
        );
    });
}
