//! What the mock tests share: the article's names, the step context over mocked clients, a
//! recorder of the AWS calls made, AWS-shaped error bodies, and runs through the engine.

use aws_smithy_mocks::{Rule, RuleMode, mock_client};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use trailhub_engine::{
    Applied, ApplyCtx, Dag, NodeId, NodeRecord, NodeSpec, NullObserver, Plan, PlanAction, PlanCtx,
    RetryPolicy, RolledBack, RunOptions, RunSummary, Task, TaskError, execute,
};
use trailhub_state::{Event, Journal, NewRun};
use trailhub_steps::logs::SourceLogs;
use trailhub_steps::tasks::{KeyGrantOutput, RoleStackOutput, SourceNodes, StepContext};
use trailhub_steps::{
    AccountClients, Accounts, ArchiveSpec, Credentials, PolicyMode, Setting, SourceSpec,
};

/// The log-archive account.
pub const ARCHIVE: &str = "111111111111";
/// The archive bucket.
pub const ARCHIVE_BUCKET: &str = "aggregation-cloudtrail-logs-111111111111";
/// A member account.
pub const SOURCE: &str = "222222222222";
/// Its CloudTrail bucket.
pub const SOURCE_BUCKET: &str = "cm-members-cloudtrail-222222222222";
/// Its role stack.
pub const STACK: &str = "cloudtrail-replication-role";
/// Its replication role.
pub const ROLE: &str = "S3ReplicationRole";
/// The region of everything.
pub const REGION: &str = "ap-northeast-1";

/// The ARN of the source's replication role.
pub fn role_arn() -> String {
    format!("arn:aws:iam::{SOURCE}:role/{ROLE}")
}

/// Where the source's logs are, as bucket-check finds them for the article's account: one
/// trail writing under `AWSLogs/`, SSE-S3, in the inventory's region.
pub fn logs() -> SourceLogs {
    SourceLogs {
        bucket: SOURCE_BUCKET.into(),
        encryption: "AES256".into(),
        trail: None,
        region: Some(REGION.into()),
        prefixes: vec!["AWSLogs/".into()],
        trails: vec![format!(
            "arn:aws:cloudtrail:{REGION}:{SOURCE}:trail/Members"
        )],
        kms_keys: vec![],
        bucket_key: false,
        kept: None,
    }
}

/// The source's nodes, as the workflow names them.
pub fn nodes() -> SourceNodes {
    SourceNodes {
        bucket_check: NodeId::new(SOURCE, "bucket-check"),
        versioning: NodeId::new(SOURCE, "versioning"),
        role_stack: role_node(),
        key: NodeId::hosted("archive", "key", SOURCE),
        grant: NodeId::hosted("archive", "grant", SOURCE),
        replication: NodeId::new(SOURCE, "replication"),
    }
}

/// What the steps before a source's later steps hand them, done: its logs, its role, no
/// archive key (SSE-S3 logs).
pub fn done_before() -> Vec<(NodeId, Value)> {
    vec![
        (
            nodes().bucket_check,
            serde_json::to_value(logs()).expect("serializes"),
        ),
        (
            role_node(),
            serde_json::to_value(role_output()).expect("serializes"),
        ),
        (
            nodes().key,
            serde_json::to_value(KeyGrantOutput { key: None }).expect("serializes"),
        ),
    ]
}

/// A node id from its text.
pub fn node_id(text: &str) -> NodeId {
    text.parse().expect("a node id")
}

/// The source's role stack node.
pub fn role_node() -> NodeId {
    NodeId::new(SOURCE, "role-stack")
}

/// What the source's role stack hands to the nodes after it.
pub fn role_output() -> RoleStackOutput {
    RoleStackOutput {
        role_arn: role_arn(),
        role_name: ROLE.into(),
        stack_id: Some(format!(
            "arn:aws:cloudformation:{REGION}:{SOURCE}:stack/{STACK}/00000000-0000-0000-0000-000000000000"
        )),
        backfill_role_arn: Some(format!("arn:aws:iam::{SOURCE}:role/{ROLE}Backfill")),
    }
}

/// A step before the tested one, done: it hands on these outputs, and says whether it changed
/// anything in this run (a role stack just created, say).
struct Done(Value, bool);

#[async_trait::async_trait]
impl Task for Done {
    type Undo = ();
    type Output = Value;

    fn describe(&self) -> String {
        "a step before, done".into()
    }
    async fn plan(&self, _ctx: &PlanCtx) -> Result<Plan, TaskError> {
        Ok(Plan::new(PlanAction::NoOp))
    }
    async fn apply(&self, _ctx: &ApplyCtx<()>) -> Result<Applied<Value>, TaskError> {
        Ok(Applied {
            outputs: self.0.clone(),
            changed: self.1,
        })
    }
    async fn rollback(&self, _: Option<()>, _: &ApplyCtx<()>) -> Result<RolledBack, TaskError> {
        Ok(RolledBack::default())
    }
}

