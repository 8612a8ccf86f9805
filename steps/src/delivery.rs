//! The delivery check (issue 20): from the policies a run already read, the requests S3 makes
//! as the replication role for a sample log under each rule's prefix, each decided by
//! [`crate::evaluate`]; the verdict per account is `delivers`, `would fail` (the first refused
//! request, the policy, statement and condition, and what to change) or `unknown`. Makes no
//! AWS request: the documents come from [`Documents`], which the reading functions fill.
//!
//! The requests, in S3's order (S3 User Guide, "Setting up permissions for live replication",
//! "Replicating encrypted objects", "Using an S3 Bucket Key with replication", "Changing the
//! replica owner"): S3 assumes the role (`sts:AssumeRole` by `s3.amazonaws.com`, with
//! `aws:SourceAccount`/`aws:SourceArn`); `s3:GetObjectVersionForReplication` on the source
//! object; `kms:Decrypt` on the source key (SSE-KMS logs); `s3:ReplicateObject` on the archive
//! object; `s3:ObjectOwnerOverrideToBucketOwner` where the rule translates ownership;
//! `kms:Encrypt` on the archive key and, under an S3 Bucket Key, `kms:Decrypt`, with
//! `kms:ViaService` and `kms:EncryptionContext:aws:s3:arn` (the object's ARN, or the bucket's
//! under a Bucket Key). CloudTrail writes no object tags, so the tag requests
//! (`s3:GetObjectVersionTagging`, `s3:ReplicateTags`) are not made and not checked.
//!
//! Isolation (issue "A tamper-proof archive"): the same `s3:ReplicateObject` on a sample key
//! under another member's prefix must be refused; when it is allowed, the verdict says that the
//! account can write another account's logs.

use crate::evaluate::{self, Decision, Policy, Principal, Request, Resource, Service};
use crate::spec::{Setting, s3_via_service};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The policy documents this process read (or, for `plan`, would write), by resource: what the
/// check evaluates, so that it costs no request of its own. Each reading function records what
/// it read; the last read wins.
#[derive(Debug, Default)]
pub struct Documents {
    inner: Mutex<Inner>,
    /// `plan`'s overlay per account: what its steps would write, laid over what was read when
    /// the plan's check is made (kept apart: the archive policy read by one account's step must
    /// not erase the grant another account's step would add).
    desired: Mutex<HashMap<String, Arc<Documents>>>,
}

/// A role as read: its trust policy and its inline policies by name (`None`: unreadable).
type RoleRead = (Option<Value>, Vec<(String, Option<Value>)>);

#[derive(Debug, Default, Clone)]
struct Inner {
    /// By role ARN: (trust policy, inline policies by name). `None`: the role does not exist.
    roles: HashMap<String, Option<RoleRead>>,
    /// Why the documents cannot be known before apply (`plan`'s overlay only), e.g. "apply
    /// creates the archive KMS key".
    unknown: Option<String>,
    /// The archive bucket policy (`Some(None)`: it has none).
    archive_policy: Option<Option<Value>>,
    /// Key policies by key ARN.
    keys: HashMap<String, Value>,
    /// Replication configurations by source bucket (`None`: it has none).
    replication: HashMap<String, Option<Value>>,
}

