#!/usr/bin/env bash
# Smoke test for emulator/server.py: starts it on a free port in a temp dir, checks every patch
# with the venv's AWS CLI (and the raw XML where the CLI would not notice), then stops it.
# Usage: emulator/smoke.sh        (needs .venv from scripts/setup-emulator)
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
[ -n "$port" ] || fail "no 'listening on' line within 30s (got: '${line:-}')"
endpoint="http://127.0.0.1:$port"
ok "server listening on $endpoint"

export AWS_DEFAULT_REGION=ap-northeast-1 AWS_SECRET_ACCESS_KEY=test AWS_PAGER=""
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL || true
aws111() { AWS_ACCESS_KEY_ID=111111111111 "$awscli" --endpoint-url "$endpoint" --output json "$@"; }
aws222() {
  AWS_ACCESS_KEY_ID="$key222" AWS_SECRET_ACCESS_KEY="$secret222" AWS_SESSION_TOKEN="$token222" \
    "$awscli" --endpoint-url "$endpoint" --output json "$@"
}

# same_json ACTUAL EXPECTED: structural JSON equality, printing both on mismatch.
same_json() {
  "$py" -c 'import json, sys; sys.exit(0 if json.loads(sys.argv[1]) == json.loads(sys.argv[2]) else 1)' "$1" "$2" \
    || fail "JSON differs:
  actual:   $1
  expected: $2"
}

# raw_s3 ACCOUNT PATH: the raw response body of an S3 GET as that account (moto does not check
# signatures; the account comes from the Credential's access key id).
raw_s3() {
  "$py" - "$endpoint$2" "$1" <<'EOF'
import sys, urllib.request
auth = f"AWS4-HMAC-SHA256 Credential={sys.argv[2]}/20250101/ap-northeast-1/s3/aws4_request, SignedHeaders=host, Signature=0"
with urllib.request.urlopen(urllib.request.Request(sys.argv[1], headers={"Authorization": auth})) as r:
    sys.stdout.write(r.read().decode())
EOF
}

# expect_error CODE CMD...: CMD must fail and its stderr must mention CODE.
expect_error() {
  local code="$1" err
  shift
  if err="$("$@" 2>&1 >/dev/null)"; then fail "expected $code from: $*"; fi
  [[ "$err" == *"$code"* ]] || fail "expected $code from: $* -- got: $err"
}

# --- accounts (patch e) and AssumeRole ---------------------------------------------------------
[ "$(aws111 sts get-caller-identity --query Account --output text)" = 111111111111 ] \
  || fail "access key 111111111111 does not act as account 111111111111"
ok "access key id 111111111111 acts as account 111111111111"

# The role does not exist anywhere: moto still hands out credentials for account 222222222222.
read -r key222 secret222 token222 < <(aws111 sts assume-role \
  --role-arn arn:aws:iam::222222222222:role/OrganizationAccountAccessRole --role-session-name smoke \
  --query 'Credentials.[AccessKeyId,SecretAccessKey,SessionToken]' --output text)
[ "$(aws222 sts get-caller-identity --query Account --output text)" = 222222222222 ] \
  || fail "assumed-role credentials do not act as account 222222222222"
ok "assume-role into 222222222222 works without the role existing"

src=cloudtrail-logs-222222222222
dst=aggregation-cloudtrail-logs-111111111111
aws222 s3api create-bucket --bucket "$src" --create-bucket-configuration LocationConstraint=ap-northeast-1 >/dev/null
aws111 s3api create-bucket --bucket "$dst" --create-bucket-configuration LocationConstraint=ap-northeast-1 >/dev/null

# --- a. GetBucketVersioning ----------------------------------------------------------------------
ns='xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
out="$(aws222 s3api get-bucket-versioning --bucket "$src")"
same_json "${out:-{\}}" '{}'
raw="$(raw_s3 222222222222 "/$src?versioning")"
[[ "$raw" == *"<VersioningConfiguration $ns></VersioningConfiguration>" ]] || fail "fresh bucket versioning XML: $raw"
ok "fresh bucket: get-bucket-versioning succeeds without Status, root <VersioningConfiguration>"

