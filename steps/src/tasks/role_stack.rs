//! `S/role-stack`: the article's CloudFormation stack that creates the replication role.
//!
//! A missing stack is created (`CAPABILITY_NAMED_IAM`) and waited for; one in progress is waited
//! for; one in `ROLLBACK_COMPLETE` (a failed creation) is deleted and created again; a complete
//! one is updated when its template or parameters differ, and left alone otherwise. Failures
//! report the stack's failure events.
//!
//! Two resources, each read once and compared once: the stack ([`Phase`], and the template's
//! differences), and its role ([`read_role`], [`RoleDocs::drift`]), whose documents can be
//! edited outside CloudFormation (which does not see it). Plan, apply and verify use the same
//! comparisons.

use super::{SourceNodes, StepContext, call, mutate};
use crate::drift::Finding;
use crate::errors::{classify, service_code};
use crate::logs::SourceLogs;
use crate::policy;
use crate::spec::SourceSpec;
use crate::template::{resolved_inline_policy, role_template, trust_policy};
use async_trait::async_trait;
use aws_sdk_cloudformation::types::{Capability, Parameter, Stack, StackStatus, Tag};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Instant;
use trailhub_engine::{
    Applied, ApplyCtx, Change, Plan, PlanAction, PlanCtx, RolledBack, Task, TaskError,
};

/// The inline policy's name in the article's template.
pub(crate) const INLINE_POLICY: &str = "S3ReplicationPolicy";

/// Creates or updates a source account's role stack.
#[derive(Debug)]
pub struct RoleStack {
    ctx: StepContext,
    source: SourceSpec,
    nodes: SourceNodes,
}

/// What the role stack's apply found before it changed anything: what rollback restores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RoleStackUndo {
    /// There was no stack (or a failed creation): rollback deletes the stack trailhub created,
    /// and its role with it, once the live stack is shown to be that one.
    Created {
        /// The StackId CreateStack answered (`None` until it answered, and in journals of
        /// before it was recorded): a stack of the same name with another id is not deleted.
        #[serde(default)]
        stack_id: Option<String>,
    },
    /// The stack existed with another template or parameters: rollback puts them back.
    Template {
        /// The earlier template's body (`None` when CloudFormation returned none).
        template: Option<String>,
        /// The earlier parameters, `(key, value)`.
        parameters: Vec<(String, String)>,
    },
    /// The stack was as wanted, but its role's documents had been edited by hand: rollback
    /// puts those documents back.
    RoleDocuments {
        /// The inline policy found (`None`: absent or unreadable).
        inline: Option<Value>,
        /// The trust policy found (`None`: unreadable).
        trust: Option<Value>,
    },
}

/// The replication role, as the stack made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleStackOutput {
    /// The role's ARN (the stack's `ReplicationRoleArn` output, or the role's own).
    pub role_arn: String,
    /// The role's name.
    pub role_name: String,
    /// The stack's id.
    pub stack_id: Option<String>,
    /// The role S3 Batch Replication assumes (`trailhub backfill`), from the stack's
    /// `BackfillRoleArn` output (`None` for stacks made before it was in the template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill_role_arn: Option<String>,
}

impl RoleStackOutput {
    /// The role's ARN, once it is checked to be the one the inventory names:
    /// `arn:<partition>:iam::<account>:role/<role_name>`. The stack lives in the member's
    /// account, whose owner can make it output any ARN; only the expected one is ever granted
    /// in the archive (or named in a rule), else the account fails naming both.
    pub(crate) fn checked_role_arn(
        &self,
        ctx: &StepContext,
        source: &SourceSpec,
    ) -> Result<String, TaskError> {
        let want = ctx.setting.role_arn(&source.account_id, &source.role_name);
        if self.role_arn == want {
            return Ok(want);
        }
        Err(TaskError::fatal(format!(
            "stack {} of account {} reports role {}, not {want}: trailhub grants only the role the inventory names",
            source.stack_name, source.account_id, self.role_arn
        ))
        .with_code("UnexpectedRole")
        .with_hint(format!(
            "check who changed stack {} (its ReplicationRoleArn output must be {want}); delete it or fix it, then `trailhub resume`",
            source.stack_name
        )))
    }
}

/// Where a stack stands, as apply and plan treat it.
enum Phase {
    Missing,
    /// Changing, and will settle by itself.
    InProgress(Stack),
    /// A failed creation, to delete and create again.
    RollbackComplete,
    /// Settled: its template and role are compared.
    Complete(Stack),
    /// Anything else (`REVIEW_IN_PROGRESS`, a failed update…): reported, not touched.
    Stuck(Stack),
}

