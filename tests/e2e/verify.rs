//! `trailhub verify` (issue 5): drift made by hand is reported by account, resource and field
//! with exit 3; unreadable accounts exit 1; the canary arrives in the archive (the emulator
//! replicates) and counts only locked as `[archive] retention` says.

use crate::support::article::archive_policy;
use crate::support::*;
use serde_json::{Value, json};

fn drifts(lines: &[Value], account: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["type"] == "drift" && l["account"] == account)
        .map(|l| {
            format!(
                "{} {}",
                l["resource"].as_str().unwrap(),
                l["field"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn each_hand_made_drift_is_reported_with_exit_3() {
    let emu = Emulator::start();
    let sources = accounts(6);
    emu.seed_sources(&sources);
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    let inv = inv.to_str().unwrap();
    th.expect(&["apply", "-c", inv], 0);
    let (clean, _) = th.expect(&["verify", "-c", inv], 0);
    assert!(clean.contains("7 match, 0 drifted"), "{clean}");

    let [a, b, c, d, e, _] = &sources[..] else {
        unreachable!()
    };
    let (s3a, s3b, iam_d, cfn_e, s3_archive) = (
        emu.s3(a),
        emu.s3(b),
        emu.iam(d),
        emu.cfn(e),
        emu.s3(ARCHIVE),
    );
    let mut policy = archive_policy(&emu).unwrap();
    for statement in policy["Statement"].as_array_mut().unwrap() {
        let list = statement["Principal"]["AWS"].as_array_mut().unwrap();
        list.retain(|p| p != &json!(role_arn(c)));
    }
    emu.rt.block_on(async {
        // a: versioning suspended.
        s3a.put_bucket_versioning()
            .bucket(source_bucket(a))
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Suspended)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        // b: the rule disabled.
        let live = s3b.get_bucket_replication().bucket(source_bucket(b)).send().await.unwrap();
        let config = live.replication_configuration().unwrap();
        let mut rule = config.rules()[0].clone();
        rule.status = aws_sdk_s3::types::ReplicationRuleStatus::Disabled;
        let disabled = aws_sdk_s3::types::ReplicationConfiguration::builder()
            .role(config.role())
            .rules(rule)
            .build()
            .unwrap();
        s3b.put_bucket_replication()
            .bucket(source_bucket(b))
            .replication_configuration(disabled)
            .send()
            .await
            .unwrap();
        // c: its principal removed from the archive policy.
        s3_archive
            .put_bucket_policy()
            .bucket(archive_bucket())
            .policy(policy.to_string())
            .send()
            .await
            .unwrap();
        // d: the role's inline policy edited.
        iam_d
            .put_role_policy()
            .role_name("S3ReplicationRole")
            .policy_name("S3ReplicationPolicy")
            .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#)
            .send()
            .await
            .unwrap();
        // e: the stack deleted (and its role with it).
        cfn_e.delete_stack().stack_name("cloudtrail-replication-role").send().await.unwrap();
    });

    let lines = th.json(&["verify", "-c", inv], 3);
    assert_eq!(
        drifts(&lines, a),
        vec![format!("bucket {} Versioning.Status", source_bucket(a))]
    );
    assert_eq!(
        drifts(&lines, b),
        vec![
            format!("bucket {} Replication.Rules[0].Status", source_bucket(b)),
            // A disabled rule replicates nothing: the delivery check says so too (issue 20).
            "delivery verdict".to_string(),
        ]
    );
    let mut c_drift = drifts(&lines, c);
    // The grant taken out: S3 would refuse the copy, and the delivery check says so.
    assert!(
        c_drift.contains(&"delivery verdict".to_string()),
        "{c_drift:?}"
    );
    c_drift.retain(|d| d != "delivery verdict");
    assert_eq!(c_drift.len(), 2, "{c_drift:?}");
    assert!(c_drift.iter().all(|d| d.starts_with(&format!(
        "archive bucket {} policy Statement[",
        archive_bucket()
    ))));
    assert_eq!(
        drifts(&lines, d),
        vec!["role S3ReplicationRole S3ReplicationPolicy".to_string()]
    );
    let e_drift = drifts(&lines, e);
    assert!(
        e_drift.contains(&"role S3ReplicationRole exists".to_string()),
        "{e_drift:?}"
    );
    assert!(
        e_drift.contains(&"stack cloudtrail-replication-role exists".to_string()),
        "{e_drift:?}"
    );
    assert!(drifts(&lines, &sources[5]).is_empty());
    let summary = lines.last().unwrap();
    assert_eq!(summary["accounts_drifted"], 5);
    let disabled = lines
        .iter()
        .find(|l| l["account"] == b.as_str() && l["type"] == "drift")
        .unwrap();
    assert_eq!(disabled["expected"], "\"Enabled\"");
    assert_eq!(disabled["actual"], "\"Disabled\"");

    let (table, _) = th.expect(&["verify", "-c", inv], 3);
    assert!(
        table.contains("ACCOUNT")
            && table.contains("Versioning.Status")
            && table.contains("2 match, 5 drifted"),
        "{table}"
    );

    // apply brings every drifted account back.
    th.expect(&["apply", "-c", inv], 0);
    th.expect(&["verify", "-c", inv], 0);
}

#[test]
fn an_unreadable_account_exits_1_with_the_reason() {
    let emu = Emulator::start();
    let sources = accounts(2);
    emu.seed_sources(&sources);
    let th = Trailhub::new(&emu);
    th.profile(&sources[0], &sources[0]);
    th.profile(&sources[1], "299999999999");
    let inv = th.write_inventory(&inventory(&sources, ""));
    let lines = th.json(&["verify", "-c", inv.to_str().unwrap()], 1);
    let unreadable = lines
        .iter()
        .find(|l| l["type"] == "unreadable")
        .unwrap_or_else(|| panic!("an unreadable account: {lines:?}"));
    assert_eq!(unreadable["account"], sources[1].as_str(), "{lines:?}");
    assert_eq!(unreadable["code"], "WrongAccount");
}

/// `verify --canary --output json` over `inv`; its exit code and canary lines.
fn canaries(th: &Trailhub, inv: &str) -> (Option<i32>, Vec<Value>) {
    let out = th
        .command()
        .env("TRAILHUB_CANARY_POLL_MS", "100")
        .args([
            "--output",
            "json",
            "verify",
            "-c",
            inv,
            "--canary",
            "--timeout",
            "30s",
        ])
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["type"] == "canary")
        .collect();
    (out.status.code(), lines)
}

#[test]
fn the_canary_arrives_locked_and_a_copy_that_is_not_locked_is_not_a_success() {
    let emu = Emulator::start();
    let sources = accounts(2);
    emu.seed_sources(&sources);
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let retention = "\n[archive.retention]\nmode = \"GOVERNANCE\"\ndays = 2\n";
    let inv = th.write_inventory(&format!("{}{retention}", inventory(&sources, "")));
    let inv = inv.to_str().unwrap();
    th.expect(&["apply", "-c", inv], 0);
    emu.start_recording();
    let (code, lines) = canaries(&th, inv);
    let requests = emu.stop_recording();
    assert_eq!(code, Some(0), "{lines:?}");
    assert_eq!(lines.len(), 2);
    for c in &lines {
        let account = c["account"].as_str().unwrap();
        assert_eq!(c["outcome"], "replicated", "{c}");
        assert_eq!(c["source_status"], "COMPLETED");
        assert_eq!(c["replica_status"], "REPLICA");
        assert_eq!(c["replica_storage_class"], "STANDARD_IA");
        assert_eq!(c["replica_lock_mode"], "GOVERNANCE");
        let key = c["key"].as_str().unwrap();
        assert!(key.starts_with(&format!("AWSLogs/{account}/trailhub-canary/")));
        // Read back independently: the copy in the archive, locked for the two days.
        let archive = emu.s3(ARCHIVE);
        let retention = emu.rt.block_on(async {
            archive
                .get_object_retention()
                .bucket(archive_bucket())
                .key(key)
                .send()
                .await
                .expect("the copy's retention")
        });
        let until = retention.retention().unwrap().retain_until_date().unwrap();
        let until = std::time::SystemTime::try_from(*until).unwrap();
        assert!(
            until > std::time::SystemTime::now() + std::time::Duration::from_secs(47 * 3600),
            "locked for two days: {until:?}"
        );
    }
    let writes: Vec<_> = requests.iter().filter(|r| r.mutating).collect();
    assert_eq!(
        writes.len(),
        2,
        "the canaries are the only writes: {writes:?}"
    );
    assert!(
        writes
            .iter()
            .all(|w| w.operation.starts_with("PUT /cm-members-cloudtrail-"))
    );

    // Someone removes the archive's default retention: the next canary arrives unlocked, and
    // that is no success.
    let archive = emu.s3(ARCHIVE);
    emu.rt.block_on(async {
        archive
            .put_object_lock_configuration()
            .bucket(archive_bucket())
            .object_lock_configuration(
                aws_sdk_s3::types::ObjectLockConfiguration::builder()
                    .object_lock_enabled(aws_sdk_s3::types::ObjectLockEnabled::Enabled)
                    .build(),
            )
            .send()
            .await
            .expect("remove the default retention");
    });
    let (code, lines) = canaries(&th, inv);
    assert_eq!(
        code,
        Some(3),
        "the retention removed is drift, and the canary is no success: {lines:?}"
    );
    for c in &lines {
        assert_eq!(c["outcome"], "unprotected", "{c}");
        assert_eq!(c["replica_lock_mode"], Value::Null);
        assert!(
            c["causes"][0]
                .as_str()
                .unwrap()
                .contains("not locked: [archive] retention says GOVERNANCE for 2 days"),
            "{c}"
        );
    }
}

/// Starts or stops the `Members` trail of `account` on the emulator.
fn set_logging(emu: &Emulator, account: &str, logging: bool) {
    let trail = emu.cloudtrail(account);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        if logging {
            trail.start_logging().name("Members").send().await.unwrap();
        } else {
            trail.stop_logging().name("Members").send().await.unwrap();
        }
    });
}

