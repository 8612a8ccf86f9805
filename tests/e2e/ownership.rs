//! Accounts with history (issue "Never touch what isn't ours"): replication rules that are not
//! trailhub's, refused by default and kept beside its own on request; rollback that gives back
//! what was there and deletes only what trailhub made, checked against live identity.

use crate::support::article::{archive_policy, bucket_exists, put_archive_policy, snapshot};
use crate::support::*;
use aws_sdk_s3::types::{
    BucketVersioningStatus, DeleteMarkerReplication, DeleteMarkerReplicationStatus, Destination,
    ReplicationConfiguration, ReplicationRule, ReplicationRuleFilter, ReplicationRuleStatus,
    VersioningConfiguration,
};
use serde_json::Value;

/// The DR copy a team set up before trailhub: a second bucket of the account, a role of its
/// own, one rule; returns the configuration as put.
pub(crate) fn dr_replication(emu: &Emulator, account: &str) -> ReplicationConfiguration {
    let s3 = emu.s3(account);
    let iam = emu.iam(account);
    let bucket = source_bucket(account);
    let dr = format!("dr-copy-{account}");
    let config = ReplicationConfiguration::builder()
        .role(format!("arn:aws:iam::{account}:role/DrReplication"))
        .rules(
            ReplicationRule::builder()
                .id("dr-copy")
                .priority(1)
                .status(ReplicationRuleStatus::Enabled)
                .filter(ReplicationRuleFilter::builder().prefix("").build())
                .destination(
                    Destination::builder()
                        .bucket(format!("arn:aws:s3:::{dr}"))
                        .build()
                        .unwrap(),
                )
                .delete_marker_replication(
                    DeleteMarkerReplication::builder()
                        .status(DeleteMarkerReplicationStatus::Disabled)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let put = config.clone();
    emu.rt.block_on(async {
        iam.create_role()
            .role_name("DrReplication")
            .assume_role_policy_document(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"s3.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
            )
            .send()
            .await
            .expect("the DR role");
        s3.create_bucket()
            .bucket(&dr)
            .create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::ApNortheast1)
                    .build(),
            )
            .send()
            .await
            .expect("the DR bucket");
        for b in [&bucket, &dr] {
            s3.put_bucket_versioning()
                .bucket(b)
                .versioning_configuration(
                    VersioningConfiguration::builder()
                        .status(BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .expect("versioning");
        }
        s3.put_bucket_replication()
            .bucket(&bucket)
            .replication_configuration(put)
            .send()
            .await
            .expect("the DR rule");
    });
    config
}

/// The bucket's replication configuration, read back with the SDK.
fn live(emu: &Emulator, account: &str) -> Option<ReplicationConfiguration> {
    let s3 = emu.s3(account);
    emu.rt.block_on(async {
        s3.get_bucket_replication()
            .bucket(source_bucket(account))
            .send()
            .await
            .ok()
            .and_then(|r| r.replication_configuration().cloned())
    })
}

fn rule<'a>(config: &'a ReplicationConfiguration, id: &str) -> &'a ReplicationRule {
    config
        .rules()
        .iter()
        .find(|r| r.id() == Some(id))
        .unwrap_or_else(|| panic!("no rule {id} in {config:?}"))
}

