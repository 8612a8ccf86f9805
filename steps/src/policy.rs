//! The archive bucket policy: adding a source's replication role to it and taking it out again,
//! without touching any statement or principal that is not the grant's own.
//!
//! Article mode keeps the article's two statements, one principal list each:
//! `AllowReplicationFromSourceAccount` (the article also spells it `…Accounts`; both are
//! recognised) and `AllowReplicationPolicyCheck`. A policy written by hand from the article, with
//! `Principal.AWS` as a string or a list, is taken over as it is. Least-privilege mode writes
//! two statements per source instead, limited to what replication needs and to the source's own
//! key prefix (`<prefix><account>/`), tied to its account by `aws:PrincipalAccount`. Accounts
//! mode writes one statement per replication role name, `TrailhubReplicationByAccount<name>`,
//! whose principals are the source accounts (`arn:aws:iam::<id>:root`, 33 bytes each instead of
//! twice a role ARN) and whose `ArnLike aws:PrincipalArn` admits only that role name: what
//! the article's role ARNs allow, for three times as many sources.
//!
//! The policies taken in are ones S3 accepts (it refuses, for instance, an empty principal
//! list): a statement whose principal list `remove` empties is removed, as the operator expects,
//! which is also what makes `remove` undo `add`.

use crate::spec::PolicyMode;
use serde_json::{Map, Value, json};

/// The largest bucket policy S3 accepts, in bytes.
pub const MAX_POLICY_BYTES: usize = 20 * 1024;

/// The policy's text as it is written (compact JSON), or why S3 would refuse it: a bucket
/// policy is limited to 20 KB, which the article's layout reaches at about 190 source accounts
/// (least-privilege mode, about 40; accounts mode, about 590).
pub fn to_text(policy: &Value) -> Result<String, String> {
    let text = serde_json::to_string(policy).expect("policies serialize");
    if text.len() > MAX_POLICY_BYTES {
        return Err(format!(
            "the archive bucket policy would be {} bytes, over S3's limit of {MAX_POLICY_BYTES} bytes",
            text.len()
        ));
    }
    Ok(text)
}

/// Sid of the article's object statement (section 3).
pub const OBJECTS_SID: &str = "AllowReplicationFromSourceAccount";
/// The article's other spelling of it ("adding a source account later").
pub const OBJECTS_SID_ALT: &str = "AllowReplicationFromSourceAccounts";
/// Sid of the article's bucket statement.
pub const CHECK_SID: &str = "AllowReplicationPolicyCheck";
/// Start of the Sid of an accounts-mode statement (the role name follows, letters and digits).
pub const ACCOUNTS_SID_PREFIX: &str = "TrailhubReplicationByAccount";

const OBJECT_ACTIONS: [&str; 4] = [
    "s3:ReplicateObject",
    "s3:ReplicateDelete",
    "s3:ReplicateTags",
    "s3:ObjectOwnerOverrideToBucketOwner",
];
const CHECK_ACTIONS: [&str; 3] = [
    "s3:GetBucketVersioning",
    "s3:PutBucketVersioning",
    "s3:List*",
];

/// One source's grant on the archive bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Article or least-privilege statements.
    pub mode: PolicyMode,
    /// `arn:aws:s3:::<archive bucket>`.
    pub bucket_arn: String,
    /// The source's replication role ARN.
    pub principal: String,
    /// The source account id.
    pub account: String,
    /// The replicated prefix (`AWSLogs/`).
    pub prefix: String,
}

impl Grant {
    /// The principal the policy lists for this grant: the role ARN, or in accounts mode the
    /// account's root (the role name is then in the statement's condition).
    pub fn listed_principal(&self) -> String {
        match self.mode {
            PolicyMode::Accounts => self.account_root(),
            PolicyMode::Article | PolicyMode::LeastPrivilege => self.principal.clone(),
        }
    }

    /// The source account as a principal: `arn:<partition>:iam::<account>:root`.
    fn account_root(&self) -> String {
        let partition = self.principal.split(':').nth(1).unwrap_or("aws");
        format!("arn:{partition}:iam::{}:root", self.account)
    }

