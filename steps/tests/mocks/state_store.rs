//! The shared state's bucket checks and conditional requests against S3's answers as AWS
//! gives them, for what the emulator does not: access denied, and a 409 with its body.

use super::support::s3_error;
use aws_sdk_s3::Client;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use trailhub_state::remote::{RemoteError, RemoteStore};
use trailhub_steps::state_store::{S3Store, StateBucketError};

#[tokio::test]
async fn a_state_bucket_these_credentials_may_not_read_is_refused_naming_the_permissions() {
    let denied = mock!(Client::get_bucket_versioning)
        .sequence()
        .http_status(403, Some(s3_error("AccessDenied", "Access Denied")))
        .build();
    let lock = mock!(Client::get_object_lock_configuration)
        .sequence()
        .http_status(403, Some(s3_error("AccessDenied", "Access Denied")))
        .build();
    let public = mock!(Client::get_bucket_policy_status)
        .sequence()
        .http_status(403, Some(s3_error("AccessDenied", "Access Denied")))
        .build();
    let put = mock!(Client::put_object)
        .then_output(|| aws_sdk_s3::operation::put_object::PutObjectOutput::builder().build());
    let client = mock_client!(
        aws_sdk_s3,
        RuleMode::MatchAny,
        &[&denied, &lock, &public, &put]
    );
    let store = S3Store::new(client, "team-state", "prod/");
    let err = store.check(None).await.expect_err("refused");
    assert!(
        matches!(&err, StateBucketError::Denied { code, .. } if code == "AccessDenied"),
        "{err}"
    );
    let text = err.to_string();
    for permission in ["s3:GetBucketVersioning", "s3:PutObject", "s3:DeleteObject"] {
        assert!(text.contains(permission), "{text}");
    }
    assert_eq!(
        denied.num_calls(),
        1,
        "nothing else was asked, nothing written"
    );
}

#[tokio::test]
async fn precondition_and_conflict_answers_are_told_apart_by_their_codes() {
    let conflict = mock!(Client::put_object)
        .match_requests(|r| r.key() == Some("prod/locks/a.json"))
        .sequence()
        .http_status(
            409,
            Some(s3_error(
                "ConditionalRequestConflict",
                "A conflicting operation occurred. If using PutObject you can retry the request.",
            )),
        )
        .http_status(
            412,
            Some(s3_error(
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
            )),
        )
        .build();
    let gone = mock!(Client::delete_object)
        .sequence()
        .http_status(
            404,
            Some(s3_error("NoSuchKey", "The specified key does not exist.")),
        )
        .build();
    let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, &[&conflict, &gone]);
    let store = S3Store::new(client, "team-state", "prod");
    let first = store.put_if_absent("locks/a.json", b"{}".to_vec()).await;
    assert!(
        matches!(first, Err(RemoteError::Conflict { .. })),
        "{first:?}"
    );
    let second = store.put_if_absent("locks/a.json", b"{}".to_vec()).await;
    assert!(
        matches!(second, Err(RemoteError::PreconditionFailed { .. })),
        "{second:?}"
    );
    let deleted = store.delete_if_match("locks/a.json", "\"1\"").await;
    assert!(
        matches!(deleted, Err(RemoteError::PreconditionFailed { .. })),
        "a lock that is gone fails the precondition: {deleted:?}"
    );
}
