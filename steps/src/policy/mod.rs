//! The archive bucket policy: adding a source's replication role to it and taking it out again,
//! without touching any statement or principal that is not the grant's own.
//!
//! Each [`PolicyMode`] writes its statements through a `Layout` of its own, one file each:
//!
//! - `article`: the article's two statements, one principal list each:
//!   `AllowReplicationFromSourceAccount` (the article also spells it `…Accounts`; both are
//!   recognised) and `AllowReplicationPolicyCheck`. A policy written by hand from the article,
//!   with `Principal.AWS` as a string or a list, is taken over as it is.
//! - `least_privilege`: two statements per source instead, limited to what replication needs
//!   and to the source's own key prefix (`<prefix><account>/`), tied to its account by
//!   `aws:PrincipalAccount`; the replication role's trust policy is tied to the source bucket.
//! - `accounts`: one statement per replication role name, `TrailhubReplicationByAccount<name>`,
//!   whose principals are the source accounts (`arn:aws:iam::<id>:root`, 33 bytes each instead
//!   of twice a role ARN) and whose `ArnLike aws:PrincipalArn` admits only that role name: what
//!   the article's role ARNs allow, for three times as many sources.
//!
//! This module holds what the modes share: the policy's size limit, the statement helpers, and
//! the public functions, which unwrap the policy's statements and leave them to the layout.
//! A new mode is a file here, a variant of [`PolicyMode`], and the arm of
//! `PolicyMode::layout` the compiler then asks for.
//!
//! The policies taken in are ones S3 accepts (it refuses, for instance, an empty principal
//! list): a statement whose principal list `remove` empties is removed, as the operator expects,
//! which is also what makes `remove` undo `add`.

mod accounts;
mod article;
pub mod key;
mod least_privilege;

pub(crate) use accounts::AccountsLayout;
pub use accounts::accounts_sid;
pub(crate) use article::ArticleLayout;
pub(crate) use least_privilege::LeastPrivilegeLayout;

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

/// What a member's role may do to archive objects, and nothing more: replicate an object and
/// its tags, and hand its ownership to the archive (trailhub's rules translate ownership). Not
/// `s3:ReplicateDelete`: trailhub's rules never replicate delete markers, and a member that
/// turned that on could make logs look deleted in the archive.
const OBJECT_ACTIONS: [&str; 3] = [
    "s3:ReplicateObject",
    "s3:ReplicateTags",
    "s3:ObjectOwnerOverrideToBucketOwner",
];
/// What replication asks of the archive bucket itself ("Setting up permissions for live
/// replication": the destination's versioning). Not `s3:List*` (any member could list every
/// account's keys) nor `s3:PutBucketVersioning`: replication needs neither.
const CHECK_ACTIONS: [&str; 1] = ["s3:GetBucketVersioning"];

/// The policy variable S3 resolves to the requesting principal's account. It isolates members
/// in the shared statements: `<archive>/<prefix>AWSLogs/${aws:PrincipalAccount}/*` lets each
/// role write its own account's keys only, one resource for hundreds of members (IAM User Guide,
/// "IAM policy elements: Variables and tags": a variable may stand in the resource part of an
/// ARN; its "IAM Access Analyzer policy generation" page shows a bucket policy doing exactly
/// this with `AWSLogs/<organization id>/${aws:PrincipalAccount}/*`).
pub const PRINCIPAL_ACCOUNT: &str = "${aws:PrincipalAccount}";

/// The object resources of a shared statement for `prefixes`: each prefix's keys of the
/// requester's own account.
fn shared_objects(bucket_arn: &str, prefixes: &[String]) -> Vec<String> {
    prefixes
        .iter()
        .map(|p| format!("{bucket_arn}/{p}{PRINCIPAL_ACCOUNT}/*"))
        .collect()
}

/// Whether `resource` is an object resource of a shared statement that isolates accounts:
/// `<bucket>/<literal prefix>${aws:PrincipalAccount}/*`.
fn isolating(resource: &str, bucket_arn: &str) -> bool {
    resource
        .strip_prefix(&format!("{bucket_arn}/"))
        .and_then(|r| r.strip_suffix(&format!("{PRINCIPAL_ACCOUNT}/*")))
        .is_some_and(|p| !p.contains(['*', '?', '$']) && (p.is_empty() || p.ends_with('/')))
}

