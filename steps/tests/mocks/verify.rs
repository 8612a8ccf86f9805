//! `S/verify` right after the run's writes: S3's configuration reads are eventually consistent,
//! so a read may still answer the state before a write. A difference counts as drift only once
//! it persists.

use crate::support::*;
use aws_sdk_cloudformation::types::StackStatus;
use aws_sdk_s3::Client;
use aws_sdk_s3::operation::get_bucket_policy::GetBucketPolicyOutput;
use aws_sdk_s3::operation::get_bucket_versioning::GetBucketVersioningOutput;
use aws_sdk_s3::types::BucketVersioningStatus;
use aws_smithy_mocks::mock;
use serde_json::json;
use trailhub_engine::Task;
use trailhub_steps::tasks::Verify;

const NODE: &str = "222222222222/verify";

/// The archive policy, admitting the source's role as the article does.
fn granted_policy() -> String {
    json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "AllowReplicationFromSourceAccount", "Effect": "Allow",
         "Principal": {"AWS": [role_arn()]},
         "Action": ["s3:ReplicateObject", "s3:ReplicateTags", "s3:ObjectOwnerOverrideToBucketOwner"],
         "Resource": format!("arn:aws:s3:::{ARCHIVE_BUCKET}/AWSLogs/${{aws:PrincipalAccount}}/*")},
        {"Sid": "AllowReplicationPolicyCheck", "Effect": "Allow",
         "Principal": {"AWS": [role_arn()]},
         "Action": ["s3:GetBucketVersioning"],
         "Resource": format!("arn:aws:s3:::{ARCHIVE_BUCKET}")}
    ]})
    .to_string()
}

#[tokio::test]
async fn a_read_that_still_shows_the_state_before_the_write_is_read_again_not_reported() {
    let versioning = mock!(Client::get_bucket_versioning).then_output(|| {
        GetBucketVersioningOutput::builder()
            .status(BucketVersioningStatus::Enabled)
            .build()
    });
    // The rule was just enabled: the first read still answers it Disabled.
    let replication = mock!(Client::get_bucket_replication)
        .sequence()
        .http_status(200, Some(crate::replication::article_xml("Disabled")))
        .http_status(200, Some(crate::replication::article_xml("Enabled")))
        .repeatedly()
        .build();
    let policy = mock!(Client::get_bucket_policy).then_output(|| {
        GetBucketPolicyOutput::builder()
            .policy(granted_policy())
            .build()
    });
    let stacks = mock!(aws_sdk_cloudformation::Client::describe_stacks)
        .then_output(|| crate::role_stack::stack(StackStatus::CreateComplete));
    let [get_role, get_policy] = template_role_rules();
    let calls = Calls::default();
    let member = account(
        SOURCE,
        Mocked {
            s3: &[&versioning, &replication],
            cfn: &[&stacks],
            iam: &[&get_role, &get_policy],
            s3control: &[],
        },
        &calls,
    );
    let archive = account(
        ARCHIVE,
        Mocked {
            s3: &[&policy],
            ..Default::default()
        },
        &calls,
    );
    let ctx = context(vec![member, archive]);
    let task = Verify::new(ctx, source(), nodes());
    let (apply, _) = detached(NODE, SOURCE);

    let verified = task
        .apply(&apply)
        .await
        .expect("no drift once the write shows");

    assert!(verified.outputs.checked);
    assert_eq!(
        calls.count("s3:GetBucketReplication"),
        2,
        "read again after the stale answer: {:?}",
        calls.list()
    );
}

#[tokio::test]
async fn a_difference_that_persists_is_drift() {
    let versioning = mock!(Client::get_bucket_versioning).then_output(|| {
        GetBucketVersioningOutput::builder()
            .status(BucketVersioningStatus::Suspended)
            .build()
    });
    let replication = mock!(Client::get_bucket_replication)
        .sequence()
        .http_status(200, Some(crate::replication::article_xml("Enabled")))
        .repeatedly()
        .build();
    let policy = mock!(Client::get_bucket_policy).then_output(|| {
        GetBucketPolicyOutput::builder()
            .policy(granted_policy())
            .build()
    });
    let stacks = mock!(aws_sdk_cloudformation::Client::describe_stacks)
        .then_output(|| crate::role_stack::stack(StackStatus::CreateComplete));
    let [get_role, get_policy] = template_role_rules();
    let calls = Calls::default();
    let ctx = context(vec![
        account(
            SOURCE,
            Mocked {
                s3: &[&versioning, &replication],
                cfn: &[&stacks],
                iam: &[&get_role, &get_policy],
                s3control: &[],
            },
            &calls,
        ),
        account(
            ARCHIVE,
            Mocked {
                s3: &[&policy],
                ..Default::default()
            },
            &calls,
        ),
    ]);
    let (apply, _) = detached(NODE, SOURCE);

    let err = Verify::new(ctx, source(), nodes())
        .apply(&apply)
        .await
        .expect_err("versioning stays suspended");

    assert_eq!(err.code.as_deref(), Some("Drift"));
    assert!(err.message.contains("Versioning.Status"), "{}", err.message);
    assert_eq!(
        calls.count("s3:GetBucketVersioning"),
        5,
        "read five times, then reported: {:?}",
        calls.list()
    );
}
