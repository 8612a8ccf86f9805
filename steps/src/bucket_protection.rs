//! What keeps the archive bucket's objects its own and private: S3 Object Ownership and Block
//! Public Access, read for a bucket trailhub adopts and set on one it creates.
//!
//! Facts of S3 this relies on (User Guide, "Controlling ownership of objects and disabling
//! ACLs", "Blocking public access to your Amazon S3 storage", "Default settings for new S3
//! buckets FAQ"): with Object Ownership `BucketOwnerEnforced` ACLs are off and the bucket owner
//! owns every object, so no member's ACL can open a log to anyone; the four Block Public Access
//! settings refuse public ACLs and public bucket policies. New buckets have both since April
//! 2023; a bucket made earlier, or changed since, may not. A bucket without an ownership
//! setting answers `OwnershipControlsNotFoundError`, one without a Block Public Access
//! configuration `NoSuchPublicAccessBlockConfiguration`: both read as unprotected.

use crate::errors::{classify, service_code};
use crate::tasks::{StepContext, call, mutate};
use aws_sdk_s3::types::{
    ObjectOwnership, OwnershipControls, OwnershipControlsRule, PublicAccessBlockConfiguration,
};
use trailhub_engine::{ApplyCtx, TaskError};

/// The ownership setting trailhub requires.
pub const ENFORCED: &str = "BucketOwnerEnforced";

/// A bucket's Object Ownership and Block Public Access, as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Protection {
    /// Its Object Ownership (`BucketOwnerEnforced`, `BucketOwnerPreferred`, `ObjectWriter`),
    /// `None` when it has none.
    pub ownership: Option<String>,
    /// `BlockPublicAcls`, `IgnorePublicAcls`, `BlockPublicPolicy`, `RestrictPublicBuckets`.
    pub public_access: [bool; 4],
}

const BLOCK_NAMES: [&str; 4] = [
    "BlockPublicAcls",
    "IgnorePublicAcls",
    "BlockPublicPolicy",
    "RestrictPublicBuckets",
];

impl Protection {
    /// What falls short, each as `(setting, found)`: empty when the bucket is protected.
    pub fn gaps(&self) -> Vec<(String, String)> {
        let mut gaps = Vec::new();
        if self.ownership.as_deref() != Some(ENFORCED) {
            gaps.push((
                "ObjectOwnership".to_string(),
                self.ownership.clone().unwrap_or_else(|| "(none)".into()),
            ));
        }
        for (name, on) in BLOCK_NAMES.iter().zip(self.public_access) {
            if !on {
                gaps.push((format!("PublicAccessBlock.{name}"), "false".into()));
            }
        }
        gaps
    }
}

/// Reads `bucket`'s Object Ownership and Block Public Access (two requests, side by side).
pub(crate) async fn read(
    ctx: &StepContext,
    account: &str,
    bucket: &str,
) -> Result<Protection, TaskError> {
    let s3 = ctx.s3_for(account, bucket).await?;
    let ownership = call(
        account,
        "s3",
        "GetBucketOwnershipControls",
        bucket,
        s3.get_bucket_ownership_controls()
            .bucket(bucket)
            .expected_bucket_owner(account)
            .send(),
    );
    let block = call(
        account,
        "s3",
        "GetPublicAccessBlock",
        bucket,
        s3.get_public_access_block()
            .bucket(bucket)
            .expected_bucket_owner(account)
            .send(),
    );
    let (ownership, block) = tokio::join!(ownership, block);
    let ownership = match ownership {
        Ok(out) => out
            .ownership_controls()
            .and_then(|c| c.rules().first())
            .map(|r| r.object_ownership().as_str().to_string()),
        Err(e) if service_code(&e) == Some("OwnershipControlsNotFoundError") => None,
        Err(e) => return Err(classify("GetBucketOwnershipControls", bucket, e, &[])),
    };
    let public_access = match block {
        Ok(out) => {
            let c = out.public_access_block_configuration();
            [
                c.and_then(|c| c.block_public_acls()) == Some(true),
                c.and_then(|c| c.ignore_public_acls()) == Some(true),
                c.and_then(|c| c.block_public_policy()) == Some(true),
                c.and_then(|c| c.restrict_public_buckets()) == Some(true),
            ]
        }
        Err(e) if service_code(&e) == Some("NoSuchPublicAccessBlockConfiguration") => [false; 4],
        Err(e) => return Err(classify("GetPublicAccessBlock", bucket, e, &[])),
    };
    Ok(Protection {
        ownership,
        public_access,
    })
}

/// Sets both on a bucket trailhub just created (S3's defaults for new buckets already, said
/// explicitly so that an account whose defaults differ still gets them).
pub(crate) async fn set<U>(
    ctx: &StepContext,
    apply: &ApplyCtx<U>,
    account: &str,
    bucket: &str,
) -> Result<(), TaskError> {
    let s3 = ctx.s3_for(account, bucket).await?;
    let block = PublicAccessBlockConfiguration::builder()
        .block_public_acls(true)
        .ignore_public_acls(true)
        .block_public_policy(true)
        .restrict_public_buckets(true)
        .build();
    mutate(
        apply,
        account,
        "s3",
        "PutPublicAccessBlock",
        bucket,
        s3.put_public_access_block()
            .bucket(bucket)
            .expected_bucket_owner(account)
            .public_access_block_configuration(block)
            .send(),
    )
    .await
    .map_err(|e| classify("PutPublicAccessBlock", bucket, e, &[]))?;
    let rule = OwnershipControlsRule::builder()
        .object_ownership(ObjectOwnership::BucketOwnerEnforced)
        .build()
        .map_err(|e| TaskError::fatal(format!("ownership rule: {e}")))?;
    let controls = OwnershipControls::builder()
        .rules(rule)
        .build()
        .map_err(|e| TaskError::fatal(format!("ownership controls: {e}")))?;
    mutate(
        apply,
        account,
        "s3",
        "PutBucketOwnershipControls",
        bucket,
        s3.put_bucket_ownership_controls()
            .bucket(bucket)
            .expected_bucket_owner(account)
            .ownership_controls(controls)
            .send(),
    )
    .await
    .map(|_| ())
    .map_err(|e| classify("PutBucketOwnershipControls", bucket, e, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_enforced_ownership_with_every_block_on_is_protected() {
        let good = Protection {
            ownership: Some(ENFORCED.into()),
            public_access: [true; 4],
        };
        assert!(good.gaps().is_empty());
        let old = Protection {
            ownership: Some("ObjectWriter".into()),
            public_access: [true, true, false, true],
        };
        assert_eq!(
            old.gaps(),
            [
                ("ObjectOwnership".to_string(), "ObjectWriter".to_string()),
                (
                    "PublicAccessBlock.BlockPublicPolicy".to_string(),
                    "false".to_string()
                )
            ]
        );
        assert_eq!(Protection::default().gaps().len(), 5);
    }
}
