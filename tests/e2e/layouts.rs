//! Accounts whose logs are not where the article puts them (issue "Never lose a log"): a trail
//! with a key prefix, trails found rather than named (a multi-region trail of another home
//! region among them), no trail at all, SSE-KMS logs, a bucket in another region. Each is
//! followed, or refused saying why; none succeeds while copying nothing.

use crate::support::article::{archive_policy, snapshot};
use crate::support::*;
use serde_json::{Value, json};

/// A source's bucket in `region`, and a trail `name` delivering to it under `prefix`, with
/// `kms_key`, homed in `trail_region` (multi-region when it is not the inventory's).
struct Seed<'a> {
    region: &'a str,
    trail: Option<&'a str>,
    prefix: Option<&'a str>,
    kms_key: Option<String>,
    trail_region: &'a str,
}

impl Default for Seed<'_> {
    fn default() -> Self {
        Seed {
            region: "ap-northeast-1",
            trail: Some("Org"),
            prefix: None,
            kms_key: None,
            trail_region: "ap-northeast-1",
        }
    }
}

fn seed(emu: &Emulator, account: &str, seed: Seed<'_>) {
    let bucket = source_bucket(account);
    let s3 = emu.s3_in(account, seed.region);
    let trail = emu.cloudtrail_in(account, seed.trail_region);
    emu.rt.block_on(async {
        let mut create = s3.create_bucket().bucket(&bucket);
        if seed.region != "us-east-1" {
            create = create.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                        seed.region,
                    ))
                    .build(),
            );
        }
        create.send().await.expect("create bucket");
        let Some(name) = seed.trail else { return };
        trail
            .create_trail()
            .name(name)
            .s3_bucket_name(&bucket)
            .set_s3_key_prefix(seed.prefix.map(str::to_string))
            .set_kms_key_id(seed.kms_key)
            .is_multi_region_trail(seed.trail_region != "ap-northeast-1")
            .send()
            .await
            .expect("create trail");
        trail
            .start_logging()
            .name(name)
            .send()
            .await
            .expect("start");
    });
}

/// A KMS key of `account` in `region`; with `delegating` false its policy names no root.
fn source_key(emu: &Emulator, account: &str, region: &str, delegating: bool) -> String {
    let kms = emu.kms_in(account, region);
    emu.rt.block_on(async {
        let key = kms.create_key().send().await.expect("create key");
        let arn = key.key_metadata().unwrap().arn().unwrap().to_string();
        if !delegating {
            let policy = json!({"Version": "2012-10-17", "Statement": [{"Sid": "AdminsOnly", "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{account}:role/Admin")}, "Action": "kms:*", "Resource": "*"}]});
            kms.put_key_policy()
                .key_id(&arn)
                .policy_name("default")
                .policy(policy.to_string())
                .send()
                .await
                .expect("put key policy");
        }
        arn
    })
}

/// The replication configuration of `account`'s bucket, as JSON read back by the SDK.
fn rules(emu: &Emulator, account: &str, region: &str) -> Vec<aws_sdk_s3::types::ReplicationRule> {
    let s3 = emu.s3_in(account, region);
    emu.rt.block_on(async {
        s3.get_bucket_replication()
            .bucket(source_bucket(account))
            .send()
            .await
            .expect("a replication configuration")
            .replication_configuration()
            .expect("configuration")
            .rules()
            .to_vec()
    })
}

/// Inventory for `sources`, no trail pinned (`extra` goes to `[source_defaults]`).
fn inventory_unpinned(sources: &[String], extra: &str) -> String {
    inventory(sources, extra).replace("trail = \"Members\"\n", "")
}

fn failure(th: &Trailhub, account: &str) -> Value {
    th.json(&["status"], 0)
        .into_iter()
        .find(|l| l["type"] == "node" && l["account"] == account && l["state"] == "failed")
        .unwrap_or_else(|| panic!("{account} has a failed step"))
}

