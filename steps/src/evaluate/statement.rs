//! One statement against one request: Principal/NotPrincipal, Action/NotAction,
//! Resource/NotResource and Condition, with policy variables. Says how far a statement matched,
//! so a refusal can name the condition that did not hold. Decides nothing across statements.

use super::{Principal, Request};
use serde_json::Value;

/// How far a statement matched a request, the order in which AWS's elements narrow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Matched {
    /// Every element matched: the statement applies.
    Applies(Via),
    /// The principal is not one the statement names.
    Principal,
    /// The action is not one it names.
    Action,
    /// The resource is not one it names (`detail` says which resources it names).
    Resource(String),
    /// A condition did not hold (`detail` names operator, key, values and the request's value).
    Condition(String),
    /// Something the evaluator does not know decides it (an operator, a key, a variable).
    Unknown(String),
}

/// How a statement's principal admitted the requester.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// By its own ARN, a session ARN, a service name or `*` (or an identity policy, which
    /// has no principal).
    Direct,
    /// By its account (`arn:aws:iam::ACCT:root` or the bare id): the account delegates to its
    /// IAM policies (IAM User Guide, "AWS JSON policy elements: Principal", AWS account
    /// principals; KMS Developer Guide, "Default key policy": "allows access to the AWS account
    /// and enables IAM policies").
    Account,
}

/// The statement's `Sid`, or its index when it has none (`#2`).
pub(crate) fn statement_name(statement: &Value, index: usize) -> String {
    match statement.get("Sid").and_then(Value::as_str) {
        Some(sid) if !sid.is_empty() => sid.to_string(),
        _ => format!("#{index}"),
    }
}

fn strings(value: Option<&Value>) -> Option<Vec<String>> {
    match value? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(list) => Some(
            list.iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Bool(b) => Some(b.to_string()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect(),
        ),
        Value::Bool(b) => Some(vec![b.to_string()]),
        Value::Number(n) => Some(vec![n.to_string()]),
        _ => None,
    }
}

/// `*` and `?` wildcards, as in Action, Resource, `StringLike` and `ArnLike`.
pub(crate) fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// `ArnLike`: each of the six colon-separated parts matched on its own, so a `*` in the
/// account part never spans into the resource ("Amazon Resource Name (ARN) condition
/// operators").
fn arn_like(pattern: &str, arn: &str) -> bool {
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    p.len() == 6 && a.len() == 6 && p.iter().zip(&a).all(|(p, a)| wildcard(p, a))
}

/// A value with its policy variables replaced from the request (Version 2012-10-17 only;
/// earlier versions read `${…}` as text, "IAM policy elements: Variables and tags"). `Ok(None)`:
/// a variable names a key the request does not have and no default, so the value matches
/// nothing. `Err`: a key the evaluator does not know.
fn substitute(text: &str, request: &Request, variables: bool) -> Result<Option<String>, String> {
    if !variables || !text.contains("${") {
        return Ok(Some(text.to_string()));
    }
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return Ok(Some(out));
        };
        let inner = &rest[start + 2..start + end];
        rest = &rest[start + end + 1..];
        match inner {
            "*" | "?" | "$" => out.push_str(inner),
            _ => {
                let (key, default) = match inner.split_once(',') {
                    Some((k, d)) => (k.trim(), Some(d.trim().trim_matches('\'').to_string())),
                    None => (inner.trim(), None),
                };
                match request.value(key)? {
                    Some(values) if values.len() == 1 => out.push_str(&values[0]),
                    // A multivalued key cannot stand in one string.
                    Some(_) => return Ok(None),
                    None => match default {
                        Some(d) => out.push_str(&d),
                        None => return Ok(None),
                    },
                }
            }
        }
    }
    out.push_str(rest);
    Ok(Some(out))
}

/// The principal ARNs and ids a policy's `Principal` value may name for `principal`, and how
/// each admits it.
fn principal_matches(element: &Value, principal: &Principal) -> Option<Via> {
    if element.as_str() == Some("*") {
        return Some(Via::Direct);
    }
    let map = element.as_object()?;
    match principal {
        Principal::Role {
            arn,
            session,
            account,
            partition,
        } => {
            let names = strings(map.get("AWS"))?;
            let root = format!("arn:{partition}:iam::{account}:root");
            let mut via = None;
            for name in names {
                if name == "*" || &name == arn || &name == session {
                    return Some(Via::Direct);
                }
                if name == root || &name == account {
                    via = Some(Via::Account);
                }
            }
            via
        }
        Principal::Service(service) => {
            let names = strings(map.get("Service"))?;
            names
                .iter()
                .any(|n| n == service)
                .then_some(Via::Direct)
                .or_else(|| {
                    strings(map.get("AWS"))
                        .filter(|a| a.iter().any(|n| n == "*"))
                        .map(|_| Via::Direct)
                })
        }
    }
}

