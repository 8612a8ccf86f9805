//! What the steps act on: the archive and each source account, with every name resolved.

use crate::policy::{AccountsLayout, ArticleLayout, Layout, LeastPrivilegeLayout};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

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

/// Which archive bucket policy statements grants write. It is written by its name, `article`,
/// `least-privilege` or `accounts`, in the inventory and in the journal alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
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

impl PolicyMode {
    /// Every mode, in the order messages list them.
    pub const ALL: [PolicyMode; 3] = [Self::Article, Self::LeastPrivilege, Self::Accounts];

    /// The statements the mode writes, and its name: the one place a mode is matched on, so
    /// that a new mode is its file in `policy/`, its variant, this arm and its place in
    /// [`Self::ALL`].
    pub(crate) fn layout(self) -> &'static dyn Layout {
        match self {
            Self::Article => &ArticleLayout,
            Self::LeastPrivilege => &LeastPrivilegeLayout,
            Self::Accounts => &AccountsLayout,
        }
    }

    /// The mode's name, e.g. `least-privilege`.
    pub fn name(self) -> &'static str {
        self.layout().name()
    }

    /// Every mode's name, in the order of [`Self::ALL`].
    pub fn names() -> impl Iterator<Item = &'static str> {
        Self::ALL.into_iter().map(Self::name)
    }
}

impl From<PolicyMode> for &'static str {
    fn from(mode: PolicyMode) -> Self {
        mode.name()
    }
}

impl FromStr for PolicyMode {
    type Err = UnknownPolicyMode;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|mode| mode.name() == name)
            .ok_or_else(|| UnknownPolicyMode(name.to_string()))
    }
}

impl TryFrom<String> for PolicyMode {
    type Error = UnknownPolicyMode;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        name.parse()
    }
}

/// A name that is no policy mode's; the message lists the modes' names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPolicyMode(pub String);

impl fmt::Display for UnknownPolicyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quoted: Vec<String> = PolicyMode::names().map(|n| format!("\"{n}\"")).collect();
        let (last, rest) = quoted
            .split_last()
            .expect("there should be at least one policy mode");
        write!(f, "`{}` is not a policy; use ", self.0)?;
        if !rest.is_empty() {
            write!(f, "{} or ", rest.join(", "))?;
        }
        f.write_str(last)
    }
}

impl std::error::Error for UnknownPolicyMode {}

/// What `S/replication` does with replication rules that are not trailhub's on a source bucket
/// (a DR copy, another team's rule). A configuration has one IAM role for all its rules and
/// `PutBucketReplication` replaces it whole, so keeping them changes their role.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExistingReplication {
    /// The account fails at `replication`, naming the rules and their role; nothing is written.
    #[default]
    Refuse,
    /// trailhub's rules are added beside them (free priorities, their own IDs); the
    /// configuration's role becomes trailhub's, whose policy also grants what their
    /// destinations need; rollback puts their role back.
    Merge,
}

impl ExistingReplication {
    /// The name the inventory uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Refuse => "refuse",
            Self::Merge => "merge",
        }
    }
}

/// The log-archive account and its bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveSpec {
    /// The archive account id.
    pub account_id: String,
    /// The aggregation bucket.
    pub bucket: String,
    /// The KMS key replicas of SSE-KMS logs are encrypted with (key id, ARN or alias), when the
    /// inventory names one; `None`: trailhub's own (`alias/trailhub/<bucket>`), created when a
    /// source first needs it.
    #[serde(default)]
    pub kms_key: Option<String>,
    /// The bucket's default Object Lock retention (`[archive] retention`); `None`: trailhub sets
    /// none, and leaves the bucket's own as it is.
    #[serde(default)]
    pub retention: Option<Retention>,
    /// trailhub's lifecycle rule on the bucket (`[archive] lifecycle`); `None`: no rule.
    #[serde(default)]
    pub lifecycle: Option<Lifecycle>,
    /// Credentials for the archive account.
    pub credentials: Credentials,
}

