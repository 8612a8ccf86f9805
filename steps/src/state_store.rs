//! The shared journal's store on S3 (`--state s3://BUCKET/PREFIX`): trailhub-state's
//! [`RemoteStore`] on the SDK, and the checks a state bucket must pass before anything is
//! written to it.
//!
//! Conditional requests as the S3 User Guide describes them ("How to prevent object overwrites
//! with conditional writes", "How to perform conditional deletes"): `If-None-Match: *` on
//! PutObject creates only; `If-Match: <ETag>` on PutObject and DeleteObject acts only on that
//! version of the object. A precondition that does not hold answers `412 PreconditionFailed`
//! (and `404 NoSuchKey` for `If-Match` on a key that is gone); a write racing another on the
//! same key answers `409 ConditionalRequestConflict`, to be retried. Both are told by their
//! error code (the status when a response has no body), never by the message.

use crate::errors::{http_status, service_code};
use async_trait::async_trait;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use trailhub_state::remote::{ETag, RemoteError, RemoteStore};

/// A state bucket and prefix.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// Empty, or ending with `/`.
    prefix: String,
}

/// Why a bucket cannot hold trailhub's state, with what to do; nothing was written to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateBucketError {
    /// No such bucket.
    #[error(
        "state bucket {bucket} does not exist; create it, versioned and private, then run the command again:\n  aws s3api create-bucket --bucket {bucket} --region {region}{location}\n  aws s3api put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled\n  aws s3api put-public-access-block --bucket {bucket} --public-access-block-configuration BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true"
    )]
    Missing {
        /// The bucket.
        bucket: String,
        /// Its region.
        region: String,
        /// ` --create-bucket-configuration …` outside us-east-1.
        location: String,
    },
    /// The credentials may not use it.
    #[error(
        "the credentials in use may not read state bucket {bucket} ({operation}: {code}); they need, on arn:aws:s3:::{bucket}: s3:ListBucket, s3:GetBucketVersioning, s3:GetBucketPolicyStatus, s3:GetBucketObjectLockConfiguration, and on arn:aws:s3:::{bucket}/*: s3:GetObject, s3:PutObject, s3:DeleteObject (see the README, \"Team use\")"
    )]
    Denied {
        /// The bucket.
        bucket: String,
        /// The request refused.
        operation: String,
        /// S3's error code.
        code: String,
    },
    /// Versioning is not enabled: an overwritten or deleted journal object would be gone.
    #[error(
        "state bucket {bucket} is not versioned (versioning {status}): a journal object deleted or overwritten by mistake could not be recovered; enable versioning, then run the command again:\n  aws s3api put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled"
    )]
    NotVersioned {
        /// The bucket.
        bucket: String,
        /// What GetBucketVersioning said.
        status: String,
    },
    /// The archive bucket (or any bucket with Object Lock) cannot hold state.
    #[error(
        "state bucket {bucket} {why}: its Object Lock retention would lock every journal object and every lock object; keep the state in a bucket of its own (versioned, without Object Lock), e.g. --state s3://{bucket}-trailhub-state/PREFIX"
    )]
    Locking {
        /// The bucket.
        bucket: String,
        /// `is the archive bucket` or `has Object Lock enabled`.
        why: String,
    },
    /// Its policy makes it public.
    #[error(
        "state bucket {bucket} is public (its bucket policy grants access to anyone): the journal names every account, role and undo record; make it private, then run the command again:\n  aws s3api put-public-access-block --bucket {bucket} --public-access-block-configuration BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true\n  and remove the statements that grant Principal \"*\" (aws s3api get-bucket-policy --bucket {bucket})"
    )]
    Public {
        /// The bucket.
        bucket: String,
    },
    /// Any other failure reading it.
    #[error("state bucket {bucket} could not be checked ({operation}): {message}")]
    Unreadable {
        /// The bucket.
        bucket: String,
        /// The request.
        operation: String,
        /// What failed.
        message: String,
    },
}

