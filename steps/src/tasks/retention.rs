//! `archive/retention`: the archive bucket's default Object Lock retention (`[archive]
//! retention`), read once, compared once ([`drift`]) for plan, apply and verify, and put only when
//! it differs; the undo record keeps the default rule found before. It never touches the
//! retention of an object already written: S3 keeps that on each object version.
//!
//! S3's rules this step relies on (Amazon S3 API Reference, `PutObjectLockConfiguration`,
//! `ObjectLockConfiguration`, `DefaultRetention`): the configuration put replaces the bucket's;
//! `ObjectLockEnabled` must say `Enabled`; `Rule` is optional, so a configuration without one
//! removes the default retention; a default retention has a mode and either days or years, never
//! both. A default applies to object versions written after it is set (User Guide, "Locking
//! objects with Object Lock": retention periods are per object version); a version locked in
//! compliance mode cannot be deleted, nor its retention shortened, by any user, the root user
//! included, until it ends.

use super::archive_bucket::{ObjectLock, object_lock};
use super::{StepContext, mutate};
use crate::drift::Finding;
use crate::errors::classify;
use crate::spec::{Retention, RetentionMode, RetentionPeriod};
use async_trait::async_trait;
use aws_sdk_s3::types::{
    DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode,
    ObjectLockRule,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use trailhub_engine::{
    Applied, ApplyCtx, Change, Plan, PlanAction, PlanCtx, RolledBack, Task, TaskError,
};

/// Sets the archive bucket's default Object Lock retention.
#[derive(Debug)]
pub struct ArchiveRetention {
    ctx: StepContext,
}

/// A bucket's default retention rule as S3 holds it (`Rule.DefaultRetention`): a mode, and days
/// or years.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultRule {
    /// `GOVERNANCE` or `COMPLIANCE` (as S3 answered: kept as text, to be put back as it was).
    pub mode: String,
    /// The period in days, when it is given in days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<i32>,
    /// The period in years, when it is given in years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub years: Option<i32>,
}

/// Journaled before the default retention is put: the rule found, and the one put. Rollback
/// puts the first back (or removes the rule when there was none) only while the bucket still
/// has the second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionUndo {
    /// The default rule found before (`None`: the bucket had none).
    pub previous: Option<DefaultRule>,
    /// The default rule trailhub put.
    pub wrote: DefaultRule,
}

/// The default retention in force after the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionOutput {
    /// The archive bucket.
    pub bucket: String,
    /// The default rule the inventory asks for (`None`: it asks for none, and the bucket's own
    /// was left as it is).
    pub rule: Option<DefaultRule>,
}

impl DefaultRule {
    /// The rule `retention` asks for.
    pub(crate) fn of(retention: &Retention) -> DefaultRule {
        let (days, years) = match retention.period {
            RetentionPeriod::Days(d) => (Some(d), None),
            RetentionPeriod::Years(y) => (None, Some(y)),
        };
        DefaultRule {
            mode: retention.mode.as_str().to_string(),
            days,
            years,
        }
    }

    /// The rule as the SDK read it.
    pub(crate) fn from_sdk(retention: &DefaultRetention) -> DefaultRule {
        DefaultRule {
            mode: retention
                .mode()
                .map(|m| m.as_str().to_string())
                .unwrap_or_default(),
            days: retention.days(),
            years: retention.years(),
        }
    }

    fn to_sdk(&self) -> DefaultRetention {
        DefaultRetention::builder()
            .mode(ObjectLockRetentionMode::from(self.mode.as_str()))
            .set_days(self.days)
            .set_years(self.years)
            .build()
    }
}

impl fmt::Display for DefaultRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.days, self.years) {
            (Some(d), _) => write!(f, "{} {}", self.mode, RetentionPeriod::Days(d)),
            (None, Some(y)) => write!(f, "{} {}", self.mode, RetentionPeriod::Years(y)),
            (None, None) => write!(f, "{} (no period)", self.mode),
        }
    }
}

const ABSENT: &str = "(absent)";

/// How the bucket's default rule (`live`) differs from what `want` asks for: the one comparison
/// of this resource, for plan, apply and verify.
pub(crate) fn drift(want: &Retention, live: Option<&DefaultRule>) -> Vec<Change> {
    let want = DefaultRule::of(want);
    let field = |name: &str| format!("Rule.DefaultRetention.{name}");
    let number = |n: Option<i32>| n.map(|n| n.to_string());
    let mut out = Vec::new();
    let live_mode = live.map(|r| r.mode.clone());
    if live_mode.as_deref() != Some(want.mode.as_str()) {
        out.push(Change::new(field("Mode"), live_mode, want.mode.clone()));
    }
    for (name, have, wanted) in [
        ("Days", live.and_then(|r| r.days), want.days),
        ("Years", live.and_then(|r| r.years), want.years),
    ] {
        if have != wanted {
            out.push(Change::new(
                field(name),
                number(have),
                number(wanted).unwrap_or_else(|| ABSENT.to_string()),
            ));
        }
    }
    out
}

