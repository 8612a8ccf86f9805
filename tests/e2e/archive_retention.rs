//! The archive's default Object Lock retention and trailhub's lifecycle rule (issue 15, items 1
//! and 2): planned, applied, read back with the SDK, converged, verified, drifted by hand, and
//! rolled back to the bucket as it was, with another team's lifecycle rule kept throughout.

use crate::support::article::put_object;
use crate::support::*;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketLocationConstraint, CreateBucketConfiguration,
    DefaultRetention, ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
    ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode, ObjectLockRule,
};
use serde_json::Value;

/// What the inventory adds to `[archive]`: seven years of compliance retention, logs in Glacier
/// Instant Retrieval after 90 days, expired after the retention.
const ARCHIVE_SETTINGS: &str = r#"
[archive.retention]
mode = "COMPLIANCE"
years = 7

[archive.lifecycle]
transition_days = 90
storage_class = "GLACIER_IR"
expire_days = 2555
noncurrent_expire_days = 2555
"#;

fn rule(id: &str, prefix: &str, expire_days: i32) -> LifecycleRule {
    LifecycleRule::builder()
        .id(id)
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix(prefix).build())
        .expiration(LifecycleExpiration::builder().days(expire_days).build())
        .build()
        .unwrap()
}

/// The archive bucket as an operator made it before trailhub: Object Lock, a log object, and a
/// lifecycle configuration with another team's rule and an older rule of trailhub's ID.
fn archive_made_by_hand(emu: &Emulator) -> Vec<LifecycleRule> {
    let s3 = emu.s3(ARCHIVE);
    let rules = vec![
        rule("tmp-cleanup", "tmp/", 7),
        rule("trailhub-archive", "", 3650),
    ];
    emu.rt.block_on(async {
        s3.create_bucket()
            .bucket(archive_bucket())
            .object_lock_enabled_for_bucket(true)
            .create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::ApNortheast1)
                    .build(),
            )
            .send()
            .await
            .expect("the archive bucket");
    });
    put_lifecycle(emu, rules.clone());
    put_object(emu, ARCHIVE, &archive_bucket(), "AWSLogs/older/log.json.gz");
    rules
}

