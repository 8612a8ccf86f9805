//! Accounts mode: one statement per replication role name, naming the source accounts' roots and
//! admitting only that role name by `ArnLike aws:PrincipalArn`, so that about 590 sources fit in
//! S3's 20 KB where the article's role ARNs fit about 190. Its object resources isolate the
//! members as the article mode's do (`<prefix>AWSLogs/${aws:PrincipalAccount}/*`).

use super::{
    ACCOUNTS_SID_PREFIX, Grant, Layout, Shape, add_principal, aws_principals, everyone,
    remove_from, shared_conflict, shared_objects, sid,
};
use serde_json::{Value, json};

/// What the statement grants: the objects' actions and the bucket's.
const ACTIONS: [&str; 4] = [
    "s3:ReplicateObject",
    "s3:ReplicateTags",
    "s3:ObjectOwnerOverrideToBucketOwner",
    "s3:GetBucketVersioning",
];

/// The statement's shape for `grant`.
fn shape(grant: &Grant) -> Shape<'_> {
    Shape {
        actions: &ACTIONS,
        bucket: Some(&grant.bucket_arn),
        objects: shared_objects(&grant.bucket_arn, &grant.prefixes),
        condition: Some(json!({ "ArnLike": { "aws:PrincipalArn": role_pattern(grant) } })),
    }
}

/// `TrailhubReplicationByAccount<role name>`, shared by every source whose role has that name.
pub(crate) struct AccountsLayout;

impl Layout for AccountsLayout {
    fn name(&self) -> &'static str {
        "accounts"
    }

    fn listed_principal(&self, grant: &Grant) -> String {
        account_root(grant)
    }

    fn missing(&self, statements: &[&Value], grant: &Grant) -> Vec<String> {
        let root = account_root(grant);
        let present = statements.iter().any(|s| {
            is_role_statement(grant, s)
                && (everyone(s) || aws_principals(s).contains(&root.as_str()))
                && shape(grant).held_by(s, &grant.bucket_arn)
        });
        if present {
            Vec::new()
        } else {
            vec![statement_sid(grant)]
        }
    }

    fn add(&self, statements: &mut Vec<Value>, grant: &Grant) -> bool {
        match statements.iter_mut().find(|s| is_role_statement(grant, s)) {
            Some(statement) => {
                let shape = shape(grant);
                let reshaped = !shape.held_by(statement, &grant.bucket_arn)
                    && shape.apply(statement, &grant.bucket_arn);
                add_principal(statement, &account_root(grant)) || reshaped
            }
            None => {
                statements.push(role_statement(grant));
                true
            }
        }
    }

    fn expected(&self, grant: &Grant) -> Vec<Value> {
        vec![role_statement(grant)]
    }

    fn conflict(&self, statements: &[&Value], grant: &Grant) -> Option<String> {
        statements
            .iter()
            .filter(|s| is_role_statement(grant, s))
            .find_map(|s| shared_conflict(s))
    }

    fn remove(&self, statements: &mut Vec<Value>, grant: &Grant) -> bool {
        remove_from(
            statements,
            |s| is_role_statement(grant, s),
            &account_root(grant),
        )
    }
}

/// The source account as a principal: `arn:<partition>:iam::<account>:root`.
fn account_root(grant: &Grant) -> String {
    let partition = grant.principal.split(':').nth(1).unwrap_or("aws");
    format!("arn:{partition}:iam::{}:root", grant.account)
}

/// The role ARN with `*` for the account: what `aws:PrincipalArn` must match.
fn role_pattern(grant: &Grant) -> String {
    let mut parts: Vec<&str> = grant.principal.splitn(6, ':').collect();
    if parts.len() == 6 {
        parts[4] = "*";
    }
    parts.join(":")
}

/// The Sid of the accounts-mode statement for the role named `role_name`:
/// [`ACCOUNTS_SID_PREFIX`] and the name's ASCII letters and digits, since a Sid allows no other
/// characters. Two role names that differ only in other characters (`S3-Replication` and
/// `S3Replication`, `a_b` and `ab`) therefore get the same Sid, which one policy cannot hold
/// twice: the inventory refuses such a pair before any request.
pub fn accounts_sid(role_name: &str) -> String {
    let name: String = role_name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("{ACCOUNTS_SID_PREFIX}{name}")
}

/// The Sid trailhub writes for the grant's role name.
fn statement_sid(grant: &Grant) -> String {
    accounts_sid(grant.principal.rsplit('/').next().unwrap_or_default())
}

