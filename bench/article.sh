#!/usr/bin/env bash
# The article's procedure (../shared/seed/README.md, from 000_9f8ad04e45e43216.txt) as its readers
# run it: the AWS CLI commands of the article, in the article's order, one CLI process per command.
#
# Usage: bench/article.sh [--parallel] [--archive ID] ACCOUNT...
#   default       the source accounts one after another (section 2 per account), then section 3
#   --parallel    section 2 of every account as a parallel shell job (`&` + `wait`), then section 3
# Section 1 (the archive bucket, Object Lock, versioning) comes first; section 3 (the archive bucket
# policy, both statements, every source role in Principal.AWS, list form) is written once at the end.
#
# Environment: AWS_ENDPOINT_URL (the emulator or the benchmark proxy; honoured by every client the
# CLI makes, the assume-role STS client included), AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (the
# archive account's credentials: 111111111111 on the emulator), AWS_CLI (default: the venv's aws).
# Each account is a CLI profile in a temporary AWS config (role_arn = the account's
# OrganizationAccountAccessRole, source_profile = archive), HOME is a temporary directory, so the
# CLI's assume-role credential cache starts empty and one AssumeRole per account is made, as for a
# reader with a profile per account. Exit 0 when every account and the policy are done, else 1.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
AWS_CLI="${AWS_CLI:-$root/.venv/bin/aws}"
TEMPLATE="$here/s3-replication-role.yaml"
REGION=ap-northeast-1

parallel=0
DESTINATION_ACCOUNT_ID=111111111111
accounts=()
while [ $# -gt 0 ]; do
  case "$1" in
    --parallel) parallel=1 ;;
    --archive) DESTINATION_ACCOUNT_ID="$2"; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) accounts+=("$1") ;;
  esac
  shift
done
[ "${#accounts[@]}" -gt 0 ] || { echo "usage: $0 [--parallel] [--archive ID] ACCOUNT..." >&2; exit 2; }
: "${AWS_ENDPOINT_URL:?set AWS_ENDPOINT_URL to the emulator or the proxy}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Profiles: the archive's static credentials, one assume-role profile per source account.
archive_key="${AWS_ACCESS_KEY_ID:?set the credentials of the archive account}"
archive_secret="${AWS_SECRET_ACCESS_KEY:?set the credentials of the archive account}"
{
  printf '[profile archive]\nregion = %s\n' "$REGION"
  for a in "${accounts[@]}"; do
    printf '\n[profile acct-%s]\nrole_arn = arn:aws:iam::%s:role/OrganizationAccountAccessRole\nsource_profile = archive\nregion = %s\n' \
      "$a" "$a" "$REGION"
  done
} >"$work/config"
printf '[archive]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$archive_key" "$archive_secret" >"$work/credentials"
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE
export AWS_CONFIG_FILE="$work/config" AWS_SHARED_CREDENTIALS_FILE="$work/credentials" HOME="$work/home" \
  AWS_PAGER="" AWS_EC2_METADATA_DISABLED=true AWS_DEFAULT_REGION="$REGION"
mkdir -p "$HOME"
aws() { "$AWS_CLI" "$@"; }

# The article's replication configuration (section 2), with ${ACCOUNT_ID} / ${DESTINATION_ACCOUNT_ID}
# left for sed, as the article does.
cat >"$work/replication-config.json" <<'JSON'
{
  "Role": "arn:aws:iam::${ACCOUNT_ID}:role/S3ReplicationRole",
  "Rules": [
    {
      "ID": "ReplicateCloudTrailLogs",
      "Priority": 1,
      "Status": "Enabled",
      "Filter": {
        "Prefix": "AWSLogs/"
      },
      "Destination": {
        "Bucket": "arn:aws:s3:::aggregation-cloudtrail-logs-${DESTINATION_ACCOUNT_ID}",
        "Account": "${DESTINATION_ACCOUNT_ID}",
        "StorageClass": "STANDARD_IA",
        "AccessControlTranslation": {
          "Owner": "Destination"
        },
        "ReplicationTime": {
          "Status": "Enabled",
          "Time": {
            "Minutes": 15
          }
        },
        "Metrics": {
          "Status": "Enabled",
          "EventThreshold": {
            "Minutes": 15
          }
        }
      },
      "DeleteMarkerReplication": {
        "Status": "Disabled"
      }
    }
  ]
}
JSON

# --- 1. the archive (aggregation) account -------------------------------------------------------
section1() {
  export AWS_PROFILE=archive
  aws s3api create-bucket \
    --bucket "aggregation-cloudtrail-logs-${DESTINATION_ACCOUNT_ID}" \
    --region ap-northeast-1 \
    --create-bucket-configuration LocationConstraint=ap-northeast-1 \
    --object-lock-enabled-for-bucket >/dev/null
  aws s3api put-bucket-versioning \
    --bucket "aggregation-cloudtrail-logs-${DESTINATION_ACCOUNT_ID}" \
    --versioning-configuration Status=Enabled
}

