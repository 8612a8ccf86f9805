//! `S/role-stack` against CloudFormation's real life cycle: stacks that are still changing, that
//! failed and rolled back, and updates that change nothing — states the emulator never reaches.

use crate::support::*;
use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::operation::create_stack::{CreateStackInput, CreateStackOutput};
use aws_sdk_cloudformation::operation::delete_stack::DeleteStackOutput;
use aws_sdk_cloudformation::operation::describe_stack_events::DescribeStackEventsOutput;
use aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksOutput;
use aws_sdk_cloudformation::operation::get_template::GetTemplateOutput;
use aws_sdk_cloudformation::types::{
    Capability, Output, Parameter, ResourceStatus, Stack, StackEvent, StackStatus,
};
use aws_smithy_mocks::{Rule, mock};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use trailhub_engine::{ErrorKind, Task};
use trailhub_steps::role_template;
use trailhub_steps::tasks::RoleStack;

const STACK_ID: &str = "arn:aws:cloudformation:ap-northeast-1:222222222222:stack/cloudtrail-replication-role/6a1c2f50-0000-11ef-8000-0a1b2c3d4e5f";
const NODE: &str = "222222222222/role-stack";

/// "Stack with id … does not exist": how DescribeStacks answers for a stack that is not there.
fn no_such_stack() -> String {
    query_error(
        "ValidationError",
        &format!("Stack with id {STACK} does not exist"),
    )
}

/// The stack in `status`, with the parameter the article's template takes.
pub(crate) fn stack(status: StackStatus) -> DescribeStacksOutput {
    let mut stack = Stack::builder()
        .stack_name(STACK)
        .stack_id(STACK_ID)
        .stack_status(status.clone())
        .parameters(
            Parameter::builder()
                .parameter_key("DestinationAccountId")
                .parameter_value(ARCHIVE)
                .build(),
        );
    if matches!(
        status,
        StackStatus::CreateComplete | StackStatus::UpdateComplete
    ) {
        stack = stack
            .outputs(
                Output::builder()
                    .output_key("ReplicationRoleArn")
                    .output_value(role_arn())
                    .build(),
            )
            .outputs(
                Output::builder()
                    .output_key("ReplicationRoleName")
                    .output_value(ROLE)
                    .build(),
            );
    }
    DescribeStacksOutput::builder()
        .stacks(stack.build())
        .build()
}

/// The article's template for the source, as trailhub writes it.
fn article_template() -> String {
    role_template(&setting(), &source(), &logs()).0
}

fn created() -> CreateStackOutput {
    CreateStackOutput::builder().stack_id(STACK_ID).build()
}

/// A RoleStack over these CloudFormation rules, and the record of the calls it makes.
fn role_stack(cfn: &[&Rule]) -> (RoleStack, Calls) {
    let calls = Calls::default();
    let [get_role, get_policy] = template_role_rules();
    let ctx = context(vec![account(
        SOURCE,
        Mocked {
            cfn,
            iam: &[&get_role, &get_policy],
            ..Default::default()
        },
        &calls,
    )]);
    (RoleStack::new(ctx, source(), nodes()), calls)
}

/// Captures every CreateStack request.
fn capture_create(seen: &Arc<Mutex<Vec<CreateStackInput>>>) -> Rule {
    let seen = seen.clone();
    mock!(Client::create_stack)
        .match_requests(move |req| {
            seen.lock().expect("seen").push(req.clone());
            true
        })
        .then_output(created)
}

