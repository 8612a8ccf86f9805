//! What the steps act on: the archive and each source account, with every name resolved.

use serde::{Deserialize, Serialize};

/// How to obtain credentials for one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Credentials {
    /// The standard chain (environment, default profile, instance role…), as is.
    Default,
    /// A named profile of the shared config and credentials files.
    Profile(String),
    /// A role assumed with STS from the standard chain's credentials.
    AssumeRole(String),
}

/// Which archive bucket policy statements grants write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyMode {
    /// Exactly the article's two statements.
    #[default]
    Article,
    /// Only what replication needs, tied to each source account.
    LeastPrivilege,
    /// One statement naming the source accounts (`arn:aws:iam::<id>:root`), limited by
    /// `aws:PrincipalArn` to the replication role's name: about 590 sources fit in S3's 20 KB,
    /// against about 190 with the article's role ARNs in two statements.
    Accounts,
}

/// The log-archive account and its bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveSpec {
    /// The archive account id.
    pub account_id: String,
    /// The aggregation bucket.
    pub bucket: String,
    /// Credentials for the archive account.
    pub credentials: Credentials,
}

/// One member account whose CloudTrail bucket replicates to the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSpec {
    /// The account id.
    pub account_id: String,
    /// Its CloudTrail bucket.
    pub bucket: String,
    /// The trail that must log to `bucket`; not checked when `None`.
    pub trail: Option<String>,
    /// The replication role's name.
    pub role_name: String,
    /// The CloudFormation stack that creates the role.
    pub stack_name: String,
    /// The replicated key prefix.
    pub prefix: String,
    /// Storage class of the replicas.
    pub storage_class: String,
    /// Replication Time Control and metrics, 15 minutes.
    pub replication_time_control: bool,
    /// Credentials for this account.
    pub credentials: Credentials,
}

/// Everything the steps of one run share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    /// The region of every bucket and stack.
    pub region: String,
    /// `aws`, `aws-cn` or `aws-us-gov`, from the region.
    pub partition: String,
    /// The archive.
    pub archive: ArchiveSpec,
    /// The archive bucket policy's form.
    pub policy: PolicyMode,
}

impl Setting {
    /// `arn:<partition>:s3:::<bucket>`.
    pub fn bucket_arn(&self, bucket: &str) -> String {
        format!("arn:{}:s3:::{bucket}", self.partition)
    }

    /// The ARN of a role.
    pub fn role_arn(&self, account: &str, role: &str) -> String {
        format!("arn:{}:iam::{account}:role/{role}", self.partition)
    }
}
