//! Classification of AWS SDK errors into retryable and fatal task errors, by the modeled error
//! code and HTTP status, never by message text.

use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use trailhub_engine::TaskError;

/// Codes AWS services use for throttling.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Codes that mean "try again shortly" for reasons other than throttling.
const TRANSIENT: &[&str] = &[
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "OperationAborted",
];

/// Turns an SDK error into a [`TaskError`]: throttling, 5xx, timeouts, connection failures,
/// and the call's own `retryable_codes` (IAM propagation, e.g. `MalformedPolicy` on a grant)
/// are retryable; everything else is fatal. The message names the operation, the resource and
/// the AWS error code.
pub fn classify<E>(
    operation: &str,
    resource: &str,
    err: SdkError<E, HttpResponse>,
    retryable_codes: &[&str],
) -> TaskError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err {
        SdkError::TimeoutError(_) => {
            TaskError::retryable(format!("{operation} on {resource} timed out"))
                .with_code("Timeout")
        }
        SdkError::DispatchFailure(e) => {
            if let Some(credentials) = e.as_connector_error().and_then(credentials_error) {
                return credentials_failure(operation, resource, credentials);
            }
            let what = if e.is_timeout() {
                "timed out"
            } else if e.is_io() {
                "could not reach the endpoint"
            } else {
                "failed to send"
            };
            let cause = e
                .as_connector_error()
                .map(|c| error_chain(c))
                .unwrap_or_else(|| format!("{e:?}"));
            TaskError::retryable(format!("{operation} on {resource} {what}: {cause}"))
                .with_code("ConnectionError")
        }
        SdkError::ResponseError(e) => {
            let status = e.raw().status().as_u16();
            TaskError::retryable(format!(
                "{operation} on {resource}: unreadable response (HTTP {status})"
            ))
            .with_code(format!("HTTP{status}"))
        }
        SdkError::ServiceError(e) => {
            let status = e.raw().status().as_u16();
            let err = e.into_err();
            let code = err
                .code()
                .map(str::to_string)
                .unwrap_or_else(|| http_code(status));
            let message = err.message().unwrap_or("").to_string();
            let text = if message.is_empty() {
                format!("{operation} on {resource} failed: {code} (HTTP {status})")
            } else {
                format!("{operation} on {resource} failed: {code}: {message}")
            };
            let retryable = status >= 500
                || status == 429
                || THROTTLING.contains(&code.as_str())
                || TRANSIENT.contains(&code.as_str())
                || retryable_codes.contains(&code.as_str());
            let error = if retryable {
                TaskError::retryable(text)
            } else {
                TaskError::fatal(text)
            };
            let hint = hint_for(&code, operation, resource);
            let error = error.with_code(code);
            match hint {
                Some(h) => error.with_hint(h),
                None => error,
            }
        }
        other => TaskError::fatal(format!(
            "{operation} on {resource} failed: {}",
            error_chain(&other)
        )),
    }
}

/// A code for a response that carried none (HEAD requests have no body).
fn http_code(status: u16) -> String {
    match status {
        301 => "PermanentRedirect".into(),
        400 => "BadRequest".into(),
        403 => "Forbidden".into(),
        404 => "NotFound".into(),
        409 => "Conflict".into(),
        _ => format!("HTTP{status}"),
    }
}

fn hint_for(code: &str, operation: &str, resource: &str) -> Option<String> {
    let hint = match code {
        "AccessDenied" | "Forbidden" | "AccessDeniedException" | "UnauthorizedOperation" => {
            format!(
                "the credentials used for this account lack {} on {resource}: grant it \
                 (README, 'Running against real AWS') or fix `profile`/`assume_role` in the inventory, then resume",
                permission(operation)
            )
        }
        "InvalidRequest" | "InvalidArgument" if operation == "PutBucketReplication" => {
            "S3 refused the replication configuration: check that versioning is enabled on \
             the bucket, that the role exists and may be passed (iam:PassRole), and the error's \
             message; then `trailhub resume`"
                .into()
        }
        "NoSuchBucket" | "NotFound" => {
            "create the bucket (or fix its name in the inventory), then `trailhub resume`".into()
        }
        "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "ExpiredTokenException" => {
            "the credentials are invalid or expired: refresh them, then `trailhub resume`".into()
        }
        _ => return None,
    };
    Some(hint)
}