/// Matches `statement` of a policy against `request`. `resource_policy`: whether the policy is
/// attached to the resource (and so must name a principal) or to the identity (and must not).
pub(crate) fn matches(
    statement: &Value,
    request: &Request,
    resource_policy: bool,
    variables: bool,
) -> Matched {
    let via = if resource_policy {
        match (statement.get("Principal"), statement.get("NotPrincipal")) {
            (Some(p), None) => match principal_matches(p, &request.principal) {
                Some(via) => via,
                None => return Matched::Principal,
            },
            // NotPrincipal: every principal but the ones named; a role session is named by its
            // role, its session or its account ("AWS JSON policy elements: NotPrincipal").
            (None, Some(np)) => match principal_matches(np, &request.principal) {
                Some(_) => return Matched::Principal,
                None => Via::Direct,
            },
            _ => return Matched::Principal,
        }
    } else {
        Via::Direct
    };
    let action = |list: Vec<String>| {
        list.iter().any(|a| {
            wildcard(
                &a.to_ascii_lowercase(),
                &request.action.to_ascii_lowercase(),
            )
        })
    };
    let action_ok = match (
        strings(statement.get("Action")),
        strings(statement.get("NotAction")),
    ) {
        (Some(list), None) => action(list),
        (None, Some(list)) => !action(list),
        _ => false,
    };
    if !action_ok {
        return Matched::Action;
    }
    let resource = |list: &[String]| -> Result<bool, String> {
        for r in list {
            if let Some(r) = substitute(r, request, variables)?
                && wildcard(&r, &request.resource)
            {
                return Ok(true);
            }
        }
        Ok(false)
    };
    let (listed, negated) = match (
        strings(statement.get("Resource")),
        strings(statement.get("NotResource")),
    ) {
        (Some(list), None) => (list, false),
        (None, Some(list)) => (list, true),
        // A role's trust policy names no resource: the role it is attached to is the resource
        // ("IAM JSON policy elements: Resource": not in trust policies).
        (None, None) if request.action.to_ascii_lowercase().starts_with("sts:") => {
            (vec!["*".into()], false)
        }
        _ => return Matched::Resource("no Resource".into()),
    };
    match resource(&listed) {
        Err(what) => return Matched::Unknown(what),
        Ok(hit) if hit == negated => {
            let element = if negated { "NotResource" } else { "Resource" };
            return Matched::Resource(format!(
                "{} is not in its {element} {}",
                request.resource,
                listed.join(", ")
            ));
        }
        Ok(_) => {}
    }
    match statement.get("Condition") {
        None => Matched::Applies(via),
        Some(Value::Object(block)) => {
            for (operator, keys) in block {
                let Some(keys) = keys.as_object() else {
                    return Matched::Unknown(format!("condition {operator} is not an object"));
                };
                for (key, values) in keys {
                    let wanted = strings(Some(values)).unwrap_or_default();
                    match condition(operator, key, &wanted, request, variables) {
                        Ok(true) => {}
                        Ok(false) => {
                            let found = match request.value(key) {
                                Ok(Some(v)) => v.join(", "),
                                _ => "none".into(),
                            };
                            return Matched::Condition(format!(
                                "{operator} {key} {} (the request's: {found})",
                                wanted.join(", ")
                            ));
                        }
                        Err(what) => return Matched::Unknown(what),
                    }
                }
            }
            Matched::Applies(via)
        }
        Some(_) => Matched::Unknown("a Condition that is not an object".into()),
    }
}

/// The comparison of one base operator, negated ones given as their positive form.
#[derive(Debug, Clone, Copy)]
enum Compare {
    StringEquals,
    StringEqualsIgnoreCase,
    StringLike,
    ArnEquals,
    ArnLike,
    Bool,
    Numeric(fn(f64, f64) -> bool),
}

