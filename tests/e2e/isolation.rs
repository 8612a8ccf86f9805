//! A tamper-proof archive (issue "A tamper-proof archive"), on the emulator that replicates as
//! S3 does and decides each request with the policies AWS evaluates. An intruder in member A,
//! who controls A's bucket, rule and role, tries to write a log for member B: in every policy
//! mode the archive policy refuses it while A's own logs arrive. An archive policy of the
//! earlier release (every member on `<archive>/*`, delete, list, versioning) is migrated by
//! `apply` while a member keeps writing logs, every one arriving, and rollback puts it back.
//! A statement widened by hand and a principal nobody listed are drift; an adopted archive
//! whose objects could be made public is refused.

use crate::delivery::{Layout, MODES, event, log_key, seed, write_log};
use crate::support::article::{archive_policy, put_archive_policy};
use crate::support::*;
use serde_json::{Value, json};

/// What the intruder in `account` does with what it controls: its rule replicates every key
/// under `AWSLogs/` and its role may replicate anything into `archive`.
fn widen_member(emu: &Emulator, account: &str) {
    let s3 = emu.s3(account);
    let iam = emu.iam(account);
    emu.rt.block_on(async {
        let live = s3
            .get_bucket_replication()
            .bucket(source_bucket(account))
            .send()
            .await
            .unwrap();
        let config = live.replication_configuration().unwrap();
        let rules: Vec<_> = config
            .rules()
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.filter = Some(
                    aws_sdk_s3::types::ReplicationRuleFilter::builder()
                        .prefix("AWSLogs/")
                        .build(),
                );
                r
            })
            .collect();
        let widened = aws_sdk_s3::types::ReplicationConfiguration::builder()
            .role(config.role())
            .set_rules(Some(rules))
            .build()
            .unwrap();
        s3.put_bucket_replication()
            .bucket(source_bucket(account))
            .replication_configuration(widened)
            .send()
            .await
            .unwrap();
        let anything = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        ]});
        iam.put_role_policy()
            .role_name("S3ReplicationRole")
            .policy_name("Intruder")
            .policy_document(anything.to_string())
            .send()
            .await
            .unwrap();
    });
}

/// parliament's findings on what trailhub wrote: the archive bucket policy and `member`'s
/// role inline policy.
fn lint_written(emu: &Emulator, archive_account: &str, archive: &str, member: &str) -> Vec<Value> {
    let s3 = emu.s3(archive_account);
    let iam = emu.iam(member);
    let (policy, inline) = emu.rt.block_on(async {
        let policy = s3.get_bucket_policy().bucket(archive).send().await.unwrap();
        let inline = iam
            .get_role_policy()
            .role_name("S3ReplicationRole")
            .policy_name("S3ReplicationPolicy")
            .send()
            .await
            .unwrap();
        (
            policy.policy().unwrap().to_string(),
            inline.policy_document().to_string(),
        )
    });
    let inline = percent_encoding::percent_decode_str(&inline)
        .decode_utf8()
        .unwrap();
    [policy.as_str(), inline.as_ref()]
        .iter()
        .flat_map(|doc| parliament(&serde_json::from_str(doc).unwrap()))
        .collect()
}

/// Whether `key` is in `bucket` of `account`.
fn exists(emu: &Emulator, account: &str, bucket: &str, key: &str) -> bool {
    let s3 = emu.s3(account);
    emu.rt.block_on(async {
        s3.head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .is_ok()
    })
}