    /// The role ARN with `*` for the account: what `aws:PrincipalArn` must match.
    fn role_pattern(&self) -> String {
        let mut parts: Vec<&str> = self.principal.splitn(6, ':').collect();
        if parts.len() == 6 {
            parts[4] = "*";
        }
        parts.join(":")
    }

    fn accounts_sid(&self) -> String {
        let name = self.principal.rsplit('/').next().unwrap_or_default();
        let name: String = name.chars().filter(char::is_ascii_alphanumeric).collect();
        format!("{ACCOUNTS_SID_PREFIX}{name}")
    }

    /// Whether `statement` is this grant's accounts-mode statement: trailhub's Sid prefix and
    /// exactly this role pattern (found by the pattern, so a Sid edited by hand is still found).
    fn is_accounts_statement(&self, statement: &Value) -> bool {
        let pattern = statement
            .get("Condition")
            .and_then(|c| c.get("ArnLike"))
            .and_then(|c| c.get("aws:PrincipalArn"));
        let matches = match pattern {
            Some(Value::String(p)) => *p == self.role_pattern(),
            Some(Value::Array(list)) => {
                list.len() == 1 && list[0].as_str() == Some(self.role_pattern().as_str())
            }
            _ => false,
        };
        matches && sid(statement).is_some_and(|s| s.starts_with(ACCOUNTS_SID_PREFIX))
    }

    fn accounts_statement(&self) -> Value {
        let bucket = &self.bucket_arn;
        let actions: Vec<&str> = OBJECT_ACTIONS
            .iter()
            .chain(&CHECK_ACTIONS)
            .copied()
            .collect();
        json!({
            "Sid": self.accounts_sid(),
            "Effect": "Allow",
            "Principal": { "AWS": [self.account_root()] },
            "Action": actions,
            "Resource": [bucket, format!("{bucket}/*")],
            "Condition": { "ArnLike": { "aws:PrincipalArn": self.role_pattern() } },
        })
    }

    fn least_sids(&self) -> (String, String) {
        (
            format!("TrailhubReplicateObjects{}", self.account),
            format!("TrailhubVersioningCheck{}", self.account),
        )
    }

    fn least_statements(&self) -> [Value; 2] {
        let (objects, check) = self.least_sids();
        let condition = json!({ "StringEquals": { "aws:PrincipalAccount": self.account } });
        [
            json!({
                "Sid": objects,
                "Effect": "Allow",
                "Principal": { "AWS": self.principal },
                "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags", "s3:ObjectOwnerOverrideToBucketOwner"],
                "Resource": format!("{}/{}{}/*", self.bucket_arn, self.prefix, self.account),
                "Condition": condition,
            }),
            json!({
                "Sid": check,
                "Effect": "Allow",
                "Principal": { "AWS": self.principal },
                "Action": "s3:GetBucketVersioning",
                "Resource": self.bucket_arn,
                "Condition": condition,
            }),
        ]
    }
}

/// The statements of a policy, whether `Statement` is a list or a single object.
fn statements(policy: &Value) -> Vec<&Value> {
    match policy.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(obj @ Value::Object(_)) => vec![obj],
        _ => Vec::new(),
    }
}

fn statements_mut(policy: &mut Value) -> &mut Vec<Value> {
    let map = policy
        .as_object_mut()
        .expect("policies are JSON objects (checked by parse)");
    let entry = map
        .entry("Statement")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !entry.is_array() {
        let single = entry.take();
        *entry = Value::Array(vec![single]);
    }
    entry.as_array_mut().expect("Statement was made a list")
}

fn sid(statement: &Value) -> Option<&str> {
    statement.get("Sid").and_then(Value::as_str)
}

