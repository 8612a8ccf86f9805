//! The article's CloudFormation template for the replication role, built from the inventory's
//! names. It is the article's template in structure (parameter, role, trust policy, inline policy,
//! two exported outputs), as JSON; names are substituted the way the article writes them.

use crate::spec::{Setting, SourceSpec};
use serde_json::{Value, json};

/// Writes `name` for a `Fn::Sub`, with `account` replaced by `${var}` (how the article writes
/// `cm-members-cloudtrail-${AWS::AccountId}`).
fn sub_name(name: &str, account: &str, var: &str) -> String {
    name.replace(account, &format!("${{{var}}}"))
}

/// The template (JSON text) for `source`'s replication role, and its parameters.
pub fn role_template(setting: &Setting, source: &SourceSpec) -> (String, Vec<(String, String)>) {
    let partition = &setting.partition;
    let source_bucket = sub_name(&source.bucket, &source.account_id, "AWS::AccountId");
    let archive_bucket = sub_name(
        &setting.archive.bucket,
        &setting.archive.account_id,
        "DestinationAccountId",
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
                        "PolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": [
                                {
                                    "Effect": "Allow",
                                    "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"],
                                    "Resource": {"Fn::Sub": format!("arn:{partition}:s3:::{source_bucket}")}
                                },
                                {
                                    "Effect": "Allow",
                                    "Action": [
                                        "s3:GetObjectVersionForReplication",
                                        "s3:GetObjectVersionAcl",
                                        "s3:GetObjectVersionTagging"
                                    ],
                                    "Resource": {"Fn::Sub": format!("arn:{partition}:s3:::{source_bucket}/*")}
                                },
                                {
                                    "Effect": "Allow",
                                    "Action": [
                                        "s3:ReplicateObject",
                                        "s3:ReplicateTags",
                                        "s3:ReplicateDelete",
                                        "s3:ObjectOwnerOverrideToBucketOwner"
                                    ],
                                    "Resource": {"Fn::Sub": format!("arn:{partition}:s3:::{archive_bucket}/*")}
                                }
                            ]
                        }
                    }]
                }
            }
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

/// The role's trust policy: S3 may assume it, under the condition the policy mode adds (in
/// least-privilege mode, only on behalf of the source account's own bucket).
pub fn trust_policy(setting: &Setting, source: &SourceSpec) -> Value {
    let mut statement = json!({
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "sts:AssumeRole"
    });
    if let Some(condition) = setting.policy.layout().trust_condition(setting, source) {
        statement["Condition"] = condition;
    }
    json!({"Version": "2012-10-17", "Statement": [statement]})
}

/// The role's inline policy as the template resolves it (for comparing with what IAM holds).
pub fn resolved_inline_policy(setting: &Setting, source: &SourceSpec) -> Value {
    let src = setting.bucket_arn(&source.bucket);
    let dst = setting.bucket_arn(&setting.archive.bucket);
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"], "Resource": src},
            {"Effect": "Allow", "Action": ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"], "Resource": format!("{src}/*")},
            {"Effect": "Allow", "Action": ["s3:ReplicateObject", "s3:ReplicateTags", "s3:ReplicateDelete", "s3:ObjectOwnerOverrideToBucketOwner"], "Resource": format!("{dst}/*")}
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ArchiveSpec, Credentials, PolicyMode};

    fn setting(policy: PolicyMode) -> Setting {
        Setting {
            region: "ap-northeast-1".into(),
            partition: "aws".into(),
            archive: ArchiveSpec {
                account_id: "111111111111".into(),
                bucket: "aggregation-cloudtrail-logs-111111111111".into(),
                credentials: Credentials::Default,
            },
            policy,
        }
    }

    fn source() -> SourceSpec {
        SourceSpec {
            account_id: "222222222222".into(),
            bucket: "cm-members-cloudtrail-222222222222".into(),
            trail: None,
            role_name: "S3ReplicationRole".into(),
            stack_name: "cloudtrail-replication-role".into(),
            prefix: "AWSLogs/".into(),
            storage_class: "STANDARD_IA".into(),
            replication_time_control: true,
            credentials: Credentials::Default,
        }
    }

    #[test]
    fn only_least_privilege_ties_the_trust_policy_to_the_source_bucket() {
        let plain = json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "sts:AssumeRole"
        }]});
        assert_eq!(
            trust_policy(&setting(PolicyMode::Article), &source()),
            plain
        );
        assert_eq!(
            trust_policy(&setting(PolicyMode::Accounts), &source()),
            plain
        );
        let tied = trust_policy(&setting(PolicyMode::LeastPrivilege), &source());
        assert_eq!(
            tied["Statement"][0]["Condition"],
            json!({
                "StringEquals": {"aws:SourceAccount": "222222222222"},
                "ArnLike": {"aws:SourceArn": "arn:aws:s3:::cm-members-cloudtrail-222222222222"}
            })
        );
    }
}
