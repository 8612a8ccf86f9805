//! `verify --canary` against S3's replication statuses, which the emulator never reports: a
//! canary that becomes COMPLETED at the source and REPLICA in the archive is a success; a
//! FAILED one is reported with the checks that explain it.
//!
//! S3's answers are raw HTTP responses as the S3 API Reference documents them (HeadObject's
//! `x-amz-replication-status` header, PutObject's `ETag` and `x-amz-version-id`, REST-XML
//! bodies), so the SDK's parser reads them as it reads AWS's.

use crate::replication::article_xml;
use crate::support::*;
use aws_smithy_mocks::{Rule, mock};
use std::time::Duration;
use trailhub_steps::canary::{CanaryOutcome, CanaryTiming, canary};

fn timing() -> CanaryTiming {
    CanaryTiming {
        timeout: Duration::from_secs(5),
        first_poll: Duration::from_millis(1),
        max_poll: Duration::from_millis(5),
    }
}

/// HeadObject's answer for a canary object whose replication status is `status` (`PENDING`,
/// `COMPLETED`, `FAILED` on the source, `REPLICA` on the copy).
fn head(status: &str) -> aws_smithy_runtime_api::http::Response {
    raw_response(
        200,
        &[
            ("Last-Modified", "Mon, 05 Jan 2026 10:00:00 GMT"),
            ("ETag", "\"5d41402abc4b2a76b9719d911017c592\""),
            ("Content-Length", "0"),
            ("Content-Type", "application/json"),
            ("x-amz-version-id", "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"),
            ("x-amz-replication-status", status),
        ],
        "",
    )
}

/// HeadObject's answer for the archive copy: a replica in STANDARD_IA (S3 names the storage
/// class of every object but a STANDARD one).
fn replica_head() -> aws_smithy_runtime_api::http::Response {
    raw_response(
        200,
        &[
            ("Last-Modified", "Mon, 05 Jan 2026 10:00:01 GMT"),
            ("ETag", "\"5d41402abc4b2a76b9719d911017c592\""),
            ("Content-Length", "0"),
            ("x-amz-version-id", "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"),
            ("x-amz-replication-status", "REPLICA"),
            ("x-amz-storage-class", "STANDARD_IA"),
        ],
        "",
    )
}

/// PutObject's answer in a versioned bucket.
fn put_answer() -> aws_smithy_runtime_api::http::Response {
    raw_response(
        200,
        &[
            ("ETag", "\"5d41402abc4b2a76b9719d911017c592\""),
            ("x-amz-version-id", "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"),
            ("x-amz-server-side-encryption", "AES256"),
        ],
        "",
    )
}

#[tokio::test]
async fn a_canary_completed_at_the_source_and_replicated_to_the_archive_succeeds() {
    let put = mock!(aws_sdk_s3::Client::put_object)
        .match_requests(|r| {
            r.bucket() == Some(SOURCE_BUCKET)
                && r.key()
                    .is_some_and(|k| k.starts_with("AWSLogs/222222222222/trailhub-canary/"))
        })
        .then_http_response(put_answer);
    let source_head = mock!(aws_sdk_s3::Client::head_object)
        .match_requests(|r| r.bucket() == Some(SOURCE_BUCKET))
        .sequence()
        .http_response(|| head("PENDING"))
        .times(2)
        .http_response(|| head("COMPLETED"))
        .build();
    let archive_head = mock!(aws_sdk_s3::Client::head_object)
        .match_requests(|r| r.bucket() == Some(ARCHIVE_BUCKET))
        .then_http_response(replica_head);
    let calls = Calls::default();
    let ctx = context(vec![
        account(
            SOURCE,
            Mocked {
                s3: &[&put, &source_head],
                ..Default::default()
            },
            &calls,
        ),
        account(
            ARCHIVE,
            Mocked {
                s3: &[&archive_head],
                ..Default::default()
            },
            &calls,
        ),
    ]);

    let report = canary(&ctx, &source(), &timing()).await.expect("canary");

    assert_eq!(report.outcome, CanaryOutcome::Replicated);
    assert_eq!(report.source_status.as_deref(), Some("COMPLETED"));
    assert_eq!(report.replica_status.as_deref(), Some("REPLICA"));
    assert!(report.causes.is_empty());
    assert_eq!(
        calls.count("s3:PutObject"),
        1,
        "one canary: {:?}",
        calls.list()
    );
    assert_eq!(
        calls.count("s3:HeadObject"),
        4,
        "three polls of the source, one of the archive"
    );
}

