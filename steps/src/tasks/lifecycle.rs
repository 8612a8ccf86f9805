//! `archive/lifecycle`: trailhub's one lifecycle rule (ID [`RULE_ID`]) on the archive bucket,
//! merged by its ID into the bucket's lifecycle configuration; every other rule is kept as it
//! is. The rule is read once, compared once ([`drift`], trailhub's rule only) for plan, apply and
//! verify, and the configuration put only when the rule differs; the undo record keeps the rule
//! of that ID found before and the rule written. Without `[archive] lifecycle` the step does
//! nothing.
//!
//! S3's rules this step relies on (Amazon S3 API Reference, `PutBucketLifecycleConfiguration`,
//! `GetBucketLifecycleConfiguration`, `DeleteBucketLifecycle`): a put replaces the whole
//! configuration, so other rules must be put back as read (a read-modify-write, like the archive
//! bucket policy; another writer between the read and the put is detected by verify, not
//! prevented: S3 has no conditional put); a bucket without a configuration answers
//! `NoSuchLifecycleConfiguration`; the configuration's default minimum object size for
//! transitions (`TransitionDefaultMinimumObjectSize`) is a header of the get and the put, and is
//! carried over so that the merge does not change it.
//!
//! A configuration trailhub creates (the bucket had none) sets that size deliberately to
//! [`NEW_MIN_SIZE`], `varies_by_storage_class`: under S3's default, `all_storage_classes_128K`,
//! no object under 128 KB transitions at all, and most CloudTrail log files are that small, so
//! a rule moving logs to Glacier Flexible Retrieval or Deep Archive would move almost none of
//! them. With it they move there; S3 still moves nothing under 128 KB to the IA classes or
//! Glacier Instant Retrieval (API Reference, `PutBucketLifecycleConfiguration`,
//! `TransitionDefaultMinimumObjectSize`), which `plan` says when the rule transitions to one.
//!
//! Lifecycle rules age a replica from its source object's creation, not from its arrival (User
//! Guide, "Replication: additional considerations", lifecycle configuration and object
//! replicas): with `expire_days`, logs older than that which `trailhub backfill` copies expire
//! as soon as they land; `plan` says so.

use super::{StepContext, call, mutate};
use crate::drift::Finding;
use crate::errors::{classify, service_code};
use crate::lifecycle_doc::{RULE_ID, RuleDoc, desired};
use crate::replication_doc::diff;
use async_trait::async_trait;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, LifecycleRule, TransitionDefaultMinimumObjectSize,
};
use serde::{Deserialize, Serialize};
use trailhub_engine::{
    Applied, ApplyCtx, Change, Plan, PlanAction, PlanCtx, RolledBack, Task, TaskError,
};

/// The default minimum object size for transitions of a configuration trailhub creates.
pub const NEW_MIN_SIZE: TransitionDefaultMinimumObjectSize =
    TransitionDefaultMinimumObjectSize::VariesByStorageClass;

/// Storage classes to which S3 never transitions objects under 128 KB, whatever the
/// configuration's default minimum size (their minimum billable object size is 128 KB).
const NO_SMALL_OBJECTS: [&str; 4] = [
    "STANDARD_IA",
    "ONEZONE_IA",
    "GLACIER_IR",
    "INTELLIGENT_TIERING",
];

/// What `plan` says of the lifecycle facts a rule meets: small log files and transitions, and
/// the age of replicas that backfill copies.
fn facts(spec: &crate::spec::Lifecycle, live: Option<&LiveLifecycle>) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(t) = &spec.transition {
        if NO_SMALL_OBJECTS.contains(&t.storage_class.as_str()) {
            notes.push(format!(
                "S3 never transitions objects under 128 KB to {}: most CloudTrail log files are that small and stay in the replicas' storage class",
                t.storage_class
            ));
        } else {
            match live.map(|l| l.min_size.as_ref()) {
                None => notes.push(format!(
                    "TransitionDefaultMinimumObjectSize is set to {} on the new configuration, so that log files under 128 KB move to {} too (S3's default moves none of them)",
                    NEW_MIN_SIZE.as_str(),
                    t.storage_class
                )),
                Some(Some(TransitionDefaultMinimumObjectSize::VariesByStorageClass)) => {}
                Some(found) => notes.push(format!(
                    "the bucket's TransitionDefaultMinimumObjectSize ({}) is kept: log files under 128 KB (most CloudTrail files) do not move to {}",
                    found.map_or("all_storage_classes_128K, S3's default", |f| f.as_str()),
                    t.storage_class
                )),
            }
        }
    }
    if let Some(days) = spec.expire_days {
        notes.push(format!(
            "S3 ages a replica from its source object's creation: logs older than {days} days that `trailhub backfill` copies expire as soon as they land"
        ));
    }
    notes
}

