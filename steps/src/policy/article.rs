//! Article mode: the article's two statements, each one list of replication role ARNs, taken
//! over as they are when the operator wrote them by hand from the article, but with resources
//! and actions that isolate the members: the objects statement lets each role write under each
//! prefix its own account's keys only (`${aws:PrincipalAccount}`), the article's
//! `<archive>/*` let any member forge any other's logs. A statement an earlier release (or the
//! article, by hand) wrote is brought to this shape by the next grant, in the one policy write
//! that adds the grant: no moment where a member cannot replicate its own logs.

use super::{
    CHECK_ACTIONS, CHECK_SID, Grant, Layout, OBJECT_ACTIONS, OBJECTS_SID, OBJECTS_SID_ALT, Shape,
    add_principal, aws_principals, everyone, remove_from, shared_conflict, shared_objects, sid,
};
use serde_json::{Value, json};

/// The article's `AllowReplicationFromSourceAccount` and `AllowReplicationPolicyCheck`.
pub(crate) struct ArticleLayout;

/// The two statements' Sids (those recognised, the one written), and their shape for `grant`.
fn plan(grant: &Grant) -> [(Vec<&'static str>, &'static str, Shape<'_>); 2] {
    [
        (
            vec![OBJECTS_SID, OBJECTS_SID_ALT],
            OBJECTS_SID,
            Shape {
                actions: &OBJECT_ACTIONS,
                bucket: None,
                objects: shared_objects(&grant.bucket_arn, &grant.prefixes),
                condition: None,
            },
        ),
        (
            vec![CHECK_SID],
            CHECK_SID,
            Shape {
                actions: &CHECK_ACTIONS,
                bucket: Some(&grant.bucket_arn),
                objects: Vec::new(),
                condition: None,
            },
        ),
    ]
}

impl Layout for ArticleLayout {
    fn name(&self) -> &'static str {
        "article"
    }

    fn listed_principal(&self, grant: &Grant) -> String {
        grant.principal.clone()
    }

    fn missing(&self, statements: &[&Value], grant: &Grant) -> Vec<String> {
        plan(grant)
            .into_iter()
            .filter(|(sids, _, shape)| {
                !statements.iter().any(|s| {
                    sid(s).is_some_and(|x| sids.contains(&x))
                        && (everyone(s) || aws_principals(s).contains(&grant.principal.as_str()))
                        && shape.held_by(s, &grant.bucket_arn)
                })
            })
            .map(|(_, written, _)| written.to_string())
            .collect()
    }

    fn add(&self, statements: &mut Vec<Value>, grant: &Grant) -> bool {
        let mut changed = false;
        for (sids, new_sid, shape) in plan(grant) {
            match statements
                .iter_mut()
                .find(|s| sid(s).is_some_and(|x| sids.contains(&x)))
            {
                Some(statement) => {
                    if !shape.held_by(statement, &grant.bucket_arn) {
                        changed |= shape.apply(statement, &grant.bucket_arn);
                    }
                    changed |= add_principal(statement, &grant.principal);
                }
                None => {
                    let mut statement = json!({
                        "Sid": new_sid,
                        "Effect": "Allow",
                        "Principal": { "AWS": [grant.principal] },
                    });
                    shape.apply(&mut statement, &grant.bucket_arn);
                    statements.push(statement);
                    changed = true;
                }
            }
        }
        changed
    }

    fn expected(&self, grant: &Grant) -> Vec<Value> {
        let mut fresh = Vec::new();
        self.add(&mut fresh, grant);
        fresh
    }

    fn conflict(&self, statements: &[&Value], _grant: &Grant) -> Option<String> {
        let sids = [OBJECTS_SID, OBJECTS_SID_ALT, CHECK_SID];
        statements
            .iter()
            .filter(|s| sid(s).is_some_and(|x| sids.contains(&x)))
            .find_map(|s| shared_conflict(s))
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
                        "Action": ["s3:ReplicateObject", "s3:ReplicateTags", "s3:ObjectOwnerOverrideToBucketOwner"],
                        "Resource": format!("{BUCKET}/AWSLogs/${{aws:PrincipalAccount}}/*"),
                    },
                    {
                        "Sid": "AllowReplicationPolicyCheck",
                        "Effect": "Allow",
                        "Principal": {"AWS": ["arn:aws:iam::222222222222:role/S3ReplicationRole"]},
                        "Action": ["s3:GetBucketVersioning"],
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
        assert!(changed, "taken over: brought to the isolating shape");
        let taken = statements(&same);
        assert_eq!(
            taken[0]["Principal"]["AWS"], hand_made["Statement"][0]["Principal"]["AWS"],
            "its principal as written, not granted twice"
        );
        assert_eq!(
            taken[0]["Resource"],
            format!("{BUCKET}/AWSLogs/${{aws:PrincipalAccount}}/*")
        );
        assert_eq!(taken[1]["Action"], json!(["s3:GetBucketVersioning"]));
        assert!(missing(Some(&same), &grant("222222222222", PolicyMode::Article)).is_empty());
        assert_eq!(
            add(Some(&same), &grant("222222222222", PolicyMode::Article)),
            (same.clone(), false),
            "once taken over, nothing more to do"
        );
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
    fn the_articles_own_document_is_migrated_and_widening_is_missing() {
        let g = grant("222222222222", PolicyMode::Article);
        // What the article (and trailhub before this release) wrote: any member, any key.
        let article = json!({"Version": "2012-10-17", "Statement": [
            {"Sid": OBJECTS_SID, "Effect": "Allow",
             "Principal": {"AWS": ["arn:aws:iam::222222222222:role/S3ReplicationRole", "arn:aws:iam::333333333333:role/S3ReplicationRole"]},
             "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags", "s3:ObjectOwnerOverrideToBucketOwner"],
             "Resource": format!("{BUCKET}/*")},
            {"Sid": CHECK_SID, "Effect": "Allow",
             "Principal": {"AWS": ["arn:aws:iam::222222222222:role/S3ReplicationRole", "arn:aws:iam::333333333333:role/S3ReplicationRole"]},
             "Action": ["s3:GetBucketVersioning", "s3:PutBucketVersioning", "s3:List*"], "Resource": BUCKET}]});
        assert_eq!(missing(Some(&article), &g), vec![OBJECTS_SID, CHECK_SID]);
        let (migrated, changed) = add(Some(&article), &g);
        assert!(changed);
        assert!(!migrated.to_string().contains("s3:ReplicateDelete"));
        assert!(!migrated.to_string().contains("s3:List*"));
        assert_eq!(
            aws_principals(statements(&migrated)[0]).len(),
            2,
            "every member keeps its grant"
        );
        assert!(missing(Some(&migrated), &grant("333333333333", PolicyMode::Article)).is_empty());
        // Widened by hand: missing again.
        let mut widened = migrated.clone();
        widened["Statement"][0]["Action"] = json!("s3:*");
        assert_eq!(missing(Some(&widened), &g), vec![OBJECTS_SID]);
        let mut open = migrated.clone();
        open["Statement"][0]["Resource"] = json!(format!("{BUCKET}/*"));
        assert_eq!(missing(Some(&open), &g), vec![OBJECTS_SID]);
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
