#!/usr/bin/env bash
# Smoke test of the emulator's replication (emulator/server.py patches k-q): starts the server on
# a free port in a temp dir, sets up source accounts and an archive with the venv's AWS CLI, writes
# objects and checks what arrives, what fails and what the log at /_emulator/replication says;
# then runs the policy evaluator's unittest suite. Run by emulator/smoke.sh; alone:
#   emulator/replication_smoke.sh        (needs .venv from scripts/setup-emulator)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
py="$root/.venv/bin/python"
awscli="$root/.venv/bin/aws"
tmp="$(mktemp -d)"
pid=""

cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  echo "--- server stderr (tail) ---" >&2
  tail -n 30 "$tmp/stderr" >&2 || true
  exit 1
}
ok() { echo "ok - $*"; }

# --- the evaluator's unit tests -----------------------------------------------------------------
"$py" -m unittest discover -s "$root/emulator" -p 'test_*.py' 2>"$tmp/unittest" \
  || { cat "$tmp/unittest" >&2; fail "policy evaluator unittest suite"; }
ok "unit tests: $(grep -o 'Ran [0-9]* tests' "$tmp/unittest") (emulator/test_policy_eval.py: the evaluator; emulator/test_replication.py: rule selection)"

# --- start the server --------------------------------------------------------------------------
( cd "$tmp" && exec "$py" "$root/emulator/server.py" --host 127.0.0.1 --port 0 >"$tmp/stdout" 2>"$tmp/stderr" ) &
pid=$!
port=""
for _ in $(seq 1 300); do
  line="$(head -n 1 "$tmp/stdout" 2>/dev/null || true)"
  if [[ "$line" =~ ^listening\ on\ http://127\.0\.0\.1:([0-9]+)$ ]]; then
    port="${BASH_REMATCH[1]}"
    break
  fi
  kill -0 "$pid" 2>/dev/null || fail "server exited before listening"
  sleep 0.1
done
[ -n "$port" ] || fail "no 'listening on' line within 30s"
endpoint="http://127.0.0.1:$port"
ok "server listening on $endpoint"

export AWS_DEFAULT_REGION=ap-northeast-1 AWS_SECRET_ACCESS_KEY=test AWS_PAGER=""
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL || true
as() { local account="$1"; shift; AWS_ACCESS_KEY_ID="$account" "$awscli" --endpoint-url "$endpoint" --output json "$@"; }

# api METHOD PATH: the emulator's own endpoint, JSON out.
api() {
  "$py" -c 'import sys, urllib.request as u; sys.stdout.write(u.urlopen(u.Request(sys.argv[2], method=sys.argv[1])).read().decode())' \
    "$1" "$endpoint$2"
}
# check JSON PYTHON_EXPR [MESSAGE]: EXPR over `d` (the parsed JSON) must be true.
check() {
  "$py" -c '
import json, sys
d = json.loads(sys.argv[1])
if not eval(sys.argv[2]):
    sys.exit(1)' "$1" "$2" || fail "${3:-$2} -- got: $1"
}
# event BUCKET KEY [RULE]: the one log event of that source key (and rule), after waiting.
event() {
  api GET "/_emulator/replication?wait=10&bucket=$1&key=$(printf %s "$2" | "$py" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.stdin.read(), safe=""))')" \
    | "$py" -c '
import json, sys
d = json.load(sys.stdin)
assert d["pending"] == 0, d
es = [e for e in d["events"] if e["source_bucket"] == sys.argv[1] and (len(sys.argv) < 3 or e["rule_id"] == sys.argv[2])]
assert len(es) == 1, es
print(json.dumps(es[0]))' "$1" ${3:+"$3"} || fail "no single event for s3://$1/$2 ${3:-}"
}
head_status() { as "$1" s3api head-object --bucket "$2" --key "$3" --query ReplicationStatus --output text; }

echo log > "$tmp/log.json.gz"
region=ap-northeast-1
cfg="LocationConstraint=$region"
archive=aggregation-cloudtrail-logs-111111111111
trust_for() { # trust_for ACCOUNT BUCKET: s3.amazonaws.com, for that bucket only (aws:SourceAccount/SourceArn)
  echo "{\"Version\": \"2012-10-17\", \"Statement\": [{\"Effect\": \"Allow\", \"Principal\": {\"Service\": \"s3.amazonaws.com\"}, \"Action\": \"sts:AssumeRole\", \"Condition\": {\"StringEquals\": {\"aws:SourceAccount\": \"$1\"}, \"ArnLike\": {\"aws:SourceArn\": \"arn:aws:s3:::$2\"}}}]}"
}
role_policy() { # role_policy SOURCE_BUCKET [EXTRA_STATEMENTS]: the documented replication permissions
  echo "{\"Version\": \"2012-10-17\", \"Statement\": [
    {\"Effect\": \"Allow\", \"Action\": [\"s3:GetReplicationConfiguration\", \"s3:ListBucket\"], \"Resource\": \"arn:aws:s3:::$1\"},
    {\"Effect\": \"Allow\", \"Action\": [\"s3:GetObjectVersionForReplication\", \"s3:GetObjectVersionAcl\", \"s3:GetObjectVersionTagging\"], \"Resource\": \"arn:aws:s3:::$1/*\"},
    {\"Effect\": \"Allow\", \"Action\": [\"s3:ReplicateObject\", \"s3:ReplicateDelete\", \"s3:ReplicateTags\", \"s3:ObjectOwnerOverrideToBucketOwner\"], \"Resource\": \"arn:aws:s3:::$archive/*\"}${2:+, $2}]}"
}
source_account() { # source_account ACCOUNT BUCKET [EXTRA_STATEMENTS]: versioned bucket, role S3ReplicationRole
  as "$1" s3api create-bucket --bucket "$2" --create-bucket-configuration "$cfg" >/dev/null
  as "$1" s3api put-bucket-versioning --bucket "$2" --versioning-configuration Status=Enabled
  as "$1" iam create-role --role-name S3ReplicationRole --assume-role-policy-document "$(trust_for "$1" "$2")" >/dev/null
  as "$1" iam put-role-policy --role-name S3ReplicationRole --policy-name S3ReplicationPolicy \
    --policy-document "$(role_policy "$2" "${3:-}")"
}
rule() { # rule ACCOUNT ID PRIORITY PREFIX [EXTRA_DESTINATION_JSON] [EXTRA_RULE_JSON]
  echo "{\"ID\": \"$2\", \"Priority\": $3, \"Status\": \"Enabled\", \"Filter\": {\"Prefix\": \"$4\"}, \"DeleteMarkerReplication\": {\"Status\": \"Disabled\"}, \"Destination\": {\"Bucket\": \"arn:aws:s3:::$archive\", \"Account\": \"111111111111\", \"StorageClass\": \"STANDARD_IA\", \"AccessControlTranslation\": {\"Owner\": \"Destination\"}${5:+, $5}}${6:+, $6}}"
}
replicate() { # replicate ACCOUNT BUCKET RULE_JSON...
  local account="$1" bucket="$2" rules
  shift 2
  rules="$(IFS=,; echo "$*")"
  as "$account" s3api put-bucket-replication --bucket "$bucket" \
    --replication-configuration "{\"Role\": \"arn:aws:iam::$account:role/S3ReplicationRole\", \"Rules\": [$rules]}"
}
archive_grant() { # archive_grant ACCOUNT...: the archive policy statements admitting each account's role
  local out="" a
  for a in "$@"; do
    out+="${out:+, }{\"Sid\": \"TrailhubReplication$a\", \"Effect\": \"Allow\", \"Principal\": {\"AWS\": \"arn:aws:iam::$a:role/S3ReplicationRole\"}, \"Action\": [\"s3:ReplicateObject\", \"s3:ReplicateDelete\", \"s3:ReplicateTags\", \"s3:ObjectOwnerOverrideToBucketOwner\"], \"Resource\": \"arn:aws:s3:::$archive/AWSLogs/$a/*\", \"Condition\": {\"StringEquals\": {\"aws:PrincipalAccount\": \"$a\"}}}"
  done
  echo "$out"
}

# --- the archive: Object Lock with a default retention, versioning --------------------------------
as 111111111111 s3api create-bucket --bucket "$archive" --object-lock-enabled-for-bucket --create-bucket-configuration "$cfg" >/dev/null
as 111111111111 s3api put-bucket-versioning --bucket "$archive" --versioning-configuration Status=Enabled
as 111111111111 s3api put-object-lock-configuration --bucket "$archive" \
  --object-lock-configuration '{"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 30}}}'
deny='{"Sid": "NoReplicasUnderDenied", "Effect": "Deny", "Principal": "*", "Action": "s3:ReplicateObject", "Resource": "arn:aws:s3:::'"$archive"'/AWSLogs/222222222222/denied/*"}'
notags='{"Sid": "NoTags", "Effect": "Deny", "Principal": "*", "Action": "s3:ReplicateTags", "Resource": "arn:aws:s3:::'"$archive"'/AWSLogs/222222222222/notags/*"}'
as 111111111111 s3api put-bucket-policy --bucket "$archive" \
  --policy "{\"Version\": \"2012-10-17\", \"Statement\": [$(archive_grant 222222222222 555555555555), $deny, $notags]}"
# The archive replicates too (to a copy in its own account, with Object Lock as the archive has it
# and no default retention): replicas must not be replicated again.
copy=archive-copy-111111111111
as 111111111111 s3api create-bucket --bucket "$copy" --object-lock-enabled-for-bucket --create-bucket-configuration "$cfg" >/dev/null
as 111111111111 s3api put-bucket-versioning --bucket "$copy" --versioning-configuration Status=Enabled
as 111111111111 iam create-role --role-name ArchiveCopyRole --assume-role-policy-document "$(trust_for 111111111111 "$archive")" >/dev/null
as 111111111111 iam put-role-policy --role-name ArchiveCopyRole --policy-name Copy --policy-document \
  "{\"Version\": \"2012-10-17\", \"Statement\": [{\"Effect\": \"Allow\", \"Action\": [\"s3:GetObjectVersionForReplication\", \"s3:GetObjectRetention\", \"s3:GetObjectLegalHold\", \"s3:ReplicateObject\"], \"Resource\": \"*\"}]}"
as 111111111111 s3api put-bucket-replication --bucket "$archive" --replication-configuration \
  "{\"Role\": \"arn:aws:iam::111111111111:role/ArchiveCopyRole\", \"Rules\": [{\"ID\": \"Copy\", \"Priority\": 1, \"Status\": \"Enabled\", \"Filter\": {}, \"DeleteMarkerReplication\": {\"Status\": \"Disabled\"}, \"Destination\": {\"Bucket\": \"arn:aws:s3:::$copy\"}}]}"

# --- 1. cross-account, role and archive policy allow: the replica arrives ---------------------------
src=cloudtrail-logs-222222222222
source_account 222222222222 "$src"
replicate 222222222222 "$src" "$(rule 222222222222 ReplicateCloudTrailLogs 1 AWSLogs/)" \
  "$(rule 222222222222 Prioritized 2 AWSLogs/222222222222/prio/ | sed 's/STANDARD_IA/ONEZONE_IA/')"
key=AWSLogs/222222222222/CloudTrail/ap-northeast-1/2025/01/01/222222222222_CloudTrail_ap-northeast-1_20250101T0000Z_a.json.gz

api POST /_emulator/replication/pause >/dev/null
version="$(as 222222222222 s3api put-object --bucket "$src" --key "$key" --body "$tmp/log.json.gz" --tagging team=logs --query VersionId --output text)"
[ "$(head_status 222222222222 "$src" "$key")" = PENDING ] || fail "source is not PENDING right after the write"
check "$(api GET "/_emulator/replication?bucket=$src")" 'd["pending"] == 1 and d["paused"]' "one replication queued while paused"
api POST /_emulator/replication/resume >/dev/null
ok "right after the write (worker paused) the source reads PENDING; the log says 1 pending"

e="$(event "$src" "$key" ReplicateCloudTrailLogs)"
check "$e" 'd["status"] == "COMPLETED" and d["version_id"] == "'"$version"'" and d["destination_account"] == "111111111111"'
check "$e" '[r["action"] for r in d["requests"]] == ["sts:AssumeRole", "s3:GetObjectVersionForReplication", "s3:ReplicateObject", "s3:ObjectOwnerOverrideToBucketOwner", "s3:GetObjectVersionTagging", "s3:ReplicateTags"]' \
  "the requests S3 makes, in order"
[ "$(head_status 222222222222 "$src" "$key")" = COMPLETED ] || fail "source is not COMPLETED"
head="$(as 111111111111 s3api head-object --bucket "$archive" --key "$key")"
check "$head" 'd["ReplicationStatus"] == "REPLICA" and d["StorageClass"] == "STANDARD_IA" and d["VersionId"] == "'"$version"'"' "replica headers"
check "$head" 'd["ObjectLockMode"] == "GOVERNANCE" and d["ObjectLockRetainUntilDate"][:4] >= "2025"' "replica takes the archive's default retention"
retention="$(as 111111111111 s3api get-object-retention --bucket "$archive" --key "$key")"
check "$retention" 'd["Retention"]["Mode"] == "GOVERNANCE" and d["Retention"]["RetainUntilDate"] == "'"$(echo "$head" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["ObjectLockRetainUntilDate"])')"'"' "get-object-retention"
[ "$(as 111111111111 s3api get-object --bucket "$archive" --key "$key" "$tmp/got" --query ReplicationStatus --output text)" = REPLICA ] \
  || fail "get-object does not say REPLICA"
cmp -s "$tmp/got" "$tmp/log.json.gz" || fail "replica body differs"
check "$(as 111111111111 s3api get-object-tagging --bucket "$archive" --key "$key")" 'd["TagSet"] == [{"Key": "team", "Value": "logs"}]' "replica tags"
ok "cross-account replica: REPLICA, same version id and body, STANDARD_IA, tags, default retention (head-object and get-object-retention); source COMPLETED"

prio=AWSLogs/222222222222/prio/x.json.gz
as 222222222222 s3api put-object --bucket "$src" --key "$prio" --body "$tmp/log.json.gz" >/dev/null
check "$(event "$src" "$prio" Prioritized)" 'd["status"] == "COMPLETED" and d["replica"]["storage_class"] == "ONEZONE_IA"'
check "$(event "$src" "$prio" ReplicateCloudTrailLogs)" 'd["status"] == "SKIPPED" and "higher priority" in d["reason"]'
ok "overlapping rules to one destination: the higher Priority wins (its storage class), the other is SKIPPED"

# --- 6. replicas are not replicated again ------------------------------------------------------------
check "$(event "$archive" "$key" Copy)" 'd["status"] == "SKIPPED" and "replica" in d["reason"]' "the replica in the archive is not replicated"
[ "$(as 111111111111 s3api list-object-versions --bucket "$copy" --query 'length(Versions || `[]`)')" = 0 ] \
  || fail "a replica was replicated to $copy"
md5="$("$py" -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.md5(open(sys.argv[1], "rb").read()).digest()).decode())' "$tmp/log.json.gz")"
as 111111111111 s3api put-object --bucket "$archive" --key direct/one --body "$tmp/log.json.gz" --content-md5 "$md5" >/dev/null
check "$(event "$archive" direct/one Copy)" 'd["status"] == "COMPLETED" and d["replica"]["object_lock_mode"] == "GOVERNANCE"' \
  "an object written to the archive itself is replicated, keeping its own retention"
check "$(event "$archive" direct/one Copy)" '"s3:GetObjectRetention" in [r["action"] for r in d["requests"]]' \
  "a source bucket with Object Lock: S3 reads the retention"
ok "a replica (REPLICA) is never replicated again; an object written directly is, with the source's retention"

# --- 2. the archive policy does not admit the role -----------------------------------------------------
src3=cloudtrail-logs-333333333333
source_account 333333333333 "$src3"
replicate 333333333333 "$src3" "$(rule 333333333333 ReplicateCloudTrailLogs 1 AWSLogs/)"
key3=AWSLogs/333333333333/CloudTrail/x.json.gz
as 333333333333 s3api put-object --bucket "$src3" --key "$key3" --body "$tmp/log.json.gz" >/dev/null
e="$(event "$src3" "$key3")"
check "$e" 'd["status"] == "FAILED" and d["denied"]["action"] == "s3:ReplicateObject" and d["denied"]["reason"] == "no statement allows"'
check "$e" 'd["denied"]["policy"] == "bucket policy of '"$archive"'" and d["denied"]["resource"] == "arn:aws:s3:::'"$archive/$key3"'"'
check "$e" 'd["denied"]["principal"] == "arn:aws:sts::333333333333:assumed-role/S3ReplicationRole/s3-replication" and d["denied"]["context"]["aws:PrincipalAccount"] == "333333333333"'
[ "$(head_status 333333333333 "$src3" "$key3")" = FAILED ] || fail "source is not FAILED"
expect_missing() { if as "$1" s3api head-object --bucket "$2" --key "$3" >/dev/null 2>&1; then fail "s3://$2/$3 exists"; fi; }
expect_missing 111111111111 "$archive" "$key3"
ok "archive policy without the role: FAILED, the log names s3:ReplicateObject and the bucket policy of $archive"

# The trust policy ties the role to its bucket (aws:SourceArn): another bucket's rule cannot use it.
other3=other-bucket-333333333333
as 333333333333 s3api create-bucket --bucket "$other3" --create-bucket-configuration "$cfg" >/dev/null
as 333333333333 s3api put-bucket-versioning --bucket "$other3" --versioning-configuration Status=Enabled
replicate 333333333333 "$other3" "$(rule 333333333333 Other 1 "")"
as 333333333333 s3api put-object --bucket "$other3" --key AWSLogs/333333333333/x --body "$tmp/log.json.gz" >/dev/null
e="$(event "$other3" AWSLogs/333333333333/x)"
check "$e" 'd["status"] == "FAILED" and d["denied"]["action"] == "sts:AssumeRole" and d["denied"]["policy"] == "trust policy of role arn:aws:iam::333333333333:role/S3ReplicationRole"'
check "$e" 'd["denied"]["unmatched"][0]["conditions"] == [{"operator": "ArnLike", "key": "aws:SourceArn", "expected": ["arn:aws:s3:::'"$src3"'"], "actual": "arn:aws:s3:::'"$other3"'"}]'
ok "a trust policy tied to another bucket (aws:SourceArn): FAILED naming the trust policy and the condition"

# --- 3. an explicit Deny in the archive policy ------------------------------------------------------------
denied=AWSLogs/222222222222/denied/x.json.gz
as 222222222222 s3api put-object --bucket "$src" --key "$denied" --body "$tmp/log.json.gz" >/dev/null
e="$(event "$src" "$denied" ReplicateCloudTrailLogs)"
check "$e" 'd["status"] == "FAILED" and d["denied"]["reason"] == "explicit deny" and d["denied"]["statement"] == "NoReplicasUnderDenied"'
check "$e" 'd["denied"]["policy"] == "bucket policy of '"$archive"'"'
[ "$(head_status 222222222222 "$src" "$denied")" = FAILED ] || fail "source is not FAILED"
ok "explicit Deny: FAILED, the log names the statement NoReplicasUnderDenied of the archive's bucket policy"

# The archive denies s3:ReplicateTags ("Setting up permissions for live replication"): the object
# arrives without its tags.
notagkey=AWSLogs/222222222222/notags/x.json.gz
as 222222222222 s3api put-object --bucket "$src" --key "$notagkey" --body "$tmp/log.json.gz" --tagging team=logs >/dev/null
e="$(event "$src" "$notagkey" ReplicateCloudTrailLogs)"
check "$e" 'd["status"] == "COMPLETED" and d["replica"]["tags_replicated"] is False and d["tags_denied"]["statement"] == "NoTags"'
check "$(as 111111111111 s3api get-object-tagging --bucket "$archive" --key "$notagkey")" 'd["TagSet"] == []' "replica without tags"
ok "s3:ReplicateTags denied by the archive: the replica arrives (COMPLETED) without tags, the log names the Deny"

# --- 5. a rule without SseKmsEncryptedObjects skips SSE-KMS objects -----------------------------------
kmskey=AWSLogs/222222222222/kms/x.json.gz
as 222222222222 s3api put-object --bucket "$src" --key "$kmskey" --body "$tmp/log.json.gz" --server-side-encryption aws:kms >/dev/null
check "$(event "$src" "$kmskey" ReplicateCloudTrailLogs)" 'd["status"] == "SKIPPED" and "SseKmsEncryptedObjects" in d["reason"]'
[ "$(head_status 222222222222 "$src" "$kmskey")" = None ] || fail "a skipped object has a replication status"
check "$(as 222222222222 s3api head-object --bucket "$src" --key "$kmskey")" 'd["SSEKMSKeyId"].startswith("arn:aws:kms:ap-northeast-1:222222222222:key/")' \
  "an SSE-KMS object without a key id records the aws/s3 key's ARN"
aws_s3="$(as 222222222222 kms describe-key --key-id alias/aws/s3 --query KeyMetadata.KeyId --output text)"
check "$(as 222222222222 kms get-key-policy --key-id "$aws_s3" --policy-name default --query Policy --output text)" \
  'd["Statement"][0]["Condition"]["StringEquals"] == {"kms:CallerAccount": "222222222222", "kms:ViaService": "s3.ap-northeast-1.amazonaws.com"}' "the aws/s3 key policy"
ok "SSE-KMS object, rule without SseKmsEncryptedObjects: SKIPPED, no replication status; aws/s3 has AWS's key policy"

# --- 4. SSE-KMS with an S3 Bucket Key: the replica key's encryption context is the archive's ARN ---------
src5=cloudtrail-logs-555555555555
archive_key="$(as 111111111111 kms create-key --query KeyMetadata.Arn --output text)"
key5="$(as 555555555555 kms create-key --query KeyMetadata.Arn --output text)"
kms_statements="{\"Effect\": \"Allow\", \"Action\": \"kms:Decrypt\", \"Resource\": \"$key5\", \"Condition\": {\"StringLike\": {\"kms:ViaService\": \"s3.$region.amazonaws.com\", \"kms:EncryptionContext:aws:s3:arn\": [\"arn:aws:s3:::$src5\", \"arn:aws:s3:::$src5/AWSLogs/*\"]}}},
  {\"Effect\": \"Allow\", \"Action\": [\"kms:Encrypt\", \"kms:GenerateDataKey\", \"kms:Decrypt\"], \"Resource\": \"arn:aws:kms:$region:111111111111:key/*\", \"Condition\": {\"StringLike\": {\"kms:ViaService\": \"s3.$region.amazonaws.com\"}}}"
source_account 555555555555 "$src5" "$kms_statements"
as 555555555555 s3api put-bucket-encryption --bucket "$src5" --server-side-encryption-configuration \
  "{\"Rules\": [{\"ApplyServerSideEncryptionByDefault\": {\"SSEAlgorithm\": \"aws:kms\", \"KMSMasterKeyID\": \"${key5##*/}\"}, \"BucketKeyEnabled\": true}]}"
replicate 555555555555 "$src5" "$(rule 555555555555 ReplicateCloudTrailLogs 1 AWSLogs/ "\"EncryptionConfiguration\": {\"ReplicaKmsKeyID\": \"$archive_key\"}" '"SourceSelectionCriteria": {"SseKmsEncryptedObjects": {"Status": "Enabled"}}')"
key_policy() { # key_policy CONTEXT: the archive key admits 555's role for that encryption context
  echo "{\"Version\": \"2012-10-17\", \"Statement\": [
    {\"Sid\": \"Enable IAM User Permissions\", \"Effect\": \"Allow\", \"Principal\": {\"AWS\": \"arn:aws:iam::111111111111:root\"}, \"Action\": \"kms:*\", \"Resource\": \"*\"},
    {\"Sid\": \"TrailhubReplicaEncryption555555555555\", \"Effect\": \"Allow\", \"Principal\": {\"AWS\": [\"arn:aws:iam::555555555555:role/S3ReplicationRole\"]}, \"Action\": [\"kms:Encrypt\", \"kms:GenerateDataKey\", \"kms:Decrypt\"], \"Resource\": \"*\", \"Condition\": {\"StringEquals\": {\"kms:ViaService\": \"s3.$region.amazonaws.com\"}, \"StringLike\": {\"kms:EncryptionContext:aws:s3:arn\": [\"$1\"]}}}]}"
}
as 111111111111 kms put-key-policy --key-id "$archive_key" --policy-name default --policy "$(key_policy "arn:aws:s3:::$archive/AWSLogs/555555555555/*")"
k5=AWSLogs/555555555555/CloudTrail/one.json.gz
as 555555555555 s3api put-object --bucket "$src5" --key "$k5" --body "$tmp/log.json.gz" >/dev/null
check "$(as 555555555555 s3api head-object --bucket "$src5" --key "$k5")" 'd["SSEKMSKeyId"] == "'"$key5"'" and d["BucketKeyEnabled"] is True' \
  "the source object: SSE-KMS with the bucket's key (a bare id recorded as its ARN) and a Bucket Key"
e="$(event "$src5" "$k5")"
check "$e" 'd["status"] == "FAILED" and d["denied"]["action"] == "kms:Encrypt" and d["denied"]["policy"] == "key policy of '"$archive_key"'"'
check "$e" 'd["denied"]["resource"] == "'"$archive_key"'" and d["denied"]["context"]["kms:EncryptionContext:aws:s3:arn"] == "arn:aws:s3:::'"$archive"'"'
check "$e" '{"operator": "StringLike", "key": "kms:EncryptionContext:aws:s3:arn", "expected": ["arn:aws:s3:::'"$archive"'/AWSLogs/555555555555/*"], "actual": "arn:aws:s3:::'"$archive"'"} in d["denied"]["unmatched"][0]["conditions"]' \
  "the unmatched condition and the context value"
check "$e" '[r["action"] for r in d["requests"]][:4] == ["sts:AssumeRole", "s3:GetObjectVersionForReplication", "kms:Decrypt", "s3:ReplicateObject"]'
[ "$(head_status 555555555555 "$src5" "$k5")" = FAILED ] || fail "source is not FAILED"
ok "SSE-KMS + Bucket Key, archive key policy requiring the object-ARN context: FAILED naming the key policy and the condition"

as 111111111111 kms put-key-policy --key-id "$archive_key" --policy-name default --policy "$(key_policy "arn:aws:s3:::$archive")"
k5b=AWSLogs/555555555555/CloudTrail/two.json.gz
as 555555555555 s3api put-object --bucket "$src5" --key "$k5b" --body "$tmp/log.json.gz" >/dev/null
e="$(event "$src5" "$k5b")"
check "$e" 'd["status"] == "COMPLETED" and [r["action"] for r in d["requests"]][-2:] == ["kms:Encrypt", "kms:Decrypt"]' \
  "kms:Encrypt and (Bucket Key) kms:Decrypt on the archive key"
head="$(as 111111111111 s3api head-object --bucket "$archive" --key "$k5b")"
check "$head" 'd["ReplicationStatus"] == "REPLICA" and d["ServerSideEncryption"] == "aws:kms" and d["SSEKMSKeyId"] == "'"$archive_key"'" and d["BucketKeyEnabled"] is True'
[ "$(head_status 555555555555 "$src5" "$k5b")" = COMPLETED ] || fail "source is not COMPLETED"
ok "with the bucket-ARN context: delivered, the replica SSE-KMS with the archive key and a Bucket Key"

# --- the China partition: kms:ViaService ends in amazonaws.com.cn -------------------------------------
cn() { AWS_DEFAULT_REGION=cn-north-1 as 777777777777 "$@"; }
for b in cn-logs-777777777777 cn-archive-777777777777; do
  cn s3api create-bucket --bucket "$b" --create-bucket-configuration LocationConstraint=cn-north-1 >/dev/null
  cn s3api put-bucket-versioning --bucket "$b" --versioning-configuration Status=Enabled
done
cn_key="$(cn kms create-key --query KeyMetadata.Arn --output text)"
[[ "$cn_key" == arn:aws-cn:kms:cn-north-1:777777777777:key/* ]] || fail "China key ARN: $cn_key"
cn iam create-role --role-name CnReplication --assume-role-policy-document \
  '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sts:AssumeRole"}]}' >/dev/null
cn iam put-role-policy --role-name CnReplication --policy-name P --policy-document "{\"Version\": \"2012-10-17\", \"Statement\": [
  {\"Effect\": \"Allow\", \"Action\": \"s3:GetObjectVersionForReplication\", \"Resource\": \"arn:aws-cn:s3:::cn-logs-777777777777/*\"},
  {\"Effect\": \"Allow\", \"Action\": \"s3:ReplicateObject\", \"Resource\": \"arn:aws-cn:s3:::cn-archive-777777777777/*\"},
  {\"Effect\": \"Allow\", \"Action\": [\"kms:Decrypt\", \"kms:Encrypt\"], \"Resource\": \"$cn_key\", \"Condition\": {\"StringEquals\": {\"kms:ViaService\": \"s3.cn-north-1.amazonaws.com.cn\"}}}]}"
cn s3api put-bucket-replication --bucket cn-logs-777777777777 --replication-configuration "{\"Role\": \"arn:aws-cn:iam::777777777777:role/CnReplication\", \"Rules\": [{\"ID\": \"Cn\", \"Priority\": 1, \"Status\": \"Enabled\", \"Filter\": {}, \"DeleteMarkerReplication\": {\"Status\": \"Disabled\"}, \"SourceSelectionCriteria\": {\"SseKmsEncryptedObjects\": {\"Status\": \"Enabled\"}}, \"Destination\": {\"Bucket\": \"arn:aws-cn:s3:::cn-archive-777777777777\", \"EncryptionConfiguration\": {\"ReplicaKmsKeyID\": \"$cn_key\"}}}]}"
cn s3api put-object --bucket cn-logs-777777777777 --key AWSLogs/x --body "$tmp/log.json.gz" --server-side-encryption aws:kms --ssekms-key-id "$cn_key" >/dev/null
check "$(event cn-logs-777777777777 AWSLogs/x)" 'd["status"] == "COMPLETED" and [r["resource"] for r in d["requests"]][1] == "arn:aws-cn:s3:::cn-logs-777777777777/AWSLogs/x"'
[ "$(AWS_DEFAULT_REGION=cn-north-1 head_status 777777777777 cn-archive-777777777777 AWSLogs/x)" = REPLICA ] || fail "no REPLICA in the China archive"
ok "aws-cn: ARNs in the aws-cn partition, kms:ViaService s3.cn-north-1.amazonaws.com.cn"

# --- o. the default retention applies to multipart uploads too ---------------------------------------------
upload="$(as 111111111111 s3api create-multipart-upload --bucket "$archive" --key mpu/one --query UploadId --output text)"
etag="$(as 111111111111 s3api upload-part --bucket "$archive" --key mpu/one --upload-id "$upload" --part-number 1 --body "$tmp/log.json.gz" --query ETag --output text)"
as 111111111111 s3api complete-multipart-upload --bucket "$archive" --key mpu/one --upload-id "$upload" \
  --multipart-upload "{\"Parts\": [{\"ETag\": $etag, \"PartNumber\": 1}]}" >/dev/null
check "$(as 111111111111 s3api head-object --bucket "$archive" --key mpu/one)" 'd["ObjectLockMode"] == "GOVERNANCE"' "multipart upload takes the default retention"
check "$(event "$archive" mpu/one Copy)" 'd["status"] == "COMPLETED"' "a completed multipart upload is replicated"
ok "CompleteMultipartUpload: the bucket's default retention, and replication"

# --- the log's filters and reset ------------------------------------------------------------------------
all="$(api GET "/_emulator/replication?wait=5")"
check "$all" 'd["pending"] == 0 and len(d["events"]) >= 10 and [e["seq"] for e in d["events"]] == sorted(e["seq"] for e in d["events"])'
last="$(echo "$all" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["events"][-1]["seq"])')"
check "$(api GET "/_emulator/replication?since=$last")" 'd["events"] == []' "since= keeps only newer events"
check "$(api GET "/_emulator/replication?bucket=$src3")" 'all("'"$src3"'" in (e["source_bucket"], e["destination_bucket"]) for e in d["events"]) and d["events"]'
check "$(api DELETE /_emulator/replication)" 'd["cleared"] >= 10'
check "$(api GET /_emulator/replication)" 'd["events"] == []'
ok "the log: ordered by seq, ?since= and ?bucket= filters, DELETE clears it"

kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || fail "server exited with $rc on SIGTERM"
echo "all replication smoke checks passed"
