//! Credentials and clients per account, and the identity check that guards every account.
//!
//! Every client of an account is built from one `SdkConfig`: the standard chain, a profile, or
//! an assumed role (STS from the standard chain). Before a client of an account is handed to a
//! task, its identity must be the declared account id, once per process: a wrong profile never
//! touches the wrong account, also after a resume in a new process. `GetCallerIdentity` says it
//! for a profile or the default chain; for an assumed role, AssumeRole's own answer does.
//! Credentials stay in memory; nothing here journals or logs them.

use crate::errors::classify;
use crate::retry_history::RetryHistory;
use crate::spec::Credentials;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;
use trailhub_engine::TaskError;

/// Attempts the SDK makes per call before the error reaches the step.
const SDK_ATTEMPTS: u32 = 3;

/// Builds the SDK configuration of each account from the environment and the inventory.
#[derive(Debug, Clone)]
pub struct Connector {
    region: String,
    endpoint_url: Option<String>,
    base: Arc<OnceCell<SdkConfig>>,
    http: SharedHttpClient,
}

/// One HTTPS client for every account and service: the SDK otherwise builds one per service
/// client, each with its own connection pool and its own copy of the TLS root certificates
/// (about 250 KB), which made memory grow by about 1 MB per account.
///
/// The SDK also asks the client for a connector each time a service client is made, only to
/// warm it up, and drops it (`validate_base_client_config`: no settings, no components). A TLS
/// connector loads the root certificates: eight service clients per account made that 4,000
/// loads for 500 accounts, churning memory and CPU for nothing. That call gets a plain
/// connector, never used for a request; the connectors requests use are built once per
/// timeout setting and cached by the client.
fn shared_https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new().build_with_connector_fn(|settings, components| {
        if settings.is_none() && components.is_none() {
            return aws_smithy_http_client::Connector::builder().build_http();
        }
        let mut connector = aws_smithy_http_client::ConnectorBuilder::default().tls_provider(
            aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
            ),
        );
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        // As the SDK's own default client: HTTPS_PROXY / NO_PROXY are honoured.
        connector.set_proxy_config(Some(aws_smithy_http_client::proxy::ProxyConfig::from_env()));
        connector.build()
    })
}

impl Connector {
    /// A connector for `region`; with `endpoint_url`, every client talks to that endpoint (and S3
    /// uses path-style addressing), e.g. a local emulator.
    pub fn new(region: &str, endpoint_url: Option<String>) -> Self {
        Connector {
            region: region.to_string(),
            endpoint_url,
            base: Arc::new(OnceCell::new()),
            http: shared_https_client(),
        }
    }

    /// The endpoint override, if any.
    pub fn endpoint_url(&self) -> Option<&str> {
        self.endpoint_url.as_deref()
    }

    /// The region.
    pub fn region(&self) -> &str {
        &self.region
    }

    fn loader(&self) -> aws_config::ConfigLoader {
        // The SDK retries a transient failure of one call a few times (each retry is written to
        // the node's history by `RetryHistory`); what still fails is retried by the engine, as a
        // whole step, with its own backoff.
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .http_client(self.http.clone())
            .retry_config(RetryConfig::standard().with_max_attempts(SDK_ATTEMPTS))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        loader
    }

    async fn base(&self) -> &SdkConfig {
        self.base.get_or_init(|| self.loader().load()).await
    }

    /// The configuration for one account's credentials.
    pub async fn config(&self, credentials: &Credentials) -> SdkConfig {
        match credentials {
            Credentials::Default => self.base().await.clone(),
            Credentials::Profile(name) => {
                // The profile's credentials only: in the default chain, environment credentials
                // would come first and silently win over the profile the inventory names. Built
                // outside the loader, it must be given trailhub's HTTPS client (the SDK crates
                // have no default one, see the root Cargo.toml) and the region: a profile that
                // assumes a role (`role_arn`, `source_profile`) calls STS through them, and
                // without a region that call failed with "missing signing region".
                let provider = aws_config::profile::ProfileFileCredentialsProvider::builder()
                    .profile_name(name)
                    .configure(
                        &aws_config::provider_config::ProviderConfig::default()
                            .with_http_client(self.http.clone())
                            .with_region(Some(Region::new(self.region.clone()))),
                    )
                    .build();
                self.loader()
                    .profile_name(name)
                    .credentials_provider(provider)
                    .load()
                    .await
            }
            Credentials::AssumeRole(arn) => {
                let base = self.base().await;
                let provider = aws_config::sts::AssumeRoleProvider::builder(arn.clone())
                    .session_name("trailhub")
                    .configure(base)
                    .build()
                    .await;
                // A cache of its own per account: the base configuration's cache is shared by
                // every configuration derived from it and holds at most 64 identities, so with
                // more accounts their credentials were evicted and AssumeRole called again and
                // again (15 times per account at 500 accounts).
                base.to_builder()
                    .credentials_provider(
                        aws_credential_types::provider::SharedCredentialsProvider::new(provider),
                    )
                    .identity_cache(aws_config::identity::IdentityCache::lazy().build())
                    .build()
            }
        }
    }
}