#[tokio::test]
async fn waits_for_a_stack_being_created_and_adopts_it_without_creating_another() {
    let describe = mock!(Client::describe_stacks)
        .match_requests(|req| req.stack_name() == Some(STACK))
        .sequence()
        .output(|| stack(StackStatus::CreateInProgress))
        .times(2)
        .output(|| stack(StackStatus::CreateComplete))
        .build();
    let template = mock!(Client::get_template).then_output(|| {
        GetTemplateOutput::builder()
            .template_body(article_template())
            .build()
    });
    let (task, calls) = role_stack(&[&describe, &template]);
    let (ctx, history) = detached(NODE, SOURCE);

    let applied = task.apply(&ctx).await.expect("apply waits, then succeeds");

    assert_eq!(
        json_of(&applied.outputs),
        json!({ "role_arn": role_arn(), "role_name": ROLE, "stack_id": STACK_ID })
    );
    assert!(!applied.changed, "an existing, identical stack is adopted");
    assert_eq!(
        calls.list(),
        [
            "cloudformation:DescribeStacks",
            "cloudformation:DescribeStacks",
            "cloudformation:DescribeStacks",
            "cloudformation:GetTemplate",
            "iam:GetRole",
            "iam:GetRolePolicy",
        ],
        "polls until CREATE_COMPLETE, compares the template and the role, creates nothing"
    );
    assert!(
        history.entries().is_empty(),
        "no undo record and no mutating call: {:?}",
        history.entries()
    );
}

#[tokio::test]
async fn creates_a_missing_stack_with_named_iam_capability_after_journaling_its_absence() {
    let describe = mock!(Client::describe_stacks)
        .sequence()
        .http_status(400, Some(no_such_stack()))
        .output(|| stack(StackStatus::CreateInProgress))
        .output(|| stack(StackStatus::CreateComplete))
        .build();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let create = capture_create(&requests);
    let (task, calls) = role_stack(&[&describe, &create]);
    let (ctx, history) = detached(NODE, SOURCE);

    let applied = task.apply(&ctx).await.expect("apply creates the stack");

    assert_eq!(applied.outputs.role_arn, role_arn());
    assert_eq!(applied.outputs.stack_id.as_deref(), Some(STACK_ID));
    assert!(applied.changed);
    assert_eq!(
        history.steps(),
        ["undo", "cloudformation:CreateStack", "undo"],
        "the undo record is journaled before the stack is created, then given its StackId"
    );
    assert_eq!(
        history.undo(),
        [
            json!({ "kind": "created", "stack_id": null }),
            json!({ "kind": "created", "stack_id": STACK_ID })
        ]
    );
    assert_eq!(
        calls.list(),
        [
            "cloudformation:DescribeStacks",
            "cloudformation:CreateStack",
            "cloudformation:DescribeStacks",
            "cloudformation:DescribeStacks",
        ]
    );

    let requests = requests.lock().expect("requests");
    assert_eq!(requests.len(), 1, "exactly one CreateStack");
    let request = &requests[0];
    assert_eq!(request.stack_name(), Some(STACK));
    assert_eq!(request.capabilities(), [Capability::CapabilityNamedIam]);
    assert_eq!(
        request.parameters(),
        [Parameter::builder()
            .parameter_key("DestinationAccountId")
            .parameter_value(ARCHIVE)
            .build()]
    );
    let sent: Value =
        serde_json::from_str(request.template_body().expect("a template body")).expect("JSON");
    let want: Value = serde_json::from_str(&article_template()).expect("JSON");
    assert_eq!(sent, want);
    assert_eq!(
        sent["Resources"]["S3ReplicationRole"]["Properties"]["RoleName"],
        json!(ROLE)
    );
}

