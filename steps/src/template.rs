//! The article's CloudFormation template for the replication role, built from the inventory's
//! names and from where the source's logs are written ([`SourceLogs`]). It is the article's
//! template in structure (parameter, role, trust policy, inline policy, two exported outputs),
//! as JSON; names are substituted the way the article writes them.
//!
//! Beyond the article, the inline policy lets S3 read object retention and legal holds (what
//! AWS's replication permissions list for buckets with Object Lock: granted always, as Object
//! Lock can be turned on for a bucket later and replication would then stop), and, for SSE-KMS
//! logs, decrypt with the source keys and encrypt with the archive's key, each limited to S3
//! (`kms:ViaService`) and to the objects concerned (the S3 encryption context: the object's ARN,
//! or the bucket's with S3 Bucket Keys), as AWS's "replicating encrypted objects" policy does.
//! The archive key is named by its account and region (`key/*`): the role is made before the
//! archive key admits it, and only a key whose own policy admits the role can be used.
//!
//! The stack also makes the role S3 Batch Replication assumes for `trailhub backfill`
//! (`<role name>Backfill`, trusted by `batchoperations.s3.amazonaws.com`), limited to the
//! source bucket.
//!
//! When a source keeps replication rules that are not trailhub's (`existing_replication =
//! "merge"`), its role replicates for them too and also grants what their destinations need.

use crate::logs::SourceLogs;
use crate::spec::{Setting, SourceSpec, s3_via_service};
use serde_json::{Value, json};

/// Writes `name` for a `Fn::Sub`, with `account` replaced by `${var}` (how the article writes
/// `cm-members-cloudtrail-${AWS::AccountId}`).
fn sub_name(name: &str, account: &str, var: &str) -> String {
    name.replace(account, &format!("${{{var}}}"))
}

/// The template (JSON text) for `source`'s replication role, and its parameters.
pub fn role_template(
    setting: &Setting,
    source: &SourceSpec,
    logs: &SourceLogs,
) -> (String, Vec<(String, String)>) {
    let partition = &setting.partition;
    let source_bucket = sub_name(&source.bucket, &source.account_id, "AWS::AccountId");
    let archive_bucket = sub_name(
        &setting.archive.bucket,
        &setting.archive.account_id,
        "DestinationAccountId",
    );
    let sub = |arn: String| json!({ "Fn::Sub": arn });
    let mut statements = vec![
        s3_statement(
            &["s3:GetReplicationConfiguration", "s3:ListBucket"],
            sub(format!("arn:{partition}:s3:::{source_bucket}")),
        ),
        s3_statement(
            &SOURCE_OBJECT_ACTIONS,
            sub(format!("arn:{partition}:s3:::{source_bucket}/*")),
        ),
        s3_statement(
            &ARCHIVE_REPLICA_ACTIONS,
            json!(
                logs.prefixes
                    .iter()
                    .map(|p| sub(format!(
                        "arn:{partition}:s3:::{archive_bucket}/{p}${{AWS::AccountId}}/*"
                    )))
                    .collect::<Vec<_>>()
            ),
        ),
    ];
    statements.extend(kms_statements(setting, source, logs));
    statements.extend(kept_statements(setting, source, logs));
    let backfill = backfill_statements(
        &sub(format!("arn:{partition}:s3:::{source_bucket}")),
        &sub(format!("arn:{partition}:s3:::{source_bucket}/*")),
        &sub(format!(
            "arn:{partition}:s3:::{source_bucket}/{BACKFILL_REPORTS}*"
        )),
    );
    let template: Value = json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "CloudTrail S3 Replication IAM Role for cross-account log aggregation",
        "Parameters": {
            "DestinationAccountId": {
                "Type": "String",
                "Description": "Destination account ID for log aggregation",
                "AllowedPattern": "[0-9]{12}",
                "ConstraintDescription": "Must be a valid 12-digit AWS account ID"
            }
        },
        "Resources": {
            "S3ReplicationRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": source.role_name,
                    "AssumeRolePolicyDocument": trust_policy(setting, source),
                    "Policies": [{
                        "PolicyName": "S3ReplicationPolicy",
                        "PolicyDocument": {"Version": "2012-10-17", "Statement": statements}
                    }]
                }
            },
            "S3BatchReplicationRole": backfill_role(source, backfill)
        },
        "Outputs": {
            "ReplicationRoleArn": {
                "Description": "ARN of the S3 Replication Role",
                "Value": {"Fn::GetAtt": ["S3ReplicationRole", "Arn"]},
                "Export": {"Name": {"Fn::Sub": "${AWS::StackName}-ReplicationRoleArn"}}
            },
            "ReplicationRoleName": {
                "Description": "Name of the S3 Replication Role",
                "Value": {"Ref": "S3ReplicationRole"},
                "Export": {"Name": {"Fn::Sub": "${AWS::StackName}-ReplicationRoleName"}}
            },
            "BackfillRoleArn": {
                "Description": "ARN of the role S3 Batch Replication assumes (trailhub backfill)",
                "Value": {"Fn::GetAtt": ["S3BatchReplicationRole", "Arn"]}
            }
        }
    });
    let text = serde_json::to_string_pretty(&template).expect("the template should serialize");
    (
        text,
        vec![(
            "DestinationAccountId".to_string(),
            setting.archive.account_id.clone(),
        )],
    )
}