impl Phase {
    fn of(stack: Option<Stack>) -> Phase {
        match stack {
            None => Phase::Missing,
            Some(s) if in_progress(&s) => Phase::InProgress(s),
            Some(s) if s.stack_status() == Some(&StackStatus::RollbackComplete) => {
                Phase::RollbackComplete
            }
            Some(s) if is_complete(&s) => Phase::Complete(s),
            Some(s) => Phase::Stuck(s),
        }
    }
}

/// A policy document as IAM holds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Doc {
    Absent,
    Unreadable,
    Json(Value),
}

impl Doc {
    fn json(&self) -> Option<&Value> {
        match self {
            Doc::Json(v) => Some(v),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Doc::Absent => "(none)".into(),
            Doc::Unreadable => "(unreadable)".into(),
            Doc::Json(v) => v.to_string(),
        }
    }

    /// A document as IAM returns it: URL-encoded JSON.
    fn decoded(text: &str) -> Doc {
        percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .map_or(Doc::Unreadable, Doc::Json)
    }

    /// Whether the document means `want` (principal and action lists compared as sets).
    fn means(&self, want: &Value) -> bool {
        self.json()
            .is_some_and(|v| policy::normalize(v) == policy::normalize(want))
    }
}

/// The role as IAM holds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RoleDocs {
    arn: String,
    trust: Doc,
    inline: Doc,
}

/// One way the role differs from the template's.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RoleField {
    Trust(Value),
    Inline(Value),
    Arn(String),
}

impl RoleDocs {
    /// How the role differs from what the template makes for `source` (and, when given, from
    /// the ARN the stack reported): the role's one comparison.
    pub(crate) fn drift(
        &self,
        ctx: &StepContext,
        source: &SourceSpec,
        logs: &SourceLogs,
        arn: Option<&str>,
    ) -> Vec<RoleField> {
        let mut out = Vec::new();
        let trust = trust_policy(&ctx.setting, source);
        if !self.trust.means(&trust) {
            out.push(RoleField::Trust(trust));
        }
        let inline = resolved_inline_policy(&ctx.setting, source, logs);
        if !self.inline.means(&inline) {
            out.push(RoleField::Inline(inline));
        }
        if let Some(arn) = arn.filter(|a| *a != self.arn) {
            out.push(RoleField::Arn(arn.to_string()));
        }
        out
    }

    fn finding(&self, account: &str, resource: &str, field: RoleField) -> Finding {
        let finding = |name: &str, want: String, got: String| {
            Finding::new(account, resource, name, want, got)
        };
        match field {
            RoleField::Trust(want) => finding(
                "AssumeRolePolicyDocument",
                want.to_string(),
                self.trust.describe(),
            ),
            RoleField::Inline(_) if self.inline == Doc::Absent => {
                finding(INLINE_POLICY, "present".into(), "(none)".into())
            }
            RoleField::Inline(want) => {
                finding(INLINE_POLICY, want.to_string(), self.inline.describe())
            }
            RoleField::Arn(want) => finding("Arn", want, self.arn.clone()),
        }
    }
}

/// Reads the replication role (GetRole, then its inline policy); `None` when it does not exist.
pub(crate) async fn read_role(
    ctx: &StepContext,
    source: &SourceSpec,
) -> Result<Option<RoleDocs>, TaskError> {
    let account = source.account_id.as_str();
    let role = source.role_name.as_str();
    let clients = ctx.accounts.get(account).await?;
    let got = call(
        account,
        "iam",
        "GetRole",
        role,
        clients.iam.get_role().role_name(role).send(),
    )
    .await;
    let (arn, trust) = match got {
        Ok(out) => {
            let role = out.role();
            let trust = role
                .and_then(|r| r.assume_role_policy_document())
                .map_or(Doc::Unreadable, Doc::decoded);
            (role.map(|r| r.arn().to_string()).unwrap_or_default(), trust)
        }
        Err(e) if service_code(&e) == Some("NoSuchEntity") => {
            ctx.documents.no_role(&ctx.setting.role_arn(account, role));
            return Ok(None);
        }
        Err(e) => return Err(classify("GetRole", role, e, &[])),
    };
    let inline = call(
        account,
        "iam",
        "GetRolePolicy",
        role,
        clients
            .iam
            .get_role_policy()
            .role_name(role)
            .policy_name(INLINE_POLICY)
            .send(),
    )
    .await;
    let inline = match inline {
        Ok(out) => Doc::decoded(out.policy_document()),
        Err(e) if service_code(&e) == Some("NoSuchEntity") => Doc::Absent,
        Err(e) => return Err(classify("GetRolePolicy", role, e, &[])),
    };
    let inline_docs = match &inline {
        Doc::Absent => Vec::new(),
        other => vec![(INLINE_POLICY.to_string(), other.json().cloned())],
    };
    ctx.documents.role(&arn, trust.json().cloned(), inline_docs);
    Ok(Some(RoleDocs { arn, trust, inline }))
}