#[test]
fn a_trail_prefix_is_followed_and_found_trails_are_replicated_while_none_is_refused() {
    let emu = Emulator::start();
    let sources = accounts(4);
    let (prefixed, multi, bare, none) = (&sources[0], &sources[1], &sources[2], &sources[3]);
    seed(
        &emu,
        prefixed,
        Seed {
            prefix: Some("org-logs"),
            ..Seed::default()
        },
    );
    // A multi-region trail homed in another region: seen here only as a shadow trail.
    seed(
        &emu,
        multi,
        Seed {
            trail_region: "us-east-1",
            ..Seed::default()
        },
    );
    seed(&emu, bare, Seed::default());
    seed(
        &emu,
        none,
        Seed {
            trail: None,
            ..Seed::default()
        },
    );
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let text = inventory_unpinned(&sources, "").replace(
        "region = \"ap-northeast-1\"",
        "region = \"ap-northeast-1\"\npolicy = \"least-privilege\"",
    );
    let inv = th.write_inventory(&text);
    th.expect(&["apply", "-c", inv.to_str().unwrap()], 1);

    let prefixed_rules = rules(&emu, prefixed, "ap-northeast-1");
    assert_eq!(prefixed_rules.len(), 1);
    let rule = &prefixed_rules[0];
    assert_eq!(rule.id(), Some("ReplicateCloudTrailLogs-org-logs"));
    assert_eq!(
        rule.filter().and_then(|f| f.prefix()),
        Some(format!("org-logs/AWSLogs/{prefixed}/").as_str()),
        "the rule follows the trail's key prefix, for the account's own keys"
    );
    let policy = archive_policy(&emu).expect("a policy");
    let statement = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == format!("TrailhubReplicateObjects{prefixed}"))
        .expect("the least-privilege statement");
    assert_eq!(
        statement["Resource"],
        format!(
            "arn:aws:s3:::{}/org-logs/AWSLogs/{prefixed}/*",
            archive_bucket()
        )
    );
    for account in [multi, bare] {
        let found = rules(&emu, account, "ap-northeast-1");
        assert_eq!(
            found[0].filter().and_then(|f| f.prefix()),
            Some(format!("AWSLogs/{account}/").as_str()),
            "{account}"
        );
    }
    let failed = failure(&th, none);
    assert_eq!(failed["step"], "bucket-check");
    assert_eq!(failed["error"]["code"], "NoTrail");
    assert_eq!(
        snapshot(&emu, none)["replication"],
        json!(null),
        "nothing written there"
    );

    // An inventory prefix that contradicts the trail is refused naming both.
    let pinned = th.write_inventory(&inventory_unpinned(&sources[..1], "prefix = \"AWSLogs/\""));
    th.expect(&["apply", "-c", pinned.to_str().unwrap()], 1);
    let failed = failure(&th, prefixed);
    assert_eq!(failed["error"]["code"], "PrefixMismatch");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`AWSLogs/`") && message.contains("org-logs/AWSLogs/"),
        "{message}"
    );
}