aws222 s3api put-bucket-versioning --bucket "$src" --versioning-configuration Status=Enabled
[ "$(aws222 s3api get-bucket-versioning --bucket "$src" --query Status --output text)" = Enabled ] \
  || fail "get-bucket-versioning does not say Enabled"
raw="$(raw_s3 222222222222 "/$src?versioning")"
[[ "$raw" == *"<VersioningConfiguration $ns><Status>Enabled</Status></VersioningConfiguration>" ]] \
  || fail "versioning XML: $raw"
ok "put-bucket-versioning Enabled -> Status Enabled, root <VersioningConfiguration>"
aws111 s3api put-bucket-versioning --bucket "$dst" --versioning-configuration Status=Enabled,MFADelete=Disabled
same_json "$(aws111 s3api get-bucket-versioning --bucket "$dst")" '{"Status": "Enabled", "MFADelete": "Disabled"}'
ok "MfaDelete is returned as put"

# --- b. GetBucketReplication ---------------------------------------------------------------------
replication='{"Role": "arn:aws:iam::222222222222:role/S3ReplicationRole", "Rules": [{"ID": "ReplicateCloudTrailLogs", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": "AWSLogs/"}, "Destination": {"Bucket": "arn:aws:s3:::aggregation-cloudtrail-logs-111111111111", "Account": "111111111111", "StorageClass": "STANDARD_IA", "AccessControlTranslation": {"Owner": "Destination"}, "ReplicationTime": {"Status": "Enabled", "Time": {"Minutes": 15}}, "Metrics": {"Status": "Enabled", "EventThreshold": {"Minutes": 15}}}, "DeleteMarkerReplication": {"Status": "Disabled"}}]}'
second='{"Role": "arn:aws:iam::222222222222:role/S3ReplicationRole", "Rules": [{"ID": "Second", "Priority": 2, "Status": "Enabled", "Filter": {"Prefix": "foo/"}, "Destination": {"Bucket": "arn:aws:s3:::aggregation-cloudtrail-logs-111111111111"}, "DeleteMarkerReplication": {"Status": "Enabled"}}]}'
tagged='{"Role": "arn:aws:iam::222222222222:role/S3ReplicationRole", "Rules": [{"ID": "Tagged", "Priority": 3, "Status": "Disabled", "Filter": {"And": {"Prefix": "p/", "Tags": [{"Key": "k1", "Value": "v1"}, {"Key": "k2", "Value": "v2"}]}}, "Destination": {"Bucket": "arn:aws:s3:::aggregation-cloudtrail-logs-111111111111", "Account": "111111111111"}, "DeleteMarkerReplication": {"Status": "Disabled"}}, {"ID": "OneTag", "Priority": 4, "Status": "Enabled", "Filter": {"Tag": {"Key": "k", "Value": "v"}}, "Destination": {"Bucket": "arn:aws:s3:::aggregation-cloudtrail-logs-111111111111"}, "DeleteMarkerReplication": {"Status": "Disabled"}}]}'
for config in "$replication" "$second" "$tagged"; do
  aws222 s3api put-bucket-replication --bucket "$src" --replication-configuration "$config"
  same_json "$(aws222 s3api get-bucket-replication --bucket "$src" --query ReplicationConfiguration)" "$config"
done
raw="$(raw_s3 222222222222 "/$src?replication")"
[[ "$raw" == *"<ReplicationConfiguration $ns><Role>"* ]] || fail "replication XML: $raw"
ok "get-bucket-replication returns the configuration as put (CloudTrail rule, Prefix foo/ + DeleteMarkerReplication Enabled, And/Tag filters)"
aws222 s3api put-bucket-replication --bucket "$src" --replication-configuration "$replication"

