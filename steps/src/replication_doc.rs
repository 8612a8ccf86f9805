//! The replication configuration as JSON in the AWS CLI's shape (the article's document), to and
//! from the SDK's types, so that what is live, what is desired and what is journaled compare
//! exactly.

use crate::errors::{classify, service_code};
use crate::logs::SourceLogs;
use crate::spec::{Setting, SourceSpec};
use crate::tasks::{StepContext, call};
use aws_sdk_s3::types::{
    AccessControlTranslation, DeleteMarkerReplication, DeleteMarkerReplicationStatus, Destination,
    EncryptionConfiguration, ExistingObjectReplication, ExistingObjectReplicationStatus, Metrics,
    MetricsStatus, OwnerOverride, ReplicaModifications, ReplicaModificationsStatus,
    ReplicationConfiguration, ReplicationRule, ReplicationRuleAndOperator, ReplicationRuleFilter,
    ReplicationRuleStatus, ReplicationTime, ReplicationTimeStatus, ReplicationTimeValue,
    SourceSelectionCriteria, SseKmsEncryptedObjects, SseKmsEncryptedObjectsStatus, StorageClass,
    Tag,
};
use serde_json::{Map, Value, json};
use trailhub_engine::TaskError;

/// The ID of the article's rule (the rule of the `AWSLogs/` prefix).
pub const RULE_ID: &str = "ReplicateCloudTrailLogs";

/// The ID of the rule replicating `prefix`: the article's for `AWSLogs/`, else the article's
/// followed by the prefix's letters, digits and dashes (an ID holds at most 255 characters).
pub fn rule_id(prefix: &str) -> String {
    if prefix == "AWSLogs/" {
        return RULE_ID.to_string();
    }
    let name: String = prefix
        .trim_end_matches("AWSLogs/")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let id = format!("{RULE_ID}-{}", name.trim_matches('-'));
    id.chars().take(255).collect()
}

/// The configuration for `source`, replicating each prefix its trails write under to the
/// archive with `role_arn`: the article's rule per prefix, filtered on the account's own keys
/// under it (`<prefix><account>/`, where the article's `AWSLogs/` let a member's bucket offer any
/// account's keys), opted in to SSE-KMS objects (their replicas encrypted with `replica_key`)
/// when the logs are SSE-KMS.
pub fn desired(
    setting: &Setting,
    source: &SourceSpec,
    logs: &SourceLogs,
    role_arn: &str,
    replica_key: Option<&str>,
) -> Value {
    let mut ids = std::collections::BTreeSet::new();
    let rules: Vec<Value> = logs
        .prefixes
        .iter()
        .enumerate()
        .map(|(i, prefix)| {
            let mut id = rule_id(prefix);
            if !ids.insert(id.clone()) {
                id = format!("{id}-{}", i + 1);
            }
            rule(setting, source, logs, prefix, id, i + 1, replica_key)
        })
        .collect();
    json!({ "Role": role_arn, "Rules": rules })
}

fn rule(
    setting: &Setting,
    source: &SourceSpec,
    logs: &SourceLogs,
    prefix: &str,
    id: String,
    priority: usize,
    replica_key: Option<&str>,
) -> Value {
    let mut destination = json!({
        "Bucket": setting.bucket_arn(&setting.archive.bucket),
        "Account": setting.archive.account_id,
        "StorageClass": source.storage_class,
        "AccessControlTranslation": {"Owner": "Destination"},
    });
    if source.replication_time_control {
        destination["ReplicationTime"] = json!({"Status": "Enabled", "Time": {"Minutes": 15}});
        destination["Metrics"] = json!({"Status": "Enabled", "EventThreshold": {"Minutes": 15}});
    }
    let mut rule = json!({
        "ID": id,
        "Priority": priority,
        "Status": "Enabled",
        "Filter": {"Prefix": format!("{prefix}{}/", source.account_id)},
        "Destination": destination,
        "DeleteMarkerReplication": {"Status": "Disabled"},
    });
    if logs.kms() {
        rule["SourceSelectionCriteria"] = json!({"SseKmsEncryptedObjects": {"Status": "Enabled"}});
        rule["Destination"]["EncryptionConfiguration"] = json!({
            "ReplicaKmsKeyID": replica_key.unwrap_or("(the archive key, once made)")
        });
    }
    rule
}

