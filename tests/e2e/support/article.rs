//! The article's configuration, read back from the emulator with the SDK (not with trailhub's
//! code) and compared value by value.

use super::{ARCHIVE, Emulator, archive_bucket, role_arn, source_bucket};
use serde_json::{Value, json};

fn decode(doc: &str) -> Value {
    let text = percent_encoding::percent_decode_str(doc)
        .decode_utf8()
        .expect("utf-8 policy");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("policy is not JSON ({e}): {text}"))
}

/// The archive bucket: owned by the archive account, Object Lock, versioning.
pub fn assert_archive(emu: &Emulator) {
    let s3 = emu.s3(ARCHIVE);
    let bucket = archive_bucket();
    emu.rt.block_on(async {
        s3.head_bucket()
            .bucket(&bucket)
            .expected_bucket_owner(ARCHIVE)
            .send()
            .await
            .expect("the archive bucket exists in the archive account");
        let lock = s3
            .get_object_lock_configuration()
            .bucket(&bucket)
            .send()
            .await
            .expect("object lock configuration");
        assert_eq!(
            lock.object_lock_configuration()
                .and_then(|c| c.object_lock_enabled())
                .map(|e| e.as_str()),
            Some("Enabled")
        );
        let versioning = s3
            .get_bucket_versioning()
            .bucket(&bucket)
            .send()
            .await
            .expect("versioning");
        assert_eq!(versioning.status().map(|s| s.as_str()), Some("Enabled"));
    });
}

/// The archive bucket policy, parsed.
pub fn archive_policy(emu: &Emulator) -> Option<Value> {
    let s3 = emu.s3(ARCHIVE);
    emu.rt.block_on(async {
        match s3.get_bucket_policy().bucket(archive_bucket()).send().await {
            Ok(out) => {
                Some(serde_json::from_str(out.policy().expect("a policy")).expect("JSON policy"))
            }
            Err(_) => None,
        }
    })
}

/// The principals of the policy statement `sid`, as a sorted list (string or list form).
pub fn principals(policy: &Value, sid: &str) -> Vec<String> {
    let statement = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .find(|s| s["Sid"] == sid);
    let Some(statement) = statement else {
        return Vec::new();
    };
    let mut out: Vec<String> = match &statement["Principal"]["AWS"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(list) => list
            .iter()
            .map(|v| v.as_str().expect("string").to_string())
            .collect(),
        _ => Vec::new(),
    };
    out.sort();
    out
}

/// Both article statements of the archive policy name exactly `accounts`' roles, with the
/// article's Sids, and actions and resources that isolate the members (each role writes its own
/// account's keys only; no delete, list or versioning change).
pub fn assert_policy(emu: &Emulator, accounts: &[String]) {
    let policy = archive_policy(emu).expect("the archive bucket has a policy");
    let mut want: Vec<String> = accounts.iter().map(|a| role_arn(a)).collect();
    want.sort();
    assert_eq!(
        principals(&policy, "AllowReplicationFromSourceAccount"),
        want
    );
    assert_eq!(principals(&policy, "AllowReplicationPolicyCheck"), want);
    let bucket = archive_bucket();
    let statements = policy["Statement"].as_array().expect("statements");
    let objects = statements
        .iter()
        .find(|s| s["Sid"] == "AllowReplicationFromSourceAccount")
        .expect("objects statement");
    assert_eq!(objects["Effect"], "Allow");
    assert_eq!(
        objects["Action"],
        json!([
            "s3:ReplicateObject",
            "s3:ReplicateTags",
            "s3:ObjectOwnerOverrideToBucketOwner"
        ])
    );
    assert_eq!(
        objects["Resource"],
        format!("arn:aws:s3:::{bucket}/AWSLogs/${{aws:PrincipalAccount}}/*")
    );
    let check = statements
        .iter()
        .find(|s| s["Sid"] == "AllowReplicationPolicyCheck")
        .expect("check statement");
    assert_eq!(check["Action"], json!(["s3:GetBucketVersioning"]));
    assert_eq!(check["Resource"], format!("arn:aws:s3:::{bucket}"));
}