#[tokio::test]
async fn deletes_a_rolled_back_stack_waits_until_it_is_gone_and_creates_it_again() {
    let describe = mock!(Client::describe_stacks)
        .sequence()
        .output(|| stack(StackStatus::RollbackComplete))
        .output(|| stack(StackStatus::DeleteInProgress))
        // Once deleted, a stack is unknown by name.
        .http_status(400, Some(no_such_stack()))
        .times(2)
        .output(|| stack(StackStatus::CreateInProgress))
        .output(|| stack(StackStatus::CreateComplete))
        .build();
    let delete = mock!(Client::delete_stack)
        .match_requests(|req| req.stack_name() == Some(STACK))
        .then_output(|| DeleteStackOutput::builder().build());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let create = capture_create(&requests);
    let (task, calls) = role_stack(&[&describe, &delete, &create]);
    let (ctx, history) = detached(NODE, SOURCE);

    let applied = task.apply(&ctx).await.expect("apply recreates the stack");

    assert!(applied.changed);
    assert_eq!(applied.outputs.role_arn, role_arn());
    assert_eq!(
        history.steps(),
        [
            "undo",
            "cloudformation:DeleteStack",
            "cloudformation:CreateStack",
            "undo"
        ]
    );
    assert_eq!(
        history.undo(),
        [
            json!({ "kind": "created", "stack_id": null }),
            json!({ "kind": "created", "stack_id": STACK_ID })
        ]
    );
    assert!(
        history
            .notes()
            .iter()
            .any(|n| n.contains("ROLLBACK_COMPLETE")),
        "the history says why the stack was deleted: {:?}",
        history.notes()
    );
    assert_eq!(
        calls.list(),
        [
            "cloudformation:DescribeStacks",
            "cloudformation:DeleteStack",
            "cloudformation:DescribeStacks",
            "cloudformation:DescribeStacks",
            "cloudformation:DescribeStacks",
            "cloudformation:CreateStack",
            "cloudformation:DescribeStacks",
            "cloudformation:DescribeStacks",
        ],
        "CreateStack only once DescribeStacks says the old stack is gone"
    );
    assert_eq!(requests.lock().expect("requests").len(), 1);
}

#[tokio::test]
async fn a_creation_that_rolls_back_fails_with_the_stack_events_reasons() {
    let describe = mock!(Client::describe_stacks)
        .sequence()
        .http_status(400, Some(no_such_stack()))
        .output(|| stack(StackStatus::CreateInProgress))
        .output(|| stack(StackStatus::RollbackInProgress))
        .output(|| stack(StackStatus::RollbackComplete))
        .build();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let create = capture_create(&requests);
    let events = mock!(Client::describe_stack_events)
        .match_requests(|req| req.stack_name() == Some(STACK))
        .then_output(|| {
            let event = |id: &str, status: ResourceStatus, reason: &str| {
                StackEvent::builder()
                    .stack_id(STACK_ID)
                    .stack_name(STACK)
                    .event_id(format!("{id}-{}", status.as_str()))
                    .logical_resource_id(id)
                    .resource_status(status)
                    .resource_status_reason(reason)
                    .build()
            };
            // Most recent first, as CloudFormation lists them.
            DescribeStackEventsOutput::builder()
                .stack_events(event(STACK, ResourceStatus::RollbackComplete, ""))
                .stack_events(event(ROLE, ResourceStatus::DeleteComplete, ""))
                .stack_events(event(
                    STACK,
                    ResourceStatus::RollbackInProgress,
                    "The following resource(s) failed to create: [S3ReplicationRole]. Rollback requested by user.",
                ))
                .stack_events(event(
                    ROLE,
                    ResourceStatus::CreateFailed,
                    "S3ReplicationRole already exists",
                ))
                .stack_events(event(ROLE, ResourceStatus::CreateInProgress, ""))
                .stack_events(event(
                    STACK,
                    ResourceStatus::CreateInProgress,
                    "User Initiated",
                ))
                .build()
        });
    let (task, calls) = role_stack(&[&describe, &create, &events]);
    let (ctx, history) = detached(NODE, SOURCE);

    let err = task
        .apply(&ctx)
        .await
        .expect_err("a creation that rolled back fails");

    assert_eq!(err.kind, ErrorKind::Fatal, "{err:?}");
    assert_eq!(err.code.as_deref(), Some("ROLLBACK_COMPLETE"));
    assert!(
        err.message
            .contains("S3ReplicationRole CREATE_FAILED: S3ReplicationRole already exists"),
        "the message carries the failure reason: {}",
        err.message
    );
    assert!(
        !err.message.contains("User Initiated"),
        "only failure events are quoted: {}",
        err.message
    );
    assert!(err.hint.is_some());
    assert_eq!(
        history.steps(),
        ["undo", "cloudformation:CreateStack", "undo"]
    );
    assert_eq!(
        calls.list(),
        [
            "cloudformation:DescribeStacks",
            "cloudformation:CreateStack",
            "cloudformation:DescribeStacks",
            "cloudformation:DescribeStacks",
            "cloudformation:DescribeStacks",
            "cloudformation:DescribeStackEvents",
        ],
        "no DeleteStack and no second CreateStack within the failed attempt"
    );
}