#[test]
fn in_every_mode_a_member_cannot_write_another_accounts_logs_while_its_own_arrive() {
    let emu = Emulator::start();
    let outcomes: Vec<(String, Result<(), String>)> = std::thread::scope(|scope| {
        let runs: Vec<_> = MODES
            .iter()
            .map(|mode| {
                let emu = &emu;
                scope.spawn(move || {
                    let a = mode.first_source.to_string();
                    let b = (mode.first_source + 1).to_string();
                    for account in [&a, &b] {
                        seed(emu, account, Layout::Plain);
                    }
                    let th = Trailhub::new(emu);
                    th.profiles(&[a.clone(), b.clone()]);
                    th.profile(mode.archive, mode.archive);
                    let inv = format!(
                        "region = \"ap-northeast-1\"\npolicy = \"{}\"\n\n[archive]\naccount_id = \"{}\"\nprofile = \"acct-{}\"\n\n[source_defaults]\nprofile = \"acct-{{account_id}}\"\n\n[[source]]\naccount_id = \"{a}\"\n\n[[source]]\naccount_id = \"{b}\"\n",
                        mode.policy, mode.archive, mode.archive
                    );
                    let inv = th.write_inventory(&inv);
                    th.expect(&["apply", "-c", inv.to_str().unwrap()], 0);
                    let archive = mode.archive_bucket();
                    let lint = lint_written(emu, mode.archive, &archive, &a);
                    if !lint.is_empty() {
                        return (mode.policy.to_string(), Err(format!("parliament: {lint:?}")));
                    }
                    widen_member(emu, &a);
                    let own = log_key(&a, Layout::Plain, "own");
                    write_log(emu, &a, Layout::Plain, &own, None, None);
                    // A forged log for B, written into A's own bucket under B's key.
                    let forged = log_key(&b, Layout::Plain, "forged");
                    write_log(emu, &a, Layout::Plain, &forged, None, None);
                    let check = || -> Result<(), String> {
                        let own_event = event(emu, &source_bucket(&a), &own, &archive)
                            .ok_or("A's own log was not replicated")?;
                        if own_event["status"] != "COMPLETED" {
                            return Err(format!("A's own log did not arrive: {own_event}"));
                        }
                        let forged_event = event(emu, &source_bucket(&a), &forged, &archive)
                            .ok_or("the widened rule did not pick the forged log up")?;
                        if forged_event["status"] != "FAILED"
                            || forged_event["denied"]["action"] != "s3:ReplicateObject"
                            || forged_event["denied"]["policy"] != format!("bucket policy of {archive}")
                        {
                            return Err(format!(
                                "the forged log was not refused by the archive policy: {forged_event}"
                            ));
                        }
                        if exists(emu, mode.archive, &archive, &forged) {
                            return Err("the forged log is in the archive".into());
                        }
                        Ok(())
                    };
                    (mode.policy.to_string(), check())
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(outcomes.len(), 3);
    for (mode, outcome) in &outcomes {
        assert!(outcome.is_ok(), "{mode}: {outcome:?}");
    }
}

/// The archive policy as the earlier release wrote it (the article's document) for `accounts`.
fn earlier_release_policy(accounts: &[String]) -> Value {
    let roles: Vec<String> = accounts.iter().map(|a| role_arn(a)).collect();
    let bucket = archive_bucket();
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "AllowReplicationFromSourceAccount", "Effect": "Allow", "Principal": {"AWS": roles},
         "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags", "s3:ObjectOwnerOverrideToBucketOwner"],
         "Resource": format!("arn:aws:s3:::{bucket}/*")},
        {"Sid": "AllowReplicationPolicyCheck", "Effect": "Allow", "Principal": {"AWS": roles},
         "Action": ["s3:GetBucketVersioning", "s3:PutBucketVersioning", "s3:List*"],
         "Resource": format!("arn:aws:s3:::{bucket}")},
    ]})
}

#[test]
fn an_earlier_releases_archive_policy_is_migrated_while_logs_keep_arriving_and_rolled_back() {
    let emu = Emulator::start();
    let sources = accounts(2);
    emu.seed_sources(&sources);
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    let inv = inv.to_str().unwrap();
    th.expect(&["apply", "-c", inv], 0);
    // The archive as the earlier release left it.
    let earlier = earlier_release_policy(&sources);
    put_archive_policy(&emu, &earlier);
    let (out, _) = th.expect(&["plan", "-c", inv], 0);
    assert!(
        out.contains("Statement[AllowReplicationFromSourceAccount]") && out.contains("update"),
        "plan shows the statements that change:\n{out}"
    );

    // A member writes a log every few milliseconds while apply migrates the policy.
    let member = sources[0].clone();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let written = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut keys = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) || keys.len() < 5 {
                let key = log_key(&member, Layout::Plain, &format!("during-{i}"));
                write_log(&emu, &member, Layout::Plain, &key, None, None);
                keys.push(key);
                i += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            keys
        });
        th.expect(&["apply", "-c", inv], 0);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        writer.join().unwrap()
    });
    for key in &written {
        let e = event(&emu, &source_bucket(&member), key, &archive_bucket())
            .unwrap_or_else(|| panic!("{key} replicated"));
        assert_eq!(e["status"], "COMPLETED", "no window without a grant: {e}");
    }
    let migrated = archive_policy(&emu).unwrap();
    let text = migrated.to_string();
    assert!(
        !text.contains("s3:ReplicateDelete") && !text.contains("s3:List*"),
        "{migrated}"
    );
    assert!(
        text.contains("AWSLogs/${aws:PrincipalAccount}/*"),
        "{migrated}"
    );
    th.expect(&["verify", "-c", inv], 0);

    // Rollback of the migrating run puts the earlier document back.
    th.expect(&["rollback"], 0);
    let back = archive_policy(&emu).unwrap();
    assert_eq!(back, earlier, "rollback returns the earlier document");
}

