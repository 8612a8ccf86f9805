//! `archive/grant/S`: adds source S's replication role to the archive bucket policy (article
//! section 3), keeping every other statement and principal.
//!
//! The policy is one document shared by every grant: its read-modify-write runs under the
//! engine's exclusive resource for the bucket (and, with a shared state, the archive lock
//! across processes: the read inside it, the read-back after the write), and grants that are
//! waiting together are written by one `PutBucketPolicy` (group commit): each grant queues its
//! change, the first to hold the resource writes every queued change at once and tells the
//! others.

use super::archive_lock::{self, ArchiveHold};
use super::role_stack::RoleStackOutput;
use super::{SourceNodes, StepContext, call, mutate};
use crate::drift::Finding;
use crate::errors::{classify, service_code};
use crate::logs::SourceLogs;
use crate::policy::{self, Grant as PolicyGrant};
use crate::spec::SourceSpec;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use trailhub_engine::{
    Applied, ApplyCtx, Change, NodeId, Plan, PlanAction, PlanCtx, RolledBack, Task, TaskError,
};

/// Journaled before a grant is written: the principal added (it was not there before), which
/// rollback takes out again, from the statements it was added to only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantUndo {
    /// The role ARN granted.
    pub principal: String,
    /// Whether it was in the policy before (always `false` when journaled).
    pub present_before: bool,
    /// The statements (Sids) the principal was added to; a statement that already named it is
    /// not one of them, and keeps it on rollback (`None` in journals of before this was
    /// recorded: rollback takes it out of all of the layout's statements).
    #[serde(default)]
    pub statements: Option<Vec<String>>,
    /// The earlier form of each trailhub statement the grant brought to this release's shape
    /// (an earlier release's, or one made by hand from the article): rollback puts them back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reshaped: Vec<Value>,
}

/// The grant in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantOutput {
    /// The role ARN granted.
    pub principal: String,
    /// The archive bucket.
    pub bucket: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Remove,
}

/// What one queued change became.
#[derive(Debug, Clone)]
struct Written {
    changed: bool,
    by: NodeId,
}

struct Request {
    op: Op,
    grant: PolicyGrant,
    /// For a removal, the statements to take the principal out of (`None`: all of the layout's).
    added_to: Option<Vec<String>>,
    /// For a removal, the earlier forms of the statements the grant reshaped, put back.
    restore: Vec<Value>,
    node: NodeId,
    done: oneshot::Sender<Result<Written, TaskError>>,
}

/// Serializes, and coalesces, the writes of the archive bucket policy.
pub struct PolicyWriter {
    ctx: StepContext,
    queue: Mutex<Vec<Request>>,
    /// The policy as this process last read or wrote it (this process alone writes it during
    /// a run: the state directory's lock), so that every grant does not read it again.
    known: tokio::sync::Mutex<Option<Option<Value>>>,
    /// The policy as this process last wrote it, if it did: what a read must show before the
    /// next write starts from it.
    written: tokio::sync::Mutex<Option<Option<Value>>>,
    /// The archive lock's epoch of the last write (0 with a local state).
    epoch: AtomicU64,
}

impl std::fmt::Debug for PolicyWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyWriter").finish_non_exhaustive()
    }
}

/// The archive bucket policy, parsed; `None` when the bucket has none.
pub(crate) async fn read_policy(ctx: &StepContext) -> Result<Option<Value>, TaskError> {
    let archive = &ctx.setting.archive;
    let clients = ctx.accounts.get(&archive.account_id).await?;
    let result = call(
        &archive.account_id,
        "s3",
        "GetBucketPolicy",
        &archive.bucket,
        clients
            .s3
            .get_bucket_policy()
            .bucket(&archive.bucket)
            .expected_bucket_owner(&archive.account_id)
            .send(),
    )
    .await;
    let read = match result {
        Ok(out) => {
            let text = out.policy().unwrap_or("{}");
            policy::parse(text).map(Some).map_err(|e| {
                TaskError::fatal(format!("the policy of bucket {} is {e}", archive.bucket))
                    .with_code("UnreadablePolicy")
            })
        }
        Err(e) if service_code(&e) == Some("NoSuchBucketPolicy") => Ok(None),
        Err(e) => Err(classify("GetBucketPolicy", &archive.bucket, e, &[])),
    };
    if let Ok(policy) = &read {
        ctx.documents.archive_policy(policy.as_ref());
    }
    read
}

