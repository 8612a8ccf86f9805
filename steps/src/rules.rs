//! Replication rules that are not trailhub's, on a source bucket that already replicates (a DR
//! copy, another team's rule): found, refused or kept beside trailhub's, and given back on
//! rollback.
//!
//! Facts of AWS this follows: `PutBucketReplication` replaces the whole configuration, which
//! has one IAM role for all its rules; rules with a `Filter` (the current schema) each need a
//! unique `Priority` and cannot be mixed with rules of the first schema (a rule-level `Prefix`);
//! rules with overlapping filters and different destinations each replicate, so trailhub's rule
//! beside another changes nothing of what the other copies.

use crate::replication_doc::RULE_ID;
use crate::spec::SourceSpec;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use trailhub_engine::TaskError;

/// Whether a rule ID is trailhub's: the article's rule, or one of its per-prefix rules. A rule
/// made by hand from the article has the article's ID and is adopted as trailhub's.
pub fn is_ours(id: Option<&str>) -> bool {
    id.is_some_and(|id| id == RULE_ID || id.starts_with(&format!("{RULE_ID}-")))
}

fn rules(doc: Option<&Value>) -> &[Value] {
    doc.and_then(|d| d.get("Rules"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn id(rule: &Value) -> Option<&str> {
    rule.get("ID").and_then(Value::as_str)
}

fn role(doc: Option<&Value>) -> Option<&str> {
    doc.and_then(|d| d.get("Role")).and_then(Value::as_str)
}

/// The rules of a configuration that are not trailhub's, in its order.
pub fn foreign(doc: Option<&Value>) -> Vec<&Value> {
    rules(doc).iter().filter(|r| !is_ours(id(r))).collect()
}

/// What the rules kept beside trailhub's need of the configuration's role (their destinations,
/// their replica keys, decryption of SSE-KMS objects): read from them by `S/bucket-check` when a
/// source merges, so that the role's policy grants it before the role replaces theirs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptRules {
    /// The role their configuration had.
    pub role: String,
    /// Their IDs.
    pub ids: Vec<String>,
    /// Their destination buckets' ARNs.
    pub destinations: Vec<String>,
    /// The KMS keys their replicas are encrypted with.
    pub replica_keys: Vec<String>,
    /// Whether one of them replicates SSE-KMS objects (the role must decrypt them).
    pub sse_kms: bool,
}

impl KeptRules {
    /// The needs of `doc`'s rules that are not trailhub's; `None` when there are none.
    pub fn of(doc: Option<&Value>) -> Option<KeptRules> {
        let foreign = foreign(doc);
        if foreign.is_empty() {
            return None;
        }
        let mut kept = KeptRules {
            role: role(doc).unwrap_or_default().to_string(),
            ..KeptRules::default()
        };
        let (mut destinations, mut keys) = (BTreeSet::new(), BTreeSet::new());
        for rule in foreign {
            kept.ids.push(id(rule).unwrap_or("(no ID)").to_string());
            let destination = rule.get("Destination");
            if let Some(bucket) = destination
                .and_then(|d| d.get("Bucket"))
                .and_then(Value::as_str)
            {
                destinations.insert(bucket.to_string());
            }
            if let Some(key) = destination
                .and_then(|d| d.pointer("/EncryptionConfiguration/ReplicaKmsKeyID"))
                .and_then(Value::as_str)
            {
                keys.insert(key.to_string());
            }
            kept.sse_kms |= rule
                .pointer("/SourceSelectionCriteria/SseKmsEncryptedObjects/Status")
                .and_then(Value::as_str)
                == Some("Enabled");
        }
        kept.destinations = destinations.into_iter().collect();
        kept.replica_keys = keys.into_iter().collect();
        Some(kept)
    }

    /// Whether what these rules need covers what `other`'s need (the role's policy was made
    /// from these).
    pub fn covers(&self, other: &KeptRules) -> bool {
        other
            .destinations
            .iter()
            .all(|d| self.destinations.contains(d))
            && other
                .replica_keys
                .iter()
                .all(|k| self.replica_keys.contains(k))
            && (self.sse_kms || !other.sse_kms)
    }
}

/// `ID → destination` of each rule, for messages.
fn listing(rules: &[&Value]) -> String {
    rules
        .iter()
        .map(|r| {
            let dest = r
                .pointer("/Destination/Bucket")
                .and_then(Value::as_str)
                .unwrap_or("(no destination)");
            format!("`{}` → {dest}", id(r).unwrap_or("(no ID)"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The bucket replicates elsewhere and the source does not merge: refused, naming the rules and
/// their role, as writing trailhub's configuration would delete them.
pub fn refused(source: &SourceSpec, live: Option<&Value>) -> Option<TaskError> {
    let foreign = foreign(live);
    if foreign.is_empty() {
        return None;
    }
    Some(
        TaskError::fatal(format!(
            "bucket {} in account {} already replicates with rules that are not trailhub's ({}; role {}): PutBucketReplication would replace them",
            source.bucket,
            source.account_id,
            listing(&foreign),
            role(live).unwrap_or("(none)")
        ))
        .with_code("ExistingReplication")
        .with_hint(format!(
            "set `existing_replication = \"merge\"` for source {} to keep them beside trailhub's rule (their role becomes trailhub's, granted their destinations), or remove them; then `trailhub apply`",
            source.account_id
        ))
        .standing(),
    )
}

/// Rules of the first schema (a rule-level `Prefix`, no `Filter`) cannot sit beside trailhub's.
pub fn first_schema(source: &SourceSpec, live: Option<&Value>) -> Option<TaskError> {
    let old: Vec<&Value> = foreign(live)
        .into_iter()
        .filter(|r| r.get("Filter").is_none() || r.get("Priority").is_none())
        .collect();
    if old.is_empty() {
        return None;
    }
    Some(
        TaskError::fatal(format!(
            "bucket {} in account {} has replication rules of the first schema ({}: a rule-level Prefix, no Filter or Priority), which S3 does not let sit beside rules with a Filter",
            source.bucket,
            source.account_id,
            listing(&old)
        ))
        .with_code("ExistingReplication")
        .with_hint("give each a `Filter` and a `Priority` (aws s3api put-bucket-replication), then `trailhub apply`")
        .standing(),
    )
}

/// trailhub's configuration `ours` merged into `live`: the rules that are not trailhub's kept as
/// they are, first; trailhub's after them, each keeping the priority it has live unless another
/// rule took it, else the smallest free one.
pub fn merge(ours: &Value, live: Option<&Value>) -> Value {
    let foreign = foreign(live);
    let mut taken: BTreeSet<i64> = foreign
        .iter()
        .filter_map(|r| r.get("Priority").and_then(Value::as_i64))
        .collect();
    let live_priority: BTreeMap<&str, i64> = rules(live)
        .iter()
        .filter(|r| is_ours(id(r)))
        .filter_map(|r| Some((id(r)?, r.get("Priority").and_then(Value::as_i64)?)))
        .collect();
    let mut merged: Vec<Value> = foreign.into_iter().cloned().collect();
    for rule in rules(Some(ours)) {
        let mut rule = rule.clone();
        let priority = match id(&rule).and_then(|i| live_priority.get(i)) {
            Some(p) if !taken.contains(p) => *p,
            _ => (1..).find(|p| !taken.contains(p)).unwrap_or(1),
        };
        taken.insert(priority);
        rule["Priority"] = json!(priority);
        merged.push(rule);
    }
    json!({"Role": ours.get("Role").cloned().unwrap_or(Value::Null), "Rules": merged})
}

/// The part of a configuration trailhub compares when it merges: the role and trailhub's rules,
/// in ID order.
pub fn ours_view(doc: &Value) -> Value {
    let mut ours: Vec<Value> = rules(Some(doc))
        .iter()
        .filter(|r| is_ours(id(r)))
        .cloned()
        .collect();
    ours.sort_by(|a, b| id(a).cmp(&id(b)));
    json!({"Role": doc.get("Role").cloned().unwrap_or(Value::Null), "Rules": ours})
}

/// What rollback does to the configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum Restore {
    /// Nothing to do.
    Keep,
    /// Put this configuration.
    Put(Value),
    /// Delete the configuration (no rule is left).
    Delete,
}

/// What rollback puts back, from the configuration found before (`previous`), the one live now,
/// the rules trailhub wrote and its role: each rule trailhub wrote is removed by its ID, and only
/// if it is still what trailhub wrote (a rule of the same ID found before takes its place); a
/// rule trailhub's apply replaced (an earlier trailhub rule of another prefix) comes back; every
/// other rule live, including rules added since, stays; the role found before comes back if the
/// role is still trailhub's. The notes say what was kept and why.
pub fn restore(
    previous: Option<&Value>,
    live: Option<&Value>,
    wrote: &[Value],
    our_role: &str,
) -> (Restore, Vec<String>) {
    let mut notes = Vec::new();
    let Some(live_doc) = live else {
        return (Restore::Keep, notes);
    };
    let written: BTreeMap<&str, &Value> = wrote.iter().filter_map(|r| Some((id(r)?, r))).collect();
    let before: BTreeMap<&str, &Value> = rules(previous)
        .iter()
        .filter_map(|r| Some((id(r)?, r)))
        .collect();
    let live_ids: BTreeSet<&str> = rules(live).iter().filter_map(id).collect();
    let mut out: Vec<Value> = Vec::new();
    for rule in rules(live) {
        let Some(rid) = id(rule) else {
            out.push(rule.clone());
            continue;
        };
        match written.get(rid) {
            None => out.push(rule.clone()),
            Some(w) if *w == rule => out.extend(before.get(rid).map(|r| (*r).clone())),
            Some(_) => {
                notes.push(format!(
                    "rule `{rid}` was changed since trailhub wrote it: kept as it is"
                ));
                out.push(rule.clone());
            }
        }
    }
    // Rules trailhub's apply replaced: earlier trailhub rules of another prefix.
    for (rid, rule) in &before {
        if is_ours(Some(rid)) && !written.contains_key(rid) && !live_ids.contains(rid) {
            out.push((*rule).clone());
        }
    }
    let live_role = role(live).unwrap_or_default();
    let new_role = match role(previous) {
        Some(before) if live_role == our_role => before.to_string(),
        _ => {
            if live_role != our_role {
                notes.push(format!(
                    "the configuration's role is {live_role}, not trailhub's: kept"
                ));
            }
            live_role.to_string()
        }
    };
    if out.is_empty() {
        return (Restore::Delete, notes);
    }
    if previous.is_none() && live_role == our_role {
        notes.push(format!(
            "rules added since trailhub's were kept; they use trailhub's role {our_role}, which rolling back the role stack deletes"
        ));
    }
    let doc = json!({"Role": new_role, "Rules": out});
    if Some(&doc) == live {
        return (Restore::Keep, notes);
    }
    // The live document may list the same rules in another order: compare as sets.
    if same_doc(&doc, live_doc) {
        return (Restore::Keep, notes);
    }
    (Restore::Put(doc), notes)
}

fn same_doc(a: &Value, b: &Value) -> bool {
    let sorted = |d: &Value| {
        let mut r: Vec<Value> = rules(Some(d)).to_vec();
        r.sort_by_key(|x| x.to_string());
        (d.get("Role").cloned(), r)
    };
    sorted(a) == sorted(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, priority: i64, dest: &str) -> Value {
        json!({"ID": id, "Priority": priority, "Status": "Enabled", "Filter": {"Prefix": ""},
               "Destination": {"Bucket": format!("arn:aws:s3:::{dest}")},
               "DeleteMarkerReplication": {"Status": "Disabled"}})
    }

    fn dr() -> Value {
        json!({"Role": "arn:aws:iam::2:role/dr", "Rules": [rule("dr-copy", 1, "dr-bucket")]})
    }

    fn ours() -> Value {
        json!({"Role": "arn:aws:iam::2:role/S3ReplicationRole",
               "Rules": [rule(RULE_ID, 1, "archive")]})
    }

    #[test]
    fn trailhubs_rules_are_the_articles_ids() {
        assert!(is_ours(Some(RULE_ID)));
        assert!(is_ours(Some("ReplicateCloudTrailLogs-org")));
        assert!(!is_ours(Some("ReplicateCloudTrailLogsX")));
        assert!(!is_ours(None));
    }

    #[test]
    fn a_foreign_rule_is_refused_by_default_naming_it_and_its_role() {
        let source = crate::spec::SourceSpec::example();
        let err = refused(&source, Some(&dr())).expect("refused");
        assert!(
            err.message.contains("`dr-copy` → arn:aws:s3:::dr-bucket"),
            "{err:?}"
        );
        assert!(
            err.message.contains("role arn:aws:iam::2:role/dr"),
            "{err:?}"
        );
        assert!(refused(&source, Some(&ours())).is_none());
        assert!(refused(&source, None).is_none());
    }

    #[test]
    fn merging_keeps_their_rules_and_gives_ours_a_free_priority() {
        let merged = merge(&ours(), Some(&dr()));
        assert_eq!(merged["Role"], "arn:aws:iam::2:role/S3ReplicationRole");
        assert_eq!(merged["Rules"][0], rule("dr-copy", 1, "dr-bucket"));
        assert_eq!(merged["Rules"][1]["ID"], RULE_ID);
        assert_eq!(merged["Rules"][1]["Priority"], 2);
        // Merging again over the merged configuration changes nothing.
        assert_eq!(merge(&ours(), Some(&merged)), merged);
        assert_eq!(
            ours_view(&merged),
            ours_view(&json!({
            "Role": "arn:aws:iam::2:role/S3ReplicationRole",
            "Rules": [merged["Rules"][1].clone()]}))
        );
        let kept = KeptRules::of(Some(&merged)).expect("a foreign rule");
        assert_eq!(kept.destinations, ["arn:aws:s3:::dr-bucket"]);
        assert_eq!(kept.role, "arn:aws:iam::2:role/S3ReplicationRole");
        assert!(kept.covers(&KeptRules::of(Some(&dr())).expect("dr")));
    }

    #[test]
    fn rollback_removes_our_rule_and_gives_their_role_back() {
        let merged = merge(&ours(), Some(&dr()));
        let wrote = vec![merged["Rules"][1].clone()];
        let role = "arn:aws:iam::2:role/S3ReplicationRole";
        let (r, notes) = restore(Some(&dr()), Some(&merged), &wrote, role);
        assert_eq!(r, Restore::Put(dr()));
        assert!(notes.is_empty(), "{notes:?}");
        // A rule added since stays.
        let mut later = merged.clone();
        later["Rules"]
            .as_array_mut()
            .expect("rules")
            .push(rule("later", 9, "other"));
        let (r, _) = restore(Some(&dr()), Some(&later), &wrote, role);
        let Restore::Put(doc) = r else {
            panic!("expected a put, got {r:?}")
        };
        assert_eq!(doc["Role"], "arn:aws:iam::2:role/dr");
        let ids: Vec<&str> = rules(Some(&doc)).iter().filter_map(id).collect();
        assert_eq!(ids, ["dr-copy", "later"]);
    }

    #[test]
    fn a_rule_changed_since_is_kept_and_none_found_before_means_delete() {
        let role = "arn:aws:iam::2:role/S3ReplicationRole";
        let wrote = vec![rule(RULE_ID, 1, "archive")];
        assert_eq!(
            restore(None, Some(&ours()), &wrote, role).0,
            Restore::Delete
        );
        let mut changed = ours();
        changed["Rules"][0]["Status"] = json!("Disabled");
        let (r, notes) = restore(None, Some(&changed), &wrote, role);
        assert_eq!(r, Restore::Keep);
        assert!(
            notes[0].contains("changed since trailhub wrote it"),
            "{notes:?}"
        );
        assert_eq!(restore(None, None, &wrote, role).0, Restore::Keep);
    }

    #[test]
    fn an_adopted_article_rule_comes_back_as_it_was() {
        let before = json!({"Role": "arn:aws:iam::2:role/ByHand",
                            "Rules": [rule(RULE_ID, 1, "archive-by-hand")]});
        let wrote = vec![rule(RULE_ID, 1, "archive")];
        let role = "arn:aws:iam::2:role/S3ReplicationRole";
        assert_eq!(
            restore(Some(&before), Some(&ours()), &wrote, role).0,
            Restore::Put(before.clone())
        );
    }
}