fn put(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        map.insert(key.to_string(), v);
    }
}

fn tag_json(t: &Tag) -> Value {
    json!({"Key": t.key(), "Value": t.value()})
}

fn minutes(v: Option<&ReplicationTimeValue>) -> Option<Value> {
    v.map(|t| {
        let mut m = Map::new();
        put(&mut m, "Minutes", t.minutes().map(Value::from));
        Value::Object(m)
    })
}

/// The configuration as JSON.
pub fn to_json(config: &ReplicationConfiguration) -> Value {
    let rules: Vec<Value> = config.rules().iter().map(rule_json).collect();
    json!({"Role": config.role(), "Rules": rules})
}

fn rule_json(rule: &ReplicationRule) -> Value {
    let mut m = Map::new();
    put(&mut m, "ID", rule.id().map(Value::from));
    put(&mut m, "Priority", rule.priority().map(Value::from));
    m.insert("Status".into(), Value::from(rule.status().as_str()));
    put(&mut m, "Prefix", rule_prefix(rule).map(Value::from));
    put(&mut m, "Filter", rule.filter().map(filter_json));
    put(
        &mut m,
        "SourceSelectionCriteria",
        rule.source_selection_criteria().map(selection_json),
    );
    put(
        &mut m,
        "ExistingObjectReplication",
        rule.existing_object_replication()
            .map(|e| json!({"Status": e.status().as_str()})),
    );
    put(
        &mut m,
        "Destination",
        rule.destination().map(destination_json),
    );
    put(
        &mut m,
        "DeleteMarkerReplication",
        rule.delete_marker_replication().map(|d| {
            let mut dm = Map::new();
            put(
                &mut dm,
                "Status",
                d.status().map(|s| Value::from(s.as_str())),
            );
            Value::Object(dm)
        }),
    );
    Value::Object(m)
}

fn filter_json(f: &ReplicationRuleFilter) -> Value {
    let mut fm = Map::new();
    put(&mut fm, "Prefix", f.prefix().map(Value::from));
    put(&mut fm, "Tag", f.tag().map(tag_json));
    put(
        &mut fm,
        "And",
        f.and().map(|a| {
            let mut am = Map::new();
            put(&mut am, "Prefix", a.prefix().map(Value::from));
            if !a.tags().is_empty() {
                am.insert("Tags".into(), a.tags().iter().map(tag_json).collect());
            }
            Value::Object(am)
        }),
    );
    Value::Object(fm)
}

fn selection_json(s: &SourceSelectionCriteria) -> Value {
    let mut sm = Map::new();
    put(
        &mut sm,
        "SseKmsEncryptedObjects",
        s.sse_kms_encrypted_objects()
            .map(|o| json!({"Status": o.status().as_str()})),
    );
    put(
        &mut sm,
        "ReplicaModifications",
        s.replica_modifications()
            .map(|o| json!({"Status": o.status().as_str()})),
    );
    Value::Object(sm)
}

