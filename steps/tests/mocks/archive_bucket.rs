//! `archive/bucket` when the name is not the archive account's to take: S3 bucket names are
//! global, and another AWS account may own it.

use crate::support::*;
use aws_sdk_s3::Client;
use aws_sdk_s3::operation::create_bucket::CreateBucketInput;
use aws_sdk_s3::types::BucketLocationConstraint;
use aws_smithy_mocks::mock;
use serde_json::json;
use std::sync::{Arc, Mutex};
use trailhub_engine::{ErrorKind, Task};
use trailhub_steps::tasks::ArchiveBucket;

const NODE: &str = "archive/bucket";

#[tokio::test]
async fn a_name_owned_by_another_account_fails_with_bucket_already_exists_and_a_hint() {
    // HeadBucket with the archive as expected owner: 404 for a name nobody we know of owns…
    let head = mock!(Client::head_bucket)
        .match_requests(|req| {
            req.bucket() == Some(ARCHIVE_BUCKET) && req.expected_bucket_owner() == Some(ARCHIVE)
        })
        .sequence()
        .http_status(404, None)
        .build();
    // …and CreateBucket finds it taken (created elsewhere in between, or not visible).
    let requests = Arc::new(Mutex::new(Vec::<CreateBucketInput>::new()));
    let seen = requests.clone();
    let create = mock!(Client::create_bucket)
        .match_requests(move |req| {
            seen.lock().expect("requests").push(req.clone());
            true
        })
        .sequence()
        .http_status(
            409,
            Some(s3_error(
                "BucketAlreadyExists",
                "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.",
            )),
        )
        .build();
    let calls = Calls::default();
    let ctx = context(vec![account(
        ARCHIVE,
        Mocked {
            s3: &[&head, &create],
            ..Default::default()
        },
        &calls,
    )]);
    let task = ArchiveBucket::new(ctx);
    let (apply, history) = detached(NODE, "archive");

    let err = task.apply(&apply).await.expect_err("the name is taken");

    assert_eq!(err.kind, ErrorKind::Fatal);
    assert_eq!(err.code.as_deref(), Some("BucketAlreadyExists"));
    assert!(
        err.message.contains(ARCHIVE_BUCKET) && err.message.contains("another AWS account"),
        "{}",
        err.message
    );
    assert!(
        err.hint
            .as_deref()
            .is_some_and(|h| h.contains("[archive] bucket")),
        "{err:?}"
    );
    assert_eq!(calls.list(), ["s3:HeadBucket", "s3:CreateBucket"]);
    assert_eq!(history.steps(), ["undo", "s3:CreateBucket"]);
    assert_eq!(
        history.undo(),
        [json!({ "existed": false, "tagged": false })],
        "nothing created, so nothing tagged"
    );
    let requests = requests.lock().expect("requests");
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].bucket(), Some(ARCHIVE_BUCKET));
    assert_eq!(requests[0].object_lock_enabled_for_bucket(), Some(true));
    assert_eq!(
        requests[0]
            .create_bucket_configuration()
            .and_then(|c| c.location_constraint()),
        Some(&BucketLocationConstraint::ApNortheast1)
    );
}

#[tokio::test]
async fn a_name_another_account_holds_is_refused_before_any_creation() {
    // With ExpectedBucketOwner, HeadBucket answers 403 for a bucket another account owns.
    let head = mock!(Client::head_bucket)
        .sequence()
        .http_status(403, None)
        .build();
    let calls = Calls::default();
    let ctx = context(vec![account(
        ARCHIVE,
        Mocked {
            s3: &[&head],
            ..Default::default()
        },
        &calls,
    )]);
    let task = ArchiveBucket::new(ctx);
    let (apply, history) = detached(NODE, "archive");

    let err = task.apply(&apply).await.expect_err("not ours");

    assert_eq!(err.kind, ErrorKind::Fatal);
    assert_eq!(err.code.as_deref(), Some("Forbidden"));
    assert!(err.hint.is_some());
    assert_eq!(calls.list(), ["s3:HeadBucket"], "no CreateBucket");
    assert!(history.entries().is_empty(), "no undo record, nothing made");
}
