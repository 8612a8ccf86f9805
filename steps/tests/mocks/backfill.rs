//! `S/backfill` against S3 Control answers (the emulator has no Batch Operations): the job is
//! asked for with trailhub's token, its replication statuses and prefixes, and waits for a
//! confirmation unless told otherwise; a resumed node asks for no second job; a failed job
//! fails the step with its reasons; a bucket without trailhub's rule is refused; rollback
//! cancels a job still running.
//!
//! S3 Control's answers are raw REST-XML bodies in the shapes of its service model (the one AWS
//! publishes for every SDK: `DescribeJobResult`, lists of `member`), so the SDK's parser reads
//! them as it reads AWS's.

use crate::replication::article_xml;
use crate::support::*;
use aws_sdk_s3control::Client;
use aws_sdk_s3control::operation::create_job::CreateJobInput;
use aws_sdk_s3control::types::{JobManifestGenerator, ReplicationStatus, RequestedJobStatus};
use aws_smithy_mocks::{Rule, mock};
use serde_json::json;
use std::sync::{Arc, Mutex};
use trailhub_engine::{NodeState, Task};
use trailhub_steps::tasks::{Backfill, BackfillNodes, BackfillOptions, BackfillOutput};

const NODE: &str = "222222222222/backfill";
const JOB: &str = "6b0b3c4e-5d8a-4f8e-9a34-1e2f3a4b5c6d";

const NS: &str = "http://awss3control.amazonaws.com/doc/2018-08-20/";

/// DescribeJob's answer for job `JOB` in `status` (`Active`, `Suspended`…), with its progress
/// (total, succeeded, failed tasks) and failures (code, reason) when given.
fn job(
    status: &str,
    confirmation: bool,
    tasks: Option<(i64, i64, i64)>,
    failures: &[(&str, &str)],
) -> String {
    let progress = tasks.map_or(String::new(), |(total, ok, failed)| {
        format!(
            "<ProgressSummary><TotalNumberOfTasks>{total}</TotalNumberOfTasks><NumberOfTasksSucceeded>{ok}</NumberOfTasksSucceeded><NumberOfTasksFailed>{failed}</NumberOfTasksFailed><Timers><ElapsedTimeInActiveSeconds>42</ElapsedTimeInActiveSeconds></Timers></ProgressSummary>"
        )
    });
    let failures: String = failures
        .iter()
        .map(|(code, reason)| {
            format!("<member><FailureCode>{code}</FailureCode><FailureReason>{reason}</FailureReason></member>")
        })
        .collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeJobResult xmlns="{NS}"><Job><ConfirmationRequired>{confirmation}</ConfirmationRequired><CreationTime>2026-01-05T10:00:00.000Z</CreationTime><FailureReasons>{failures}</FailureReasons><JobArn>arn:aws:s3:{REGION}:{SOURCE}:job/{JOB}</JobArn><JobId>{JOB}</JobId><Priority>10</Priority>{progress}<RoleArn>arn:aws:iam::{SOURCE}:role/{ROLE}Backfill</RoleArn><Status>{status}</Status></Job></DescribeJobResult>"#
    )
}

fn describe(jobs: Vec<String>) -> Rule {
    let mut rule = mock!(Client::describe_job)
        .match_requests(|req| req.account_id() == Some(SOURCE) && req.job_id() == Some(JOB))
        .sequence();
    for j in jobs {
        rule = rule.http_response(move || raw_response(200, &[], &j));
    }
    rule.build()
}

/// trailhub's rule on the source bucket (the article's configuration).
fn onboarded() -> Rule {
    mock!(aws_sdk_s3::Client::get_bucket_replication)
        .sequence()
        .http_status(200, Some(article_xml("Enabled")))
        .build()
}

/// CreateJob, answering `JOB` and keeping each request.
fn create(seen: Arc<Mutex<Vec<CreateJobInput>>>) -> Rule {
    mock!(Client::create_job)
        .match_requests(move |req| {
            seen.lock().expect("seen").push(req.clone());
            true
        })
        .then_http_response(|| {
            raw_response(
                200,
                &[],
                &format!(
                    r#"<?xml version="1.0" encoding="UTF-8"?>
<CreateJobResult xmlns="{NS}"><JobId>{JOB}</JobId></CreateJobResult>"#
                ),
            )
        })
}