fn destination_json(d: &Destination) -> Value {
    let mut dm = Map::new();
    dm.insert("Bucket".into(), Value::from(d.bucket()));
    put(&mut dm, "Account", d.account().map(Value::from));
    put(
        &mut dm,
        "StorageClass",
        d.storage_class().map(|s| Value::from(s.as_str())),
    );
    put(
        &mut dm,
        "AccessControlTranslation",
        d.access_control_translation()
            .map(|a| json!({"Owner": a.owner().as_str()})),
    );
    put(
        &mut dm,
        "EncryptionConfiguration",
        d.encryption_configuration().map(|e| {
            let mut em = Map::new();
            put(
                &mut em,
                "ReplicaKmsKeyID",
                e.replica_kms_key_id().map(Value::from),
            );
            Value::Object(em)
        }),
    );
    put(
        &mut dm,
        "ReplicationTime",
        d.replication_time().map(|r| {
            let mut rm = Map::new();
            rm.insert("Status".into(), Value::from(r.status().as_str()));
            put(&mut rm, "Time", minutes(r.time()));
            Value::Object(rm)
        }),
    );
    put(
        &mut dm,
        "Metrics",
        d.metrics().map(|r| {
            let mut rm = Map::new();
            rm.insert("Status".into(), Value::from(r.status().as_str()));
            put(&mut rm, "EventThreshold", minutes(r.event_threshold()));
            Value::Object(rm)
        }),
    );
    Value::Object(dm)
}