impl S3Store {
    /// The store at `prefix` (with or without a trailing `/`) of `bucket`, through `client`.
    pub fn new(client: aws_sdk_s3::Client, bucket: &str, prefix: &str) -> S3Store {
        let prefix = prefix.trim_matches('/');
        S3Store {
            client,
            bucket: bucket.to_string(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        }
    }

    /// An S3 client for the state bucket, from `config`; path-style when an endpoint is set.
    pub fn client(config: &aws_config::SdkConfig, path_style: bool) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(config)
                .force_path_style(path_style)
                .build(),
        )
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Checks that the bucket may hold trailhub's state: it exists and these credentials may
    /// read it, it is versioned, it is not `archive` (the archive bucket, when known) nor any
    /// bucket with Object Lock, and its policy does not make it public. Read-only.
    pub async fn check(&self, archive: Option<&str>) -> Result<(), StateBucketError> {
        let bucket = self.bucket.clone();
        if archive == Some(bucket.as_str()) {
            return Err(StateBucketError::Locking {
                bucket,
                why: "is the archive bucket".into(),
            });
        }
        // Read-only and independent: asked at once (one round trip, not three).
        let (versioning, lock, policy) = tokio::join!(
            self.client.get_bucket_versioning().bucket(&bucket).send(),
            self.client
                .get_object_lock_configuration()
                .bucket(&bucket)
                .send(),
            self.client
                .get_bucket_policy_status()
                .bucket(&bucket)
                .send(),
        );
        let versioning = versioning.map_err(|e| self.check_error("GetBucketVersioning", e))?;
        let status = versioning
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| "never enabled".into());
        if status != "Enabled" {
            return Err(StateBucketError::NotVersioned { bucket, status });
        }
        match lock {
            Ok(out) => {
                let enabled = out
                    .object_lock_configuration()
                    .and_then(|c| c.object_lock_enabled())
                    .is_some_and(|e| e.as_str() == "Enabled");
                if enabled {
                    return Err(StateBucketError::Locking {
                        bucket,
                        why: "has Object Lock enabled".into(),
                    });
                }
            }
            Err(e) if service_code(&e) == Some("ObjectLockConfigurationNotFoundError") => {}
            Err(e) => return Err(self.check_error("GetObjectLockConfiguration", e)),
        }
        match policy {
            Ok(out) => {
                if out.policy_status().and_then(|p| p.is_public()) == Some(true) {
                    return Err(StateBucketError::Public { bucket });
                }
            }
            Err(e) if service_code(&e) == Some("NoSuchBucketPolicy") => {}
            Err(e) => return Err(self.check_error("GetBucketPolicyStatus", e)),
        }
        Ok(())
    }

    fn check_error<E>(&self, operation: &str, e: SdkError<E, HttpResponse>) -> StateBucketError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let bucket = self.bucket.clone();
        let code = service_code(&e).map(str::to_string);
        match (code.as_deref(), http_status(&e)) {
            (Some("NoSuchBucket"), _) | (None, Some(404)) => {
                let region = self
                    .client
                    .config()
                    .region()
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "us-east-1".into());
                let location = if region == "us-east-1" {
                    String::new()
                } else {
                    format!(" --create-bucket-configuration LocationConstraint={region}")
                };
                StateBucketError::Missing {
                    bucket,
                    region,
                    location,
                }
            }
            (Some(c @ ("AccessDenied" | "AllAccessDisabled" | "InvalidAccessKeyId")), _) => {
                StateBucketError::Denied {
                    bucket,
                    operation: operation.to_string(),
                    code: c.to_string(),
                }
            }
            (None, Some(403)) => StateBucketError::Denied {
                bucket,
                operation: operation.to_string(),
                code: "403".into(),
            },
            _ => StateBucketError::Unreadable {
                bucket,
                operation: operation.to_string(),
                message: describe(&e),
            },
        }
    }
}

/// The SDK error as one line: code and message, or the kind of failure.
fn describe<E>(e: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match e {
        SdkError::ServiceError(s) => format!(
            "{}: {}",
            s.err().code().unwrap_or("error"),
            s.err().message().unwrap_or("")
        ),
        SdkError::TimeoutError(_) => "timed out".into(),
        SdkError::DispatchFailure(_) => "could not connect".into(),
        other => other.to_string(),
    }
}

/// Maps an SDK error of a request on `key` to the store's terms; with `gone_is_precondition`,
/// a key that does not exist fails the precondition (`If-Match` on a deleted lock).
fn remote<E>(key: &str, e: SdkError<E, HttpResponse>, gone_is_precondition: bool) -> RemoteError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = service_code(&e).map(str::to_string);
    let status = http_status(&e);
    let key = key.to_string();
    match (code.as_deref(), status) {
        (Some("PreconditionFailed"), _) | (None, Some(412)) => {
            RemoteError::PreconditionFailed { key }
        }
        (Some("ConditionalRequestConflict"), _) | (None, Some(409)) => {
            RemoteError::Conflict { key }
        }
        (Some("NoSuchKey"), _) | (None, Some(404)) if gone_is_precondition => {
            RemoteError::PreconditionFailed { key }
        }
        _ => {
            let retryable = matches!(
                e,
                SdkError::TimeoutError(_)
                    | SdkError::DispatchFailure(_)
                    | SdkError::ResponseError(_)
            ) || status.is_some_and(|s| s >= 500)
                || matches!(
                    code.as_deref(),
                    Some("SlowDown" | "Throttling" | "RequestTimeout" | "InternalError")
                );
            RemoteError::Failed {
                message: format!("{key}: {}", describe(&e)),
                code,
                retryable,
            }
        }
    }
}

#[async_trait]
impl RemoteStore for S3Store {
    async fn put_if_absent(&self, key: &str, body: Vec<u8>) -> Result<ETag, RemoteError> {
        let full = self.full(key);
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .if_none_match("*")
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| remote(&full, e, false))?;
        Ok(out.e_tag().unwrap_or_default().to_string())
    }

    async fn put_if_match(
        &self,
        key: &str,
        body: Vec<u8>,
        etag: &str,
    ) -> Result<ETag, RemoteError> {
        let full = self.full(key);
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .if_match(etag)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| remote(&full, e, true))?;
        Ok(out.e_tag().unwrap_or_default().to_string())
    }

    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, ETag)>, RemoteError> {
        let full = self.full(key);
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e)
                if matches!(service_code(&e), Some("NoSuchKey"))
                    || http_status(&e) == Some(404) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(remote(&full, e, false)),
        };
        let etag = out.e_tag().unwrap_or_default().to_string();
        let body = out.body.collect().await.map_err(|e| RemoteError::Failed {
            message: format!("{full}: reading the body failed: {e}"),
            code: None,
            retryable: true,
        })?;
        Ok(Some((body.into_bytes().to_vec(), etag)))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, RemoteError> {
        let full = self.full(prefix);
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| remote(&full, e, false))?;
            for object in out.contents() {
                if let Some(key) = object.key().and_then(|k| k.strip_prefix(&self.prefix)) {
                    keys.push(key.to_string());
                }
            }
            match out.next_continuation_token() {
                Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn delete_if_match(&self, key: &str, etag: &str) -> Result<(), RemoteError> {
        let full = self.full(key);
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .if_match(etag)
            .send()
            .await
            .map_err(|e| remote(&full, e, true))?;
        Ok(())
    }

    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}