/// The `Principal.AWS` entries of a statement.
fn aws_principals(statement: &Value) -> Vec<&str> {
    match statement.get("Principal").and_then(|p| p.get("AWS")) {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Whether a statement's principal is everyone (`"*"` or `{"AWS": "*"}`).
fn everyone(statement: &Value) -> bool {
    match statement.get("Principal") {
        Some(Value::String(s)) => s == "*",
        Some(p) => p.get("AWS").and_then(Value::as_str) == Some("*"),
        None => false,
    }
}

/// Parses a bucket policy; `Err` names what is wrong with it.
pub fn parse(text: &str) -> Result<Value, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if !value.is_object() {
        return Err("not a JSON object".into());
    }
    Ok(value)
}

/// The statements (by Sid) of `grant` that do not name its principal yet.
pub fn missing(policy: Option<&Value>, grant: &Grant) -> Vec<String> {
    let stmts = policy.map(statements).unwrap_or_default();
    match grant.mode {
        PolicyMode::Article => {
            let mut missing = Vec::new();
            let has = |sids: &[&str]| {
                stmts.iter().any(|s| {
                    sid(s).is_some_and(|x| sids.contains(&x))
                        && (everyone(s) || aws_principals(s).contains(&grant.principal.as_str()))
                })
            };
            if !has(&[OBJECTS_SID, OBJECTS_SID_ALT]) {
                missing.push(OBJECTS_SID.to_string());
            }
            if !has(&[CHECK_SID]) {
                missing.push(CHECK_SID.to_string());
            }
            missing
        }
        PolicyMode::LeastPrivilege => {
            let wanted = grant.least_statements();
            wanted
                .iter()
                .filter(|w| !stmts.iter().any(|s| s == w))
                .map(|w| sid(w).unwrap_or_default().to_string())
                .collect()
        }
        PolicyMode::Accounts => {
            let root = grant.account_root();
            let present = stmts.iter().any(|s| {
                grant.is_accounts_statement(s)
                    && (everyone(s) || aws_principals(s).contains(&root.as_str()))
            });
            if present {
                Vec::new()
            } else {
                vec![grant.accounts_sid()]
            }
        }
    }
}

/// Adds `grant` to `policy` (a new policy when `None`). Returns the policy and whether it changed.
pub fn add(policy: Option<&Value>, grant: &Grant) -> (Value, bool) {
    let mut policy = policy
        .cloned()
        .unwrap_or_else(|| json!({ "Version": "2012-10-17", "Statement": [] }));
    let mut changed = false;
    match grant.mode {
        PolicyMode::Article => {
            let bucket = grant.bucket_arn.clone();
            let plan = [
                (
                    vec![OBJECTS_SID, OBJECTS_SID_ALT],
                    OBJECTS_SID,
                    OBJECT_ACTIONS.to_vec(),
                    format!("{bucket}/*"),
                ),
                (vec![CHECK_SID], CHECK_SID, CHECK_ACTIONS.to_vec(), bucket),
            ];
            for (sids, new_sid, actions, resource) in plan {
                let list = statements_mut(&mut policy);
                match list
                    .iter_mut()
                    .find(|s| sid(s).is_some_and(|x| sids.contains(&x)))
                {
                    Some(statement) => {
                        changed |= add_principal(statement, &grant.principal);
                    }
                    None => {
                        list.push(json!({
                            "Sid": new_sid,
                            "Effect": "Allow",
                            "Principal": { "AWS": [grant.principal] },
                            "Action": actions,
                            "Resource": resource,
                        }));
                        changed = true;
                    }
                }
            }
        }
        PolicyMode::LeastPrivilege => {
            let list = statements_mut(&mut policy);
            for wanted in grant.least_statements() {
                let wanted_sid = sid(&wanted).unwrap_or_default().to_string();
                match list
                    .iter_mut()
                    .find(|s| sid(s) == Some(wanted_sid.as_str()))
                {
                    Some(existing) if *existing == wanted => {}
                    Some(existing) => {
                        *existing = wanted;
                        changed = true;
                    }
                    None => {
                        list.push(wanted);
                        changed = true;
                    }
                }
            }
        }
        PolicyMode::Accounts => {
            let list = statements_mut(&mut policy);
            match list.iter_mut().find(|s| grant.is_accounts_statement(s)) {
                Some(statement) => changed |= add_principal(statement, &grant.account_root()),
                None => {
                    list.push(grant.accounts_statement());
                    changed = true;
                }
            }
        }
    }
    (policy, changed)
}

/// Adds a principal to a statement's `Principal.AWS`, turning a single string into a list only
/// when a second principal joins it. Returns whether it changed.
fn add_principal(statement: &mut Value, principal: &str) -> bool {
    let Some(obj) = statement.as_object_mut() else {
        return false;
    };
    let principal_map = obj
        .entry("Principal")
        .or_insert_with(|| Value::Object(Map::new()));
    match principal_map {
        Value::Object(_) => {}
        // `"Principal": "*"`: already everyone; adding a role changes nothing.
        Value::String(s) if s == "*" => return false,
        // S3 accepts no other non-object principal; a hand-edited one (an ARN as a plain
        // string) is made the list form, keeping what it named.
        Value::String(s) => {
            let existing = std::mem::take(s);
            *principal_map = json!({ "AWS": [existing, principal] });
            return true;
        }
        other => {
            *other = json!({ "AWS": [principal] });
            return true;
        }
    }
    let map = principal_map.as_object_mut().expect("checked above");
    match map.get_mut("AWS") {
        None => {
            map.insert("AWS".into(), json!([principal]));
            true
        }
        Some(Value::String(s)) if s == principal => false,
        Some(Value::String(s)) => {
            let existing = std::mem::take(s);
            map.insert("AWS".into(), json!([existing, principal]));
            true
        }
        Some(Value::Array(list)) => {
            if list.iter().any(|v| v.as_str() == Some(principal)) {
                false
            } else {
                list.push(Value::String(principal.to_string()));
                true
            }
        }
        Some(other) => {
            let existing = other.take();
            map.insert("AWS".into(), json!([existing, principal]));
            true
        }
    }
}

/// Removes `grant` from `policy`. A statement whose principal list becomes empty is removed;
/// `None` means no statement is left and the policy should be deleted. Returns whether it changed.
pub fn remove(policy: &Value, grant: &Grant) -> (Option<Value>, bool) {
    let mut policy = policy.clone();
    let list = statements_mut(&mut policy);
    let changed = match grant.mode {
        PolicyMode::Article => {
            let sids = [OBJECTS_SID, OBJECTS_SID_ALT, CHECK_SID];
            remove_from(
                list,
                |s| sid(s).is_some_and(|x| sids.contains(&x)),
                &grant.principal,
            )
        }
        PolicyMode::LeastPrivilege => {
            let (objects, check) = grant.least_sids();
            let before = list.len();
            list.retain(|s| sid(s) != Some(objects.as_str()) && sid(s) != Some(check.as_str()));
            list.len() != before
        }
        PolicyMode::Accounts => remove_from(
            list,
            |s| grant.is_accounts_statement(s),
            &grant.account_root(),
        ),
    };
    let empty = statements(&policy).is_empty();
    if empty {
        (None, changed)
    } else {
        (Some(policy), changed)
    }
}

/// Takes `principal` out of the statements that `managed` picks, removing a statement whose
/// principal list it empties. Returns whether anything changed.
fn remove_from(list: &mut Vec<Value>, managed: impl Fn(&Value) -> bool, principal: &str) -> bool {
    let mut changed = false;
    list.retain_mut(|statement| {
        if !managed(statement) {
            return true;
        }
        match remove_principal(statement, principal) {
            Removal::Absent => true,
            Removal::Removed => {
                changed = true;
                true
            }
            Removal::NowEmpty => {
                changed = true;
                false
            }
        }
    });
    changed
}

enum Removal {
    Absent,
    Removed,
    NowEmpty,
}

fn remove_principal(statement: &mut Value, principal: &str) -> Removal {
    let Some(map) = statement
        .get_mut("Principal")
        .and_then(Value::as_object_mut)
    else {
        return Removal::Absent;
    };
    let only_aws = map.len() == 1;
    match map.get_mut("AWS") {
        Some(Value::String(s)) if s == principal => {
            if only_aws {
                Removal::NowEmpty
            } else {
                map.remove("AWS");
                Removal::Removed
            }
        }
        Some(Value::Array(list)) => {
            let before = list.len();
            list.retain(|v| v.as_str() != Some(principal));
            if list.len() == before {
                Removal::Absent
            } else if list.is_empty() {
                if only_aws {
                    Removal::NowEmpty
                } else {
                    map.remove("AWS");
                    Removal::Removed
                }
            } else {
                Removal::Removed
            }
        }
        _ => Removal::Absent,
    }
}

/// A policy's meaning, for comparisons: a single statement object is a one-element list, a
/// one-element principal or action list is its element, and principal and action lists are sets.
pub fn normalize(policy: &Value) -> Value {
    fn set_like(v: &Value) -> Value {
        match v {
            Value::Array(list) => {
                let mut items: Vec<Value> = list.clone();
                items.sort_by_key(|a| a.to_string());
                items.dedup();
                // Deduplicated first: `["a", "a"]` means `"a"` too.
                if items.len() == 1 {
                    items.swap_remove(0)
                } else {
                    Value::Array(items)
                }
            }
            other => other.clone(),
        }
    }
    let mut out = policy.clone();
    let Some(stmt) = out.as_object_mut().and_then(|o| o.get_mut("Statement")) else {
        return out;
    };
    if stmt.is_object() {
        *stmt = Value::Array(vec![stmt.take()]);
    }
    for s in stmt.as_array_mut().into_iter().flatten() {
        let Some(so) = s.as_object_mut() else {
            continue;
        };
        for key in ["Action", "NotAction", "Resource", "NotResource"] {
            if let Some(v) = so.get_mut(key) {
                *v = set_like(v);
            }
        }
        if let Some(p) = so.get_mut("Principal").and_then(Value::as_object_mut) {
            for v in p.values_mut() {
                *v = set_like(v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BUCKET: &str = "arn:aws:s3:::aggregation-cloudtrail-logs-111111111111";

    fn grant(account: &str, mode: PolicyMode) -> Grant {
        Grant {
            mode,
            bucket_arn: BUCKET.into(),
            principal: format!("arn:aws:iam::{account}:role/S3ReplicationRole"),
            account: account.into(),
            prefix: "AWSLogs/".into(),
        }
    }

    #[test]
    fn first_grant_writes_the_articles_two_statements() {
        let (policy, changed) = add(None, &grant("222222222222", PolicyMode::Article));
        assert!(changed);
        assert_eq!(
            policy,
            json!({
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "AllowReplicationFromSourceAccount",
                        "Effect": "Allow",
                        "Principal": {"AWS": ["arn:aws:iam::222222222222:role/S3ReplicationRole"]},
                        "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags", "s3:ObjectOwnerOverrideToBucketOwner"],
                        "Resource": format!("{BUCKET}/*"),
                    },
                    {
                        "Sid": "AllowReplicationPolicyCheck",
                        "Effect": "Allow",
                        "Principal": {"AWS": ["arn:aws:iam::222222222222:role/S3ReplicationRole"]},
                        "Action": ["s3:GetBucketVersioning", "s3:PutBucketVersioning", "s3:List*"],
                        "Resource": BUCKET,
                    }
                ]
            })
        );
        assert!(missing(Some(&policy), &grant("222222222222", PolicyMode::Article)).is_empty());
        assert_eq!(
            missing(Some(&policy), &grant("333333333333", PolicyMode::Article)),
            vec![OBJECTS_SID, CHECK_SID]
        );
    }

    #[test]
    fn a_hand_made_policy_is_taken_over_not_granted_twice() {
        let hand_made = json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "AllowReplicationFromSourceAccounts", "Effect": "Allow",
                 "Principal": {"AWS": "arn:aws:iam::222222222222:role/S3ReplicationRole"},
                 "Action": ["s3:ReplicateObject"], "Resource": format!("{BUCKET}/*")},
                {"Sid": "AllowReplicationPolicyCheck", "Effect": "Allow",
                 "Principal": {"AWS": "arn:aws:iam::222222222222:role/S3ReplicationRole"},
                 "Action": ["s3:List*"], "Resource": BUCKET},
                {"Sid": "Unrelated", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket", "Resource": BUCKET}
            ]
        });
        let (same, changed) = add(
            Some(&hand_made),
            &grant("222222222222", PolicyMode::Article),
        );
        assert!(!changed);
        assert_eq!(same, hand_made);
        let (more, changed) = add(
            Some(&hand_made),
            &grant("333333333333", PolicyMode::Article),
        );
        assert!(changed);
        let stmts = statements(&more);
        assert_eq!(stmts.len(), 3, "no second statement is added");
        assert_eq!(
            aws_principals(stmts[0]),
            vec![
                "arn:aws:iam::222222222222:role/S3ReplicationRole",
                "arn:aws:iam::333333333333:role/S3ReplicationRole"
            ]
        );
        assert_eq!(stmts[2], &hand_made["Statement"][2]);
    }

    #[test]
    fn removing_the_last_principal_removes_the_statement_and_then_the_policy() {
        let g = grant("222222222222", PolicyMode::Article);
        let (policy, _) = add(None, &g);
        let (after, changed) = remove(&policy, &g);
        assert!(changed);
        assert_eq!(after, None);
        let (again, changed) = remove(&policy, &grant("999999999999", PolicyMode::Article));
        assert!(!changed);
        assert_eq!(again, Some(policy));
    }

    /// Grants sources one after another until the policy would exceed S3's limit: how many
    /// fit, and the last policy that did.
    fn fill(mode: PolicyMode) -> (usize, Option<Value>) {
        let mut policy: Option<Value> = None;
        for i in 0..1000u64 {
            let g = grant(&format!("{}", 200_000_000_000 + i), mode);
            let (next, _) = add(policy.as_ref(), &g);
            if to_text(&next).is_err() {
                return (i as usize, policy);
            }
            policy = Some(next);
        }
        (1000, policy)
    }

    #[test]
    fn a_policy_over_s3s_size_limit_is_refused() {
        let (fitted, policy) = fill(PolicyMode::Article);
        assert!(
            (150..250).contains(&fitted),
            "about 190 accounts fit: {fitted}"
        );
        let (over, _) = add(policy.as_ref(), &grant("999999999999", PolicyMode::Article));
        let err = to_text(&over).expect_err("over the limit");
        assert!(err.contains("over S3's limit of 20480 bytes"), "{err}");
    }

    #[test]
    fn accounts_mode_names_accounts_in_one_statement_per_role_name() {
        let a = grant("222222222222", PolicyMode::Accounts);
        let b = grant("333333333333", PolicyMode::Accounts);
        let (policy, changed) = add(None, &a);
        assert!(changed);
        let (policy, changed) = add(Some(&policy), &b);
        assert!(changed);
        assert_eq!(
            policy["Statement"],
            json!([{
                "Sid": "TrailhubReplicationByAccountS3ReplicationRole",
                "Effect": "Allow",
                "Principal": {"AWS": ["arn:aws:iam::222222222222:root", "arn:aws:iam::333333333333:root"]},
                "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags", "s3:ObjectOwnerOverrideToBucketOwner",
                           "s3:GetBucketVersioning", "s3:PutBucketVersioning", "s3:List*"],
                "Resource": [BUCKET, format!("{BUCKET}/*")],
                "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/S3ReplicationRole"}},
            }])
        );
        assert!(missing(Some(&policy), &a).is_empty() && missing(Some(&policy), &b).is_empty());
        assert_eq!(add(Some(&policy), &a), (policy.clone(), false));

        // Another role name gets a statement of its own: an account's other roles stay out.
        let mut other = grant("444444444444", PolicyMode::Accounts);
        other.principal = "arn:aws:iam::444444444444:role/Other-Role".into();
        assert_eq!(
            missing(Some(&policy), &other),
            vec!["TrailhubReplicationByAccountOtherRole"]
        );
        let (two, _) = add(Some(&policy), &other);
        assert_eq!(statements(&two).len(), 2);

        let (after_a, changed) = remove(&two, &a);
        assert!(changed);
        let after_a = after_a.expect("b and the other role remain");
        assert_eq!(missing(Some(&after_a), &a), vec![a.accounts_sid()]);
        assert!(missing(Some(&after_a), &b).is_empty());
        let (after_b, _) = remove(&after_a, &b);
        let (none, _) = remove(&after_b.expect("the other role remains"), &other);
        assert_eq!(none, None);
    }

    #[test]
    fn accounts_mode_fits_500_sources_in_s3s_limit() {
        let (fitted, _) = fill(PolicyMode::Accounts);
        assert!(
            (550..650).contains(&fitted),
            "about 590 accounts fit: {fitted}"
        );
    }

    #[test]
    fn least_privilege_is_per_account_and_prefix() {
        let g = grant("222222222222", PolicyMode::LeastPrivilege);
        let (policy, changed) = add(None, &g);
        assert!(changed);
        let text = policy.to_string();
        assert!(!text.contains("s3:PutBucketVersioning") && !text.contains("s3:List*"));
        assert!(text.contains(&format!("{BUCKET}/AWSLogs/222222222222/*")));
        assert!(text.contains("aws:PrincipalAccount"));
        assert!(missing(Some(&policy), &g).is_empty());
        let (_, changed) = add(Some(&policy), &g);
        assert!(!changed);
        assert_eq!(remove(&policy, &g), (None, true));
    }

    fn arb_principal() -> impl Strategy<Value = Value> {
        prop_oneof![
            "[0-9]{12}".prop_map(|a| json!({"AWS": format!("arn:aws:iam::{a}:role/R")})),
            prop::collection::vec("[0-9]{12}", 1..4).prop_map(|v| json!({"AWS": v
                .iter()
                .map(|a| format!("arn:aws:iam::{a}:role/S3ReplicationRole"))
                .collect::<Vec<_>>()})),
            Just(json!("*")),
            Just(json!({"Service": "cloudtrail.amazonaws.com"})),
        ]
    }

    fn arb_statement() -> impl Strategy<Value = Value> {
        (
            prop_oneof![
                Just(OBJECTS_SID.to_string()),
                Just(OBJECTS_SID_ALT.to_string()),
                Just(CHECK_SID.to_string()),
                "[A-Za-z]{1,12}"
            ],
            arb_principal(),
            prop::bool::ANY,
            prop::collection::vec("s3:[A-Za-z*]{3,10}", 1..4),
        )
            .prop_map(|(sid, principal, allow, actions)| {
                json!({
                    "Sid": sid,
                    "Effect": if allow { "Allow" } else { "Deny" },
                    "Principal": principal,
                    "Action": actions,
                    "Resource": BUCKET,
                })
            })
    }

    fn arb_policy() -> impl Strategy<Value = Value> {
        prop::collection::vec(arb_statement(), 1..6).prop_map(|mut stmts| {
            // Sids are unique within a policy.
            let mut seen = std::collections::BTreeSet::new();
            stmts.retain(|s| seen.insert(s["Sid"].as_str().unwrap_or_default().to_string()));
            json!({"Version": "2012-10-17", "Id": "hand-made", "Statement": stmts})
        })
    }

    proptest! {
        #[test]
        fn merge_then_remove_returns_the_original(
            policy in arb_policy(),
            account in "[0-9]{12}",
            mode in prop_oneof![
                Just(PolicyMode::Article),
                Just(PolicyMode::LeastPrivilege),
                Just(PolicyMode::Accounts),
            ],
        ) {
            let g = grant(&account, mode);
            prop_assume!(!policy.to_string().contains(&account));
            let (merged, changed) = add(Some(&policy), &g);
            prop_assert!(missing(Some(&merged), &g).is_empty());
            if changed {
                let (back, changed) = remove(&merged, &g);
                prop_assert!(changed);
                let back = back.expect("the original statements remain");
                prop_assert_eq!(normalize(&back), normalize(&policy));
            } else {
                // Only a statement open to everyone already covers the grant.
                prop_assert_eq!(&merged, &policy);
                prop_assert!(policy.to_string().contains("\"*\""));
            }
        }

        #[test]
        fn other_principals_survive_any_grant_order(accounts in prop::collection::btree_set("[0-9]{12}", 1..8)) {
            let mut policy: Option<Value> = None;
            for a in &accounts {
                policy = Some(add(policy.as_ref(), &grant(a, PolicyMode::Article)).0);
            }
            let policy = policy.expect("granted");
            for a in &accounts {
                prop_assert!(missing(Some(&policy), &grant(a, PolicyMode::Article)).is_empty());
            }
        }
    }
}
