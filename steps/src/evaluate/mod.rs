//! An IAM policy evaluator, written from AWS's documentation, for the delivery check: whether
//! S3, acting as a replication role, would be allowed each request replication makes. Reads
//! policy documents already fetched; makes no AWS request and decides nothing else.
//!
//! What it follows ("Policy evaluation logic", "Cross-account policy evaluation logic",
//! "Policy evaluation for requests within a single account" in the IAM User Guide; "Key
//! policies in AWS KMS" and "Default key policy" in the KMS Developer Guide):
//!
//! - an explicit `Deny` in any policy that applies wins;
//! - within one account, an `Allow` in the identity policies *or* in the resource policy is
//!   enough; across accounts both must allow;
//! - a KMS key policy is required: without a statement admitting the caller nothing else
//!   counts; a statement admitting the key's account (`arn:aws:iam::ACCT:root`) delegates to
//!   that account's IAM policies, which must then allow too;
//! - Principal/NotPrincipal, Action/NotAction (wildcards, case-insensitive),
//!   Resource/NotResource (wildcards), policy variables (Version `2012-10-17` only), and the
//!   condition operators of [`statement`]'s table, with `…IfExists`, `Null`,
//!   `ForAnyValue:`/`ForAllValues:`, several values OR'ed, several keys and operators AND'ed,
//!   key names case-insensitive.
//!
//! What it does not know it says: an operator it does not implement (dates, IP addresses,
//! binary), a condition key the request it was given does not define (present or known to be
//! absent), a malformed statement: the decision is [`Decision::Unknown`] naming it, never
//! `Allow`. An unknown `Allow` statement only matters where nothing else allows; an unknown
//! `Deny` statement only where something allows.
//!
//! Not seen here, and so not claimed: service control and resource control policies,
//! permission boundaries, session policies, KMS grants (see the README's "honest scope").
//!
//! Why not the `iam-rs` crate (0.8.0, evaluated for issue 20): its condition operators,
//! NotPrincipal/NotAction and variables hold up, and an unknown operator fails the policy's
//! parse; but it evaluates one flat set of policies into one decision, with no identity versus
//! resource policy, so neither the cross-account rule ("both must allow") nor a KMS key policy
//! that delegates to the account root can be expressed; its result names a statement's
//! outcome only as a fixed string ("Conditions not satisfied"), not which condition key
//! failed, which the check must tell the operator; and a condition key absent from the request
//! is simply absent, so a key it was never told about silently evaluates as missing instead of
//! unknown. Wrapping it would have meant re-deriving all three around it.

mod statement;
#[cfg(test)]
mod tests;

use serde_json::Value;
use statement::{Matched, Via, matches, statement_name};
use std::collections::{BTreeMap, BTreeSet};

/// Who makes the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A session of an IAM role (S3 replicating as the rule's role).
    Role {
        /// `arn:<partition>:iam::<account>:role/<path><name>`.
        arn: String,
        /// `arn:<partition>:sts::<account>:assumed-role/<name>/<session>`.
        session: String,
        /// The role's account.
        account: String,
        /// `aws`, `aws-cn`, …
        partition: String,
    },
    /// An AWS service principal (`s3.amazonaws.com` assuming the role).
    Service(String),
}

/// One request, with its context keys (names case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `s3:ReplicateObject`, `kms:Encrypt`, …
    pub action: String,
    /// The resource's ARN.
    pub resource: String,
    /// Who asks.
    pub principal: Principal,
    context: BTreeMap<String, Vec<String>>,
    absent: BTreeSet<String>,
}

/// Condition keys that no request this check models carries: a role session has no
/// `aws:username` (IAM User Guide, "AWS global condition context keys": only IAM users), and
/// S3 replicates inside AWS, not from a VPC.
const ALWAYS_ABSENT: [&str; 3] = ["aws:username", "aws:sourcevpc", "aws:sourcevpce"];

impl Request {
    /// A request with no context keys yet.
    pub fn new(action: &str, resource: &str, principal: Principal) -> Request {
        Request {
            action: action.to_string(),
            resource: resource.to_string(),
            principal,
            context: BTreeMap::new(),
            absent: BTreeSet::new(),
        }
    }

    /// Adds a single-valued context key.
    pub fn with(mut self, key: &str, value: &str) -> Request {
        self.context
            .insert(key.to_ascii_lowercase(), vec![value.to_string()]);
        self
    }

    /// Adds a multivalued context key.
    pub fn with_list(mut self, key: &str, values: &[&str]) -> Request {
        self.context.insert(
            key.to_ascii_lowercase(),
            values.iter().map(|v| v.to_string()).collect(),
        );
        self
    }

