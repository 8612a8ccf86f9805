//! Fuzzes the archive bucket policy merge, `trailhub_steps::policy::{parse, add, remove,
//! missing, normalize}`, on policies built by `arbitrary`: up to 8 statements whose Sid is one of
//! the article's (`AllowReplicationFromSourceAccount`, `…Accounts`, `AllowReplicationPolicyCheck`),
//! one of least-privilege mode's (`TrailhubReplicateObjects<account>`,
//! `TrailhubVersioningCheck<account>`), another name or none; whose Principal is `"*"`,
//! `{"AWS": "*"}`, `{"AWS": string}`, `{"AWS": [..]}`, `{"Service": ..}` or both; with
//! `Statement` a list, a single object or absent. The grant is for a 12-digit account (often one
//! the policy already names, so that policies already holding the grant are tried too), in
//! article or least-privilege mode.
//!
//! Properties (`missing`, `add`, `remove` and `normalize` as documented in steps/src/policy.rs):
//! - the policy's JSON text parses back (`parse`) to the same value; nothing panics;
//! - after `add`, `missing` is empty, and a second `add` changes nothing;
//! - `add` that reports no change returns the policy as it was, and `missing` was empty already;
//! - `add` and `remove` leave every key but `Statement`, and every statement that is not
//!   trailhub's (article mode: another Sid; least-privilege: not one of the grant's two Sids)
//!   unchanged and in order; in an article statement they change only the `AWS` principal,
//!   and keep every other principal; `add` only appends statements with trailhub's Sids;
//! - after `remove`, no trailhub statement names the grant's principal (article) or has one
//!   of the grant's Sids (least-privilege), and a second `remove` changes nothing;
//!   `remove` returns a policy only with statements in it, and `None` only when every
//!   statement was trailhub's;
//! - for a grant new to the policy (the policy's text does not hold the account id): when `add`
//!   changed the policy, `remove` reports a change and gives back the original policy up to
//!   `normalize` (or `None` when the original had no statement); `remove` of the original
//!   changes nothing;
//! - `normalize` is idempotent, and ignores the order and repetition of principal and action
//!   lists, and a one-element list against its element (its doc comment's promise).
//!
//! Every property is asserted; the findings of earlier runs (fuzz/README.md, "Findings") are
//! fixed, and their reproducers are in fuzz/regressions/.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use trailhub_steps::PolicyMode;
use trailhub_steps::policy::{
    self, ACCOUNTS_SID_PREFIX, CHECK_SID, Grant, OBJECTS_SID, OBJECTS_SID_ALT, add, missing, normalize, remove,
};

const BUCKET: &str = "aggregation-cloudtrail-logs-111111111111";

fuzz_target!(|input: Input| {
    let account = input.account.render(&input.pool);
    let mode = if input.accounts {
        PolicyMode::Accounts
    } else if input.least {
        PolicyMode::LeastPrivilege
    } else {
        PolicyMode::Article
    };
    let grant = Grant {
        mode,
        bucket_arn: format!("arn:aws:s3:::{BUCKET}"),
        principal: role(&account),
        account: account.clone(),
        prefix: input.prefix.clone().unwrap_or_else(|| "AWSLogs/".into()),
    };
    let original = input.policy(&account);
    check(&original, &grant, &input.shuffle);
});

fn role(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/S3ReplicationRole")
}