/// The default retention's drift as verify reports it (nothing when the inventory sets none).
pub(crate) fn findings(ctx: &StepContext, lock: &ObjectLock) -> Vec<Finding> {
    let archive = &ctx.setting.archive;
    let Some(want) = &archive.retention else {
        return Vec::new();
    };
    let resource = format!("bucket {}", archive.bucket);
    drift(want, lock.rule.as_ref())
        .into_iter()
        .map(|c| Finding::from_change(&archive.account_id, &resource, "ObjectLock.", ABSENT, c))
        .collect()
}

/// What plan says before a compliance-mode default is set: it cannot be taken back for what is
/// written under it.
fn compliance_warning(period: RetentionPeriod) -> String {
    format!(
        "COMPLIANCE: every object written from now on is locked for {period}; nobody, the root user included, can shorten that or delete it before it ends (rollback only stops new objects getting it)"
    )
}

impl ArchiveRetention {
    /// The default retention of the archive bucket.
    pub fn new(ctx: StepContext) -> Self {
        ArchiveRetention { ctx }
    }

    fn account(&self) -> &str {
        &self.ctx.setting.archive.account_id
    }

    fn bucket(&self) -> &str {
        &self.ctx.setting.archive.bucket
    }

    async fn read(&self) -> Result<ObjectLock, TaskError> {
        object_lock(&self.ctx, self.account(), self.bucket()).await
    }

    /// The bucket's Object Lock configuration for plan: a bucket that archive/bucket will create
    /// has Object Lock and no default rule.
    async fn read_for_plan(&self) -> Result<ObjectLock, TaskError> {
        match self.read().await {
            Err(e) if e.code.as_deref() == Some("NoSuchBucket") => Ok(ObjectLock {
                enabled: true,
                rule: None,
            }),
            other => other,
        }
    }

    fn no_object_lock(&self) -> TaskError {
        TaskError::fatal(format!(
            "archive bucket {} has no Object Lock: a default retention cannot be set",
            self.bucket()
        ))
        .with_code("ObjectLockDisabled")
        .with_hint("archive/bucket refuses such a bucket: fix it there first")
    }

    /// Puts the bucket's Object Lock configuration: enabled, with `rule` as its default
    /// retention, or with no default retention when `rule` is `None`.
    async fn put(
        &self,
        ctx: &ApplyCtx<RetentionUndo>,
        rule: Option<&DefaultRule>,
    ) -> Result<(), TaskError> {
        let s3 = self.ctx.s3_for(self.account(), self.bucket()).await?;
        let config = ObjectLockConfiguration::builder()
            .object_lock_enabled(ObjectLockEnabled::Enabled)
            .set_rule(rule.map(|r| {
                ObjectLockRule::builder()
                    .default_retention(r.to_sdk())
                    .build()
            }))
            .build();
        let detail = match rule {
            Some(r) => format!("{} default retention {r}", self.bucket()),
            None => format!("{} no default retention", self.bucket()),
        };
        mutate(
            ctx,
            self.account(),
            "s3",
            "PutObjectLockConfiguration",
            &detail,
            s3.put_object_lock_configuration()
                .bucket(self.bucket())
                .expected_bucket_owner(self.account())
                .object_lock_configuration(config)
                .send(),
        )
        .await
        .map(|_| ())
        .map_err(|e| classify("PutObjectLockConfiguration", self.bucket(), e, &[]))
    }

    fn outputs(&self) -> RetentionOutput {
        RetentionOutput {
            bucket: self.bucket().to_string(),
            rule: self
                .ctx
                .setting
                .archive
                .retention
                .as_ref()
                .map(DefaultRule::of),
        }
    }
}

#[async_trait]
impl Task for ArchiveRetention {
    type Undo = RetentionUndo;
    type Output = RetentionOutput;

    fn describe(&self) -> String {
        match &self.ctx.setting.archive.retention {
            Some(r) => format!(
                "default Object Lock retention of {}: {} {}",
                self.bucket(),
                r.mode.as_str(),
                r.period
            ),
            None => format!(
                "default Object Lock retention of {} (none in the inventory)",
                self.bucket()
            ),
        }
    }

