//! `S/replication`: the article's replication configuration on the source bucket, read once,
//! compared once ([`drift`]) for plan, apply and verify, put only when what is there differs;
//! the undo record keeps the configuration found before.

use super::key_grant::{ArchiveKey, KeyGrantOutput};
use super::role_stack::RoleStackOutput;
use super::{SourceNodes, StepContext, mutate};
use crate::drift::Finding;
use crate::errors::classify;
use crate::logs::SourceLogs;
pub(crate) use crate::replication_doc::live as live_replication;
use crate::replication_doc::{RULE_ID, desired, diff, from_json, rule_id};
use crate::rules::{self, KeptRules, Restore};
use crate::spec::{ExistingReplication, SourceSpec};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use trailhub_engine::{
    Applied, ApplyCtx, Change, Plan, PlanAction, PlanCtx, RolledBack, Task, TaskError,
};

/// Puts the replication configuration on a source bucket.
#[derive(Debug)]
pub struct Replication {
    ctx: StepContext,
    source: SourceSpec,
    nodes: SourceNodes,
    key: Arc<ArchiveKey>,
}

/// The configuration found before trailhub's was put (`None`: there was none), and what
/// trailhub wrote: rollback removes trailhub's rules by their ID, and only while they are what
/// it wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationUndo {
    /// The whole configuration, in the AWS CLI's JSON shape.
    pub previous: Option<Value>,
    /// trailhub's rules as it put them (`None` in journals of before it was recorded: rollback
    /// then puts `previous` back whole).
    #[serde(default)]
    pub wrote: Option<Vec<Value>>,
    /// The role trailhub's configuration named.
    #[serde(default)]
    pub role: Option<String>,
}

/// The configuration in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationOutput {
    /// The source bucket.
    pub bucket: String,
    /// The replication role.
    pub role_arn: String,
    /// The rule's ID.
    pub rule: String,
}

/// What trailhub writes on a bucket given what is live, and the two sides it compares: the whole
/// configuration, or, when the source merges, the role and trailhub's own rules only (the rules
/// kept beside them are not trailhub's to compare).
pub(crate) struct Target {
    /// The configuration to put.
    pub(crate) doc: Value,
    want: Value,
    have: Option<Value>,
}

impl Target {
    /// The configuration `source` needs on its bucket, `live` being what is there: refused when
    /// rules that are not trailhub's would be lost or cannot sit beside its own.
    pub(crate) fn of(
        ctx: &StepContext,
        source: &SourceSpec,
        want: &Wanted<'_>,
        live: Option<&Value>,
    ) -> Result<Target, TaskError> {
        let ours = desired(
            &ctx.setting,
            source,
            want.logs,
            want.role_arn,
            want.replica_key,
        );
        match source.existing_replication {
            ExistingReplication::Refuse => match rules::refused(source, live) {
                Some(e) => Err(e),
                None => Ok(Target {
                    doc: ours.clone(),
                    want: ours,
                    have: live.cloned(),
                }),
            },
            ExistingReplication::Merge => match rules::first_schema(source, live) {
                Some(e) => Err(e),
                None => {
                    let doc = rules::merge(&ours, live);
                    Ok(Target {
                        want: rules::ours_view(&doc),
                        have: live.map(rules::ours_view),
                        doc,
                    })
                }
            },
        }
    }

    /// How the live configuration differs from trailhub's: the one comparison of this
    /// resource, for plan, apply and verify.
    pub(crate) fn changes(&self) -> Vec<Change> {
        diff(self.have.as_ref(), &self.want)
            .into_iter()
            .map(|(field, from, to)| Change::new(field, from, to))
            .collect()
    }

    /// trailhub's rules in the configuration it puts.
    fn ours(&self) -> Vec<Value> {
        self.doc
            .get("Rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|r| rules::is_ours(r.get("ID").and_then(Value::as_str)))
            .cloned()
            .collect()
    }
}

/// The replication drift as verify reports it.
pub(crate) fn findings(
    ctx: &StepContext,
    source: &SourceSpec,
    want: &Wanted<'_>,
    live: Option<&Value>,
) -> Vec<Finding> {
    let account = source.account_id.as_str();
    let resource = format!("bucket {}", source.bucket);
    if live.is_none() {
        return vec![Finding::new(
            account,
            &resource,
            "ReplicationConfiguration",
            "the article's rule",
            "(none)",
        )];
    }
    match Target::of(ctx, source, want, live) {
        Ok(target) => target
            .changes()
            .into_iter()
            .map(|c| Finding::from_change(account, &resource, "Replication.", "(absent)", c))
            .collect(),
        Err(conflict) => vec![Finding::new(
            account,
            &resource,
            "Replication.Rules",
            format!(
                "trailhub's rules (existing_replication = \"{}\")",
                source.existing_replication.name()
            ),
            conflict.message,
        )],
    }
}

/// What the configuration must say beyond the inventory: where the logs are, the role, the
/// archive key for SSE-KMS logs.
pub(crate) struct Wanted<'a> {
    pub(crate) logs: &'a SourceLogs,
    pub(crate) role_arn: &'a str,
    pub(crate) replica_key: Option<&'a str>,
}