fn backfill(s3: &[&Rule], s3control: &[&Rule], options: BackfillOptions) -> (Backfill, Calls) {
    let calls = Calls::default();
    let ctx = context(vec![account(
        SOURCE,
        Mocked {
            s3,
            s3control,
            ..Default::default()
        },
        &calls,
    )]);
    let nodes = BackfillNodes {
        bucket_check: nodes().bucket_check,
        role_stack: role_node(),
    };
    (Backfill::new(ctx, source(), nodes, options), calls)
}

#[tokio::test]
async fn a_job_is_asked_for_once_with_its_token_and_waits_for_a_confirmation() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (create, get, describe) = (
        create(seen.clone()),
        onboarded(),
        describe(vec![job("Suspended", true, None, &[])]),
    );
    let (task, calls) = backfill(&[&get], &[&create, &describe], BackfillOptions::default());
    let (ctx, history) = detached(NODE, SOURCE);

    let applied = task.apply(&ctx).await.expect("the job is created");

    assert!(applied.changed);
    let out: BackfillOutput = applied.outputs;
    assert_eq!(out.job_id, JOB);
    assert_eq!(out.status, "Suspended");
    assert!(out.awaiting_confirmation, "{out:?}");
    assert!(out.describe().contains("awaiting confirmation"));
    assert_eq!(
        history.steps(),
        ["undo", "s3control:CreateJob", "undo"],
        "the token is journaled before CreateJob, the job's id after"
    );
    let undo = history.undo();
    assert_eq!(
        undo[1],
        json!({ "token": "trailhub-detached-222222222222", "job_id": JOB })
    );
    let request = seen.lock().expect("seen")[0].clone();
    assert_eq!(request.account_id(), Some(SOURCE));
    assert_eq!(request.confirmation_required(), Some(true));
    assert_eq!(
        request.client_request_token(),
        Some("trailhub-detached-222222222222")
    );
    assert_eq!(
        request.role_arn(),
        Some(format!("arn:aws:iam::{SOURCE}:role/{ROLE}Backfill").as_str())
    );
    assert!(
        request
            .operation()
            .and_then(|o| o.s3_replicate_object())
            .is_some()
    );
    let Some(JobManifestGenerator::S3JobManifestGenerator(generator)) =
        request.manifest_generator()
    else {
        panic!("a generated manifest: {request:?}")
    };
    assert_eq!(
        generator.source_bucket(),
        format!("arn:aws:s3:::{SOURCE_BUCKET}")
    );
    let filter = generator.filter().expect("a filter");
    assert_eq!(filter.eligible_for_replication(), Some(true));
    assert_eq!(
        filter.object_replication_statuses(),
        [ReplicationStatus::None]
    );
    assert_eq!(
        filter
            .key_name_constraint()
            .map(|k| k.match_any_prefix().to_vec()),
        Some(vec!["AWSLogs/222222222222/".to_string()]),
        "trailhub's prefixes only"
    );
    let report = request.report().expect("a completion report");
    assert_eq!(
        report.bucket(),
        Some(format!("arn:aws:s3:::{SOURCE_BUCKET}").as_str())
    );
    assert_eq!(calls.count("s3 control:CreateJob"), 1, "{:?}", calls.list());
}

#[tokio::test]
async fn a_resumed_node_asks_for_no_second_job() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (create, get, describe) = (
        create(seen.clone()),
        onboarded(),
        describe(vec![job("Active", false, Some((10, 4, 0)), &[])]),
    );
    let (task, calls) = backfill(&[&get], &[&create, &describe], BackfillOptions::default());
    // An earlier attempt created the job and journaled its id, then the process died.
    let prior = json!({ "token": "trailhub-r-222222222222", "job_id": JOB });
    let (ctx, _history) = detached_with(NODE, SOURCE, Some(prior));

    let applied = task.apply(&ctx).await.expect("the job is followed");

    assert!(!applied.changed);
    assert_eq!(applied.outputs.status, "Active");
    assert_eq!(applied.outputs.succeeded, Some(4));
    assert_eq!(calls.count("s3 control:CreateJob"), 0, "{:?}", calls.list());
    assert_eq!(
        calls.count("s3 control:DescribeJob"),
        1,
        "the job is described"
    );
    assert!(seen.lock().expect("seen").is_empty());
}