/// The clients of one account, whose identity was checked.
#[derive(Debug, Clone)]
pub struct AccountClients {
    /// The account id the credentials resolved to (the declared one).
    pub account_id: String,
    /// The caller's ARN, as GetCallerIdentity (or, for an assumed role, AssumeRole) answered.
    pub caller_arn: String,
    /// S3, in the inventory's region.
    pub s3: aws_sdk_s3::Client,
    /// IAM.
    pub iam: aws_sdk_iam::Client,
    /// CloudFormation.
    pub cfn: aws_sdk_cloudformation::Client,
    /// CloudTrail, in the inventory's region.
    pub cloudtrail: aws_sdk_cloudtrail::Client,
    /// KMS, in the inventory's region.
    pub kms: aws_sdk_kms::Client,
    /// S3 Control (Batch Operations jobs), in the inventory's region; `None` for clients built
    /// without it (tests of other steps).
    pub s3control: Option<aws_sdk_s3control::Client>,
    /// Clients of other regions, made on first use from the ones above (same credentials,
    /// same HTTP client): a bucket answers only in its own region.
    regional: Arc<Mutex<HashMap<String, Regional>>>,
}

/// One other region's clients.
#[derive(Debug, Clone)]
struct Regional {
    s3: aws_sdk_s3::Client,
    kms: aws_sdk_kms::Client,
}

impl AccountClients {
    /// An account's clients (tests build them over mocked HTTP).
    pub fn new(
        account_id: &str,
        caller_arn: &str,
        s3: aws_sdk_s3::Client,
        iam: aws_sdk_iam::Client,
        cfn: aws_sdk_cloudformation::Client,
        cloudtrail: aws_sdk_cloudtrail::Client,
        kms: aws_sdk_kms::Client,
    ) -> Self {
        AccountClients {
            account_id: account_id.to_string(),
            caller_arn: caller_arn.to_string(),
            s3,
            iam,
            cfn,
            cloudtrail,
            kms,
            s3control: None,
            regional: Arc::default(),
        }
    }

    /// The same clients, with S3 Control.
    pub fn with_s3control(mut self, s3control: aws_sdk_s3control::Client) -> Self {
        self.s3control = Some(s3control);
        self
    }

    /// S3 Control in `region` (where a bucket's Batch Operations jobs are made).
    pub fn s3control_in(&self, region: &str) -> Option<aws_sdk_s3control::Client> {
        let client = self.s3control.as_ref()?;
        if client.config().region().map(|r| r.as_ref()) == Some(region) {
            return Some(client.clone());
        }
        Some(aws_sdk_s3control::Client::from_conf(
            client
                .config()
                .to_builder()
                .region(Region::new(region.to_string()))
                .build(),
        ))
    }

    /// Clients built from one configuration.
    pub fn from_config(
        account_id: &str,
        caller_arn: &str,
        config: &SdkConfig,
        path_style: bool,
    ) -> Self {
        let s3 = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(path_style)
            .interceptor(RetryHistory)
            .build();
        let iam = aws_sdk_iam::config::Builder::from(config)
            .interceptor(RetryHistory)
            .build();
        let cfn = aws_sdk_cloudformation::config::Builder::from(config)
            .interceptor(RetryHistory)
            .build();
        let cloudtrail = aws_sdk_cloudtrail::config::Builder::from(config)
            .interceptor(RetryHistory)
            .build();
        let kms = aws_sdk_kms::config::Builder::from(config)
            .interceptor(RetryHistory)
            .build();
        let s3control = aws_sdk_s3control::config::Builder::from(config)
            .interceptor(RetryHistory)
            .build();
        AccountClients::new(
            account_id,
            caller_arn,
            aws_sdk_s3::Client::from_conf(s3),
            aws_sdk_iam::Client::from_conf(iam),
            aws_sdk_cloudformation::Client::from_conf(cfn),
            aws_sdk_cloudtrail::Client::from_conf(cloudtrail),
            aws_sdk_kms::Client::from_conf(kms),
        )
        .with_s3control(aws_sdk_s3control::Client::from_conf(s3control))
    }