/// The role stack's drift as verify reports it: the stack's status, and the role's documents
/// and ARN (`role_arn`: what the stack reported, or the ARN the name implies).
pub(crate) async fn findings(
    ctx: &StepContext,
    source: &SourceSpec,
    logs: &SourceLogs,
    role_arn: &str,
) -> Result<Vec<Finding>, TaskError> {
    let account = source.account_id.as_str();
    let (stack, role) = tokio::join!(describe_stack(ctx, source), read_role(ctx, source));
    let mut out = Vec::new();
    let role_res = format!("role {}", source.role_name);
    match role? {
        None => out.push(Finding::new(account, &role_res, "exists", "true", "false")),
        Some(docs) => out.extend(
            docs.drift(ctx, source, logs, Some(role_arn))
                .into_iter()
                .map(|f| docs.finding(account, &role_res, f)),
        ),
    }
    let stack_res = format!("stack {}", source.stack_name);
    match stack? {
        None => out.push(Finding::new(account, &stack_res, "exists", "true", "false")),
        Some(s)
            if !matches!(
                s.stack_status(),
                Some(StackStatus::CreateComplete | StackStatus::UpdateComplete)
            ) =>
        {
            out.push(Finding::new(
                account,
                &stack_res,
                "StackStatus",
                "CREATE_COMPLETE or UPDATE_COMPLETE",
                status(Some(&s)),
            ))
        }
        Some(_) => {}
    }
    Ok(out)
}

/// The stack, `None` when it does not exist.
async fn describe_stack(
    ctx: &StepContext,
    source: &SourceSpec,
) -> Result<Option<Stack>, TaskError> {
    let name = source.stack_name.as_str();
    let clients = ctx.accounts.get(&source.account_id).await?;
    let result = call(
        &source.account_id,
        "cloudformation",
        "DescribeStacks",
        name,
        clients.cfn.describe_stacks().stack_name(name).send(),
    )
    .await;
    match result {
        Ok(out) => Ok(out.stacks().first().cloned()),
        // CloudFormation models no "stack not found" error: DescribeStacks by name answers
        // ValidationError, which for a valid name (checked by the inventory) means absent.
        Err(e) if service_code(&e) == Some("ValidationError") => Ok(None),
        Err(e) => Err(classify("DescribeStacks", name, e, &[])),
    }
}

/// What apply does next once the stack is settled and compared.
enum Next {
    Finished(Applied<RoleStackOutput>),
    /// The stack was deleted (its role was gone): create it again.
    Again,
}

impl RoleStack {
    /// The role stack of `source`; the logs it grants come from `nodes.bucket_check`.
    pub fn new(ctx: StepContext, source: SourceSpec, nodes: SourceNodes) -> Self {
        RoleStack { ctx, source, nodes }
    }

    fn name(&self) -> &str {
        &self.source.stack_name
    }

    fn account(&self) -> &str {
        &self.source.account_id
    }

