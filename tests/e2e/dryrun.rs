//! Dry run, graph and history (issue 4): `plan` against live state changes nothing and says
//! what apply would do; `graph` in every format; `history` lists every mutating call.

use crate::support::*;

#[test]
fn plan_says_what_apply_would_do_and_changes_nothing() {
    let emu = Emulator::start();
    let sources = accounts(2);
    emu.seed_sources(&sources);
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    let inv = inv.to_str().unwrap();

    emu.start_recording();
    let (fresh, _) = th.expect(&["plan", "-c", inv], 0);
    let requests = emu.stop_recording();
    assert!(!requests.is_empty());
    assert!(
        requests.iter().all(|r| !r.mutating),
        "plan is read-only: {requests:?}"
    );
    assert!(fresh.contains("+ create   bucket"), "{fresh}");
    assert!(fresh.contains("Status: (absent) -> Enabled"), "{fresh}");
    assert!(
        fresh.contains("Rules[0].Destination.StorageClass: (absent) -> \"STANDARD_IA\""),
        "{fresh}"
    );
    assert!(!th.state().exists(), "plan journals nothing");

    th.expect(&["apply", "-c", inv], 0);
    let converged = th.json(&["plan", "-c", inv], 0);
    let summary = converged.last().unwrap();
    assert_eq!(summary["type"], "plan-summary");
    assert_eq!(summary["create"], 0);
    assert_eq!(summary["update"], 0);
    assert_eq!(summary["errors"], 0);

    // Drift made by hand shows as updates with the fields that differ.
    let s3 = emu.s3(&sources[0]);
    emu.rt.block_on(async {
        s3.put_bucket_versioning()
            .bucket(source_bucket(&sources[0]))
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Suspended)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
    emu.start_recording();
    let drifted = th.json(&["plan", "-c", inv], 0);
    assert!(emu.stop_recording().iter().all(|r| !r.mutating));
    let versioning = drifted
        .iter()
        .find(|p| p["node"] == format!("{}/versioning", sources[0]))
        .unwrap();
    assert_eq!(versioning["action"], "update");
    assert_eq!(versioning["changes"][0]["field"], "Status");
    assert_eq!(versioning["changes"][0]["from"], "Suspended");
    assert_eq!(versioning["changes"][0]["to"], "Enabled");
}

#[test]
fn graph_in_every_format_with_and_without_journaled_state() {
    let emu = Emulator::start();
    let sources = accounts(2);
    emu.seed_source(&sources[0]);
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    let inv = inv.to_str().unwrap();

    let (text, _) = th.expect(&["graph", "-c", inv], 0);
    let line = text
        .lines()
        .find(|l| {
            l.contains(&format!(
                "<- {0}/role-stack, {0}/versioning, archive/grant/{0}, archive/key/{0}",
                sources[0]
            ))
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.trim_start().starts_with("replication"), "{text}");
    let (dot, _) = th.expect(&["graph", "-c", inv, "--format", "dot"], 0);
    assert!(dot.starts_with("digraph trailhub {"), "{dot}");
    assert!(
        dot.contains(&format!(
            "\"archive/versioning\" -> \"archive/grant/{}\";",
            sources[0]
        )),
        "{dot}"
    );
    let (mermaid, _) = th.expect(&["graph", "-c", inv, "--format", "mermaid"], 0);
    assert!(mermaid.starts_with("flowchart LR"), "{mermaid}");

    th.expect(&["apply", "-c", inv], 1);
    let runs = th.json(&["runs"], 0);
    let run = runs[0]["run"].as_str().unwrap().to_string();
    let (colored, _) = th.expect(&["graph", "--run", &run, "--format", "dot"], 0);
    assert!(
        colored.contains("label=\"bucket-check\\nfailed\", fillcolor=\"#f4a3a3\""),
        "{colored}"
    );
    assert!(colored.contains("label=\"verify\\nblocked\""), "{colored}");
    assert!(colored.contains("label=\"bucket\\ndone\""), "{colored}");

    let (svg, _) = th.expect(&["graph", "--run", &run, "--format", "svg"], 0);
    assert!(
        svg.contains("<svg") && svg.contains("bucket&#45;check"),
        "{}",
        &svg[..svg.len().min(400)]
    );

    // Without Graphviz on PATH, svg says so clearly.
    let out = th
        .command()
        .env("PATH", "/nonexistent")
        .args(["graph", "--run", &run, "--format", "svg"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("needs Graphviz's `dot`") && stderr.contains("--format dot"),
        "{stderr}"
    );
}

#[test]
fn history_lists_every_attempt_and_mutating_call_in_order() {
    let emu = Emulator::start();
    let sources = accounts(3);
    emu.seed_sources(&sources);
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    emu.start_recording();
    th.expect(&["apply", "-c", inv.to_str().unwrap()], 0);
    let requests = emu.stop_recording();
    let events = th.json(&["history"], 0);
    let calls: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"]["type"] == "call" && e["event"]["mutating"] == true)
        .collect();
    let mutating: Vec<_> = requests.iter().filter(|r| r.mutating).collect();
    assert_eq!(
        calls.len(),
        mutating.len(),
        "every mutating request is in the history: {calls:?} vs {mutating:?}"
    );
    let count = |op: &str| {
        calls
            .iter()
            .filter(|c| c["event"]["operation"] == op)
            .count()
    };
    assert_eq!(count("CreateStack"), 3);
    assert_eq!(count("PutBucketReplication"), 3);
    assert_eq!(count("CreateBucket"), 1);
    let attempts = events
        .iter()
        .filter(|e| e["event"]["type"] == "attempt-started")
        .count();
    // The archive's five nodes (identity, bucket, versioning, retention, lifecycle), eight per source.
    assert_eq!(attempts, 5 + 8 * 3, "one attempt per node");
    let times: Vec<u64> = events
        .iter()
        .map(|e| e["at_ms"].as_u64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "in order, with times"
    );
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let (text, _) = th.expect(&["history"], 0);
    assert!(
        text.contains("aws-call")
            && text.contains("cloudformation:CreateStack cloudtrail-replication-role"),
        "{text}"
    );
}