/// Where in the source bucket a backfill job writes its completion report (not under a
/// replicated prefix: the report is not a log).
pub const BACKFILL_REPORTS: &str = "trailhub-backfill-reports/";

/// The name of the role S3 Batch Replication assumes for `role_name`'s account: the replication
/// role's name followed by `Backfill`, within IAM's 64 characters.
pub fn backfill_role_name(role_name: &str) -> String {
    let base: String = role_name.chars().take(64 - "Backfill".len()).collect();
    format!("{base}Backfill")
}

/// The template's resource for the role S3 Batch Replication assumes, with `statements`.
fn backfill_role(source: &SourceSpec, statements: Vec<Value>) -> Value {
    json!({
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": backfill_role_name(&source.role_name),
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": "batchoperations.s3.amazonaws.com"},
                "Action": "sts:AssumeRole"
            }]},
            "Policies": [{
                "PolicyName": "S3BatchReplicationPolicy",
                "PolicyDocument": {"Version": "2012-10-17", "Statement": statements}
            }]
        }
    })
}

/// What S3 Batch Replication needs to replicate a source's existing objects with a manifest it
/// generates from the replication configuration, as AWS's Batch Replication policy lists it:
/// start replication of the objects, read the configuration and make the inventory the
/// manifest comes from, write the completion report.
fn backfill_statements(bucket: &Value, objects: &Value, reports: &Value) -> Vec<Value> {
    vec![
        s3_statement(&["s3:InitiateReplication"], objects.clone()),
        s3_statement(
            &[
                "s3:GetReplicationConfiguration",
                "s3:PutInventoryConfiguration",
            ],
            bucket.clone(),
        ),
        s3_statement(
            &["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"],
            reports.clone(),
        ),
    ]
}

/// What S3 reads of a source object to replicate it (Object Lock's retention and legal hold
/// included).
const SOURCE_OBJECT_ACTIONS: [&str; 5] = [
    "s3:GetObjectVersionForReplication",
    "s3:GetObjectVersionAcl",
    "s3:GetObjectVersionTagging",
    "s3:GetObjectRetention",
    "s3:GetObjectLegalHold",
];

/// What S3 does in the archive for the role: its own account's logs only (the archive's policy
/// says the same), never a delete marker (trailhub's rules do not replicate them).
const ARCHIVE_REPLICA_ACTIONS: [&str; 3] = [
    "s3:ReplicateObject",
    "s3:ReplicateTags",
    "s3:ObjectOwnerOverrideToBucketOwner",
];

/// What S3 does for the role in the destinations of rules kept beside trailhub's, whose own
/// settings (delete marker replication among them) trailhub leaves as they are.
const REPLICA_ACTIONS: [&str; 4] = [
    "s3:ReplicateObject",
    "s3:ReplicateTags",
    "s3:ReplicateDelete",
    "s3:ObjectOwnerOverrideToBucketOwner",
];

fn s3_statement(actions: &[&str], resource: Value) -> Value {
    json!({"Effect": "Allow", "Action": actions, "Resource": resource})
}