#[test]
fn a_bucket_that_already_replicates_is_refused_unless_merged_and_rollback_gives_its_rule_back() {
    let emu = Emulator::start();
    let sources = accounts(1);
    let account = &sources[0];
    emu.seed_sources(&sources);
    let dr = dr_replication(&emu, account);
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    let inv = inv.to_str().unwrap();

    // Default: plan shows the conflict, apply fails the account at replication, naming the
    // rule and its role, and writes no replication configuration.
    let (plan, _) = th.expect(&["plan", "-c", inv], 1);
    assert!(
        plan.contains("dr-copy") && plan.contains("existing_replication"),
        "{plan}"
    );
    th.expect(&["apply", "-c", inv], 1);
    let failed = th
        .json(&["status"], 0)
        .into_iter()
        .find(|l| l["type"] == "node" && l["state"] == "failed")
        .expect("a failed step");
    assert_eq!(failed["step"], "replication");
    assert_eq!(failed["error"]["code"], "ExistingReplication");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`dr-copy` → arn:aws:s3:::dr-copy-")
            && message.contains(&format!("arn:aws:iam::{account}:role/DrReplication")),
        "{message}"
    );
    assert_eq!(
        live(&emu, account),
        Some(dr.clone()),
        "the DR rule untouched"
    );

    // Merged: trailhub's rule beside the DR rule, with a free priority; the role becomes
    // trailhub's, and its policy grants the DR bucket.
    let merged = th.write_inventory(&inventory(&sources, "existing_replication = \"merge\""));
    let merged = merged.to_str().unwrap();
    th.expect(&["apply", "-c", merged], 0);
    let config = live(&emu, account).expect("a configuration");
    assert_eq!(config.role(), role_arn(account));
    assert_eq!(config.rules().len(), 2, "{config:?}");
    assert_eq!(rule(&config, "dr-copy"), &dr.rules()[0], "kept as it was");
    let ours = rule(&config, "ReplicateCloudTrailLogs");
    assert_eq!(ours.priority(), Some(2));
    assert_eq!(
        ours.filter().and_then(|f| f.prefix()),
        Some(format!("AWSLogs/{account}/").as_str()),
        "{ours:?}"
    );
    let inline = snapshot(&emu, account)["inline"]
        .as_str()
        .map(|t| {
            percent_encoding::percent_decode_str(t)
                .decode_utf8()
                .unwrap()
                .to_string()
        })
        .expect("the role's policy");
    let inline: Value = serde_json::from_str(&inline).unwrap();
    assert!(
        inline["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["Resource"]
                == serde_json::json!([format!("arn:aws:s3:::dr-copy-{account}/*")])
                && s["Action"][0] == "s3:ReplicateObject"),
        "{inline:#}"
    );

    // Converged: another apply changes nothing and verify compares trailhub's rule only.
    let (out, _) = th.expect(&["apply", "-c", merged], 0);
    assert!(out.contains(" 0 changed)"), "{out}");
    th.expect(&["verify", "-c", merged], 0);

    // Rollback of the account: trailhub's rule goes, the DR rule and its role come back.
    th.expect(&["rollback", "--account", account], 0);
    assert_eq!(live(&emu, account), Some(dr), "as found before trailhub");
    assert_eq!(snapshot(&emu, account)["stacks"], serde_json::json!([]));
}

/// The ids of the journal's runs, oldest first.
fn run_ids(th: &Trailhub) -> Vec<String> {
    th.json(&["runs"], 0)
        .iter()
        .filter(|l| l["type"] == "run")
        .map(|l| l["run"].as_str().unwrap().to_string())
        .collect()
}

/// The stack's id and tags, `None` when there is no stack of the name.
fn stack(emu: &Emulator, account: &str) -> Option<(String, Vec<(String, String)>)> {
    let cfn = emu.cfn(account);
    emu.rt.block_on(async {
        let out = cfn
            .describe_stacks()
            .stack_name("cloudtrail-replication-role")
            .send()
            .await
            .ok()?;
        let s = out.stacks().first()?;
        let tags = s
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or("").to_string(),
                    t.value().unwrap_or("").to_string(),
                )
            })
            .collect();
        Some((s.stack_id().unwrap_or("").to_string(), tags))
    })
}

