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

/// The template of a stack trailhub made for the source, as recorded.
fn article_template() -> String {
    recorded_template()
}

fn created() -> CreateStackOutput {
    CreateStackOutput::builder().stack_id(STACK_ID).build()
}

/// A RoleStack over these CloudFormation rules, and the record of the calls it makes.
fn role_stack(cfn: &[&Rule]) -> (RoleStack, Calls) {
    let [get_role, get_policy] = template_role_rules();
    role_stack_with_iam(cfn, &[&get_role, &get_policy])
}

/// A RoleStack over these CloudFormation and IAM rules.
fn role_stack_with_iam(cfn: &[&Rule], iam: &[&Rule]) -> (RoleStack, Calls) {
    let calls = Calls::default();
    let ctx = context(vec![account(
        SOURCE,
        Mocked {
            cfn,
            iam,
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

#[tokio::test]
async fn a_role_edited_by_hand_is_planned_as_an_update_and_put_back_to_the_templates_documents() {
    // The stack and its template are trailhub's; in the console, someone took
    // s3:ReplicateTags out of the role's inline policy.
    let edited = ARTICLE_INLINE.replace(r#""s3:ReplicateTags","#, "");
    assert_ne!(edited, ARTICLE_INLINE);
    let describe =
        mock!(Client::describe_stacks).then_output(|| stack(StackStatus::CreateComplete));
    let template = mock!(Client::get_template).then_output(|| {
        GetTemplateOutput::builder()
            .template_body(article_template())
            .build()
    });
    let [get_role, get_policy] = role_rules(ARTICLE_TRUST, &edited);
    let put = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = put.clone();
    let put_policy = mock!(aws_sdk_iam::Client::put_role_policy)
        .match_requests(move |req| {
            seen.lock()
                .expect("seen")
                .push(req.policy_document().unwrap_or_default().to_string());
            req.role_name() == Some(ROLE) && req.policy_name() == Some("S3ReplicationPolicy")
        })
        .then_output(|| {
            aws_sdk_iam::operation::put_role_policy::PutRolePolicyOutput::builder().build()
        });
    let put_trust = mock!(aws_sdk_iam::Client::update_assume_role_policy).then_output(|| {
        aws_sdk_iam::operation::update_assume_role_policy::UpdateAssumeRolePolicyOutput::builder()
            .build()
    });
    let (task, _calls) = role_stack_with_iam(
        &[&describe, &template],
        &[&get_role, &get_policy, &put_policy, &put_trust],
    );

    let plan = task
        .plan(&trailhub_engine::PlanCtx {
            node: node_id(NODE),
        })
        .await
        .expect("planned");
    assert_eq!(plan.action, trailhub_engine::PlanAction::Update, "{plan:?}");
    assert!(
        plan.changes
            .iter()
            .any(|c| c.field == "S3ReplicationPolicy"),
        "{plan:?}"
    );

    let (ctx, history) = detached(NODE, SOURCE);
    let applied = task.apply(&ctx).await.expect("the role is put back");
    assert!(applied.changed);
    assert_eq!(
        history.steps(),
        ["undo", "iam:PutRolePolicy", "iam:UpdateAssumeRolePolicy"]
    );
    let edited_json: Value = serde_json::from_str(&edited).expect("JSON");
    assert_eq!(
        history.undo()[0]["inline"],
        edited_json,
        "the undo record keeps the edited document"
    );
    let written: Value =
        serde_json::from_str(&put.lock().expect("put")[0]).expect("a JSON policy document");
    let want: Value = serde_json::from_str(ARTICLE_INLINE).expect("JSON");
    assert_eq!(
        allowed(&written),
        allowed(&want),
        "the template's inline policy is written back"
    );
    assert!(allowed(&written).contains(&(
        "s3:ReplicateTags".to_string(),
        format!("arn:aws:s3:::{ARCHIVE_BUCKET}/AWSLogs/{SOURCE}/*")
    )));
}

/// Every (action, resource) an IAM policy document allows, read statement by statement.
fn allowed(doc: &Value) -> std::collections::BTreeSet<(String, String)> {
    let list = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut out = std::collections::BTreeSet::new();
    for statement in doc["Statement"].as_array().into_iter().flatten() {
        if statement["Effect"] != "Allow" {
            continue;
        }
        for action in list(&statement["Action"]) {
            for resource in list(&statement["Resource"]) {
                out.insert((action.clone(), resource));
            }
        }
    }
    out
}