impl PolicyWriter {
    /// A writer for the run's archive bucket.
    pub fn new(ctx: StepContext) -> Arc<Self> {
        Arc::new(PolicyWriter {
            ctx,
            queue: Mutex::new(Vec::new()),
            known: tokio::sync::Mutex::new(None),
            written: tokio::sync::Mutex::new(None),
            epoch: AtomicU64::new(0),
        })
    }

    /// The archive lock, for one read-modify-write of the policy (a shared state's; nothing
    /// with a local state). Taken again since this process's last write, the lock may have
    /// let another process write in between: that write is then no longer what a read must
    /// show first.
    async fn hold_archive(&self, ctx: &ApplyCtx<GrantUndo>) -> Result<ArchiveHold, TaskError> {
        let held = archive_lock::hold(&self.ctx, ctx).await?;
        if self.epoch.swap(held.epoch(), Ordering::SeqCst) != held.epoch() {
            *self.written.lock().await = None;
        }
        Ok(held)
    }

    /// The policy as last read or written in this process, read once (for every grant waiting
    /// on it) when not known yet. For deciding whether a grant is needed; every write reads the
    /// policy afresh under the exclusive resource.
    async fn known_policy(&self) -> Result<Option<Value>, TaskError> {
        let mut known = self.known.lock().await;
        if let Some(policy) = &*known {
            return Ok(policy.clone());
        }
        let read = read_policy(&self.ctx).await?;
        *known = Some(read.clone());
        Ok(read)
    }

    fn resource(&self) -> String {
        format!("s3-bucket-policy:{}", self.ctx.setting.archive.bucket)
    }

    /// Queues a change and returns once it is written (by this caller or by another).
    async fn submit(
        &self,
        ctx: &ApplyCtx<GrantUndo>,
        op: Op,
        grant: PolicyGrant,
        added_to: Option<Vec<String>>,
        restore: Vec<Value>,
    ) -> Result<Written, TaskError> {
        let (done, mut result) = oneshot::channel();
        self.queue
            .lock()
            .expect("queue should not be poisoned")
            .push(Request {
                op,
                grant,
                added_to,
                restore,
                node: ctx.node().clone(),
                done,
            });
        let _exclusive = ctx.exclusive(&self.resource()).await;
        if let Ok(written) = result.try_recv() {
            return written;
        }
        let batch: Vec<Request> =
            std::mem::take(&mut *self.queue.lock().expect("queue should not be poisoned"));
        let held = match self.hold_archive(ctx).await {
            Ok(held) => held,
            Err(e) => {
                for request in batch {
                    let _ = request.done.send(Err(e.clone()));
                }
                return result.await.unwrap_or_else(|_| {
                    Err(TaskError::retryable("the policy write was interrupted"))
                });
            }
        };
        if batch.len() > 1 {
            ctx.note(format!(
                "writing {} policy changes in one PutBucketPolicy",
                batch.len()
            ));
        }
        match self.write(ctx, &held, &batch).await {
            Ok(flags) => {
                for (request, changed) in batch.into_iter().zip(flags) {
                    let _ = request.done.send(Ok(Written {
                        changed,
                        by: ctx.node().clone(),
                    }));
                }
            }
            Err(e)
                if batch.len() > 1
                    && matches!(
                        e.code.as_deref(),
                        Some("MalformedPolicy" | "PolicyTooLarge" | "StatementConflict")
                    ) =>
            {
                // One principal AWS does not accept yet (IAM propagation, or a deleted role), a
                // statement that is not trailhub's, or a batch too large for one policy, must
                // not hold back the others: write them one by one (those that can be are
                // written; the rest fail with the reason).
                for request in batch {
                    let one = self.write(ctx, &held, std::slice::from_ref(&request)).await;
                    let _ = request.done.send(one.map(|flags| Written {
                        changed: flags[0],
                        by: ctx.node().clone(),
                    }));
                }
            }
            Err(e) => {
                for request in batch {
                    let _ = request.done.send(Err(e.clone()));
                }
            }
        }
        result
            .await
            .unwrap_or_else(|_| Err(TaskError::retryable("the policy write was interrupted")))
    }