/// Merges trailhub's lifecycle rule into the archive bucket's lifecycle configuration.
#[derive(Debug)]
pub struct ArchiveLifecycle {
    ctx: StepContext,
}

/// Journaled before the configuration is put: the rule of trailhub's ID found before (`None`:
/// none) and the rule written. Rollback removes the rule, or puts the earlier one back, only
/// while the bucket's rule of that ID is still the one written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleUndo {
    /// The rule with ID [`RULE_ID`] found before, as read.
    pub previous: Option<RuleDoc>,
    /// The rule trailhub put.
    pub wrote: RuleDoc,
}

/// The lifecycle rule in force after the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleOutput {
    /// The archive bucket.
    pub bucket: String,
    /// trailhub's rule ID, when the inventory asks for a rule.
    pub rule: Option<String>,
}

/// A bucket's lifecycle configuration as read: its rules, kept as the SDK's types so that they
/// are put back exactly as they were, and its default minimum object size for transitions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LiveLifecycle {
    rules: Vec<LifecycleRule>,
    min_size: Option<TransitionDefaultMinimumObjectSize>,
}

impl LiveLifecycle {
    /// The rule of trailhub's ID, if there is one.
    fn ours(&self) -> Option<RuleDoc> {
        self.rules
            .iter()
            .find(|r| r.id() == Some(RULE_ID))
            .map(RuleDoc::from_sdk)
    }

    /// The IDs of the other rules, which trailhub keeps.
    fn others(&self) -> Vec<&str> {
        self.rules
            .iter()
            .filter(|r| r.id() != Some(RULE_ID))
            .map(|r| r.id().unwrap_or("(no ID)"))
            .collect()
    }

    /// The rules with trailhub's rule replaced by `rule` (in its place, or last when there was
    /// none), or taken out when `rule` is `None`.
    fn with_ours(&self, rule: Option<LifecycleRule>) -> Vec<LifecycleRule> {
        let mut rules = Vec::with_capacity(self.rules.len() + 1);
        let mut rule = rule;
        for r in &self.rules {
            if r.id() == Some(RULE_ID) {
                rules.extend(rule.take());
            } else {
                rules.push(r.clone());
            }
        }
        rules.extend(rule);
        rules
    }
}

/// How the live rule of trailhub's ID differs from `want`: the one comparison of this resource,
/// for plan, apply and verify. Other rules are not compared.
pub(crate) fn drift(want: &RuleDoc, live: Option<&LiveLifecycle>) -> Vec<Change> {
    let want = to_json(&want.normalized());
    let have = live
        .and_then(LiveLifecycle::ours)
        .map(|r| to_json(&r.normalized()));
    diff(have.as_ref(), &want)
        .into_iter()
        .map(|(field, from, to)| Change::new(format!("Rules[{RULE_ID}].{field}"), from, to))
        .collect()
}

fn to_json(rule: &RuleDoc) -> serde_json::Value {
    serde_json::to_value(rule).expect("a lifecycle rule should serialize")
}

/// Reads `bucket`'s lifecycle configuration: `None` when it has none.
pub(crate) async fn read_lifecycle(
    ctx: &StepContext,
    account: &str,
    bucket: &str,
) -> Result<Option<LiveLifecycle>, TaskError> {
    let s3 = ctx.s3_for(account, bucket).await?;
    let result = call(
        account,
        "s3",
        "GetBucketLifecycleConfiguration",
        bucket,
        s3.get_bucket_lifecycle_configuration()
            .bucket(bucket)
            .expected_bucket_owner(account)
            .send(),
    )
    .await;
    match result {
        Ok(out) => Ok(Some(LiveLifecycle {
            rules: out.rules().to_vec(),
            min_size: out.transition_default_minimum_object_size().cloned(),
        })),
        Err(e) if service_code(&e) == Some("NoSuchLifecycleConfiguration") => Ok(None),
        Err(e) => Err(classify("GetBucketLifecycleConfiguration", bucket, e, &[])),
    }
}