/// The article's setting: one archive, article policy mode.
pub fn setting() -> Setting {
    Setting {
        region: REGION.into(),
        partition: "aws".into(),
        archive: ArchiveSpec {
            account_id: ARCHIVE.into(),
            bucket: ARCHIVE_BUCKET.into(),
            kms_key: None,
            retention: None,
            lifecycle: None,
            credentials: Credentials::Default,
        },
        policy: PolicyMode::Article,
    }
}

/// The article's member account.
pub fn source() -> SourceSpec {
    SourceSpec {
        account_id: SOURCE.into(),
        bucket: SOURCE_BUCKET.into(),
        trail: None,
        role_name: ROLE.into(),
        stack_name: STACK.into(),
        prefix: None,
        region: None,
        trust_conditions: false,
        existing_replication: Default::default(),
        storage_class: "STANDARD_IA".into(),
        replication_time_control: true,
        credentials: Credentials::Default,
    }
}

/// The AWS calls the mocked clients received, in order, as `service:Operation`
/// (`s3:PutBucketPolicy`, `cloudformation:DescribeStacks`): read-only ones included.
#[derive(Debug, Clone, Default)]
pub struct Calls(Arc<Mutex<Vec<String>>>);

impl Calls {
    /// Every call so far.
    pub fn list(&self) -> Vec<String> {
        self.0.lock().expect("calls").clone()
    }

    /// How many times `op` (`service:Operation`) was called.
    pub fn count(&self, op: &str) -> usize {
        self.list().iter().filter(|c| *c == op).count()
    }
}

impl Intercept for Calls {
    fn name(&self) -> &'static str {
        "CallRecorder"
    }

    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let meta = cfg
            .load::<Metadata>()
            .expect("every operation has metadata");
        self.0.lock().expect("calls").push(format!(
            "{}:{}",
            meta.service().to_lowercase(),
            meta.name()
        ));
        Ok(())
    }
}

/// The mocked answers of one account, per service; a call no rule answers panics (in a run
/// through the engine too: [`run_one`] then fails with that panic).
#[derive(Default)]
pub struct Mocked<'a> {
    /// S3 rules.
    pub s3: &'a [&'a Rule],
    /// CloudFormation rules.
    pub cfn: &'a [&'a Rule],
    /// IAM rules.
    pub iam: &'a [&'a Rule],
    /// S3 Control rules (Batch Operations jobs).
    pub s3control: &'a [&'a Rule],
}

/// The role's trust policy as the article's template makes it, written here, not computed by
/// the code under test.
pub const ARTICLE_TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"s3.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// The role's inline policy as trailhub's template makes it for the article's account: the
/// article's three statements, with the Object Lock reads trailhub adds to the source objects'
/// (actions in another order than the template's, as IAM may return them).
pub const ARTICLE_INLINE: &str = r#"{"Version":"2012-10-17","Statement":[
{"Effect":"Allow","Action":["s3:ListBucket","s3:GetReplicationConfiguration"],"Resource":"arn:aws:s3:::cm-members-cloudtrail-222222222222"},
{"Effect":"Allow","Action":["s3:GetObjectVersionForReplication","s3:GetObjectVersionAcl","s3:GetObjectVersionTagging","s3:GetObjectRetention","s3:GetObjectLegalHold"],"Resource":"arn:aws:s3:::cm-members-cloudtrail-222222222222/*"},
{"Effect":"Allow","Action":["s3:ReplicateObject","s3:ReplicateTags","s3:ObjectOwnerOverrideToBucketOwner"],"Resource":["arn:aws:s3:::aggregation-cloudtrail-logs-111111111111/AWSLogs/222222222222/*"]}]}"#;

/// The template a stack trailhub created holds (GetTemplate's body), recorded from trailhub's
/// CreateStack: a change of the template shows here as a difference, made on purpose.
pub fn recorded_template() -> String {
    include_str!("../fixtures/role-template.json").to_string()
}

/// IAM answers for a role exactly as the article's template makes it (GetRole, GetRolePolicy),
/// documents URL-encoded as IAM returns them.
pub fn template_role_rules() -> [Rule; 2] {
    role_rules(ARTICLE_TRUST, ARTICLE_INLINE)
}

