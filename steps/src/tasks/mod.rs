//! One task per step of the article (DESIGN.md, "The DAG of one run"), and what they share.
//!
//! Every task is idempotent: it probes live state, and acts only where it differs from the
//! article's. Before its first mutation it journals the state it found (write-ahead undo record).
//! Each step's module owns its resource: how it is read, the one comparison with what the
//! inventory implies (used by plan, apply and verify alike), and its typed undo record and
//! outputs.

pub(crate) mod archive_bucket;
mod archive_lock;
mod backfill;
pub(crate) mod bucket_check;
mod context;
pub(crate) mod grant;
mod identity;
pub(crate) mod key_grant;
pub(crate) mod lifecycle;
pub(crate) mod replication;
pub(crate) mod retention;
pub(crate) mod role_stack;
mod verify;
pub(crate) mod versioning;

pub use archive_bucket::{ArchiveBucket, ArchiveBucketUndo, BucketOutput};
pub use backfill::{Backfill, BackfillNodes, BackfillOptions, BackfillOutput, BackfillUndo};
pub use bucket_check::{BucketCheck, BucketCheckOutput};
pub use grant::{Grant, GrantOutput, GrantUndo, PolicyWriter};
pub use identity::{Identity, IdentityOutput};
pub use key_grant::{ArchiveKey, KeyGrant, KeyGrantOutput, KeyGrantUndo};
pub use lifecycle::{ArchiveLifecycle, LifecycleOutput, LifecycleUndo};
pub use replication::{Replication, ReplicationOutput, ReplicationUndo};
pub use retention::{ArchiveRetention, DefaultRule, RetentionOutput, RetentionUndo};
pub use role_stack::{RoleStack, RoleStackOutput, RoleStackUndo};
pub use verify::{Verify, VerifyOutput};
pub use versioning::{Versioning, VersioningOutput, VersioningUndo};

pub use context::StepContext;

use trailhub_engine::NodeId;

/// The nodes of one source whose outputs its later steps read (the workflow names them).
#[derive(Debug, Clone)]
pub struct SourceNodes {
    /// Where and how the logs are written ([`crate::logs::SourceLogs`]).
    pub bucket_check: NodeId,
    /// The source bucket's versioning.
    pub versioning: NodeId,
    /// The role stack (its outputs name the role).
    pub role_stack: NodeId,
    /// The archive key's grant (its outputs name the key, for SSE-KMS logs).
    pub key: NodeId,
    /// The archive policy's grant.
    pub grant: NodeId,
    /// The replication configuration.
    pub replication: NodeId,
}
pub(crate) use context::{call, mutate};
pub(crate) use grant::read_policy as archive_policy;
pub(crate) use versioning::versioning_status as bucket_versioning;

#[cfg(test)]
mod tests {
    //! Every step's undo record and outputs round-trip through the journal's JSON, and the
    //! records whose shape format 1 already had read as they were written then.