/// The lifecycle drift as verify reports it: trailhub's rule only, and nothing when the
/// inventory asks for none.
pub(crate) async fn findings(ctx: &StepContext) -> Result<Vec<Finding>, TaskError> {
    let archive = &ctx.setting.archive;
    let Some(spec) = &archive.lifecycle else {
        return Ok(Vec::new());
    };
    let live = read_lifecycle(ctx, &archive.account_id, &archive.bucket).await?;
    let resource = format!("bucket {}", archive.bucket);
    if live.as_ref().and_then(LiveLifecycle::ours).is_none() {
        return Ok(vec![Finding::new(
            &archive.account_id,
            &resource,
            &format!("Lifecycle.Rules[{RULE_ID}]"),
            "trailhub's rule",
            "(none)",
        )]);
    }
    Ok(drift(&desired(spec), live.as_ref())
        .into_iter()
        .map(|c| Finding::from_change(&archive.account_id, &resource, "Lifecycle.", "(absent)", c))
        .collect())
}

impl ArchiveLifecycle {
    /// trailhub's lifecycle rule on the archive bucket.
    pub fn new(ctx: StepContext) -> Self {
        ArchiveLifecycle { ctx }
    }

    fn account(&self) -> &str {
        &self.ctx.setting.archive.account_id
    }

    fn bucket(&self) -> &str {
        &self.ctx.setting.archive.bucket
    }

    async fn read(&self) -> Result<Option<LiveLifecycle>, TaskError> {
        read_lifecycle(&self.ctx, self.account(), self.bucket()).await
    }

    fn outputs(&self) -> LifecycleOutput {
        LifecycleOutput {
            bucket: self.bucket().to_string(),
            rule: self
                .ctx
                .setting
                .archive
                .lifecycle
                .as_ref()
                .map(|_| RULE_ID.to_string()),
        }
    }

    /// Puts `rules` as the bucket's whole lifecycle configuration, with the default minimum
    /// object size it had.
    async fn put(
        &self,
        ctx: &ApplyCtx<LifecycleUndo>,
        rules: Vec<LifecycleRule>,
        min_size: Option<TransitionDefaultMinimumObjectSize>,
    ) -> Result<(), TaskError> {
        let s3 = self.ctx.s3_for(self.account(), self.bucket()).await?;
        let ids: Vec<&str> = rules.iter().map(|r| r.id().unwrap_or("(no ID)")).collect();
        let detail = format!("{} rules {}", self.bucket(), ids.join(", "));
        let config = BucketLifecycleConfiguration::builder()
            .set_rules(Some(rules))
            .build()
            .map_err(|e| TaskError::fatal(format!("lifecycle configuration: {e}")))?;
        mutate(
            ctx,
            self.account(),
            "s3",
            "PutBucketLifecycleConfiguration",
            &detail,
            s3.put_bucket_lifecycle_configuration()
                .bucket(self.bucket())
                .expected_bucket_owner(self.account())
                .lifecycle_configuration(config)
                .set_transition_default_minimum_object_size(min_size)
                .send(),
        )
        .await
        .map(|_| ())
        .map_err(|e| classify("PutBucketLifecycleConfiguration", self.bucket(), e, &[]))
    }

    async fn delete(&self, ctx: &ApplyCtx<LifecycleUndo>) -> Result<(), TaskError> {
        let s3 = self.ctx.s3_for(self.account(), self.bucket()).await?;
        mutate(
            ctx,
            self.account(),
            "s3",
            "DeleteBucketLifecycle",
            self.bucket(),
            s3.delete_bucket_lifecycle()
                .bucket(self.bucket())
                .expected_bucket_owner(self.account())
                .send(),
        )
        .await
        .map(|_| ())
        .map_err(|e| classify("DeleteBucketLifecycle", self.bucket(), e, &[]))
    }
}

fn sdk_rule(rule: &RuleDoc) -> Result<LifecycleRule, TaskError> {
    rule.to_sdk().map_err(TaskError::fatal)
}

#[async_trait]
impl Task for ArchiveLifecycle {
    type Undo = LifecycleUndo;
    type Output = LifecycleOutput;

    fn describe(&self) -> String {
        match &self.ctx.setting.archive.lifecycle {
            Some(_) => format!(
                "lifecycle rule {RULE_ID} on {} (other rules kept)",
                self.bucket()
            ),
            None => format!(
                "lifecycle rule {RULE_ID} on {} (none in the inventory)",
                self.bucket()
            ),
        }
    }