#[test]
fn sse_kms_logs_are_replicated_with_the_archive_key_and_a_key_that_does_not_delegate_is_refused() {
    let emu = Emulator::start();
    let sources = accounts(2);
    let (kms, closed) = (&sources[0], &sources[1]);
    // The bucket in us-east-1 under an inventory of ap-northeast-1: cross-region replication.
    let key = source_key(&emu, kms, "us-east-1", true);
    seed(
        &emu,
        kms,
        Seed {
            region: "us-east-1",
            kms_key: Some(key.clone()),
            ..Seed::default()
        },
    );
    let closed_key = source_key(&emu, closed, "ap-northeast-1", false);
    seed(
        &emu,
        closed,
        Seed {
            kms_key: Some(closed_key.clone()),
            ..Seed::default()
        },
    );
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory_unpinned(&sources, ""));
    let inv = inv.to_str().unwrap();
    th.expect(&["apply", "-c", inv], 1);

    let failed = failure(&th, closed);
    assert_eq!(failed["step"], "bucket-check");
    assert_eq!(failed["error"]["code"], "KmsKeyPolicy");
    assert!(
        failed["error"]["hint"]
            .as_str()
            .unwrap()
            .contains(&format!("arn:aws:iam::{closed}:root")),
        "the statement to add: {failed}"
    );

    // The archive key: created, aliased, tagged; its policy admits the role.
    let archive_kms = emu.kms_in(ARCHIVE, "ap-northeast-1");
    let alias = format!("alias/trailhub/{}", archive_bucket());
    let (archive_key, policy, tags) = emu.rt.block_on(async {
        let described = archive_kms
            .describe_key()
            .key_id(&alias)
            .send()
            .await
            .expect("the alias");
        let arn = described.key_metadata().unwrap().arn().unwrap().to_string();
        let policy = archive_kms
            .get_key_policy()
            .key_id(&arn)
            .policy_name("default")
            .send()
            .await
            .unwrap();
        let tags = archive_kms
            .list_resource_tags()
            .key_id(&arn)
            .send()
            .await
            .unwrap();
        let tags: Vec<(String, String)> = tags
            .tags()
            .iter()
            .map(|t| (t.tag_key().to_string(), t.tag_value().to_string()))
            .collect();
        (
            arn,
            serde_json::from_str::<Value>(policy.policy().unwrap()).unwrap(),
            tags,
        )
    });
    assert!(
        tags.contains(&("trailhub:managed".into(), "true".into())),
        "{tags:?}"
    );
    let rotating = emu.rt.block_on(async {
        archive_kms
            .get_key_rotation_status()
            .key_id(&archive_key)
            .send()
            .await
            .expect("rotation status")
            .key_rotation_enabled()
    });
    assert!(rotating, "a key trailhub makes rotates");
    let grant = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "TrailhubReplicaEncryption")
        .unwrap_or_else(|| panic!("{policy}"));
    assert_eq!(grant["Principal"]["AWS"], json!([role_arn(kms)]));

    // The rule opts in to SSE-KMS objects and encrypts replicas with the archive key; the
    // role decrypts with the source key through S3 in the bucket's own region.
    let found = rules(&emu, kms, "us-east-1");
    let rule = &found[0];
    assert_eq!(
        rule.source_selection_criteria()
            .and_then(|c| c.sse_kms_encrypted_objects())
            .map(|o| o.status().as_str()),
        Some("Enabled")
    );
    assert_eq!(
        rule.destination()
            .and_then(|d| d.encryption_configuration())
            .and_then(|e| e.replica_kms_key_id()),
        Some(archive_key.as_str())
    );
    let inline = snapshot_inline(&emu, kms);
    let decrypt = inline["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Action"] == "kms:Decrypt")
        .unwrap_or_else(|| panic!("{inline}"));
    assert_eq!(decrypt["Resource"], json!([key]));
    assert_eq!(
        decrypt["Condition"]["StringLike"]["kms:ViaService"],
        "s3.us-east-1.amazonaws.com"
    );
    th.expect(&["verify", "-c", &inventory_path(&th, &sources[..1])], 0);

    // Rollback takes the role out of the key policy, and keeps the key.
    th.expect(&["rollback"], 0);
    let (still, policy) = emu.rt.block_on(async {
        let described = archive_kms
            .describe_key()
            .key_id(&archive_key)
            .send()
            .await
            .unwrap();
        let policy = archive_kms
            .get_key_policy()
            .key_id(&archive_key)
            .policy_name("default")
            .send()
            .await
            .unwrap();
        (
            described
                .key_metadata()
                .unwrap()
                .key_state()
                .map(|s| s.as_str().to_string()),
            serde_json::from_str::<Value>(policy.policy().unwrap()).unwrap(),
        )
    });
    assert_eq!(
        still.as_deref(),
        Some("Enabled"),
        "the key is never scheduled for deletion"
    );
    assert!(
        !policy.to_string().contains(&role_arn(kms)),
        "the role left the key policy: {policy}"
    );
}

/// The role's inline policy of `account`, decoded.
fn snapshot_inline(emu: &Emulator, account: &str) -> Value {
    let text = snapshot(emu, account)["inline"]
        .as_str()
        .unwrap()
        .to_string();
    let decoded = percent_encoding::percent_decode_str(&text)
        .decode_utf8()
        .unwrap();
    serde_json::from_str(&decoded).unwrap()
}

/// An inventory of `sources` alone, written beside the other, and its path.
fn inventory_path(th: &Trailhub, sources: &[String]) -> String {
    let path = th.dir.path().join("one.toml");
    std::fs::write(&path, inventory_unpinned(sources, "")).unwrap();
    path.to_str().unwrap().to_string()
}