# --- c. CloudFormation role inline policy --------------------------------------------------------
trust='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sts:AssumeRole"}]}'
policy='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"], "Resource": "arn:aws:s3:::cloudtrail-logs-222222222222"}, {"Effect": "Allow", "Action": ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"], "Resource": "arn:aws:s3:::cloudtrail-logs-222222222222/*"}, {"Effect": "Allow", "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags", "s3:ObjectOwnerOverrideToBucketOwner"], "Resource": "arn:aws:s3:::aggregation-cloudtrail-logs-111111111111/*"}]}'
template() { # template POLICY_NAME POLICY_JSON
  cat <<EOF
{"AWSTemplateFormatVersion": "2010-09-09",
 "Resources": {"ReplicationRole": {"Type": "AWS::IAM::Role", "Properties": {
   "RoleName": "S3ReplicationRole", "AssumeRolePolicyDocument": $trust,
   "Policies": [{"PolicyName": "$1", "PolicyDocument": $2}]}}},
 "Outputs": {"RoleArn": {"Value": {"Fn::GetAtt": ["ReplicationRole", "Arn"]}, "Export": {"Name": "S3ReplicationRoleArn"}}}}
EOF
}
template S3ReplicationPolicy "$policy" >"$tmp/role.json"
aws222 cloudformation create-stack --stack-name trailhub-replication-role \
  --template-body "file://$tmp/role.json" --capabilities CAPABILITY_NAMED_IAM >/dev/null
[ "$(aws222 cloudformation describe-stacks --stack-name trailhub-replication-role --query 'Stacks[0].StackStatus' --output text)" = CREATE_COMPLETE ] \
  || fail "stack not CREATE_COMPLETE"
same_json "$(aws222 iam get-role-policy --role-name S3ReplicationRole --policy-name S3ReplicationPolicy --query PolicyDocument)" "$policy"
same_json "$(aws222 iam get-role --role-name S3ReplicationRole --query Role.AssumeRolePolicyDocument)" "$trust"
ok "CFN-created role: get-role-policy and get-role return the template's documents as JSON"

policy2='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ReplicateObject", "Resource": "arn:aws:s3:::aggregation-cloudtrail-logs-111111111111/*"}]}'
template S3ReplicationPolicyV2 "$policy2" >"$tmp/role2.json"
aws222 cloudformation update-stack --stack-name trailhub-replication-role \
  --template-body "file://$tmp/role2.json" --capabilities CAPABILITY_NAMED_IAM >/dev/null
same_json "$(aws222 iam list-role-policies --role-name S3ReplicationRole --query PolicyNames)" '["S3ReplicationPolicyV2"]'
same_json "$(aws222 iam get-role-policy --role-name S3ReplicationRole --policy-name S3ReplicationPolicyV2 --query PolicyDocument)" "$policy2"
ok "update-stack applies the changed inline policy to the role"

same_json "$(aws222 cloudformation describe-stacks --stack-name trailhub-replication-role --query 'Stacks[0].Outputs')" \
  '[{"OutputKey": "RoleArn", "OutputValue": "arn:aws:iam::222222222222:role/S3ReplicationRole", "ExportName": "S3ReplicationRoleArn"}]'
stack_id="$(aws222 cloudformation describe-stacks --stack-name trailhub-replication-role --query 'Stacks[0].StackId' --output text)"
aws222 cloudformation delete-stack --stack-name trailhub-replication-role
[ "$(aws222 cloudformation describe-stacks --stack-name "$stack_id" --query 'Stacks[0].StackStatus' --output text)" = DELETE_COMPLETE ] \
  || fail "deleted stack is not DELETE_COMPLETE"
expect_error NoSuchEntity aws222 iam get-role --role-name S3ReplicationRole
aws222 cloudformation create-stack --stack-name trailhub-replication-role \
  --template-body "file://$tmp/role.json" --capabilities CAPABILITY_NAMED_IAM >/dev/null
ok "delete-stack deletes the role, describing the deleted stack does not re-create it (patch f), re-create works"

# --- h. a stack whose role was deleted outside CloudFormation can be deleted ----------------------
aws222 iam delete-role-policy --role-name S3ReplicationRole --policy-name S3ReplicationPolicy
aws222 iam delete-role --role-name S3ReplicationRole
stack_id="$(aws222 cloudformation describe-stacks --stack-name trailhub-replication-role --query 'Stacks[0].StackId' --output text)"
aws222 cloudformation delete-stack --stack-name trailhub-replication-role \
  || fail "delete-stack of a stack whose role was deleted by hand failed"
