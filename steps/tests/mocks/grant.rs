//! `archive/grant/S` when IAM has not propagated the new role yet: S3 rejects the principal with
//! `MalformedPolicy`, and the engine's retry gets it through.

use crate::support::*;
use aws_sdk_s3::Client;
use aws_sdk_s3::operation::get_bucket_policy::GetBucketPolicyOutput;
use aws_sdk_s3::operation::put_bucket_policy::PutBucketPolicyOutput;
use aws_smithy_mocks::mock;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use trailhub_engine::{NodeState, RunStatus};
use trailhub_state::EventKind;
use trailhub_steps::tasks::{Grant, PolicyWriter};

const NODE: &str = "archive/grant/222222222222";
const OTHER: &str = "arn:aws:iam::333333333333:role/S3ReplicationRole";

/// The archive's policy as an operator wrote it from the article for a first source, plus a
/// statement of their own.
fn existing_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [
                    format!("arn:aws:s3:::{ARCHIVE_BUCKET}"),
                    format!("arn:aws:s3:::{ARCHIVE_BUCKET}/*")
                ],
                "Condition": { "Bool": { "aws:SecureTransport": "false" } }
            },
            {
                "Sid": "AllowReplicationFromSourceAccount",
                "Effect": "Allow",
                "Principal": { "AWS": OTHER },
                "Action": [
                    "s3:ReplicateObject",
                    "s3:ReplicateDelete",
                    "s3:ReplicateTags",
                    "s3:ObjectOwnerOverrideToBucketOwner"
                ],
                "Resource": format!("arn:aws:s3:::{ARCHIVE_BUCKET}/*")
            },
            {
                "Sid": "AllowReplicationPolicyCheck",
                "Effect": "Allow",
                "Principal": { "AWS": [OTHER] },
                "Action": ["s3:GetBucketVersioning", "s3:PutBucketVersioning", "s3:List*"],
                "Resource": format!("arn:aws:s3:::{ARCHIVE_BUCKET}")
            }
        ]
    })
}

fn statement<'a>(policy: &'a Value, sid: &str) -> &'a Value {
    policy["Statement"]
        .as_array()
        .expect("a statement list")
        .iter()
        .find(|s| s["Sid"] == sid)
        .unwrap_or_else(|| panic!("statement {sid} in {policy}"))
}

