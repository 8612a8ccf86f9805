//! The archive KMS key's policy: what lets a source's replication role encrypt replicas with the
//! key (SSE-KMS logs are replicated encrypted with it), written in the same three modes as the
//! bucket policy and merged the same way: every statement and principal that is not the grant's
//! own is kept, and `remove` undoes `add`.
//!
//! - article: one statement, `TrailhubReplicaEncryption`, listing the roles' ARNs;
//! - least-privilege: one statement per source, `TrailhubReplicaEncryption<account>`, limited to
//!   the source's own keys in the archive (the S3 encryption context of each replica);
//! - accounts: one statement per role name, `TrailhubReplicaEncryptionByAccount<name>`, listing
//!   the source accounts, limited by `aws:PrincipalArn` to the role name.
//!
//! Each is limited to S3 in the archive's region (`kms:ViaService`) and to the archive bucket's
//! encryption contexts, and grants `kms:Decrypt` beside encryption (needed for replicas under an
//! S3 Bucket Key). A key policy holds at most 32 KB.

use super::{add_principal, remove_from, sid, statements_mut};
use crate::spec::{PolicyMode, s3_via_service};
use serde_json::{Value, json};

/// The largest key policy KMS accepts, in bytes.
pub const MAX_KEY_POLICY_BYTES: usize = 32 * 1024;

/// What S3 does with the key for a source's role: encrypt replicas, and for a replica under an S3
/// Bucket Key also decrypt, to check the Bucket Key's integrity (User Guide, "Replicating
/// encrypted objects": "the AWS KMS key policy for the key used to encrypt the object replica must
/// include kms:Decrypt permissions for the calling principal").
const KEY_ACTIONS: [&str; 3] = ["kms:Encrypt", "kms:GenerateDataKey", "kms:Decrypt"];

/// The parts of a statement trailhub owns besides its Sid and principals: a shared statement
/// written by an earlier release is brought to what this one writes.
const OWNED_FIELDS: [&str; 4] = ["Effect", "Action", "Resource", "Condition"];

/// One source's grant on the archive key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGrant {
    /// Which statements the grant is written in.
    pub mode: PolicyMode,
    /// The source's replication role ARN.
    pub principal: String,
    /// The source account id.
    pub account: String,
    /// The archive's region (S3 there uses the key).
    pub region: String,
    /// `arn:aws:s3:::<archive bucket>`.
    pub bucket_arn: String,
    /// The source's replicated prefixes.
    pub prefixes: Vec<String>,
}

impl KeyGrant {
    fn partition(&self) -> &str {
        self.principal.split(':').nth(1).unwrap_or("aws")
    }

    /// The principal the policy lists: the role, or in accounts mode the account's root.
    pub fn listed_principal(&self) -> String {
        match self.mode {
            PolicyMode::Accounts => format!("arn:{}:iam::{}:root", self.partition(), self.account),
            PolicyMode::Article | PolicyMode::LeastPrivilege => self.principal.clone(),
        }
    }

    fn role_name(&self) -> &str {
        self.principal.rsplit('/').next().unwrap_or_default()
    }

    fn statement_sid(&self) -> String {
        match self.mode {
            PolicyMode::Article => "TrailhubReplicaEncryption".into(),
            PolicyMode::LeastPrivilege => format!("TrailhubReplicaEncryption{}", self.account),
            PolicyMode::Accounts => {
                let name: String = self
                    .role_name()
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .collect();
                format!("TrailhubReplicaEncryptionByAccount{name}")
            }
        }
    }

    /// The statement as trailhub writes it for this grant alone. Every mode limits it to S3 in
    /// the archive's region (`kms:ViaService`) and to the archive bucket's objects (the S3
    /// encryption context `aws:s3:arn`: an object's ARN, or the bucket's own under an S3 Bucket
    /// Key, which a replica keeps from its source object); least privilege further to the
    /// source's own keys.
    fn statement(&self) -> Value {
        let contexts: Vec<String> = match self.mode {
            PolicyMode::LeastPrivilege => self
                .prefixes
                .iter()
                .map(|p| format!("{}/{p}{}/*", self.bucket_arn, self.account))
                .chain(std::iter::once(self.bucket_arn.clone()))
                .collect(),
            PolicyMode::Article | PolicyMode::Accounts => {
                vec![format!("{}/*", self.bucket_arn), self.bucket_arn.clone()]
            }
        };
        let mut condition = json!({
            "StringEquals": {"kms:ViaService": s3_via_service(&self.region)},
            "StringLike": {"kms:EncryptionContext:aws:s3:arn": contexts},
        });
        if self.mode == PolicyMode::Accounts {
            let pattern = format!("arn:{}:iam::*:role/{}", self.partition(), self.role_name());
            condition["ArnLike"] = json!({ "aws:PrincipalArn": pattern });
        }
        json!({
            "Sid": self.statement_sid(),
            "Effect": "Allow",
            "Principal": { "AWS": [self.listed_principal()] },
            "Action": KEY_ACTIONS,
            "Resource": "*",
            "Condition": condition,
        })
    }