    /// One read-modify-write applying every change of `batch`; per change, whether it changed
    /// the policy.
    ///
    /// PutBucketPolicy has no conditional write and S3's reads are eventually consistent: the
    /// read waits (bounded) until it shows what this process wrote last, so that a stale read
    /// neither loses a principal nor brings back a removed one; after the write, the policy is
    /// read back (bounded) until it shows the write. Another writer (an operator, Terraform,
    /// another state directory) can still overwrite it between the two: `verify` detects that.
    async fn write(
        &self,
        ctx: &ApplyCtx<GrantUndo>,
        held: &ArchiveHold,
        batch: &[Request],
    ) -> Result<Vec<bool>, TaskError> {
        let mut current = self.read_after_own_write(ctx).await?;
        let dropped = match current.as_mut() {
            Some(p) => policy::drop_stale(p),
            None => Vec::new(),
        };
        let mut flags = Vec::with_capacity(batch.len());
        for request in batch {
            let changed = match request.op {
                Op::Add => {
                    if let Some(conflict) = policy::conflict(current.as_ref(), &request.grant) {
                        return Err(TaskError::fatal(conflict)
                            .with_code("StatementConflict")
                            .with_hint("rename or remove that statement (it is not trailhub's), or use another `policy` mode; then `trailhub apply`"));
                    }
                    let (next, changed) = policy::add(current.as_ref(), &request.grant);
                    current = Some(next);
                    changed
                }
                Op::Remove => match &current {
                    Some(p) => {
                        let (next, removed) =
                            policy::remove(p, &request.grant, request.added_to.as_deref());
                        let (next, restored) = policy::restore(next, &request.restore);
                        current = next;
                        removed || restored
                    }
                    None => false,
                },
            };
            flags.push(changed);
        }
        if !flags.iter().any(|c| *c) && dropped.is_empty() {
            return Ok(flags);
        }
        if let Some(p) = &current {
            let (_, theirs) = policy::stale_principals(p);
            if !theirs.is_empty() {
                return Err(stale_error(&self.ctx.setting.archive.bucket, &theirs));
            }
        }
        for (sid, id) in &dropped {
            ctx.note(format!(
                "dropped {id} from statement {sid} of the archive bucket policy: the unique id of a deleted role, which S3 refuses to keep (the role's ARN is granted again where the role exists)"
            ));
        }
        let who: Vec<&str> = batch.iter().map(|r| r.node.as_str()).collect();
        held.fence().await?;
        self.put(ctx, current.as_ref(), &who.join(", ")).await?;
        *self.written.lock().await = Some(current.clone());
        self.confirm(&current).await?;
        *self.known.lock().await = Some(current);
        Ok(flags)
    }

    /// The policy, read until it shows this process's last write (if it made one).
    async fn read_after_own_write(
        &self,
        ctx: &ApplyCtx<GrantUndo>,
    ) -> Result<Option<Value>, TaskError> {
        let written = self.written.lock().await.clone();
        let (current, settled) = self
            .ctx
            .read_until(
                || read_policy(&self.ctx),
                |read| written.as_ref().is_none_or(|w| same(read, w)),
            )
            .await?;
        if !settled {
            ctx.note(format!(
                "the policy of bucket {} changed since trailhub wrote it: another writer (`trailhub verify` shows what is missing)",
                self.ctx.setting.archive.bucket
            ));
        }
        *self.known.lock().await = Some(current.clone());
        Ok(current)
    }

    /// Reads the policy back until it shows `wrote`; an error (retried with the step) when it
    /// never does: S3 is slow to show it, or another writer replaced it.
    async fn confirm(&self, wrote: &Option<Value>) -> Result<(), TaskError> {
        let (_, settled) = self
            .ctx
            .read_until(|| read_policy(&self.ctx), |read| same(read, wrote))
            .await?;
        if settled {
            return Ok(());
        }
        Err(TaskError::retryable(format!(
            "the policy of bucket {} does not show trailhub's write: another writer may have replaced it",
            self.ctx.setting.archive.bucket
        ))
        .with_code("PolicyNotVisible")
        .with_hint("find who else writes the archive bucket policy (Terraform, another state directory); `trailhub verify` shows what is missing"))
    }

    /// Writes `doc` as the archive bucket policy, or deletes the policy when `doc` is `None`.
    async fn put(
        &self,
        ctx: &ApplyCtx<GrantUndo>,
        doc: Option<&Value>,
        who: &str,
    ) -> Result<(), TaskError> {
        let archive = &self.ctx.setting.archive;
        let s3 = self.ctx.accounts.get(&archive.account_id).await?.s3.clone();
        let detail = format!("{} ({who})", archive.bucket);
        let Some(doc) = doc else {
            return mutate(
                ctx,
                &archive.account_id,
                "s3",
                "DeleteBucketPolicy",
                &detail,
                s3.delete_bucket_policy()
                    .bucket(&archive.bucket)
                    .expected_bucket_owner(&archive.account_id)
                    .send(),
            )
            .await
            .map(|_| ())
            .map_err(|e| classify("DeleteBucketPolicy", &archive.bucket, e, &[]));
        };
        let text = policy::to_text(doc).map_err(|e| {
            TaskError::fatal(e)
                .with_code("PolicyTooLarge")
                .with_hint("set `policy = \"accounts\"` in the inventory (one statement naming the source accounts: about 590 fit), or split the sources over several archive buckets (one inventory each)")
        })?;
        mutate(
            ctx,
            &archive.account_id,
            "s3",
            "PutBucketPolicy",
            &detail,
            s3.put_bucket_policy()
                .bucket(&archive.bucket)
                .expected_bucket_owner(&archive.account_id)
                .policy(text)
                .send(),
        )
        .await
        .map(|_| ())
        .map_err(|e| classify("PutBucketPolicy", &archive.bucket, e, &["MalformedPolicy"]))
    }
}

