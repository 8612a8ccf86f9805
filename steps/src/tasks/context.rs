//! What every task of a run shares (the step context), and the one way tasks call AWS.

use crate::clients::Accounts;
use crate::spec::Setting;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use trailhub_engine::ApplyCtx;

/// What every task of a run shares.
#[derive(Debug, Clone)]
pub struct StepContext {
    /// Region, partition, archive, policy mode.
    pub setting: Arc<Setting>,
    /// Clients per account.
    pub accounts: Arc<Accounts>,
    /// How often a CloudFormation stack is polled while it changes.
    pub stack_poll: Duration,
    /// How long a stack may take to settle.
    pub stack_timeout: Duration,
}

impl StepContext {
    /// A context with AWS-like polling (every 5 s, for at most 30 minutes).
    pub fn new(setting: Setting, accounts: Accounts) -> Self {
        StepContext {
            setting: Arc::new(setting),
            accounts: Arc::new(accounts),
            stack_poll: Duration::from_secs(5),
            stack_timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// Runs one read-only AWS call, logged at debug level with its account, operation and duration
/// (never credentials).
pub(crate) async fn call<T, E, F>(
    account: &str,
    service: &str,
    operation: &str,
    resource: &str,
    fut: F,
) -> Result<T, SdkError<E, HttpResponse>>
where
    F: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
{
    let started = Instant::now();
    let result = fut.await;
    tracing::debug!(
        account,
        service,
        operation,
        resource,
        duration_ms = started.elapsed().as_millis() as u64,
        ok = result.is_ok(),
        "aws call"
    );
    result
}

/// Runs one mutating AWS call: reported to the run's history just before it is made (so that
/// a crash mid-call still shows it), then as [`call`].
pub(crate) async fn mutate<U, T, E, F>(
    ctx: &ApplyCtx<U>,
    account: &str,
    service: &str,
    operation: &str,
    resource: &str,
    fut: F,
) -> Result<T, SdkError<E, HttpResponse>>
where
    F: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
{
    ctx.call(service, operation, true, resource);
    call(account, service, operation, resource, fut).await
}