/// For SSE-KMS logs: decrypt with the source keys, encrypt replicas with the archive's key.
///
/// The encryption context S3 passes to KMS is the object's ARN, or the bucket's ARN for an
/// object encrypted under an S3 Bucket Key (User Guide, "Replicating encrypted objects", S3
/// Bucket Keys and replication): both are allowed on each side, since a bucket holds objects
/// written before and after its Bucket Key was turned on, and a replica keeps its source
/// object's Bucket Key setting, so that its context is then the archive bucket's ARN. Under a
/// Bucket Key S3 also calls `kms:Decrypt` on the replica key to check the Bucket Key's
/// integrity (same page), hence `kms:Decrypt` beside `kms:Encrypt` on the archive key.
fn kms_statements(setting: &Setting, source: &SourceSpec, logs: &SourceLogs) -> Vec<Value> {
    if !logs.kms() {
        return Vec::new();
    }
    let partition = &setting.partition;
    let src = setting.bucket_arn(&source.bucket);
    let dst = setting.bucket_arn(&setting.archive.bucket);
    let source_region = logs.region.as_deref().unwrap_or(&setting.region);
    vec![
        json!({
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": logs.kms_keys,
            "Condition": {"StringLike": {
                "kms:ViaService": s3_via_service(source_region),
                "kms:EncryptionContext:aws:s3:arn": encryption_contexts(&src, &logs.prefixes),
            }}
        }),
        json!({
            "Effect": "Allow",
            "Action": REPLICA_KEY_ACTIONS,
            "Resource": format!("arn:{partition}:kms:{}:{}:key/*", setting.region, setting.archive.account_id),
            "Condition": {"StringLike": {
                "kms:ViaService": s3_via_service(&setting.region),
                "kms:EncryptionContext:aws:s3:arn": encryption_contexts(&dst, &logs.prefixes),
            }}
        }),
    ]
}

/// What S3 does with the archive key for the role: encrypt replicas, and under an S3 Bucket Key
/// decrypt (to check the Bucket Key).
pub(crate) const REPLICA_KEY_ACTIONS: [&str; 3] =
    ["kms:Encrypt", "kms:GenerateDataKey", "kms:Decrypt"];

/// The S3 encryption contexts of the objects under `prefixes` in `bucket_arn`: each object's
/// ARN, and the bucket's ARN (an object under an S3 Bucket Key).
pub(crate) fn encryption_contexts(bucket_arn: &str, prefixes: &[String]) -> Vec<String> {
    prefixes
        .iter()
        .map(|p| format!("{bucket_arn}/{p}*"))
        .chain(std::iter::once(bucket_arn.to_string()))
        .collect()
}