    /// Declares a key this request is known not to carry (a condition on it is then decided
    /// as AWS decides a missing key, not unknown).
    pub fn without(mut self, key: &str) -> Request {
        self.absent.insert(key.to_ascii_lowercase());
        self
    }

    /// The values of `key`: `Ok(None)` when the request is known not to carry it, `Err` when
    /// the evaluator was told nothing about it.
    pub(crate) fn value(&self, key: &str) -> Result<Option<Vec<String>>, String> {
        let key = key.to_ascii_lowercase();
        if let Some(v) = self.context.get(&key) {
            return Ok(Some(v.clone()));
        }
        // The encryption context is known whole: any other of its keys is absent.
        let whole_context = key.starts_with("kms:encryptioncontext:")
            && self.context.contains_key("kms:encryptioncontextkeys");
        if whole_context || self.absent.contains(&key) || ALWAYS_ABSENT.contains(&key.as_str()) {
            return Ok(None);
        }
        Err(format!("condition key {key}"))
    }
}

/// A policy document as read, with the name a person knows it by.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// `archive bucket X policy`, `role S3ReplicationRole inline policy P`, …
    pub name: String,
    /// The JSON document.
    pub document: Value,
}

impl Policy {
    /// A named policy.
    pub fn new(name: impl Into<String>, document: Value) -> Policy {
        Policy {
            name: name.into(),
            document,
        }
    }
}

/// Which service decides, which changes how a resource policy combines with identity policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// S3 (a bucket policy is a resource policy like any other).
    S3,
    /// KMS (the key policy is required; its account root delegates to IAM).
    Kms,
    /// STS `AssumeRole` by a service: the role's trust policy alone decides.
    Trust,
}

/// The resource side of a request.
#[derive(Debug, Clone, Copy)]
pub struct Resource<'a> {
    /// Its policy (bucket, key or trust policy), when it has one.
    pub policy: Option<&'a Policy>,
    /// The account that owns it.
    pub account: &'a str,
    /// The service deciding.
    pub service: Service,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The policy to change.
    pub policy: String,
    /// The statement (Sid, or `#index`) that denies, or that comes closest to allowing.
    pub statement: Option<String>,
    /// The condition that did not hold (or, for an explicit deny, the one that did).
    pub condition: Option<String>,
    /// An explicit `Deny` (rather than no `Allow`).
    pub explicit: bool,
    /// What happened, in a sentence fragment.
    pub why: String,
}

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Refused, and why.
    Deny(Denial),
    /// Decided by something the evaluator does not know (named).
    Unknown {
        /// What it does not know, e.g. `condition operator DateLessThan in archive bucket … policy`.
        what: String,
    },
}

fn statements(document: &Value) -> Vec<&Value> {
    match document.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => Vec::new(),
    }
}

/// The closest an `Allow` statement came to applying, for the refusal's explanation: a
/// failed condition is closer than a resource, a resource than an action, an action than a
/// principal.
fn closeness(m: &Matched) -> u8 {
    match m {
        Matched::Condition(_) => 3,
        Matched::Resource(_) => 2,
        Matched::Action => 1,
        _ => 0,
    }
}

#[derive(Default)]
struct Side {
    direct: bool,
    account: bool,
    unknown: Option<String>,
    closest: Option<(u8, String, String, Matched)>,
}

#[derive(Default)]
struct Denies {
    explicit: Option<Denial>,
    unknown: Option<String>,
}

fn scan(
    policy: &Policy,
    request: &Request,
    resource_policy: bool,
    side: &mut Side,
    denies: &mut Denies,
) {
    let variables = policy.document.get("Version").and_then(Value::as_str) == Some("2012-10-17");
    for (i, st) in statements(&policy.document).into_iter().enumerate() {
        let m = matches(st, request, resource_policy, variables);
        let name = statement_name(st, i);
        match st.get("Effect").and_then(Value::as_str) {
            Some("Deny") => match m {
                Matched::Applies(_) if denies.explicit.is_none() => {
                    denies.explicit = Some(Denial {
                        policy: policy.name.clone(),
                        statement: Some(name),
                        condition: st.get("Condition").map(|c| c.to_string()),
                        explicit: true,
                        why: format!("an explicit Deny of {}", request.action),
                    });
                }
                Matched::Unknown(what) => {
                    denies
                        .unknown
                        .get_or_insert(format!("{what} in {} statement {name}", policy.name));
                }
                _ => {}
            },
            Some("Allow") => match m {
                Matched::Applies(Via::Direct) => side.direct = true,
                Matched::Applies(Via::Account) => side.account = true,
                Matched::Unknown(what) => {
                    side.unknown
                        .get_or_insert(format!("{what} in {} statement {name}", policy.name));
                }
                other => {
                    let c = closeness(&other);
                    if side.closest.as_ref().is_none_or(|(best, ..)| c > *best) {
                        side.closest = Some((c, policy.name.clone(), name, other));
                    }
                }
            },
            _ => {
                side.unknown.get_or_insert(format!(
                    "statement {name} of {} has no Effect Allow or Deny",
                    policy.name
                ));
            }
        }
    }
}