/// An Object Lock retention mode, as S3 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RetentionMode {
    /// Users with `s3:BypassGovernanceRetention` may still shorten it or delete a version.
    Governance,
    /// Nobody, the account's root user included, can shorten it or delete a version before it
    /// ends.
    Compliance,
}

impl RetentionMode {
    /// Both modes, in the order messages list them.
    pub const ALL: [RetentionMode; 2] = [Self::Governance, Self::Compliance];

    /// The mode's name in S3 and in the inventory: `GOVERNANCE` or `COMPLIANCE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Governance => "GOVERNANCE",
            Self::Compliance => "COMPLIANCE",
        }
    }
}

impl FromStr for RetentionMode {
    type Err = String;

    /// A mode by its S3 name; the message lists both.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == name)
            .ok_or_else(|| {
                format!("`{name}` is not a retention mode; use \"GOVERNANCE\" or \"COMPLIANCE\"")
            })
    }
}

/// How long a default retention keeps each new object version: S3 takes a number of days or of
/// years, never both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetentionPeriod {
    /// So many days.
    Days(i32),
    /// So many years.
    Years(i32),
}

impl RetentionPeriod {
    /// The period in days, a year counted as 365 (the inventory compares lifecycle expiry with
    /// it: `expire_days = 2555` matches `years = 7`).
    pub fn days(self) -> i64 {
        match self {
            Self::Days(d) => i64::from(d),
            Self::Years(y) => i64::from(y) * 365,
        }
    }
}

impl fmt::Display for RetentionPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Days(1) => f.write_str("1 day"),
            Self::Days(d) => write!(f, "{d} days"),
            Self::Years(1) => f.write_str("1 year"),
            Self::Years(y) => write!(f, "{y} years"),
        }
    }
}

/// The archive bucket's default Object Lock retention: applied by S3 to every object version
/// written after it is set (each version keeps the retain-until date it was written with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Governance or compliance.
    pub mode: RetentionMode,
    /// How long.
    pub period: RetentionPeriod,
}

/// trailhub's one lifecycle rule on the archive bucket (every action optional, at least one
/// set): where the logs go after a while, and when they expire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    /// Move objects to another storage class so many days after they were written.
    pub transition: Option<Transition>,
    /// Expire current versions so many days after they were written (on a versioned bucket S3
    /// adds a delete marker; the version stays, noncurrent).
    pub expire_days: Option<i32>,
    /// Delete noncurrent versions so many days after they became noncurrent.
    pub noncurrent_expire_days: Option<i32>,
}

/// A lifecycle transition: to `storage_class`, `days` after an object was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// Days after the object was written.
    pub days: i32,
    /// A storage class a lifecycle rule can move objects to (`GLACIER_IR`, …).
    pub storage_class: String,
}

/// One member account whose CloudTrail bucket replicates to the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSpec {
    /// The account id.
    pub account_id: String,
    /// Its CloudTrail bucket.
    pub bucket: String,
    /// The trail that delivers to `bucket`, by name or ARN; `None`: every trail found delivering
    /// to it (shadow trails of other home regions included).
    pub trail: Option<String>,
    /// The replication role's name.
    pub role_name: String,
    /// The CloudFormation stack that creates the role.
    pub stack_name: String,
    /// The replicated key prefix when the inventory sets one, which the trails must then use;
    /// `None`: the prefixes the trails deliver under (`<S3KeyPrefix>/AWSLogs/`, or `AWSLogs/`).
    pub prefix: Option<String>,
    /// The bucket's region when the inventory pins it; `None`: found with `HeadBucket`.
    pub region: Option<String>,
    /// Whether the replication role's trust policy carries the confused-deputy conditions
    /// (`aws:SourceAccount`, `aws:SourceArn`): an explicit opt-in, as AWS's replication
    /// documentation shows an unconditioned trust in S3.
    pub trust_conditions: bool,
    /// What to do with replication rules on the bucket that are not trailhub's.
    #[serde(default)]
    pub existing_replication: ExistingReplication,
    /// Storage class of the replicas.
    pub storage_class: String,
    /// Replication Time Control and metrics, 15 minutes.
    pub replication_time_control: bool,
    /// Credentials for this account.
    pub credentials: Credentials,
}