    /// Why the live stack is not the one trailhub created (`None`: it is): its StackId differs
    /// from the one CreateStack answered or, where none was journaled (a crash right after
    /// CreateStack, an older journal), it does not carry this run's tag.
    fn not_ours(&self, live: &Stack, created: Option<&str>, run: &str) -> Option<String> {
        let live_id = live.stack_id().unwrap_or_default();
        let ours = match created {
            Some(id) => id == live_id,
            None => {
                let tags: Vec<(&str, &str)> = live
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?, t.value()?)))
                    .collect();
                crate::tags::made_by(&tags, run)
            }
        };
        (!ours).then(|| {
            format!(
                "stack {} kept: it is not the one trailhub created (StackId {live_id}{})",
                self.name(),
                created.map_or_else(
                    || format!(", without the tag {}={run}", crate::tags::RUN),
                    |id| format!(", trailhub created {id}")
                )
            )
        })
    }

    /// Polls until the stack is no longer changing; `None` once it is gone.
    async fn settle(&self) -> Result<Option<Stack>, TaskError> {
        let started = Instant::now();
        loop {
            let stack = describe_stack(&self.ctx, &self.source).await?;
            match &stack {
                Some(s) if in_progress(s) => {}
                _ => return Ok(stack),
            }
            if started.elapsed() > self.ctx.stack_timeout {
                return Err(TaskError::retryable(format!(
                    "stack {} in account {} still {} after {:?}",
                    self.name(),
                    self.account(),
                    status(stack.as_ref()),
                    self.ctx.stack_timeout
                ))
                .with_code("StackTimeout"));
            }
            tokio::time::sleep(self.ctx.stack_poll).await;
        }
    }

    async fn failure_events(&self) -> String {
        let Ok(clients) = self.ctx.accounts.get(self.account()).await else {
            return String::new();
        };
        let events = call(
            self.account(),
            "cloudformation",
            "DescribeStackEvents",
            self.name(),
            clients
                .cfn
                .describe_stack_events()
                .stack_name(self.name())
                .send(),
        )
        .await;
        let Ok(events) = events else {
            return String::new();
        };
        let reasons: Vec<String> = events
            .stack_events()
            .iter()
            .filter(|e| {
                e.resource_status()
                    .is_some_and(|s| s.as_str().ends_with("FAILED"))
            })
            .take(5)
            .map(|e| {
                format!(
                    "{} {}: {}",
                    e.logical_resource_id().unwrap_or("?"),
                    e.resource_status().map(|s| s.as_str()).unwrap_or("?"),
                    e.resource_status_reason().unwrap_or("")
                )
            })
            .collect();
        if reasons.is_empty() {
            String::new()
        } else {
            format!("; stack events: {}", reasons.join("; "))
        }
    }

    async fn failed(&self, stack: Option<&Stack>, doing: &str) -> TaskError {
        if stack.and_then(|s| s.stack_status()) == Some(&StackStatus::ReviewInProgress) {
            return TaskError::fatal(format!(
                "stack {} in account {} is REVIEW_IN_PROGRESS: it holds a change set that was never executed",
                self.name(),
                self.account()
            ))
            .with_code("REVIEW_IN_PROGRESS")
            .with_hint("execute or delete the change set (or delete the stack), then `trailhub resume`");
        }
        let events = self.failure_events().await;
        TaskError::fatal(format!(
            "stack {} in account {} ended {} after {doing}{events}",
            self.name(),
            self.account(),
            status(stack)
        ))
        .with_code(status(stack))
        .with_hint("read the stack events above, fix the cause (an existing role of that name, permissions), then `trailhub resume`")
    }

    /// How the stack's template and parameters differ from the article's (the stack's one
    /// comparison), with the live template's body (an update's undo record keeps it).
    async fn template_drift(
        &self,
        stack: &Stack,
        logs: &SourceLogs,
    ) -> Result<(Vec<Change>, Option<String>), TaskError> {
        let (template, params) = role_template(&self.ctx.setting, &self.source, logs);
        let clients = self.ctx.accounts.get(self.account()).await?;
        let live = call(
            self.account(),
            "cloudformation",
            "GetTemplate",
            self.name(),
            clients.cfn.get_template().stack_name(self.name()).send(),
        )
        .await
        .map_err(|e| classify("GetTemplate", self.name(), e, &[]))?;
        let body = live.template_body().map(str::to_string);
        let mut changes = Vec::new();
        let live_json: Option<Value> = body.as_deref().and_then(|b| serde_json::from_str(b).ok());
        let want_json: Value = serde_json::from_str(&template).expect("our template is JSON");
        if live_json.as_ref() != Some(&want_json) {
            changes.push(Change::new(
                "TemplateBody",
                Some("(differs)".into()),
                "the article's template",
            ));
        }
        for (key, value) in params {
            let live_value = parameter(stack, &key);
            if live_value.as_deref() != Some(value.as_str()) {
                changes.push(Change::new(format!("Parameters.{key}"), live_value, value));
            }
        }
        Ok((changes, body))
    }

    /// What the stack made: the role's ARN from the stack's output or, for a stack without that
    /// output, from the role itself (never a guess from its name).
    async fn outputs(&self, stack: &Stack) -> Result<RoleStackOutput, TaskError> {
        let output = |key: &str| {
            stack
                .outputs()
                .iter()
                .find(|o| o.output_key() == Some(key))
                .and_then(|o| o.output_value())
                .map(str::to_string)
        };
        let role_arn = match output("ReplicationRoleArn") {
            Some(arn) => arn,
            None => match read_role(&self.ctx, &self.source).await? {
                Some(docs) => docs.arn,
                None => {
                    return Err(TaskError::fatal(format!(
                        "stack {} has no ReplicationRoleArn output and role {} does not exist",
                        self.name(),
                        self.source.role_name
                    ))
                    .with_code("RoleMissing"));
                }
            },
        };
        Ok(RoleStackOutput {
            role_arn,
            role_name: output("ReplicationRoleName")
                .unwrap_or_else(|| self.source.role_name.clone()),
            stack_id: stack.stack_id().map(str::to_string),
            backfill_role_arn: output("BackfillRoleArn"),
        })
    }

    /// Creates the stack; `Ok(false)` when it exists already (a CreateStack of an earlier
    /// attempt still in flight when its process died, say), to be waited for and compared.
    /// Creates the stack, tagged with trailhub's marks (which CloudFormation gives its role
    /// too); `Ok(None)` when a stack of the name already exists, else the new StackId.
    async fn create(
        &self,
        ctx: &ApplyCtx<RoleStackUndo>,
        logs: &SourceLogs,
    ) -> Result<Option<String>, TaskError> {
        let (template, params) = role_template(&self.ctx.setting, &self.source, logs);
        let clients = self.ctx.accounts.get(self.account()).await?;
        let tags: Vec<Tag> = crate::tags::marks(ctx.run())
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let request = clients
            .cfn
            .create_stack()
            .stack_name(self.name())
            .template_body(template)
            .capabilities(Capability::CapabilityNamedIam)
            .set_parameters(Some(parameters(params)))
            .set_tags(Some(tags));
        let result = mutate(
            ctx,
            self.account(),
            "cloudformation",
            "CreateStack",
            self.name(),
            request.send(),
        )
        .await;
        match result {
            Ok(out) => Ok(Some(out.stack_id().unwrap_or_default().to_string())),
            Err(e) if service_code(&e) == Some("AlreadyExistsException") => Ok(None),
            Err(e) => Err(classify("CreateStack", self.name(), e, &[])),
        }
    }

    /// Updates the stack to `template`; `Ok(false)` when CloudFormation finds nothing to change.
    async fn update(
        &self,
        ctx: &ApplyCtx<RoleStackUndo>,
        template: String,
        params: Vec<(String, String)>,
    ) -> Result<bool, TaskError> {
        let clients = self.ctx.accounts.get(self.account()).await?;
        let request = clients
            .cfn
            .update_stack()
            .stack_name(self.name())
            .template_body(template)
            .capabilities(Capability::CapabilityNamedIam)
            .set_parameters(Some(parameters(params)));
        match mutate(
            ctx,
            self.account(),
            "cloudformation",
            "UpdateStack",
            self.name(),
            request.send(),
        )
        .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_no_update(&e) => Ok(false),
            Err(e) => Err(classify("UpdateStack", self.name(), e, &[])),
        }
    }

    /// Updates the stack and waits for it; `Ok(None)` when there was nothing to update.
    async fn update_and_wait(
        &self,
        ctx: &ApplyCtx<RoleStackUndo>,
        template: String,
        params: Vec<(String, String)>,
        doing: &str,
    ) -> Result<Option<Stack>, TaskError> {
        if !self.update(ctx, template, params).await? {
            return Ok(None);
        }
        match self.settle().await? {
            Some(u) if u.stack_status() == Some(&StackStatus::UpdateComplete) => Ok(Some(u)),
            other => Err(self.failed(other.as_ref(), doing).await),
        }
    }

    async fn delete(&self, ctx: &ApplyCtx<RoleStackUndo>) -> Result<(), TaskError> {
        let clients = self.ctx.accounts.get(self.account()).await?;
        mutate(
            ctx,
            self.account(),
            "cloudformation",
            "DeleteStack",
            self.name(),
            clients.cfn.delete_stack().stack_name(self.name()).send(),
        )
        .await
        .map_err(|e| classify("DeleteStack", self.name(), e, &[]))?;
        match self.settle().await? {
            None => Ok(()),
            Some(s) if s.stack_status() == Some(&StackStatus::DeleteComplete) => Ok(()),
            Some(s) => Err(self.failed(Some(&s), "DeleteStack").await),
        }
    }

    /// Puts the role's inline and trust policies.
    async fn restore_role(
        &self,
        ctx: &ApplyCtx<RoleStackUndo>,
        inline: &Value,
        trust: &Value,
    ) -> Result<(), TaskError> {
        let clients = self.ctx.accounts.get(self.account()).await?;
        let role = self.source.role_name.as_str();
        mutate(
            ctx,
            self.account(),
            "iam",
            "PutRolePolicy",
            &format!("{role} {INLINE_POLICY}"),
            clients
                .iam
                .put_role_policy()
                .role_name(role)
                .policy_name(INLINE_POLICY)
                .policy_document(inline.to_string())
                .send(),
        )
        .await
        .map_err(|e| classify("PutRolePolicy", role, e, &[]))?;
        mutate(
            ctx,
            self.account(),
            "iam",
            "UpdateAssumeRolePolicy",
            role,
            clients
                .iam
                .update_assume_role_policy()
                .role_name(role)
                .policy_document(trust.to_string())
                .send(),
        )
        .await
        .map_err(|e| classify("UpdateAssumeRolePolicy", role, e, &[]))?;
        Ok(())
    }

    /// A missing stack: created and waited for. `Ok(None)` when another CreateStack got there
    /// first: the caller waits for it and compares it.
    async fn create_and_wait(
        &self,
        ctx: &ApplyCtx<RoleStackUndo>,
        logs: &SourceLogs,
    ) -> Result<Option<Applied<RoleStackOutput>>, TaskError> {
        let undo = ctx
            .record_undo(RoleStackUndo::Created { stack_id: None })
            .await?;
        let Some(stack_id) = self.create(ctx, logs).await? else {
            ctx.note(format!(
                "stack {} appeared meanwhile: waiting for it",
                self.name()
            ));
            return Ok(None);
        };
        // The stack trailhub created, by its id: rollback deletes that one and no other. (An
        // earlier record saying the stack existed stays: that is what rollback restores.)
        if matches!(undo, RoleStackUndo::Created { .. }) && !stack_id.is_empty() {
            ctx.amend_undo(RoleStackUndo::Created {
                stack_id: Some(stack_id),
            })
            .await?;
        }
        match self.settle().await? {
            Some(s) if s.stack_status() == Some(&StackStatus::CreateComplete) => {
                Ok(Some(Applied::changed(self.outputs(&s).await?)))
            }
            other => Err(self.failed(other.as_ref(), "CreateStack").await),
        }
    }

    /// A settled stack: if its role is gone (deleted outside CloudFormation), deleted to be
    /// created again, the undo record keeping its earlier template so that rollback returns the
    /// stack to it (with a role); else updated when its template differs, else its role
    /// restored when edited by hand.
    async fn converge(
        &self,
        ctx: &ApplyCtx<RoleStackUndo>,
        stack: &Stack,
        logs: &SourceLogs,
    ) -> Result<Next, TaskError> {
        let (changes, live_template) = self.template_drift(stack, logs).await?;
        let earlier = RoleStackUndo::Template {
            template: live_template,
            parameters: stack
                .parameters()
                .iter()
                .filter_map(|p| {
                    Some((
                        p.parameter_key()?.to_string(),
                        p.parameter_value()?.to_string(),
                    ))
                })
                .collect(),
        };
        // The role first: CloudFormation cannot update a role deleted outside it (the update
        // fails on the missing role), so a stack without its role is made again instead.
        let Some(docs) = read_role(&self.ctx, &self.source).await? else {
            ctx.record_undo(earlier).await?;
            ctx.note(format!(
                "role {} of stack {} was deleted outside CloudFormation: deleting the stack to create it again",
                self.source.role_name,
                self.name()
            ));
            self.delete(ctx).await?;
            return Ok(Next::Again);
        };
        if !changes.is_empty() {
            ctx.record_undo(earlier).await?;
            let (template, params) = role_template(&self.ctx.setting, &self.source, logs);
            let updated = self
                .update_and_wait(ctx, template, params, "UpdateStack")
                .await?;
            return Ok(Next::Finished(match updated {
                Some(u) => Applied::changed(self.outputs(&u).await?),
                None => Applied::unchanged(self.outputs(stack).await?),
            }));
        }
        let drift = docs.drift(&self.ctx, &self.source, logs, None);
        if drift.is_empty() {
            return Ok(Next::Finished(Applied::unchanged(
                self.outputs(stack).await?,
            )));
        }
        ctx.record_undo(RoleStackUndo::RoleDocuments {
            inline: docs.inline.json().cloned(),
            trust: docs.trust.json().cloned(),
        })
        .await?;
        let inline = resolved_inline_policy(&self.ctx.setting, &self.source, logs);
        let trust = trust_policy(&self.ctx.setting, &self.source);
        self.restore_role(ctx, &inline, &trust).await?;
        Ok(Next::Finished(Applied::changed(self.outputs(stack).await?)))
    }

    /// The plan: what the stack is and what apply would do with it.
    async fn plan_stack(&self) -> Result<Plan, TaskError> {
        match Phase::of(describe_stack(&self.ctx, &self.source).await?) {
            Phase::Missing => Ok(Plan::new(PlanAction::Create)
                .change("StackName", None, self.name())
                .change("RoleName", None, self.source.role_name.clone())),
            Phase::InProgress(s) => Ok(Plan::new(PlanAction::Unknown)
                .note(format!("stack is {}; apply waits for it", status(Some(&s))))),
            Phase::RollbackComplete => Ok(Plan::new(PlanAction::Create)
                .change("StackName", Some("ROLLBACK_COMPLETE".into()), self.name())
                .note("the failed stack is deleted and created again")),
            Phase::Complete(s) => {
                let logs = self.ctx.logs_of(&self.source).await?;
                self.plan_complete(&s, &logs).await
            }
            Phase::Stuck(s) => Err(self.failed(Some(&s), "an earlier change").await),
        }
    }

    /// The plan of a settled stack: its template's differences, else its role's.
    async fn plan_complete(&self, stack: &Stack, logs: &SourceLogs) -> Result<Plan, TaskError> {
        let (changes, _) = self.template_drift(stack, logs).await?;
        if !changes.is_empty() {
            return Ok(Plan::new(PlanAction::Update).changes(changes));
        }
        let Some(docs) = read_role(&self.ctx, &self.source).await? else {
            return Ok(Plan::new(PlanAction::Create)
                .change("RoleName", None, self.source.role_name.clone())
                .note(
                    "the stack's role was deleted by hand: the stack is deleted and created again",
                ));
        };
        let drift = docs.drift(&self.ctx, &self.source, logs, None);
        if drift.is_empty() {
            return Ok(Plan::new(PlanAction::NoOp));
        }
        let fields = drift.iter().map(|f| match f {
            RoleField::Trust(_) => "AssumeRolePolicyDocument",
            RoleField::Inline(_) | RoleField::Arn(_) => INLINE_POLICY,
        });
        Ok(Plan::new(PlanAction::Update)
            .note(
                "the role was edited outside CloudFormation: restored to the template's documents",
            )
            .changes(
                fields.map(|f| Change::new(f, Some("(edited)".into()), "the article's document")),
            ))
    }
}

