//! The KMS keys that encrypt a source's logs, checked read-only before anything is created: the
//! replication role decrypts with them through its IAM policy, which a key honours only when its
//! key policy delegates to IAM (an account-root statement). trailhub never edits a key policy in
//! a source account: when the key does not delegate, the account fails with the statement to add.

use crate::errors::classify;
use crate::logs::statements;
use crate::spec::SourceSpec;
use crate::tasks::{StepContext, call};
use serde_json::{Value, json};
use trailhub_engine::TaskError;

/// The ARNs of `keys` (key ids, ARNs or aliases), each checked. A key given without its region
/// (an alias such as `alias/aws/s3`, a bare key id: what a bucket's default encryption may
/// hold) is resolved in the bucket's `region`: S3 resolves it there, in the bucket owner's
/// account, and the same alias names another key in every region.
pub(crate) async fn check(
    ctx: &StepContext,
    s: &SourceSpec,
    keys: Vec<String>,
    region: &str,
) -> Result<Vec<String>, TaskError> {
    let mut arns = Vec::with_capacity(keys.len());
    for key in keys {
        arns.push(check_one(ctx, s, &key, region).await?);
    }
    arns.sort();
    arns.dedup();
    Ok(arns)
}

/// The region named in an ARN (`arn:aws:kms:REGION:…`), if `id` is one.
fn arn_region(id: &str) -> Option<&str> {
    id.strip_prefix("arn:")
        .and_then(|rest| rest.split(':').nth(2))
        .filter(|r| !r.is_empty())
}

async fn check_one(
    ctx: &StepContext,
    s: &SourceSpec,
    key: &str,
    region: &str,
) -> Result<String, TaskError> {
    let account = s.account_id.as_str();
    let clients = ctx.accounts.get(account).await?;
    let kms = clients.kms_in(arn_region(key).unwrap_or(region));
    let described = call(
        account,
        "kms",
        "DescribeKey",
        key,
        kms.describe_key().key_id(key).send(),
    )
    .await
    .map_err(|e| classify("DescribeKey", key, e, &[]))?;
    let meta = described.key_metadata();
    let arn = meta.and_then(|m| m.arn()).unwrap_or(key).to_string();
    let owner = meta.and_then(|m| m.aws_account_id()).unwrap_or_default();
    if owner != account {
        return Err(TaskError::fatal(format!(
            "the logs of account {account} are encrypted with KMS key {arn} of account {owner}: trailhub cannot check that its policy lets the replication role decrypt"
        ))
        .with_code("ForeignKmsKey")
        .with_hint(format!(
            "add to that key's policy: {} ; then encrypt with a key of account {account}, or accept the risk by checking it yourself and pinning `trail` to a trail using a key of this account",
            decrypt_statement(ctx, s)
        )));
    }
    let policy = call(
        account,
        "kms",
        "GetKeyPolicy",
        &arn,
        kms.get_key_policy()
            .key_id(&arn)
            .policy_name("default")
            .send(),
    )
    .await
    .map_err(|e| classify("GetKeyPolicy", &arn, e, &[]))?;
    let doc: Value = policy
        .policy()
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or(Value::Null);
    ctx.documents.key_policy(&arn, &doc);
    if delegates_to_iam(&doc, account) {
        return Ok(arn);
    }
    Err(TaskError::fatal(format!(
        "KMS key {arn}, which encrypts the logs of account {account}, has a key policy that does not delegate to IAM: the replication role's kms:Decrypt would be refused and the logs not replicated"
    ))
    .with_code("KmsKeyPolicy")
    .with_hint(format!(
        "add this statement to the key policy (trailhub never edits a source key policy): {}, then `trailhub resume`",
        root_statement(ctx, account)
    )))
}

/// Whether a key policy lets IAM policies of `account` grant the key: a statement allowing the
/// account's root, or any principal of the account (an AWS managed key's `kms:CallerAccount`).
pub(crate) fn delegates_to_iam(policy: &Value, account: &str) -> bool {
    let root = format!(":iam::{account}:root");
    statements(policy).iter().any(|st| {
        if st.get("Effect").and_then(Value::as_str) != Some("Allow") {
            return false;
        }
        let principals: Vec<&str> = match st.get("Principal").and_then(|p| p.get("AWS")) {
            Some(Value::String(p)) => vec![p.as_str()],
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            _ => match st.get("Principal") {
                Some(Value::String(p)) => vec![p.as_str()],
                _ => Vec::new(),
            },
        };
        let caller_account = st
            .pointer("/Condition/StringEquals/kms:CallerAccount")
            .and_then(Value::as_str);
        principals
            .iter()
            .any(|p| p.ends_with(&root) || *p == account)
            || (principals.contains(&"*") && caller_account == Some(account))
    })
}

/// The key policy statement that delegates a key to IAM (the one AWS writes by default).
fn root_statement(ctx: &StepContext, account: &str) -> Value {
    json!({
        "Sid": "Enable IAM User Permissions",
        "Effect": "Allow",
        "Principal": { "AWS": format!("arn:{}:iam::{account}:root", ctx.setting.partition) },
        "Action": "kms:*",
        "Resource": "*",
    })
}

/// A statement letting the source's replication role decrypt through S3.
fn decrypt_statement(ctx: &StepContext, s: &SourceSpec) -> Value {
    json!({
        "Sid": "AllowTrailhubReplicationDecrypt",
        "Effect": "Allow",
        "Principal": { "AWS": ctx.setting.role_arn(&s.account_id, &s.role_name) },
        "Action": "kms:Decrypt",
        "Resource": "*",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_policy_delegates_through_the_root_or_the_callers_account() {
        let default = json!({"Statement": [{"Sid": "Enable IAM User Permissions", "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::222222222222:root"}, "Action": "kms:*", "Resource": "*"}]});
        assert!(delegates_to_iam(&default, "222222222222"));
        let aws_managed = json!({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"},
            "Action": ["kms:Decrypt"], "Resource": "*",
            "Condition": {"StringEquals": {"kms:CallerAccount": "222222222222", "kms:ViaService": "s3.ap-northeast-1.amazonaws.com"}}}]});
        assert!(delegates_to_iam(&aws_managed, "222222222222"));
        let roles_only = json!({"Statement": {"Effect": "Allow",
            "Principal": {"AWS": ["arn:aws:iam::222222222222:role/Admin"]}, "Action": "kms:*", "Resource": "*"}});
        assert!(!delegates_to_iam(&roles_only, "222222222222"));
        let other_account = json!({"Statement": [{"Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::333333333333:root"}, "Action": "kms:*", "Resource": "*"}]});
        assert!(!delegates_to_iam(&other_account, "222222222222"));
        assert_eq!(
            arn_region("arn:aws:kms:us-east-1:2:key/k"),
            Some("us-east-1")
        );
        assert_eq!(arn_region("alias/aws/s3"), None);
    }
}