fn check(original: &Value, grant: &Grant, shuffle: &[u8]) {
    // The text S3 would return parses back to the same policy.
    let text = original.to_string();
    let parsed = policy::parse(&text).expect("a JSON object is a policy");
    assert_eq!(&parsed, original);

    check_normalize(original, shuffle);

    let managed = |s: &Value| -> bool {
        let sid = s.get("Sid").and_then(Value::as_str);
        match grant.mode {
            PolicyMode::Article => {
                sid.is_some_and(|x| [OBJECTS_SID, OBJECTS_SID_ALT, CHECK_SID].contains(&x))
            }
            PolicyMode::LeastPrivilege => sid.is_some_and(|x| {
                x == format!("TrailhubReplicateObjects{}", grant.account)
                    || x == format!("TrailhubVersioningCheck{}", grant.account)
            }),
            PolicyMode::Accounts => sid.is_some_and(|x| x.starts_with(ACCOUNTS_SID_PREFIX)),
        }
    };

    // Nothing to start from: a new policy with both statements.
    let all = missing(None, grant);
    let statements_per_grant = if grant.mode == PolicyMode::Accounts { 1 } else { 2 };
    assert_eq!(all.len(), statements_per_grant, "{all:?}");
    let (fresh_policy, changed) = add(None, grant);
    assert!(changed);
    assert!(missing(Some(&fresh_policy), grant).is_empty());

    // Add.
    let missing_before = missing(Some(original), grant);
    let (merged, changed) = add(Some(original), grant);
    let still = missing(Some(&merged), grant);
    assert!(
        still.is_empty(),
        "still missing after add: {still:?}\n{merged:#}"
    );
    if !changed {
        assert_eq!(&merged, original, "add changed the policy but said not");
        assert!(
            missing_before.is_empty(),
            "add changed nothing but {missing_before:?} were missing"
        );
    }
    let (twice, changed_again) = add(Some(&merged), grant);
    assert!(!changed_again, "a second add changed the policy");
    assert_eq!(twice, merged);
    assert_only_trailhub_changed(original, &merged, grant, &managed, true);
    check_normalize(&merged, shuffle);

    // Remove, from the merged policy.
    let (back, removed) = remove(&merged, grant);
    if let Some(back) = &back {
        assert!(
            !statements(back).is_empty(),
            "Some policy with no statement"
        );
        assert_only_trailhub_changed(&merged, back, grant, &managed, false);
        for s in statements(back).into_iter().filter(|s| managed(s)) {
            match grant.mode {
                PolicyMode::Article => assert!(
                    !aws_principals(s).contains(&grant.principal.as_str()),
                    "the principal is still granted after remove: {back:#}"
                ),
                PolicyMode::LeastPrivilege => panic!("a grant statement survives remove: {s}"),
                PolicyMode::Accounts => assert!(
                    !aws_principals(s).contains(&grant.listed_principal().as_str()),
                    "the account is still granted after remove: {back:#}"
                ),
            }
        }
        let (again, removed_again) = remove(back, grant);
        assert!(!removed_again, "a second remove changed the policy");
        assert_eq!(again.as_ref().map(normalize), Some(normalize(back)));
        if grant.mode == PolicyMode::LeastPrivilege {
            assert_eq!(missing(Some(back), grant).len(), 2);
        }
    } else {
        let kept = statements(&merged)
            .into_iter()
            .filter(|s| !managed(s))
            .count();
        assert_eq!(
            kept, 0,
            "remove dropped the whole policy with other statements in it"
        );
    }

    // A grant new to the policy: remove undoes add.
    let new_grant = !text.contains(&grant.account);
    if new_grant {
        if changed {
            assert!(removed, "remove after add reported no change");
            if statements(original).is_empty() {
                assert_eq!(
                    back, None,
                    "nothing but the grant was left, yet a policy remains"
                );
            } else if !has_empty_aws(original) {
                // (S3 accepts no empty principal list, so no bucket holds such a statement:
                // trailhub removes a statement whose list it empties.)
                let back = back.unwrap_or_else(|| {
                    panic!(
                        "remove left no statement, the original had some\noriginal: {original:#}\nmerged: {merged:#}"
                    )
                });
                assert_eq!(
                    normalize(&back),
                    normalize(original),
                    "remove did not undo add\noriginal: {original:#}\nmerged: {merged:#}"
                );
            }
        } else {
            assert!(!removed, "remove took out a grant that add did not write");
        }
        let (same, removed) = remove(original, grant);
        assert!(!removed, "remove of a grant never made changed the policy");
        match same {
            Some(same) => assert_eq!(normalize(&same), normalize(original)),
            None => assert!(statements(original).is_empty()),
        }
    }
}