#[cfg(test)]
impl Setting {
    /// The article's setting: archive `111111111111` in ap-northeast-1, article mode, for tests.
    pub(crate) fn example() -> Setting {
        Setting {
            region: "ap-northeast-1".into(),
            partition: "aws".into(),
            archive: ArchiveSpec {
                account_id: "111111111111".into(),
                bucket: "aggregation-cloudtrail-logs-111111111111".into(),
                kms_key: None,
                retention: None,
                lifecycle: None,
                credentials: Credentials::Default,
            },
            policy: PolicyMode::Article,
        }
    }
}

#[cfg(test)]
impl SourceSpec {
    /// The article's source `222222222222`, for tests.
    pub(crate) fn example() -> SourceSpec {
        SourceSpec {
            account_id: "222222222222".into(),
            bucket: "cm-members-cloudtrail-222222222222".into(),
            trail: None,
            role_name: "S3ReplicationRole".into(),
            stack_name: "cloudtrail-replication-role".into(),
            prefix: None,
            region: None,
            trust_conditions: false,
            existing_replication: ExistingReplication::Refuse,
            storage_class: "STANDARD_IA".into(),
            replication_time_control: true,
            credentials: Credentials::Default,
        }
    }
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

/// The DNS suffix of a region's partition: `amazonaws.com.cn` in the China regions (`cn-…`),
/// `amazonaws.com` elsewhere (AWS General Reference, "Service endpoints": the endpoints of
/// Beijing and Ningxia end in `.amazonaws.com.cn`).
pub fn dns_suffix(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    }
}

/// The value of `kms:ViaService` for S3 in `region`: `s3.<region>.<partition's DNS suffix>`, the
/// service endpoint through which S3 calls KMS on a caller's behalf (KMS Developer Guide,
/// "kms:ViaService").
pub fn s3_via_service(region: &str) -> String {
    format!("s3.{region}.{}", dns_suffix(region))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_is_listed_once_and_its_name_reads_back() {
        for mode in PolicyMode::ALL {
            // Exhaustive on purpose: a new variant stops this compiling until it is in `ALL`.
            match mode {
                PolicyMode::Article | PolicyMode::LeastPrivilege | PolicyMode::Accounts => {}
            }
            assert_eq!(mode.name().parse(), Ok(mode));
            let json = serde_json::to_value(mode).expect("a mode should serialize");
            assert_eq!(json, serde_json::json!(mode.name()));
            assert_eq!(serde_json::from_value::<PolicyMode>(json).ok(), Some(mode));
        }
        let names: Vec<&str> = PolicyMode::names().collect();
        assert_eq!(names, ["article", "least-privilege", "accounts"]);
    }

    #[test]
    fn via_service_follows_the_partition() {
        assert_eq!(
            s3_via_service("ap-northeast-1"),
            "s3.ap-northeast-1.amazonaws.com"
        );
        assert_eq!(
            s3_via_service("cn-north-1"),
            "s3.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            s3_via_service("us-gov-west-1"),
            "s3.us-gov-west-1.amazonaws.com"
        );
    }

    #[test]
    fn an_unknown_name_lists_the_modes() {
        let err = "strict".parse::<PolicyMode>().expect_err("not a mode");
        assert_eq!(
            err.to_string(),
            "`strict` is not a policy; use \"article\", \"least-privilege\" or \"accounts\""
        );
        let err =
            serde_json::from_str::<PolicyMode>("\"Article\"").expect_err("names are kebab-case");
        assert!(err.to_string().contains("is not a policy"), "{err}");
    }
}