/// A role stack made by hand, its template not trailhub's (another description, a narrower
/// policy), as an operator who followed the article loosely would have it.
fn hand_made_stack(emu: &Emulator, account: &str) -> String {
    let template = serde_json::json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "made by hand",
        "Resources": {"S3ReplicationRole": {"Type": "AWS::IAM::Role", "Properties": {
            "RoleName": "S3ReplicationRole",
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
            "Policies": [{"PolicyName": "S3ReplicationPolicy", "PolicyDocument": {
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Action": "s3:GetReplicationConfiguration", "Resource": "*"}]}}]}}}
    })
    .to_string();
    let cfn = emu.cfn(account);
    emu.rt.block_on(async {
        cfn.create_stack()
            .stack_name("cloudtrail-replication-role")
            .template_body(&template)
            .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityNamedIam)
            .send()
            .await
            .expect("the hand-made stack");
    });
    template
}

fn delete_stack(emu: &Emulator, account: &str) {
    let cfn = emu.cfn(account);
    emu.rt.block_on(async {
        cfn.delete_stack()
            .stack_name("cloudtrail-replication-role")
            .send()
            .await
            .expect("delete stack");
    });
}

fn role_exists(emu: &Emulator, account: &str) -> bool {
    let iam = emu.iam(account);
    emu.rt.block_on(async {
        iam.get_role()
            .role_name("S3ReplicationRole")
            .send()
            .await
            .is_ok()
    })
}

fn bucket_tags(emu: &Emulator) -> Vec<(String, String)> {
    let s3 = emu.s3(ARCHIVE);
    emu.rt.block_on(async {
        s3.get_bucket_tagging()
            .bucket(archive_bucket())
            .send()
            .await
            .map(|o| {
                o.tag_set()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    })
}

#[test]
fn rollback_deletes_only_what_the_run_created_as_its_id_and_tags_show() {
    let emu = Emulator::start();
    let sources = accounts(2);
    let (replaced, kept) = (&sources[0], &sources[1]);
    emu.seed_sources(&sources);
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    th.expect(&["apply", "-c", inv.to_str().unwrap()], 0);
    let run = run_ids(&th).pop().unwrap();

    // What the run created carries its marks: the stacks (CloudFormation passes them to the
    // role) and the archive bucket.
    let marks = [
        ("trailhub:managed".to_string(), "true".to_string()),
        ("trailhub:run".to_string(), run.clone()),
    ];
    for account in &sources {
        let (_, tags) = stack(&emu, account).expect("a stack");
        assert!(marks.iter().all(|m| tags.contains(m)), "{tags:?}");
    }
    let tags = bucket_tags(&emu);
    assert!(marks.iter().all(|m| tags.contains(m)), "{tags:?}");

    // Someone deletes one account's stack and makes one of the same name by hand; someone
    // takes the tags off the archive bucket.
    let (created, _) = stack(&emu, replaced).unwrap();
    delete_stack(&emu, replaced);
    hand_made_stack(&emu, replaced);
    let (theirs, _) = stack(&emu, replaced).unwrap();
    assert_ne!(created, theirs);
    let s3 = emu.s3(ARCHIVE);
    emu.rt.block_on(async {
        s3.delete_bucket_tagging()
            .bucket(archive_bucket())
            .send()
            .await
            .expect("untag");
    });

    let (out, _) = th.expect(&["rollback"], 0);
    assert_eq!(
        stack(&emu, replaced).map(|(id, _)| id),
        Some(theirs.clone()),
        "the hand-made stack is kept"
    );
    assert!(
        out.contains("not the one trailhub created") && out.contains(&theirs),
        "{out}"
    );
    assert_eq!(
        stack(&emu, kept),
        None,
        "the stack trailhub created is deleted"
    );
    assert!(
        bucket_exists(&emu, ARCHIVE, &archive_bucket()),
        "an archive bucket without the run's tag is kept"
    );
    assert!(out.contains("does not carry the tag trailhub:run"), "{out}");
}

#[test]
fn an_adopted_stack_whose_role_was_deleted_gets_it_back_and_rollback_returns_its_template() {
    let emu = Emulator::start();
    let sources = accounts(1);
    let account = &sources[0];
    emu.seed_sources(&sources);
    let template = hand_made_stack(&emu, account);
    let iam = emu.iam(account);
    emu.rt.block_on(async {
        iam.delete_role_policy()
            .role_name("S3ReplicationRole")
            .policy_name("S3ReplicationPolicy")
            .send()
            .await
            .expect("delete the inline policy");
        iam.delete_role()
            .role_name("S3ReplicationRole")
            .send()
            .await
            .expect("delete the role");
    });
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    th.expect(&["apply", "-c", inv.to_str().unwrap()], 0);
    assert!(role_exists(&emu, account), "the role is back");
    crate::support::article::assert_source(&emu, account);

    th.expect(&["rollback", "--account", account], 0);
    let cfn = emu.cfn(account);
    let body = emu.rt.block_on(async {
        cfn.get_template()
            .stack_name("cloudtrail-replication-role")
            .send()
            .await
            .expect("the stack is kept")
            .template_body()
            .map(str::to_string)
    });
    let body: Value = serde_json::from_str(&body.expect("a template")).unwrap();
    assert_eq!(
        body,
        serde_json::from_str::<Value>(&template).unwrap(),
        "returned to the template found"
    );
    assert!(role_exists(&emu, account), "with a role");
}

#[test]
fn deleted_principals_are_dropped_from_trailhubs_statements_and_others_are_named_with_the_fix() {
    let emu = Emulator::start();
    let sources = accounts(2);
    emu.seed_sources(&sources);
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let first = th.write_inventory(&inventory(&sources[..1], ""));
    th.expect(&["apply", "-c", first.to_str().unwrap()], 0);

    // A role granted long ago was deleted: the policy shows its unique id, in trailhub's
    // statement and in a statement someone else wrote.
    let mut policy = archive_policy(&emu).expect("a policy");
    let statements = policy["Statement"].as_array_mut().unwrap();
    let objects = statements
        .iter_mut()
        .find(|s| s["Sid"] == "AllowReplicationFromSourceAccount")
        .unwrap();
    objects["Principal"]["AWS"]
        .as_array_mut()
        .unwrap()
        .push("AROAEXAMPLEDELETED01".into());
    statements.push(serde_json::json!({"Sid": "AuditorRead", "Effect": "Allow",
        "Principal": {"AWS": "AROAEXAMPLEDELETED02"}, "Action": "s3:GetObject",
        "Resource": format!("arn:aws:s3:::{}/*", archive_bucket())}));
    let with_theirs = policy.clone();
    put_archive_policy(&emu, &with_theirs);

    // verify names both, with what to do.
    let both = th.write_inventory(&inventory(&sources, ""));
    let both = both.to_str().unwrap();
    let drift = th.json(&["verify", "-c", both, "--output", "json"], 3);
    let stale: Vec<&Value> = drift
        .iter()
        .filter(|l| {
            l["type"] == "drift" && l["actual"].as_str().is_some_and(|a| a.starts_with("AROA"))
        })
        .collect();
    assert_eq!(stale.len(), 2, "{drift:?}");
    assert!(stale.iter().any(|f| {
        f["expected"]
            .as_str()
            .unwrap()
            .contains("remove it by hand")
    }));

    // The new source's grant cannot be written while someone else's statement keeps one: it
    // fails at once, naming it, and nothing is written.
    th.expect(&["apply", "-c", both], 1);
    let failed = th
        .json(&["status"], 0)
        .into_iter()
        .find(|l| l["type"] == "node" && l["state"] == "failed")
        .expect("a failed step");
    assert_eq!(failed["error"]["code"], "StalePrincipal");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("AROAEXAMPLEDELETED02 in statement AuditorRead"),
        "{failed}"
    );
    assert_eq!(failed["attempts"], 1, "not retried");
    assert_eq!(archive_policy(&emu), Some(with_theirs));

    // Once their statement is fixed, trailhub drops the id from its own and grants.
    let statements = policy["Statement"].as_array_mut().unwrap();
    statements.retain(|s| s["Sid"] != "AuditorRead");
    put_archive_policy(&emu, &policy);
    th.expect(&["apply", "-c", both], 0);
    let after = archive_policy(&emu).unwrap();
    assert!(!after.to_string().contains("AROA"), "{after}");
    crate::support::article::assert_policy(&emu, &sources);
    let (history, _) = th.expect(&["history"], 0);
    assert!(
        history.contains("dropped AROAEXAMPLEDELETED01"),
        "{history}"
    );
}

#[test]
fn rollback_leaves_a_principal_in_the_statement_that_already_named_it() {
    let emu = Emulator::start();
    let sources = accounts(1);
    let account = &sources[0];
    emu.seed_sources(&sources);
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    let inv = inv.to_str().unwrap();
    // The archive exists (made by an earlier run) and its policy names the role in the objects
    // statement, written by hand from the article; the check statement is missing.
    th.expect(&["apply", "-c", inv], 0);
    th.expect(&["rollback", "--account", account], 0);
    let by_hand = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "AllowReplicationFromSourceAccounts", "Effect": "Allow",
        "Principal": {"AWS": role_arn(account)},
        "Action": ["s3:ReplicateObject", "s3:ReplicateDelete"],
        "Resource": format!("arn:aws:s3:::{}/*", archive_bucket())}]});
    put_archive_policy(&emu, &by_hand);

    th.expect(&["apply", "-c", inv], 0);
    let granted = archive_policy(&emu).unwrap();
    for sid in [
        "AllowReplicationFromSourceAccounts",
        "AllowReplicationPolicyCheck",
    ] {
        assert_eq!(
            crate::support::article::principals(&granted, sid),
            [role_arn(account)],
            "{granted}"
        );
    }
    th.expect(&["rollback", "--account", account], 0);
    assert_eq!(
        archive_policy(&emu),
        Some(by_hand),
        "only the statement trailhub added the role to loses it"
    );
}