impl Replication {
    /// The replication of `source`: the role comes from `nodes.role_stack`'s outputs, the
    /// prefixes from `nodes.bucket_check`'s, the archive key from `nodes.key`'s.
    pub fn new(
        ctx: StepContext,
        source: SourceSpec,
        nodes: SourceNodes,
        key: Arc<ArchiveKey>,
    ) -> Self {
        Replication {
            ctx,
            source,
            nodes,
            key,
        }
    }

    async fn s3(&self) -> Result<aws_sdk_s3::Client, TaskError> {
        self.ctx
            .s3_for(&self.source.account_id, &self.source.bucket)
            .await
    }

    async fn put(&self, ctx: &ApplyCtx<ReplicationUndo>, doc: &Value) -> Result<(), TaskError> {
        let config = from_json(doc)
            .map_err(|e| TaskError::fatal(format!("replication configuration: {e}")))?;
        let s3 = self.s3().await?;
        mutate(
            ctx,
            &self.source.account_id,
            "s3",
            "PutBucketReplication",
            &self.source.bucket,
            s3.put_bucket_replication()
                .bucket(&self.source.bucket)
                .expected_bucket_owner(&self.source.account_id)
                .replication_configuration(config)
                .send(),
        )
        .await
        .map(|_| ())
        // S3 answers an invalid configuration (no versioning, a role it refuses) with
        // InvalidRequest or InvalidArgument: retrying cannot fix it, so it fails at once.
        .map_err(|e| classify("PutBucketReplication", &self.source.bucket, e, &[]))
    }

    async fn delete(&self, ctx: &ApplyCtx<ReplicationUndo>) -> Result<(), TaskError> {
        let s3 = self.s3().await?;
        mutate(
            ctx,
            &self.source.account_id,
            "s3",
            "DeleteBucketReplication",
            &self.source.bucket,
            s3.delete_bucket_replication()
                .bucket(&self.source.bucket)
                .expected_bucket_owner(&self.source.account_id)
                .send(),
        )
        .await
        .map(|_| ())
        .map_err(|e| classify("DeleteBucketReplication", &self.source.bucket, e, &[]))
    }
}

#[async_trait]
impl Task for Replication {
    type Undo = ReplicationUndo;
    type Output = ReplicationOutput;

    fn describe(&self) -> String {
        let archive = &self.ctx.setting.archive.bucket;
        match &self.source.prefix {
            Some(prefix) => format!(
                "replicate s3://{}/{prefix} to bucket {archive}",
                self.source.bucket
            ),
            None => format!(
                "replicate the trails' logs in s3://{} to bucket {archive}",
                self.source.bucket
            ),
        }
    }