    /// Whether `statement` holds this grant: exactly the grant's own statement (least
    /// privilege), or the shared statement naming its principal and saying what this release
    /// writes (one an earlier release wrote, without `kms:Decrypt` or the context, does not).
    fn held_by(&self, statement: &Value) -> bool {
        if sid(statement) != Some(self.statement_sid().as_str()) {
            return false;
        }
        match self.mode {
            PolicyMode::LeastPrivilege => *statement == self.statement(),
            PolicyMode::Article | PolicyMode::Accounts => {
                let wanted = self.statement();
                super::aws_principals(statement).contains(&self.listed_principal().as_str())
                    && OWNED_FIELDS
                        .iter()
                        .all(|f| statement.get(f) == wanted.get(f))
            }
        }
    }
}

/// Brings a shared statement's own fields to `wanted`'s (principals and Sid kept); returns
/// whether anything changed.
fn upgrade(existing: &mut Value, wanted: &Value) -> bool {
    let mut changed = false;
    for field in OWNED_FIELDS {
        if existing.get(field) != wanted.get(field)
            && let (Some(obj), Some(value)) = (existing.as_object_mut(), wanted.get(field))
        {
            obj.insert(field.to_string(), value.clone());
            changed = true;
        }
    }
    changed
}

/// Whether the key policy lacks the grant.
pub fn key_missing(policy: &Value, grant: &KeyGrant) -> bool {
    !super::statements(policy).iter().any(|s| grant.held_by(s))
}

/// Adds the grant to the key policy; returns the policy and whether it changed.
pub fn key_add(policy: &Value, grant: &KeyGrant) -> (Value, bool) {
    let mut policy = policy.clone();
    let wanted = grant.statement();
    let wanted_sid = grant.statement_sid();
    let list = statements_mut(&mut policy);
    let changed = match list
        .iter_mut()
        .find(|s| sid(s) == Some(wanted_sid.as_str()))
    {
        None => {
            list.push(wanted);
            true
        }
        Some(existing) if grant.mode == PolicyMode::LeastPrivilege => {
            let differs = *existing != wanted;
            *existing = wanted;
            differs
        }
        Some(existing) => {
            let upgraded = upgrade(existing, &wanted);
            add_principal(existing, &grant.listed_principal()) || upgraded
        }
    };
    (policy, changed)
}

/// Takes the grant out of the key policy (a statement left with no principal goes too);
/// returns the policy and whether it changed. A key policy is never deleted.
pub fn key_remove(policy: &Value, grant: &KeyGrant) -> (Value, bool) {
    let mut policy = policy.clone();
    let wanted_sid = grant.statement_sid();
    let list = statements_mut(&mut policy);
    let changed = match grant.mode {
        PolicyMode::LeastPrivilege => {
            let before = list.len();
            list.retain(|s| sid(s) != Some(wanted_sid.as_str()));
            list.len() != before
        }
        PolicyMode::Article | PolicyMode::Accounts => remove_from(
            list,
            |s| sid(s) == Some(wanted_sid.as_str()),
            &grant.listed_principal(),
        ),
    };
    (policy, changed)
}

