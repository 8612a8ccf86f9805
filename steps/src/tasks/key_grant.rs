//! `archive/key/S`: for a source whose logs are SSE-KMS encrypted, the archive's KMS key (found
//! in the inventory, found by trailhub's alias, or created, tagged and aliased) and the source's
//! grant in its key policy, so that S3 may encrypt the replicas with it. A source whose logs are
//! SSE-S3 needs nothing here and makes no request.
//!
//! The key is never scheduled for deletion, not even by rollback: replicas encrypted with it
//! would become unreadable. Rollback takes the source's principal out of the key policy.

use super::archive_lock;
use super::role_stack::RoleStackOutput;
use super::{SourceNodes, StepContext, call, mutate};
use crate::drift::Finding;
use crate::errors::{classify, service_code};
use crate::logs::SourceLogs;
use crate::policy::key::{
    KeyGrant as PolicyKeyGrant, key_add, key_missing, key_policy_text, key_remove,
};
use crate::spec::SourceSpec;
use async_trait::async_trait;
use aws_sdk_kms::types::Tag;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use trailhub_engine::{Applied, ApplyCtx, Plan, PlanAction, PlanCtx, RolledBack, Task, TaskError};

/// The archive's KMS key, shared by every source's key grant of a run.
#[derive(Debug)]
pub struct ArchiveKey {
    ctx: StepContext,
    /// The key's ARN once found or created in this process.
    known: tokio::sync::Mutex<Option<String>>,
}

/// Journaled before the source's principal is added to the key policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGrantUndo {
    /// The key's ARN (`None`: the key was created by this step, after this record).
    pub key: Option<String>,
    /// The role ARN granted.
    pub principal: String,
}

/// The archive key replicas are encrypted with (`None`: the logs are not SSE-KMS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGrantOutput {
    /// The key's ARN.
    pub key: Option<String>,
}

impl ArchiveKey {
    /// The archive key of the run's setting.
    pub fn new(ctx: StepContext) -> Arc<Self> {
        Arc::new(ArchiveKey {
            ctx,
            known: tokio::sync::Mutex::new(None),
        })
    }

    /// The alias trailhub gives the key it creates.
    pub fn alias(&self) -> String {
        let bucket: String = self
            .ctx
            .setting
            .archive
            .bucket
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("alias/trailhub/{bucket}")
    }

    async fn kms(&self) -> Result<aws_sdk_kms::Client, TaskError> {
        let archive = &self.ctx.setting.archive;
        Ok(self
            .ctx
            .accounts
            .get(&archive.account_id)
            .await?
            .kms
            .clone())
    }

    /// The key's ARN: the inventory's key, or the one trailhub's alias names; `None` when
    /// neither exists yet. Read-only.
    pub async fn find(&self) -> Result<Option<String>, TaskError> {
        let mut known = self.known.lock().await;
        if known.is_some() {
            return Ok(known.clone());
        }
        let archive = &self.ctx.setting.archive;
        let wanted = archive.kms_key.clone().unwrap_or_else(|| self.alias());
        let kms = self.kms().await?;
        let described = call(
            &archive.account_id,
            "kms",
            "DescribeKey",
            &wanted,
            kms.describe_key().key_id(&wanted).send(),
        )
        .await;
        match described {
            Ok(out) => {
                *known = out.key_metadata().and_then(|m| m.arn()).map(str::to_string);
                Ok(known.clone())
            }
            Err(e)
                if service_code(&e) == Some("NotFoundException") && archive.kms_key.is_none() =>
            {
                Ok(None)
            }
            Err(e) => Err(classify("DescribeKey", &wanted, e, &[])),
        }
    }