#[tokio::test]
async fn an_update_cloudformation_finds_nothing_to_do_for_succeeds_unchanged() {
    // The live template differs in text (an older Description), so trailhub updates; CloudFormation
    // answers that there is nothing to update.
    let mut older: Value = serde_json::from_str(&article_template()).expect("JSON");
    older["Description"] = json!("CloudTrail S3 Replication IAM Role");
    let older = serde_json::to_string_pretty(&older).expect("JSON");
    let describe =
        mock!(Client::describe_stacks).then_output(|| stack(StackStatus::CreateComplete));
    let live = older.clone();
    let template = mock!(Client::get_template).then_output(move || {
        GetTemplateOutput::builder()
            .template_body(live.clone())
            .build()
    });
    let update = mock!(Client::update_stack)
        .match_requests(|req| {
            req.capabilities() == [Capability::CapabilityNamedIam]
                && req.template_body().is_some_and(|t| t.contains(ROLE))
        })
        .sequence()
        .http_status(
            400,
            Some(query_error(
                "ValidationError",
                "No updates are to be performed.",
            )),
        )
        .build();
    let (task, calls) = role_stack(&[&describe, &template, &update]);
    let (ctx, history) = detached(NODE, SOURCE);

    let applied = task
        .apply(&ctx)
        .await
        .expect("'No updates are to be performed.' is success");

    assert!(!applied.changed);
    assert_eq!(
        json_of(&applied.outputs),
        json!({ "role_arn": role_arn(), "role_name": ROLE, "stack_id": STACK_ID })
    );
    assert_eq!(history.steps(), ["undo", "cloudformation:UpdateStack"]);
    assert_eq!(
        history.undo(),
        [json!({
            "kind": "template",
            "template": older,
            "parameters": [["DestinationAccountId", ARCHIVE]],
        })],
        "the undo record keeps the template and parameters found"
    );
    assert_eq!(calls.count("cloudformation:UpdateStack"), 1);
    assert_eq!(
        calls.count("cloudformation:DescribeStacks"),
        1,
        "no wait after a no-op update: {:?}",
        calls.list()
    );
}

#[tokio::test]
async fn a_stack_waiting_for_a_change_set_fails_at_once() {
    // REVIEW_IN_PROGRESS ends in "_IN_PROGRESS" but changes only when someone executes or
    // deletes the change set: waiting for it cannot help, and CreateStack on that name fails.
    let describe =
        mock!(Client::describe_stacks).then_output(|| stack(StackStatus::ReviewInProgress));
    let calls = Calls::default();
    let mut ctx = context(vec![account(
        SOURCE,
        Mocked {
            cfn: &[&describe],
            ..Default::default()
        },
        &calls,
    )]);
    ctx.stack_timeout = std::time::Duration::from_millis(100);
    let task = RoleStack::new(ctx, source(), nodes());
    let (apply, history) = detached(NODE, SOURCE);

    let err = task
        .apply(&apply)
        .await
        .expect_err("a stack under review cannot be created or adopted");

    assert_eq!(
        (err.kind, err.code.as_deref()),
        (ErrorKind::Fatal, Some("REVIEW_IN_PROGRESS")),
        "an operator must execute or delete the change set: {err:?}"
    );
    assert_eq!(
        calls.count("cloudformation:DescribeStacks"),
        1,
        "no polling of a stack that will not change by itself"
    );
    assert!(history.entries().is_empty());
}