/// A parameter's value on a live stack.
fn parameter(stack: &Stack, key: &str) -> Option<String> {
    stack
        .parameters()
        .iter()
        .find(|p| p.parameter_key() == Some(key))
        .and_then(|p| p.parameter_value())
        .map(str::to_string)
}

fn parameters(params: Vec<(String, String)>) -> Vec<Parameter> {
    params
        .into_iter()
        .map(|(k, v)| {
            Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build()
        })
        .collect()
}

/// CloudFormation answers an update with nothing to change with a `ValidationError` whose only
/// distinguishing mark is its message; it models no code of its own, so this one case reads it.
fn is_no_update<E: aws_smithy_types::error::metadata::ProvideErrorMetadata>(
    e: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> bool {
    match e {
        aws_smithy_runtime_api::client::result::SdkError::ServiceError(se) => {
            se.err().code() == Some("ValidationError")
                && se
                    .err()
                    .message()
                    .is_some_and(|m| m.contains("No updates are to be performed"))
        }
        _ => false,
    }
}

fn status(stack: Option<&Stack>) -> String {
    stack
        .and_then(|s| s.stack_status())
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|| "DELETED".into())
}

/// Whether the stack is changing and will settle by itself. `REVIEW_IN_PROGRESS` (a change set
/// created and never executed) never does: it is reported as a failure instead of waited for.
fn in_progress(stack: &Stack) -> bool {
    stack.stack_status().is_some_and(|s| {
        s.as_str().ends_with("_IN_PROGRESS") && *s != StackStatus::ReviewInProgress
    })
}