    async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
        let lock = self.read_for_plan().await?;
        let Some(want) = &self.ctx.setting.archive.retention else {
            return Ok(Plan::new(PlanAction::NoOp).note(match &lock.rule {
                Some(rule) => format!(
                    "[archive] retention is not set: the bucket's default retention ({rule}) is kept as it is"
                ),
                None => "Object Lock protects nothing until a default retention is set: [archive] retention is not set and the bucket has none".to_string(),
            }));
        };
        if !lock.enabled {
            return Ok(Plan::new(PlanAction::Unknown).note(
                "known once the bucket has Object Lock (archive/bucket refuses it without)",
            ));
        }
        let changes = drift(want, lock.rule.as_ref());
        if changes.is_empty() {
            return Ok(Plan::new(PlanAction::NoOp));
        }
        let action = match lock.rule {
            None => PlanAction::Create,
            Some(_) => PlanAction::Update,
        };
        let plan = Plan::new(action).changes(changes);
        Ok(match want.mode {
            RetentionMode::Compliance => plan.note(compliance_warning(want.period)),
            RetentionMode::Governance => plan,
        })
    }

    async fn apply(
        &self,
        ctx: &ApplyCtx<RetentionUndo>,
    ) -> Result<Applied<RetentionOutput>, TaskError> {
        let Some(want) = &self.ctx.setting.archive.retention else {
            return Ok(Applied::unchanged(self.outputs()));
        };
        let lock = self.read().await?;
        if !lock.enabled {
            return Err(self.no_object_lock());
        }
        if drift(want, lock.rule.as_ref()).is_empty() {
            return Ok(Applied::unchanged(self.outputs()));
        }
        let wrote = DefaultRule::of(want);
        ctx.record_undo(RetentionUndo {
            previous: lock.rule,
            wrote: wrote.clone(),
        })
        .await?;
        self.put(ctx, Some(&wrote)).await?;
        if want.mode == RetentionMode::Compliance {
            ctx.note(format!(
                "default retention {wrote} set on {}: {}",
                self.bucket(),
                compliance_warning(want.period)
            ));
        }
        Ok(Applied::changed(self.outputs()))
    }

    async fn rollback(
        &self,
        undo: Option<RetentionUndo>,
        ctx: &ApplyCtx<RetentionUndo>,
    ) -> Result<RolledBack, TaskError> {
        let Some(undo) = undo else {
            return Ok(RolledBack::default());
        };
        let bucket = self.bucket();
        let live = match self.read().await {
            Ok(lock) => lock.rule,
            Err(e) if e.code.as_deref() == Some("NoSuchBucket") => {
                return Ok(RolledBack::kept(format!("bucket {bucket} is already gone")));
            }
            Err(e) => return Err(e),
        };
        if live == undo.previous {
            return Ok(RolledBack::default());
        }
        if live.as_ref() != Some(&undo.wrote) {
            let now = live.map_or_else(|| "none".to_string(), |r| r.to_string());
            return Ok(RolledBack::kept(format!(
                "default retention of {bucket} kept: it is {now} now, not the {} this run set (changed since)",
                undo.wrote
            )));
        }
        self.put(ctx, undo.previous.as_ref()).await?;
        let stay = format!(
            "objects written while it was set stay locked under {} until their own retain-until dates",
            undo.wrote
        );
        Ok(RolledBack::undone(match &undo.previous {
            None => format!(
                "default retention {} removed from {bucket} (it had none before); {stay}",
                undo.wrote
            ),
            Some(previous) => format!(
                "default retention of {bucket} returned to {previous} (was {}); {stay}",
                undo.wrote
            ),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retention(mode: RetentionMode, period: RetentionPeriod) -> Retention {
        Retention { mode, period }
    }

    fn rule(mode: &str, days: Option<i32>, years: Option<i32>) -> DefaultRule {
        DefaultRule {
            mode: mode.into(),
            days,
            years,
        }
    }

    fn fields(changes: &[Change]) -> Vec<(&str, Option<&str>, &str)> {
        changes
            .iter()
            .map(|c| (c.field.as_str(), c.from.as_deref(), c.to.as_str()))
            .collect()
    }

    #[test]
    fn no_rule_yet_is_every_field_to_set() {
        let want = retention(RetentionMode::Governance, RetentionPeriod::Days(30));
        assert_eq!(
            fields(&drift(&want, None)),
            [
                ("Rule.DefaultRetention.Mode", None, "GOVERNANCE"),
                ("Rule.DefaultRetention.Days", None, "30"),
            ]
        );
    }

    #[test]
    fn the_same_rule_is_no_change_and_days_are_not_years() {
        let want = retention(RetentionMode::Compliance, RetentionPeriod::Years(7));
        assert!(drift(&want, Some(&rule("COMPLIANCE", None, Some(7)))).is_empty());
        assert_eq!(
            fields(&drift(&want, Some(&rule("COMPLIANCE", Some(2555), None)))),
            [
                ("Rule.DefaultRetention.Days", Some("2555"), "(absent)"),
                ("Rule.DefaultRetention.Years", None, "7"),
            ]
        );
        assert_eq!(
            fields(&drift(&want, Some(&rule("GOVERNANCE", None, Some(7))))),
            [(
                "Rule.DefaultRetention.Mode",
                Some("GOVERNANCE"),
                "COMPLIANCE"
            )]
        );
    }

    #[test]
    fn the_rule_reads_as_the_inventory_wrote_it() {
        let r = DefaultRule::of(&retention(
            RetentionMode::Governance,
            RetentionPeriod::Days(1),
        ));
        assert_eq!(r, rule("GOVERNANCE", Some(1), None));
        assert_eq!(r.to_string(), "GOVERNANCE 1 day");
        assert_eq!(DefaultRule::from_sdk(&r.to_sdk()), r);
        assert_eq!(
            rule("COMPLIANCE", None, Some(7)).to_string(),
            "COMPLIANCE 7 years"
        );
    }

    #[test]
    fn the_compliance_warning_names_the_root_user_and_the_period() {
        let warning = compliance_warning(RetentionPeriod::Years(7));
        assert!(
            warning.contains("root user") && warning.contains("7 years"),
            "{warning}"
        );
    }
}
