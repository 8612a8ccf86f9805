//! `archive/lifecycle` at the level of requests: the read-modify-write puts the other rules and
//! the bucket's default minimum object size for transitions back as read (the emulator answers one
//! fixed size whatever was put, so only a mock shows the carry-over), and rollback takes
//! trailhub's rule out by its ID.

use crate::support::*;
use aws_sdk_s3::Client;
use aws_sdk_s3::operation::get_bucket_lifecycle_configuration::GetBucketLifecycleConfigurationOutput;
use aws_sdk_s3::operation::put_bucket_lifecycle_configuration::{
    PutBucketLifecycleConfigurationInput, PutBucketLifecycleConfigurationOutput,
};
use aws_sdk_s3::types::{
    ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
    TransitionDefaultMinimumObjectSize,
};
use aws_smithy_mocks::mock;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use trailhub_engine::Task;
use trailhub_steps::tasks::{ArchiveLifecycle, StepContext};
use trailhub_steps::{Accounts, Lifecycle, Transition};

const NODE: &str = "archive/lifecycle";

/// Another team's rule on the archive bucket.
fn theirs() -> LifecycleRule {
    LifecycleRule::builder()
        .id("tmp-cleanup")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("tmp/").build())
        .expiration(LifecycleExpiration::builder().days(7).build())
        .build()
        .expect("a rule")
}

/// The lifecycle step over mocked archive clients, the inventory asking for a transition after
/// 90 days and an expiry after 400.
fn lifecycle(rules: &[&aws_smithy_mocks::Rule]) -> (ArchiveLifecycle, Calls) {
    let calls = Calls::default();
    let mut setting = setting();
    setting.archive.lifecycle = Some(Lifecycle {
        transition: Some(Transition {
            days: 90,
            storage_class: "GLACIER_IR".into(),
        }),
        expire_days: Some(400),
        noncurrent_expire_days: None,
    });
    let accounts = vec![account(
        ARCHIVE,
        Mocked {
            s3: rules,
            ..Default::default()
        },
        &calls,
    )];
    let mut ctx = StepContext::new(setting, Accounts::with_clients(accounts));
    ctx.consistency = Duration::from_millis(1);
    ctx.pin_region(ARCHIVE_BUCKET, REGION);
    (ArchiveLifecycle::new(ctx), calls)
}