fn put_lifecycle(emu: &Emulator, rules: Vec<LifecycleRule>) {
    let s3 = emu.s3(ARCHIVE);
    emu.rt.block_on(async {
        s3.put_bucket_lifecycle_configuration()
            .bucket(archive_bucket())
            .lifecycle_configuration(
                BucketLifecycleConfiguration::builder()
                    .set_rules(Some(rules))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("put the lifecycle configuration");
    });
}

/// The archive bucket's default retention, read back with the SDK.
fn default_retention(emu: &Emulator) -> Option<DefaultRetention> {
    let s3 = emu.s3(ARCHIVE);
    emu.rt.block_on(async {
        let out = s3
            .get_object_lock_configuration()
            .bucket(archive_bucket())
            .send()
            .await
            .expect("the Object Lock configuration");
        let config = out.object_lock_configuration().expect("a configuration");
        assert_eq!(
            config.object_lock_enabled(),
            Some(&ObjectLockEnabled::Enabled),
            "Object Lock stays enabled"
        );
        config.rule().and_then(|r| r.default_retention()).cloned()
    })
}

fn put_default_retention(emu: &Emulator, retention: DefaultRetention) {
    let s3 = emu.s3(ARCHIVE);
    emu.rt.block_on(async {
        s3.put_object_lock_configuration()
            .bucket(archive_bucket())
            .object_lock_configuration(
                ObjectLockConfiguration::builder()
                    .object_lock_enabled(ObjectLockEnabled::Enabled)
                    .rule(
                        ObjectLockRule::builder()
                            .default_retention(retention)
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("put the default retention");
    });
}

/// The archive bucket's lifecycle rules, read back with the SDK.
fn lifecycle_rules(emu: &Emulator) -> Vec<LifecycleRule> {
    let s3 = emu.s3(ARCHIVE);
    emu.rt.block_on(async {
        s3.get_bucket_lifecycle_configuration()
            .bucket(archive_bucket())
            .send()
            .await
            .expect("a lifecycle configuration")
            .rules()
            .to_vec()
    })
}

fn by_id<'a>(rules: &'a [LifecycleRule], id: &str) -> &'a LifecycleRule {
    rules
        .iter()
        .find(|r| r.id() == Some(id))
        .unwrap_or_else(|| panic!("no rule {id} in {rules:?}"))
}

#[test]
fn retention_and_lifecycle_are_applied_converge_drift_and_roll_back_to_the_bucket_as_it_was() {
    let emu = Emulator::start();
    let sources = accounts(1);
    emu.seed_sources(&sources);
    let found = archive_made_by_hand(&emu);
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let inv = th.write_inventory(&format!("{}{ARCHIVE_SETTINGS}", inventory(&sources, "")));
    let inv = inv.to_str().unwrap();

    // Plan: the retention is created (with the warning a compliance retention deserves), the
    // older rule of trailhub's ID updated, the other team's rule named as kept; nothing written.
    emu.start_recording();
    let (plan, _) = th.expect(&["plan", "-c", inv], 0);
    assert!(
        emu.stop_recording().iter().all(|r| !r.mutating),
        "plan is read-only"
    );
    for needle in [
        "+ create   retention",
        "Rule.DefaultRetention.Mode: (absent) -> COMPLIANCE",
        "Rule.DefaultRetention.Years: (absent) -> 7",
        "nobody, the root user included, can shorten that",
        "~ update   lifecycle",
        "Rules[trailhub-archive].Expiration.Days: 3650 -> 2555",
        "Rules[trailhub-archive].Transitions[0].StorageClass: (absent) -> \"GLACIER_IR\"",
        "rules kept as they are: tmp-cleanup",
    ] {
        assert!(plan.contains(needle), "plan lacks {needle:?}:\n{plan}");
    }

    // Apply, read back with the SDK: the default retention as asked (years, no days), trailhub's
    // rule in place of the older one, the other rule as it was.
    th.expect(&["apply", "-c", inv], 0);
    let retention = default_retention(&emu).expect("a default retention");
    assert_eq!(retention.mode(), Some(&ObjectLockRetentionMode::Compliance));
    assert_eq!((retention.days(), retention.years()), (None, Some(7)));
    let rules = lifecycle_rules(&emu);
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert_eq!(by_id(&rules, "tmp-cleanup"), &found[0], "kept as it was");
    let ours = by_id(&rules, "trailhub-archive");
    assert_eq!(ours.status(), &ExpirationStatus::Enabled);
    assert_eq!(ours.filter().and_then(|f| f.prefix()), Some(""));
    assert_eq!(ours.transitions().len(), 1);
    assert_eq!(ours.transitions()[0].days(), Some(90));
    assert_eq!(
        ours.transitions()[0].storage_class().map(|c| c.as_str()),
        Some("GLACIER_IR")
    );
    assert_eq!(ours.expiration().and_then(|e| e.days()), Some(2555));
    assert_eq!(
        ours.noncurrent_version_expiration()
            .and_then(|e| e.noncurrent_days()),
        Some(2555)
    );

    // Converged: nothing changes, nothing is written; the archive's two new steps add one read
    // each (GetObjectLockConfiguration, also read by archive/bucket, and the lifecycle).
    emu.start_recording();
    let lines = th.json(&["apply", "-c", inv], 0);
    let requests = emu.stop_recording();
    let finished = lines
        .iter()
        .find(|l| l["type"] == "run-finished")
        .expect("a summary line");
    assert_eq!(finished["steps_changed"], 0, "{finished}");
    let mutating: Vec<_> = requests.iter().filter(|r| r.mutating).collect();
    assert!(mutating.is_empty(), "converged: {mutating:?}");
    let bucket = archive_bucket();
    let archive_reads = |query: &str| {
        requests
            .iter()
            .filter(|r| r.account == ARCHIVE && r.operation == format!("GET /{bucket}/?{query}"))
            .count()
    };
    assert_eq!(archive_reads("object-lock"), 2, "{requests:?}");
    assert_eq!(archive_reads("lifecycle"), 1, "{requests:?}");
    th.expect(&["verify", "-c", inv], 0);

    // Changed by hand: verify names each field (exit 3).
    put_default_retention(
        &emu,
        DefaultRetention::builder()
            .mode(ObjectLockRetentionMode::Governance)
            .days(30)
            .build(),
    );
    let mut edited = rules.clone();
    let at = edited
        .iter()
        .position(|r| r.id() == Some("trailhub-archive"))
        .unwrap();
    edited[at] = LifecycleRule::builder()
        .id("trailhub-archive")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .set_transitions(Some(ours.transitions().to_vec()))
        .expiration(LifecycleExpiration::builder().days(4000).build())
        .set_noncurrent_version_expiration(ours.noncurrent_version_expiration().cloned())
        .build()
        .unwrap();
    put_lifecycle(&emu, edited);
    let drift: Vec<(String, String, String)> = th
        .json(&["verify", "-c", inv], 3)
        .into_iter()
        .filter(|l| l["type"] == "drift")
        .map(|l| {
            assert_eq!(l["account"], ARCHIVE);
            assert_eq!(l["resource"], Value::from(format!("bucket {bucket}")));
            let s = |k: &str| l[k].as_str().unwrap().to_string();
            (s("field"), s("expected"), s("actual"))
        })
        .collect();
    let owned = |f: &str, e: &str, a: &str| (f.to_string(), e.to_string(), a.to_string());
    assert_eq!(
        drift,
        [
            owned(
                "ObjectLock.Rule.DefaultRetention.Mode",
                "COMPLIANCE",
                "GOVERNANCE"
            ),
            owned("ObjectLock.Rule.DefaultRetention.Days", "(absent)", "30"),
            owned("ObjectLock.Rule.DefaultRetention.Years", "7", "(absent)"),
            owned(
                "Lifecycle.Rules[trailhub-archive].Expiration.Days",
                "2555",
                "4000"
            ),
        ]
    );

    // Put back as trailhub wrote them: verify is clean again.
    put_default_retention(&emu, retention.clone());
    put_lifecycle(&emu, rules.clone());
    th.expect(&["verify", "-c", inv], 0);

    // Roll back the converged re-apply (nothing to undo), then the run that changed the
    // archive: the default retention is removed (there was none), the lifecycle configuration
    // is the one found before, the other rule and the log object are kept.
    th.expect(&["rollback"], 0);
    let run1 = th
        .json(&["runs"], 0)
        .into_iter()
        .find(|l| l["type"] == "run")
        .and_then(|l| l["run"].as_str().map(str::to_string))
        .expect("the first run");
    let (out, _) = th.expect(&["rollback", &run1], 0);
    assert!(
        out.contains("removed from") && out.contains("stay locked"),
        "rollback says that what was written stays locked:\n{out}"
    );
    assert_eq!(default_retention(&emu), None, "no default retention");
    assert_eq!(
        lifecycle_rules(&emu),
        found,
        "the lifecycle rules found before"
    );
    let s3 = emu.s3(ARCHIVE);
    let objects = emu.rt.block_on(async {
        s3.list_objects_v2()
            .bucket(archive_bucket())
            .send()
            .await
            .unwrap()
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect::<Vec<_>>()
    });
    assert_eq!(
        objects,
        ["AWSLogs/older/log.json.gz"],
        "the log object kept"
    );
}

#[test]
fn rollback_deletes_a_lifecycle_configuration_it_created_and_keeps_a_retention_changed_since() {
    let emu = Emulator::start();
    let sources = accounts(1);
    emu.seed_sources(&sources);
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let settings = r#"
[archive.retention]
mode = "GOVERNANCE"
days = 30

[archive.lifecycle]
noncurrent_expire_days = 30
"#;
    let inv = th.write_inventory(&format!("{}{settings}", inventory(&sources, "")));
    let inv = inv.to_str().unwrap();
    let (plan, _) = th.expect(&["plan", "-c", inv], 0);
    assert!(
        !plan.contains("root user"),
        "no compliance warning for governance:\n{plan}"
    );
    th.expect(&["apply", "-c", inv], 0);
    let rules = lifecycle_rules(&emu);
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0].id(), Some("trailhub-archive"));
    assert_eq!(rules[0].expiration(), None);
    assert!(rules[0].transitions().is_empty());

    // Logs arrive (so rollback keeps the bucket), and someone lengthens the retention after
    // the run: rollback keeps theirs, and says so.
    put_object(&emu, ARCHIVE, &archive_bucket(), "AWSLogs/new/log.json.gz");
    let longer = DefaultRetention::builder()
        .mode(ObjectLockRetentionMode::Governance)
        .days(90)
        .build();
    put_default_retention(&emu, longer.clone());
    let (out, _) = th.expect(&["rollback"], 0);
    assert!(out.contains("changed since"), "{out}");
    assert_eq!(default_retention(&emu), Some(longer));
    let s3 = emu.s3(ARCHIVE);
    let gone = emu.rt.block_on(async {
        s3.get_bucket_lifecycle_configuration()
            .bucket(archive_bucket())
            .send()
            .await
            .map(|_| ())
            .unwrap_err()
            .into_service_error()
            .code()
            .map(str::to_string)
    });
    assert_eq!(
        gone.as_deref(),
        Some("NoSuchLifecycleConfiguration"),
        "the configuration trailhub created is deleted"
    );
}
