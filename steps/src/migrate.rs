//! The steps' part of migrating a journal of an older format: their undo records and outputs,
//! rewritten in the shapes this release reads. Idempotent: a record already in the new shape is
//! left as it is.

use crate::logs::SourceLogs;
use crate::spec::SourceSpec;
use crate::tasks::RoleStackUndo;
use serde_json::Value;
use trailhub_engine::{NodeId, NodeRecord, NodeState};

/// Rewrites node `id`'s record written in format `from` (1: the first release).
///
/// - Format 1 did not journal whether an apply changed something; a node done with an undo
///   record did change something (the record is written just before the first change), so it is
///   counted as changed: what comes after it reads its resource again rather than trust a read
///   that this release did not make.
/// - The role stack's undo record of format 1 was told apart by which keys it had; it is now
///   tagged (see [`RoleStackUndo`]).
/// - Bucket-check's outputs of format 1 said nothing of where the logs are: format 1 checked that
///   they were SSE-S3 and replicated the inventory's prefix (`AWSLogs/` by default) in the
///   inventory's region, which is what they now say (`source`: the node's source, `region`: the
///   inventory's).
pub fn node(
    from: u32,
    id: &NodeId,
    record: &mut NodeRecord,
    source: Option<&SourceSpec>,
    region: &str,
) -> Result<(), String> {
    if from >= 2 {
        return Ok(());
    }
    if id.step() == "bucket-check"
        && let (Some(outputs), Some(source)) = (&record.outputs, source)
    {
        record.outputs = Some(logs_v1(outputs, source, region)?);
    }
    if record.state == NodeState::Done && record.undo.is_some() {
        record.changed = true;
    }
    if id.step() == "role-stack"
        && let Some(undo) = &record.undo
    {
        record.undo = Some(role_stack_undo(undo)?);
    }
    Ok(())
}

/// A role stack undo record of format 1, in this format.
fn role_stack_undo(undo: &Value) -> Result<Value, String> {
    if serde_json::from_value::<RoleStackUndo>(undo.clone()).is_ok() {
        return Ok(undo.clone());
    }
    let migrated = match undo.get("existed").and_then(Value::as_bool) {
        Some(false) => RoleStackUndo::Created { stack_id: None },
        Some(true) if undo.get("role_inline").is_some() || undo.get("role_trust").is_some() => {
            RoleStackUndo::RoleDocuments {
                inline: non_null(&undo["role_inline"]),
                trust: non_null(&undo["role_trust"]),
            }
        }
        Some(true) => RoleStackUndo::Template {
            template: undo["template"].as_str().map(str::to_string),
            parameters: undo["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string())))
                .collect(),
        },
        None => return Err(format!("unknown role-stack undo record {undo}")),
    };
    serde_json::to_value(migrated).map_err(|e| e.to_string())
}

/// Bucket-check's outputs of format 1 (`bucket`, `encryption`, `trail`), in this format.
fn logs_v1(outputs: &Value, source: &SourceSpec, region: &str) -> Result<Value, String> {
    let mut logs: SourceLogs = serde_json::from_value(outputs.clone())
        .map_err(|e| format!("bucket-check outputs: {e}"))?;
    if logs.prefixes.is_empty() {
        logs.prefixes = vec![source.prefix.clone().unwrap_or_else(|| "AWSLogs/".into())];
    }
    logs.region.get_or_insert_with(|| region.to_string());
    serde_json::to_value(logs).map_err(|e| e.to_string())
}

fn non_null(v: &Value) -> Option<Value> {
    (!v.is_null()).then(|| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn migrated(undo: Value) -> RoleStackUndo {
        let mut record = NodeRecord::pending();
        record.state = NodeState::Done;
        record.undo = Some(undo);
        let id = NodeId::new("222222222222", "role-stack");
        node(1, &id, &mut record, None, "ap-northeast-1").expect("migrates");
        assert!(
            record.changed,
            "a done node with an undo record changed something"
        );
        let once = record.undo.clone();
        node(1, &id, &mut record, None, "ap-northeast-1").expect("again");
        assert_eq!(record.undo, once, "migrating twice changes nothing more");
        serde_json::from_value(record.undo.expect("undo")).expect("the new shape")
    }

    #[test]
    fn every_role_stack_undo_shape_of_format_1_is_migrated() {
        assert_eq!(
            migrated(json!({ "existed": false })),
            RoleStackUndo::Created { stack_id: None }
        );
        assert_eq!(
            migrated(json!({
                "existed": true,
                "template": "{\"Resources\": {}}",
                "parameters": [["DestinationAccountId", "111111111111"]],
            })),
            RoleStackUndo::Template {
                template: Some("{\"Resources\": {}}".into()),
                parameters: vec![("DestinationAccountId".into(), "111111111111".into())],
            }
        );
        assert_eq!(
            migrated(
                json!({ "existed": true, "role_inline": { "Version": "1" }, "role_trust": null })
            ),
            RoleStackUndo::RoleDocuments {
                inline: Some(json!({ "Version": "1" })),
                trust: None,
            }
        );
    }

    #[test]
    fn an_unknown_shape_is_an_error_not_a_guess() {
        let mut record = NodeRecord::pending();
        record.undo = Some(json!({ "something": "else" }));
        let err =
            node(1, &NodeId::new("2", "role-stack"), &mut record, None, "r").expect_err("refused");
        assert!(err.contains("unknown role-stack undo record"), "{err}");
    }
}