impl Documents {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self
            .inner
            .lock()
            .expect("the documents' lock is never poisoned"))
    }

    /// Records a role as read: its trust policy and its inline policies (`None`: unreadable).
    pub fn role(&self, arn: &str, trust: Option<Value>, inline: Vec<(String, Option<Value>)>) {
        self.with(|i| i.roles.insert(arn.to_string(), Some((trust, inline))));
    }

    /// Records that a role does not exist.
    pub fn no_role(&self, arn: &str) {
        self.with(|i| i.roles.insert(arn.to_string(), None));
    }

    /// Records the archive bucket policy as read or written.
    pub fn archive_policy(&self, policy: Option<&Value>) {
        self.with(|i| i.archive_policy = Some(policy.cloned()));
    }

    /// The archive bucket policy recorded (`None`: none was; `Some(None)`: the bucket has none).
    pub fn archive_policy_recorded(&self) -> Option<Option<Value>> {
        self.with(|i| i.archive_policy.clone())
    }

    /// Records a key policy as read or written.
    pub fn key_policy(&self, arn: &str, policy: &Value) {
        self.with(|i| i.keys.insert(arn.to_string(), policy.clone()));
    }

    /// Records a bucket's replication configuration as read or written.
    pub fn replication(&self, bucket: &str, config: Option<&Value>) {
        self.with(|i| i.replication.insert(bucket.to_string(), config.cloned()));
    }

    /// Records that what `plan` would write cannot be known before apply, and why (overlay
    /// only): the planned check then says `unknown (known once …)`.
    pub fn unknowable(&self, why: &str) {
        self.with(|i| i.unknown = Some(why.to_string()));
    }

    /// `account`'s overlay for `plan`: record there what its steps would write.
    pub fn desired(&self, account: &str) -> Arc<Documents> {
        self.desired
            .lock()
            .expect("the documents' lock is never poisoned")
            .entry(account.to_string())
            .or_default()
            .clone()
    }

    fn snapshot(&self) -> Inner {
        self.with(|i| i.clone())
    }

    /// What was read with `account`'s overlay laid over it.
    fn planned(&self, account: &str) -> Inner {
        let mut base = self.snapshot();
        let over = self.desired(account).snapshot();
        base.roles.extend(over.roles);
        base.keys.extend(over.keys);
        base.replication.extend(over.replication);
        if over.archive_policy.is_some() {
            base.archive_policy = over.archive_policy;
        }
        base.unknown = over.unknown;
        base
    }
}

/// The verdict for one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum Verdict {
    /// Every request S3 makes for a sample log is allowed, and the role cannot write another
    /// member's keys.
    Delivers,
    /// A request would be refused (or isolation does not hold).
    WouldFail(Refusal),
    /// Something the check does not know decides it.
    Unknown {
        /// What.
        what: String,
    },
}

/// The request that would be refused and what to change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// `s3:ReplicateObject on arn:aws:s3:::…`.
    pub request: String,
    /// The policy that refuses it (or that must allow it).
    pub policy: String,
    /// Its statement (Sid or `#index`), when one is to blame.
    pub statement: Option<String>,
    /// The condition that did not hold (or that denied), when one is to blame.
    pub condition: Option<String>,
    /// What to change.
    pub fix: String,
}

impl Verdict {
    /// `delivers`, `would fail`, `unknown`: the word the output shows.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Delivers => "delivers",
            Verdict::WouldFail(_) => "would fail",
            Verdict::Unknown { .. } => "unknown",
        }
    }

    /// One line: the word and, unless it delivers, why.
    pub fn line(&self) -> String {
        match self {
            Verdict::Delivers => "delivers".into(),
            // "unknown (known once …)": when it will be known, not a reason.
            Verdict::Unknown { what } if what.starts_with("known once") => {
                format!("unknown ({what})")
            }
            Verdict::Unknown { what } => format!("unknown: {what}"),
            Verdict::WouldFail(r) => {
                let mut s = format!("would fail: {} refused by {}", r.request, r.policy);
                if let Some(st) = &r.statement {
                    s.push_str(&format!(", statement {st}"));
                }
                if let Some(c) = &r.condition {
                    s.push_str(&format!(", condition {c}"));
                }
                s.push_str(&format!("; fix: {}", r.fix));
                s
            }
        }
    }
}

