//! Throttling and access denied through the engine: a throttled call costs one more attempt and
//! the run succeeds; a denied one fails the node at once, with its code and a hint.

use crate::support::*;
use aws_sdk_s3::Client;
use aws_sdk_s3::operation::get_bucket_versioning::GetBucketVersioningOutput;
use aws_sdk_s3::operation::put_bucket_versioning::PutBucketVersioningOutput;
use aws_sdk_s3::types::BucketVersioningStatus;
use aws_smithy_mocks::mock;
use serde_json::json;
use std::sync::{Arc, Mutex};
use trailhub_engine::{NodeState, RunStatus};
use trailhub_state::{ErrorRecord, Event, EventKind};
use trailhub_steps::tasks::Versioning;

const NODE: &str = "222222222222/versioning";

fn attempt_failures(events: &[Event]) -> Vec<(u32, ErrorRecord)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AttemptFailed { attempt, error, .. } => Some((*attempt, error.clone())),
            _ => None,
        })
        .collect()
}

/// Versioning of the source bucket, whose first GetBucketVersioning answers `status` with an S3
/// error `code`, then "never enabled".
async fn versioning_throttled_once(status: u16, code: &str, message: &str) {
    let get = mock!(Client::get_bucket_versioning)
        .match_requests(|req| {
            req.bucket() == Some(SOURCE_BUCKET) && req.expected_bucket_owner() == Some(SOURCE)
        })
        .sequence()
        .http_status(status, Some(s3_error(code, message)))
        .output(|| GetBucketVersioningOutput::builder().build())
        .build();
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let seen = statuses.clone();
    let put = mock!(Client::put_bucket_versioning)
        .match_requests(move |req| {
            seen.lock().expect("statuses").push(
                req.versioning_configuration()
                    .and_then(|c| c.status())
                    .cloned(),
            );
            true
        })
        .then_output(|| PutBucketVersioningOutput::builder().build());
    let calls = Calls::default();
    let ctx = context(vec![account(
        SOURCE,
        Mocked {
            s3: &[&get, &put],
            ..Default::default()
        },
        &calls,
    )]);
    let task = Versioning::new(ctx, SOURCE, SOURCE_BUCKET);

    let run = run_one(NODE, SOURCE, task, 5).await;

    assert_eq!(
        run.summary.status,
        RunStatus::Succeeded,
        "{:?}",
        run.summary
    );
    assert_eq!(run.node.state, NodeState::Done);
    assert_eq!(run.node.attempts, 2);
    let failures = attempt_failures(&run.events);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, 1);
    assert_eq!(failures[0].1.code.as_deref(), Some(code));
    assert!(
        failures[0].1.retryable,
        "{code} (HTTP {status}) is retryable"
    );
    assert_eq!(run.node.undo, Some(json!({ "status": null })));
    assert_eq!(
        run.node.outputs,
        Some(json!({ "bucket": SOURCE_BUCKET, "status": "Enabled" }))
    );
    assert_eq!(
        calls.list(),
        [
            "s3:GetBucketVersioning",
            "s3:GetBucketVersioning",
            "s3:PutBucketVersioning"
        ]
    );
    assert_eq!(
        *statuses.lock().expect("statuses"),
        [Some(BucketVersioningStatus::Enabled)]
    );
}

#[tokio::test]
async fn throttling_400_costs_one_more_attempt() {
    versioning_throttled_once(400, "Throttling", "Rate exceeded").await;
}

#[tokio::test]
async fn s3_slow_down_503_costs_one_more_attempt() {
    versioning_throttled_once(503, "SlowDown", "Please reduce your request rate.").await;
}