#[test]
fn a_trail_that_is_not_logging_is_refused_by_apply_and_reported_by_verify() {
    let emu = Emulator::start();
    let sources = accounts(3);
    emu.seed_sources(&sources);
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    let inv = inv.to_str().unwrap();

    // A stopped trail would replicate nothing: its account fails at bucket-check with the fix,
    // the others are onboarded.
    set_logging(&emu, &sources[1], false);
    th.expect(&["apply", "-c", inv], 1);
    let nodes = th.json(&["status"], 0);
    let failed: Vec<&Value> = nodes.iter().filter(|n| n["state"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["account"], sources[1].as_str());
    assert_eq!(failed[0]["step"], "bucket-check");
    assert_eq!(failed[0]["error"]["code"], "TrailNotLogging");
    let (status, _) = th.expect(&["status"], 0);
    assert!(
        status.contains("aws cloudtrail start-logging --name Members"),
        "{status}"
    );

    set_logging(&emu, &sources[1], true);
    th.expect(&["resume"], 0);
    th.expect(&["verify", "-c", inv], 0);

    // Stopped after onboarding: verify names the field.
    set_logging(&emu, &sources[2], false);
    let lines = th.json(&["verify", "-c", inv], 3);
    assert_eq!(drifts(&lines, &sources[2]), vec!["trail Members IsLogging"]);
    assert!(drifts(&lines, &sources[0]).is_empty());
}