/// For the replication rules kept beside trailhub's (`existing_replication = "merge"`), what
/// their destinations need of the role that now replicates for them: writing replicas there,
/// encrypting with their replica keys, decrypting the source's SSE-KMS objects through S3.
fn kept_statements(setting: &Setting, source: &SourceSpec, logs: &SourceLogs) -> Vec<Value> {
    let Some(kept) = &logs.kept else {
        return Vec::new();
    };
    let mut statements = Vec::new();
    if !kept.destinations.is_empty() {
        let objects: Vec<String> = kept.destinations.iter().map(|d| format!("{d}/*")).collect();
        statements.push(s3_statement(&REPLICA_ACTIONS, json!(objects)));
    }
    if !kept.replica_keys.is_empty() {
        statements.push(json!({
            "Effect": "Allow",
            "Action": REPLICA_KEY_ACTIONS,
            "Resource": kept.replica_keys,
        }));
    }
    if kept.sse_kms {
        let region = logs.region.as_deref().unwrap_or(&setting.region);
        statements.push(json!({
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": format!("arn:{}:kms:{region}:{}:key/*", setting.partition, source.account_id),
            "Condition": {"StringLike": {"kms:ViaService": s3_via_service(region)}}
        }));
    }
    statements
}

/// The role's trust policy: S3 may assume it. With `trust_conditions`, only on behalf of the
/// source account's own bucket (AWS's confused-deputy guidance for service roles, which its
/// replication documentation does not show: an explicit opt-in).
pub fn trust_policy(setting: &Setting, source: &SourceSpec) -> Value {
    let mut statement = json!({
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "sts:AssumeRole"
    });
    if source.trust_conditions {
        statement["Condition"] = json!({
            "StringEquals": {"aws:SourceAccount": source.account_id},
            "ArnLike": {"aws:SourceArn": setting.bucket_arn(&source.bucket)}
        });
    }
    json!({"Version": "2012-10-17", "Statement": [statement]})
}

/// The role's inline policy as the template resolves it (for comparing with what IAM holds).
pub fn resolved_inline_policy(setting: &Setting, source: &SourceSpec, logs: &SourceLogs) -> Value {
    let src = setting.bucket_arn(&source.bucket);
    let dst = setting.bucket_arn(&setting.archive.bucket);
    let mut statements = vec![
        s3_statement(
            &["s3:GetReplicationConfiguration", "s3:ListBucket"],
            json!(src),
        ),
        s3_statement(&SOURCE_OBJECT_ACTIONS, json!(format!("{src}/*"))),
        s3_statement(
            &ARCHIVE_REPLICA_ACTIONS,
            json!(
                logs.prefixes
                    .iter()
                    .map(|p| format!("{dst}/{p}{}/*", source.account_id))
                    .collect::<Vec<_>>()
            ),
        ),
    ];
    statements.extend(kms_statements(setting, source, logs));
    statements.extend(kept_statements(setting, source, logs));
    json!({"Version": "2012-10-17", "Statement": statements})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting() -> Setting {
        Setting::example()
    }

    fn source(trust_conditions: bool) -> SourceSpec {
        SourceSpec {
            trust_conditions,
            ..SourceSpec::example()
        }
    }

    fn logs(kms: bool) -> SourceLogs {
        SourceLogs {
            bucket: "cm-members-cloudtrail-222222222222".into(),
            encryption: if kms { "aws:kms" } else { "AES256" }.into(),
            trail: None,
            region: Some("us-east-1".into()),
            prefixes: vec!["AWSLogs/".into(), "org/AWSLogs/".into()],
            trails: vec![],
            kms_keys: if kms {
                vec!["arn:aws:kms:us-east-1:222222222222:key/k".into()]
            } else {
                vec![]
            },
            bucket_key: false,
            kept: None,
        }
    }

    #[test]
    fn the_trust_conditions_are_an_opt_in() {
        let plain = json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sts:AssumeRole"
        }]});
        assert_eq!(trust_policy(&setting(), &source(false)), plain);
        let tied = trust_policy(&setting(), &source(true));
        assert_eq!(
            tied["Statement"][0]["Condition"]["StringEquals"]["aws:SourceAccount"],
            "222222222222"
        );
        assert_eq!(
            tied["Statement"][0]["Condition"]["ArnLike"]["aws:SourceArn"],
            "arn:aws:s3:::cm-members-cloudtrail-222222222222"
        );
    }

    #[test]
    fn kms_logs_add_decrypt_on_the_source_keys_and_encrypt_in_the_archive() {
        let plain = resolved_inline_policy(&setting(), &source(false), &logs(false));
        assert_eq!(plain["Statement"].as_array().map(Vec::len), Some(3));
        assert_eq!(
            plain["Statement"][1]["Action"][3], "s3:GetObjectRetention",
            "Object Lock's reads are granted"
        );
        let kms = resolved_inline_policy(&setting(), &source(false), &logs(true));
        let decrypt = &kms["Statement"][3];
        assert_eq!(decrypt["Action"], "kms:Decrypt");
        assert_eq!(
            decrypt["Resource"][0],
            "arn:aws:kms:us-east-1:222222222222:key/k"
        );
        assert_eq!(
            decrypt["Condition"]["StringLike"]["kms:ViaService"], "s3.us-east-1.amazonaws.com",
            "the source bucket's own region"
        );
        assert_eq!(
            decrypt["Condition"]["StringLike"]["kms:EncryptionContext:aws:s3:arn"],
            json!([
                "arn:aws:s3:::cm-members-cloudtrail-222222222222/AWSLogs/*",
                "arn:aws:s3:::cm-members-cloudtrail-222222222222/org/AWSLogs/*",
                "arn:aws:s3:::cm-members-cloudtrail-222222222222"
            ]),
            "objects written with and without an S3 Bucket Key"
        );
        let encrypt = &kms["Statement"][4];
        assert_eq!(
            encrypt["Resource"],
            "arn:aws:kms:ap-northeast-1:111111111111:key/*"
        );
        assert_eq!(
            encrypt["Condition"]["StringLike"]["kms:ViaService"],
            "s3.ap-northeast-1.amazonaws.com"
        );
        assert_eq!(
            encrypt["Action"],
            json!(["kms:Encrypt", "kms:GenerateDataKey", "kms:Decrypt"]),
            "under a Bucket Key S3 decrypts with the replica key too"
        );
        assert_eq!(
            encrypt["Condition"]["StringLike"]["kms:EncryptionContext:aws:s3:arn"],
            json!([
                "arn:aws:s3:::aggregation-cloudtrail-logs-111111111111/AWSLogs/*",
                "arn:aws:s3:::aggregation-cloudtrail-logs-111111111111/org/AWSLogs/*",
                "arn:aws:s3:::aggregation-cloudtrail-logs-111111111111"
            ]),
            "a replica that keeps its Bucket Key has the archive bucket's ARN as context"
        );
        let mut china = setting();
        china.region = "cn-north-1".into();
        china.partition = "aws-cn".into();
        let mut china_logs = logs(true);
        china_logs.region = Some("cn-northwest-1".into());
        let cn = resolved_inline_policy(&china, &source(false), &china_logs);
        assert_eq!(
            cn["Statement"][3]["Condition"]["StringLike"]["kms:ViaService"],
            "s3.cn-northwest-1.amazonaws.com.cn"
        );
        assert_eq!(
            cn["Statement"][4]["Condition"]["StringLike"]["kms:ViaService"],
            "s3.cn-north-1.amazonaws.com.cn"
        );
        let (template, _) = role_template(&setting(), &source(false), &logs(true));
        let template: Value = serde_json::from_str(&template).expect("JSON");
        let inline = &template["Resources"]["S3ReplicationRole"]["Properties"]["Policies"][0]["PolicyDocument"];
        assert_eq!(
            inline["Statement"][3], kms["Statement"][3],
            "the template says the same"
        );
    }

    #[test]
    fn kept_rules_add_their_destinations_and_keys_to_the_role() {
        let mut merged = logs(false);
        merged.kept = Some(crate::rules::KeptRules {
            role: "arn:aws:iam::222222222222:role/dr".into(),
            ids: vec!["dr".into()],
            destinations: vec!["arn:aws:s3:::dr-bucket".into()],
            replica_keys: vec!["arn:aws:kms:us-west-2:222222222222:key/dr".into()],
            sse_kms: true,
        });
        let inline = resolved_inline_policy(&setting(), &source(false), &merged);
        let statements = inline["Statement"].as_array().expect("statements");
        assert_eq!(statements.len(), 6, "{inline:#}");
        assert_eq!(
            statements[3]["Resource"],
            json!(["arn:aws:s3:::dr-bucket/*"])
        );
        assert_eq!(statements[3]["Action"][0], "s3:ReplicateObject");
        assert_eq!(
            statements[4]["Resource"],
            json!(["arn:aws:kms:us-west-2:222222222222:key/dr"])
        );
        let region = merged.region.clone().unwrap_or("ap-northeast-1".into());
        assert_eq!(
            statements[5]["Resource"],
            format!("arn:aws:kms:{region}:222222222222:key/*")
        );
        let (text, _) = role_template(&setting(), &source(false), &merged);
        assert!(text.contains("arn:aws:s3:::dr-bucket/*"), "{text}");
    }

    #[test]
    fn the_stack_makes_the_backfill_role_limited_to_the_source_bucket() {
        let (text, _) = role_template(&setting(), &source(false), &logs(false));
        let template: Value = serde_json::from_str(&text).expect("JSON");
        let role = &template["Resources"]["S3BatchReplicationRole"]["Properties"];
        assert_eq!(role["RoleName"], "S3ReplicationRoleBackfill");
        assert_eq!(
            role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"],
            "batchoperations.s3.amazonaws.com"
        );
        let statements = &role["Policies"][0]["PolicyDocument"]["Statement"];
        assert_eq!(statements[0]["Action"], json!(["s3:InitiateReplication"]));
        assert_eq!(
            statements[0]["Resource"],
            json!({"Fn::Sub": "arn:aws:s3:::cm-members-cloudtrail-${AWS::AccountId}/*"})
        );
        assert_eq!(
            template["Outputs"]["BackfillRoleArn"]["Value"],
            json!({"Fn::GetAtt": ["S3BatchReplicationRole", "Arn"]})
        );
        assert_eq!(backfill_role_name(&"R".repeat(64)).len(), 64);
    }
}