    async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
        // Before apply, the role's ARN is the one its name implies (the stack reports it).
        let role_arn = self
            .ctx
            .setting
            .role_arn(&self.source.account_id, &self.source.role_name);
        let logs = self.ctx.logs_of(&self.source).await?;
        let replica_key = if logs.kms() {
            self.key.find().await?
        } else {
            None
        };
        let want = Wanted {
            logs: &logs,
            role_arn: &role_arn,
            replica_key: replica_key.as_deref(),
        };
        let live = live_replication(&self.ctx, &self.source).await?;
        let target = Target::of(&self.ctx, &self.source, &want, live.as_ref())?;
        // The configuration apply puts: what plan's delivery check evaluates.
        self.ctx
            .documents
            .desired(&self.source.account_id)
            .replication(&self.source.bucket, Some(&target.doc));
        let changes = target.changes();
        Ok(match (changes.is_empty(), live.is_some()) {
            (true, _) => Plan::new(PlanAction::NoOp),
            (false, true) => Plan::new(PlanAction::Update).changes(changes),
            (false, false) => Plan::new(PlanAction::Create).changes(changes),
        })
    }

    async fn apply(
        &self,
        ctx: &ApplyCtx<ReplicationUndo>,
    ) -> Result<Applied<ReplicationOutput>, TaskError> {
        let role_arn = ctx
            .input::<RoleStackOutput>(&self.nodes.role_stack)?
            .checked_role_arn(&self.ctx, &self.source)?;
        let logs: SourceLogs = ctx.input(&self.nodes.bucket_check)?;
        // What bucket-check found holds in a later process too: no HeadBucket to ask again.
        self.ctx.pin_region(&logs.bucket, logs.region(&self.ctx));
        let replica_key = ctx.input::<KeyGrantOutput>(&self.nodes.key)?.key;
        let want = Wanted {
            logs: &logs,
            role_arn: &role_arn,
            replica_key: replica_key.as_deref(),
        };
        let live = live_replication(&self.ctx, &self.source).await?;
        let outputs = ReplicationOutput {
            bucket: self.source.bucket.clone(),
            role_arn: role_arn.clone(),
            rule: logs
                .prefixes
                .first()
                .map_or_else(|| RULE_ID.to_string(), |p| rule_id(p)),
        };
        let target = Target::of(&self.ctx, &self.source, &want, live.as_ref())?;
        if target.changes().is_empty() {
            return Ok(Applied::unchanged(outputs));
        }
        self.kept_rules_are_granted(&logs, live.as_ref())?;
        ctx.record_undo(ReplicationUndo {
            previous: live,
            wrote: Some(target.ours()),
            role: Some(role_arn.clone()),
        })
        .await?;
        self.put(ctx, &target.doc).await?;
        Ok(Applied::changed(outputs))
    }

    async fn rollback(
        &self,
        undo: Option<ReplicationUndo>,
        ctx: &ApplyCtx<ReplicationUndo>,
    ) -> Result<RolledBack, TaskError> {
        let Some(undo) = undo else {
            return Ok(RolledBack::default());
        };
        let live = live_replication(&self.ctx, &self.source).await?;
        let bucket = &self.source.bucket;
        let (Some(wrote), Some(role)) = (&undo.wrote, &undo.role) else {
            return self.restore_whole(undo.previous, live, ctx).await;
        };
        let (restore, notes) = rules::restore(undo.previous.as_ref(), live.as_ref(), wrote, role);
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!("; {}", notes.join("; "))
        };
        match restore {
            Restore::Keep if notes.is_empty() => Ok(RolledBack::default()),
            Restore::Keep => Ok(RolledBack::kept(format!(
                "replication configuration of {bucket} kept{notes}"
            ))),
            Restore::Delete => {
                self.delete(ctx).await?;
                Ok(RolledBack::undone(format!(
                    "replication configuration of {bucket} deleted (no rule is left but trailhub's){notes}"
                )))
            }
            Restore::Put(doc) => {
                self.put(ctx, &doc).await?;
                Ok(RolledBack::undone(
                    if undo.previous.as_ref() == Some(&doc) {
                        format!(
                            "replication configuration of {bucket} restored to the one found before{notes}"
                        )
                    } else {
                        format!(
                            "trailhub's rules removed from the replication configuration of {bucket}, the rest kept{notes}"
                        )
                    },
                ))
            }
        }
    }
}

impl Replication {
    /// When the source merges, the rules kept beside trailhub's must be those whose needs the
    /// role's policy was made with (read by `S/bucket-check`): a rule added since would write
    /// with a role not granted its destination.
    fn kept_rules_are_granted(
        &self,
        logs: &SourceLogs,
        live: Option<&Value>,
    ) -> Result<(), TaskError> {
        let Some(now) = KeptRules::of(live) else {
            return Ok(());
        };
        if logs
            .kept
            .as_ref()
            .is_some_and(|granted| granted.covers(&now))
        {
            return Ok(());
        }
        Err(TaskError::fatal(format!(
            "the replication rules of bucket {} changed since bucket-check read them (now {}): the role's policy does not grant their destinations",
            self.source.bucket,
            now.ids.join(", ")
        ))
        .with_code("ExistingReplication")
        .with_hint("run `trailhub apply` again: a new run reads them first and grants them"))
    }

    /// Rollback of a journal that recorded only the configuration found before: put it back
    /// whole (or delete trailhub's when there was none).
    async fn restore_whole(
        &self,
        previous: Option<Value>,
        live: Option<Value>,
        ctx: &ApplyCtx<ReplicationUndo>,
    ) -> Result<RolledBack, TaskError> {
        let bucket = &self.source.bucket;
        match previous {
            None if live.is_none() => Ok(RolledBack::default()),
            None => {
                self.delete(ctx).await?;
                Ok(RolledBack::undone(format!(
                    "replication configuration of {bucket} deleted (there was none before)"
                )))
            }
            Some(previous) if live.as_ref() == Some(&previous) => Ok(RolledBack::default()),
            Some(previous) => {
                self.put(ctx, &previous).await?;
                Ok(RolledBack::undone(format!(
                    "replication configuration of {bucket} restored to the one found before"
                )))
            }
        }
    }
}
