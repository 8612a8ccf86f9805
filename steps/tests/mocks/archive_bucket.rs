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

/// The archive bucket's rollback over `tags` (GetBucketTagging's answer: `None` for
/// `NoSuchTagSet`), given the undo record `undo`: what it says, and the calls it made.
async fn rollback_with_tags(
    undo: serde_json::Value,
    tags: Option<&[(&str, &str)]>,
) -> (String, bool, Calls) {
    use aws_sdk_s3::operation::get_bucket_tagging::GetBucketTaggingOutput;
    use aws_sdk_s3::operation::list_object_versions::ListObjectVersionsOutput;
    use aws_sdk_s3::types::Tag;
    let tagging = match tags {
        Some(tags) => {
            let tags: Vec<Tag> = tags
                .iter()
                .map(|(k, v)| Tag::builder().key(*k).value(*v).build().expect("tag"))
                .collect();
            mock!(Client::get_bucket_tagging).then_output(move || {
                GetBucketTaggingOutput::builder()
                    .set_tag_set(Some(tags.clone()))
                    .build()
                    .expect("tagging")
            })
        }
        None => mock!(Client::get_bucket_tagging)
            .sequence()
            .http_status(
                404,
                Some(s3_error("NoSuchTagSet", "The TagSet does not exist")),
            )
            .build(),
    };
    let list = mock!(Client::list_object_versions)
        .then_output(|| ListObjectVersionsOutput::builder().build());
    let delete = mock!(Client::delete_bucket).then_output(|| {
        aws_sdk_s3::operation::delete_bucket::DeleteBucketOutput::builder().build()
    });
    let calls = Calls::default();
    let ctx = context(vec![account(
        ARCHIVE,
        Mocked {
            s3: &[&tagging, &list, &delete],
            ..Default::default()
        },
        &calls,
    )]);
    let task = ArchiveBucket::new(ctx);
    let (rollback_ctx, _history) = detached_with(NODE, "archive", Some(undo.clone()));
    let undo = serde_json::from_value(undo).expect("an undo record of the archive bucket");
    let rolled = task
        .rollback(Some(undo), &rollback_ctx)
        .await
        .expect("rollback answers");
    (rolled.note.unwrap_or_default(), rolled.changed, calls)
}

#[tokio::test]
async fn rollback_keeps_an_untagged_bucket_whatever_the_undo_record_says() {
    // A format-1 record (no `tagged`), and a record of a run stopped between CreateBucket and
    // PutBucketTagging: the bucket carries no tag of the run, so nothing proves it is the run's.
    for undo in [
        json!({ "existed": false }),
        json!({ "existed": false, "tagged": false }),
    ] {
        let (note, changed, calls) = rollback_with_tags(undo.clone(), None).await;
        assert!(!changed, "{undo}: nothing deleted");
        assert_eq!(
            calls.count("s3:DeleteBucket"),
            0,
            "{undo}: {:?}",
            calls.list()
        );
        assert!(
            note.contains("kept") && note.contains("trailhub:run=detached"),
            "{undo}: {note}"
        );
    }
}

#[tokio::test]
async fn rollback_keeps_a_bucket_another_run_tagged_and_deletes_its_own() {
    let other = [
        ("trailhub:managed", "true"),
        ("trailhub:run", "20260101T000000Z-0007"),
    ];
    let (note, changed, calls) =
        rollback_with_tags(json!({ "existed": false }), Some(&other)).await;
    assert!(!changed);
    assert_eq!(calls.count("s3:DeleteBucket"), 0, "{:?}", calls.list());
    assert!(note.contains("20260101T000000Z-0007"), "{note}");

    // The run's own tags (the detached context's run is `detached`): deleted, once empty.
    let own = [("trailhub:managed", "true"), ("trailhub:run", "detached")];
    let (note, changed, calls) =
        rollback_with_tags(json!({ "existed": false, "tagged": true }), Some(&own)).await;
    assert!(changed, "{note}");
    assert_eq!(
        calls.list(),
        [
            "s3:GetBucketTagging",
            "s3:ListObjectVersions",
            "s3:DeleteBucket"
        ]
    );
}
