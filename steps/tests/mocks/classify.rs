//! `classify` on real SDK errors: the responses AWS sends (parsed by the SDK from the wire
//! format), timeouts and unreachable endpoints, each turned into a retryable or fatal task error
//! with its code.

use crate::support::*;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::operation::get_bucket_versioning::GetBucketVersioningError;
use aws_smithy_mocks::{Rule, mock};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::{ConnectorError, SdkError};
use std::time::Duration;
use trailhub_engine::{ErrorKind, TaskError};
use trailhub_steps::classify;

/// The error GetBucketVersioning returns when S3 answers `status` with `body`.
async fn s3_answer(
    status: u16,
    body: Option<String>,
) -> SdkError<GetBucketVersioningError, HttpResponse> {
    let rule = mock!(aws_sdk_s3::Client::get_bucket_versioning)
        .sequence()
        .http_status(status, body)
        .build();
    let clients = account(
        SOURCE,
        Mocked {
            s3: &[&rule],
            ..Default::default()
        },
        &Calls::default(),
    );
    clients
        .s3
        .get_bucket_versioning()
        .bucket(SOURCE_BUCKET)
        .send()
        .await
        .expect_err("the mocked answer is an error")
}

async fn classify_s3(status: u16, body: Option<String>) -> TaskError {
    classify(
        "GetBucketVersioning",
        SOURCE_BUCKET,
        s3_answer(status, body).await,
        &[],
    )
}

#[tokio::test]
async fn server_errors_and_throttling_are_retryable() {
    let cases: [(u16, Option<String>, &str); 7] = [
        (
            500,
            Some(s3_error(
                "InternalError",
                "We encountered an internal error. Please try again.",
            )),
            "InternalError",
        ),
        (500, None, "HTTP500"),
        (502, None, "HTTP502"),
        (
            503,
            Some(s3_error("SlowDown", "Please reduce your request rate.")),
            "SlowDown",
        ),
        (429, None, "HTTP429"),
        (
            400,
            Some(s3_error("Throttling", "Rate exceeded")),
            "Throttling",
        ),
        (
            400,
            Some(s3_error(
                "RequestTimeout",
                "Your socket connection to the server was not read from or written to within the timeout period.",
            )),
            "RequestTimeout",
        ),
    ];
    for (status, body, code) in cases {
        let err = classify_s3(status, body).await;
        assert_eq!(
            err.kind,
            ErrorKind::Retryable,
            "HTTP {status} {code}: {err:?}"
        );
        assert_eq!(err.code.as_deref(), Some(code), "HTTP {status}: {err:?}");
        assert!(
            err.message.starts_with(&format!(
                "GetBucketVersioning on {SOURCE_BUCKET} failed: {code}"
            )),
            "{}",
            err.message
        );
    }
}

#[tokio::test]
async fn a_missing_bucket_is_fatal_with_its_code_and_a_hint() {
    let err = classify_s3(
        404,
        Some(s3_error(
            "NoSuchBucket",
            "The specified bucket does not exist",
        )),
    )
    .await;
    assert_eq!(err.kind, ErrorKind::Fatal);
    assert_eq!(err.code.as_deref(), Some("NoSuchBucket"));
    assert_eq!(
        err.message,
        format!(
            "GetBucketVersioning on {SOURCE_BUCKET} failed: NoSuchBucket: The specified bucket does not exist"
        )
    );
    assert!(
        err.hint
            .as_deref()
            .is_some_and(|h| h.contains("create the bucket")),
        "{err:?}"
    );
}

#[tokio::test]
async fn credentials_and_permission_errors_are_fatal_with_a_hint() {
    for (status, code, says) in [
        (403, "AccessDenied", "lack s3:GetBucketVersioning"),
        (403, "InvalidAccessKeyId", "invalid or expired"),
        (400, "ExpiredToken", "invalid or expired"),
    ] {
        let err = classify_s3(status, Some(s3_error(code, "denied"))).await;
        assert_eq!(err.kind, ErrorKind::Fatal, "{code}");
        assert_eq!(err.code.as_deref(), Some(code));
        assert!(
            err.hint.as_deref().is_some_and(|h| h.contains(says)),
            "{code}: {err:?}"
        );
    }
}

