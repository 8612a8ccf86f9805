//! The evaluator against AWS's documented examples, one table per documentation page.

use super::*;
use serde_json::json;

const ROLE: &str = "arn:aws:iam::222222222222:role/S3ReplicationRole";
const ARCHIVE: &str = "111111111111";
const SOURCE: &str = "222222222222";

fn role() -> Principal {
    Principal::Role {
        arn: ROLE.into(),
        session: "arn:aws:sts::222222222222:assumed-role/S3ReplicationRole/s3-replication".into(),
        account: SOURCE.into(),
        partition: "aws".into(),
    }
}

fn doc(statements: Value) -> Value {
    json!({"Version": "2012-10-17", "Statement": statements})
}

fn s3<'a>(policy: Option<&'a Policy>, account: &'a str) -> Resource<'a> {
    Resource {
        policy,
        account,
        service: Service::S3,
    }
}

fn kms<'a>(policy: &'a Policy, account: &'a str) -> Resource<'a> {
    Resource {
        policy: Some(policy),
        account,
        service: Service::Kms,
    }
}

fn allowed(d: &Decision) -> &'static str {
    match d {
        Decision::Allow => "allow",
        Decision::Deny(d) if d.explicit => "explicit deny",
        Decision::Deny(_) => "implicit deny",
        Decision::Unknown { .. } => "unknown",
    }
}

fn object(key: &str) -> String {
    format!("arn:aws:s3:::archive/{key}")
}

fn identity_allowing(action: &str, resource: &str) -> Policy {
    Policy::new(
        "role S3ReplicationRole inline policy",
        doc(json!([{"Effect": "Allow", "Action": action, "Resource": resource}])),
    )
}

fn bucket_policy(statements: Value) -> Policy {
    Policy::new("archive bucket archive policy", doc(statements))
}

/// IAM User Guide, "Policy evaluation logic" and "Cross-account policy evaluation logic":
/// within one account either policy type is enough; across accounts both must allow; an
/// explicit deny in any policy wins.
#[test]
fn identity_and_resource_policies_combine_as_the_evaluation_logic_says() {
    let grant = bucket_policy(json!([{
        "Sid": "AllowReplication", "Effect": "Allow",
        "Principal": {"AWS": ROLE}, "Action": "s3:ReplicateObject",
        "Resource": "arn:aws:s3:::archive/*"
    }]));
    let deny = bucket_policy(json!([
        {"Sid": "AllowReplication", "Effect": "Allow", "Principal": {"AWS": ROLE},
         "Action": "s3:ReplicateObject", "Resource": "arn:aws:s3:::archive/*"},
        {"Sid": "NoReplication", "Effect": "Deny", "Principal": "*",
         "Action": "s3:Replicate*", "Resource": "arn:aws:s3:::archive/*"}
    ]));
    let identity = [identity_allowing(
        "s3:ReplicateObject",
        "arn:aws:s3:::archive/*",
    )];
    let none: [Policy; 0] = [];
    // (case, identity, resource policy, resource account, expected)
    type Case<'a> = (&'a str, &'a [Policy], Option<&'a Policy>, &'a str, &'a str);
    let cases: [Case; 8] = [
        (
            "same account, identity only",
            &identity,
            None,
            SOURCE,
            "allow",
        ),
        (
            "same account, resource only",
            &none,
            Some(&grant),
            SOURCE,
            "allow",
        ),
        (
            "same account, neither",
            &none,
            None,
            SOURCE,
            "implicit deny",
        ),
        (
            "cross account, both",
            &identity,
            Some(&grant),
            ARCHIVE,
            "allow",
        ),
        (
            "cross account, identity only",
            &identity,
            None,
            ARCHIVE,
            "implicit deny",
        ),
        (
            "cross account, resource only",
            &none,
            Some(&grant),
            ARCHIVE,
            "implicit deny",
        ),
        (
            "cross account, deny beside allow",
            &identity,
            Some(&deny),
            ARCHIVE,
            "explicit deny",
        ),
        (
            "same account, deny beside allow",
            &identity,
            Some(&deny),
            SOURCE,
            "explicit deny",
        ),
    ];
    let request = Request::new("s3:ReplicateObject", &object("AWSLogs/x"), role());
    for (case, id, res, account, want) in cases {
        let got = evaluate(&request, id, s3(res, account));
        assert_eq!(allowed(&got), want, "{case}: {got:?}");
    }
    let Decision::Deny(d) = evaluate(&request, &identity, s3(Some(&deny), ARCHIVE)) else {
        panic!("denied")
    };
    assert_eq!(d.statement.as_deref(), Some("NoReplication"));
    assert_eq!(d.policy, "archive bucket archive policy");
}