    fn regional(&self, region: &str) -> Option<Regional> {
        if self.s3.config().region().map(|r| r.as_ref()) == Some(region) {
            return None;
        }
        let mut regional = self
            .regional
            .lock()
            .expect("regional clients should not be poisoned");
        let clients = regional.entry(region.to_string()).or_insert_with(|| {
            let region = Region::new(region.to_string());
            Regional {
                s3: aws_sdk_s3::Client::from_conf(
                    self.s3.config().to_builder().region(region.clone()).build(),
                ),
                kms: aws_sdk_kms::Client::from_conf(
                    self.kms.config().to_builder().region(region).build(),
                ),
            }
        });
        Some(clients.clone())
    }

    /// S3 in `region` (a bucket's own region).
    pub fn s3_in(&self, region: &str) -> aws_sdk_s3::Client {
        self.regional(region)
            .map_or_else(|| self.s3.clone(), |r| r.s3)
    }

    /// KMS in `region` (a key's own region).
    pub fn kms_in(&self, region: &str) -> aws_sdk_kms::Client {
        self.regional(region)
            .map_or_else(|| self.kms.clone(), |r| r.kms)
    }
}

/// The accounts of a run: credentials per account, clients built and checked on first use.
pub struct Accounts {
    connector: Option<Connector>,
    credentials: HashMap<String, Credentials>,
    cells: Mutex<HashMap<String, Arc<OnceCell<Arc<AccountClients>>>>>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("accounts", &self.credentials.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Accounts {
    /// Accounts reached through `connector`, with these credentials per account id.
    pub fn new(connector: Connector, credentials: HashMap<String, Credentials>) -> Self {
        Accounts {
            connector: Some(connector),
            credentials,
            cells: Mutex::new(HashMap::new()),
        }
    }

    /// Accounts whose clients are given (tests with mocked clients): no identity check is made.
    pub fn with_clients(clients: Vec<AccountClients>) -> Self {
        let accounts = Accounts {
            connector: None,
            credentials: HashMap::new(),
            cells: Mutex::new(HashMap::new()),
        };
        {
            let mut cells = accounts.cells.lock().expect("cells should not be poisoned");
            for c in clients {
                cells.insert(
                    c.account_id.clone(),
                    Arc::new(OnceCell::new_with(Some(Arc::new(c)))),
                );
            }
        }
        accounts
    }

    /// The clients of `account_id`, after checking once that its credentials really belong to it.
    pub async fn get(&self, account_id: &str) -> Result<Arc<AccountClients>, TaskError> {
        let cell = {
            let mut cells = self.cells.lock().expect("cells should not be poisoned");
            cells.entry(account_id.to_string()).or_default().clone()
        };
        cell.get_or_try_init(|| self.connect(account_id))
            .await
            .cloned()
    }

    /// Forgets `account_id`'s clients (a later `get` checks its identity again): for an
    /// account whose steps are all done, so that memory does not grow with the accounts.
    pub fn release(&self, account_id: &str) {
        self.cells
            .lock()
            .expect("cells should not be poisoned")
            .remove(account_id);
    }

    async fn connect(&self, account_id: &str) -> Result<Arc<AccountClients>, TaskError> {
        let Some(connector) = &self.connector else {
            return Err(TaskError::fatal(format!(
                "no clients for account {account_id}"
            )));
        };
        let credentials = self
            .credentials
            .get(account_id)
            .cloned()
            .unwrap_or(Credentials::Default);
        let hint = |mut err: TaskError| {
            if err.hint.is_none() {
                err = err.with_hint(format!(
                    "check the credentials for account {account_id} (`profile` or `assume_role` in the inventory)"
                ));
            }
            err
        };
        let (config, actual, arn) = if let Credentials::AssumeRole(role_arn) = &credentials {
            // AssumeRole's answer names the session's ARN, in the role's account, as
            // GetCallerIdentity would: it is the identity check, one request instead of two.
            let base = connector.base().await;
            let role = AssumedRole::new(base, role_arn);
            let (first, arn) = role
                .assume()
                .await
                .map_err(|e| hint(classify("AssumeRole", &describe(&credentials), e, &[])))?;
            let actual = arn.split(':').nth(4).unwrap_or_default().to_string();
            *role.first.lock().expect("first should not be poisoned") = Some(first);
            (role.config(base), actual, arn)
        } else {
            let config = connector.config(&credentials).await;
            // With `RetryHistory` too: a retried identity check belongs in the node's history.
            let sts = aws_sdk_sts::Client::from_conf(
                aws_sdk_sts::config::Builder::from(&config)
                    .interceptor(RetryHistory)
                    .build(),
            );
            let identity = sts.get_caller_identity().send().await.map_err(|e| {
                hint(classify(
                    "GetCallerIdentity",
                    &describe(&credentials),
                    e,
                    &[],
                ))
            })?;
            let actual = identity.account().unwrap_or_default().to_string();
            let arn = identity.arn().unwrap_or_default().to_string();
            (config, actual, arn)
        };
        let arn = arn.as_str();
        if actual != account_id {
            return Err(TaskError::fatal(format!(
                "credentials for account {account_id} ({}) resolve to account {actual} ({arn}); nothing was changed in it",
                describe(&credentials)
            ))
            .with_code("WrongAccount")
            .with_hint(format!(
                "fix `profile` or `assume_role` for account {account_id} in the inventory, then `trailhub resume`"
            )));
        }
        tracing::debug!(account = account_id, caller = arn, "identity checked");
        Ok(Arc::new(AccountClients::from_config(
            account_id,
            arn,
            &config,
            connector.endpoint_url.is_some(),
        )))
    }
}

/// The credentials of a role trailhub assumes itself (`assume_role` in the inventory), so that
/// the AssumeRole answer, which names the session's ARN in the role's account, is the identity
/// check: aws-config's `AssumeRoleProvider` keeps that answer to itself, and a GetCallerIdentity
/// after it would cost every account one request more. The first credentials come from the
/// identity check's own call; later ones (after they expire, about an hour) from a new AssumeRole.
#[derive(Debug, Clone)]
struct AssumedRole {
    sts: aws_sdk_sts::Client,
    role_arn: String,
    first: Arc<Mutex<Option<aws_credential_types::Credentials>>>,
}

impl AssumedRole {
    fn new(base: &SdkConfig, role_arn: &str) -> Self {
        // With `RetryHistory`: a retried AssumeRole belongs in the node's history.
        let sts = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(base)
                .interceptor(RetryHistory)
                .build(),
        );
        AssumedRole {
            sts,
            role_arn: role_arn.to_string(),
            first: Arc::new(Mutex::new(None)),
        }
    }

    /// One AssumeRole (session name `trailhub`, the role's default duration): the credentials
    /// and the session's ARN.
    async fn assume(
        &self,
    ) -> Result<
        (aws_credential_types::Credentials, String),
        aws_sdk_sts::error::SdkError<
            aws_sdk_sts::operation::assume_role::AssumeRoleError,
            aws_smithy_runtime_api::client::orchestrator::HttpResponse,
        >,
    > {
        let out = self
            .sts
            .assume_role()
            .role_arn(&self.role_arn)
            .role_session_name("trailhub")
            .send()
            .await?;
        let arn = out
            .assumed_role_user()
            .map(|u| u.arn().to_string())
            .unwrap_or_default();
        let credentials = match out.credentials() {
            Some(c) => aws_credential_types::Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_string()),
                std::time::SystemTime::try_from(*c.expiration()).ok(),
                "trailhub-assume-role",
            ),
            None => aws_credential_types::Credentials::new("", "", None, None, "none"),
        };
        Ok((credentials, arn))
    }

    /// The account's configuration: `base` with these credentials, in a cache of its own per
    /// account (the base configuration's cache is shared by every configuration derived from it
    /// and holds at most 64 identities: with more accounts their credentials were evicted and
    /// AssumeRole called again and again, 15 times per account at 500 accounts).
    fn config(&self, base: &SdkConfig) -> SdkConfig {
        base.to_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(self.clone()),
            )
            .identity_cache(aws_config::identity::IdentityCache::lazy().build())
            .build()
    }
}

impl aws_credential_types::provider::ProvideCredentials for AssumedRole {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(async move {
            if let Some(first) = self
                .first
                .lock()
                .expect("first should not be poisoned")
                .take()
            {
                return Ok(first);
            }
            self.assume()
                .await
                .map(|(c, _)| c)
                .map_err(aws_credential_types::provider::error::CredentialsError::provider_error)
        })
    }
}

fn describe(credentials: &Credentials) -> String {
    match credentials {
        Credentials::Default => "the default credential chain".into(),
        Credentials::Profile(p) => format!("profile `{p}`"),
        Credentials::AssumeRole(arn) => format!("role {arn}"),
    }
}