/// Everything the article sets in a source account: versioning, the role (trust and inline
/// policy), the stack and its outputs, and every field of the replication rule.
pub fn assert_source(emu: &Emulator, account: &str) {
    let s3 = emu.s3(account);
    let iam = emu.iam(account);
    let cfn = emu.cfn(account);
    let bucket = source_bucket(account);
    emu.rt.block_on(async {
        let versioning = s3.get_bucket_versioning().bucket(&bucket).send().await.expect("versioning");
        assert_eq!(versioning.status().map(|s| s.as_str()), Some("Enabled"), "{account} versioning");

        let role = iam.get_role().role_name("S3ReplicationRole").send().await.expect("the role exists");
        let role = role.role().expect("role");
        assert_eq!(role.arn(), role_arn(account));
        let trust = decode(role.assume_role_policy_document().expect("trust policy"));
        assert_eq!(trust["Statement"][0]["Principal"]["Service"], "s3.amazonaws.com");
        assert_eq!(trust["Statement"][0]["Action"], "sts:AssumeRole");
        assert_eq!(trust["Statement"][0]["Effect"], "Allow");

        let inline = iam
            .get_role_policy()
            .role_name("S3ReplicationRole")
            .policy_name("S3ReplicationPolicy")
            .send()
            .await
            .expect("the inline policy exists");
        let inline = decode(inline.policy_document());
        assert_eq!(
            inline["Statement"],
            json!([
                {"Effect": "Allow", "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"],
                 "Resource": format!("arn:aws:s3:::{bucket}")},
                {"Effect": "Allow", "Action": ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging",
                                               "s3:GetObjectRetention", "s3:GetObjectLegalHold"],
                 "Resource": format!("arn:aws:s3:::{bucket}/*")},
                {"Effect": "Allow", "Action": ["s3:ReplicateObject", "s3:ReplicateTags", "s3:ObjectOwnerOverrideToBucketOwner"],
                 "Resource": [format!("arn:aws:s3:::{}/AWSLogs/{account}/*", archive_bucket())]}
            ]),
            "{account} inline policy"
        );

        let stacks = cfn
            .describe_stacks()
            .stack_name("cloudtrail-replication-role")
            .send()
            .await
            .expect("the stack exists");
        let stack = &stacks.stacks()[0];
        assert_eq!(stack.stack_status().map(|s| s.as_str()), Some("CREATE_COMPLETE"));
        let output = |key: &str| {
            stack
                .outputs()
                .iter()
                .find(|o| o.output_key() == Some(key))
                .map(|o| (o.output_value().map(str::to_string), o.export_name().map(str::to_string)))
        };
        assert_eq!(
            output("ReplicationRoleArn"),
            Some((Some(role_arn(account)), Some("cloudtrail-replication-role-ReplicationRoleArn".into())))
        );
        assert_eq!(output("ReplicationRoleName").and_then(|o| o.0), Some("S3ReplicationRole".into()));
        assert_eq!(
            stack.parameters()[0].parameter_value(),
            Some(ARCHIVE),
            "DestinationAccountId"
        );

        let replication = s3
            .get_bucket_replication()
            .bucket(&bucket)
            .send()
            .await
            .expect("a replication configuration");
        let config = replication.replication_configuration().expect("configuration");
        assert_eq!(config.role(), role_arn(account));
        assert_eq!(config.rules().len(), 1);
        let rule = &config.rules()[0];
        assert_eq!(rule.id(), Some("ReplicateCloudTrailLogs"));
        assert_eq!(rule.priority(), Some(1));
        assert_eq!(rule.status().as_str(), "Enabled");
        let own = format!("AWSLogs/{account}/");
        assert_eq!(rule.filter().and_then(|f| f.prefix()), Some(own.as_str()), "the account's own keys");
        assert_eq!(
            rule.delete_marker_replication().and_then(|d| d.status()).map(|s| s.as_str()),
            Some("Disabled")
        );
        let d = rule.destination().expect("destination");
        assert_eq!(d.bucket(), format!("arn:aws:s3:::{}", archive_bucket()));
        assert_eq!(d.account(), Some(ARCHIVE));
        assert_eq!(d.storage_class().map(|s| s.as_str()), Some("STANDARD_IA"));
        assert_eq!(d.access_control_translation().map(|a| a.owner().as_str()), Some("Destination"));
        let rtc = d.replication_time().expect("replication time control");
        assert_eq!(rtc.status().as_str(), "Enabled");
        assert_eq!(rtc.time().and_then(|t| t.minutes()), Some(15));
        let metrics = d.metrics().expect("metrics");
        assert_eq!(metrics.status().as_str(), "Enabled");
        assert_eq!(metrics.event_threshold().and_then(|t| t.minutes()), Some(15));
    });
}