# --- 2. one source account (run in that account's profile) -----------------------------------------
section2() {
  local account="$1" dir="$work/acct-$1"
  mkdir -p "$dir"
  cd "$dir"
  export AWS_PROFILE="acct-$account"
  # existing bucket
  ACCOUNT_ID=$(aws sts get-caller-identity --query Account --output text)
  [ "$ACCOUNT_ID" = "$account" ] || { echo "$account: get-caller-identity says $ACCOUNT_ID" >&2; return 1; }
  BUCKET_NAME="cm-members-cloudtrail-${ACCOUNT_ID}"
  echo "target bucket: ${BUCKET_NAME}"
  if aws s3api head-bucket --bucket "${BUCKET_NAME}" --output text >/dev/null 2>&1; then
    echo "the bucket exists"
  else
    echo "$account: the bucket does not exist" >&2
    return 1
  fi
  # versioning (when not set)
  versioning=$(aws s3api get-bucket-versioning --bucket "${BUCKET_NAME}")
  echo "$versioning"
  if [[ "$versioning" != *'"Enabled"'* ]]; then
    aws s3api put-bucket-versioning \
      --bucket "${BUCKET_NAME}" \
      --versioning-configuration Status=Enabled
  fi
  # the replication role, through CloudFormation
  aws cloudformation create-stack \
    --stack-name cloudtrail-replication-role \
    --template-body "file://$TEMPLATE" \
    --parameters ParameterKey=DestinationAccountId,ParameterValue="${DESTINATION_ACCOUNT_ID}" \
    --capabilities CAPABILITY_NAMED_IAM >/dev/null
  aws cloudformation wait stack-create-complete \
    --stack-name cloudtrail-replication-role
  # the replication configuration
  sed -e "s/\${ACCOUNT_ID}/${ACCOUNT_ID}/g" \
    -e "s/\${DESTINATION_ACCOUNT_ID}/${DESTINATION_ACCOUNT_ID}/g" \
    "$work/replication-config.json" >replication-config-filled.json
  aws s3api put-bucket-replication \
    --bucket "cm-members-cloudtrail-${ACCOUNT_ID}" \
    --replication-configuration file://replication-config-filled.json
  echo "replication configuration:"
  status=$(aws s3api get-bucket-replication --bucket "cm-members-cloudtrail-${ACCOUNT_ID}" \
    --query 'ReplicationConfiguration.Rules[0].Status' --output text)
  echo "$status"
  [ "$status" = Enabled ] || { echo "$account: replication rule status is '$status'" >&2; return 1; }
}

# --- 3. the archive bucket policy, every source role in both statements -------------------------------
section3() {
  export AWS_PROFILE=archive
  local principals="" a
  for a in "$@"; do
    principals+="${principals:+,
          }\"arn:aws:iam::${a}:role/S3ReplicationRole\""
  done
  DESTINATION_ACCOUNT_ID=$(aws sts get-caller-identity --query Account --output text)
  cat >"$work/bucket-policy-filled.json" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "AllowReplicationFromSourceAccounts",
      "Effect": "Allow",
      "Principal": {
        "AWS": [
          ${principals}
        ]
      },
      "Action": [
        "s3:ReplicateObject",
        "s3:ReplicateDelete",
        "s3:ReplicateTags",
        "s3:ObjectOwnerOverrideToBucketOwner"
      ],
      "Resource": "arn:aws:s3:::aggregation-cloudtrail-logs-${DESTINATION_ACCOUNT_ID}/*"
    },
    {
      "Sid": "AllowReplicationPolicyCheck",
      "Effect": "Allow",
      "Principal": {
        "AWS": [
          ${principals}
        ]
      },
      "Action": [
        "s3:GetBucketVersioning",
        "s3:PutBucketVersioning",
        "s3:List*"
      ],
      "Resource": "arn:aws:s3:::aggregation-cloudtrail-logs-${DESTINATION_ACCOUNT_ID}"
    }
  ]
}
JSON
  aws s3api put-bucket-policy \
    --bucket "aggregation-cloudtrail-logs-${DESTINATION_ACCOUNT_ID}" \
    --policy "file://$work/bucket-policy-filled.json"
  echo "bucket policy applied:"
  aws s3api get-bucket-policy \
    --bucket "aggregation-cloudtrail-logs-${DESTINATION_ACCOUNT_ID}" \
    --query Policy --output text >"$work/applied-policy.json"
  grep -c "S3ReplicationRole" "$work/applied-policy.json" >/dev/null
}

section1
failed=()
if [ "$parallel" = 1 ]; then
  pids=()
  for a in "${accounts[@]}"; do
    ( section2 "$a" ) >"$work/$a.log" 2>&1 &
    pids+=("$!")
  done
  for i in "${!accounts[@]}"; do
    if ! wait "${pids[$i]}"; then failed+=("${accounts[$i]}"); fi
  done
else
  for a in "${accounts[@]}"; do
    # a background job + wait, not `if ! ( ... )`: set -e does not apply inside an if condition
    ( section2 "$a" ) >"$work/$a.log" 2>&1 &
    if ! wait "$!"; then failed+=("$a"); fi
  done
fi
for a in "${failed[@]}"; do
  echo "account $a failed:" >&2
  tail -n 5 "$work/$a.log" >&2
done
done_accounts=()
for a in "${accounts[@]}"; do
  [[ " ${failed[*]} " == *" $a "* ]] || done_accounts+=("$a")
done
if [ "${#done_accounts[@]}" -gt 0 ]; then section3 "${done_accounts[@]}"; fi
echo "article procedure: ${#done_accounts[@]} of ${#accounts[@]} accounts onboarded ($([ "$parallel" = 1 ] && echo parallel || echo sequential))"
[ "${#failed[@]}" -eq 0 ]