/// The IAM action an API operation needs, for the hint of an `AccessDenied`. S3's actions are
/// not always named after its operations (AWS's "Amazon S3 actions" table); the others are.
fn permission(operation: &str) -> String {
    let s3 = |action: &str| format!("s3:{action}");
    match operation {
        "HeadBucket" => s3("ListBucket"),
        "GetBucketEncryption" => s3("GetEncryptionConfiguration"),
        "GetBucketReplication" => s3("GetReplicationConfiguration"),
        "PutBucketReplication" => format!(
            "{} (and iam:PassRole on the role)",
            s3("PutReplicationConfiguration")
        ),
        "DeleteBucketReplication" => s3("PutReplicationConfiguration"),
        "ListObjectVersions" => s3("ListBucketVersions"),
        "GetObjectLockConfiguration" => s3("GetBucketObjectLockConfiguration"),
        "HeadObject" => s3("GetObject"),
        "GetBucketVersioning"
        | "PutBucketVersioning"
        | "GetBucketPolicy"
        | "PutBucketPolicy"
        | "DeleteBucketPolicy"
        | "CreateBucket"
        | "DeleteBucket"
        | "PutObject" => s3(operation),
        "DescribeStacks"
        | "CreateStack"
        | "UpdateStack"
        | "DeleteStack"
        | "GetTemplate"
        | "DescribeStackEvents" => format!("cloudformation:{operation}"),
        "GetRole" | "GetRolePolicy" | "PutRolePolicy" | "UpdateAssumeRolePolicy" => {
            format!("iam:{operation}")
        }
        "DescribeTrails" | "GetTrailStatus" => format!("cloudtrail:{operation}"),
        "GetCallerIdentity" => "sts:GetCallerIdentity (or sts:AssumeRole on the role)".into(),
        "AssumeRole" => {
            "sts:AssumeRole on the role (and the role's trust policy must name the caller)".into()
        }
        other => format!("the permission for {other}"),
    }
}

/// The credentials error behind a request that could not be sent, if that is why.
fn credentials_error(
    err: &aws_smithy_runtime_api::client::result::ConnectorError,
) -> Option<&CredentialsError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(found) = e.downcast_ref::<CredentialsError>() {
            return Some(found);
        }
        source = e.source();
    }
    None
}

/// A request that was never sent because its credentials could not be had: a missing profile,
/// an AssumeRole refused, expired keys or SSO session. Fatal (retrying does not fix any of
/// them), except a credential provider that timed out.
fn credentials_failure(operation: &str, resource: &str, err: &CredentialsError) -> TaskError {
    let text = format!(
        "{operation} with {resource} found no usable credentials: {}",
        error_chain(err)
    );
    let hint = "fix the credentials for this account (the profile exists in ~/.aws/config, the \
                role may be assumed from the base credentials, `aws sso login` for an expired \
                SSO session, fresh keys for expired ones), then `trailhub resume`";
    match err {
        CredentialsError::ProviderTimedOut(_) => {
            TaskError::retryable(text).with_code("CredentialsTimeout")
        }
        CredentialsError::CredentialsNotLoaded(_) => TaskError::fatal(text)
            .with_code("NoCredentials")
            .with_hint(hint),
        CredentialsError::InvalidConfiguration(_) => TaskError::fatal(text)
            .with_code("InvalidCredentialsConfiguration")
            .with_hint(hint),
        _ => TaskError::fatal(text)
            .with_code("CredentialsRefused")
            .with_hint(hint),
    }
}

/// The error and its sources, on one line.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The modeled error code of an SDK error, if it is a service error.
pub(crate) fn service_code<E: ProvideErrorMetadata>(
    err: &SdkError<E, HttpResponse>,
) -> Option<&str> {
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

/// The HTTP status of an SDK error, if a response came back.
pub(crate) fn http_status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}