/// The base operator's comparison and whether it is negated; `None`: an operator this
/// evaluator does not know (dates, IP addresses, binary): the result is unknown.
fn base_operator(name: &str) -> Option<(Compare, bool)> {
    Some(match name {
        "StringEquals" => (Compare::StringEquals, false),
        "StringNotEquals" => (Compare::StringEquals, true),
        "StringEqualsIgnoreCase" => (Compare::StringEqualsIgnoreCase, false),
        "StringNotEqualsIgnoreCase" => (Compare::StringEqualsIgnoreCase, true),
        "StringLike" => (Compare::StringLike, false),
        "StringNotLike" => (Compare::StringLike, true),
        "ArnEquals" => (Compare::ArnEquals, false),
        "ArnNotEquals" => (Compare::ArnEquals, true),
        "ArnLike" => (Compare::ArnLike, false),
        "ArnNotLike" => (Compare::ArnLike, true),
        "Bool" => (Compare::Bool, false),
        "NumericEquals" => (Compare::Numeric(|a, b| a == b), false),
        "NumericNotEquals" => (Compare::Numeric(|a, b| a == b), true),
        "NumericLessThan" => (Compare::Numeric(|a, b| a < b), false),
        "NumericLessThanEquals" => (Compare::Numeric(|a, b| a <= b), false),
        "NumericGreaterThan" => (Compare::Numeric(|a, b| a > b), false),
        "NumericGreaterThanEquals" => (Compare::Numeric(|a, b| a >= b), false),
        _ => return None,
    })
}

fn compare(how: Compare, request_value: &str, policy_value: &str) -> bool {
    match how {
        Compare::StringEquals | Compare::ArnEquals => request_value == policy_value,
        Compare::StringEqualsIgnoreCase => request_value.eq_ignore_ascii_case(policy_value),
        Compare::StringLike => wildcard(policy_value, request_value),
        Compare::ArnLike => arn_like(policy_value, request_value),
        Compare::Bool => request_value.eq_ignore_ascii_case(policy_value),
        Compare::Numeric(f) => match (request_value.parse(), policy_value.parse()) {
            (Ok(a), Ok(b)) => f(a, b),
            _ => false,
        },
    }
}

/// One condition key under one operator: values OR (negated operators: none of them),
/// `ForAnyValue`/`ForAllValues` over a multivalued key, `…IfExists`, `Null` ("IAM JSON policy
/// elements: Condition operators"; "Condition operators for multivalued context keys").
fn condition(
    operator: &str,
    key: &str,
    wanted: &[String],
    request: &Request,
    variables: bool,
) -> Result<bool, String> {
    let (set, rest) = match operator.split_once(':') {
        Some((q @ ("ForAnyValue" | "ForAllValues"), rest)) => (Some(q), rest),
        Some(_) => return Err(format!("condition operator {operator}")),
        None => (None, operator),
    };
    let found = request.value(key)?;
    if rest == "Null" {
        let absent = found.as_ref().is_none_or(Vec::is_empty);
        return Ok(wanted.iter().any(|w| w.eq_ignore_ascii_case("true")) == absent);
    }
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(b) => (b, true),
        None => (rest, false),
    };
    let Some((how, negated)) = base_operator(base) else {
        return Err(format!("condition operator {operator}"));
    };
    let mut policy = Vec::new();
    for w in wanted {
        let substituted = match how {
            Compare::StringEquals
            | Compare::StringEqualsIgnoreCase
            | Compare::StringLike
            | Compare::ArnEquals
            | Compare::ArnLike => substitute(w, request, variables)?,
            _ => Some(w.clone()),
        };
        policy.extend(substituted);
    }
    let one = |v: &str| {
        let hit = policy.iter().any(|p| compare(how, v, p));
        hit != negated
    };
    let values = match found {
        Some(v) if !v.is_empty() => v,
        _ => {
            return Ok(match set {
                Some("ForAllValues") => true,
                Some(_) => false,
                None => if_exists || negated,
            });
        }
    };
    Ok(match set {
        Some("ForAllValues") => values.iter().all(|v| one(v)),
        // A single-valued operator on a multivalued key reads as ForAnyValue; a negated one
        // holds only if no value matches.
        Some(_) => values.iter().any(|v| one(v)),
        None if negated => values.iter().all(|v| one(v)),
        None => values.iter().any(|v| one(v)),
    })
}
