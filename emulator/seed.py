"""Create member accounts on the local emulator as the article presupposes them.

For each account: the CloudTrail bucket ``cm-members-cloudtrail-<id>`` (SSE-S3, the default)
and a trail ``Members`` logging to it. Used by the demo and the benchmark harness; the Rust
end-to-end tests seed with the SDK instead.

Usage:
    .venv/bin/python emulator/seed.py --endpoint URL --region R ACCOUNT [ACCOUNT ...]
        [--kms ACCOUNT ...]      default encryption SSE-KMS instead (a precondition failure)
        [--no-bucket ACCOUNT ...] no CloudTrail bucket at all (a precondition failure)

Accounts are reached by assuming arn:aws:iam::<id>:role/OrganizationAccountAccessRole from
the environment's credentials, as trailhub's example inventories do.
"""

import argparse
from concurrent.futures import ThreadPoolExecutor

import boto3


def session_for(account: str, endpoint: str, region: str) -> boto3.Session:
    sts = boto3.client("sts", endpoint_url=endpoint, region_name=region)
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole",
        RoleSessionName="seed",
    )["Credentials"]
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=region,
    )


def seed(account: str, args: argparse.Namespace) -> None:
    session = session_for(account, args.endpoint, args.region)
    s3 = session.client("s3", endpoint_url=args.endpoint)
    bucket = f"cm-members-cloudtrail-{account}"
    if account in args.no_bucket:
        return
    config = {} if args.region == "us-east-1" else {
        "CreateBucketConfiguration": {"LocationConstraint": args.region}
    }
    s3.create_bucket(Bucket=bucket, **config)
    if account in args.kms:
        s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]
            },
        )
    trail = session.client("cloudtrail", endpoint_url=args.endpoint)
    trail.create_trail(Name="Members", S3BucketName=bucket)
    trail.start_logging(Name="Members")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--region", default="ap-northeast-1")
    parser.add_argument("--kms", nargs="*", default=[])
    parser.add_argument("--no-bucket", nargs="*", default=[])
    parser.add_argument("accounts", nargs="+")
    args = parser.parse_args()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda a: seed(a, args), args.accounts))


if __name__ == "__main__":
    main()
