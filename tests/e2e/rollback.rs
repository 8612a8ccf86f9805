//! A bad day, part two (issue 4): rolling back one account, a whole run, the steps after one
//! step, a rollback killed mid-way, and applying a rolled-back account again.

use crate::support::article::{
    archive_policy, assert_policy, assert_source, bucket_exists, principals, put_object, snapshot,
};
use crate::support::*;
use serde_json::json;
use std::time::Duration;

fn onboarded(n: usize) -> (Emulator, Trailhub, Vec<String>, std::path::PathBuf) {
    let emu = Emulator::start();
    let sources = accounts(n);
    emu.seed_sources(&sources);
    for s in &sources {
        // Log objects already in the source buckets: a rollback must never delete them.
        put_object(
            &emu,
            s,
            &source_bucket(s),
            &format!("AWSLogs/{s}/CloudTrail/log-0.json.gz"),
        );
    }
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    th.expect(&["apply", "-c", inv.to_str().unwrap()], 0);
    (emu, th, sources, inv)
}

fn assert_undone(emu: &Emulator, account: &str) {
    let snap = snapshot(emu, account);
    assert_eq!(
        snap["replication"],
        json!(null),
        "{account}: no replication rule (there was none before)"
    );
    assert_eq!(snap["role"], json!(null), "{account}: role deleted");
    assert_eq!(snap["stacks"], json!([]), "{account}: stack deleted");
    assert_eq!(
        snap["versioning"],
        json!("Suspended"),
        "{account}: versioning as close to never-enabled as S3 allows"
    );
    assert_eq!(
        snap["objects"],
        json!([format!("AWSLogs/{account}/CloudTrail/log-0.json.gz")]),
        "{account}: log objects kept"
    );
}

#[test]
fn rollback_of_one_account_leaves_the_others_exactly_as_they_were() {
    let (emu, th, sources, _) = onboarded(3);
    let target = sources[1].clone();
    let others: Vec<String> = sources.iter().filter(|s| **s != target).cloned().collect();
    // An operator's statement, and a principal someone else added, must survive.
    let mut policy = archive_policy(&emu).unwrap();
    policy["Statement"].as_array_mut().unwrap().push(json!({
        "Sid": "ReadForAuditors", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111111111111:role/Auditor"},
        "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{}/*", archive_bucket())
    }));
    let s3 = emu.s3(ARCHIVE);
    emu.rt.block_on(async {
        s3.put_bucket_policy()
            .bucket(archive_bucket())
            .policy(policy.to_string())
            .send()
            .await
            .unwrap();
    });
    let before: Vec<serde_json::Value> = others.iter().map(|s| snapshot(&emu, s)).collect();

    let (stdout, _) = th.expect(&["rollback", "--account", &target], 0);
    assert!(stdout.contains("Rollback of run"), "{stdout}");
    assert!(
        stdout.contains("versioning of") && stdout.contains("suspended"),
        "{stdout}"
    );
    assert_undone(&emu, &target);
    for (s, snap) in others.iter().zip(&before) {
        assert_eq!(&snapshot(&emu, s), snap, "{s} untouched");
    }
    let after = archive_policy(&emu).unwrap();
    let mut want: Vec<String> = others.iter().map(|a| role_arn(a)).collect();
    want.sort();
    assert_eq!(
        principals(&after, "AllowReplicationFromSourceAccount"),
        want
    );
    assert_eq!(principals(&after, "AllowReplicationPolicyCheck"), want);
    let auditors = after["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "ReadForAuditors");
    assert!(
        auditors.is_some(),
        "the unrelated statement survives: {after}"
    );
    let status = th.json(&["status"], 0);
    assert!(
        status
            .iter()
            .filter(|n| n["account"] == target.as_str() && n["type"] == "node")
            .all(|n| n["state"] == "rolled-back")
    );

    // Applied again: the stack and the role come back, and the grant is written again.
    let inv = th.write_inventory(&inventory(&sources, ""));
    emu.start_recording();
    th.expect(&["apply", "-c", inv.to_str().unwrap()], 0);
    let requests = emu.stop_recording();
    assert_source(&emu, &target);
    assert_policy(&emu, &sources);
    assert!(requests.iter().any(|r| r.account == ARCHIVE
        && r.operation.starts_with("PUT")
        && r.operation.ends_with("?policy")));
}