/// IAM answers for the source's role with these trust and inline policies (JSON text).
pub fn role_rules(trust: &str, inline: &str) -> [Rule; 2] {
    use aws_sdk_iam::operation::get_role::GetRoleOutput;
    use aws_sdk_iam::operation::get_role_policy::GetRolePolicyOutput;
    use aws_sdk_iam::types::Role;
    use aws_smithy_mocks::mock;
    let encode = |text: &str| {
        percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let trust = encode(trust);
    let inline = encode(inline);
    let get_role = mock!(aws_sdk_iam::Client::get_role).then_output(move || {
        GetRoleOutput::builder()
            .role(
                Role::builder()
                    .path("/")
                    .role_name(ROLE)
                    .role_id("AROAEXAMPLE")
                    .arn(role_arn())
                    .create_date(aws_smithy_types::DateTime::from_secs(0))
                    .assume_role_policy_document(trust.clone())
                    .build()
                    .expect("role"),
            )
            .build()
    });
    let get_policy = mock!(aws_sdk_iam::Client::get_role_policy).then_output(move || {
        GetRolePolicyOutput::builder()
            .role_name(ROLE)
            .policy_name("S3ReplicationPolicy")
            .policy_document(inline.clone())
            .build()
            .expect("policy")
    });
    [get_role, get_policy]
}

/// The clients of `account`, answering from `mocked` (rules matched by operation, each rule
/// answering its sequence in order), recording every call in `calls`. One attempt per call, as
/// `Connector` configures them: retries are the engine's.
pub fn account(account: &str, mocked: Mocked<'_>, calls: &Calls) -> AccountClients {
    let none: &[&Rule] = &[];
    let (c1, c2, c3, c4, c5, c6) = (
        calls.clone(),
        calls.clone(),
        calls.clone(),
        calls.clone(),
        calls.clone(),
        calls.clone(),
    );
    let kms_rules: &[&Rule] = &[];
    AccountClients::new(
        account,
        &format!("arn:aws:iam::{account}:user/tester"),
        mock_client!(aws_sdk_s3, RuleMode::MatchAny, mocked.s3, move |b| b
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(1))
            .interceptor(c1.clone())),
        mock_client!(aws_sdk_iam, RuleMode::MatchAny, mocked.iam, move |b| b
            .interceptor(c3.clone())),
        mock_client!(
            aws_sdk_cloudformation,
            RuleMode::MatchAny,
            mocked.cfn,
            move |b| b
                .retry_config(
                    aws_sdk_cloudformation::config::retry::RetryConfig::standard()
                        .with_max_attempts(1)
                )
                .interceptor(c2.clone())
        ),
        mock_client!(aws_sdk_cloudtrail, RuleMode::MatchAny, none, move |b| b
            .interceptor(c4.clone())),
        mock_client!(aws_sdk_kms, RuleMode::MatchAny, kms_rules, move |b| b
            .interceptor(c5.clone())),
    )
    .with_s3control(mock_client!(
        aws_sdk_s3control,
        RuleMode::MatchAny,
        mocked.s3control,
        move |b| b
            .retry_config(
                aws_sdk_s3control::config::retry::RetryConfig::standard().with_max_attempts(1)
            )
            .interceptor(c6.clone())
    ))
}

/// The step context over these accounts, polling stacks every 2 ms.
pub fn context(accounts: Vec<AccountClients>) -> StepContext {
    let mut ctx = StepContext::new(setting(), Accounts::with_clients(accounts));
    ctx.stack_poll = Duration::from_millis(2);
    ctx.stack_timeout = Duration::from_secs(5);
    ctx.consistency = Duration::from_millis(1);
    // As after bucket-check: the source's logs and both buckets' regions are known.
    ctx.remember_logs(SOURCE, logs());
    ctx.pin_region(ARCHIVE_BUCKET, REGION);
    ctx
}

/// An S3 error response as S3 writes it (REST-XML).
pub fn s3_error(code: &str, message: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>{code}</Code><Message>{message}</Message><RequestId>4442587FB7D0A2F9</RequestId><HostId>host-id</HostId></Error>"#
    )
}

/// A raw HTTP response, headers and body as the service writes them: the SDK's own parser
/// reads it, as it reads AWS's answers.
pub fn raw_response(
    status: u16,
    headers: &[(&str, &str)],
    body: &str,
) -> aws_smithy_runtime_api::http::Response {
    let mut response = aws_smithy_runtime_api::http::Response::new(
        aws_smithy_runtime_api::http::StatusCode::try_from(status).expect("an HTTP status"),
        aws_smithy_types::body::SdkBody::from(body.to_string()),
    );
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(name.to_string(), value.to_string());
    }
    response
}

/// A CloudFormation error response as CloudFormation writes it (awsQuery).
pub fn query_error(code: &str, message: &str) -> String {
    format!(
        r#"<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">
  <Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>
  <RequestId>5ccc7dcd-744c-11e5-be70-example</RequestId>
</ErrorResponse>"#
    )
}

/// One entry a task reported to a detached context.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `service:Operation`, `undo` or `note`.
    pub what: String,
    /// Whether the call mutates.
    pub mutating: bool,
    /// The resource, the undo record (JSON text) or the note.
    pub detail: String,
}