/// What the check needs to know about one source besides the documents.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    /// The source account.
    pub account: &'a str,
    /// Its CloudTrail bucket.
    pub bucket: &'a str,
    /// The bucket's region.
    pub region: &'a str,
    /// The replication role's ARN.
    pub role_arn: &'a str,
    /// The prefixes of its own logs (`<prefix><account>/`), one rule each.
    pub prefixes: Vec<String>,
    /// The KMS keys (ARNs) its logs are encrypted with (empty: SSE-S3).
    pub kms_keys: &'a [String],
    /// Whether the logs are written under an S3 Bucket Key.
    pub bucket_key: bool,
    /// Another member of the inventory (its id), whose prefix the role must not write.
    pub other_member: Option<&'a str>,
}

/// The check of `source` from `documents`.
pub fn check(setting: &Setting, documents: &Documents, source: &Source<'_>) -> Verdict {
    let docs = documents.snapshot();
    match Check::new(setting, &docs, source).and_then(|c| c.run()) {
        Ok(()) => Verdict::Delivers,
        Err(v) => v,
    }
}

/// The check `plan` makes: of the documents `source`'s steps would write, laid over what was
/// read; `unknown (known once …)` where they cannot be known before apply.
pub fn check_planned(setting: &Setting, documents: &Documents, source: &Source<'_>) -> Verdict {
    let docs = documents.planned(source.account);
    if let Some(why) = &docs.unknown {
        return unknown(format!("known once {why}"));
    }
    match Check::new(setting, &docs, source).and_then(|c| c.run()) {
        Ok(()) => Verdict::Delivers,
        Err(v) => v,
    }
}

struct Check<'a> {
    setting: &'a Setting,
    source: &'a Source<'a>,
    principal: Principal,
    identity: Vec<Policy>,
    trust: Option<Policy>,
    archive: Option<Policy>,
    rules: Vec<Value>,
    keys: &'a HashMap<String, Value>,
    role_name: String,
}

fn unknown(what: impl Into<String>) -> Verdict {
    Verdict::Unknown { what: what.into() }
}