#[test]
fn rollback_of_a_whole_run_deletes_only_what_it_created_and_is_empty() {
    let (emu, th, sources, _) = onboarded(2);
    let (stdout, _) = th.expect(&["rollback"], 0);
    for s in &sources {
        assert_undone(&emu, s);
    }
    assert_eq!(
        archive_policy(&emu),
        None,
        "no statement left: the policy is deleted"
    );
    assert!(
        !bucket_exists(&emu, ARCHIVE, &archive_bucket()),
        "the run created the archive bucket and it was empty"
    );
    assert!(
        stdout.contains("deleted: this run created it and it was empty"),
        "{stdout}"
    );
    let runs = th.json(&["runs"], 0);
    assert_eq!(runs.last().unwrap()["status"], "rolled-back");
    let (_, stderr) = th.expect(&["resume"], 2);
    assert!(stderr.contains("start a new run"), "{stderr}");
}

#[test]
fn an_archive_bucket_holding_objects_is_kept_and_the_output_says_why() {
    let (emu, th, _, _) = onboarded(1);
    put_object(
        &emu,
        ARCHIVE,
        &archive_bucket(),
        "AWSLogs/200000000001/CloudTrail/replica.json.gz",
    );
    let (stdout, _) = th.expect(&["rollback"], 0);
    assert!(bucket_exists(&emu, ARCHIVE, &archive_bucket()));
    assert!(stdout.contains("kept: it holds objects"), "{stdout}");
}

#[test]
fn rollback_to_a_step_undoes_only_what_comes_after_it() {
    let (emu, th, sources, _) = onboarded(2);
    th.expect(&["rollback", "--to", "role-stack"], 0);
    for s in &sources {
        let snap = snapshot(&emu, s);
        assert_eq!(snap["replication"], json!(null), "{s}: replication undone");
        assert_eq!(
            snap["stacks"],
            json!(["cloudtrail-replication-role CREATE_COMPLETE"]),
            "{s}: stack kept"
        );
        assert_eq!(snap["versioning"], json!("Enabled"), "{s}: versioning kept");
    }
    assert_eq!(
        archive_policy(&emu),
        None,
        "the grants came after the role stack"
    );
    assert!(bucket_exists(&emu, ARCHIVE, &archive_bucket()));
    let (_, stderr) = th.expect(&["rollback", "--to", "nope"], 2);
    assert!(
        stderr.contains("no step `nope`") && stderr.contains("role-stack"),
        "{stderr}"
    );
}

#[test]
fn a_rollback_killed_mid_way_continues_to_the_same_end() {
    let emu = Emulator::start();
    let sources = accounts(4);
    emu.seed_sources(&sources);
    for s in &sources {
        put_object(
            &emu,
            s,
            &source_bucket(s),
            &format!("AWSLogs/{s}/CloudTrail/log-0.json.gz"),
        );
    }
    let proxy = Proxy::start(&emu.url, &["--delay-ms", "80"]);
    let th = Trailhub::with_endpoint(&proxy.url);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    th.expect(&["apply", "-c", inv.to_str().unwrap()], 0);
    let mut child = th
        .command()
        .arg("rollback")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the rollback was still going when killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let runs = th.json(&["runs"], 0);
    assert_eq!(runs.last().unwrap()["status"], "rolling-back");
    let (stdout, _) = th.expect(&["rollback"], 0);
    assert!(stdout.contains("rolled-back"), "{stdout}");
    for s in &sources {
        assert_undone(&emu, s);
    }
    assert!(!bucket_exists(&emu, ARCHIVE, &archive_bucket()));
}