/// `normalize`: idempotent; a principal or action list means the same in any order, with
/// repetitions, and a one-element list means its element.
fn check_normalize(p: &Value, shuffle: &[u8]) {
    let n = normalize(p);
    assert_eq!(normalize(&n), n, "normalize is not idempotent on {p}");
    let mut q = p.clone();
    let Some(list) = q.get_mut("Statement") else {
        return;
    };
    let mut bytes = shuffle.iter().copied().cycle();
    let mut one = |v: &mut Value| {
        let Some(mut b) = bytes.next() else { return };
        // Reverse, rotate, repeat an element, or wrap a string in a one-element list.
        match v {
            Value::Array(items) if !items.is_empty() => {
                if b & 1 == 1 {
                    items.reverse();
                }
                b >>= 1;
                let k = b as usize % items.len();
                items.rotate_left(k);
                if b & 0x40 != 0 {
                    let first = items[0].clone();
                    items.push(first);
                }
            }
            Value::String(s) if b & 1 == 1 => *v = json!([s.clone()]),
            _ => {}
        }
    };
    let stmts: Vec<&mut Value> = match list {
        Value::Array(items) => items.iter_mut().collect(),
        obj @ Value::Object(_) => vec![obj],
        _ => Vec::new(),
    };
    for s in stmts {
        let Some(so) = s.as_object_mut() else {
            continue;
        };
        if let Some(a) = so.get_mut("Action") {
            one(a);
        }
        if let Some(p) = so.get_mut("Principal").and_then(Value::as_object_mut) {
            for v in p.values_mut() {
                one(v);
            }
        }
    }
    assert_eq!(
        normalize(&q),
        n,
        "the same meaning normalizes differently:\n{p}\n{q}"
    );
}

/// `after` differs from `before` only in trailhub's statements: the other keys of the policy,
/// and the other statements, in order, are the same; article statements differ only in
/// `Principal.AWS`, and keep its other entries. With `adding`, new statements are appended
/// and are trailhub's; else statements are only dropped.
fn assert_only_trailhub_changed(
    before: &Value,
    after: &Value,
    grant: &Grant,
    managed: &dyn Fn(&Value) -> bool,
    adding: bool,
) {
    let others = |p: &Value| -> Map<String, Value> {
        let mut m = p.as_object().cloned().unwrap_or_default();
        m.remove("Statement");
        m
    };
    assert_eq!(
        others(before),
        others(after),
        "keys besides Statement changed"
    );
    let b = statements(before);
    let a = statements(after);
    let not_managed = |list: &[&Value]| -> Vec<Value> {
        list.iter()
            .filter(|s| !managed(s))
            .map(|s| (*s).clone())
            .collect()
    };
    assert_eq!(
        not_managed(&b),
        not_managed(&a),
        "a statement not trailhub's changed"
    );
    if adding {
        assert!(a.len() >= b.len());
        for s in &a[b.len()..] {
            assert!(managed(s), "add appended a statement not trailhub's: {s}");
        }
        if grant.mode == PolicyMode::Article {
            for (x, y) in b.iter().zip(&a) {
                assert_same_but_aws(x, y);
                for p in aws_principals(x) {
                    assert!(aws_principals(y).contains(&p), "add dropped principal {p}");
                }
            }
        }
    } else if grant.mode == PolicyMode::Article {
        // Statements kept by remove, matched in order, differ only in Principal.AWS.
        let mut rest = b.iter();
        for y in &a {
            let x = rest
                .find(|x| x.get("Sid") == y.get("Sid") && same_but_aws(x, y))
                .unwrap_or_else(|| panic!("remove changed statement {y} beyond Principal.AWS"));
            for p in aws_principals(x) {
                if p != grant.principal {
                    assert!(
                        aws_principals(y).contains(&p),
                        "remove dropped principal {p}"
                    );
                }
            }
        }
    }
}