/// A statement's `Action` or `Resource` as a set of strings.
fn string_set(value: Option<&Value>) -> std::collections::BTreeSet<String> {
    match value {
        Some(Value::String(s)) => std::iter::once(s.clone()).collect(),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Default::default(),
    }
}

/// What trailhub's shared statement must say besides its Sid and principals.
struct Shape<'a> {
    actions: &'a [&'a str],
    /// The bucket itself, when the statement covers it.
    bucket: Option<&'a str>,
    /// The object resources the grant needs (isolating ones; others found are dropped).
    objects: Vec<String>,
    /// The only condition the statement may carry.
    condition: Option<Value>,
}

impl Shape<'_> {
    /// Whether `statement` says exactly this (isolating object resources of other grants may be
    /// there too).
    fn held_by(&self, statement: &Value, bucket_arn: &str) -> bool {
        let actions: std::collections::BTreeSet<String> =
            self.actions.iter().map(|a| a.to_string()).collect();
        let resources = string_set(statement.get("Resource"));
        let objects_ok = resources
            .iter()
            .filter(|r| Some(r.as_str()) != self.bucket)
            .all(|r| isolating(r, bucket_arn));
        statement.get("Effect").and_then(Value::as_str) == Some("Allow")
            && string_set(statement.get("Action")) == actions
            && self.bucket.is_none_or(|b| resources.contains(b))
            && objects_ok
            && self.objects.iter().all(|o| resources.contains(o))
            && (self.bucket.is_some() || !resources.is_empty())
            && statement.get("Condition") == self.condition.as_ref()
            && statement.get("NotAction").is_none()
            && statement.get("NotResource").is_none()
    }

    /// Brings `statement` to this shape, keeping its Sid, its principals and the isolating
    /// object resources of other grants; returns whether it changed.
    fn apply(&self, statement: &mut Value, bucket_arn: &str) -> bool {
        let mut objects: std::collections::BTreeSet<String> = string_set(statement.get("Resource"))
            .into_iter()
            .filter(|r| isolating(r, bucket_arn))
            .collect();
        objects.extend(self.objects.iter().cloned());
        let mut resources: Vec<String> = self.bucket.map(str::to_string).into_iter().collect();
        resources.extend(objects);
        let resource = match resources.as_slice() {
            [one] => json!(one),
            _ => json!(resources),
        };
        let before = statement.clone();
        let Some(obj) = statement.as_object_mut() else {
            return false;
        };
        obj.insert("Effect".into(), json!("Allow"));
        obj.insert("Action".into(), json!(self.actions));
        obj.insert("Resource".into(), resource);
        obj.remove("NotAction");
        obj.remove("NotResource");
        match &self.condition {
            Some(c) => {
                obj.insert("Condition".into(), c.clone());
            }
            None => {
                obj.remove("Condition");
            }
        }
        *statement != before
    }
}

/// One source's grant on the archive bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Which statements the grant is written in.
    pub mode: PolicyMode,
    /// `arn:aws:s3:::<archive bucket>`.
    pub bucket_arn: String,
    /// The source's replication role ARN.
    pub principal: String,
    /// The source account id.
    pub account: String,
    /// The replicated prefixes (`AWSLogs/`, `<trail prefix>/AWSLogs/`).
    pub prefixes: Vec<String>,
}

impl Grant {
    /// The principal the policy lists for this grant: the role ARN, or in accounts mode the
    /// account's root (the role name is then in the statement's condition).
    pub fn listed_principal(&self) -> String {
        self.mode.layout().listed_principal(self)
    }
}

/// What one policy mode writes for a grant: its statements in the archive bucket policy, and
/// the condition it puts on the replication role's trust policy. The public functions of this
/// module parse the policy and hand its statements (always a list) to the grant's layout, so a
/// layout sees only statements and never the policy document around them.
pub(crate) trait Layout {
    /// The mode's name in the inventory and the journal (`least-privilege`).
    fn name(&self) -> &'static str;

    /// The principal the policy lists for `grant` (see [`Grant::listed_principal`]).
    fn listed_principal(&self, grant: &Grant) -> String;

    /// The Sids of `grant`'s statements that are absent from `statements` or do not name its
    /// principal yet; empty when the grant is in place.
    fn missing(&self, statements: &[&Value], grant: &Grant) -> Vec<String>;

    /// Writes `grant` into `statements`, leaving every statement and principal that is not the
    /// grant's own as it is. Returns whether anything changed.
    fn add(&self, statements: &mut Vec<Value>, grant: &Grant) -> bool;