/// The archive bucket policy names deleted principals in statements that are not trailhub's:
/// S3 refuses every policy that keeps them, so no grant can be written until they are removed.
fn stale_error(bucket: &str, stale: &[(String, String)]) -> TaskError {
    let listed: Vec<String> = stale
        .iter()
        .map(|(sid, id)| format!("{id} in statement {sid}"))
        .collect();
    TaskError::fatal(format!(
        "the policy of bucket {bucket} names deleted principals ({}) in statements that are not trailhub's: S3 refuses any policy that keeps them",
        listed.join(", ")
    ))
    .with_code("StalePrincipal")
    .with_hint(format!(
        "remove them from the policy of {bucket} (aws s3api get-bucket-policy / put-bucket-policy), then `trailhub apply`"
    ))
}

/// Whether two policies (or their absence) mean the same.
fn same(a: &Option<Value>, b: &Option<Value>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => policy::normalize(a) == policy::normalize(b),
        (None, None) => true,
        _ => false,
    }
}

/// The grant's drift as verify reports it: the statements of `policy` (the archive's, `None`
/// when it has none) that do not name the source's role `role_arn`.
pub(crate) fn findings(
    ctx: &StepContext,
    source: &SourceSpec,
    logs: &SourceLogs,
    role_arn: &str,
    policy: Option<&Value>,
) -> Vec<Finding> {
    let grant = grant_of(ctx, source, logs, role_arn.to_string());
    let resource = format!("archive bucket {} policy", ctx.setting.archive.bucket);
    policy::grant_drift(policy, &grant)
        .into_iter()
        .map(|(field, expected, actual)| {
            Finding::new(&source.account_id, &resource, &field, expected, actual)
        })
        .collect()
}

/// How `policy` differs from one that grants `grant` as this release writes it: the grant's
/// one comparison (a statement missing, its principal missing, or its shape changed).
fn drift(policy: Option<&Value>, grant: &PolicyGrant) -> Vec<Change> {
    policy::grant_drift(policy, grant)
        .into_iter()
        .map(|(field, to, from)| Change::new(field, (from != "(missing)").then_some(from), to))
        .collect()
}

pub(crate) fn grant_of(
    ctx: &StepContext,
    source: &SourceSpec,
    logs: &SourceLogs,
    principal: String,
) -> PolicyGrant {
    PolicyGrant {
        mode: ctx.setting.policy,
        bucket_arn: ctx.setting.bucket_arn(&ctx.setting.archive.bucket),
        principal,
        account: source.account_id.clone(),
        prefixes: logs.prefixes.clone(),
    }
}

/// Grants one source's role on the archive bucket.
#[derive(Debug)]
pub struct Grant {
    ctx: StepContext,
    source: SourceSpec,
    nodes: SourceNodes,
    writer: Arc<PolicyWriter>,
}

impl Grant {
    /// The grant of `source`; the role's ARN comes from `nodes.role_stack`'s outputs, the
    /// prefixes from `nodes.bucket_check`'s.
    pub fn new(
        ctx: StepContext,
        source: SourceSpec,
        nodes: SourceNodes,
        writer: Arc<PolicyWriter>,
    ) -> Self {
        Grant {
            ctx,
            source,
            nodes,
            writer,
        }
    }

    fn grant(&self, logs: &SourceLogs, principal: String) -> PolicyGrant {
        grant_of(&self.ctx, &self.source, logs, principal)
    }