#[tokio::test]
async fn with_yes_and_wait_the_failed_objects_too_are_replicated_until_the_job_completes() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (create, get, describe) = (
        create(seen.clone()),
        onboarded(),
        describe(vec![
            job("Preparing", false, None, &[]),
            job("Active", false, Some((3, 1, 0)), &[]),
            job("Complete", false, Some((3, 3, 0)), &[]),
        ]),
    );
    let options = BackfillOptions {
        include_failed: true,
        confirmed: true,
        wait: true,
    };
    let (task, _calls) = backfill(&[&get], &[&create, &describe], options);
    let (ctx, history) = detached(NODE, SOURCE);

    let applied = task.apply(&ctx).await.expect("the job completes");

    assert_eq!(applied.outputs.status, "Complete");
    assert_eq!(applied.outputs.succeeded, Some(3));
    let request = seen.lock().expect("seen")[0].clone();
    assert_eq!(request.confirmation_required(), Some(false));
    let Some(JobManifestGenerator::S3JobManifestGenerator(generator)) =
        request.manifest_generator()
    else {
        panic!("a generated manifest")
    };
    assert_eq!(
        generator
            .filter()
            .map(|f| f.object_replication_statuses().to_vec()),
        Some(vec![ReplicationStatus::None, ReplicationStatus::Failed])
    );
    let notes: Vec<String> = history
        .entries()
        .into_iter()
        .filter(|e| e.what == "note")
        .map(|e| e.detail)
        .collect();
    assert_eq!(notes.len(), 3, "one note per change of progress: {notes:?}");
    assert!(notes[1].contains("1 of 3 objects replicated"), "{notes:?}");
}