#[tokio::test]
async fn access_denied_fails_the_node_at_once_with_its_code_and_a_hint() {
    let get = mock!(Client::get_bucket_versioning)
        .sequence()
        .http_status(403, Some(s3_error("AccessDenied", "Access Denied")))
        .build();
    let calls = Calls::default();
    let ctx = context(vec![account(
        SOURCE,
        Mocked {
            s3: &[&get],
            ..Default::default()
        },
        &calls,
    )]);
    let task = Versioning::new(ctx, SOURCE, SOURCE_BUCKET);

    let run = run_one(NODE, SOURCE, task, 5).await;

    // The role stack before it is done: the run is partially failed, this node failed.
    assert_eq!(run.summary.status, RunStatus::PartiallyFailed);
    assert_eq!(run.node.state, NodeState::Failed);
    assert_eq!(run.node.attempts, 1, "a fatal error is not retried");
    assert!(attempt_failures(&run.events).is_empty());
    let error = run.node.last_error.expect("the error is journaled");
    assert_eq!(error.code.as_deref(), Some("AccessDenied"));
    assert!(!error.retryable);
    assert!(
        error.message.contains(
            "GetBucketVersioning on cm-members-cloudtrail-222222222222 failed: AccessDenied"
        ),
        "{}",
        error.message
    );
    let hint = error.hint.expect("a hint");
    assert!(
        hint.contains("lack s3:GetBucketVersioning") && hint.contains("resume"),
        "{hint}"
    );
    assert_eq!(
        run.summary.failed[&node_id(NODE)].code.as_deref(),
        Some("AccessDenied")
    );
    assert_eq!(calls.list(), ["s3:GetBucketVersioning"]);
    assert_eq!(run.node.undo, None, "nothing was about to change");
}

#[tokio::test]
async fn a_throttled_stack_poll_after_create_stack_does_not_create_the_stack_twice() {
    use aws_sdk_cloudformation::Client as Cfn;
    use aws_sdk_cloudformation::operation::create_stack::CreateStackOutput;
    use aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksOutput;
    use aws_sdk_cloudformation::operation::get_template::GetTemplateOutput;
    use aws_sdk_cloudformation::types::{Parameter, Stack, StackStatus};
    use trailhub_steps::tasks::RoleStack;

    let stack = |status: StackStatus| {
        DescribeStacksOutput::builder()
            .stacks(
                Stack::builder()
                    .stack_name(STACK)
                    .stack_id("stack-id")
                    .stack_status(status)
                    .parameters(
                        Parameter::builder()
                            .parameter_key("DestinationAccountId")
                            .parameter_value(ARCHIVE)
                            .build(),
                    )
                    .build(),
            )
            .build()
    };
    let describe = mock!(Cfn::describe_stacks)
        .sequence()
        .http_status(
            400,
            Some(query_error(
                "ValidationError",
                &format!("Stack with id {STACK} does not exist"),
            )),
        )
        // Attempt 1 polls after CreateStack and is throttled…
        .http_status(400, Some(query_error("Throttling", "Rate exceeded")))
        // …attempt 2 finds the stack it created, waits for it, and adopts it.
        .output(move || stack(StackStatus::CreateInProgress))
        .output(move || stack(StackStatus::CreateComplete))
        .build();
    let create = mock!(Cfn::create_stack)
        .then_output(|| CreateStackOutput::builder().stack_id("stack-id").build());
    let template = mock!(Cfn::get_template).then_output(|| {
        GetTemplateOutput::builder()
            .template_body(recorded_template())
            .build()
    });
    let calls = Calls::default();
    let [get_role, get_policy] = template_role_rules();
    let ctx = context(vec![account(
        SOURCE,
        Mocked {
            cfn: &[&describe, &create, &template],
            iam: &[&get_role, &get_policy],
            ..Default::default()
        },
        &calls,
    )]);
    let task = RoleStack::new(ctx, source(), nodes());

    let run = run_one("222222222222/role-stack", SOURCE, task, 5).await;

    assert_eq!(
        run.summary.status,
        RunStatus::Succeeded,
        "{:?}",
        run.summary
    );
    assert_eq!(run.node.attempts, 2);
    let failures = attempt_failures(&run.events);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].1.code.as_deref(), Some("Throttling"));
    assert!(failures[0].1.retryable);
    assert_eq!(
        calls.count("cloudformation:CreateStack"),
        1,
        "{:?}",
        calls.list()
    );
    assert_eq!(
        run.node.undo,
        Some(json!({ "kind": "created", "stack_id": "stack-id" })),
        "the first attempt's undo record stands, with the id of the stack it created: rollback deletes that stack"
    );
    assert_eq!(
        run.node.outputs.as_ref().map(|o| o["role_arn"].clone()),
        Some(json!(role_arn()))
    );
    let undo_events = run
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::UndoRecorded))
        .count();
    assert_eq!(
        undo_events, 2,
        "journaled once before CreateStack, amended once with its StackId; not again on retry"
    );
}