#[test]
fn backfill_refuses_an_account_without_trailhubs_rule_and_its_stack_makes_the_jobs_role() {
    let emu = Emulator::start();
    let sources = accounts(1);
    let account = &sources[0];
    emu.seed_sources(&sources);
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    // Not onboarded: a backfill would copy nothing to the archive, so no job is asked for.
    th.expect(&["backfill", "-c", inv.to_str().unwrap()], 1);
    let failed = th
        .json(&["status"], 0)
        .into_iter()
        .find(|l| l["type"] == "node" && l["state"] == "failed")
        .expect("a failed step");
    assert_eq!(failed["step"], "backfill");
    assert_eq!(failed["error"]["code"], "NotOnboarded");
    assert!(
        failed["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("trailhub apply"),
        "{failed}"
    );
    // The account's stack made the role S3 Batch Replication assumes.
    let iam = emu.iam(account);
    let trust = emu.rt.block_on(async {
        iam.get_role()
            .role_name("S3ReplicationRoleBackfill")
            .send()
            .await
            .expect("the backfill role")
            .role()
            .and_then(|r| r.assume_role_policy_document().map(str::to_string))
            .unwrap()
    });
    let trust = percent_encoding::percent_decode_str(&trust)
        .decode_utf8()
        .unwrap();
    assert!(
        trust.contains("batchoperations.s3.amazonaws.com"),
        "{trust}"
    );
}