/// What a task reported to a detached context, in order.
pub struct History(Box<dyn Fn() -> Vec<Entry> + Send + Sync>);

impl History {
    /// Every entry.
    pub fn entries(&self) -> Vec<Entry> {
        (self.0)()
    }

    /// The undo records and calls, in order, notes left out: `["undo", "s3:PutBucketPolicy"]`.
    pub fn steps(&self) -> Vec<String> {
        self.entries()
            .into_iter()
            .filter(|e| e.what != "note")
            .map(|e| e.what)
            .collect()
    }

    /// The undo records, parsed.
    pub fn undo(&self) -> Vec<Value> {
        self.entries()
            .into_iter()
            .filter(|e| e.what == "undo")
            .map(|e| serde_json::from_str(&e.detail).expect("undo records are JSON"))
            .collect()
    }

    /// The notes.
    pub fn notes(&self) -> Vec<String> {
        self.entries()
            .into_iter()
            .filter(|e| e.what == "note")
            .map(|e| e.detail)
            .collect()
    }
}

/// A context outside of any run (the role stack done before it, no earlier undo record) and
/// the log of what the task reports to it. `_group` is the node's group (its id says it too).
pub fn detached<U>(node: &str, _group: &str) -> (ApplyCtx<U>, History) {
    detached_with(node, _group, None)
}

/// Like [`detached`], with the undo record an earlier attempt journaled (a rollback's context).
pub fn detached_with<U>(
    node: &str,
    _group: &str,
    prior_undo: Option<Value>,
) -> (ApplyCtx<U>, History) {
    let inputs: BTreeMap<NodeId, Value> = done_before().into_iter().collect();
    let (ctx, log) = ApplyCtx::detached(&node_id(node), inputs, prior_undo);
    let read = move || {
        log.lock()
            .expect("log")
            .iter()
            .map(|r| Entry {
                what: r.what.clone(),
                mutating: r.mutating,
                detail: r.detail.clone(),
            })
            .collect()
    };
    (ctx, History(Box::new(read)))
}

/// A finished run of a one-node DAG, with what the journal kept of it.
pub struct Run {
    /// What `execute` returned.
    pub summary: RunSummary,
    /// The node's journaled record.
    pub node: NodeRecord,
    /// The run's journaled history.
    pub events: Vec<Event>,
    _state: tempfile::TempDir,
}

/// Runs `task` as node `id` of a new run through the engine's scheduler, after the source's
/// role stack (done, unless `id` is the role stack itself), with fast retries (at most
/// `max_attempts` attempts), journaled in a temporary state directory.
pub async fn run_one<T: Task>(id: &str, group: &str, task: T, max_attempts: u32) -> Run {
    run_one_after(id, group, task, max_attempts, &[]).await
}

/// [`run_one`], the steps before it of `changed` (node ids) having changed something in this
/// run.
pub async fn run_one_after<T: Task>(
    id: &str,
    _group: &str,
    task: T,
    max_attempts: u32,
    changed: &[&str],
) -> Run {
    let state = tempfile::tempdir().expect("tempdir");
    let journal = Journal::open(state.path()).expect("journal");
    let run = journal
        .create_run(NewRun {
            workflow: "t",
            definition: "",
            source: None,
            options: Value::Null,
            graph: None,
        })
        .expect("run created");
    let id = node_id(id);
    let mut dag = Dag::new();
    let mut deps = Vec::new();
    for (before, outputs) in done_before() {
        if before != id {
            let fresh = changed.contains(&before.as_str());
            dag.add(NodeSpec::new(before.clone(), vec![], Done(outputs, fresh)));
            deps.push(before);
        }
    }
    dag.add(NodeSpec::new(id.clone(), deps, task));
    let dag = dag.seal().expect("the DAG is valid");
    let options = RunOptions {
        concurrency: 2,
        retry: RetryPolicy::fast(max_attempts),
    };
    // A call no mock answers panics inside the engine's executor, and the panic comes out of
    // `execute` (the walk polls its attempts itself); the bound is for a task that never ends.
    let summary = tokio::time::timeout(
        Duration::from_secs(30),
        execute(
            &dag,
            &journal,
            &run.id,
            "apply",
            &options,
            &NullObserver,
            std::future::pending(),
        ),
    )
    .await
    .expect("the run should finish")
    .expect("the engine should not fail");
    let node = journal
        .node(&run.id, &id)
        .expect("journal readable")
        .expect("the node was journaled");
    let events = journal.events(&run.id).expect("events readable");
    Run {
        summary,
        node,
        events,
        _state: state,
    }
}

/// A value as the journal holds it (outputs, undo records).
pub fn json_of<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("journaled values serialize")
}
