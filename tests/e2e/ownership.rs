//! Accounts with history (issue "Never touch what isn't ours"): replication rules that are not
//! trailhub's, refused by default and kept beside its own on request; rollback that gives back
//! what was there and deletes only what trailhub made, checked against live identity.

use crate::support::article::snapshot;
use crate::support::*;
use aws_sdk_s3::types::{
    BucketVersioningStatus, DeleteMarkerReplication, DeleteMarkerReplicationStatus, Destination,
    ReplicationConfiguration, ReplicationRule, ReplicationRuleFilter, ReplicationRuleStatus,
    VersioningConfiguration,
};
use serde_json::Value;

/// The DR copy a team set up before trailhub: a second bucket of the account, a role of its
/// own, one rule; returns the configuration as put.
fn dr_replication(emu: &Emulator, account: &str) -> ReplicationConfiguration {
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
        Some("AWSLogs/"),
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