    /// The key's ARN, creating the key (tagged, aliased) when the inventory names none and
    /// trailhub's alias does not exist yet. Serialized: two sources never create two keys.
    async fn ensure<U>(&self, ctx: &ApplyCtx<U>) -> Result<String, TaskError> {
        let _exclusive = ctx.exclusive("archive-kms-key").await;
        if let Some(arn) = self.find().await? {
            return Ok(arn);
        }
        let held = archive_lock::hold(&self.ctx, ctx).await?;
        held.fence().await?;
        let archive = &self.ctx.setting.archive;
        let kms = self.kms().await?;
        let mut tags = crate::tags::marks(ctx.run());
        tags.push(("trailhub:bucket".into(), archive.bucket.clone()));
        let tags = tags
            .into_iter()
            .map(|(k, v)| Tag::builder().tag_key(k).tag_value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TaskError::fatal(format!("key tags: {e}")))?;
        let request = kms
            .create_key()
            .description(format!(
                "trailhub: encrypts the replicas of SSE-KMS CloudTrail logs in {}",
                archive.bucket
            ))
            .set_tags(Some(tags));
        let created = mutate(
            ctx,
            &archive.account_id,
            "kms",
            "CreateKey",
            &archive.bucket,
            request.send(),
        )
        .await
        .map_err(|e| classify("CreateKey", &archive.bucket, e, &[]))?;
        let arn = created
            .key_metadata()
            .and_then(|m| m.arn())
            .ok_or_else(|| TaskError::fatal("CreateKey answered no key ARN"))?
            .to_string();
        // A key trailhub makes rotates its key material yearly (KMS's automatic rotation), as
        // AWS's security guidance for customer managed keys recommends; old material stays to
        // decrypt what it encrypted.
        mutate(
            ctx,
            &archive.account_id,
            "kms",
            "EnableKeyRotation",
            &arn,
            kms.enable_key_rotation().key_id(&arn).send(),
        )
        .await
        .map_err(|e| classify("EnableKeyRotation", &arn, e, &[]))?;
        let alias = self.alias();
        mutate(
            ctx,
            &archive.account_id,
            "kms",
            "CreateAlias",
            &alias,
            kms.create_alias()
                .alias_name(&alias)
                .target_key_id(&arn)
                .send(),
        )
        .await
        .map_err(|e| classify("CreateAlias", &alias, e, &[]))?;
        *self.known.lock().await = Some(arn.clone());
        Ok(arn)
    }

    /// The key's policy, parsed.
    async fn policy(&self, key: &str) -> Result<Value, TaskError> {
        let archive = &self.ctx.setting.archive;
        let kms = self.kms().await?;
        let out = call(
            &archive.account_id,
            "kms",
            "GetKeyPolicy",
            key,
            kms.get_key_policy()
                .key_id(key)
                .policy_name("default")
                .send(),
        )
        .await
        .map_err(|e| classify("GetKeyPolicy", key, e, &[]))?;
        let policy: Value = out
            .policy()
            .and_then(|p| serde_json::from_str(p).ok())
            .ok_or_else(|| {
                TaskError::fatal(format!("the policy of key {key} is not JSON"))
                    .with_code("UnreadablePolicy")
            })?;
        self.ctx.documents.key_policy(key, &policy);
        Ok(policy)
    }

    /// Applies `change` to the key policy (read, change, write, under the key's exclusive
    /// resource and, with a shared state, the archive lock); returns whether it changed
    /// anything.
    async fn update<U>(
        &self,
        ctx: &ApplyCtx<U>,
        key: &str,
        change: impl Fn(&Value) -> (Value, bool),
    ) -> Result<bool, TaskError> {
        let _exclusive = ctx.exclusive(&format!("kms-key-policy:{key}")).await;
        let held = archive_lock::hold(&self.ctx, ctx).await?;
        let (next, changed) = change(&self.policy(key).await?);
        if !changed {
            return Ok(false);
        }
        let text =
            key_policy_text(&next).map_err(|e| TaskError::fatal(e).with_code("PolicyTooLarge"))?;
        let archive = &self.ctx.setting.archive;
        let kms = self.kms().await?;
        held.fence().await?;
        mutate(
            ctx,
            &archive.account_id,
            "kms",
            "PutKeyPolicy",
            key,
            kms.put_key_policy()
                .key_id(key)
                .policy_name("default")
                .policy(text)
                .send(),
        )
        .await
        .map_err(|e| {
            classify(
                "PutKeyPolicy",
                key,
                e,
                &["MalformedPolicyDocumentException"],
            )
        })?;
        Ok(true)
    }
}

/// Grants one source's role on the archive key.
#[derive(Debug)]
pub struct KeyGrant {
    ctx: StepContext,
    source: SourceSpec,
    nodes: SourceNodes,
    key: Arc<ArchiveKey>,
}

fn grant_of(
    ctx: &StepContext,
    logs: &SourceLogs,
    principal: String,
    account: &str,
) -> PolicyKeyGrant {
    PolicyKeyGrant {
        mode: ctx.setting.policy,
        principal,
        account: account.to_string(),
        region: ctx.setting.region.clone(),
        bucket_arn: ctx.setting.bucket_arn(&ctx.setting.archive.bucket),
        prefixes: logs.prefixes.clone(),
    }
}

