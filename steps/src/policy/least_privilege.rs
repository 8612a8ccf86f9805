//! Least-privilege mode: two statements per source, limited to what replication needs and to
//! the source's own key prefix, and a trust policy that lets S3 assume the role only for the
//! source's own bucket.

use super::{Grant, Layout, aws_principals, sid};

/// Start of the Sid of a source's objects statement (the account id follows).
pub(crate) const OBJECTS_SID_PREFIX: &str = "TrailhubReplicateObjects";
/// Start of the Sid of a source's versioning-check statement.
pub(crate) const CHECK_SID_PREFIX: &str = "TrailhubVersioningCheck";
use serde_json::{Value, json};

/// `TrailhubReplicateObjects<account>` and `TrailhubVersioningCheck<account>`, each tied to the
/// source account by `aws:PrincipalAccount`.
pub(crate) struct LeastPrivilegeLayout;

impl Layout for LeastPrivilegeLayout {
    fn name(&self) -> &'static str {
        "least-privilege"
    }

    fn listed_principal(&self, grant: &Grant) -> String {
        grant.principal.clone()
    }

    fn expected(&self, grant: &Grant) -> Vec<Value> {
        wanted_statements(grant).to_vec()
    }

    fn missing(&self, statements: &[&Value], grant: &Grant) -> Vec<String> {
        wanted_statements(grant)
            .iter()
            .filter(|w| !statements.iter().any(|s| s == w))
            .map(|w| sid(w).unwrap_or_default().to_string())
            .collect()
    }

    fn add(&self, statements: &mut Vec<Value>, grant: &Grant) -> bool {
        let mut changed = false;
        for wanted in wanted_statements(grant) {
            let wanted_sid = sid(&wanted).unwrap_or_default().to_string();
            match statements
                .iter_mut()
                .find(|s| sid(s) == Some(wanted_sid.as_str()))
            {
                Some(existing) if *existing == wanted => {}
                Some(existing) => {
                    *existing = wanted;
                    changed = true;
                }
                None => {
                    statements.push(wanted);
                    changed = true;
                }
            }
        }
        changed
    }

    /// A statement of the grant's Sid is trailhub's when it names the grant's role or is tied to
    /// its account (what an earlier trailhub wrote, for another prefix or an older role); any
    /// other is someone else's, and is not overwritten.
    fn conflict(&self, statements: &[&Value], grant: &Grant) -> Option<String> {
        let (objects, check) = sids(grant);
        statements
            .iter()
            .filter(|s| sid(s) == Some(objects.as_str()) || sid(s) == Some(check.as_str()))
            .find(|s| {
                let names_role = aws_principals(s).contains(&grant.principal.as_str());
                let tied = s
                    .pointer("/Condition/StringEquals/aws:PrincipalAccount")
                    .and_then(Value::as_str)
                    == Some(grant.account.as_str());
                !(names_role || tied)
            })
            .map(|s| {
                format!(
                    "the archive bucket policy has a statement `{}` that trailhub did not write (principal {}): least-privilege mode writes that Sid for account {}",
                    sid(s).unwrap_or_default(),
                    s.get("Principal").map(Value::to_string).unwrap_or_else(|| "(none)".into()),
                    grant.account
                )
            })
    }

    fn remove(&self, statements: &mut Vec<Value>, grant: &Grant) -> bool {
        let (objects, check) = sids(grant);
        let before = statements.len();
        statements.retain(|s| sid(s) != Some(objects.as_str()) && sid(s) != Some(check.as_str()));
        statements.len() != before
    }
}

/// The objects a source may replicate: under each of its prefixes, its own account's keys (one
/// resource is written as a string, as the grants of one prefix always were).
fn resources(grant: &Grant) -> Value {
    let list: Vec<String> = grant
        .prefixes
        .iter()
        .map(|p| format!("{}/{p}{}/*", grant.bucket_arn, grant.account))
        .collect();
    match list.as_slice() {
        [one] => json!(one),
        _ => json!(list),
    }
}

/// The Sids of the grant's two statements (objects, then versioning check).
fn sids(grant: &Grant) -> (String, String) {
    (
        format!("{OBJECTS_SID_PREFIX}{}", grant.account),
        format!("{CHECK_SID_PREFIX}{}", grant.account),
    )
}

/// The grant's two statements exactly as they must read: one that differs is rewritten.
fn wanted_statements(grant: &Grant) -> [Value; 2] {
    let (objects, check) = sids(grant);
    let condition = json!({ "StringEquals": { "aws:PrincipalAccount": grant.account } });
    [
        json!({
            "Sid": objects,
            "Effect": "Allow",
            "Principal": { "AWS": grant.principal },
            "Action": super::OBJECT_ACTIONS,
            "Resource": resources(grant),
            "Condition": condition,
        }),
        json!({
            "Sid": check,
            "Effect": "Allow",
            "Principal": { "AWS": grant.principal },
            "Action": super::CHECK_ACTIONS[0],
            "Resource": grant.bucket_arn,
            "Condition": condition,
        }),
    ]
}

#[cfg(test)]
mod tests {
    use crate::policy::tests::{BUCKET, grant};
    use crate::policy::{add, missing, remove};
    use crate::spec::PolicyMode;

    #[test]
    fn least_privilege_is_per_account_and_prefix() {
        let g = grant("222222222222", PolicyMode::LeastPrivilege);
        let (policy, changed) = add(None, &g);
        assert!(changed);
        let text = policy.to_string();
        assert!(!text.contains("s3:PutBucketVersioning") && !text.contains("s3:List*"));
        assert!(!text.contains("s3:ReplicateDelete"));
        assert!(text.contains(&format!("{BUCKET}/AWSLogs/222222222222/*")));
        assert!(text.contains("aws:PrincipalAccount"));
        assert!(missing(Some(&policy), &g).is_empty());
        let (_, changed) = add(Some(&policy), &g);
        assert!(!changed);
        assert_eq!(remove(&policy, &g, None), (None, true));
    }
}