    /// Takes `grant` out of `statements`, dropping a statement left with no principal, so that
    /// `remove` undoes `add`. Returns whether anything changed.
    fn remove(&self, statements: &mut Vec<Value>, grant: &Grant) -> bool;

    /// The statements trailhub writes for `grant` alone (other grants add their principals and
    /// object resources to the shared ones).
    fn expected(&self, grant: &Grant) -> Vec<Value>;

    /// Why `grant` cannot be written into `statements` without overwriting what trailhub did not
    /// write; `None` for layouts that only ever add principals to their statements.
    fn conflict(&self, _statements: &[&Value], _grant: &Grant) -> Option<String> {
        None
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
    grant.mode.layout().missing(&stmts, grant)
}

/// Adds `grant` to `policy` (a new policy when `None`). Returns the policy and whether it changed.
pub fn add(policy: Option<&Value>, grant: &Grant) -> (Value, bool) {
    let mut policy = policy
        .cloned()
        .unwrap_or_else(|| json!({ "Version": "2012-10-17", "Statement": [] }));
    let changed = grant.mode.layout().add(statements_mut(&mut policy), grant);
    (policy, changed)
}

/// Why `grant` cannot be written into `policy`: a statement of the Sid its layout writes that
/// trailhub did not write (another principal, another shape) is not overwritten.
pub fn conflict(policy: Option<&Value>, grant: &Grant) -> Option<String> {
    let stmts = policy.map(statements).unwrap_or_default();
    grant.mode.layout().conflict(&stmts, grant)
}

/// How `policy` falls short of granting `grant` as this release writes it, each as
/// `(field, expected, found)`: a statement missing, the grant's principal missing from it, or
/// a statement whose effect, actions, resources or conditions differ from trailhub's (widened
/// by hand, or written by an earlier release).
pub fn grant_drift(policy: Option<&Value>, grant: &Grant) -> Vec<(String, String, String)> {
    let layout = grant.mode.layout();
    let live = policy.map(statements).unwrap_or_default();
    let missing = layout.missing(&live, grant);
    let principal = layout.listed_principal(grant);
    let mut out = Vec::new();
    for want in layout.expected(grant) {
        let Some(want_sid) = sid(&want) else { continue };
        if !missing.iter().any(|m| m == want_sid) {
            continue;
        }
        let found = live.iter().find(|s| {
            sid(s) == Some(want_sid) || (want_sid == OBJECTS_SID && sid(s) == Some(OBJECTS_SID_ALT))
        });
        let field = format!("Statement[{want_sid}]");
        match found {
            None => out.push((field, "present".into(), "(missing)".into())),
            Some(s) if !everyone(s) && !aws_principals(s).contains(&principal.as_str()) => out
                .push((
                    format!("{field}.Principal.AWS"),
                    format!("includes {principal}"),
                    "(missing)".into(),
                )),
            Some(s) => out.push((field, owned(&want).to_string(), owned(s).to_string())),
        }
    }
    out
}

/// A statement's fields that say what it allows, as one JSON object.
fn owned(statement: &Value) -> Value {
    let mut map = Map::new();
    for field in OWNED_FIELDS {
        if let Some(v) = statement.get(field) {
            map.insert(field.to_string(), v.clone());
        }
    }
    Value::Object(map)
}

/// The principals of trailhub's statements in `policy` that are none of `listed` (the
/// inventory's grants), each as `(Sid, principal)`: an off-boarded account, a role someone
/// added by hand. A least-privilege statement pair of an account not listed counts as its
/// principal.
pub fn unlisted_principals(policy: &Value, listed: &[String]) -> Found {
    let mut out = Vec::new();
    for statement in statements(policy) {
        if !trailhubs(statement) {
            continue;
        }
        let label = sid(statement).unwrap_or_default().to_string();
        let principals: Vec<String> = match statement.get("Principal") {
            Some(Value::String(p)) => vec![p.clone()],
            Some(_) => aws_principals(statement)
                .into_iter()
                .map(str::to_string)
                .collect(),
            None => Vec::new(),
        };
        for p in principals {
            if !listed.contains(&p) && !is_unique_id(&p) {
                out.push((label.clone(), p));
            }
        }
    }
    out
}

/// The fields of trailhub's statements that say what they allow (all but the Sid and the
/// principals): a statement of an earlier shape has them rewritten, and rollback puts them back.
const OWNED_FIELDS: [&str; 6] = [
    "Effect",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];

/// What [`add`] does to a policy for a grant, as the grant's undo record keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddEffect {
    /// The Sids of the statements the grant's principal is added to (or that are created).
    pub added_to: Vec<String>,
    /// The earlier form of each statement whose shape the grant changes (a statement of an
    /// earlier release, or one made by hand from the article), to be put back by rollback.
    pub reshaped: Vec<Value>,
}