#[tokio::test]
async fn a_failed_canary_names_the_setting_that_explains_it() {
    let put = mock!(aws_sdk_s3::Client::put_object).then_http_response(put_answer);
    let source_head = mock!(aws_sdk_s3::Client::head_object)
        .match_requests(|r| r.bucket() == Some(SOURCE_BUCKET))
        .then_http_response(|| head("FAILED"));
    // The archive bucket is gone: the destination no longer exists.
    let archive_gone = mock!(aws_sdk_s3::Client::head_bucket)
        .match_requests(|r| r.bucket() == Some(ARCHIVE_BUCKET))
        .then_http_response(|| {
            aws_smithy_runtime_api::http::Response::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(404).expect("status"),
                aws_smithy_types::body::SdkBody::empty(),
            )
        });
    let policy_gone = mock!(aws_sdk_s3::Client::get_bucket_policy).then_http_response(|| {
        aws_smithy_runtime_api::http::Response::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(404).expect("status"),
            aws_smithy_types::body::SdkBody::from(s3_error(
                "NoSuchBucket",
                "The specified bucket does not exist",
            )),
        )
    });
    let source_bucket_here = mock!(aws_sdk_s3::Client::head_bucket)
        .match_requests(|r| r.bucket() == Some(SOURCE_BUCKET))
        .then_output(|| aws_sdk_s3::operation::head_bucket::HeadBucketOutput::builder().build());
    let source_rules = source_as_the_article_leaves_it();
    let calls = Calls::default();
    let [get_role, get_policy] = template_role_rules();
    let mut s3: Vec<&Rule> = vec![&put, &source_head, &source_bucket_here];
    s3.extend(source_rules.iter().take(2));
    let ctx = context(vec![
        account(
            SOURCE,
            Mocked {
                s3: &s3,
                cfn: &[&source_rules[2]],
                iam: &[&get_role, &get_policy],
                s3control: &[],
            },
            &calls,
        ),
        account(
            ARCHIVE,
            Mocked {
                s3: &[&archive_gone, &policy_gone],
                ..Default::default()
            },
            &calls,
        ),
    ]);

    let report = canary(&ctx, &source(), &timing()).await.expect("canary");

    assert_eq!(report.outcome, CanaryOutcome::Failed);
    assert_eq!(report.source_status.as_deref(), Some("FAILED"));
    let causes = report.causes.join("\n");
    assert!(
        causes.contains(&format!(
            "archive bucket {ARCHIVE_BUCKET} exists: expected true, found false"
        )),
        "{causes}"
    );
    assert!(
        causes.contains("policy Statement[AllowReplicationFromSourceAccount]: expected present"),
        "the grant is missing too: {causes}"
    );
    assert_eq!(calls.count("s3:PutObject"), 1);
}

/// GetBucketVersioning (Enabled), GetBucketReplication (the article's rule) and DescribeStacks
/// (complete) of a source account that trailhub onboarded.
fn source_as_the_article_leaves_it() -> [Rule; 3] {
    use aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksOutput;
    use aws_sdk_cloudformation::types::{Stack, StackStatus};
    let versioning = mock!(aws_sdk_s3::Client::get_bucket_versioning).then_http_response(|| {
        raw_response(
            200,
            &[],
            r#"<?xml version="1.0" encoding="UTF-8"?>
<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>"#,
        )
    });
    let replication = mock!(aws_sdk_s3::Client::get_bucket_replication)
        .then_http_response(|| raw_response(200, &[], &article_xml("Enabled")));
    let stacks = mock!(aws_sdk_cloudformation::Client::describe_stacks).then_output(|| {
        DescribeStacksOutput::builder()
            .stacks(
                Stack::builder()
                    .stack_name(STACK)
                    .stack_status(StackStatus::CreateComplete)
                    .creation_time(aws_smithy_types::DateTime::from_secs(0))
                    .build(),
            )
            .build()
    });
    [versioning, replication, stacks]
}