#[tokio::test]
async fn a_failed_job_fails_the_step_with_its_reasons_and_report() {
    let failed = job(
        "Failed",
        false,
        None,
        &[("AccessDenied", "Reading the manifest is forbidden")],
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (create, get, describe) = (create(seen), onboarded(), describe(vec![failed]));
    let options = BackfillOptions {
        confirmed: true,
        wait: true,
        ..Default::default()
    };
    let (task, _calls) = backfill(&[&get], &[&create, &describe], options);

    let run = run_one(NODE, SOURCE, task, 3).await;

    assert_eq!(run.node.state, NodeState::Failed);
    assert_eq!(run.node.attempts, 1, "a failed job is not asked for again");
    let error = run.node.last_error.expect("an error");
    assert_eq!(error.code.as_deref(), Some("BackfillFailed"));
    assert!(
        error
            .message
            .contains("AccessDenied: Reading the manifest is forbidden"),
        "{}",
        error.message
    );
    assert!(
        error
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("trailhub-backfill-reports/")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_bucket_without_trailhubs_rule_is_refused_before_any_job() {
    let none = mock!(aws_sdk_s3::Client::get_bucket_replication)
        .sequence()
        .http_status(
            404,
            Some(s3_error(
                "ReplicationConfigurationNotFoundError",
                "The replication configuration was not found",
            )),
        )
        .build();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let create = create(seen.clone());
    let (task, _calls) = backfill(&[&none], &[&create], BackfillOptions::default());
    let (ctx, _history) = detached(NODE, SOURCE);

    let err = task.apply(&ctx).await.expect_err("refused");

    assert_eq!(err.code.as_deref(), Some("NotOnboarded"));
    assert!(seen.lock().expect("seen").is_empty(), "no job asked for");
}

#[tokio::test]
async fn rollback_cancels_a_job_still_running_and_keeps_a_finished_one() {
    let cancelled = Arc::new(Mutex::new(Vec::new()));
    let record = cancelled.clone();
    let update = mock!(Client::update_job_status)
        .match_requests(move |req| {
            record
                .lock()
                .expect("cancelled")
                .push(req.requested_job_status().cloned());
            req.job_id() == Some(JOB)
        })
        .then_http_response(|| {
            raw_response(
                200,
                &[],
                &format!(
                    r#"<?xml version="1.0" encoding="UTF-8"?>
<UpdateJobStatusResult xmlns="{NS}"><JobId>{JOB}</JobId><Status>Cancelling</Status></UpdateJobStatusResult>"#
                ),
            )
        });
    let running = describe(vec![job("Active", false, Some((9, 2, 0)), &[])]);
    let (task, _calls) = backfill(&[], &[&running, &update], BackfillOptions::default());
    let undo = json!({ "token": "t", "job_id": JOB });
    let (ctx, _history) = detached_with(NODE, SOURCE, Some(undo.clone()));

    let rolled = task
        .rollback(
            Some(serde_json::from_value(undo.clone()).expect("undo")),
            &ctx,
        )
        .await
        .expect("cancelled");

    assert!(rolled.changed);
    assert_eq!(
        *cancelled.lock().expect("cancelled"),
        [Some(RequestedJobStatus::Cancelled)]
    );

    let done = describe(vec![job("Complete", false, Some((9, 9, 0)), &[])]);
    let (task, calls) = backfill(&[], &[&done], BackfillOptions::default());
    let kept = task
        .rollback(Some(serde_json::from_value(undo).expect("undo")), &ctx)
        .await
        .expect("kept");
    assert!(!kept.changed);
    assert!(
        kept.note
            .as_deref()
            .is_some_and(|n| n.contains("stays in the archive")),
        "{kept:?}"
    );
    assert_eq!(calls.count("s3 control:UpdateJobStatus"), 0);
}

/// A ListObjectsV2 answer as S3 writes it (API Reference, ListObjectsV2, response syntax).
fn listing(prefixes: &[&str], keys: &[&str]) -> String {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>cm-members-cloudtrail-222222222222</Name><IsTruncated>false</IsTruncated>",
    );
    for k in keys {
        xml.push_str(&format!(
            "<Contents><Key>{k}</Key><LastModified>2024-03-07T00:05:00.000Z</LastModified><ETag>&quot;e&quot;</ETag><Size>1200</Size><StorageClass>STANDARD</StorageClass></Contents>"
        ));
    }
    for p in prefixes {
        xml.push_str(&format!(
            "<CommonPrefixes><Prefix>{p}</Prefix></CommonPrefixes>"
        ));
    }
    xml.push_str(&format!(
        "<KeyCount>{}</KeyCount></ListBucketResult>",
        keys.len() + prefixes.len()
    ));
    xml
}

#[tokio::test]
async fn history_older_than_the_archives_expiry_is_named_before_it_is_copied() {
    let root = format!("AWSLogs/{SOURCE}/CloudTrail/");
    let (east, tokyo) = (
        format!("{root}us-east-1/"),
        format!("{root}ap-northeast-1/"),
    );
    let (regions, first_east, first_tokyo) = (
        listing(&[&tokyo, &east], &[]),
        listing(
            &[],
            &[&format!(
                "{east}2024/03/07/{SOURCE}_CloudTrail_us-east-1_20240307T0000Z_a.json.gz"
            )],
        ),
        listing(
            &[],
            &[&format!(
                "{tokyo}2025/06/01/{SOURCE}_CloudTrail_ap-northeast-1_20250601T0000Z_b.json.gz"
            )],
        ),
    );
    let list = mock!(aws_sdk_s3::Client::list_objects_v2)
        .match_requests(|req| req.expected_bucket_owner() == Some(SOURCE))
        .sequence()
        .http_status(200, Some(regions))
        .http_status(200, Some(first_tokyo))
        .http_status(200, Some(first_east))
        .build();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (create, get, describe) = (
        create(seen),
        onboarded(),
        describe(vec![job("Suspended", true, None, &[])]),
    );
    let calls = Calls::default();
    let mut ctx = context(vec![account(
        SOURCE,
        Mocked {
            s3: &[&get, &list],
            s3control: &[&create, &describe],
            ..Default::default()
        },
        &calls,
    )]);
    std::sync::Arc::make_mut(&mut ctx.setting).archive.lifecycle =
        Some(trailhub_steps::Lifecycle {
            transition: None,
            expire_days: Some(365),
            noncurrent_expire_days: None,
        });
    let nodes = BackfillNodes {
        bucket_check: nodes().bucket_check,
        role_stack: role_node(),
    };
    let task = Backfill::new(ctx, source(), nodes, BackfillOptions::default());
    let (ctx, history) = detached(NODE, SOURCE);

    let out: BackfillOutput = task.apply(&ctx).await.expect("the job").outputs;

    let warning = out.expiring.clone().expect("a warning");
    assert!(
        warning.contains("from 2024-03-07 to ")
            && warning.contains("expire_days = 365")
            && warning.contains("expire as soon as they land"),
        "the oldest of both regions, us-east-1's: {warning}"
    );
    assert!(out.describe().contains("warning:"), "{}", out.describe());
    assert!(
        history
            .notes()
            .iter()
            .any(|n| n.contains("from 2024-03-07")),
        "noted in the run's history: {:?}",
        history.notes()
    );
    assert_eq!(calls.count("s3:ListObjectsV2"), 3, "{:?}", calls.list());
}
