//! `S/role-stack`: the article's CloudFormation stack that creates the replication role.
//!
//! A missing stack is created (`CAPABILITY_NAMED_IAM`) and waited for; one in progress is waited
//! for; one in `ROLLBACK_COMPLETE` (a failed creation) is deleted and created again; a complete
//! one is updated when its template or parameters differ, and left alone otherwise. Failures
//! report the stack's failure events.

use super::{StepContext, call};
use crate::errors::{classify, service_code};
use crate::policy;
use crate::spec::SourceSpec;
use crate::template::{resolved_inline_policy, role_template, trust_policy};

/// The inline policy's name in the article's template.
const INLINE_POLICY: &str = "S3ReplicationPolicy";
use async_trait::async_trait;
use aws_sdk_cloudformation::types::{Capability, Parameter, Stack, StackStatus};
use serde_json::{Value, json};
use std::time::Instant;
use trailhub_engine::{Applied, ApplyCtx, Plan, PlanAction, PlanCtx, RolledBack, Task, TaskError};

/// Creates or updates a source account's role stack.
#[derive(Debug)]
pub struct RoleStack {
    ctx: StepContext,
    source: SourceSpec,
}

enum Desired {
    Same,
    Differs(Vec<(String, Option<String>, String)>),
}

impl RoleStack {
    /// The role stack of `source`.
    pub fn new(ctx: StepContext, source: SourceSpec) -> Self {
        RoleStack { ctx, source }
    }

    fn name(&self) -> &str {
        &self.source.stack_name
    }

    fn account(&self) -> &str {
        &self.source.account_id
    }

    async fn describe_stack(&self) -> Result<Option<Stack>, TaskError> {
        let clients = self.ctx.accounts.get(self.account()).await?;
        let result = call(
            None,
            self.account(),
            "cloudformation",
            "DescribeStacks",
            false,
            self.name(),
            clients.cfn.describe_stacks().stack_name(self.name()).send(),
        )
        .await;
        match result {
            Ok(out) => Ok(out.stacks().first().cloned()),
            // CloudFormation models no "stack not found" error: DescribeStacks by name answers
            // ValidationError, which for a valid name (checked by the inventory) means absent.
            Err(e) if service_code(&e) == Some("ValidationError") => Ok(None),
            Err(e) => Err(classify("DescribeStacks", self.name(), e, &[])),
        }
    }