/// The refusal when `side` allows nothing, named after its closest statement.
fn missing(side: &Side, fallback_policy: &str, request: &Request, what: &str) -> Denial {
    // A statement that does not even name the principal is no statement to blame.
    let closest = side.closest.as_ref().filter(|(rank, ..)| *rank > 0);
    let Some((_, policy, statement, m)) = closest else {
        return Denial {
            policy: fallback_policy.to_string(),
            statement: None,
            condition: None,
            explicit: false,
            why: format!("no statement allows {} ({what})", request.action),
        };
    };
    let (condition, why) = match m {
        Matched::Condition(c) => (
            Some(c.clone()),
            format!("its condition does not hold ({what})"),
        ),
        Matched::Resource(r) => (None, format!("{r} ({what})")),
        Matched::Action => (
            None,
            format!("it does not name {} ({what})", request.action),
        ),
        _ => (None, format!("it does not name the principal ({what})")),
    };
    Denial {
        policy: policy.clone(),
        statement: Some(statement.clone()),
        condition,
        explicit: false,
        why,
    }
}

/// Decides `request` against the principal's identity policies and the resource's policy, as
/// AWS's policy evaluation logic does for the policies given.
pub fn evaluate(request: &Request, identity: &[Policy], resource: Resource<'_>) -> Decision {
    let mut denies = Denies::default();
    let mut id = Side::default();
    let mut res = Side::default();
    if resource.service != Service::Trust {
        for p in identity {
            scan(p, request, false, &mut id, &mut denies);
        }
    }
    if let Some(p) = resource.policy {
        scan(p, request, true, &mut res, &mut denies);
    }
    if let Some(d) = denies.explicit {
        return Decision::Deny(d);
    }
    let caller_account = match &request.principal {
        Principal::Role { account, .. } => Some(account.as_str()),
        Principal::Service(_) => None,
    };
    let same_account = caller_account == Some(resource.account);
    let identity_allows = id.direct;
    let resource_name = resource
        .policy
        .map(|p| p.name.clone())
        .unwrap_or_else(|| "the resource policy (none)".into());
    let identity_name = identity
        .first()
        .map(|p| p.name.clone())
        .unwrap_or_else(|| "the role's policies (none)".into());
    // Which side must still allow, when the request is not allowed.
    let refusal: Option<(&Side, String, &str)> = match resource.service {
        Service::Trust => (!res.direct).then_some((
            &res,
            resource_name,
            "the trust policy must admit the service",
        )),
        Service::Kms if !res.direct && !res.account => Some((
            &res,
            resource_name,
            "a key policy must admit the caller or its account",
        )),
        Service::Kms if !identity_allows && (res.account || !same_account) => Some((
            &id,
            identity_name,
            "the key policy leaves it to the account's IAM policies",
        )),
        Service::Kms => None,
        Service::S3 if same_account => (!identity_allows && !res.direct).then(|| {
            if res.closest.as_ref().map(|c| c.0) > id.closest.as_ref().map(|c| c.0) {
                (
                    &res,
                    resource_name,
                    "neither the identity nor the resource policy allows it",
                )
            } else {
                (
                    &id,
                    identity_name,
                    "neither the identity nor the resource policy allows it",
                )
            }
        }),
        Service::S3 if !identity_allows => Some((
            &id,
            identity_name,
            "across accounts the identity policy must allow it",
        )),
        Service::S3 => (!res.direct && !res.account).then_some((
            &res,
            resource_name,
            "across accounts the resource policy must allow it",
        )),
    };
    match refusal {
        None => match denies.unknown {
            Some(what) => Decision::Unknown { what },
            None => Decision::Allow,
        },
        Some((side, name, what)) => match &side.unknown {
            Some(u) => Decision::Unknown { what: u.clone() },
            None => Decision::Deny(missing(side, &name, request, what)),
        },
    }
}