/// What a source account holds, as comparable JSON: versioning, replication rule, role and
/// policies, stacks, and the objects of its bucket.
pub fn snapshot(emu: &Emulator, account: &str) -> Value {
    let s3 = emu.s3(account);
    let iam = emu.iam(account);
    let cfn = emu.cfn(account);
    let bucket = source_bucket(account);
    emu.rt.block_on(async {
        let versioning = s3
            .get_bucket_versioning()
            .bucket(&bucket)
            .send()
            .await
            .ok()
            .and_then(|v| v.status().map(|s| s.as_str().to_string()));
        let replication = s3
            .get_bucket_replication()
            .bucket(&bucket)
            .send()
            .await
            .ok()
            .and_then(|r| r.replication_configuration().map(|c| format!("{c:?}")));
        let role = iam
            .get_role()
            .role_name("S3ReplicationRole")
            .send()
            .await
            .ok()
            .map(|r| {
                let r = r.role().expect("role");
                (
                    r.arn().to_string(),
                    r.assume_role_policy_document().map(str::to_string),
                )
            });
        let inline = iam
            .get_role_policy()
            .role_name("S3ReplicationRole")
            .policy_name("S3ReplicationPolicy")
            .send()
            .await
            .ok()
            .map(|p| p.policy_document().to_string());
        let stacks: Vec<String> = cfn
            .list_stacks()
            .send()
            .await
            .expect("list stacks")
            .stack_summaries()
            .iter()
            .filter(|s| s.stack_status().map(|x| x.as_str()) != Some("DELETE_COMPLETE"))
            .map(|s| {
                format!(
                    "{} {}",
                    s.stack_name().unwrap_or(""),
                    s.stack_status().map(|x| x.as_str()).unwrap_or("")
                )
            })
            .collect();
        let objects: Vec<String> = s3
            .list_object_versions()
            .bucket(&bucket)
            .send()
            .await
            .map(|o| {
                o.versions()
                    .iter()
                    .filter_map(|v| v.key().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "versioning": versioning, "replication": replication, "role": role, "inline": inline,
            "stacks": stacks, "objects": objects,
        })
    })
}

/// Puts an object (a stand-in for a log file) in `bucket` as `account`.
pub fn put_object(emu: &Emulator, account: &str, bucket: &str, key: &str) {
    let s3 = emu.s3(account);
    emu.rt.block_on(async {
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from_static(
                b"{\"Records\":[]}",
            ))
            .send()
            .await
            .expect("put object");
    });
}

/// Whether `account` owns `bucket`.
pub fn bucket_exists(emu: &Emulator, account: &str, bucket: &str) -> bool {
    let s3 = emu.s3(account);
    emu.rt.block_on(async {
        s3.head_bucket()
            .bucket(bucket)
            .expected_bucket_owner(account)
            .send()
            .await
            .is_ok()
    })
}

/// Writes `policy` as the archive bucket's policy, by hand (as the archive's owner).
pub fn put_archive_policy(emu: &Emulator, policy: &Value) {
    let s3 = emu.s3(ARCHIVE);
    emu.rt.block_on(async {
        s3.put_bucket_policy()
            .bucket(archive_bucket())
            .policy(policy.to_string())
            .send()
            .await
            .expect("put the policy by hand");
    });
}