#[expect(
    deprecated,
    reason = "a configuration found live may use the rule-level prefix"
)]
fn rule_prefix(rule: &ReplicationRule) -> Option<&str> {
    rule.prefix()
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn tag_from(v: &Value) -> Result<Tag, String> {
    Tag::builder()
        .key(s(v, "Key").unwrap_or_default())
        .value(s(v, "Value").unwrap_or_default())
        .build()
        .map_err(|e| e.to_string())
}

fn minutes_from(v: Option<&Value>) -> Option<ReplicationTimeValue> {
    v.map(|t| {
        ReplicationTimeValue::builder()
            .set_minutes(t.get("Minutes").and_then(Value::as_i64).map(|m| m as i32))
            .build()
    })
}

/// The SDK's configuration from JSON (a journaled or desired document).
pub fn from_json(v: &Value) -> Result<ReplicationConfiguration, String> {
    let mut builder = ReplicationConfiguration::builder().role(s(v, "Role").unwrap_or_default());
    for r in v
        .get("Rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        builder = builder.rules(rule_from(r)?);
    }
    builder.build().map_err(|e| e.to_string())
}

fn rule_from(r: &Value) -> Result<ReplicationRule, String> {
    let mut b = ReplicationRule::builder()
        .set_id(s(r, "ID").map(str::to_string))
        .set_priority(r.get("Priority").and_then(Value::as_i64).map(|p| p as i32))
        .status(ReplicationRuleStatus::from(
            s(r, "Status").unwrap_or("Enabled"),
        ));
    #[expect(
        deprecated,
        reason = "a configuration found live may use the rule-level prefix"
    )]
    {
        b = b.set_prefix(s(r, "Prefix").map(str::to_string));
    }
    if let Some(f) = r.get("Filter") {
        b = b.filter(filter_from(f)?);
    }
    if let Some(sc) = r.get("SourceSelectionCriteria") {
        b = b.source_selection_criteria(selection_from(sc)?);
    }
    if let Some(status) = r
        .get("ExistingObjectReplication")
        .and_then(|o| s(o, "Status"))
    {
        b = b.existing_object_replication(
            ExistingObjectReplication::builder()
                .status(ExistingObjectReplicationStatus::from(status))
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    if let Some(d) = r.get("Destination") {
        b = b.destination(destination_from(d)?);
    }
    if let Some(dm) = r.get("DeleteMarkerReplication") {
        b = b.delete_marker_replication(
            DeleteMarkerReplication::builder()
                .set_status(s(dm, "Status").map(DeleteMarkerReplicationStatus::from))
                .build(),
        );
    }
    b.build().map_err(|e| e.to_string())
}

fn filter_from(f: &Value) -> Result<ReplicationRuleFilter, String> {
    let mut fb = ReplicationRuleFilter::builder().set_prefix(s(f, "Prefix").map(str::to_string));
    if let Some(t) = f.get("Tag") {
        fb = fb.tag(tag_from(t)?);
    }
    if let Some(a) = f.get("And") {
        let mut ab =
            ReplicationRuleAndOperator::builder().set_prefix(s(a, "Prefix").map(str::to_string));
        for t in a
            .get("Tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            ab = ab.tags(tag_from(t)?);
        }
        fb = fb.and(ab.build());
    }
    Ok(fb.build())
}

fn selection_from(sc: &Value) -> Result<SourceSelectionCriteria, String> {
    let mut sb = SourceSelectionCriteria::builder();
    if let Some(status) = sc
        .get("SseKmsEncryptedObjects")
        .and_then(|o| s(o, "Status"))
    {
        sb = sb.sse_kms_encrypted_objects(
            SseKmsEncryptedObjects::builder()
                .status(SseKmsEncryptedObjectsStatus::from(status))
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    if let Some(status) = sc.get("ReplicaModifications").and_then(|o| s(o, "Status")) {
        sb = sb.replica_modifications(
            ReplicaModifications::builder()
                .status(ReplicaModificationsStatus::from(status))
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(sb.build())
}

fn destination_from(d: &Value) -> Result<Destination, String> {
    let mut db = Destination::builder()
        .bucket(s(d, "Bucket").unwrap_or_default())
        .set_account(s(d, "Account").map(str::to_string))
        .set_storage_class(s(d, "StorageClass").map(StorageClass::from));
    if let Some(owner) = d
        .get("AccessControlTranslation")
        .and_then(|a| s(a, "Owner"))
    {
        db = db.access_control_translation(
            AccessControlTranslation::builder()
                .owner(OwnerOverride::from(owner))
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    if let Some(e) = d.get("EncryptionConfiguration") {
        db = db.encryption_configuration(
            EncryptionConfiguration::builder()
                .set_replica_kms_key_id(s(e, "ReplicaKmsKeyID").map(str::to_string))
                .build(),
        );
    }
    if let Some(rt) = d.get("ReplicationTime") {
        db = db.replication_time(
            ReplicationTime::builder()
                .status(ReplicationTimeStatus::from(
                    s(rt, "Status").unwrap_or("Enabled"),
                ))
                .set_time(minutes_from(rt.get("Time")))
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    if let Some(m) = d.get("Metrics") {
        db = db.metrics(
            Metrics::builder()
                .status(MetricsStatus::from(s(m, "Status").unwrap_or("Enabled")))
                .set_event_threshold(minutes_from(m.get("EventThreshold")))
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    db.build().map_err(|e| e.to_string())
}

/// Every field that differs between two JSON documents, as `(path, from, to)`.
pub fn diff(from: Option<&Value>, to: &Value) -> Vec<(String, Option<String>, String)> {
    let mut out = Vec::new();
    walk("", from, Some(to), &mut out);
    out
}

fn walk(
    path: &str,
    a: Option<&Value>,
    b: Option<&Value>,
    out: &mut Vec<(String, Option<String>, String)>,
) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    let empty = Map::new();
    // An absent side counts as an empty object or list, so that a whole new document is
    // listed field by field.
    fn object<'v>(
        v: Option<&'v Value>,
        empty: &'v Map<String, Value>,
    ) -> Option<&'v Map<String, Value>> {
        match v {
            Some(Value::Object(m)) => Some(m),
            None => Some(empty),
            _ => None,
        }
    }
    let either_object = matches!(a, Some(Value::Object(_))) || matches!(b, Some(Value::Object(_)));
    if either_object && let (Some(x), Some(y)) = (object(a, &empty), object(b, &empty)) {
        let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            walk(&join(k), x.get(k), y.get(k), out);
        }
        return;
    }
    match (a, b) {
        (Some(Value::Array(x)), Some(Value::Array(y))) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                walk(&format!("{path}[{i}]"), Some(p), Some(q), out);
            }
        }
        (None, Some(Value::Array(y))) => {
            for (i, q) in y.iter().enumerate() {
                walk(&format!("{path}[{i}]"), None, Some(q), out);
            }
        }
        (x, y) if x != y => out.push((
            path.to_string(),
            x.map(Value::to_string),
            y.map(Value::to_string).unwrap_or_else(|| "(absent)".into()),
        )),
        _ => {}
    }
}

/// The bucket's replication configuration as JSON, `None` when it has none.
pub(crate) async fn live(
    ctx: &StepContext,
    source: &SourceSpec,
) -> Result<Option<Value>, TaskError> {
    let s3 = ctx.s3_for(&source.account_id, &source.bucket).await?;
    let result = call(
        &source.account_id,
        "s3",
        "GetBucketReplication",
        &source.bucket,
        s3.get_bucket_replication()
            .bucket(&source.bucket)
            .expected_bucket_owner(&source.account_id)
            .send(),
    )
    .await;
    let read = match result {
        Ok(out) => Ok(out.replication_configuration().map(to_json)),
        Err(e) if service_code(&e) == Some("ReplicationConfigurationNotFoundError") => Ok(None),
        Err(e) => Err(classify("GetBucketReplication", &source.bucket, e, &[])),
    };
    if let Ok(config) = &read {
        ctx.documents.replication(&source.bucket, config.as_ref());
    }
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_articles_document_round_trips_through_the_sdk() {
        let setting = Setting::example();
        let source = SourceSpec::example();
        let logs = SourceLogs {
            bucket: source.bucket.clone(),
            encryption: "AES256".into(),
            trail: None,
            region: None,
            prefixes: vec!["AWSLogs/".into()],
            trails: vec![],
            kms_keys: vec![],
            bucket_key: false,
            kept: None,
        };
        let doc = desired(
            &setting,
            &source,
            &logs,
            "arn:aws:iam::222222222222:role/S3ReplicationRole",
            None,
        );
        let article: Value = serde_json::from_str(
            r#"{"Role": "arn:aws:iam::222222222222:role/S3ReplicationRole",
    "Rules": [{"ID": "ReplicateCloudTrailLogs", "Priority": 1, "Status": "Enabled",
      "Filter": {"Prefix": "AWSLogs/222222222222/"},
      "Destination": {"Bucket": "arn:aws:s3:::aggregation-cloudtrail-logs-111111111111",
        "Account": "111111111111", "StorageClass": "STANDARD_IA",
        "AccessControlTranslation": {"Owner": "Destination"},
        "ReplicationTime": {"Status": "Enabled", "Time": {"Minutes": 15}},
        "Metrics": {"Status": "Enabled", "EventThreshold": {"Minutes": 15}}},
      "DeleteMarkerReplication": {"Status": "Disabled"}}]}"#,
        )
        .expect("json");
        assert_eq!(doc, article);
        let sdk = from_json(&doc).expect("builds");
        let kms_logs = SourceLogs {
            prefixes: vec!["AWSLogs/".into(), "org/AWSLogs/".into()],
            kms_keys: vec!["arn:aws:kms:ap-northeast-1:222222222222:key/k".into()],
            ..logs.clone()
        };
        let replica = "arn:aws:kms:ap-northeast-1:111111111111:key/a";
        let two = desired(&setting, &source, &kms_logs, "arn:role", Some(replica));
        assert_eq!(two["Rules"][1]["ID"], "ReplicateCloudTrailLogs-org");
        assert_eq!(two["Rules"][1]["Priority"], 2);
        assert_eq!(
            two["Rules"][1]["Filter"]["Prefix"], "org/AWSLogs/222222222222/",
            "the account's own keys under the prefix"
        );
        assert_eq!(
            two["Rules"][0]["SourceSelectionCriteria"]["SseKmsEncryptedObjects"]["Status"],
            "Enabled"
        );
        assert_eq!(
            two["Rules"][0]["Destination"]["EncryptionConfiguration"]["ReplicaKmsKeyID"],
            replica
        );
        assert_eq!(to_json(&from_json(&two).expect("builds")), two);
        assert_eq!(to_json(&sdk), doc);
        let mut changed = doc.clone();
        changed["Rules"][0]["Status"] = json!("Disabled");
        let d = diff(Some(&doc), &changed);
        assert_eq!(
            d,
            vec![(
                "Rules[0].Status".into(),
                Some("\"Enabled\"".into()),
                "\"Disabled\"".into()
            )]
        );
    }
}
