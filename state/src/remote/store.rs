//! The remote store a shared journal is kept in: five conditional object operations, which
//! another crate implements (trailhub's on S3), so that this crate never names an SDK.

use async_trait::async_trait;
use std::time::Duration;

/// An object's entity tag, as the store answered it (quotes included, as S3 sends them).
pub type ETag = String;

/// A store of objects by key, with create-only and compare-and-swap writes.
///
/// Keys are relative to the store's own root (an S3 bucket and prefix). Every method answers
/// a precondition that does not hold with [`RemoteError::PreconditionFailed`] and a write that
/// raced another one on the same key with [`RemoteError::Conflict`] (S3's `412
/// PreconditionFailed` and `409 ConditionalRequestConflict`), by the store's error code, so that
/// callers decide by kind and never by message.
#[async_trait]
pub trait RemoteStore: Send + Sync + std::fmt::Debug {
    /// Writes `body` at `key` only if no object is there (`If-None-Match: *`); its new ETag.
    async fn put_if_absent(&self, key: &str, body: Vec<u8>) -> Result<ETag, RemoteError>;

    /// Replaces the object at `key` only while its ETag is `etag` (`If-Match`); its new ETag.
    /// An object that is gone fails the precondition too.
    async fn put_if_match(&self, key: &str, body: Vec<u8>, etag: &str)
    -> Result<ETag, RemoteError>;

    /// The object at `key` and its ETag; `None` when there is none.
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, ETag)>, RemoteError>;

    /// Every key under `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, RemoteError>;

    /// Deletes the object at `key` only while its ETag is `etag` (`If-Match`).
    async fn delete_if_match(&self, key: &str, etag: &str) -> Result<(), RemoteError>;

    /// Where the store is, for messages (`s3://bucket/prefix`).
    fn location(&self) -> String;
}

/// What a remote operation can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// The write's precondition did not hold: the key exists (create-only), or its ETag is not
    /// the one given, or it is gone (compare-and-swap, conditional delete).
    #[error("the precondition of a conditional request on {key} failed")]
    PreconditionFailed {
        /// The key.
        key: String,
    },
    /// Another write on the same key was under way (`409 ConditionalRequestConflict`): the
    /// request may be made again.
    #[error("a conflicting request on {key} was under way")]
    Conflict {
        /// The key.
        key: String,
    },
    /// Anything else: access denied, a missing bucket, the network.
    #[error("{message}")]
    Failed {
        /// What failed, with the store's error code when there is one.
        message: String,
        /// The store's error code (`AccessDenied`, `NoSuchBucket`).
        code: Option<String>,
        /// Whether another attempt may succeed.
        retryable: bool,
    },
}

impl RemoteError {
    /// Whether another attempt of the same request may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            RemoteError::Conflict { .. } => true,
            RemoteError::Failed { retryable, .. } => *retryable,
            RemoteError::PreconditionFailed { .. } => false,
        }
    }
}

/// How often a remote request is made again after a conflict or a transient failure, and the
/// first wait (doubled each time): S3 asks for a retry on `409 ConditionalRequestConflict`.
const ATTEMPTS: u32 = 6;
const FIRST_WAIT: Duration = Duration::from_millis(50);

/// Runs `request` until it succeeds, fails for good, or [`ATTEMPTS`] were made; conflicts and
/// transient failures are tried again after a growing wait.
pub(crate) async fn retrying<T, F, Fut>(mut request: F) -> Result<T, RemoteError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RemoteError>>,
{
    let mut wait = FIRST_WAIT;
    let mut made = 0;
    loop {
        made += 1;
        match request().await {
            Err(e) if e.is_transient() && made < ATTEMPTS => {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            other => return other,
        }
    }
}