    async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
        // A bucket that archive/bucket will create has no lifecycle configuration.
        let live = match self.read().await {
            Err(e) if e.code.as_deref() == Some("NoSuchBucket") => None,
            other => other?,
        };
        let Some(spec) = &self.ctx.setting.archive.lifecycle else {
            let note = match live.as_ref().and_then(LiveLifecycle::ours) {
                Some(_) => format!(
                    "[archive] lifecycle is not set: rule {RULE_ID} on the bucket is kept as it is (rolling back the run that wrote it removes it)"
                ),
                None => "[archive] lifecycle is not set: no rule to write".to_string(),
            };
            return Ok(Plan::new(PlanAction::NoOp).note(note));
        };
        let mut changes = drift(&desired(spec), live.as_ref());
        if changes.is_empty() {
            return Ok(Plan::new(PlanAction::NoOp));
        }
        let action = match live.as_ref().and_then(LiveLifecycle::ours) {
            None => PlanAction::Create,
            Some(_) => PlanAction::Update,
        };
        if live.is_none() {
            changes.push(Change::new(
                "TransitionDefaultMinimumObjectSize",
                None,
                NEW_MIN_SIZE.as_str(),
            ));
        }
        let mut notes = facts(spec, live.as_ref());
        let others = live.as_ref().map(LiveLifecycle::others).unwrap_or_default();
        if !others.is_empty() {
            notes.push(format!("rules kept as they are: {}", others.join(", ")));
        }
        let plan = Plan::new(action).changes(changes);
        Ok(if notes.is_empty() {
            plan
        } else {
            plan.note(notes.join("; "))
        })
    }

    async fn apply(
        &self,
        ctx: &ApplyCtx<LifecycleUndo>,
    ) -> Result<Applied<LifecycleOutput>, TaskError> {
        let Some(spec) = &self.ctx.setting.archive.lifecycle else {
            return Ok(Applied::unchanged(self.outputs()));
        };
        let want = desired(spec);
        let live = self.read().await?;
        if drift(&want, live.as_ref()).is_empty() {
            return Ok(Applied::unchanged(self.outputs()));
        }
        let live = live.unwrap_or(LiveLifecycle {
            rules: Vec::new(),
            min_size: Some(NEW_MIN_SIZE),
        });
        ctx.record_undo(LifecycleUndo {
            previous: live.ours(),
            wrote: want.clone(),
        })
        .await?;
        let rules = live.with_ours(Some(sdk_rule(&want)?));
        self.put(ctx, rules, live.min_size.clone()).await?;
        Ok(Applied::changed(self.outputs()))
    }

    async fn rollback(
        &self,
        undo: Option<LifecycleUndo>,
        ctx: &ApplyCtx<LifecycleUndo>,
    ) -> Result<RolledBack, TaskError> {
        let Some(undo) = undo else {
            return Ok(RolledBack::default());
        };
        let bucket = self.bucket();
        // S3's configuration reads are eventually consistent: a read right after the apply may
        // not show the rule yet, and removing "nothing" would then leave it.
        let read = self
            .ctx
            .read_until(
                || self.read(),
                |live| live.as_ref().and_then(LiveLifecycle::ours).is_some(),
            )
            .await;
        let live = match read {
            Ok((live, _)) => live,
            Err(e) if e.code.as_deref() == Some("NoSuchBucket") => {
                return Ok(RolledBack::kept(format!("bucket {bucket} is already gone")));
            }
            Err(e) => return Err(e),
        };
        let ours = live.as_ref().and_then(LiveLifecycle::ours);
        let before = undo.previous.as_ref().map(RuleDoc::normalized);
        match ours.as_ref().map(RuleDoc::normalized) {
            // As found before this run (a rollback done already, or never needed).
            now if now == before => return Ok(RolledBack::default()),
            None => {
                return Ok(RolledBack::kept(format!(
                    "no lifecycle rule {RULE_ID} on {bucket} any more (removed since); the rule of that ID found before this run is not put back"
                )));
            }
            Some(rule) if rule != undo.wrote.normalized() => {
                return Ok(RolledBack::kept(format!(
                    "lifecycle rule {RULE_ID} on {bucket} kept: it changed since this run wrote it"
                )));
            }
            Some(_) => {}
        }
        let live = live.expect("a configuration with trailhub's rule was read");
        let previous = undo.previous.as_ref().map(sdk_rule).transpose()?;
        let restored = previous.is_some();
        let rules = live.with_ours(previous);
        if rules.is_empty() {
            self.delete(ctx).await?;
            return Ok(RolledBack::undone(format!(
                "lifecycle configuration of {bucket} deleted (no rule is left but trailhub's)"
            )));
        }
        self.put(ctx, rules, live.min_size.clone()).await?;
        Ok(RolledBack::undone(if restored {
            format!("lifecycle rule {RULE_ID} on {bucket} returned to the one found before")
        } else {
            format!("lifecycle rule {RULE_ID} removed from {bucket}, the other rules kept")
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Lifecycle, Transition};
    use aws_sdk_s3::types::{ExpirationStatus, LifecycleExpiration, LifecycleRuleFilter};

    fn spec() -> Lifecycle {
        Lifecycle {
            transition: Some(Transition {
                days: 90,
                storage_class: "GLACIER_IR".into(),
            }),
            expire_days: Some(2555),
            noncurrent_expire_days: Some(30),
        }
    }

    fn theirs(id: &str, prefix: &str) -> LifecycleRule {
        LifecycleRule::builder()
            .id(id)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix(prefix).build())
            .expiration(LifecycleExpiration::builder().days(7).build())
            .build()
            .expect("a rule")
    }

    fn live(rules: Vec<LifecycleRule>) -> LiveLifecycle {
        LiveLifecycle {
            rules,
            min_size: Some(TransitionDefaultMinimumObjectSize::VariesByStorageClass),
        }
    }

    #[test]
    fn no_configuration_or_no_rule_of_ours_lists_every_field() {
        let want = desired(&spec());
        let fields: Vec<String> = drift(&want, None).into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            [
                "Rules[trailhub-archive].Expiration.Days",
                "Rules[trailhub-archive].Filter.Prefix",
                "Rules[trailhub-archive].ID",
                "Rules[trailhub-archive].NoncurrentVersionExpiration.NoncurrentDays",
                "Rules[trailhub-archive].Status",
                "Rules[trailhub-archive].Transitions[0].Days",
                "Rules[trailhub-archive].Transitions[0].StorageClass",
            ]
        );
        let other = live(vec![theirs("tmp", "tmp/")]);
        assert_eq!(drift(&want, Some(&other)).len(), fields.len());
    }

    #[test]
    fn only_our_rule_is_compared() {
        let want = desired(&spec());
        let ours = want.to_sdk().expect("a rule");
        let both = live(vec![theirs("tmp", "tmp/"), ours]);
        assert!(drift(&want, Some(&both)).is_empty());

        let mut changed = desired(&spec());
        changed.expiration = Some(crate::lifecycle_doc::ExpirationDoc {
            days: Some(400),
            ..Default::default()
        });
        let drifted = live(vec![
            theirs("tmp", "tmp/"),
            changed.to_sdk().expect("a rule"),
        ]);
        let changes = drift(&want, Some(&drifted));
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].field, "Rules[trailhub-archive].Expiration.Days");
        assert_eq!(changes[0].from.as_deref(), Some("400"));
        assert_eq!(changes[0].to, "2555");
    }

    #[test]
    fn merging_keeps_the_other_rules_in_place() {
        let ours = desired(&spec()).to_sdk().expect("a rule");
        let old_ours = theirs(RULE_ID, "");
        let found = live(vec![theirs("a", "a/"), old_ours, theirs("b", "b/")]);
        let merged = found.with_ours(Some(ours.clone()));
        let ids: Vec<_> = merged.iter().map(|r| r.id().unwrap_or("")).collect();
        assert_eq!(ids, ["a", RULE_ID, "b"]);
        assert_eq!(merged[1], ours);
        assert_eq!(merged[0], found.rules[0], "kept as read");

        let none_of_ours = live(vec![theirs("a", "a/")]);
        let ids: Vec<_> = none_of_ours
            .with_ours(Some(ours))
            .iter()
            .map(|r| r.id().unwrap_or("").to_string())
            .collect();
        assert_eq!(ids, ["a", RULE_ID]);
        assert_eq!(found.with_ours(None).len(), 2, "ours taken out");
        assert_eq!(found.others(), ["a", "b"]);
    }
}