fn is_complete(stack: &Stack) -> bool {
    matches!(
        stack.stack_status(),
        Some(
            StackStatus::CreateComplete
                | StackStatus::UpdateComplete
                | StackStatus::UpdateRollbackComplete
                | StackStatus::ImportComplete
                | StackStatus::ImportRollbackComplete
        )
    )
}

#[async_trait]
impl Task for RoleStack {
    type Undo = RoleStackUndo;
    type Output = RoleStackOutput;

    fn describe(&self) -> String {
        format!(
            "stack {} creating role {} in account {}",
            self.source.stack_name, self.source.role_name, self.source.account_id
        )
    }

    async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
        let plan = self.plan_stack().await;
        // What apply leaves is the template's role, whatever the stack or role is now: the
        // documents plan's delivery check evaluates (none while a change is under way).
        let desired = self.ctx.documents.desired(&self.source.account_id);
        match &plan {
            Ok(p) if p.action == PlanAction::Unknown => {
                desired.unknowable("the stack change in progress completes")
            }
            Ok(_) => {
                let logs = self.ctx.logs_of(&self.source).await?;
                desired.role(
                    &self
                        .ctx
                        .setting
                        .role_arn(&self.source.account_id, &self.source.role_name),
                    Some(trust_policy(&self.ctx.setting, &self.source)),
                    vec![(
                        INLINE_POLICY.to_string(),
                        Some(resolved_inline_policy(
                            &self.ctx.setting,
                            &self.source,
                            &logs,
                        )),
                    )],
                );
            }
            Err(_) => {}
        }
        plan
    }

    async fn apply(
        &self,
        ctx: &ApplyCtx<RoleStackUndo>,
    ) -> Result<Applied<RoleStackOutput>, TaskError> {
        let logs: SourceLogs = ctx.input(&self.nodes.bucket_check)?;
        let mut changed = false;
        // At most: wait for a change in progress, delete a failed creation, create.
        for _ in 0..4 {
            match Phase::of(self.settle().await?) {
                Phase::Missing => match self.create_and_wait(ctx, &logs).await? {
                    Some(applied) => return Ok(applied),
                    None => changed = true,
                },
                Phase::RollbackComplete => {
                    ctx.record_undo(RoleStackUndo::Created { stack_id: None })
                        .await?;
                    ctx.note(format!(
                        "stack {} was ROLLBACK_COMPLETE: deleting it to create it again",
                        self.name()
                    ));
                    self.delete(ctx).await?;
                    changed = true;
                }
                Phase::Complete(s) => match self.converge(ctx, &s, &logs).await? {
                    Next::Finished(applied) => {
                        return Ok(Applied {
                            changed: applied.changed || changed,
                            outputs: applied.outputs,
                        });
                    }
                    Next::Again => changed = true,
                },
                Phase::InProgress(s) | Phase::Stuck(s) => {
                    return Err(self.failed(Some(&s), "an earlier change").await);
                }
            }
        }
        Err(TaskError::retryable(format!(
            "stack {} did not settle",
            self.name()
        )))
    }

    async fn rollback(
        &self,
        undo: Option<RoleStackUndo>,
        ctx: &ApplyCtx<RoleStackUndo>,
    ) -> Result<RolledBack, TaskError> {
        let Some(undo) = undo else {
            return Ok(RolledBack::default());
        };
        let Some(live) = self.settle().await? else {
            return Ok(RolledBack::default());
        };
        let role = &self.source.role_name;
        match undo {
            RoleStackUndo::Created { stack_id } => {
                if let Some(other) = self.not_ours(&live, stack_id.as_deref(), ctx.run()) {
                    return Ok(RolledBack::kept(other));
                }
                self.delete(ctx).await?;
                Ok(RolledBack::undone(format!(
                    "stack {} deleted, and role {role} with it",
                    self.name()
                )))
            }
            RoleStackUndo::RoleDocuments {
                inline: Some(inline),
                trust: Some(trust),
            } => {
                self.restore_role(ctx, &inline, &trust).await?;
                Ok(RolledBack::undone(format!(
                    "role {role} returned to its earlier documents"
                )))
            }
            RoleStackUndo::RoleDocuments { .. } => Ok(RolledBack::kept(format!(
                "role {role} keeps the template's documents: its earlier ones could not be read when they were replaced"
            ))),
            RoleStackUndo::Template { template: None, .. } => Ok(RolledBack::kept(format!(
                "stack {} keeps trailhub's template: its earlier template could not be read",
                self.name()
            ))),
            RoleStackUndo::Template {
                template: Some(template),
                parameters,
            } => {
                let doing = "UpdateStack (rollback)";
                match self
                    .update_and_wait(ctx, template, parameters, doing)
                    .await?
                {
                    Some(_) => Ok(RolledBack::undone(format!(
                        "stack {} returned to its earlier template",
                        self.name()
                    ))),
                    None => Ok(RolledBack::default()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::Accounts;
    use crate::spec::Setting;

    #[test]
    fn only_the_role_the_inventory_names_is_granted() {
        let setting = Setting::example();
        let ctx = StepContext::new(setting, Accounts::with_clients(Vec::new()));
        let source = SourceSpec::example();
        let mut out = RoleStackOutput {
            role_arn: "arn:aws:iam::222222222222:role/S3ReplicationRole".into(),
            role_name: "S3ReplicationRole".into(),
            stack_id: None,
            backfill_role_arn: None,
        };
        assert_eq!(
            out.checked_role_arn(&ctx, &source).ok().as_deref(),
            Some("arn:aws:iam::222222222222:role/S3ReplicationRole")
        );
        for forged in [
            "arn:aws:iam::333333333333:role/S3ReplicationRole",
            "arn:aws:iam::222222222222:role/Admin",
            "arn:aws:iam::222222222222:root",
        ] {
            out.role_arn = forged.into();
            let e = out.checked_role_arn(&ctx, &source).expect_err(forged);
            assert_eq!(e.code.as_deref(), Some("UnexpectedRole"));
            assert!(e.message.contains(forged), "{}", e.message);
        }
    }
}