/// What adding `grant` to `policy` changes, found by comparing the policy before and after
/// statement by statement (by Sid).
pub fn effect_of_add(policy: Option<&Value>, grant: &Grant) -> AddEffect {
    let (after, _) = add(policy, grant);
    let before = policy.map(statements).unwrap_or_default();
    let mut effect = AddEffect::default();
    for statement in statements(&after) {
        let Some(id) = sid(statement) else { continue };
        match before.iter().find(|b| sid(b) == Some(id)) {
            None => effect.added_to.push(id.to_string()),
            Some(earlier) => {
                if aws_principals(earlier) != aws_principals(statement) {
                    effect.added_to.push(id.to_string());
                }
                if OWNED_FIELDS
                    .iter()
                    .any(|f| earlier.get(f) != statement.get(f))
                {
                    effect.reshaped.push((*earlier).clone());
                }
            }
        }
    }
    effect
}

/// Puts back the earlier form (all but the principals) of each of `earlier`'s statements still
/// in `policy`; returns the policy and whether it changed.
pub fn restore(policy: Option<Value>, earlier: &[Value]) -> (Option<Value>, bool) {
    let Some(mut policy) = policy else {
        return (None, false);
    };
    let mut changed = false;
    for statement in statements_mut(&mut policy).iter_mut() {
        let Some(old) = earlier
            .iter()
            .find(|e| sid(e).is_some() && sid(e) == sid(statement))
        else {
            continue;
        };
        let Some(obj) = statement.as_object_mut() else {
            continue;
        };
        for field in OWNED_FIELDS {
            let want = old.get(field);
            if obj.get(field) != want {
                match want {
                    Some(v) => obj.insert(field.to_string(), v.clone()),
                    None => obj.remove(field),
                };
                changed = true;
            }
        }
    }
    (Some(policy), changed)
}

/// A statement of trailhub's Sid that trailhub would not rewrite into its own shape: one that
/// denies, or names its principals by exclusion. Rewriting it would widen what it allows.
fn not_reshapable(statement: &Value) -> Option<String> {
    if statement.get("Effect").and_then(Value::as_str) != Some("Allow") {
        return Some("it denies".into());
    }
    if statement.get("NotPrincipal").is_some() {
        return Some("it names its principals with NotPrincipal".into());
    }
    None
}

/// The conflict of a shared statement of trailhub's Sid that is not reshapable.
fn shared_conflict(statement: &Value) -> Option<String> {
    not_reshapable(statement).map(|why| {
        format!(
            "the archive bucket policy has a statement `{}` that trailhub did not write ({why}): trailhub writes its grants in a statement of that Sid, and does not rewrite this one",
            sid(statement).unwrap_or_default()
        )
    })
}

/// Whether a statement is one that a layout of trailhub writes (by its Sid).
fn trailhubs(statement: &Value) -> bool {
    sid(statement).is_some_and(|x| {
        [OBJECTS_SID, OBJECTS_SID_ALT, CHECK_SID].contains(&x)
            || x.starts_with(ACCOUNTS_SID_PREFIX)
            || x.starts_with(least_privilege::OBJECTS_SID_PREFIX)
            || x.starts_with(least_privilege::CHECK_SID_PREFIX)
    })
}

