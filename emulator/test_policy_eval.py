"""Table-driven tests of emulator/policy_eval.py, from the examples of AWS's documentation.

Run: .venv/bin/python -m unittest discover -s emulator -p 'test_*.py'   (emulator/smoke.sh does)

Each case names the page its policy or rule comes from (IAM User Guide unless said otherwise).
"""

import json
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from policy_eval import (  # noqa: E402
    ALLOW, DELEGATE, DENY, NONE, Principal, Request, decide, evaluate_conditions, evaluate_policy,
)

ROLE = "arn:aws:iam::222222222222:role/S3ReplicationRole"
SESSION = Principal.role_session(ROLE, "s3-replication")
OTHER_ROLE = "arn:aws:iam::222222222222:role/Other"
S3 = Principal.service("s3.amazonaws.com")


def doc(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action, resource="*", **extra):
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def r(action="s3:GetObject", resource="arn:aws:s3:::amzn-s3-demo-bucket/key", principal=SESSION, context=None):
    ctx = {"aws:PrincipalAccount": principal.account, "aws:PrincipalArn": principal.role_arn}
    ctx = {k: v for k, v in ctx.items() if v is not None}
    ctx.update(context or {})
    return Request(action, resource, principal, ctx)


class IdentityPolicyElements(unittest.TestCase):
    """Action/NotAction, Resource/NotResource, variables ("IAM JSON policy elements" pages)."""

    CASES = [
        # (why, policy statements, request, outcome)
        ("exact action and resource", [allow("s3:GetObject", "arn:aws:s3:::amzn-s3-demo-bucket/*")], r(), ALLOW),
        ("another bucket", [allow("s3:GetObject", "arn:aws:s3:::amzn-s3-demo-bucket2/*")], r(), NONE),
        ("Action: service prefix and name are case-insensitive", [allow("S3:getobject")], r(), ALLOW),
        ("Action: * wildcard", [allow("s3:Get*")], r(), ALLOW),
        ("Action: ? wildcard", [allow("s3:Get?bject")], r(), ALLOW),
        ("Action: list, one matches", [allow(["iam:GetRole", "s3:GetObject"])], r(), ALLOW),
        ("Action: other service", [allow("iam:*")], r(), NONE),
        ("NotAction: everything but IAM", [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}], r(), ALLOW),
        ("NotAction: the excluded action", [{"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}], r(), NONE),
        ("Resource: case-sensitive", [allow("s3:GetObject", "arn:aws:s3:::AMZN-S3-DEMO-BUCKET/*")], r(), NONE),
        ("Resource: * spans / and :", [allow("s3:GetObject", "arn:aws:s3:::amzn-*")], r(), ALLOW),
        ("Resource: ? is one character", [allow("s3:GetObject", "arn:aws:s3:::amzn-s3-demo-bucket/ke?")], r(), ALLOW),
        ("Resource: ? is not two", [allow("s3:GetObject", "arn:aws:s3:::amzn-s3-demo-bucket/k?")], r(), NONE),
        ("NotResource", [{"Effect": "Allow", "Action": "s3:*", "NotResource": "arn:aws:s3:::secret/*"}], r(), ALLOW),
        ("NotResource: the excluded resource",
         [{"Effect": "Allow", "Action": "s3:*", "NotResource": "arn:aws:s3:::amzn-s3-demo-bucket/*"}], r(), NONE),
        ("Variables: ${aws:PrincipalAccount} in Resource",
         [allow("s3:GetObject", "arn:aws:s3:::amzn-s3-demo-bucket/AWSLogs/${aws:PrincipalAccount}/*")],
         r(resource="arn:aws:s3:::amzn-s3-demo-bucket/AWSLogs/222222222222/x"), ALLOW),
        ("Variables: another account's prefix",
         [allow("s3:GetObject", "arn:aws:s3:::amzn-s3-demo-bucket/AWSLogs/${aws:PrincipalAccount}/*")],
         r(resource="arn:aws:s3:::amzn-s3-demo-bucket/AWSLogs/333333333333/x"), NONE),
        ("Variables: an absent key matches nothing",
         [allow("s3:GetObject", "arn:aws:s3:::amzn-s3-demo-bucket/${aws:username}/*")],
         r(resource="arn:aws:s3:::amzn-s3-demo-bucket/x/y"), NONE),
        ("Variables: the default value of an absent key",
         [allow("s3:GetObject", "arn:aws:s3:::amzn-s3-demo-bucket/${aws:username, 'shared'}/*")],
         r(resource="arn:aws:s3:::amzn-s3-demo-bucket/shared/y"), ALLOW),
        ("Variables: ${*} is a literal asterisk",
         [allow("s3:GetObject", "arn:aws:s3:::amzn-s3-demo-bucket/${*}")],
         r(resource="arn:aws:s3:::amzn-s3-demo-bucket/anything"), NONE),
        ("Deny wins over Allow in the same policy",
         [allow("s3:*"), {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "*"}], r(), DENY),
        ("no Action element: the statement applies to nothing", [{"Effect": "Allow", "Resource": "*"}], r(), NONE),
    ]

    def test_cases(self):
        for why, statements, request, outcome in self.CASES:
            with self.subTest(why):
                self.assertEqual(evaluate_policy(doc(*statements), request, "p", resource_policy=False).outcome, outcome)

    def test_deny_names_its_sid_or_index(self):
        policy = doc(allow("s3:*"), {"Effect": "Deny", "Action": "s3:*", "Resource": "*"})
        self.assertEqual(evaluate_policy(policy, r(), "p", resource_policy=False).statement, "#1")
        policy = doc({"Sid": "NoReads", "Effect": "Deny", "Action": "s3:*", "Resource": "*"})
        self.assertEqual(evaluate_policy(policy, r(), "p", resource_policy=False).statement, "NoReads")

    def test_malformed_policy_allows_nothing(self):
        result = evaluate_policy("{not json", r(), "p", resource_policy=False)
        self.assertEqual(result.outcome, NONE)
        self.assertIn("malformed", result.error)


class ConditionOperators(unittest.TestCase):
    """"IAM JSON policy elements: Condition operators" and "Conditions with multiple context keys
    or values"."""

    CASES = [
        # (why, condition block, context, holds)
        ("StringEquals", {"StringEquals": {"aws:PrincipalTag/job-category": "iamuser-admin"}},
         {"aws:PrincipalTag/job-category": "iamuser-admin"}, True),
        ("StringEquals is case-sensitive", {"StringEquals": {"aws:PrincipalTag/job-category": "IAMUSER-admin"}},
         {"aws:PrincipalTag/job-category": "iamuser-admin"}, False),
        ("StringEquals: an absent key is false", {"StringEquals": {"aws:PrincipalTag/job-category": "x"}}, {}, False),
        ("StringEquals does not expand wildcards", {"StringEquals": {"s3:prefix": "home/*"}},
         {"s3:prefix": "home/x"}, False),
        ("condition keys are case-insensitive", {"StringEquals": {"AWS:PRINCIPALACCOUNT": "222222222222"}},
         {"aws:PrincipalAccount": "222222222222"}, True),
        ("StringEqualsIgnoreCase", {"StringEqualsIgnoreCase": {"aws:PrincipalTag/team": "OPS"}},
         {"aws:PrincipalTag/team": "ops"}, True),
        ("StringNotEquals", {"StringNotEquals": {"aws:PrincipalAccount": "111111111111"}},
         {"aws:PrincipalAccount": "222222222222"}, True),
        ("StringNotEquals: an absent key is true (negated operator)",
         {"StringNotEquals": {"aws:PrincipalTag/team": "ops"}}, {}, True),
        ("StringNotEquals with several values is a NOR",
         {"StringNotEquals": {"aws:PrincipalTag/role": ["audit", "security"]}}, {"aws:PrincipalTag/role": "audit"}, False),
        ("StringLike with * and ?", {"StringLike": {"kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::b/AWSLogs/*"}},
         {"kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::b/AWSLogs/1/x"}, True),
        ("StringLike: the bucket ARN is not under bucket/*",
         {"StringLike": {"kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::b/*"}},
         {"kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::b"}, False),
        ("StringLike: several values are OR'ed",
         {"StringLike": {"kms:EncryptionContext:aws:s3:arn": ["arn:aws:s3:::b/*", "arn:aws:s3:::b"]}},
         {"kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::b"}, True),
        ("StringNotLike", {"StringNotLike": {"s3:prefix": "private/*"}}, {"s3:prefix": "public/x"}, True),
        ("StringLike with a policy variable", {"StringLike": {"s3:prefix": "home/${aws:username}/*"}},
         {"s3:prefix": "home/carlos/x", "aws:username": "carlos"}, True),
        ("two keys under one operator are AND'ed",
         {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com", "kms:CallerAccount": "111122223333"}},
         {"kms:ViaService": "s3.us-east-1.amazonaws.com", "kms:CallerAccount": "444455556666"}, False),
        ("two operators are AND'ed",
         {"StringEquals": {"aws:SourceAccount": "222222222222"}, "ArnLike": {"aws:SourceArn": "arn:aws:s3:::src"}},
         {"aws:SourceAccount": "222222222222", "aws:SourceArn": "arn:aws:s3:::src"}, True),
        ("StringEqualsIfExists: an absent key is true",
         {"StringEqualsIfExists": {"ec2:InstanceType": ["t1.*", "t2.*"]}}, {}, True),
        ("StringLikeIfExists: a present key is checked",
         {"StringLikeIfExists": {"s3:x-amz-server-side-encryption": ["aws:kms", "AES256"]}},
         {"s3:x-amz-server-side-encryption": "aws:kms:dsse"}, False),
        ("Null true: the key is absent", {"Null": {"aws:TokenIssueTime": "true"}}, {}, True),
        ("Null false: the key is present", {"Null": {"aws:TokenIssueTime": "false"}}, {}, False),
        ("Bool", {"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": "false"}, True),
        ("Bool given as JSON true", {"Bool": {"aws:SecureTransport": True}}, {"aws:SecureTransport": "true"}, True),
        ("NumericLessThanEquals", {"NumericLessThanEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "10"}, True),
        ("NumericGreaterThan", {"NumericGreaterThan": {"s3:object-lock-remaining-retention-days": "10"}},
         {"s3:object-lock-remaining-retention-days": "9"}, False),
        ("DateGreaterThan", {"DateGreaterThan": {"aws:CurrentTime": "2020-04-01T00:00:00Z"}},
         {"aws:CurrentTime": "2020-06-30T00:00:00Z"}, True),
        ("DateLessThan with epoch", {"DateLessThan": {"aws:EpochTime": "1585699200"}},
         {"aws:EpochTime": "1593475200"}, False),
        ("IpAddress", {"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, {"aws:SourceIp": "203.0.113.7"}, True),
        ("NotIpAddress", {"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, {"aws:SourceIp": "203.0.113.7"}, False),
        ("ArnLike per component", {"ArnLike": {"aws:SourceArn": "arn:aws:s3:::amzn-s3-demo-*"}},
         {"aws:SourceArn": "arn:aws:s3:::amzn-s3-demo-source-bucket"}, True),
        ("ArnLike: * does not span components", {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*"}},
         {"aws:PrincipalArn": ROLE}, False),
        ("ArnLike: a wildcard account", {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/S3ReplicationRole"}},
         {"aws:PrincipalArn": ROLE}, True),
        ("ArnEquals accepts wildcards too", {"ArnEquals": {"aws:SourceArn": "arn:aws:sns:*:123456789012:*"}},
         {"aws:SourceArn": "arn:aws:sns:us-east-1:123456789012:topic"}, True),
        ("ArnNotLike", {"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/Admin"}},
         {"aws:PrincipalArn": ROLE}, True),
        ("ForAnyValue: one tag key is enough", {"ForAnyValue:StringEquals": {"aws:TagKeys": ["environment", "cost"]}},
         {"aws:TagKeys": ["environment", "team"]}, True),
        ("ForAnyValue: an absent key is false", {"ForAnyValue:StringEquals": {"aws:TagKeys": ["environment"]}},
         {}, False),
        ("ForAllValues: every tag key must be listed", {"ForAllValues:StringEquals": {"aws:TagKeys": ["environment", "cost"]}},
         {"aws:TagKeys": ["environment", "team"]}, False),
        ("ForAllValues: all listed", {"ForAllValues:StringEquals": {"aws:TagKeys": ["environment", "cost"]}},
         {"aws:TagKeys": ["cost"]}, True),
        ("ForAllValues: an absent key is true", {"ForAllValues:StringEquals": {"aws:TagKeys": ["environment"]}},
         {}, True),
        ("an unknown operator never holds", {"StringMatches": {"aws:PrincipalAccount": "222222222222"}},
         {"aws:PrincipalAccount": "222222222222"}, False),
    ]

    def test_cases(self):
        for why, block, context, holds in self.CASES:
            with self.subTest(why):
                misses = evaluate_conditions(block, Request("s3:GetObject", "*", SESSION, context))
                self.assertEqual(not misses, holds, [m.to_json() for m in misses])

    def test_a_miss_reports_operator_key_expected_and_actual(self):
        misses = evaluate_conditions({"StringLike": {"kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::b/*"}},
                                     Request("kms:Decrypt", "*", SESSION, {"kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::b"}))
        self.assertEqual([m.to_json() for m in misses], [{"operator": "StringLike", "key": "kms:EncryptionContext:aws:s3:arn",
                                                          "expected": ["arn:aws:s3:::b/*"], "actual": "arn:aws:s3:::b"}])


class Principals(unittest.TestCase):
    """"IAM JSON policy elements: Principal" and "NotPrincipal"."""

    CASES = [
        ("everyone", "*", ALLOW),
        ("every AWS principal", {"AWS": "*"}, ALLOW),
        ("the account id delegates to its IAM policies", {"AWS": "222222222222"}, DELEGATE),
        ("the account root ARN delegates", {"AWS": "arn:aws:iam::222222222222:root"}, DELEGATE),
        ("the role ARN grants its sessions", {"AWS": ROLE}, ALLOW),
        ("the session ARN", {"AWS": SESSION.arn}, ALLOW),
        ("another role", {"AWS": OTHER_ROLE}, NONE),
        ("another account", {"AWS": "arn:aws:iam::333333333333:root"}, NONE),
        ("a list: the role among others", {"AWS": [OTHER_ROLE, ROLE]}, ALLOW),
        ("a service does not match a role session", {"Service": "s3.amazonaws.com"}, NONE),
    ]

    def test_cases(self):
        for why, element, outcome in self.CASES:
            with self.subTest(why):
                policy = doc({"Effect": "Allow", "Principal": element, "Action": "s3:GetObject", "Resource": "*"})
                self.assertEqual(evaluate_policy(policy, r(), "p", resource_policy=True).outcome, outcome)

    def test_service_principal(self):
        policy = doc({"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sts:AssumeRole"})
        self.assertEqual(evaluate_policy(policy, r("sts:AssumeRole", ROLE, S3), "trust", resource_policy=True).outcome, ALLOW)
        policy = doc({"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"})
        self.assertEqual(evaluate_policy(policy, r("sts:AssumeRole", ROLE, S3), "trust", resource_policy=True).outcome, NONE)

    def test_not_principal_excludes_a_session_only_when_all_its_identities_are_listed(self):
        def deny_except(listed):
            return doc(allow("s3:*", Principal="*"),
                       {"Effect": "Deny", "NotPrincipal": {"AWS": listed}, "Action": "s3:*", "Resource": "*"})
        all_three = [SESSION.arn, ROLE, "arn:aws:iam::222222222222:root"]
        self.assertEqual(evaluate_policy(deny_except(all_three), r(), "p", resource_policy=True).outcome, ALLOW)
        self.assertEqual(evaluate_policy(deny_except([ROLE]), r(), "p", resource_policy=True).outcome, DENY)

    def test_statement_without_principal_does_not_apply_in_a_resource_policy(self):
        policy = doc(allow("s3:GetObject"))
        self.assertEqual(evaluate_policy(policy, r(), "p", resource_policy=True).outcome, NONE)


def s3_decide(request, identity=(), bucket=None, bucket_account="222222222222", boundary=None):
    return decide(request, identity=[(f"identity policy {i}", d) for i, d in enumerate(identity)],
                  identity_label="identity policies of role S3ReplicationRole",
                  resource=("bucket policy of dst", bucket) if bucket else None,
                  resource_account=bucket_account, kind="s3",
                  boundary=("permissions boundary B", boundary) if boundary else None)


class Decisions(unittest.TestCase):
    """"Policy evaluation for requests within a single account", "Cross-account policy
    evaluation logic", "Permissions boundaries", and the replication examples of the S3 User
    Guide ("Setting up permissions for live replication")."""

    REPLICATE = doc(allow(["s3:ReplicateObject", "s3:ReplicateTags"], "arn:aws:s3:::dst/*"))

    def replicate(self):
        return r("s3:ReplicateObject", "arn:aws:s3:::dst/AWSLogs/1/x")

    def test_same_account_identity_alone(self):
        self.assertTrue(s3_decide(self.replicate(), [self.REPLICATE]).allowed)

    def test_same_account_bucket_policy_naming_the_role_alone(self):
        bucket = doc(allow("s3:ReplicateObject", "arn:aws:s3:::dst/*", Principal={"AWS": ROLE}))
        self.assertTrue(s3_decide(self.replicate(), [], bucket).allowed)

    def test_same_account_bucket_policy_naming_the_account_needs_iam(self):
        bucket = doc(allow("s3:ReplicateObject", "arn:aws:s3:::dst/*", Principal={"AWS": "222222222222"}))
        decision = s3_decide(self.replicate(), [], bucket)
        self.assertFalse(decision.allowed)
        self.assertEqual(decision.policies, ["identity policies of role S3ReplicationRole", "bucket policy of dst"])

    def test_cross_account_identity_alone_names_the_bucket_policy(self):
        bucket = doc(allow("s3:ReplicateObject", "arn:aws:s3:::dst/*", Principal={"AWS": OTHER_ROLE}))
        decision = s3_decide(self.replicate(), [self.REPLICATE], bucket, "111111111111")
        self.assertFalse(decision.allowed)
        self.assertEqual((decision.reason, decision.policies), ("no statement allows", ["bucket policy of dst"]))

    def test_cross_account_bucket_alone_names_the_identity_policies(self):
        bucket = doc(allow("s3:ReplicateObject", "arn:aws:s3:::dst/*", Principal={"AWS": ROLE}))
        decision = s3_decide(self.replicate(), [], bucket, "111111111111")
        self.assertEqual((decision.allowed, decision.policies), (False, ["identity policies of role S3ReplicationRole"]))

    def test_cross_account_both(self):
        for principal in (ROLE, "arn:aws:iam::222222222222:root", "222222222222"):
            with self.subTest(principal):
                bucket = doc(allow("s3:ReplicateObject", "arn:aws:s3:::dst/*", Principal={"AWS": principal}))
                self.assertTrue(s3_decide(self.replicate(), [self.REPLICATE], bucket, "111111111111").allowed)

    def test_cross_account_condition_on_principal_account(self):
        bucket = doc(allow("s3:ReplicateObject", "arn:aws:s3:::dst/*", Principal={"AWS": ROLE},
                           Condition={"StringEquals": {"aws:PrincipalAccount": "333333333333"}}))
        decision = s3_decide(self.replicate(), [self.REPLICATE], bucket, "111111111111")
        self.assertFalse(decision.allowed)
        unmatched = decision.to_json()["unmatched"]
        self.assertEqual(unmatched[0]["conditions"][0]["key"], "aws:PrincipalAccount")
        self.assertEqual(unmatched[0]["conditions"][0]["actual"], "222222222222")

    def test_explicit_deny_in_the_bucket_policy_wins(self):
        bucket = doc(allow("s3:*", "arn:aws:s3:::dst/*", Principal={"AWS": ROLE}),
                     {"Sid": "DenyReplicas", "Effect": "Deny", "Principal": "*", "Action": "s3:ReplicateObject",
                      "Resource": "arn:aws:s3:::dst/*"})
        decision = s3_decide(self.replicate(), [self.REPLICATE], bucket, "111111111111")
        self.assertEqual((decision.allowed, decision.reason, decision.policies, decision.statement),
                         (False, "explicit deny", ["bucket policy of dst"], "DenyReplicas"))

    def test_explicit_deny_in_an_identity_policy_wins_over_a_bucket_grant(self):
        bucket = doc(allow("s3:*", "arn:aws:s3:::dst/*", Principal={"AWS": ROLE}))
        deny = doc({"Effect": "Deny", "Action": "s3:Replicate*", "Resource": "*"})
        decision = s3_decide(self.replicate(), [self.REPLICATE, deny], bucket)
        self.assertEqual((decision.allowed, decision.policies, decision.statement), (False, ["identity policy 1"], "#0"))

    def test_permissions_boundary_limits_the_identity_policy(self):
        boundary = doc(allow("s3:GetObject*"))
        decision = s3_decide(self.replicate(), [self.REPLICATE], None, boundary=boundary)
        self.assertEqual((decision.allowed, decision.policies), (False, ["permissions boundary B"]))
        self.assertTrue(s3_decide(self.replicate(), [self.REPLICATE], None, boundary=doc(allow("s3:*"))).allowed)

    def test_permissions_boundary_limits_a_grant_to_the_role_arn_not_to_the_session(self):
        boundary = doc(allow("s3:GetObject*"))
        to_role = doc(allow("s3:ReplicateObject", "*", Principal={"AWS": ROLE}))
        to_session = doc(allow("s3:ReplicateObject", "*", Principal={"AWS": SESSION.arn}))
        self.assertFalse(s3_decide(self.replicate(), [], to_role, boundary=boundary).allowed)
        self.assertTrue(s3_decide(self.replicate(), [], to_session, boundary=boundary).allowed)


DEFAULT_KEY_POLICY = doc({"Sid": "Enable IAM User Permissions", "Effect": "Allow",
                          "Principal": {"AWS": "arn:aws:iam::222222222222:root"}, "Action": "kms:*", "Resource": "*"})
KEY = "arn:aws:kms:ap-northeast-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ARCHIVE_KEY = "arn:aws:kms:ap-northeast-1:111111111111:key/0987dcba-09fe-87dc-65ba-ab0987654321"


def kms_decide(request, identity, key_policy, key_account):
    return decide(request, identity=[(f"identity policy {i}", d) for i, d in enumerate(identity)],
                  identity_label="identity policies of role S3ReplicationRole",
                  resource=("key policy of K", key_policy), resource_account=key_account, kind="kms")


class KeyPolicies(unittest.TestCase):
    """AWS KMS Developer Guide, "Key policies in AWS KMS" / "Default key policy" (the account
    statement lets IAM policies decide), "Allowing users in other accounts to use a KMS key"
    (both the key policy and the caller's IAM policy), "kms:ViaService", "kms:CallerAccount",
    and the S3 User Guide's replication policies ("Replicating encrypted objects")."""

    CONTEXT = {"kms:ViaService": "s3.ap-northeast-1.amazonaws.com", "kms:CallerAccount": "222222222222",
               "kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::src/AWSLogs/222222222222/x"}
    DECRYPT = doc({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": KEY,
                   "Condition": {"StringLike": {"kms:ViaService": "s3.ap-northeast-1.amazonaws.com",
                                                "kms:EncryptionContext:aws:s3:arn": ["arn:aws:s3:::src/AWSLogs/*"]}}})

    def decrypt(self, **context):
        return r("kms:Decrypt", KEY, context={**self.CONTEXT, **context})

    def test_default_key_policy_and_identity_policy(self):
        self.assertTrue(kms_decide(self.decrypt(), [self.DECRYPT], DEFAULT_KEY_POLICY, "222222222222").allowed)

    def test_default_key_policy_without_identity_policy(self):
        decision = kms_decide(self.decrypt(), [], DEFAULT_KEY_POLICY, "222222222222")
        self.assertEqual((decision.allowed, decision.policies), (False, ["identity policies of role S3ReplicationRole"]))

    def test_identity_policy_condition_on_the_encryption_context(self):
        decision = kms_decide(self.decrypt(**{"kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::src"}),
                              [self.DECRYPT], DEFAULT_KEY_POLICY, "222222222222")
        self.assertFalse(decision.allowed)
        self.assertEqual(decision.to_json()["unmatched"][0]["conditions"][0]["key"], "kms:EncryptionContext:aws:s3:arn")

    def test_key_policy_naming_the_role_needs_no_identity_policy_in_the_same_account(self):
        policy = doc(allow("kms:Decrypt", Principal={"AWS": ROLE}))
        self.assertTrue(kms_decide(self.decrypt(), [], policy, "222222222222").allowed)

    def test_key_policy_must_allow_even_when_iam_does(self):
        policy = doc(allow("kms:Decrypt", Principal={"AWS": OTHER_ROLE}))
        decision = kms_decide(self.decrypt(), [self.DECRYPT], policy, "222222222222")
        self.assertEqual((decision.allowed, decision.policies), (False, ["key policy of K"]))

    def test_aws_managed_s3_key(self):
        aws_s3 = doc({"Sid": "Allow access through S3 for all principals in the account that are authorized to use S3",
                      "Effect": "Allow", "Principal": {"AWS": "*"},
                      "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
                      "Resource": "*", "Condition": {"StringEquals": {"kms:CallerAccount": "222222222222",
                                                                      "kms:ViaService": "s3.ap-northeast-1.amazonaws.com"}}})
        self.assertTrue(kms_decide(self.decrypt(), [], aws_s3, "222222222222").allowed)
        other = self.decrypt(**{"kms:CallerAccount": "333333333333"})
        self.assertFalse(kms_decide(other, [], aws_s3, "222222222222").allowed)

    def test_cross_account_key_needs_key_policy_and_identity_policy(self):
        encrypt = r("kms:Encrypt", ARCHIVE_KEY, context={**self.CONTEXT,
                    "kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::dst/AWSLogs/222222222222/x"})
        key_policy = doc({"Sid": "Enable IAM User Permissions", "Effect": "Allow",
                         "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*", "Resource": "*"},
                         {"Sid": "Replicas", "Effect": "Allow", "Principal": {"AWS": [ROLE]},
                          "Action": ["kms:Encrypt", "kms:GenerateDataKey"], "Resource": "*",
                          "Condition": {"StringEquals": {"kms:ViaService": "s3.ap-northeast-1.amazonaws.com"}}})
        identity = doc(allow(["kms:Encrypt", "kms:GenerateDataKey"], "arn:aws:kms:ap-northeast-1:111111111111:key/*"))
        self.assertTrue(kms_decide(encrypt, [identity], key_policy, "111111111111").allowed)
        decision = kms_decide(encrypt, [], key_policy, "111111111111")
        self.assertEqual((decision.allowed, decision.policies), (False, ["identity policies of role S3ReplicationRole"]))
        only_root = doc({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*",
                         "Resource": "*"})
        decision = kms_decide(encrypt, [identity], only_root, "111111111111")
        self.assertEqual((decision.allowed, decision.policies), (False, ["key policy of K"]))


class TrustPolicies(unittest.TestCase):
    """S3 User Guide, "Setting up permissions for live replication": the trust policy with
    aws:SourceAccount and aws:SourceArn."""

    TRUST = doc({"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sts:AssumeRole",
                 "Condition": {"StringEquals": {"aws:SourceAccount": "222222222222"},
                               "ArnLike": {"aws:SourceArn": "arn:aws:s3:::src"}}})

    def assume(self, account, arn):
        request = r("sts:AssumeRole", ROLE, S3, {"aws:SourceAccount": account, "aws:SourceArn": arn})
        return decide(request, identity=[], identity_label="", resource=("trust policy of role R", self.TRUST),
                      resource_account="222222222222", kind="trust")

    def test_conditions_hold(self):
        self.assertTrue(self.assume("222222222222", "arn:aws:s3:::src").allowed)

    def test_another_bucket(self):
        decision = self.assume("222222222222", "arn:aws:s3:::other")
        self.assertEqual((decision.allowed, decision.policies), (False, ["trust policy of role R"]))
        self.assertEqual(decision.to_json()["unmatched"][0]["conditions"][0]["key"], "aws:SourceArn")


if __name__ == "__main__":
    unittest.main()