    /// S3 refused the policy as naming an invalid principal (`MalformedPolicy`): worth more
    /// attempts only while IAM may not yet show a role this run created (propagation, a few
    /// attempts); a role that existed before this run, or one still refused after them, fails
    /// the step naming it, as retrying cannot help.
    fn refused_principal(
        &self,
        ctx: &ApplyCtx<GrantUndo>,
        principal: &str,
        e: TaskError,
    ) -> TaskError {
        if e.code.as_deref() != Some("MalformedPolicy") {
            return e;
        }
        let fresh = ctx.input_changed(&self.nodes.role_stack);
        if fresh && ctx.attempt() < FRESH_PRINCIPAL_ATTEMPTS {
            return e;
        }
        let why = if fresh {
            format!("still refused after {} attempts", ctx.attempt())
        } else {
            "the role was not created by this run, so this is not IAM propagation".to_string()
        };
        TaskError::fatal(format!(
            "S3 refuses the policy of bucket {} naming {principal}: {} ({why})",
            self.ctx.setting.archive.bucket, e.message
        ))
        .with_code("MalformedPolicy")
        .with_hint(format!(
            "check that role {principal} exists (aws iam get-role --role-name {}), then `trailhub apply`",
            self.source.role_name
        ))
    }
}

/// How many attempts a grant naming a role this run created gets while S3 refuses it as an
/// invalid principal (IAM propagation takes seconds; the engine's backoff spaces them).
const FRESH_PRINCIPAL_ATTEMPTS: u32 = 5;

#[async_trait]
impl Task for Grant {
    type Undo = GrantUndo;
    type Output = GrantOutput;

    fn describe(&self) -> String {
        format!(
            "allow {}'s role {} in the policy of {}",
            self.source.account_id, self.source.role_name, self.ctx.setting.archive.bucket
        )
    }

    async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
        // Before apply, the role's ARN is the one its name implies (the stack reports it).
        let principal = self
            .ctx
            .setting
            .role_arn(&self.source.account_id, &self.source.role_name);
        let logs = self.ctx.logs_of(&self.source).await?;
        let current = read_policy(&self.ctx).await?;
        let grant = self.grant(&logs, principal);
        // The policy with this account's grant: what plan's delivery check evaluates.
        let (with_grant, _) = policy::add(current.as_ref(), &grant);
        self.ctx
            .documents
            .desired(&self.source.account_id)
            .archive_policy(Some(&with_grant));
        let changes = drift(current.as_ref(), &grant);
        Ok(match (changes.is_empty(), current.is_some()) {
            (true, _) => Plan::new(PlanAction::NoOp),
            (false, true) => Plan::new(PlanAction::Update).changes(changes),
            (false, false) => Plan::new(PlanAction::Create).changes(changes),
        })
    }

    async fn apply(&self, ctx: &ApplyCtx<GrantUndo>) -> Result<Applied<GrantOutput>, TaskError> {
        let principal = ctx
            .input::<RoleStackOutput>(&self.nodes.role_stack)?
            .checked_role_arn(&self.ctx, &self.source)?;
        let logs: SourceLogs = ctx.input(&self.nodes.bucket_check)?;
        let grant = self.grant(&logs, principal.clone());
        let outputs = GrantOutput {
            principal: principal.clone(),
            bucket: self.ctx.setting.archive.bucket.clone(),
        };
        let current = self.writer.known_policy().await?;
        if policy::missing(current.as_ref(), &grant).is_empty() {
            return Ok(Applied::unchanged(outputs));
        }
        let effect = policy::effect_of_add(current.as_ref(), &grant);
        ctx.record_undo(GrantUndo {
            principal: principal.clone(),
            present_before: false,
            statements: Some(effect.added_to),
            reshaped: effect.reshaped,
        })
        .await?;
        let written = self
            .writer
            .submit(ctx, Op::Add, grant, None, Vec::new())
            .await
            .map_err(|e| self.refused_principal(ctx, &principal, e))?;
        if written.by != *ctx.node() {
            ctx.note(format!("granted in the policy write of {}", written.by));
        }
        Ok(Applied {
            outputs,
            changed: written.changed,
        })
    }

    async fn rollback(
        &self,
        undo: Option<GrantUndo>,
        ctx: &ApplyCtx<GrantUndo>,
    ) -> Result<RolledBack, TaskError> {
        let Some(GrantUndo {
            principal,
            present_before: false,
            statements,
            reshaped,
        }) = undo
        else {
            return Ok(RolledBack::default());
        };
        let logs: SourceLogs = ctx.input(&self.nodes.bucket_check)?;
        let written = self
            .writer
            .submit(
                ctx,
                Op::Remove,
                self.grant(&logs, principal.clone()),
                statements,
                reshaped,
            )
            .await?;
        Ok(RolledBack {
            changed: written.changed,
            note: written.changed.then(|| {
                format!(
                    "{principal} removed from the policy of {}",
                    self.ctx.setting.archive.bucket
                )
            }),
        })
    }
}