    /// Polls until the stack is no longer changing; `None` once it is gone.
    async fn settle(&self) -> Result<Option<Stack>, TaskError> {
        let started = Instant::now();
        loop {
            let stack = self.describe_stack().await?;
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
            None,
            self.account(),
            "cloudformation",
            "DescribeStackEvents",
            false,
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

    async fn compare(&self, stack: &Stack) -> Result<Desired, TaskError> {
        let (template, params) = role_template(&self.ctx.setting, &self.source);
        let clients = self.ctx.accounts.get(self.account()).await?;
        let live = call(
            None,
            self.account(),
            "cloudformation",
            "GetTemplate",
            false,
            self.name(),
            clients.cfn.get_template().stack_name(self.name()).send(),
        )
        .await
        .map_err(|e| classify("GetTemplate", self.name(), e, &[]))?;
        let mut changes = Vec::new();
        let live_body = live.template_body().unwrap_or_default();
        let live_json: Option<Value> = serde_json::from_str(live_body).ok();
        let want_json: Value = serde_json::from_str(&template).expect("our template is JSON");
        if live_json.as_ref() != Some(&want_json) {
            changes.push((
                "TemplateBody".to_string(),
                Some("(differs)".to_string()),
                "the article's template".to_string(),
            ));
        }
        for (key, value) in params {
            let live_value = stack
                .parameters()
                .iter()
                .find(|p| p.parameter_key() == Some(key.as_str()))
                .and_then(|p| p.parameter_value())
                .map(str::to_string);
            if live_value.as_deref() != Some(value.as_str()) {
                changes.push((format!("Parameters.{key}"), live_value, value));
            }
        }
        Ok(if changes.is_empty() {
            Desired::Same
        } else {
            Desired::Differs(changes)
        })
    }

    fn outputs(&self, stack: &Stack) -> Value {
        let output = |key: &str| {
            stack
                .outputs()
                .iter()
                .find(|o| o.output_key() == Some(key))
                .and_then(|o| o.output_value())
                .map(str::to_string)
        };
        let role_arn = output("ReplicationRoleArn").unwrap_or_else(|| {
            self.ctx
                .setting
                .role_arn(self.account(), &self.source.role_name)
        });
        let role_name =
            output("ReplicationRoleName").unwrap_or_else(|| self.source.role_name.clone());
        json!({
            "role_arn": role_arn,
            "role_name": role_name,
            "stack_id": stack.stack_id(),
        })
    }

    /// Creates the stack; `Ok(false)` when it exists already (a CreateStack of an earlier
    /// attempt still in flight when its process died, say), to be waited for and compared.
    async fn create(&self, ctx: &ApplyCtx) -> Result<bool, TaskError> {
        let (template, params) = role_template(&self.ctx.setting, &self.source);
        let clients = self.ctx.accounts.get(self.account()).await?;
        let mut request = clients
            .cfn
            .create_stack()
            .stack_name(self.name())
            .template_body(template)
            .capabilities(Capability::CapabilityNamedIam);
        for (k, v) in params {
            request = request.parameters(
                Parameter::builder()
                    .parameter_key(k)
                    .parameter_value(v)
                    .build(),
            );
        }
        let result = call(
            Some(ctx),
            self.account(),
            "cloudformation",
            "CreateStack",
            true,
            self.name(),
            request.send(),
        )
        .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if service_code(&e) == Some("AlreadyExistsException") => Ok(false),
            Err(e) => Err(classify("CreateStack", self.name(), e, &[])),
        }
    }

    async fn update(
        &self,
        ctx: &ApplyCtx,
        template: String,
        params: Vec<(String, String)>,
    ) -> Result<bool, TaskError> {
        let clients = self.ctx.accounts.get(self.account()).await?;
        let mut request = clients
            .cfn
            .update_stack()
            .stack_name(self.name())
            .template_body(template)
            .capabilities(Capability::CapabilityNamedIam);
        for (k, v) in params {
            request = request.parameters(
                Parameter::builder()
                    .parameter_key(k)
                    .parameter_value(v)
                    .build(),
            );
        }
        match call(
            Some(ctx),
            self.account(),
            "cloudformation",
            "UpdateStack",
            true,
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

    async fn delete(&self, ctx: &ApplyCtx) -> Result<(), TaskError> {
        let clients = self.ctx.accounts.get(self.account()).await?;
        call(
            Some(ctx),
            self.account(),
            "cloudformation",
            "DeleteStack",
            true,
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
}

/// How the stack's role differs from the template's (edits made outside CloudFormation, which
/// CloudFormation does not see).
enum RoleDrift {
    Same,
    Missing,
    Differs {
        fields: Vec<String>,
        inline: Option<Value>,
        trust: Option<Value>,
    },
}

fn decode_document(text: &str) -> Option<Value> {
    let decoded = percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()?;
    serde_json::from_str(&decoded).ok()
}

impl RoleStack {
    async fn role_drift(&self) -> Result<RoleDrift, TaskError> {
        let clients = self.ctx.accounts.get(self.account()).await?;
        let role = self.source.role_name.as_str();
        let got = call(
            None,
            self.account(),
            "iam",
            "GetRole",
            false,
            role,
            clients.iam.get_role().role_name(role).send(),
        )
        .await;
        let trust = match got {
            Ok(out) => out
                .role()
                .and_then(|r| r.assume_role_policy_document())
                .and_then(decode_document),
            Err(e) if service_code(&e) == Some("NoSuchEntity") => return Ok(RoleDrift::Missing),
            Err(e) => return Err(classify("GetRole", role, e, &[])),
        };
        let inline = call(
            None,
            self.account(),
            "iam",
            "GetRolePolicy",
            false,
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
            Ok(out) => decode_document(out.policy_document()),
            Err(e) if service_code(&e) == Some("NoSuchEntity") => None,
            Err(e) => return Err(classify("GetRolePolicy", role, e, &[])),
        };
        let mut fields = Vec::new();
        let want_trust = trust_policy(&self.ctx.setting, &self.source);
        if trust.as_ref().map(policy::normalize) != Some(policy::normalize(&want_trust)) {
            fields.push("AssumeRolePolicyDocument".to_string());
        }
        let want_inline = resolved_inline_policy(&self.ctx.setting, &self.source);
        if inline.as_ref().map(policy::normalize) != Some(policy::normalize(&want_inline)) {
            fields.push(INLINE_POLICY.to_string());
        }
        Ok(if fields.is_empty() {
            RoleDrift::Same
        } else {
            RoleDrift::Differs {
                fields,
                inline,
                trust,
            }
        })
    }

    /// Puts the role's inline and trust policies: the template's when `None`, else the given ones.
    async fn restore_role(
        &self,
        ctx: &ApplyCtx,
        inline: Option<&Value>,
        trust: Option<&Value>,
    ) -> Result<(), TaskError> {
        let clients = self.ctx.accounts.get(self.account()).await?;
        let role = self.source.role_name.as_str();
        let inline = inline
            .cloned()
            .unwrap_or_else(|| resolved_inline_policy(&self.ctx.setting, &self.source));
        let trust = trust
            .cloned()
            .unwrap_or_else(|| trust_policy(&self.ctx.setting, &self.source));
        call(
            Some(ctx),
            self.account(),
            "iam",
            "PutRolePolicy",
            true,
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
        call(
            Some(ctx),
            self.account(),
            "iam",
            "UpdateAssumeRolePolicy",
            true,
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
    fn describe(&self) -> String {
        format!(
            "stack {} creating role {} in account {}",
            self.source.stack_name, self.source.role_name, self.source.account_id
        )
    }

    async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
        match self.describe_stack().await? {
            None => Ok(Plan::new(PlanAction::Create)
                .change("StackName", None, self.name())
                .change("RoleName", None, self.source.role_name.clone())),
            Some(s) if in_progress(&s) => Ok(Plan::new(PlanAction::Unknown)
                .note(format!("stack is {}; apply waits for it", status(Some(&s))))),
            Some(s) if s.stack_status() == Some(&StackStatus::RollbackComplete) => {
                Ok(Plan::new(PlanAction::Create)
                    .change("StackName", Some("ROLLBACK_COMPLETE".into()), self.name())
                    .note("the failed stack is deleted and created again"))
            }
            Some(s) if is_complete(&s) => match self.compare(&s).await? {
                Desired::Same => match self.role_drift().await? {
                    RoleDrift::Same => Ok(Plan::new(PlanAction::NoOp)),
                    RoleDrift::Missing => Ok(Plan::new(PlanAction::Create)
                        .change("RoleName", None, self.source.role_name.clone())
                        .note("the stack's role was deleted by hand: the stack is deleted and created again")),
                    RoleDrift::Differs { fields, .. } => {
                        let mut plan = Plan::new(PlanAction::Update)
                            .note("the role was edited outside CloudFormation: restored to the template's documents");
                        for f in fields {
                            plan = plan.change(&f, Some("(edited)".into()), "the article's document");
                        }
                        Ok(plan)
                    }
                },
                Desired::Differs(changes) => {
                    let mut plan = Plan::new(PlanAction::Update);
                    for (field, from, to) in changes {
                        plan = plan.change(&field, from, to);
                    }
                    Ok(plan)
                }
            },
            Some(s) => Err(self.failed(Some(&s), "an earlier change").await),
        }
    }

    async fn apply(&self, ctx: &ApplyCtx) -> Result<Applied, TaskError> {
        let mut changed = false;
        // At most: wait for a change in progress, delete a failed creation, create.
        for _ in 0..4 {
            let stack = self.settle().await?;
            match stack {
                None => {
                    ctx.record_undo(json!({ "existed": false })).await?;
                    if !self.create(ctx).await? {
                        ctx.note(format!(
                            "stack {} appeared meanwhile: waiting for it",
                            self.name()
                        ));
                        changed = true;
                        continue;
                    }
                    let created = self.settle().await?;
                    return match created {
                        Some(s) if s.stack_status() == Some(&StackStatus::CreateComplete) => {
                            Ok(Applied::changed(self.outputs(&s)))
                        }
                        other => Err(self.failed(other.as_ref(), "CreateStack").await),
                    };
                }
                Some(s) if s.stack_status() == Some(&StackStatus::RollbackComplete) => {
                    ctx.record_undo(json!({ "existed": false })).await?;
                    ctx.note(format!(
                        "stack {} was ROLLBACK_COMPLETE: deleting it to create it again",
                        self.name()
                    ));
                    self.delete(ctx).await?;
                    changed = true;
                }
                Some(s) if is_complete(&s) => {
                    let Desired::Differs(_) = self.compare(&s).await? else {
                        match self.role_drift().await? {
                            RoleDrift::Same => {}
                            RoleDrift::Missing => {
                                ctx.record_undo(json!({ "existed": false })).await?;
                                ctx.note(format!(
                                    "role {} of stack {} was deleted outside CloudFormation: deleting the stack to create it again",
                                    self.source.role_name,
                                    self.name()
                                ));
                                self.delete(ctx).await?;
                                changed = true;
                                continue;
                            }
                            RoleDrift::Differs { inline, trust, .. } => {
                                ctx.record_undo(json!({ "existed": true, "role_inline": inline, "role_trust": trust }))
                                    .await?;
                                self.restore_role(ctx, None, None).await?;
                                changed = true;
                            }
                        }
                        return Ok(Applied {
                            outputs: self.outputs(&s),
                            changed,
                        });
                    };
                    let clients = self.ctx.accounts.get(self.account()).await?;
                    let old = clients
                        .cfn
                        .get_template()
                        .stack_name(self.name())
                        .send()
                        .await
                        .map_err(|e| classify("GetTemplate", self.name(), e, &[]))?;
                    let old_params: Vec<Value> = s
                        .parameters()
                        .iter()
                        .map(|p| json!([p.parameter_key(), p.parameter_value()]))
                        .collect();
                    ctx.record_undo(json!({
                        "existed": true,
                        "template": old.template_body(),
                        "parameters": old_params,
                    }))
                    .await?;
                    let (template, params) = role_template(&self.ctx.setting, &self.source);
                    if !self.update(ctx, template, params).await? {
                        return Ok(Applied {
                            outputs: self.outputs(&s),
                            changed,
                        });
                    }
                    let updated = self.settle().await?;
                    return match updated {
                        Some(u) if u.stack_status() == Some(&StackStatus::UpdateComplete) => {
                            Ok(Applied::changed(self.outputs(&u)))
                        }
                        other => Err(self.failed(other.as_ref(), "UpdateStack").await),
                    };
                }
                Some(s) => return Err(self.failed(Some(&s), "an earlier change").await),
            }
        }
        Err(TaskError::retryable(format!(
            "stack {} did not settle",
            self.name()
        )))
    }

    async fn rollback(
        &self,
        undo: Option<&Value>,
        ctx: &ApplyCtx,
    ) -> Result<RolledBack, TaskError> {
        let Some(undo) = undo else {
            return Ok(RolledBack::default());
        };
        if self.settle().await?.is_none() {
            return Ok(RolledBack::default());
        }
        if undo["existed"].as_bool() == Some(false) {
            self.delete(ctx).await?;
            return Ok(RolledBack {
                changed: true,
                note: Some(format!(
                    "stack {} deleted, and role {} with it",
                    self.name(),
                    self.source.role_name
                )),
            });
        }
        if undo.get("role_inline").is_some() || undo.get("role_trust").is_some() {
            let (inline, trust) = (undo["role_inline"].clone(), undo["role_trust"].clone());
            if !inline.is_null() && !trust.is_null() {
                self.restore_role(ctx, Some(&inline), Some(&trust)).await?;
                return Ok(RolledBack {
                    changed: true,
                    note: Some(format!(
                        "role {} returned to its earlier documents",
                        self.source.role_name
                    )),
                });
            }
            return Ok(RolledBack::default());
        }
        let Some(template) = undo["template"].as_str() else {
            return Ok(RolledBack::default());
        };
        let params: Vec<(String, String)> = undo["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string())))
            .collect();
        if !self.update(ctx, template.to_string(), params).await? {
            return Ok(RolledBack::default());
        }
        match self.settle().await? {
            Some(u) if u.stack_status() == Some(&StackStatus::UpdateComplete) => Ok(RolledBack {
                changed: true,
                note: Some(format!(
                    "stack {} returned to its earlier template",
                    self.name()
                )),
            }),
            other => Err(self.failed(other.as_ref(), "UpdateStack (rollback)").await),
        }
    }
}