[ "$(aws222 cloudformation describe-stacks --stack-name "$stack_id" --query 'Stacks[0].StackStatus' --output text)" = DELETE_COMPLETE ] \
  || fail "a stack whose role is gone is not DELETE_COMPLETE"
ok "delete-stack of a stack whose role was deleted by hand completes (patch h)"

# --- i. an update to a template that declares fewer parameters ------------------------------------
cat >"$tmp/with-param.json" <<EOF
{"AWSTemplateFormatVersion": "2010-09-09", "Parameters": {"DestinationAccountId": {"Type": "String"}},
 "Resources": {"ReplicationRole": {"Type": "AWS::IAM::Role", "Properties": {
   "RoleName": "S3ReplicationRole", "AssumeRolePolicyDocument": $trust}}}}
EOF
aws222 cloudformation create-stack --stack-name trailhub-params \
  --template-body "file://$tmp/with-param.json" --capabilities CAPABILITY_NAMED_IAM \
  --parameters ParameterKey=DestinationAccountId,ParameterValue=111111111111 >/dev/null
aws222 cloudformation update-stack --stack-name trailhub-params \
  --template-body "file://$tmp/role.json" --capabilities CAPABILITY_NAMED_IAM >/dev/null \
  || fail "update-stack to a template without the parameter failed"
[ "$(aws222 cloudformation describe-stacks --stack-name trailhub-params --query 'Stacks[0].StackStatus' --output text)" = UPDATE_COMPLETE ] \
  || fail "update to a template without the parameter is not UPDATE_COMPLETE"
ok "update-stack to a template that no longer declares a parameter completes (patch i)"
# The update added role.json's export: listed, and withdrawn by the stack's deletion (moto
# registered exports at create-stack only, and this delete-stack failed with HTTP 500).
[ "$(aws222 cloudformation list-exports --query 'Exports[?Name==`S3ReplicationRoleArn`].Value' --output text)" \
  = arn:aws:iam::222222222222:role/S3ReplicationRole ] || fail "the export the update added is not listed"
aws222 cloudformation delete-stack --stack-name trailhub-params
[ -z "$(aws222 cloudformation list-exports --query 'Exports[?Name==`S3ReplicationRoleArn`].Value' --output text)" ] \
  || fail "the deleted stack's export is still listed"
expect_error NoSuchEntity aws222 iam get-role --role-name S3ReplicationRole
ok "an update's exports are listed, and delete-stack of the updated stack withdraws them and deletes its role (patch i)"

# --- d. x-amz-expected-bucket-owner --------------------------------------------------------------
aws222 s3api head-bucket --bucket "$src" --expected-bucket-owner 222222222222 >/dev/null
aws111 s3api head-bucket --bucket "$src" --expected-bucket-owner 222222222222 >/dev/null
expect_error "(403)" aws222 s3api head-bucket --bucket "$src" --expected-bucket-owner 111111111111
expect_error "(403)" aws111 s3api head-bucket --bucket "$src" --expected-bucket-owner 111111111111
ok "head-bucket: right owner succeeds, other account id -> 403 Forbidden"
expect_error AccessDenied aws222 s3api get-bucket-versioning --bucket "$src" --expected-bucket-owner 111111111111
expect_error AccessDenied aws222 s3api get-bucket-replication --bucket "$src" --expected-bucket-owner 111111111111
expect_error AccessDenied aws222 s3api get-bucket-encryption --bucket "$src" --expected-bucket-owner 111111111111
expect_error AccessDenied aws222 s3api get-bucket-policy --bucket "$src" --expected-bucket-owner 111111111111
expect_error AccessDenied aws222 s3api put-bucket-versioning --bucket "$src" --expected-bucket-owner 111111111111 \
  --versioning-configuration Status=Enabled
expect_error AccessDenied aws222 s3api put-bucket-replication --bucket "$src" --expected-bucket-owner 111111111111 \
  --replication-configuration "$replication"