    use super::*;
    use serde::Serialize;
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    fn round_trips<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: T) {
        let text = serde_json::to_string(&value).expect("serializes");
        let back: T = serde_json::from_str(&text).expect("deserializes");
        assert_eq!(back, value, "{text}");
    }

    fn reads<T: DeserializeOwned + PartialEq + std::fmt::Debug>(journaled: Value, want: T) {
        let read: T = serde_json::from_value(journaled.clone()).expect("format 1 shape");
        assert_eq!(read, want, "{journaled}");
    }

    #[test]
    fn undo_records_round_trip_and_read_their_format_1_shapes() {
        round_trips(ArchiveBucketUndo {
            existed: false,
            tagged: true,
        });
        round_trips(VersioningUndo { status: None });
        round_trips(VersioningUndo {
            status: Some("Suspended".into()),
        });
        round_trips(RoleStackUndo::Created {
            stack_id: Some("arn:aws:cloudformation:ap-northeast-1:222222222222:stack/s/1".into()),
        });
        round_trips(RoleStackUndo::Created { stack_id: None });
        round_trips(RoleStackUndo::Template {
            template: Some("{}".into()),
            parameters: vec![("DestinationAccountId".into(), "111111111111".into())],
        });
        round_trips(RoleStackUndo::RoleDocuments {
            inline: Some(json!({ "Version": "2012-10-17" })),
            trust: None,
        });
        round_trips(ReplicationUndo {
            previous: Some(json!({ "Role": "arn", "Rules": [] })),
            wrote: Some(vec![json!({ "ID": "ReplicateCloudTrailLogs" })]),
            role: Some("arn:aws:iam::222222222222:role/S3ReplicationRole".into()),
        });
        round_trips(GrantUndo {
            principal: "arn:aws:iam::222222222222:role/S3ReplicationRole".into(),
            present_before: false,
            statements: Some(vec!["AllowReplicationPolicyCheck".into()]),
            reshaped: vec![
                json!({ "Sid": "AllowReplicationFromSourceAccount", "Resource": "arn:aws:s3:::a/*" }),
            ],
        });
        round_trips(RetentionUndo {
            previous: None,
            wrote: DefaultRule {
                mode: "COMPLIANCE".into(),
                days: None,
                years: Some(7),
            },
        });
        round_trips(RetentionUndo {
            previous: Some(DefaultRule {
                mode: "GOVERNANCE".into(),
                days: Some(30),
                years: None,
            }),
            wrote: DefaultRule {
                mode: "GOVERNANCE".into(),
                days: Some(365),
                years: None,
            },
        });
        round_trips(LifecycleUndo {
            previous: Some(crate::lifecycle_doc::RuleDoc {
                id: Some("trailhub-archive".into()),
                status: "Disabled".into(),
                ..Default::default()
            }),
            wrote: crate::lifecycle_doc::desired(&crate::spec::Lifecycle {
                transition: None,
                expire_days: Some(400),
                noncurrent_expire_days: None,
            }),
        });
        reads(
            json!({ "existed": false }),
            ArchiveBucketUndo {
                existed: false,
                tagged: false,
            },
        );
        reads(json!({ "status": null }), VersioningUndo { status: None });
        reads(
            json!({ "previous": null }),
            ReplicationUndo {
                previous: None,
                wrote: None,
                role: None,
            },
        );
        reads(
            json!({ "principal": "p", "present_before": false }),
            GrantUndo {
                principal: "p".into(),
                present_before: false,
                statements: None,
                reshaped: Vec::new(),
            },
        );
    }

    #[test]
    fn outputs_round_trip_and_read_their_format_1_shapes() {
        round_trips(IdentityOutput {
            account: "222222222222".into(),
            caller: "arn:aws:sts::222222222222:assumed-role/x/trailhub".into(),
        });
        round_trips(BucketOutput { bucket: "b".into() });
        round_trips(BucketCheckOutput {
            bucket: "b".into(),
            encryption: "aws:kms".into(),
            trail: Some("Members".into()),
            region: Some("us-east-1".into()),
            prefixes: vec!["AWSLogs/".into(), "o/AWSLogs/".into()],
            trails: vec!["arn:aws:cloudtrail:us-east-1:2:trail/Members".into()],
            kms_keys: vec!["arn:aws:kms:us-east-1:2:key/k".into()],
            bucket_key: true,
            kept: None,
        });
        round_trips(KeyGrantOutput {
            key: Some("arn:aws:kms:ap-northeast-1:1:key/a".into()),
        });
        round_trips(KeyGrantUndo {
            key: None,
            principal: "r".into(),
        });
        round_trips(VersioningOutput {
            bucket: "b".into(),
            status: "Enabled".into(),
        });
        round_trips(ReplicationOutput {
            bucket: "b".into(),
            role_arn: "r".into(),
            rule: "ReplicateCloudTrailLogs".into(),
        });
        round_trips(GrantOutput {
            principal: "r".into(),
            bucket: "a".into(),
        });
        round_trips(VerifyOutput { checked: true });
        round_trips(RetentionOutput {
            bucket: "a".into(),
            rule: None,
        });
        round_trips(LifecycleOutput {
            bucket: "a".into(),
            rule: Some("trailhub-archive".into()),
        });
        reads(
            json!({ "role_arn": "r", "role_name": "S3ReplicationRole", "stack_id": "arn:stack" }),
            RoleStackOutput {
                role_arn: "r".into(),
                role_name: "S3ReplicationRole".into(),
                stack_id: Some("arn:stack".into()),
                backfill_role_arn: None,
            },
        );
    }
}