impl<'a> Check<'a> {
    fn new(setting: &'a Setting, docs: &'a Inner, source: &'a Source<'a>) -> Result<Self, Verdict> {
        let role_name = source
            .role_arn
            .rsplit('/')
            .next()
            .unwrap_or(source.role_arn)
            .to_string();
        let role = match docs.roles.get(source.role_arn) {
            None => return Err(unknown(format!("role {} was not read", source.role_arn))),
            Some(None) => {
                return Err(Verdict::WouldFail(Refusal {
                    request: format!("sts:AssumeRole on {}", source.role_arn),
                    policy: format!("role {role_name}"),
                    statement: None,
                    condition: None,
                    fix: "the role does not exist: `trailhub apply` creates its stack".into(),
                }));
            }
            Some(Some(role)) => role,
        };
        let mut identity = Vec::new();
        for (name, doc) in &role.1 {
            match doc {
                Some(d) => identity.push(Policy::new(
                    format!("role {role_name} inline policy {name}"),
                    d.clone(),
                )),
                None => {
                    return Err(unknown(format!(
                        "role {role_name}'s policy {name} is unreadable"
                    )));
                }
            }
        }
        let trust = role
            .0
            .clone()
            .map(|d| Policy::new(format!("role {role_name} trust policy"), d));
        let Some(archive) = &docs.archive_policy else {
            return Err(unknown("the archive bucket policy was not read"));
        };
        let archive = archive.clone().map(|d| {
            Policy::new(
                format!("archive bucket {} policy", setting.archive.bucket),
                d,
            )
        });
        let rules = match docs.replication.get(source.bucket) {
            None => {
                return Err(unknown(format!(
                    "bucket {}'s replication was not read",
                    source.bucket
                )));
            }
            Some(None) => Vec::new(),
            Some(Some(config)) => {
                let role = config.get("Role").and_then(Value::as_str);
                config
                    .get("Rules")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|mut r| {
                        r["_role"] = role.map(Value::from).unwrap_or(Value::Null);
                        r
                    })
                    .collect()
            }
        };
        let account = source.account.to_string();
        let session = format!(
            "arn:{}:sts::{account}:assumed-role/{role_name}/s3-replication",
            setting.partition
        );
        Ok(Check {
            setting,
            source,
            principal: Principal::Role {
                arn: source.role_arn.to_string(),
                session,
                account,
                partition: setting.partition.clone(),
            },
            identity,
            trust,
            archive,
            rules,
            keys: &docs.keys,
            role_name,
        })
    }

    /// A request by the role with the context keys S3 sets for every request it makes as it.
    fn request(&self, action: &str, resource: &str, resource_account: &str) -> Request {
        Request::new(action, resource, self.principal.clone())
            .with("aws:PrincipalArn", self.source.role_arn)
            .with("aws:PrincipalAccount", self.source.account)
            .with("aws:PrincipalType", "AssumedRole")
            .with("aws:ResourceAccount", resource_account)
    }

    fn kms_request(&self, action: &str, key: &str, region: &str, context: &str) -> Request {
        let key_account = key.split(':').nth(4).unwrap_or_default().to_string();
        self.request(action, key, &key_account)
            .with("kms:ViaService", &s3_via_service(region))
            .with("kms:CallerAccount", self.source.account)
            .with("kms:EncryptionContext:aws:s3:arn", context)
            .with_list("kms:EncryptionContextKeys", &["aws:s3:arn"])
            .with("kms:EncryptionAlgorithm", "SYMMETRIC_DEFAULT")
    }

    /// The rule that replicates `key`: the enabled rule of the highest priority whose prefix
    /// holds it (S3 User Guide, "Replication configuration file elements": priority decides
    /// between overlapping rules).
    fn rule_for(&self, key: &str) -> Option<&Value> {
        let prefix_of = |r: &Value| {
            r.pointer("/Filter/Prefix")
                .or_else(|| r.pointer("/Filter/And/Prefix"))
                .or_else(|| r.get("Prefix"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        self.rules
            .iter()
            .filter(|r| r.get("Status").and_then(Value::as_str) == Some("Enabled"))
            .filter(|r| key.starts_with(&prefix_of(r)))
            .filter(|r| {
                r.pointer("/Destination/Bucket").and_then(Value::as_str)
                    == Some(
                        self.setting
                            .bucket_arn(&self.setting.archive.bucket)
                            .as_str(),
                    )
            })
            .max_by_key(|r| r.get("Priority").and_then(Value::as_i64).unwrap_or(0))
    }

    fn decide(
        &self,
        request: &Request,
        resource: Option<&Policy>,
        account: &str,
        service: Service,
    ) -> Result<(), Verdict> {
        let identity: &[Policy] = &self.identity;
        let decision = evaluate::evaluate(
            request,
            identity,
            Resource {
                policy: resource,
                account,
                service,
            },
        );
        match decision {
            Decision::Allow => Ok(()),
            Decision::Unknown { what } => Err(unknown(what)),
            Decision::Deny(d) => Err(Verdict::WouldFail(Refusal {
                request: format!("{} on {}", request.action, request.resource),
                fix: self.fix(request, &d),
                policy: d.policy,
                statement: d.statement,
                condition: d.condition,
            })),
        }
    }

    fn fix(&self, request: &Request, d: &evaluate::Denial) -> String {
        let role = self.source.role_arn;
        let archive_policy = d.policy.starts_with("archive bucket");
        let what = match &d.statement {
            Some(st) => format!("statement {st} of {}", d.policy),
            None => d.policy.clone(),
        };
        if d.explicit {
            return format!(
                "{what} denies {} to {role}: narrow or remove that statement (not trailhub's: by hand)",
                request.action
            );
        }
        let by = if archive_policy {
            "`trailhub apply` writes the grant back"
        } else if d.policy.starts_with("role ") {
            "`trailhub apply` updates the role's stack"
        } else {
            "`trailhub apply` writes trailhub's key grant"
        };
        match &d.condition {
            Some(c) => format!(
                "{what} must admit this request: its condition {c} does not hold ({by}, or change the condition by hand)"
            ),
            None => format!(
                "{} must allow {} on {} to {role} ({by})",
                d.policy, request.action, request.resource
            ),
        }
    }

    fn run(&self) -> Result<(), Verdict> {
        let source = self.source;
        let partition = &self.setting.partition;
        let source_arn = format!("arn:{partition}:s3:::{}", source.bucket);
        let archive_bucket = self.setting.bucket_arn(&self.setting.archive.bucket);
        let archive_account = self.setting.archive.account_id.as_str();
        let archive_region = self.setting.region.as_str();
        let Some(trust) = &self.trust else {
            return Err(unknown(format!(
                "role {}'s trust policy is unreadable",
                self.role_name
            )));
        };
        let assume = Request::new(
            "sts:AssumeRole",
            source.role_arn,
            Principal::Service("s3.amazonaws.com".into()),
        )
        .with("aws:SourceAccount", source.account)
        .with("aws:SourceArn", &source_arn)
        .with("aws:PrincipalServiceName", "s3.amazonaws.com")
        .with("aws:PrincipalIsAWSService", "true");
        self.decide(&assume, Some(trust), source.account, Service::Trust)?;
        if source.prefixes.is_empty() {
            return Err(unknown("the trails deliver under no known prefix"));
        }
        for prefix in &source.prefixes {
            let key = sample_key(prefix, source.account, source.region);
            let Some(rule) = self.rule_for(&key) else {
                return Err(Verdict::WouldFail(Refusal {
                    request: format!("replication of {source_arn}/{key}"),
                    policy: format!("bucket {} replication configuration", source.bucket),
                    statement: None,
                    condition: None,
                    fix: format!(
                        "no enabled rule replicates {prefix} to {archive_bucket}: `trailhub apply` writes it"
                    ),
                }));
            };
            if rule.get("_role").and_then(Value::as_str) != Some(source.role_arn) {
                return Err(unknown(format!(
                    "bucket {} replicates as another role than {}",
                    source.bucket, source.role_arn
                )));
            }
            let object = format!("{source_arn}/{key}");
            let read = self
                .request("s3:GetObjectVersionForReplication", &object, source.account)
                .without("s3:ExistingObjectTag/");
            // The source bucket's policy is not read (CloudTrail's own): the role's policy is
            // what allows the read, within the account.
            self.decide(&read, None, source.account, Service::S3)?;
            let kms = !source.kms_keys.is_empty();
            for key_arn in source.kms_keys {
                let Some(policy) = self.keys.get(key_arn) else {
                    return Err(unknown(format!(
                        "the policy of source key {key_arn} was not read"
                    )));
                };
                let policy = Policy::new(format!("source key {key_arn} policy"), policy.clone());
                let context = if source.bucket_key {
                    &source_arn
                } else {
                    &object
                };
                let decrypt = self.kms_request("kms:Decrypt", key_arn, source.region, context);
                self.decide(&decrypt, Some(&policy), source.account, Service::Kms)?;
            }
            let replica = format!("{archive_bucket}/{key}");
            let storage = rule
                .pointer("/Destination/StorageClass")
                .and_then(Value::as_str)
                .unwrap_or("STANDARD");
            let replica_key = rule
                .pointer("/Destination/EncryptionConfiguration/ReplicaKmsKeyID")
                .and_then(Value::as_str);
            let mut write = self
                .request("s3:ReplicateObject", &replica, archive_account)
                .with("s3:x-amz-storage-class", storage);
            write = match (kms, replica_key) {
                (true, Some(k)) => write
                    .with("s3:x-amz-server-side-encryption", "aws:kms")
                    .with("s3:x-amz-server-side-encryption-aws-kms-key-id", k),
                _ => write
                    .with("s3:x-amz-server-side-encryption", "AES256")
                    .without("s3:x-amz-server-side-encryption-aws-kms-key-id"),
            };
            self.decide(&write, self.archive.as_ref(), archive_account, Service::S3)?;
            let owner = rule.pointer("/Destination/AccessControlTranslation/Owner");
            if owner.and_then(Value::as_str) == Some("Destination") {
                let over = self.request(
                    "s3:ObjectOwnerOverrideToBucketOwner",
                    &replica,
                    archive_account,
                );
                self.decide(&over, self.archive.as_ref(), archive_account, Service::S3)?;
            }
            if kms {
                let Some(k) = replica_key else {
                    return Err(Verdict::WouldFail(Refusal {
                        request: format!("replication of {object}"),
                        policy: format!("bucket {} replication configuration", source.bucket),
                        statement: None,
                        condition: None,
                        fix: "the rule replicates SSE-KMS logs without a ReplicaKmsKeyID: `trailhub apply` sets the archive key".into(),
                    }));
                };
                let Some(policy) = self.keys.get(k) else {
                    return Err(unknown(format!(
                        "the policy of archive key {k} was not read"
                    )));
                };
                let policy = Policy::new(format!("archive key {k} policy"), policy.clone());
                let context = if source.bucket_key {
                    &archive_bucket
                } else {
                    &replica
                };
                let mut actions = vec!["kms:Encrypt"];
                if source.bucket_key {
                    actions.push("kms:Decrypt");
                }
                for action in actions {
                    let r = self.kms_request(action, k, archive_region, context);
                    self.decide(&r, Some(&policy), archive_account, Service::Kms)?;
                }
            }
            self.isolation(prefix, &archive_bucket, archive_account, storage)?;
        }
        Ok(())
    }

    /// The role must not be able to write another member's keys under the same prefix.
    fn isolation(
        &self,
        prefix: &str,
        archive_bucket: &str,
        archive_account: &str,
        storage: &str,
    ) -> Result<(), Verdict> {
        let source = self.source;
        let other = match source.other_member {
            Some(o) => o.to_string(),
            None if source.account == "999999999999" => "000000000000".into(),
            None => "999999999999".into(),
        };
        let Some(shared) = prefix.strip_suffix(&format!("{}/", source.account)) else {
            return Ok(());
        };
        let key = sample_key(&format!("{shared}{other}/"), &other, source.region);
        let replica = format!("{archive_bucket}/{key}");
        let write = self
            .request("s3:ReplicateObject", &replica, archive_account)
            .with("s3:x-amz-storage-class", storage)
            .with("s3:x-amz-server-side-encryption", "AES256")
            .without("s3:x-amz-server-side-encryption-aws-kms-key-id");
        match evaluate::evaluate(
            &write,
            &self.identity,
            Resource {
                policy: self.archive.as_ref(),
                account: archive_account,
                service: Service::S3,
            },
        ) {
            Decision::Allow => Err(Verdict::WouldFail(Refusal {
                request: format!("s3:ReplicateObject on {replica}"),
                policy: format!(
                    "{} and role {}'s policy",
                    self.archive
                        .as_ref()
                        .map_or("the archive bucket policy", |p| p.name.as_str()),
                    self.role_name
                ),
                statement: None,
                condition: None,
                fix: format!(
                    "account {} can write account {other}'s logs: limit the grant to its own prefix ({shared}{}/, or {shared}${{aws:PrincipalAccount}}/*; `trailhub apply` writes trailhub's grant so)",
                    source.account, source.account
                ),
            })),
            Decision::Unknown { what } => Err(unknown(format!("isolation: {what}"))),
            Decision::Deny(_) => Ok(()),
        }
    }
}

/// A key CloudTrail would write under `prefix` (`<…>AWSLogs/<account>/`): a log of today's
/// shape in `region` (AWS CloudTrail User Guide, "Finding your CloudTrail log files").
pub fn sample_key(prefix: &str, account: &str, region: &str) -> String {
    format!(
        "{prefix}CloudTrail/{region}/2026/01/01/{account}_CloudTrail_{region}_20260101T0000Z_trailhubcheck.json.gz"
    )
}