aws222 s3api get-bucket-replication --bucket "$src" --expected-bucket-owner 222222222222 >/dev/null
ok "Get/PutBucketVersioning, Get/PutBucketReplication, GetBucketEncryption, GetBucketPolicy: other owner -> AccessDenied"

# --- j. Object Lock configuration -----------------------------------------------------------------
lock=object-lock-111111111111
aws111 s3api create-bucket --bucket "$lock" --object-lock-enabled-for-bucket \
  --create-bucket-configuration LocationConstraint=ap-northeast-1 >/dev/null
aws111 s3api put-object-lock-configuration --bucket "$lock" \
  --object-lock-configuration '{"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 30}}}'
same_json "$(aws111 s3api get-object-lock-configuration --bucket "$lock")" \
  '{"ObjectLockConfiguration": {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 30}}}}'
echo log > "$tmp/object"
aws111 s3api put-object --bucket "$lock" --key AWSLogs/one --body "$tmp/object" >/dev/null
aws111 s3api put-object-lock-configuration --bucket "$lock" \
  --object-lock-configuration '{"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Years": 7}}}'
same_json "$(aws111 s3api get-object-lock-configuration --bucket "$lock")" \
  '{"ObjectLockConfiguration": {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Years": 7}}}}'
aws111 s3api put-object-lock-configuration --bucket "$lock" --object-lock-configuration '{"ObjectLockEnabled": "Enabled"}'
same_json "$(aws111 s3api get-object-lock-configuration --bucket "$lock")" '{"ObjectLockConfiguration": {"ObjectLockEnabled": "Enabled"}}'
ok "object lock: the default retention reads back with its one period, and is changed and removed on a bucket with objects"

# --- r. new buckets: BucketOwnerEnforced and Block Public Access on ------------------------------
fresh=fresh-defaults-111111111111
aws111 s3api create-bucket --bucket "$fresh" --create-bucket-configuration LocationConstraint=ap-northeast-1 >/dev/null
[ "$(aws111 s3api get-bucket-ownership-controls --bucket "$fresh" --query 'OwnershipControls.Rules[0].ObjectOwnership' --output text)" = BucketOwnerEnforced ] \
  || fail "a new bucket is not BucketOwnerEnforced"
same_json "$(aws111 s3api get-public-access-block --bucket "$fresh")" \
  '{"PublicAccessBlockConfiguration": {"BlockPublicAcls": true, "IgnorePublicAcls": true, "BlockPublicPolicy": true, "RestrictPublicBuckets": true}}'
ok "a new bucket has BucketOwnerEnforced and Block Public Access on (patch r)"


# --- recorder -------------------------------------------------------------------------------------
moto_api() { "$py" -c 'import sys, urllib.request as u; sys.stdout.write(u.urlopen(u.Request(sys.argv[1], method="POST")).read().decode())' "$endpoint/moto-api/recorder/$1"; }
moto_api reset-recording >/dev/null
moto_api start-recording >/dev/null
aws222 s3api get-bucket-versioning --bucket "$src" >/dev/null
moto_api stop-recording >/dev/null
moto_api download-recording | "$py" -c '
import json, sys
rows = [json.loads(line) for line in sys.stdin if line.strip()]
assert len(rows) == 1 and rows[0]["method"] == "GET" and rows[0]["url"].endswith("?versioning"), rows
assert {"headers", "method", "url", "body", "body_encoded"} <= rows[0].keys(), rows[0].keys()
' || fail "recorder did not record the request"
[ -s "$tmp/moto_recording" ] || fail "no moto_recording in the server's working directory"
ok "recorder: reset/start/stop/download-recording work (moto_recording in the server's cwd)"

# --- shutdown ---------------------------------------------------------------------------------------
[ "$(wc -l <"$tmp/stdout")" -eq 1 ] || fail "stdout has more than one line: $(cat "$tmp/stdout")"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || fail "server exited with $rc on SIGTERM"
ok "stdout held exactly one line; SIGTERM -> exit 0"
echo "all emulator smoke checks passed"
bash "$root/emulator/replication_smoke.sh"  # patches k-q: replication, and the policy evaluator's unittest suite