#[tokio::test]
async fn the_rule_goes_beside_the_others_with_the_minimum_size_kept_and_rollback_takes_it_out() {
    let sent = Arc::new(Mutex::new(
        Vec::<PutBucketLifecycleConfigurationInput>::new(),
    ));
    let seen = sent.clone();
    let put = mock!(Client::put_bucket_lifecycle_configuration)
        .match_requests(move |req| {
            seen.lock().expect("sent").push(req.clone());
            req.bucket() == Some(ARCHIVE_BUCKET) && req.expected_bucket_owner() == Some(ARCHIVE)
        })
        .then_output(|| PutBucketLifecycleConfigurationOutput::builder().build());
    // What apply finds: the other team's rule, and a minimum size that is not S3's default.
    let found = || {
        GetBucketLifecycleConfigurationOutput::builder()
            .rules(theirs())
            .transition_default_minimum_object_size(
                TransitionDefaultMinimumObjectSize::AllStorageClasses128K,
            )
            .build()
    };
    // What rollback finds: what apply put.
    let wrote = sent.clone();
    let after = move || {
        let put = wrote.lock().expect("sent")[0].clone();
        GetBucketLifecycleConfigurationOutput::builder()
            .set_rules(put.lifecycle_configuration().map(|c| c.rules().to_vec()))
            .set_transition_default_minimum_object_size(
                put.transition_default_minimum_object_size().cloned(),
            )
            .build()
    };
    let get = mock!(Client::get_bucket_lifecycle_configuration)
        .match_requests(|req| {
            req.bucket() == Some(ARCHIVE_BUCKET) && req.expected_bucket_owner() == Some(ARCHIVE)
        })
        .sequence()
        .output(found)
        .output(after)
        .build();
    let (task, calls) = lifecycle(&[&get, &put]);
    let (ctx, history) = detached(NODE, "archive");

    let applied = task.apply(&ctx).await.expect("apply");

    assert!(applied.changed);
    assert_eq!(
        history.steps(),
        ["undo", "s3:PutBucketLifecycleConfiguration"],
        "journaled before the write"
    );
    let undo = history.undo().remove(0);
    assert_eq!(
        undo,
        json!({
            "previous": null,
            "wrote": {
                "ID": "trailhub-archive",
                "Status": "Enabled",
                "Filter": { "Prefix": "" },
                "Expiration": { "Days": 400 },
                "Transitions": [{ "Days": 90, "StorageClass": "GLACIER_IR" }],
            },
        })
    );
    {
        let sent = sent.lock().expect("sent");
        let rules = sent[0]
            .lifecycle_configuration()
            .expect("a configuration")
            .rules();
        let ids: Vec<_> = rules.iter().map(|r| r.id().unwrap_or("")).collect();
        assert_eq!(ids, ["tmp-cleanup", "trailhub-archive"]);
        assert_eq!(rules[0], theirs(), "the other rule put back as read");
        assert_eq!(
            sent[0].transition_default_minimum_object_size(),
            Some(&TransitionDefaultMinimumObjectSize::AllStorageClasses128K),
            "the bucket's minimum object size for transitions is kept"
        );
    }

    let (rollback_ctx, rollback_history) = detached_with(NODE, "archive", Some(undo.clone()));
    let rolled = task
        .rollback(
            Some(serde_json::from_value(undo).expect("the journaled shape")),
            &rollback_ctx,
        )
        .await
        .expect("rollback");

    assert!(rolled.changed, "{rolled:?}");
    assert_eq!(
        rollback_history.steps(),
        ["s3:PutBucketLifecycleConfiguration"],
        "the other rule stays, so the configuration is put, not deleted"
    );
    let sent = sent.lock().expect("sent");
    assert_eq!(
        sent[1]
            .lifecycle_configuration()
            .expect("a configuration")
            .rules(),
        [theirs()]
    );
    assert_eq!(
        sent[1].transition_default_minimum_object_size(),
        Some(&TransitionDefaultMinimumObjectSize::AllStorageClasses128K)
    );
    assert_eq!(
        calls.list(),
        [
            "s3:GetBucketLifecycleConfiguration",
            "s3:PutBucketLifecycleConfiguration",
            "s3:GetBucketLifecycleConfiguration",
            "s3:PutBucketLifecycleConfiguration",
        ]
    );
}

#[tokio::test]
async fn a_configuration_trailhub_creates_lets_small_log_files_transition_and_plan_says_so() {
    let sent = Arc::new(Mutex::new(
        Vec::<PutBucketLifecycleConfigurationInput>::new(),
    ));
    let seen = sent.clone();
    let put = mock!(Client::put_bucket_lifecycle_configuration)
        .match_requests(move |req| {
            seen.lock().expect("sent").push(req.clone());
            true
        })
        .then_output(|| PutBucketLifecycleConfigurationOutput::builder().build());
    let none = mock!(Client::get_bucket_lifecycle_configuration).then_http_response(|| {
        aws_smithy_runtime_api::http::Response::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(404).expect("status"),
            aws_smithy_types::body::SdkBody::from(s3_error(
                "NoSuchLifecycleConfiguration",
                "The lifecycle configuration does not exist",
            )),
        )
    });
    let (task, _) = lifecycle(&[&none, &put]);

    let plan = task
        .plan(&trailhub_engine::PlanCtx {
            node: node_id(NODE),
        })
        .await
        .expect("plan");
    let min = plan
        .changes
        .iter()
        .find(|c| c.field == "TransitionDefaultMinimumObjectSize")
        .unwrap_or_else(|| panic!("{plan:?}"));
    assert_eq!(min.to, "varies_by_storage_class");
    let note = plan.note.clone().unwrap_or_default();
    assert!(
        note.contains("S3 never transitions objects under 128 KB to GLACIER_IR"),
        "{note}"
    );
    assert!(
        note.contains(
            "logs older than 400 days that `trailhub backfill` copies expire as soon as they land"
        ),
        "{note}"
    );

    let (ctx, _) = detached(NODE, "archive");
    task.apply(&ctx).await.expect("apply");
    assert_eq!(
        sent.lock().expect("sent")[0].transition_default_minimum_object_size(),
        Some(&TransitionDefaultMinimumObjectSize::VariesByStorageClass),
        "chosen, not left to S3's default that moves no file under 128 KB"
    );
}