/// Whether a principal is an IAM unique id (`AROA…` for a role, `AIDA…` for a user): how a
/// policy shows a principal that was deleted, for good, even once one of the same name exists
/// again. S3 refuses to save a policy that still names one.
pub fn is_unique_id(principal: &str) -> bool {
    (principal.starts_with("AROA") || principal.starts_with("AIDA"))
        && principal.len() >= 16
        && principal
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// Principals found in a policy, each as `(Sid, principal)`.
pub type Found = Vec<(String, String)>;

/// The unique ids of deleted principals in `policy`, as `(Sid, id)`: first those in trailhub's
/// statements, then those in others'.
pub fn stale_principals(policy: &Value) -> (Found, Found) {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for statement in statements(policy) {
        let label = sid(statement).unwrap_or("(no Sid)").to_string();
        for p in aws_principals(statement) {
            if is_unique_id(p) {
                let found = (label.clone(), p.to_string());
                if trailhubs(statement) {
                    ours.push(found);
                } else {
                    theirs.push(found);
                }
            }
        }
    }
    (ours, theirs)
}

/// Drops from trailhub's statements the unique ids of deleted principals (they grant nothing,
/// and S3 refuses every policy that keeps them), removing a statement left with no principal.
/// Returns what was dropped, as `(Sid, id)`.
pub fn drop_stale(policy: &mut Value) -> Found {
    let (ours, _) = stale_principals(policy);
    if ours.is_empty() {
        return ours;
    }
    let list = statements_mut(policy);
    for (_, id) in &ours {
        remove_from(list, trailhubs, id);
    }
    ours
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

/// Removes `grant` from `policy`: from every statement of its layout or, given `added_to`, only
/// from the statements (by Sid) trailhub added it to (a principal that was already in one stays
/// there). A statement whose principal list becomes empty is removed; `None` means no statement
/// is left and the policy should be deleted. Returns whether it changed.
pub fn remove(policy: &Value, grant: &Grant, added_to: Option<&[String]>) -> (Option<Value>, bool) {
    let mut policy = policy.clone();
    let layout = grant.mode.layout();
    let list = statements_mut(&mut policy);
    let changed = match added_to {
        None => layout.remove(list, grant),
        Some(sids) => {
            let in_scope = |s: &Value| {
                sid(s).is_some_and(|x| {
                    sids.iter()
                        .any(|w| w == x || (w == OBJECTS_SID && x == OBJECTS_SID_ALT))
                })
            };
            // The statements out of scope are set aside, by position, while the layout removes
            // the grant from the others; the survivors go back to their own positions.
            let mut aside = Vec::new();
            let mut scoped = Vec::new();
            let mut position = std::collections::BTreeMap::new();
            for (i, s) in list.drain(..).enumerate() {
                if in_scope(&s) {
                    position.insert(sid(&s).unwrap_or_default().to_string(), i);
                    scoped.push(s);
                } else {
                    aside.push((i, s));
                }
            }
            let changed = layout.remove(&mut scoped, grant);
            let mut all: Vec<(usize, Value)> = aside;
            for s in scoped {
                let at = sid(&s)
                    .and_then(|x| position.get(x))
                    .copied()
                    .unwrap_or(usize::MAX);
                all.push((at, s));
            }
            all.sort_by_key(|(i, _)| *i);
            list.extend(all.into_iter().map(|(_, s)| s));
            changed
        }
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

    pub(super) const BUCKET: &str = "arn:aws:s3:::aggregation-cloudtrail-logs-111111111111";

    /// A grant of `account`'s `S3ReplicationRole` on [`BUCKET`].
    pub(super) fn grant(account: &str, mode: PolicyMode) -> Grant {
        Grant {
            mode,
            bucket_arn: BUCKET.into(),
            principal: format!("arn:aws:iam::{account}:role/S3ReplicationRole"),
            account: account.into(),
            prefixes: vec!["AWSLogs/".into()],
        }
    }

    #[test]
    fn drift_names_a_widened_statement_and_unlisted_principals_are_found() {
        for mode in PolicyMode::ALL {
            let (a, b) = (grant("222222222222", mode), grant("333333333333", mode));
            let (policy, _) = add(None, &a);
            let (policy, _) = add(Some(&policy), &b);
            assert!(grant_drift(Some(&policy), &a).is_empty(), "{mode:?}");
            let mut widened = policy.clone();
            widened["Statement"][0]["Action"] = json!("s3:*");
            let drift = grant_drift(Some(&widened), &a);
            let (field, expected, found) = drift.first().unwrap_or_else(|| panic!("{mode:?}"));
            assert!(field.starts_with("Statement["), "{mode:?} {field}");
            assert!(
                found.contains("s3:*") && !expected.contains("s3:*"),
                "{mode:?}"
            );
            let listed = vec![a.listed_principal()];
            let unlisted = unlisted_principals(&policy, &listed);
            assert!(
                !unlisted.is_empty() && unlisted.iter().all(|(_, p)| *p == b.listed_principal()),
                "{mode:?}: {unlisted:?}"
            );
            let both = vec![a.listed_principal(), b.listed_principal()];
            assert!(unlisted_principals(&policy, &both).is_empty(), "{mode:?}");
        }
    }

    #[test]
    fn rollback_takes_a_principal_only_out_of_the_statements_it_was_added_to() {
        let g = grant("222222222222", PolicyMode::Article);
        // The role was already in the objects statement (written by hand); trailhub added it
        // to the check statement only.
        let before = json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "Other", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket", "Resource": BUCKET},
            {"Sid": OBJECTS_SID_ALT, "Effect": "Allow", "Principal": {"AWS": g.principal.clone()},
             "Action": ["s3:ReplicateObject"], "Resource": format!("{BUCKET}/*")}]});
        let effect = effect_of_add(Some(&before), &g);
        assert_eq!(effect.added_to, [CHECK_SID]);
        assert_eq!(
            effect.reshaped,
            [before["Statement"][1].clone()],
            "the objects statement is brought to the isolating shape"
        );
        let (granted, _) = add(Some(&before), &g);
        let (after, changed) = remove(&granted, &g, Some(&effect.added_to));
        assert!(changed);
        let (after, _) = restore(after, &effect.reshaped);
        assert_eq!(
            after,
            Some(before.clone()),
            "back to the policy found, order kept"
        );
        let (all, _) = remove(&granted, &g, None);
        assert_eq!(
            statements(&all.expect("the Deny stays")).len(),
            1,
            "without the record, every statement of the layout"
        );
    }

    #[test]
    fn deleted_principals_are_dropped_from_trailhubs_statements_and_named_in_others() {
        assert!(is_unique_id("AROAEXAMPLEID1234567"));
        assert!(!is_unique_id(
            "arn:aws:iam::222222222222:role/S3ReplicationRole"
        ));
        assert!(!is_unique_id("AROA"));
        let g = grant("222222222222", PolicyMode::Article);
        let (mut policy, _) = add(None, &g);
        policy["Statement"][0]["Principal"]["AWS"]
            .as_array_mut()
            .expect("a list")
            .push(json!("AROAEXAMPLEID1234567"));
        policy["Statement"]
            .as_array_mut()
            .expect("a list")
            .push(json!({
            "Sid": "HandMade", "Effect": "Allow", "Principal": {"AWS": "AIDAEXAMPLEUSER12345"},
            "Action": "s3:GetObject", "Resource": format!("{BUCKET}/*")}));
        let (ours, theirs) = stale_principals(&policy);
        assert_eq!(
            ours,
            [(OBJECTS_SID.to_string(), "AROAEXAMPLEID1234567".to_string())]
        );
        assert_eq!(
            theirs,
            [("HandMade".to_string(), "AIDAEXAMPLEUSER12345".to_string())]
        );
        let dropped = drop_stale(&mut policy);
        assert_eq!(dropped, ours);
        assert_eq!(
            aws_principals(&policy["Statement"][0]),
            [g.principal.as_str()]
        );
        assert_eq!(stale_principals(&policy).0, []);
        assert_eq!(
            stale_principals(&policy).1,
            theirs,
            "not trailhub's to drop"
        );
    }

    #[test]
    fn a_least_privilege_sid_written_by_someone_else_is_a_conflict() {
        let g = grant("222222222222", PolicyMode::LeastPrivilege);
        let theirs = json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "TrailhubReplicateObjects222222222222", "Effect": "Allow",
             "Principal": {"AWS": "arn:aws:iam::999999999999:role/Other"},
             "Action": "s3:*", "Resource": format!("{BUCKET}/*")}]});
        let message = conflict(Some(&theirs), &g).expect("a conflict");
        assert!(
            message.contains("TrailhubReplicateObjects222222222222")
                && message.contains("999999999999:role/Other"),
            "{message}"
        );
        // trailhub's own statement of an earlier prefix is rewritten, not a conflict.
        let (ours, _) = add(None, &g);
        let mut older = ours.clone();
        older["Statement"][0]["Resource"] = json!(format!("{BUCKET}/old/AWSLogs/222222222222/*"));
        assert_eq!(conflict(Some(&older), &g), None);
        assert_eq!(
            conflict(Some(&theirs), &grant("222222222222", PolicyMode::Article)),
            None
        );
    }

    /// Grants sources one after another until the policy would exceed S3's limit: how many
    /// fit, and the last policy that did.
    pub(super) fn fill(mode: PolicyMode) -> (usize, Option<Value>) {
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
            // A Deny (or NotPrincipal) statement of trailhub's Sid is refused, never rewritten.
            prop_assume!(conflict(Some(&policy), &g).is_none());
            let effect = effect_of_add(Some(&policy), &g);
            let (merged, changed) = add(Some(&policy), &g);
            prop_assert!(missing(Some(&merged), &g).is_empty());
            if changed {
                let (back, changed) = remove(&merged, &g, Some(&effect.added_to));
                prop_assert!(changed || !effect.reshaped.is_empty());
                let (back, _) = restore(back, &effect.reshaped);
                let back = back.expect("the original statements remain");
                prop_assert_eq!(normalize(&back), normalize(&policy));
            } else {
                // Only a statement open to everyone already covers the grant.
                prop_assert_eq!(&merged, &policy);
                prop_assert!(policy.to_string().contains("\"*\""));
            }
        }

        #[test]
        fn every_grant_order_admits_every_role_and_keeps_what_others_wrote(
            (foreign, hand_made, accounts) in foreign_policy_and_accounts(),
        ) {
            let mut statements = foreign.clone();
            statements.extend(hand_made.iter().cloned());
            let start = json!({"Version": "2012-10-17", "Statement": statements});
            let mut policy = Some(start);
            for a in &accounts {
                policy = Some(add(policy.as_ref(), &grant(a, PolicyMode::Article)).0);
            }
            let policy = policy.expect("granted");
            let after: Vec<Value> = policy["Statement"].as_array().cloned().unwrap_or_default();
            for a in &accounts {
                let arn = format!("arn:aws:iam::{a}:role/S3ReplicationRole");
                for (action, resource) in needs(a) {
                    prop_assert!(
                        after.iter().any(|s| allows(s, &arn, action, &resource)),
                        "{arn} may not {action} on {resource}: {policy}"
                    );
                }
                // Nothing beyond: not another account's keys, no delete, list or versioning.
                let other = format!("{BUCKET}/AWSLogs/900000000000/CloudTrail/forged.json.gz");
                for (action, resource) in [
                    ("s3:ReplicateObject", other.as_str()),
                    ("s3:ReplicateDelete", &format!("{BUCKET}/AWSLogs/{a}/x")),
                    ("s3:ListBucket", BUCKET),
                    ("s3:PutBucketVersioning", BUCKET),
                ] {
                    let granted = after
                        .iter()
                        .filter(|s| {
                            let sid = s["Sid"].as_str().unwrap_or_default();
                            !sid.starts_with("Other")
                        })
                        .any(|s| allows(s, &arn, action, resource));
                    prop_assert!(!granted, "{arn} may {action} on {resource}: {policy}");
                }
            }
            for s in &foreign {
                prop_assert!(after.contains(s), "{s} kept as it was: {policy}");
            }
            for s in &hand_made {
                let now = after
                    .iter()
                    .find(|n| n["Sid"] == s["Sid"])
                    .expect("a hand-made article statement stays");
                for p in listed(&s["Principal"]["AWS"]) {
                    prop_assert!(listed(&now["Principal"]["AWS"]).contains(&p), "{p} kept in {now}");
                }
            }
        }
    }

    /// What each role needs, read from the S3 User Guide's replication permissions (the archive
    /// side), not from this module: replicate objects under its own account's keys, and read
    /// the bucket's versioning.
    fn needs(account: &str) -> Vec<(&'static str, String)> {
        let own =
            format!("{BUCKET}/AWSLogs/{account}/CloudTrail/ap-northeast-1/2026/12/01/log.json.gz");
        [
            "s3:ReplicateObject",
            "s3:ReplicateTags",
            "s3:ObjectOwnerOverrideToBucketOwner",
        ]
        .into_iter()
        .map(|a| (a, own.clone()))
        .chain(std::iter::once((
            "s3:GetBucketVersioning",
            BUCKET.to_string(),
        )))
        .collect()
    }

    /// Whether an IAM resource pattern (`*` and `?` as wildcards) matches `resource`.
    fn matches(pattern: &str, resource: &str) -> bool {
        fn go(p: &[char], r: &[char]) -> bool {
            match (p.first(), r.first()) {
                (None, None) => true,
                (Some('*'), _) => go(&p[1..], r) || (!r.is_empty() && go(p, &r[1..])),
                (Some('?'), Some(_)) => go(&p[1..], &r[1..]),
                (Some(a), Some(b)) if a == b => go(&p[1..], &r[1..]),
                _ => false,
            }
        }
        let (p, r): (Vec<char>, Vec<char>) =
            (pattern.chars().collect(), resource.chars().collect());
        go(&p, &r)
    }

    /// A string or a list of strings, as IAM allows either.
    fn listed(v: &Value) -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether statement `s` allows `principal` to do `action` on `resource`, read as IAM
    /// reads it (Principal `*` or listed, Action and Resource as a string or a list, wildcards,
    /// `${aws:PrincipalAccount}` resolved to the principal's account), with no condition.
    fn allows(s: &Value, principal: &str, action: &str, resource: &str) -> bool {
        let who = s["Principal"] == json!("*")
            || listed(&s["Principal"]["AWS"])
                .iter()
                .any(|p| p == principal || p == "*");
        let account = principal.split(':').nth(4).unwrap_or_default();
        s["Effect"] == "Allow"
            && s.get("Condition").is_none()
            && who
            && listed(&s["Action"]).iter().any(|a| matches(a, action))
            && listed(&s["Resource"])
                .iter()
                .any(|r| matches(&r.replace("${aws:PrincipalAccount}", account), resource))
    }

    /// Statements of others (Sids trailhub never writes, principals of accounts `9…` that are
    /// never granted here), article statements an operator wrote by hand for other accounts
    /// (either Sid spelling, a string or a list of principals), and 1 to 8 accounts to grant,
    /// in any order.
    fn foreign_policy_and_accounts() -> impl Strategy<Value = (Vec<Value>, Vec<Value>, Vec<String>)>
    {
        let foreign_principal = prop_oneof![
            "9[0-9]{11}".prop_map(|a| json!({"AWS": format!("arn:aws:iam::{a}:role/R")})),
            prop::collection::vec("9[0-9]{11}", 1..4).prop_map(|v| json!({"AWS": v
                .iter()
                .map(|a| format!("arn:aws:iam::{a}:role/S3ReplicationRole"))
                .collect::<Vec<_>>()})),
            Just(json!({"Service": "cloudtrail.amazonaws.com"})),
        ];
        let foreign = (
            "[A-Za-z]{1,12}",
            foreign_principal,
            prop::bool::ANY,
            prop::collection::vec("s3:[A-Za-z]{3,10}", 1..4),
            prop::bool::ANY,
        )
            .prop_map(|(sid, principal, allow, actions, objects)| {
                json!({
                    "Sid": format!("Other{sid}"),
                    "Effect": if allow { "Allow" } else { "Deny" },
                    "Principal": principal,
                    "Action": actions,
                    "Resource": if objects { format!("{BUCKET}/*") } else { BUCKET.to_string() },
                })
            });
        let hand_principals = prop_oneof![
            "9[0-9]{11}".prop_map(|a| json!(format!("arn:aws:iam::{a}:role/S3ReplicationRole"))),
            prop::collection::vec("9[0-9]{11}", 1..3).prop_map(|v| json!(
                v.iter()
                    .map(|a| format!("arn:aws:iam::{a}:role/S3ReplicationRole"))
                    .collect::<Vec<_>>()
            )),
        ];
        let hand_made = (
            prop::option::of((prop::bool::ANY, hand_principals.clone())),
            prop::option::of(hand_principals),
        )
            .prop_map(|(objects, check)| {
                let mut out = Vec::new();
                if let Some((alt, who)) = objects {
                    out.push(json!({
                        "Sid": if alt { OBJECTS_SID_ALT } else { OBJECTS_SID },
                        "Effect": "Allow",
                        "Principal": {"AWS": who},
                        "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags", "s3:ObjectOwnerOverrideToBucketOwner"],
                        "Resource": format!("{BUCKET}/*"),
                    }));
                }
                if let Some(who) = check {
                    out.push(json!({
                        "Sid": CHECK_SID,
                        "Effect": "Allow",
                        "Principal": {"AWS": who},
                        "Action": ["s3:GetBucketVersioning", "s3:PutBucketVersioning", "s3:List*"],
                        "Resource": BUCKET,
                    }));
                }
                out
            });
        let foreign = prop::collection::vec(foreign, 0..5).prop_map(|mut stmts| {
            let mut seen = std::collections::BTreeSet::new();
            stmts.retain(|s| seen.insert(s["Sid"].as_str().unwrap_or_default().to_string()));
            stmts
        });
        let accounts = prop::collection::btree_set("[1-8][0-9]{11}", 1..8)
            .prop_flat_map(|set| Just(set.into_iter().collect::<Vec<_>>()).prop_shuffle());
        (foreign, hand_made, accounts)
    }
}