#[tokio::test]
async fn a_call_specific_code_is_retryable_only_where_the_call_says_so() {
    let answer = || async {
        let rule = mock!(aws_sdk_s3::Client::put_bucket_policy)
            .sequence()
            .http_status(
                400,
                Some(s3_error("MalformedPolicy", "Invalid principal in policy")),
            )
            .build();
        let clients = account(
            ARCHIVE,
            Mocked {
                s3: &[&rule],
                ..Default::default()
            },
            &Calls::default(),
        );
        clients
            .s3
            .put_bucket_policy()
            .bucket(ARCHIVE_BUCKET)
            .policy("{}")
            .send()
            .await
            .expect_err("MalformedPolicy")
    };
    let on_grant = classify(
        "PutBucketPolicy",
        ARCHIVE_BUCKET,
        answer().await,
        &["MalformedPolicy"],
    );
    assert_eq!(on_grant.kind, ErrorKind::Retryable);
    assert_eq!(on_grant.code.as_deref(), Some("MalformedPolicy"));
    let elsewhere = classify("PutBucketPolicy", ARCHIVE_BUCKET, answer().await, &[]);
    assert_eq!(elsewhere.kind, ErrorKind::Fatal);
    assert_eq!(elsewhere.code.as_deref(), Some("MalformedPolicy"));
}

#[tokio::test]
async fn cloudformation_throttling_is_retryable_and_its_validation_errors_fatal() {
    async fn answer(code: &str, message: &str) -> TaskError {
        let body = query_error(code, message);
        let rule: Rule = mock!(aws_sdk_cloudformation::Client::describe_stacks)
            .sequence()
            .http_status(400, Some(body))
            .build();
        let clients = account(
            SOURCE,
            Mocked {
                cfn: &[&rule],
                ..Default::default()
            },
            &Calls::default(),
        );
        let err = clients
            .cfn
            .describe_stacks()
            .stack_name(STACK)
            .send()
            .await
            .expect_err("an error");
        classify("DescribeStacks", STACK, err, &[])
    }
    let throttled = answer("Throttling", "Rate exceeded").await;
    assert_eq!(throttled.kind, ErrorKind::Retryable);
    assert_eq!(throttled.code.as_deref(), Some("Throttling"));
    assert_eq!(
        throttled.message,
        format!("DescribeStacks on {STACK} failed: Throttling: Rate exceeded")
    );
    let invalid = answer("ValidationError", "1 validation error detected").await;
    assert_eq!(invalid.kind, ErrorKind::Fatal);
    assert_eq!(invalid.code.as_deref(), Some("ValidationError"));
}

/// An S3 client whose HTTP connector answers with `answer`, one attempt per call, and a 50 ms
/// attempt timeout.
fn s3_over<F>(answer: F) -> aws_sdk_s3::Client
where
    F: Fn() -> HttpConnectorFuture + Send + Sync + 'static,
{
    struct Connector<F>(F);
    impl<F> std::fmt::Debug for Connector<F> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Connector")
        }
    }
    impl<F: Fn() -> HttpConnectorFuture + Send + Sync> HttpConnector for Connector<F> {
        fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
            (self.0)()
        }
    }
    let connector = SharedHttpConnector::new(Connector(answer));
    let config = aws_sdk_s3::Config::builder()
        .with_test_defaults_v2()
        .http_client(http_client_fn(move |_, _| connector.clone()))
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_millis(50))
                .build(),
        )
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