/// The key policy's text, or why KMS would refuse it (over its size limit).
pub fn key_policy_text(policy: &Value) -> Result<String, String> {
    let text = serde_json::to_string(policy).expect("policies serialize");
    if text.len() > MAX_KEY_POLICY_BYTES {
        return Err(format!(
            "the archive key policy would be {} bytes, over KMS's limit of {MAX_KEY_POLICY_BYTES} bytes",
            text.len()
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(account: &str, mode: PolicyMode) -> KeyGrant {
        KeyGrant {
            mode,
            principal: format!("arn:aws:iam::{account}:role/S3ReplicationRole"),
            account: account.into(),
            region: "ap-northeast-1".into(),
            bucket_arn: "arn:aws:s3:::aggregation-cloudtrail-logs-111111111111".into(),
            prefixes: vec!["AWSLogs/".into()],
        }
    }

    fn default_policy() -> Value {
        json!({"Version": "2012-10-17", "Id": "key-default-1", "Statement": [{
            "Sid": "Enable IAM User Permissions", "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*", "Resource": "*"}]})
    }

    #[test]
    fn every_mode_adds_then_removes_back_to_the_original() {
        for mode in PolicyMode::ALL {
            let (a, b) = (grant("222222222222", mode), grant("333333333333", mode));
            let original = default_policy();
            assert!(key_missing(&original, &a), "{mode:?}");
            let (one, changed) = key_add(&original, &a);
            assert!(changed && !key_missing(&one, &a), "{mode:?}");
            let (again, changed) = key_add(&one, &a);
            assert!(
                !changed && again == one,
                "adding twice changes nothing: {mode:?}"
            );
            let (two, _) = key_add(&one, &b);
            assert!(!key_missing(&two, &a) && !key_missing(&two, &b), "{mode:?}");
            assert_eq!(
                two["Statement"][0], original["Statement"][0],
                "the root statement is kept: {mode:?}"
            );
            let (back, _) = key_remove(&two, &b);
            let (back, changed) = key_remove(&back, &a);
            assert!(changed, "{mode:?}");
            assert_eq!(back, original, "{mode:?}");
        }
    }

    #[test]
    fn a_shared_statement_of_an_earlier_release_is_brought_up_to_date() {
        for mode in [PolicyMode::Article, PolicyMode::Accounts] {
            let g = grant("222222222222", mode);
            let mut old = g.statement();
            old["Action"] = json!(["kms:Encrypt", "kms:GenerateDataKey"]);
            old["Condition"]
                .as_object_mut()
                .expect("a condition")
                .remove("StringLike");
            old["Principal"]["AWS"] = json!([
                g.listed_principal(),
                "arn:aws:iam::333333333333:role/S3ReplicationRole"
            ]);
            let mut policy = default_policy();
            policy["Statement"]
                .as_array_mut()
                .expect("a list")
                .push(old);
            assert!(
                key_missing(&policy, &g),
                "{mode:?}: the old statement lacks Decrypt"
            );
            let (new, changed) = key_add(&policy, &g);
            assert!(changed && !key_missing(&new, &g), "{mode:?}");
            assert_eq!(
                new["Statement"][1]["Principal"]["AWS"][1],
                "arn:aws:iam::333333333333:role/S3ReplicationRole",
                "{mode:?}: the other principals are kept"
            );
            assert_eq!(new["Statement"][1]["Action"][2], "kms:Decrypt");
        }
    }

    #[test]
    fn statements_are_limited_to_s3_in_the_archive_region_and_by_mode() {
        let least = grant("222222222222", PolicyMode::LeastPrivilege).statement();
        assert_eq!(
            least["Condition"]["StringEquals"]["kms:ViaService"],
            "s3.ap-northeast-1.amazonaws.com"
        );
        assert_eq!(
            least["Condition"]["StringLike"]["kms:EncryptionContext:aws:s3:arn"][0],
            "arn:aws:s3:::aggregation-cloudtrail-logs-111111111111/AWSLogs/222222222222/*"
        );
        assert_eq!(
            least["Condition"]["StringLike"]["kms:EncryptionContext:aws:s3:arn"][1],
            "arn:aws:s3:::aggregation-cloudtrail-logs-111111111111",
            "a replica under an S3 Bucket Key has the bucket's ARN as context"
        );
        assert_eq!(least["Action"][2], "kms:Decrypt");
        let article = grant("222222222222", PolicyMode::Article).statement();
        assert_eq!(
            article["Condition"]["StringLike"]["kms:EncryptionContext:aws:s3:arn"],
            json!([
                "arn:aws:s3:::aggregation-cloudtrail-logs-111111111111/*",
                "arn:aws:s3:::aggregation-cloudtrail-logs-111111111111"
            ])
        );
        let accounts = grant("222222222222", PolicyMode::Accounts).statement();
        assert_eq!(
            accounts["Principal"]["AWS"][0],
            "arn:aws:iam::222222222222:root"
        );
        assert_eq!(
            accounts["Condition"]["ArnLike"]["aws:PrincipalArn"],
            "arn:aws:iam::*:role/S3ReplicationRole"
        );
        let mut china = grant("222222222222", PolicyMode::Article);
        china.region = "cn-north-1".into();
        assert_eq!(
            china.statement()["Condition"]["StringEquals"]["kms:ViaService"],
            "s3.cn-north-1.amazonaws.com.cn",
            "the partition's domain"
        );
        let big = json!({"Statement": [{"Sid": "x", "Effect": "Allow", "Principal": {"AWS": "a".repeat(40_000)}}]});
        assert!(key_policy_text(&big).is_err());
    }
}