#[test]
fn a_widened_statement_and_an_unlisted_principal_are_drift_and_an_open_archive_is_refused() {
    let emu = Emulator::start();
    let sources = accounts(2);
    emu.seed_sources(&sources);
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, "").replace(
        "region = \"ap-northeast-1\"",
        "region = \"ap-northeast-1\"\npolicy = \"accounts\"",
    ));
    let inv = inv.to_str().unwrap();
    th.expect(&["apply", "-c", inv], 0);
    let granted = archive_policy(&emu).unwrap();

    let mut widened = granted.clone();
    widened["Statement"][0]["Action"] = json!("s3:*");
    put_archive_policy(&emu, &widened);
    let (out, _) = th.expect(&["verify", "-c", inv], 3);
    assert!(
        out.contains("Statement[TrailhubReplicationByAccountS3ReplicationRole]")
            && out.contains("s3:*"),
        "the widening is named:\n{out}"
    );

    let mut foreign = granted.clone();
    foreign["Statement"][0]["Principal"]["AWS"]
        .as_array_mut()
        .unwrap()
        .push(json!("arn:aws:iam::999999999999:root"));
    put_archive_policy(&emu, &foreign);
    let lines = th.json(&["verify", "-c", inv], 3);
    let unlisted = lines
        .iter()
        .find(|l| l["type"] == "drift" && l["actual"] == "arn:aws:iam::999999999999:root")
        .unwrap_or_else(|| panic!("the unlisted principal is drift: {lines:?}"));
    assert!(
        unlisted["expected"]
            .as_str()
            .unwrap()
            .contains("trailhub rollback --account 999999999999"),
        "with the command that removes it: {unlisted}"
    );

    // An archive made by hand whose objects could be made public: refused, nothing changed.
    let th2 = Trailhub::new(&emu);
    th2.profiles(&sources);
    th2.profile("111111111119", "111111111119");
    let open = "aggregation-cloudtrail-logs-111111111119";
    let s3 = emu.s3("111111111119");
    emu.rt.block_on(async {
        s3.create_bucket()
            .bucket(open)
            .object_lock_enabled_for_bucket(true)
            .create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::ApNortheast1)
                    .build(),
            )
            .object_ownership(aws_sdk_s3::types::ObjectOwnership::ObjectWriter)
            .send()
            .await
            .unwrap();
        s3.delete_public_access_block()
            .bucket(open)
            .send()
            .await
            .unwrap();
    });
    let text = inventory(&sources, "").replace(
        &format!("account_id = \"{ARCHIVE}\"\n"),
        "account_id = \"111111111119\"\nprofile = \"acct-111111111119\"\n",
    );
    let inv2 = th2.write_inventory(&text);
    let lines = th2.json(&["plan", "-c", inv2.to_str().unwrap()], 1);
    let refused = lines
        .iter()
        .find(|l| l["node"] == "archive/bucket")
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(refused["code"], "ArchiveUnprotected", "{refused}");
    let message = refused["error"].as_str().unwrap();
    assert!(
        message.contains("ObjectOwnership is ObjectWriter")
            && message.contains("PublicAccessBlock.BlockPublicPolicy is false"),
        "{message}"
    );
    th2.expect(&["apply", "-c", inv2.to_str().unwrap()], 1);
    let ownership = emu.rt.block_on(async {
        s3.get_bucket_ownership_controls()
            .bucket(open)
            .send()
            .await
            .unwrap()
            .ownership_controls()
            .unwrap()
            .rules()[0]
            .object_ownership()
            .as_str()
            .to_string()
    });
    assert_eq!(
        ownership, "ObjectWriter",
        "a bucket trailhub did not create is not changed"
    );
}