#[tokio::test]
async fn a_call_that_times_out_is_retryable() {
    let client = s3_over(|| HttpConnectorFuture::new(std::future::pending()));
    let err = client
        .get_bucket_versioning()
        .bucket(SOURCE_BUCKET)
        .send()
        .await
        .expect_err("times out");
    assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
    let err = classify("GetBucketVersioning", SOURCE_BUCKET, err, &[]);
    assert_eq!(err.kind, ErrorKind::Retryable);
    assert_eq!(err.code.as_deref(), Some("Timeout"));
    assert_eq!(
        err.message,
        format!("GetBucketVersioning on {SOURCE_BUCKET} timed out")
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_retryable() {
    let client = s3_over(|| {
        HttpConnectorFuture::ready(Err(ConnectorError::io(
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused").into(),
        )))
    });
    let err = client
        .get_bucket_versioning()
        .bucket(SOURCE_BUCKET)
        .send()
        .await
        .expect_err("cannot connect");
    assert!(matches!(err, SdkError::DispatchFailure(_)), "{err:?}");
    let err = classify("GetBucketVersioning", SOURCE_BUCKET, err, &[]);
    assert_eq!(err.kind, ErrorKind::Retryable);
    assert_eq!(err.code.as_deref(), Some("ConnectionError"));
    assert!(
        err.message.starts_with(&format!(
            "GetBucketVersioning on {SOURCE_BUCKET} could not reach the endpoint"
        )),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("connection refused"),
        "{}",
        err.message
    );
}

/// An S3 client whose credentials provider fails with `error`, as a missing profile, a refused
/// AssumeRole or an expired SSO session do (the request is never sent).
fn s3_without_credentials(
    error: fn() -> aws_credential_types::provider::error::CredentialsError,
) -> aws_sdk_s3::Client {
    #[derive(Debug)]
    struct Failing(fn() -> aws_credential_types::provider::error::CredentialsError);
    impl aws_credential_types::provider::ProvideCredentials for Failing {
        fn provide_credentials<'a>(
            &'a self,
        ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            aws_credential_types::provider::future::ProvideCredentials::ready(Err((self.0)()))
        }
    }
    let client = s3_over(|| HttpConnectorFuture::new(std::future::pending()));
    let config = client
        .config()
        .to_builder()
        .credentials_provider(Failing(error))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

#[tokio::test]
async fn missing_or_refused_credentials_fail_at_once_with_what_to_do() {
    use aws_credential_types::provider::error::CredentialsError;
    type Case = (fn() -> CredentialsError, &'static str, ErrorKind);
    let cases: [Case; 3] = [
        (
            || CredentialsError::not_loaded("the credential provider was not enabled"),
            "NoCredentials",
            ErrorKind::Fatal,
        ),
        (
            || {
                CredentialsError::provider_error(
                    "AccessDenied: not authorized to perform sts:AssumeRole",
                )
            },
            "CredentialsRefused",
            ErrorKind::Fatal,
        ),
        (
            || CredentialsError::provider_timed_out(Duration::from_secs(5)),
            "CredentialsTimeout",
            ErrorKind::Retryable,
        ),
    ];
    for (error, code, kind) in cases {
        let err = s3_without_credentials(error)
            .get_bucket_versioning()
            .bucket(SOURCE_BUCKET)
            .send()
            .await
            .expect_err("no credentials");
        let err = classify("GetBucketVersioning", SOURCE_BUCKET, err, &[]);
        assert_eq!(err.code.as_deref(), Some(code), "{}", err.message);
        assert_eq!(err.kind, kind, "{code}");
        if kind == ErrorKind::Fatal {
            assert!(
                err.hint
                    .as_deref()
                    .is_some_and(|h| h.contains("aws sso login")),
                "{:?}",
                err.hint
            );
        }
    }
}

#[tokio::test]
async fn an_invalid_replication_configuration_fails_at_once_and_access_denied_names_the_permission()
{
    use aws_sdk_s3::operation::put_bucket_replication::PutBucketReplicationOutput;
    let rule = mock!(aws_sdk_s3::Client::put_bucket_replication)
        .sequence()
        .http_status(
            400,
            Some(s3_error(
                "InvalidRequest",
                "Versioning must be 'Enabled' on the bucket to apply a replication configuration",
            )),
        )
        .http_status(403, Some(s3_error("AccessDenied", "Access Denied")))
        .output(|| PutBucketReplicationOutput::builder().build())
        .build();
    let clients = account(
        SOURCE,
        Mocked {
            s3: &[&rule],
            ..Default::default()
        },
        &Calls::default(),
    );
    let put = || async {
        let rule = aws_sdk_s3::types::ReplicationRule::builder()
            .status(aws_sdk_s3::types::ReplicationRuleStatus::Enabled)
            .destination(
                aws_sdk_s3::types::Destination::builder()
                    .bucket(format!("arn:aws:s3:::{ARCHIVE_BUCKET}"))
                    .build()
                    .expect("destination"),
            )
            .build()
            .expect("rule");
        let config = aws_sdk_s3::types::ReplicationConfiguration::builder()
            .role(role_arn())
            .rules(rule)
            .build()
            .expect("config");
        clients
            .s3
            .put_bucket_replication()
            .bucket(SOURCE_BUCKET)
            .replication_configuration(config)
            .send()
            .await
            .expect_err("refused")
    };
    let invalid = classify("PutBucketReplication", SOURCE_BUCKET, put().await, &[]);
    assert_eq!(invalid.kind, ErrorKind::Fatal);
    assert_eq!(invalid.code.as_deref(), Some("InvalidRequest"));
    assert!(
        invalid
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("versioning"))
    );
    let denied = classify("PutBucketReplication", SOURCE_BUCKET, put().await, &[]);
    assert_eq!(denied.kind, ErrorKind::Fatal);
    assert!(
        denied.hint.as_deref().is_some_and(
            |h| h.contains("s3:PutReplicationConfiguration") && h.contains("iam:PassRole")
        ),
        "{:?}",
        denied.hint
    );
}