/// Whether a statement of `p` has `Principal.AWS` an empty list (finding 2: `remove` after
/// `add` drops that key, or the whole statement when it was the only principal).
fn has_empty_aws(p: &Value) -> bool {
    statements(p)
        .into_iter()
        .any(|s| s.get("Principal").and_then(|p| p.get("AWS")) == Some(&json!([])))
}

fn same_but_aws(x: &Value, y: &Value) -> bool {
    let strip = |s: &Value| -> Value {
        let mut s = s.clone();
        if let Some(p) = s.get_mut("Principal").and_then(Value::as_object_mut) {
            p.remove("AWS");
        }
        // `add` may create an empty Principal map before adding AWS to it.
        if s.get("Principal") == Some(&json!({})) {
            s.as_object_mut().map(|o| o.remove("Principal"));
        }
        s
    };
    strip(x) == strip(y)
}

fn assert_same_but_aws(x: &Value, y: &Value) {
    assert!(
        same_but_aws(x, y),
        "a statement changed beyond Principal.AWS:\n{x}\n{y}"
    );
}

fn statements(p: &Value) -> Vec<&Value> {
    match p.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(obj @ Value::Object(_)) => vec![obj],
        _ => Vec::new(),
    }
}

fn aws_principals(s: &Value) -> Vec<&str> {
    match s.get("Principal").and_then(|p| p.get("AWS")) {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

// ---- The input. ----

#[derive(Debug, Arbitrary)]
struct Input {
    /// Account ids the policy and the grant draw from; index 0 is the grant's when `account`
    /// is `Pool`.
    pool: [u64; 3],
    account: Account,
    least: bool,
    accounts: bool,
    prefix: Option<String>,
    shape: Shape,
    statements: Vec<Stmt>,
    id: Option<String>,
    shuffle: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
enum Account {
    Pool(u8),
    Fixed(u8),
}

const FIXED: &[&str] = &[
    "222222222222",
    "333333333333",
    "012345678901",
    "000000000000",
];

fn twelve(n: u64) -> String {
    format!("{:012}", n % 1_000_000_000_000)
}

impl Account {
    fn render(&self, pool: &[u64; 3]) -> String {
        match self {
            Account::Pool(i) => twelve(pool[*i as usize % 3]),
            Account::Fixed(i) => FIXED[*i as usize % FIXED.len()].into(),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Shape {
    List,
    /// The first statement alone, as an object.
    Single,
    Absent,
}

#[derive(Debug, Arbitrary)]
struct Stmt {
    sid: Sid,
    deny: bool,
    principal: Principal,
    actions: Vec<u8>,
    action_as_string: bool,
    resource: u8,
    condition: bool,
}

#[derive(Debug, Arbitrary)]
enum Sid {
    Objects,
    ObjectsAlt,
    Check,
    LeastObjects(Who),
    LeastCheck(Who),
    None,
    Other(String),
}

/// An account: from the pool (so possibly the grant's), or fixed.
#[derive(Debug, Arbitrary)]
enum Who {
    Pool(u8),
    Fixed(u8),
}

#[derive(Debug, Arbitrary)]
enum Principal {
    Star,
    AwsStar,
    Aws(Arn),
    AwsList(Vec<Arn>),
    Service(String),
    ServiceAndAws(Vec<Arn>),
}

#[derive(Debug, Arbitrary)]
enum Arn {
    Role(Who),
    Root(Who),
    Star,
    Other(String),
}

const ACTIONS: &[&str] = &[
    "s3:ReplicateObject",
    "s3:ReplicateDelete",
    "s3:ReplicateTags",
    "s3:ObjectOwnerOverrideToBucketOwner",
    "s3:GetBucketVersioning",
    "s3:PutBucketVersioning",
    "s3:List*",
    "s3:GetObject",
    "s3:PutObject",
    "s3:*",
];

impl Who {
    fn render(&self, input: &Input, grant_account: &str) -> String {
        match self {
            Who::Pool(i) => match *i as usize % 4 {
                0 => grant_account.to_string(),
                k => twelve(input.pool[k - 1]),
            },
            Who::Fixed(i) => FIXED[*i as usize % FIXED.len()].into(),
        }
    }
}

impl Arn {
    fn render(&self, input: &Input, acct: &str) -> Value {
        match self {
            Arn::Role(w) => Value::String(role(&w.render(input, acct))),
            Arn::Root(w) => Value::String(format!("arn:aws:iam::{}:root", w.render(input, acct))),
            Arn::Star => json!("*"),
            Arn::Other(s) => Value::String(s.clone()),
        }
    }
}

impl Input {
    fn statement(&self, s: &Stmt, acct: &str) -> Value {
        let sid = match &s.sid {
            Sid::Objects => Some(OBJECTS_SID.to_string()),
            Sid::ObjectsAlt => Some(OBJECTS_SID_ALT.to_string()),
            Sid::Check => Some(CHECK_SID.to_string()),
            Sid::LeastObjects(w) => {
                Some(format!("TrailhubReplicateObjects{}", w.render(self, acct)))
            }
            Sid::LeastCheck(w) => Some(format!("TrailhubVersioningCheck{}", w.render(self, acct))),
            Sid::None => None,
            Sid::Other(x) => Some(x.clone()),
        };
        let arns = |list: &[Arn]| -> Value {
            Value::Array(list.iter().take(6).map(|a| a.render(self, acct)).collect())
        };
        let principal = match &s.principal {
            Principal::Star => json!("*"),
            Principal::AwsStar => json!({"AWS": "*"}),
            Principal::Aws(a) => json!({"AWS": a.render(self, acct)}),
            Principal::AwsList(list) => json!({"AWS": arns(list)}),
            Principal::Service(x) => json!({"Service": x}),
            Principal::ServiceAndAws(list) => {
                json!({"Service": "cloudtrail.amazonaws.com", "AWS": arns(list)})
            }
        };
        let actions: Vec<&str> = s
            .actions
            .iter()
            .take(5)
            .map(|i| ACTIONS[*i as usize % ACTIONS.len()])
            .collect();
        let action = if s.action_as_string && actions.len() == 1 {
            json!(actions[0])
        } else {
            json!(actions)
        };
        let resource = match s.resource % 3 {
            0 => format!("arn:aws:s3:::{BUCKET}"),
            1 => format!("arn:aws:s3:::{BUCKET}/*"),
            _ => format!("arn:aws:s3:::{BUCKET}/AWSLogs/{acct}/*"),
        };
        let mut m = Map::new();
        if let Some(sid) = sid {
            m.insert("Sid".into(), json!(sid));
        }
        m.insert(
            "Effect".into(),
            json!(if s.deny { "Deny" } else { "Allow" }),
        );
        m.insert("Principal".into(), principal);
        m.insert("Action".into(), action);
        m.insert("Resource".into(), json!(resource));
        if s.condition {
            m.insert(
                "Condition".into(),
                json!({"StringEquals": {"aws:PrincipalAccount": acct}}),
            );
        }
        Value::Object(m)
    }

    fn policy(&self, acct: &str) -> Value {
        let stmts: Vec<Value> = self
            .statements
            .iter()
            .take(8)
            .map(|s| self.statement(s, acct))
            .collect();
        let mut m = Map::new();
        m.insert("Version".into(), json!("2012-10-17"));
        if let Some(id) = &self.id {
            m.insert("Id".into(), json!(id));
        }
        match self.shape {
            Shape::List => {
                m.insert("Statement".into(), Value::Array(stmts));
            }
            Shape::Single => {
                if let Some(first) = stmts.into_iter().next() {
                    m.insert("Statement".into(), first);
                }
            }
            Shape::Absent => {}
        }
        Value::Object(m)
    }
}