#[tokio::test]
async fn a_grant_rejected_while_the_role_propagates_is_retried_and_succeeds() {
    // The role stack changed in this run: the role is new, and IAM may not show it to S3 yet.
    let policy_text = existing_policy().to_string();
    let written = Arc::new(Mutex::new(Vec::<String>::new()));
    let stored = written.clone();
    // What S3 holds: the operator's policy until the second PutBucketPolicy (the first is
    // refused) stores its document.
    let get = mock!(Client::get_bucket_policy)
        .match_requests(|req| {
            req.bucket() == Some(ARCHIVE_BUCKET) && req.expected_bucket_owner() == Some(ARCHIVE)
        })
        .then_output(move || {
            let puts = stored.lock().expect("written");
            let policy = if puts.len() >= 2 {
                puts[puts.len() - 1].clone()
            } else {
                policy_text.clone()
            };
            GetBucketPolicyOutput::builder().policy(policy).build()
        });
    let seen = written.clone();
    let put = mock!(Client::put_bucket_policy)
        .match_requests(move |req| {
            seen.lock()
                .expect("written")
                .push(req.policy().unwrap_or_default().to_string());
            req.bucket() == Some(ARCHIVE_BUCKET) && req.expected_bucket_owner() == Some(ARCHIVE)
        })
        .sequence()
        .http_status(
            400,
            Some(s3_error("MalformedPolicy", "Invalid principal in policy")),
        )
        .output(|| PutBucketPolicyOutput::builder().build())
        .build();
    let calls = Calls::default();
    let ctx = context(vec![account(
        ARCHIVE,
        Mocked {
            s3: &[&get, &put],
            ..Default::default()
        },
        &calls,
    )]);
    // The role node is not in this one-node DAG: the grant names the role by its ARN.
    let grant = Grant::new(ctx.clone(), source(), nodes(), PolicyWriter::new(ctx));

    let role = role_node();
    let run = run_one_after(NODE, "archive", grant, 5, &[role.as_str()]).await;

    assert_eq!(
        run.summary.status,
        RunStatus::Succeeded,
        "{:?}",
        run.summary
    );
    assert_eq!(run.node.state, NodeState::Done);
    assert_eq!(
        run.node.attempts, 2,
        "one rejected attempt, one that succeeded"
    );
    let undo = run.node.undo.clone().expect("an undo record");
    assert_eq!(undo["principal"], json!(role_arn()));
    assert_eq!(undo["present_before"], json!(false));
    assert_eq!(
        undo["statements"],
        json!([
            "AllowReplicationFromSourceAccount",
            "AllowReplicationPolicyCheck"
        ])
    );
    assert_eq!(
        undo["reshaped"],
        json!([
            existing_policy()["Statement"][1].clone(),
            existing_policy()["Statement"][2].clone()
        ]),
        "the statements of an earlier release, kept for rollback as they were"
    );
    assert_eq!(
        run.node.outputs,
        Some(json!({ "principal": role_arn(), "bucket": ARCHIVE_BUCKET }))
    );
    let failures: Vec<_> = run
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AttemptFailed { attempt, error, .. } => Some((*attempt, error.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
    let (attempt, error) = &failures[0];
    assert_eq!(*attempt, 1);
    assert_eq!(error.code.as_deref(), Some("MalformedPolicy"));
    assert!(
        error.retryable,
        "MalformedPolicy on a grant is IAM propagation"
    );
    assert!(
        error.message.contains("Invalid principal in policy"),
        "{}",
        error.message
    );
    let puts = run
        .events
        .iter()
        .filter(|e| {
            matches!(&e.kind, EventKind::Call { operation, mutating: true, .. } if operation == "PutBucketPolicy")
        })
        .count();
    assert_eq!(puts, 2, "each PutBucketPolicy is in the run's history");
    // The presence check reads the policy once for the run; each write reads it afresh under
    // the exclusive resource, so the retry reads it once, not twice; the write is read back.
    assert_eq!(
        calls.list(),
        [
            "s3:GetBucketPolicy",
            "s3:GetBucketPolicy",
            "s3:PutBucketPolicy",
            "s3:GetBucketPolicy",
            "s3:PutBucketPolicy",
            "s3:GetBucketPolicy",
        ]
    );

    let written = written.lock().expect("written");
    assert_eq!(written.len(), 2);
    assert_eq!(written[0], written[1], "the retry writes the same document");
    let policy: Value = serde_json::from_str(&written[1]).expect("the policy PUT is JSON");
    let statements = policy["Statement"].as_array().expect("statements");
    assert_eq!(statements.len(), 3, "no statement added or lost: {policy}");
    assert_eq!(
        statement(&policy, "DenyInsecureTransport"),
        statement(&existing_policy(), "DenyInsecureTransport"),
        "a statement of the operator's own is kept as it was"
    );
    for sid in [
        "AllowReplicationFromSourceAccount",
        "AllowReplicationPolicyCheck",
    ] {
        assert_eq!(
            statement(&policy, sid)["Principal"]["AWS"],
            json!([OTHER, role_arn()]),
            "{sid} names the earlier source and the new one"
        );
        let text = statement(&policy, sid).to_string();
        assert!(
            !text.contains("s3:ReplicateDelete") && !text.contains("s3:List*"),
            "{sid} migrated to the isolating shape in the same write: {text}"
        );
    }
    assert_eq!(
        statement(&policy, "AllowReplicationFromSourceAccount")["Resource"],
        json!(format!(
            "arn:aws:s3:::{ARCHIVE_BUCKET}/AWSLogs/${{aws:PrincipalAccount}}/*"
        ))
    );
}

/// A grant of source `account` (role `S3ReplicationRole` there), as the workflow makes it.
fn grant_of(
    ctx: &trailhub_steps::tasks::StepContext,
    account: &str,
    writer: Arc<PolicyWriter>,
) -> (
    Grant,
    trailhub_engine::ApplyCtx<trailhub_steps::tasks::GrantUndo>,
) {
    use trailhub_engine::{ApplyCtx, NodeId};
    use trailhub_steps::tasks::{KeyGrantOutput, RoleStackOutput, SourceNodes};
    let mut spec = source();
    spec.account_id = account.into();
    spec.bucket = format!("cm-members-cloudtrail-{account}");
    let nodes = SourceNodes {
        bucket_check: NodeId::new(account, "bucket-check"),
        versioning: NodeId::new(account, "versioning"),
        role_stack: NodeId::new(account, "role-stack"),
        key: NodeId::hosted("archive", "key", account),
        grant: NodeId::hosted("archive", "grant", account),
        replication: NodeId::new(account, "replication"),
    };
    let mut logs = logs();
    logs.bucket = spec.bucket.clone();
    let role = RoleStackOutput {
        role_arn: format!("arn:aws:iam::{account}:role/{ROLE}"),
        role_name: ROLE.into(),
        stack_id: None,
        backfill_role_arn: None,
    };
    let inputs = [
        (nodes.bucket_check.clone(), json_of(&logs)),
        (nodes.role_stack.clone(), json_of(&role)),
        (nodes.key.clone(), json_of(&KeyGrantOutput { key: None })),
    ]
    .into_iter()
    .collect();
    let (apply, _) = ApplyCtx::detached(&nodes.grant, inputs, None);
    (Grant::new(ctx.clone(), spec, nodes, writer), apply)
}

/// An archive bucket policy as eventually consistent S3 keeps it: every version written, and
/// how many of the next reads still answer the version before the last.
#[derive(Default)]
struct Eventual {
    versions: Vec<Option<String>>,
    stale_reads: usize,
}

#[tokio::test]
async fn a_principal_refused_for_a_role_that_existed_before_the_run_fails_at_once_naming_it() {
    let policy_text = existing_policy().to_string();
    let get = mock!(Client::get_bucket_policy).then_output(move || {
        GetBucketPolicyOutput::builder()
            .policy(policy_text.clone())
            .build()
    });
    let put = mock!(Client::put_bucket_policy).then_http_response(|| {
        aws_smithy_runtime_api::http::Response::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(400).expect("status"),
            aws_smithy_types::body::SdkBody::from(s3_error(
                "MalformedPolicy",
                "Invalid principal in policy",
            )),
        )
    });
    let calls = Calls::default();
    let ctx = context(vec![account(
        ARCHIVE,
        Mocked {
            s3: &[&get, &put],
            ..Default::default()
        },
        &calls,
    )]);
    let grant = Grant::new(ctx.clone(), source(), nodes(), PolicyWriter::new(ctx));

    // The role stack did not change in this run: no IAM propagation to wait for.
    let run = run_one(NODE, "archive", grant, 5).await;

    assert_eq!(run.node.state, NodeState::Failed);
    assert_eq!(run.node.attempts, 1, "not retried: it cannot succeed");
    let error = run.node.last_error.expect("an error");
    assert_eq!(error.code.as_deref(), Some("MalformedPolicy"));
    assert!(!error.retryable);
    assert!(error.message.contains(&role_arn()), "{}", error.message);
    assert!(
        error
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("aws iam get-role")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_stale_read_after_a_write_neither_loses_nor_resurrects_a_principal() {
    let state = Arc::new(Mutex::new(Eventual {
        versions: vec![None],
        stale_reads: 0,
    }));
    let reader = state.clone();
    let get = mock!(Client::get_bucket_policy).then_compute_response(move |_| {
        let mut s = reader.lock().expect("state");
        let n = s.versions.len();
        let version = if s.stale_reads > 0 && n >= 2 {
            s.stale_reads -= 1;
            s.versions[n - 2].clone()
        } else {
            s.versions[n - 1].clone()
        };
        match version {
            Some(text) => aws_smithy_mocks::MockResponse::Output(
                GetBucketPolicyOutput::builder().policy(text).build(),
            ),
            None => {
                aws_smithy_mocks::MockResponse::Http(aws_smithy_runtime_api::http::Response::new(
                    aws_smithy_runtime_api::http::StatusCode::try_from(404).expect("status"),
                    aws_smithy_types::body::SdkBody::from(s3_error("NoSuchBucketPolicy", "none")),
                ))
            }
        }
    });
    let writer_state = state.clone();
    let put = mock!(Client::put_bucket_policy).then_compute_output(move |req| {
        let mut s = writer_state.lock().expect("state");
        s.versions.push(req.policy().map(str::to_string));
        // The read right after a write still shows the policy before it.
        s.stale_reads = 1;
        PutBucketPolicyOutput::builder().build()
    });
    let calls = Calls::default();
    let ctx = context(vec![account(
        ARCHIVE,
        Mocked {
            s3: &[&get, &put],
            ..Default::default()
        },
        &calls,
    )]);
    let writer = PolicyWriter::new(ctx.clone());
    use trailhub_engine::Task;
    let (first, apply) = grant_of(&ctx, "222222222222", writer.clone());
    assert!(first.apply(&apply).await.expect("granted").changed);
    // Later, the next write's read is stale again: it must not start from the policy before
    // the first grant (that would lose it).
    state.lock().expect("state").stale_reads = 1;
    let (second, apply) = grant_of(&ctx, "333333333333", writer.clone());
    assert!(second.apply(&apply).await.expect("granted").changed);

    let s = state.lock().expect("state");
    assert_eq!(s.versions.len(), 3, "two writes");
    let last: Value =
        serde_json::from_str(s.versions[2].as_deref().expect("a policy")).expect("JSON");
    assert_eq!(
        statement(&last, "AllowReplicationFromSourceAccount")["Principal"]["AWS"],
        json!([
            "arn:aws:iam::222222222222:role/S3ReplicationRole",
            "arn:aws:iam::333333333333:role/S3ReplicationRole"
        ]),
        "the second write starts from the first one's policy, not from the stale read: {last}"
    );
    // Each write's stale read-back and the second write's stale read were read again.
    assert_eq!(calls.count("s3:PutBucketPolicy"), 2);
    assert_eq!(
        calls.count("s3:GetBucketPolicy"),
        1 + 1 + 2 + 2 + 2,
        "{:?}",
        calls.list()
    );
}