/// The key grant's drift as verify reports it: for SSE-KMS logs, the archive key exists and
/// its policy admits the role.
pub(crate) async fn findings(
    ctx: &StepContext,
    source: &SourceSpec,
    logs: &SourceLogs,
    role_arn: &str,
    key: &ArchiveKey,
) -> Result<Vec<Finding>, TaskError> {
    if !logs.kms() {
        return Ok(Vec::new());
    }
    let account = source.account_id.as_str();
    let Some(arn) = key.find().await? else {
        return Ok(vec![Finding::new(
            account,
            &format!("archive KMS key {}", key.alias()),
            "exists",
            "true",
            "false",
        )]);
    };
    let grant = grant_of(ctx, logs, role_arn.to_string(), account);
    if key_missing(&key.policy(&arn).await?, &grant) {
        return Ok(vec![Finding::new(
            account,
            &format!("archive KMS key {arn} policy"),
            "Principal.AWS",
            format!("includes {}", grant.listed_principal()),
            "(missing)",
        )]);
    }
    Ok(Vec::new())
}

impl KeyGrant {
    /// The key grant of `source`, on `key`.
    pub fn new(
        ctx: StepContext,
        source: SourceSpec,
        nodes: SourceNodes,
        key: Arc<ArchiveKey>,
    ) -> Self {
        KeyGrant {
            ctx,
            source,
            nodes,
            key,
        }
    }
}

#[async_trait]
impl Task for KeyGrant {
    type Undo = KeyGrantUndo;
    type Output = KeyGrantOutput;

    fn describe(&self) -> String {
        format!(
            "for SSE-KMS logs, allow {}'s role to encrypt replicas with the archive's KMS key",
            self.source.account_id
        )
    }

    async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
        let logs = self.ctx.logs_of(&self.source).await?;
        if !logs.kms() {
            return Ok(Plan::new(PlanAction::NoOp).note("the logs are not SSE-KMS: no key needed"));
        }
        let role = self
            .ctx
            .setting
            .role_arn(&self.source.account_id, &self.source.role_name);
        let grant = grant_of(&self.ctx, &logs, role, &self.source.account_id);
        let desired = self.ctx.documents.desired(&self.source.account_id);
        let Some(key) = self.key.find().await? else {
            // Its ARN, which the rule and the key policy name, exists only once it is created.
            desired.unknowable("apply creates the archive KMS key");
            return Ok(Plan::new(PlanAction::Create)
                .change("KmsKey", None, self.key.alias())
                .change("KeyPolicy.Principal.AWS", None, grant.listed_principal()));
        };
        let policy = self.key.policy(&key).await?;
        // The key policy with this account's grant: what plan's delivery check evaluates.
        desired.key_policy(&key, &key_add(&policy, &grant).0);
        if key_missing(&policy, &grant) {
            return Ok(Plan::new(PlanAction::Update).change(
                "KeyPolicy.Principal.AWS",
                None,
                grant.listed_principal(),
            ));
        }
        Ok(Plan::new(PlanAction::NoOp))
    }

    async fn apply(
        &self,
        ctx: &ApplyCtx<KeyGrantUndo>,
    ) -> Result<Applied<KeyGrantOutput>, TaskError> {
        let logs: SourceLogs = ctx.input(&self.nodes.bucket_check)?;
        if !logs.kms() {
            return Ok(Applied::unchanged(KeyGrantOutput { key: None }));
        }
        let principal = ctx
            .input::<RoleStackOutput>(&self.nodes.role_stack)?
            .checked_role_arn(&self.ctx, &self.source)?;
        let grant = grant_of(&self.ctx, &logs, principal.clone(), &self.source.account_id);
        let existing = self.key.find().await?;
        if let Some(key) = &existing
            && !key_missing(&self.key.policy(key).await?, &grant)
        {
            return Ok(Applied::unchanged(KeyGrantOutput { key: existing }));
        }
        ctx.record_undo(KeyGrantUndo {
            key: existing,
            principal,
        })
        .await?;
        let key = self.key.ensure(ctx).await?;
        self.key.update(ctx, &key, |p| key_add(p, &grant)).await?;
        Ok(Applied::changed(KeyGrantOutput { key: Some(key) }))
    }

    async fn rollback(
        &self,
        undo: Option<KeyGrantUndo>,
        ctx: &ApplyCtx<KeyGrantUndo>,
    ) -> Result<RolledBack, TaskError> {
        let Some(undo) = undo else {
            return Ok(RolledBack::default());
        };
        let key = match undo.key {
            Some(key) => key,
            None => match self.key.find().await? {
                Some(key) => key,
                None => return Ok(RolledBack::default()),
            },
        };
        let logs: SourceLogs = ctx.input(&self.nodes.bucket_check)?;
        let grant = grant_of(
            &self.ctx,
            &logs,
            undo.principal.clone(),
            &self.source.account_id,
        );
        let changed = self
            .key
            .update(ctx, &key, |p| key_remove(p, &grant))
            .await?;
        Ok(RolledBack {
            changed,
            note: Some(format!(
                "{} taken out of the policy of KMS key {key}; the key is kept: replicas encrypted with it need it",
                undo.principal
            )),
        })
    }
}
