//! What every task of a run shares (the step context), and the one way tasks call AWS.

use crate::clients::Accounts;
use crate::logs::SourceLogs;
use crate::spec::{Setting, SourceSpec};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use trailhub_engine::{ApplyCtx, TaskError};

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
    /// Each bucket's region (by name: the namespace is global), as the inventory pins it or
    /// `HeadBucket` answered: a bucket answers only in its own region.
    pub regions: Arc<Mutex<HashMap<String, String>>>,
    /// The first delay of a re-read while S3 has not yet shown what was just written (its
    /// configuration reads are eventually consistent); the delays double, four times at most.
    pub consistency: Duration,
    /// Each source's logs, as read once by this process for `plan` and `verify` (a run's steps
    /// read bucket-check's journaled outputs instead).
    pub logs: Arc<Mutex<HashMap<String, Arc<tokio::sync::OnceCell<SourceLogs>>>>>,
    /// The archive lock of a shared state, held around every write of the archive's bucket
    /// and key policies (`None`: a local state, one process per state directory).
    pub archive_lock: Option<Arc<trailhub_state::remote::LockKeeper>>,
    /// The policy documents this process read, for the delivery check (which so makes no
    /// request of its own).
    pub documents: Arc<crate::delivery::Documents>,
}

impl StepContext {
    /// A context with AWS-like polling (every 5 s, for at most 30 minutes).
    pub fn new(setting: Setting, accounts: Accounts) -> Self {
        StepContext {
            setting: Arc::new(setting),
            accounts: Arc::new(accounts),
            stack_poll: Duration::from_secs(5),
            stack_timeout: Duration::from_secs(30 * 60),
            regions: Arc::default(),
            logs: Arc::default(),
            consistency: Duration::from_millis(500),
            archive_lock: None,
            documents: Arc::default(),
        }
    }

    /// Reads with `read` until `settled` holds for what it returns, waiting between reads (S3
    /// bucket configuration reads are eventually consistent: a read right after a write may
    /// return the state before it); the last read and whether it settled.
    pub(crate) async fn read_until<T, F, Fut>(
        &self,
        read: F,
        settled: impl Fn(&T) -> bool,
    ) -> Result<(T, bool), TaskError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, TaskError>>,
    {
        let mut delay = self.consistency;
        let mut value = read().await?;
        for _ in 0..4 {
            if settled(&value) {
                return Ok((value, true));
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
            value = read().await?;
        }
        let ok = settled(&value);
        Ok((value, ok))
    }

    /// Remembers `logs` as what this process knows of `account`'s logs (and its bucket's
    /// region): what bucket-check found, or what a test sets.
    pub fn remember_logs(&self, account: &str, logs: SourceLogs) {
        if let Some(region) = &logs.region {
            self.pin_region(&logs.bucket, region);
        }
        let cell = tokio::sync::OnceCell::new_with(Some(logs));
        self.logs
            .lock()
            .expect("the logs table should not be poisoned")
            .insert(account.to_string(), Arc::new(cell));
    }

    /// `source`'s logs, read once per process (see [`crate::logs::discover`]).
    pub async fn logs_of(&self, source: &SourceSpec) -> Result<SourceLogs, TaskError> {
        let cell = self
            .logs
            .lock()
            .expect("the logs table should not be poisoned")
            .entry(source.account_id.clone())
            .or_default()
            .clone();
        cell.get_or_try_init(|| crate::logs::discover(self, source))
            .await
            .cloned()
    }

    /// Pins `bucket`'s region (the inventory's `region` of a source).
    pub fn pin_region(&self, bucket: &str, region: &str) {
        self.regions
            .lock()
            .expect("the region table should not be poisoned")
            .insert(bucket.to_string(), region.to_string());
    }

    pub(crate) fn known_region(&self, bucket: &str) -> Option<String> {
        self.regions
            .lock()
            .expect("the region table should not be poisoned")
            .get(bucket)
            .cloned()
    }

    /// `bucket`'s region, as pinned or found (one `HeadBucket` the first time); an error when
    /// the bucket does not exist or is not `account`'s.
    pub(crate) async fn bucket_region(
        &self,
        account: &str,
        bucket: &str,
    ) -> Result<String, TaskError> {
        if let Some(region) = self.known_region(bucket) {
            return Ok(region);
        }
        match super::archive_bucket::presence(self, account, bucket).await? {
            super::archive_bucket::Presence::Owned => Ok(self
                .known_region(bucket)
                .unwrap_or_else(|| self.setting.region.clone())),
            super::archive_bucket::Presence::Missing => Err(TaskError::fatal(format!(
                "bucket {bucket} does not exist in account {account}: HeadBucket answered 404"
            ))
            .with_code("NoSuchBucket")
            .with_hint(format!(
                "create bucket {bucket} in account {account} (or fix its name in the inventory), then `trailhub resume`"
            ))),
        }
    }

    /// S3 in `bucket`'s region, for calls on that bucket.
    pub(crate) async fn s3_for(
        &self,
        account: &str,
        bucket: &str,
    ) -> Result<aws_sdk_s3::Client, TaskError> {
        let region = self.bucket_region(account, bucket).await?;
        Ok(self.accounts.get(account).await?.s3_in(&region))
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
