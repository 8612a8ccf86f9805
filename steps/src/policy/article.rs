//! Article mode: the article's two statements, each one list of replication role ARNs, taken
//! over as they are when the operator wrote them by hand from the article.

use super::{
    CHECK_ACTIONS, CHECK_SID, Grant, Layout, OBJECT_ACTIONS, OBJECTS_SID, OBJECTS_SID_ALT,
    add_principal, aws_principals, everyone, remove_from, sid,
};
use serde_json::{Value, json};

/// The article's `AllowReplicationFromSourceAccount` and `AllowReplicationPolicyCheck`.
pub(crate) struct ArticleLayout;

impl Layout for ArticleLayout {
    fn name(&self) -> &'static str {
        "article"
    }

    fn listed_principal(&self, grant: &Grant) -> String {
        grant.principal.clone()
    }

    fn missing(&self, statements: &[&Value], grant: &Grant) -> Vec<String> {
        let has = |sids: &[&str]| {
            statements.iter().any(|s| {
                sid(s).is_some_and(|x| sids.contains(&x))
                    && (everyone(s) || aws_principals(s).contains(&grant.principal.as_str()))
            })
        };
        let mut missing = Vec::new();
        if !has(&[OBJECTS_SID, OBJECTS_SID_ALT]) {
            missing.push(OBJECTS_SID.to_string());
        }
        if !has(&[CHECK_SID]) {
            missing.push(CHECK_SID.to_string());
        }
        missing
    }

    fn add(&self, statements: &mut Vec<Value>, grant: &Grant) -> bool {
        let bucket = grant.bucket_arn.clone();
        let plan = [
            (
                vec![OBJECTS_SID, OBJECTS_SID_ALT],
                OBJECTS_SID,
                OBJECT_ACTIONS.to_vec(),
                format!("{bucket}/*"),
            ),
            (vec![CHECK_SID], CHECK_SID, CHECK_ACTIONS.to_vec(), bucket),
        ];
        let mut changed = false;
        for (sids, new_sid, actions, resource) in plan {
            match statements
                .iter_mut()
                .find(|s| sid(s).is_some_and(|x| sids.contains(&x)))
            {
                Some(statement) => {
                    changed |= add_principal(statement, &grant.principal);
                }
                None => {
                    statements.push(json!({
                        "Sid": new_sid,
                        "Effect": "Allow",
                        "Principal": { "AWS": [grant.principal] },
                        "Action": actions,
                        "Resource": resource,
                    }));
                    changed = true;
                }
            }
        }
        changed
    }

    fn remove(&self, statements: &mut Vec<Value>, grant: &Grant) -> bool {
        let sids = [OBJECTS_SID, OBJECTS_SID_ALT, CHECK_SID];
        remove_from(
            statements,
            |s| sid(s).is_some_and(|x| sids.contains(&x)),
            &grant.principal,
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::tests::{BUCKET, grant};
    use crate::policy::{CHECK_SID, OBJECTS_SID, add, aws_principals, missing, remove, statements};
    use crate::spec::PolicyMode;
    use serde_json::json;

    #[test]
    fn first_grant_writes_the_articles_two_statements() {
        let (policy, changed) = add(None, &grant("222222222222", PolicyMode::Article));
        assert!(changed);
        assert_eq!(
            policy,
            json!({
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "AllowReplicationFromSourceAccount",
                        "Effect": "Allow",
                        "Principal": {"AWS": ["arn:aws:iam::222222222222:role/S3ReplicationRole"]},
                        "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags", "s3:ObjectOwnerOverrideToBucketOwner"],
                        "Resource": format!("{BUCKET}/*"),
                    },
                    {
                        "Sid": "AllowReplicationPolicyCheck",
                        "Effect": "Allow",
                        "Principal": {"AWS": ["arn:aws:iam::222222222222:role/S3ReplicationRole"]},
                        "Action": ["s3:GetBucketVersioning", "s3:PutBucketVersioning", "s3:List*"],
                        "Resource": BUCKET,
                    }
                ]
            })
        );
        assert!(missing(Some(&policy), &grant("222222222222", PolicyMode::Article)).is_empty());
        assert_eq!(
            missing(Some(&policy), &grant("333333333333", PolicyMode::Article)),
            vec![OBJECTS_SID, CHECK_SID]
        );
    }

    #[test]
    fn a_hand_made_policy_is_taken_over_not_granted_twice() {
        let hand_made = json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "AllowReplicationFromSourceAccounts", "Effect": "Allow",
                 "Principal": {"AWS": "arn:aws:iam::222222222222:role/S3ReplicationRole"},
                 "Action": ["s3:ReplicateObject"], "Resource": format!("{BUCKET}/*")},
                {"Sid": "AllowReplicationPolicyCheck", "Effect": "Allow",
                 "Principal": {"AWS": "arn:aws:iam::222222222222:role/S3ReplicationRole"},
                 "Action": ["s3:List*"], "Resource": BUCKET},
                {"Sid": "Unrelated", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket", "Resource": BUCKET}
            ]
        });
        let (same, changed) = add(
            Some(&hand_made),
            &grant("222222222222", PolicyMode::Article),
        );
        assert!(!changed);
        assert_eq!(same, hand_made);
        let (more, changed) = add(
            Some(&hand_made),
            &grant("333333333333", PolicyMode::Article),
        );
        assert!(changed);
        let stmts = statements(&more);
        assert_eq!(stmts.len(), 3, "no second statement is added");
        assert_eq!(
            aws_principals(stmts[0]),
            vec![
                "arn:aws:iam::222222222222:role/S3ReplicationRole",
                "arn:aws:iam::333333333333:role/S3ReplicationRole"
            ]
        );
        assert_eq!(stmts[2], &hand_made["Statement"][2]);
    }

    #[test]
    fn removing_the_last_principal_removes_the_statement_and_then_the_policy() {
        let g = grant("222222222222", PolicyMode::Article);
        let (policy, _) = add(None, &g);
        let (after, changed) = remove(&policy, &g, None);
        assert!(changed);
        assert_eq!(after, None);
        let (again, changed) = remove(&policy, &grant("999999999999", PolicyMode::Article), None);
        assert!(!changed);
        assert_eq!(again, Some(policy));
    }
}