/// IAM User Guide, "AWS JSON policy elements: Principal" (account principals and role
/// principals), "NotPrincipal", "NotAction", "NotResource", and "Action" (wildcards,
/// case-insensitive action names).
#[test]
fn principal_action_and_resource_elements_match_as_documented() {
    let identity = [identity_allowing("s3:*", "*")];
    let cases: [(&str, Value, &str); 10] = [
        (
            "role ARN",
            json!({"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "s3:ReplicateObject", "Resource": "*"}),
            "allow",
        ),
        (
            "account root",
            json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:root"}, "Action": "s3:ReplicateObject", "Resource": "*"}),
            "allow",
        ),
        (
            "bare account id",
            json!({"Effect": "Allow", "Principal": {"AWS": "222222222222"}, "Action": "s3:ReplicateObject", "Resource": "*"}),
            "allow",
        ),
        (
            "another account",
            json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::333333333333:root"}, "Action": "s3:ReplicateObject", "Resource": "*"}),
            "implicit deny",
        ),
        (
            "action wildcard, other case",
            json!({"Effect": "Allow", "Principal": "*", "Action": "S3:replicate*", "Resource": "*"}),
            "allow",
        ),
        (
            "NotAction excludes it",
            json!({"Effect": "Allow", "Principal": "*", "NotAction": "s3:Replicate*", "Resource": "*"}),
            "implicit deny",
        ),
        (
            "NotResource excludes it",
            json!({"Effect": "Allow", "Principal": "*", "Action": "s3:*", "NotResource": "arn:aws:s3:::archive/AWSLogs/*"}),
            "implicit deny",
        ),
        (
            "Deny NotPrincipal the role: not denied",
            json!([{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}, {"Effect": "Deny", "NotPrincipal": {"AWS": ROLE}, "Action": "s3:*", "Resource": "*"}]),
            "allow",
        ),
        (
            "Deny NotPrincipal another role: denied",
            json!([{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}, {"Effect": "Deny", "NotPrincipal": {"AWS": "arn:aws:iam::222222222222:role/Other"}, "Action": "s3:*", "Resource": "*"}]),
            "explicit deny",
        ),
        (
            "resource ? wildcard",
            json!({"Effect": "Allow", "Principal": "*", "Action": "s3:ReplicateObject", "Resource": "arn:aws:s3:::archiv?/AWSLogs/*"}),
            "allow",
        ),
    ];
    let request = Request::new("s3:ReplicateObject", &object("AWSLogs/x"), role());
    for (case, statements, want) in cases {
        let policy = bucket_policy(statements);
        let got = evaluate(&request, &identity, s3(Some(&policy), ARCHIVE));
        assert_eq!(allowed(&got), want, "{case}: {got:?}");
    }
}

/// IAM User Guide, "IAM JSON policy elements: Condition operators" (string, ARN, Bool,
/// numeric, `…IfExists`, Null; "If the key that you specify in a policy condition is not
/// present in the request context, the values do not match and the condition is false …
/// StringNotLike or ArnNotLike … the condition is true") and "Create a condition with multiple
/// keys or values" (values OR, keys AND).
#[test]
fn condition_operators_decide_as_the_operator_page_says() {
    let request = Request::new(
        "s3:ReplicateObject",
        &object("AWSLogs/222222222222/x"),
        role(),
    )
    .with("aws:PrincipalAccount", SOURCE)
    .with("aws:PrincipalArn", ROLE)
    .with("s3:x-amz-storage-class", "STANDARD_IA")
    .with("aws:SecureTransport", "true")
    .with("s3:object-lock-remaining-retention-days", "30")
    .without("s3:x-amz-server-side-encryption");
    let cases: [(&str, Value, &str); 20] = [
        (
            "StringEquals",
            json!({"StringEquals": {"aws:PrincipalAccount": SOURCE}}),
            "allow",
        ),
        (
            "StringEquals, other value",
            json!({"StringEquals": {"aws:PrincipalAccount": "333333333333"}}),
            "implicit deny",
        ),
        (
            "values OR",
            json!({"StringEquals": {"aws:PrincipalAccount": ["333333333333", SOURCE]}}),
            "allow",
        ),
        (
            "keys AND",
            json!({"StringEquals": {"aws:PrincipalAccount": SOURCE, "s3:x-amz-storage-class": "GLACIER"}}),
            "implicit deny",
        ),
        (
            "key name case-insensitive",
            json!({"StringEquals": {"AWS:principalaccount": SOURCE}}),
            "allow",
        ),
        (
            "StringNotEquals",
            json!({"StringNotEquals": {"aws:PrincipalAccount": SOURCE}}),
            "implicit deny",
        ),
        (
            "StringNotEquals, values NOR",
            json!({"StringNotEquals": {"aws:PrincipalAccount": ["333333333333", "444444444444"]}}),
            "allow",
        ),
        (
            "StringLike",
            json!({"StringLike": {"s3:x-amz-storage-class": "STANDARD*"}}),
            "allow",
        ),
        (
            "StringNotLike",
            json!({"StringNotLike": {"s3:x-amz-storage-class": "STANDARD*"}}),
            "implicit deny",
        ),
        (
            "ArnLike",
            json!({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/S3ReplicationRole"}}),
            "allow",
        ),
        (
            "ArnLike, * stays in its part",
            json!({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/Other"}}),
            "implicit deny",
        ),
        (
            "ArnNotLike",
            json!({"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/S3Replication*"}}),
            "implicit deny",
        ),
        (
            "Bool",
            json!({"Bool": {"aws:SecureTransport": "true"}}),
            "allow",
        ),
        (
            "NumericLessThanEquals",
            json!({"NumericLessThanEquals": {"s3:object-lock-remaining-retention-days": "30"}}),
            "allow",
        ),
        (
            "absent key: false",
            json!({"StringEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}),
            "implicit deny",
        ),
        (
            "absent key, negated: true",
            json!({"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}),
            "allow",
        ),
        (
            "absent key, IfExists: true",
            json!({"StringEqualsIfExists": {"s3:x-amz-server-side-encryption": "aws:kms"}}),
            "allow",
        ),
        (
            "present key, IfExists: compared",
            json!({"StringEqualsIfExists": {"s3:x-amz-storage-class": "GLACIER"}}),
            "implicit deny",
        ),
        (
            "Null true on absent key",
            json!({"Null": {"s3:x-amz-server-side-encryption": "true"}}),
            "allow",
        ),
        (
            "Null false on absent key",
            json!({"Null": {"s3:x-amz-server-side-encryption": "false"}}),
            "implicit deny",
        ),
    ];
    let identity = [identity_allowing("s3:*", "*")];
    for (case, condition, want) in cases {
        let policy = bucket_policy(json!([{
            "Sid": "Grant", "Effect": "Allow", "Principal": {"AWS": ROLE},
            "Action": "s3:ReplicateObject", "Resource": "arn:aws:s3:::archive/*",
            "Condition": condition
        }]));
        let got = evaluate(&request, &identity, s3(Some(&policy), ARCHIVE));
        assert_eq!(allowed(&got), want, "{case}: {got:?}");
    }
}

/// IAM User Guide, "Set operators for multivalued context keys": ForAnyValue is true when one
/// request value matches; ForAllValues when every one does, and also when the key is missing
/// or empty.
#[test]
fn set_operators_over_a_multivalued_key() {
    let request = Request::new(
        "kms:Decrypt",
        "arn:aws:kms:ap-northeast-1:111111111111:key/k",
        role(),
    )
    .with_list("kms:EncryptionContextKeys", &["aws:s3:arn", "extra"])
    .with_list("aws:TagKeys", &[]);
    let cases: [(&str, Value, &str); 5] = [
        (
            "ForAnyValue, one matches",
            json!({"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "aws:s3:arn"}}),
            "allow",
        ),
        (
            "ForAllValues, one does not",
            json!({"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": "aws:s3:arn"}}),
            "implicit deny",
        ),
        (
            "ForAllValues, all do",
            json!({"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["aws:s3:arn", "extra"]}}),
            "allow",
        ),
        (
            "ForAllValues, empty key: true",
            json!({"ForAllValues:StringEquals": {"aws:TagKeys": "x"}}),
            "allow",
        ),
        (
            "ForAnyValue, empty key: false",
            json!({"ForAnyValue:StringEquals": {"aws:TagKeys": "x"}}),
            "implicit deny",
        ),
    ];
    for (case, condition, want) in cases {
        let key = Policy::new(
            "archive key policy",
            doc(
                json!([{"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:Decrypt", "Resource": "*", "Condition": condition}]),
            ),
        );
        let identity = [identity_allowing("kms:Decrypt", "*")];
        let got = evaluate(&request, &identity, kms(&key, ARCHIVE));
        assert_eq!(allowed(&got), want, "{case}: {got:?}");
    }
}

/// IAM User Guide, "IAM policy elements: Variables and tags": `${aws:PrincipalAccount}` in a
/// resource; a variable with a default; `${*}` is a literal `*`; Version 2008-10-17 reads
/// variables as text.
#[test]
fn policy_variables_are_replaced_in_resources_and_conditions() {
    let own = Request::new(
        "s3:ReplicateObject",
        &object("AWSLogs/222222222222/x"),
        role(),
    )
    .with("aws:PrincipalAccount", SOURCE);
    let other = Request::new(
        "s3:ReplicateObject",
        &object("AWSLogs/333333333333/x"),
        role(),
    )
    .with("aws:PrincipalAccount", SOURCE);
    let statement = |resource: &str| json!({"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "s3:ReplicateObject", "Resource": resource});
    let identity = [identity_allowing("s3:*", "*")];
    let cases: [(&str, &Request, Value, &str); 6] = [
        (
            "own account's prefix",
            &own,
            doc(json!([statement(
                "arn:aws:s3:::archive/AWSLogs/${aws:PrincipalAccount}/*"
            )])),
            "allow",
        ),
        (
            "another account's prefix",
            &other,
            doc(json!([statement(
                "arn:aws:s3:::archive/AWSLogs/${aws:PrincipalAccount}/*"
            )])),
            "implicit deny",
        ),
        (
            "default used for a missing key",
            &own,
            doc(json!([statement(
                "arn:aws:s3:::archive/AWSLogs/${aws:username, '222222222222'}/*"
            )])),
            "allow",
        ),
        (
            "missing key without default matches nothing",
            &own,
            doc(json!([statement(
                "arn:aws:s3:::archive/AWSLogs/${aws:username}/*"
            )])),
            "implicit deny",
        ),
        (
            "unknown key: unknown",
            &own,
            doc(json!([statement(
                "arn:aws:s3:::archive/AWSLogs/${aws:PrincipalTag/team}/*"
            )])),
            "unknown",
        ),
        (
            "2008-10-17: literal text",
            &own,
            json!({"Version": "2008-10-17", "Statement": [statement("arn:aws:s3:::archive/AWSLogs/${aws:PrincipalAccount}/*")]}),
            "implicit deny",
        ),
    ];
    for (case, request, document, want) in cases {
        let policy = Policy::new("archive bucket archive policy", document);
        let got = evaluate(request, &identity, s3(Some(&policy), ARCHIVE));
        assert_eq!(allowed(&got), want, "{case}: {got:?}");
    }
}

/// KMS Developer Guide, "Default key policy" ("Allows access to the AWS account and enables
/// IAM policies") and "Allowing users in other accounts to use a KMS key": without a key
/// policy statement nothing allows; the account root delegates to IAM; across accounts the
/// caller's IAM policy must allow too.
#[test]
fn key_policies_are_required_and_the_account_root_delegates_to_iam() {
    let key_arn = "arn:aws:kms:ap-northeast-1:111111111111:key/k";
    let key = |principal: &str| {
        Policy::new(
            "archive key policy",
            doc(
                json!([{"Sid": "Use", "Effect": "Allow", "Principal": {"AWS": principal}, "Action": "kms:Encrypt", "Resource": "*"}]),
            ),
        )
    };
    let own_role = Principal::Role {
        arn: "arn:aws:iam::111111111111:role/R".into(),
        session: "arn:aws:sts::111111111111:assumed-role/R/s".into(),
        account: ARCHIVE.into(),
        partition: "aws".into(),
    };
    let identity = [identity_allowing("kms:Encrypt", key_arn)];
    let none: [Policy; 0] = [];
    let root = key("arn:aws:iam::111111111111:root");
    let own = key("arn:aws:iam::111111111111:role/R");
    let source_root = key("arn:aws:iam::222222222222:root");
    let cross_role = key(ROLE);
    let nobody = key("arn:aws:iam::999999999999:root");
    let cases: [(&str, Principal, &[Policy], &Policy, &str); 8] = [
        (
            "same account, root + IAM allows",
            own_role.clone(),
            &identity,
            &root,
            "allow",
        ),
        (
            "same account, root, no IAM",
            own_role.clone(),
            &none,
            &root,
            "implicit deny",
        ),
        (
            "same account, role named, no IAM",
            own_role.clone(),
            &none,
            &own,
            "allow",
        ),
        (
            "same account, IAM only, key policy silent",
            own_role,
            &identity,
            &nobody,
            "implicit deny",
        ),
        (
            "cross account, role named + IAM",
            role(),
            &identity,
            &cross_role,
            "allow",
        ),
        (
            "cross account, role named, no IAM",
            role(),
            &none,
            &cross_role,
            "implicit deny",
        ),
        (
            "cross account, caller's root + IAM",
            role(),
            &identity,
            &source_root,
            "allow",
        ),
        (
            "cross account, key account's root only",
            role(),
            &identity,
            &root,
            "implicit deny",
        ),
    ];
    for (case, principal, id, policy, want) in cases {
        let request = Request::new("kms:Encrypt", key_arn, principal);
        let got = evaluate(&request, id, kms(policy, ARCHIVE));
        assert_eq!(allowed(&got), want, "{case}: {got:?}");
    }
}

/// S3 User Guide, "Replicating encrypted objects" (the destination key's policy with
/// `kms:ViaService` `s3.<region>.amazonaws.com` and `kms:EncryptionContext:aws:s3:arn` naming
/// the destination's objects) and "Using an S3 Bucket Key with replication" (under a Bucket
/// Key the context is the bucket ARN).
#[test]
fn the_replication_key_policy_conditions_of_the_s3_guide() {
    let key_arn = "arn:aws:kms:ap-northeast-1:111111111111:key/k";
    let statement = |context: &str| {
        Policy::new(
            "archive key policy",
            doc(json!([{
                "Sid": "AllowReplicaEncryption", "Effect": "Allow", "Principal": {"AWS": ROLE},
                "Action": ["kms:Encrypt", "kms:GenerateDataKey"], "Resource": "*",
                "Condition": {
                    "StringLike": {"kms:ViaService": "s3.ap-northeast-1.amazonaws.com",
                                   "kms:EncryptionContext:aws:s3:arn": context}
                }
            }])),
        )
    };
    let identity = [identity_allowing("kms:*", key_arn)];
    let request = |via: &str, context: &str| {
        Request::new("kms:Encrypt", key_arn, role())
            .with("kms:ViaService", via)
            .with("kms:EncryptionContext:aws:s3:arn", context)
            .with_list("kms:EncryptionContextKeys", &["aws:s3:arn"])
    };
    let obj = "arn:aws:s3:::archive/AWSLogs/222222222222/x.json.gz";
    let cases: [(&str, Request, Policy, &str); 5] = [
        (
            "object under the prefix",
            request("s3.ap-northeast-1.amazonaws.com", obj),
            statement("arn:aws:s3:::archive/AWSLogs/*"),
            "allow",
        ),
        (
            "object under another prefix",
            request("s3.ap-northeast-1.amazonaws.com", obj),
            statement("arn:aws:s3:::archive/other/*"),
            "implicit deny",
        ),
        (
            "via S3 in another region",
            request("s3.us-east-1.amazonaws.com", obj),
            statement("arn:aws:s3:::archive/AWSLogs/*"),
            "implicit deny",
        ),
        (
            "Bucket Key: the bucket ARN",
            request("s3.ap-northeast-1.amazonaws.com", "arn:aws:s3:::archive"),
            statement("arn:aws:s3:::archive"),
            "allow",
        ),
        (
            "Bucket Key against an object pattern",
            request("s3.ap-northeast-1.amazonaws.com", "arn:aws:s3:::archive"),
            statement("arn:aws:s3:::archive/AWSLogs/*"),
            "implicit deny",
        ),
    ];
    for (case, request, policy, want) in cases {
        let got = evaluate(&request, &identity, kms(&policy, ARCHIVE));
        assert_eq!(allowed(&got), want, "{case}: {got:?}");
    }
    let Decision::Deny(d) = evaluate(
        &request("s3.ap-northeast-1.amazonaws.com", obj),
        &identity,
        kms(&statement("arn:aws:s3:::archive/other/*"), ARCHIVE),
    ) else {
        panic!("denied")
    };
    assert_eq!(d.statement.as_deref(), Some("AllowReplicaEncryption"));
    let condition = d.condition.expect("the condition is named");
    assert!(
        condition.contains("kms:EncryptionContext:aws:s3:arn") && condition.contains(obj),
        "{condition}"
    );
}

/// What the evaluator does not know is unknown, never allowed: an operator it does not
/// implement, a key it was not told of, a malformed Effect (issue 20).
#[test]
fn what_it_does_not_know_is_unknown_never_allow() {
    let request = Request::new("s3:ReplicateObject", &object("AWSLogs/x"), role())
        .with("aws:PrincipalAccount", SOURCE);
    let identity = [identity_allowing("s3:*", "*")];
    let grant = json!({"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "s3:ReplicateObject", "Resource": "*"});
    let cases: [(&str, Value, &str); 6] = [
        (
            "date operator on the only Allow",
            json!([{"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "s3:ReplicateObject", "Resource": "*", "Condition": {"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}}]),
            "unknown",
        ),
        (
            "unknown key on the only Allow",
            json!([{"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "s3:ReplicateObject", "Resource": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-1"}}}]),
            "unknown",
        ),
        (
            "unknown key on a Deny beside an Allow",
            json!([grant, {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*", "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]),
            "unknown",
        ),
        (
            "unknown Deny, but nothing allows: deny",
            json!([{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*", "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]),
            "implicit deny",
        ),
        (
            "unknown Allow beside a known Allow: allow",
            json!([grant, {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-1"}}}]),
            "allow",
        ),
        (
            "known Deny wins over unknown Allow",
            json!([{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-1"}}}, {"Sid": "D", "Effect": "Deny", "Principal": "*", "Action": "s3:ReplicateObject", "Resource": "*"}]),
            "explicit deny",
        ),
    ];
    for (case, statements, want) in cases {
        let policy = bucket_policy(statements);
        let got = evaluate(&request, &identity, s3(Some(&policy), ARCHIVE));
        assert_eq!(allowed(&got), want, "{case}: {got:?}");
    }
    let odd = bucket_policy(
        json!([{"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "s3:ReplicateObject", "Resource": "*", "Condition": {"StringEqualsMaybe": {"aws:PrincipalAccount": SOURCE}}}]),
    );
    let Decision::Unknown { what } = evaluate(&request, &identity, s3(Some(&odd), ARCHIVE)) else {
        panic!("unknown")
    };
    assert!(what.contains("StringEqualsMaybe"), "{what}");
}

/// IAM User Guide, "How to use trust policies with IAM roles" and S3 User Guide, "Setting up
/// permissions for live replication": the trust policy admits `s3.amazonaws.com`, optionally
/// tied to the source by `aws:SourceAccount` / `aws:SourceArn` (the confused-deputy guard).
#[test]
fn the_trust_policy_admits_the_s3_service_for_the_source_bucket() {
    let request = Request::new(
        "sts:AssumeRole",
        ROLE,
        Principal::Service("s3.amazonaws.com".into()),
    )
    .with("aws:SourceAccount", SOURCE)
    .with("aws:SourceArn", "arn:aws:s3:::source-bucket");
    let trust = |statement: Value| {
        Policy::new(
            "trust policy of role S3ReplicationRole",
            doc(json!([statement])),
        )
    };
    let cases: [(&str, Value, &str); 4] = [
        (
            "s3 service",
            json!({"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sts:AssumeRole"}),
            "allow",
        ),
        (
            "another service",
            json!({"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}),
            "implicit deny",
        ),
        (
            "tied to the source bucket",
            json!({"Effect": "Allow", "Principal": {"Service": ["s3.amazonaws.com"]}, "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"aws:SourceAccount": SOURCE}, "ArnLike": {"aws:SourceArn": "arn:aws:s3:::source-bucket"}}}),
            "allow",
        ),
        (
            "tied to another bucket",
            json!({"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sts:AssumeRole", "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:s3:::other"}}}),
            "implicit deny",
        ),
    ];
    for (case, statement, want) in cases {
        let policy = trust(statement);
        let got = evaluate(
            &request,
            &[],
            Resource {
                policy: Some(&policy),
                account: SOURCE,
                service: Service::Trust,
            },
        );
        assert_eq!(allowed(&got), want, "{case}: {got:?}");
    }
}
