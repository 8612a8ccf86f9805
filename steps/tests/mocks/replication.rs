//! `S/replication` against GetBucketReplication answers as S3 writes them (XML): the article's
//! configuration is left alone; another one is journaled before it is replaced, and put back by
//! rollback.

use crate::support::*;
use aws_sdk_s3::Client;
use aws_sdk_s3::operation::put_bucket_replication::PutBucketReplicationOutput;
use aws_sdk_s3::types::{ReplicationConfiguration, ReplicationRuleStatus};
use aws_smithy_mocks::mock;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use trailhub_engine::Task;
use trailhub_steps::tasks::{ArchiveKey, Replication};

const NODE: &str = "222222222222/replication";

/// The article's replication configuration for the source, rule status `status`, as
/// GetBucketReplication returns it.
pub(crate) fn article_xml(status: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<ReplicationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Role>arn:aws:iam::{SOURCE}:role/{ROLE}</Role>
  <Rule>
    <ID>ReplicateCloudTrailLogs</ID>
    <Priority>1</Priority>
    <Filter><Prefix>AWSLogs/222222222222/</Prefix></Filter>
    <Status>{status}</Status>
    <Destination>
      <Bucket>arn:aws:s3:::{ARCHIVE_BUCKET}</Bucket>
      <Account>{ARCHIVE}</Account>
      <StorageClass>STANDARD_IA</StorageClass>
      <AccessControlTranslation><Owner>Destination</Owner></AccessControlTranslation>
      <ReplicationTime><Status>Enabled</Status><Time><Minutes>15</Minutes></Time></ReplicationTime>
      <Metrics><Status>Enabled</Status><EventThreshold><Minutes>15</Minutes></EventThreshold></Metrics>
    </Destination>
    <DeleteMarkerReplication><Status>Disabled</Status></DeleteMarkerReplication>
  </Rule>
</ReplicationConfiguration>"#
    )
}

/// The article's document (section 2), filtered on the account's own keys as trailhub writes
/// it, in the AWS CLI's JSON shape, rule status `status`.
fn article_json(status: &str) -> Value {
    json!({
        "Role": role_arn(),
        "Rules": [{
            "ID": "ReplicateCloudTrailLogs",
            "Priority": 1,
            "Status": status,
            "Filter": { "Prefix": "AWSLogs/222222222222/" },
            "Destination": {
                "Bucket": format!("arn:aws:s3:::{ARCHIVE_BUCKET}"),
                "Account": ARCHIVE,
                "StorageClass": "STANDARD_IA",
                "AccessControlTranslation": { "Owner": "Destination" },
                "ReplicationTime": { "Status": "Enabled", "Time": { "Minutes": 15 } },
                "Metrics": { "Status": "Enabled", "EventThreshold": { "Minutes": 15 } }
            },
            "DeleteMarkerReplication": { "Status": "Disabled" }
        }]
    })
}

/// What the SDK makes of `xml` as a GetBucketReplication answer.
async fn parsed(xml: String) -> ReplicationConfiguration {
    let rule = mock!(Client::get_bucket_replication)
        .sequence()
        .http_status(200, Some(xml))
        .build();
    let clients = account(
        SOURCE,
        Mocked {
            s3: &[&rule],
            ..Default::default()
        },
        &Calls::default(),
    );
    clients
        .s3
        .get_bucket_replication()
        .bucket(SOURCE_BUCKET)
        .send()
        .await
        .expect("parses")
        .replication_configuration
        .expect("a configuration")
}

fn replication(s3: &[&aws_smithy_mocks::Rule]) -> (Replication, Calls) {
    let calls = Calls::default();
    let ctx = context(vec![account(
        SOURCE,
        Mocked {
            s3,
            ..Default::default()
        },
        &calls,
    )]);
    (
        Replication::new(ctx.clone(), source(), nodes(), ArchiveKey::new(ctx)),
        calls,
    )
}

#[tokio::test]
async fn the_articles_configuration_found_live_is_left_alone() {
    let get = mock!(Client::get_bucket_replication)
        .match_requests(|req| {
            req.bucket() == Some(SOURCE_BUCKET) && req.expected_bucket_owner() == Some(SOURCE)
        })
        .sequence()
        .http_status(200, Some(article_xml("Enabled")))
        .build();
    let (task, calls) = replication(&[&get]);
    let (ctx, history) = detached(NODE, SOURCE);

    let applied = task.apply(&ctx).await.expect("apply");

    assert!(!applied.changed);
    assert_eq!(
        json_of(&applied.outputs),
        json!({ "bucket": SOURCE_BUCKET, "role_arn": role_arn(), "rule": "ReplicateCloudTrailLogs" })
    );
    assert_eq!(
        calls.list(),
        ["s3:GetBucketReplication"],
        "no PutBucketReplication"
    );
    assert!(history.entries().is_empty(), "{:?}", history.entries());
}

#[tokio::test]
async fn a_disabled_rule_is_journaled_replaced_and_put_back_by_rollback() {
    let get = mock!(Client::get_bucket_replication)
        .sequence()
        .http_status(200, Some(article_xml("Disabled")))
        // What rollback finds: the configuration apply put.
        .http_status(200, Some(article_xml("Enabled")))
        .build();
    let sent = Arc::new(Mutex::new(Vec::<ReplicationConfiguration>::new()));
    let seen = sent.clone();
    let put = mock!(Client::put_bucket_replication)
        .match_requests(move |req| {
            if let Some(c) = req.replication_configuration() {
                seen.lock().expect("sent").push(c.clone());
            }
            req.bucket() == Some(SOURCE_BUCKET) && req.expected_bucket_owner() == Some(SOURCE)
        })
        .then_output(|| PutBucketReplicationOutput::builder().build());
    let (task, calls) = replication(&[&get, &put]);
    let (ctx, history) = detached(NODE, SOURCE);

    let applied = task.apply(&ctx).await.expect("apply");

    assert!(applied.changed);
    assert_eq!(
        history.steps(),
        ["undo", "s3:PutBucketReplication"],
        "the configuration found is journaled before it is replaced"
    );
    let undo = history.undo().remove(0);
    assert_eq!(
        undo,
        json!({
            "previous": article_json("Disabled"),
            "wrote": article_json("Enabled")["Rules"],
            "role": "arn:aws:iam::222222222222:role/S3ReplicationRole",
        }),
        "the undo record holds what was found and what trailhub wrote"
    );

    let (rollback_ctx, rollback_history) = detached_with(NODE, SOURCE, Some(undo.clone()));
    let rolled = task
        .rollback(
            Some(serde_json::from_value(undo.clone()).expect("the journaled shape")),
            &rollback_ctx,
        )
        .await
        .expect("rollback");

    assert!(rolled.changed);
    assert!(
        rolled
            .note
            .as_deref()
            .is_some_and(|n| n.contains("restored")),
        "{rolled:?}"
    );
    assert_eq!(rollback_history.steps(), ["s3:PutBucketReplication"]);
    assert_eq!(
        calls.list(),
        [
            "s3:GetBucketReplication",
            "s3:PutBucketReplication",
            "s3:GetBucketReplication",
            "s3:PutBucketReplication",
        ]
    );
    let sent = sent.lock().expect("sent").clone();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[0],
        parsed(article_xml("Enabled")).await,
        "apply puts the article's configuration"
    );
    assert_eq!(
        sent[1],
        parsed(article_xml("Disabled")).await,
        "rollback puts back exactly the configuration found"
    );
    assert_eq!(
        sent[1].rules()[0].status(),
        &ReplicationRuleStatus::Disabled
    );
}