/// Whether `statement` is the grant's role-name statement: trailhub's Sid prefix and exactly
/// this role pattern (found by the pattern, so a Sid edited by hand is still found).
fn is_role_statement(grant: &Grant, statement: &Value) -> bool {
    let pattern = statement
        .get("Condition")
        .and_then(|c| c.get("ArnLike"))
        .and_then(|c| c.get("aws:PrincipalArn"));
    let matches = match pattern {
        Some(Value::String(p)) => *p == role_pattern(grant),
        Some(Value::Array(list)) => {
            list.len() == 1 && list[0].as_str() == Some(role_pattern(grant).as_str())
        }
        _ => false,
    };
    matches && sid(statement).is_some_and(|s| s.starts_with(ACCOUNTS_SID_PREFIX))
}

/// A new role-name statement naming only this grant's account.
fn role_statement(grant: &Grant) -> Value {
    let mut statement = json!({
        "Sid": statement_sid(grant),
        "Effect": "Allow",
        "Principal": { "AWS": [account_root(grant)] },
    });
    shape(grant).apply(&mut statement, &grant.bucket_arn);
    statement
}

#[cfg(test)]
mod tests {
    use super::statement_sid;
    use crate::policy::tests::{BUCKET, fill, grant};
    use crate::policy::{add, missing, remove, statements};
    use crate::spec::PolicyMode;
    use serde_json::json;

    #[test]
    fn accounts_mode_names_accounts_in_one_statement_per_role_name() {
        let a = grant("222222222222", PolicyMode::Accounts);
        let b = grant("333333333333", PolicyMode::Accounts);
        let (policy, changed) = add(None, &a);
        assert!(changed);
        let (policy, changed) = add(Some(&policy), &b);
        assert!(changed);
        assert_eq!(
            policy["Statement"],
            json!([{
                "Sid": "TrailhubReplicationByAccountS3ReplicationRole",
                "Effect": "Allow",
                "Principal": {"AWS": ["arn:aws:iam::222222222222:root", "arn:aws:iam::333333333333:root"]},
                "Action": ["s3:ReplicateObject", "s3:ReplicateTags", "s3:ObjectOwnerOverrideToBucketOwner",
                           "s3:GetBucketVersioning"],
                "Resource": [BUCKET, format!("{BUCKET}/AWSLogs/${{aws:PrincipalAccount}}/*")],
                "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/S3ReplicationRole"}},
            }])
        );
        assert!(missing(Some(&policy), &a).is_empty() && missing(Some(&policy), &b).is_empty());
        assert_eq!(add(Some(&policy), &a), (policy.clone(), false));

        // Another role name gets a statement of its own: an account's other roles stay out.
        let mut other = grant("444444444444", PolicyMode::Accounts);
        other.principal = "arn:aws:iam::444444444444:role/Other-Role".into();
        assert_eq!(
            missing(Some(&policy), &other),
            vec!["TrailhubReplicationByAccountOtherRole"]
        );
        let (two, _) = add(Some(&policy), &other);
        assert_eq!(statements(&two).len(), 2);

        let (after_a, changed) = remove(&two, &a, None);
        assert!(changed);
        let after_a = after_a.expect("b and the other role remain");
        assert_eq!(missing(Some(&after_a), &a), vec![statement_sid(&a)]);
        assert!(missing(Some(&after_a), &b).is_empty());
        let (after_b, _) = remove(&after_a, &b, None);
        let (none, _) = remove(&after_b.expect("the other role remains"), &other, None);
        assert_eq!(none, None);
    }

    #[test]
    fn role_names_that_differ_only_in_other_characters_share_a_sid() {
        assert_eq!(
            super::accounts_sid("S3-Replication"),
            super::accounts_sid("S3Replication")
        );
        assert_eq!(super::accounts_sid("a_b"), "TrailhubReplicationByAccountab");
        let mut g = grant("222222222222", PolicyMode::Accounts);
        g.principal = "arn:aws:iam::222222222222:role/S3-Replication".into();
        assert_eq!(statement_sid(&g), super::accounts_sid("S3-Replication"));
    }

    #[test]
    fn accounts_mode_fits_500_sources_in_s3s_limit() {
        let (fitted, _) = fill(PolicyMode::Accounts);
        assert!(
            (550..650).contains(&fitted),
            "about 590 accounts fit: {fitted}"
        );
    }
}
