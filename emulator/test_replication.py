"""Tests of which rules replicate a new version (emulator/replication.py ``plan``), on moto's own
S3 backend, from the rules of the S3 User Guide ("Replication configuration file elements":
Filter with Prefix, Tag or And, Priority; "Replicating encrypted objects": SSE-KMS opt-in;
"What does Amazon S3 replicate?").

Run: .venv/bin/python -m unittest discover -s emulator -p 'test_*.py'   (emulator/smoke.sh does)
"""

import sys
import unittest
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from moto.s3.models import s3_backends  # noqa: E402

from replication import plan  # noqa: E402

ACCOUNT = "222222222222"


def rule(rule_id, priority=1, dest="dst", status="Enabled", **extra):
    return {"ID": rule_id, "Priority": str(priority), "Status": status,
            "Destination": {"Bucket": f"arn:aws:s3:::{dest}"}, **extra}


class Planning(unittest.TestCase):
    def setUp(self):
        self.backend = s3_backends[ACCOUNT]["aws"]
        self.name = f"src-{uuid.uuid4().hex[:12]}"
        self.bucket = self.backend.create_bucket(self.name, "ap-northeast-1")
        self.backend.put_bucket_versioning(self.name, "Enabled")

    def tearDown(self):
        s3_backends.bucket_accounts.pop(self.name, None)
        self.backend.buckets.pop(self.name, None)

    def plan(self, rules, key="AWSLogs/1/x", tags=None, **put):
        self.backend.put_bucket_replication(self.name, {"Role": "arn:aws:iam::222222222222:role/R", "Rule": rules})
        obj = self.backend.put_object(self.name, key, b"x", **put)
        if tags:
            self.backend.put_object_tagging(obj, tags)
        chosen, skipped = plan(self.bucket, obj)
        return [r["ID"] for r in chosen], {e["rule_id"]: e["reason"] for e in skipped}

    def test_prefix_filter(self):
        chosen, skipped = self.plan([rule("a", Filter={"Prefix": "AWSLogs/"}), rule("b", 2, "other", Filter={"Prefix": "Other/"})])
        self.assertEqual(chosen, ["a"])
        self.assertIn("prefix", skipped["b"])

    def test_empty_filter_matches_everything(self):
        self.assertEqual(self.plan([rule("a", Filter=None)])[0], ["a"])

    def test_v1_rule_prefix(self):
        self.assertEqual(self.plan([rule("a", Prefix="AWSLogs/")])[0], ["a"])
        self.assertEqual(self.plan([rule("a", Prefix="Nope/")])[0], [])

    def test_tag_filter(self):
        rules = [rule("a", Filter={"Tag": {"Key": "k", "Value": "v"}})]
        self.assertEqual(self.plan(rules, tags={"k": "v"})[0], ["a"])
        self.assertEqual(self.plan(rules, tags={"k": "w"})[0], [])

    def test_and_filter_needs_the_prefix_and_every_tag(self):
        rules = [rule("a", Filter={"And": {"Prefix": "AWSLogs/", "Tag": [{"Key": "k1", "Value": "v1"}, {"Key": "k2", "Value": "v2"}]}})]
        self.assertEqual(self.plan(rules, tags={"k1": "v1", "k2": "v2", "k3": "x"})[0], ["a"])
        self.assertEqual(self.plan(rules, tags={"k1": "v1"})[0], [])
        self.assertEqual(self.plan(rules, key="Other/x", tags={"k1": "v1", "k2": "v2"})[0], [])

    def test_disabled_rule(self):
        chosen, skipped = self.plan([rule("a", status="Disabled", Filter={"Prefix": ""})])
        self.assertEqual(chosen, [])
        self.assertIn("not Enabled", skipped["a"])

    def test_highest_priority_wins_per_destination(self):
        rules = [rule("low", 1, Filter={"Prefix": "AWSLogs/"}), rule("high", 5, Filter={"Prefix": "AWSLogs/1/"}),
                 rule("elsewhere", 3, "other", Filter={"Prefix": ""})]
        chosen, skipped = self.plan(rules)
        self.assertEqual(sorted(chosen), ["elsewhere", "high"])
        self.assertIn("'high' (Priority 5)", skipped["low"])

    def test_sse_kms_objects_need_the_opt_in(self):
        opted = rule("opted", 1, "a", Filter={"Prefix": ""},
                     SourceSelectionCriteria={"SseKmsEncryptedObjects": {"Status": "Enabled"}})
        plain = rule("plain", 2, "b", Filter={"Prefix": ""})
        chosen, skipped = self.plan([opted, plain], encryption="aws:kms", kms_key_id="alias/aws/s3")
        self.assertEqual(chosen, ["opted"])
        self.assertIn("SseKmsEncryptedObjects", skipped["plain"])
        self.assertEqual(sorted(self.plan([opted, plain], encryption="AES256")[0]), ["opted", "plain"])

    def test_archived_storage_classes_are_not_replicated(self):
        self.assertEqual(self.plan([rule("a", Filter={"Prefix": ""})], storage="GLACIER")[0], [])
        self.assertEqual(self.plan([rule("a", Filter={"Prefix": ""})], storage="GLACIER_IR")[0], ["a"])


if __name__ == "__main__":
    unittest.main()
