//! A bad day, part two (issue 4): rolling back one account, a whole run, the steps after one
//! step, a rollback killed mid-way, and applying a rolled-back account again. And across runs
//! ("never touch what isn't ours", item 3): a run is not undone under a later run that changed
//! it again, unless forced; `rollback --account` undoes an account across every run, newest
//! first, and stops at the first run whose part fails.

use crate::support::article::{
    archive_policy, assert_policy, assert_source, bucket_exists, principals, put_object, snapshot,
};
use crate::support::*;
use serde_json::json;

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
fn rollback_of_one_account_to_a_step_undoes_only_what_came_after_it_there() {
    // The README's bad day: `trailhub rollback --account 222222222222 --to role-stack`.
    let (emu, th, sources, _) = onboarded(2);
    let (a, b) = (&sources[0], &sources[1]);
    let before_b = snapshot(&emu, b);
    th.expect(&["rollback", "--account", a, "--to", "role-stack"], 0);

    let snap = snapshot(&emu, a);
    assert_eq!(snap["replication"], json!(null), "{a}: replication undone");
    assert_eq!(
        snap["stacks"],
        json!(["cloudtrail-replication-role CREATE_COMPLETE"]),
        "{a}: the stack is kept"
    );
    assert!(snap["role"] != json!(null), "{a}: its role is kept");
    assert_eq!(snap["versioning"], json!("Enabled"), "{a}: versioning kept");
    assert_eq!(snapshot(&emu, b), before_b, "{b} untouched");
    let policy = archive_policy(&emu).expect("b's grant keeps the policy");
    for sid in [
        "AllowReplicationFromSourceAccount",
        "AllowReplicationPolicyCheck",
    ] {
        assert_eq!(
            principals(&policy, sid),
            [role_arn(b)],
            "{a}'s grant undone in {sid}"
        );
    }
    assert!(bucket_exists(&emu, ARCHIVE, &archive_bucket()));
    let nodes = th.json(&["status"], 0);
    let state = |account: &str, step: &str| {
        nodes
            .iter()
            .find(|n| n["type"] == "node" && n["account"] == account && n["step"] == step)
            .map(|n| n["state"].as_str().unwrap().to_string())
            .unwrap()
    };
    for step in ["identity", "bucket-check", "versioning", "role-stack"] {
        assert_eq!(state(a, step), "done", "{a}/{step}");
    }
    for step in ["grant", "replication", "verify"] {
        assert_eq!(state(a, step), "rolled-back", "{a}/{step}");
        assert_eq!(state(b, step), "done", "{b}/{step}");
    }

    // Applied again, the account gets back what came after its stack.
    let inv = th.write_inventory(&inventory(&sources, ""));
    th.expect(&["apply", "-c", inv.to_str().unwrap()], 0);
    assert_source(&emu, a);
    assert_policy(&emu, &sources);
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
    let log = tempfile::NamedTempFile::new().unwrap();
    let proxy = Proxy::start(
        &emu.url,
        &["--delay-ms", "80", "--log", log.path().to_str().unwrap()],
    );
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
    // Killed once the rollback has deleted its first replication configuration: the rules come
    // first (they depend on everything else), so the stacks and grants are still to undo.
    wait_for_action(log.path(), "DELETE ?replication", 1);
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

/// The ids of the journal's runs, oldest first.
fn run_ids(th: &Trailhub) -> Vec<String> {
    th.json(&["runs"], 0)
        .iter()
        .filter(|l| l["type"] == "run")
        .map(|l| l["run"].as_str().unwrap().to_string())
        .collect()
}

/// The journaled state of every node of `run` for `account`'s steps, by node id.
fn states(th: &Trailhub, run: &str, account: &str) -> Vec<(String, String)> {
    th.json(&["status", run], 0)
        .iter()
        .filter(|l| l["type"] == "node" && l["account"] == account)
        .map(|l| {
            (
                l["node"].as_str().unwrap().to_string(),
                l["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `sources` applied (run 1); the first one's replication rule deleted by hand, so that a second
/// apply (run 2) puts it back: run 2 changed it again, and relies on everything else run 1 did.
fn applied_twice(n: usize) -> (Emulator, Trailhub, Vec<String>, String, String) {
    let (emu, th, sources, inv) = onboarded(n);
    let s3 = emu.s3(&sources[0]);
    emu.rt.block_on(async {
        s3.delete_bucket_replication()
            .bucket(source_bucket(&sources[0]))
            .send()
            .await
            .unwrap();
    });
    th.expect(&["apply", "-c", inv.to_str().unwrap()], 0);
    assert_source(&emu, &sources[0]);
    let runs = run_ids(&th);
    assert_eq!(runs.len(), 2, "{runs:?}");
    (emu, th, sources, runs[0].clone(), runs[1].clone())
}

#[test]
fn a_run_is_not_undone_under_a_later_one_and_an_account_is_undone_across_runs() {
    let (emu, th, sources, run1, run2) = applied_twice(2);
    let (a, b) = (&sources[0], &sources[1]);
    let before = (snapshot(&emu, a), snapshot(&emu, b), archive_policy(&emu));

    emu.start_recording();
    let (_, stderr) = th.expect(&["rollback", &run1], 2);
    let requests = emu.stop_recording();
    assert!(
        requests.is_empty(),
        "refused before any request: {requests:?}"
    );
    for needle in [
        format!("refusing to roll back run {run1}"),
        format!("run {run2} changed again: {a}/replication"),
        format!("run {run2} relies on: "),
        format!("`trailhub rollback {run2}`"),
        format!("`trailhub rollback --account {a} --account {b}`"),
        format!("`trailhub rollback {run1} --force`"),
        "nothing was changed".to_string(),
    ] {
        assert!(stderr.contains(&needle), "{needle:?} not in:\n{stderr}");
    }
    let (_, stderr) = th.expect(&["rollback", &run1, "--account", b], 2);
    assert!(
        stderr.contains(&format!("run {run2} relies on: {b}/")),
        "run 2 found B as run 1 left it and relies on it: {stderr}"
    );
    assert_eq!(
        (snapshot(&emu, a), snapshot(&emu, b), archive_policy(&emu)),
        before,
        "nothing changed"
    );
    for account in [a, b] {
        assert!(
            states(&th, &run1, account).iter().all(|(_, s)| s == "done"),
            "run 1 journaled nothing"
        );
    }

    let (stdout, stderr) = th.expect(&["rollback", "--account", a], 0);
    assert!(
        stderr.contains(&format!(
            "{a}: rolling back 2 runs, newest first: {run2}, {run1}"
        )),
        "{stderr}"
    );
    let second = stdout.find(&format!("Rollback of run {run2} ({a})"));
    let first = stdout.find(&format!("Rollback of run {run1} ({a})"));
    assert!(
        matches!((second, first), (Some(x), Some(y)) if x < y),
        "run 2, then run 1, each with its summary: {stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{a} rolled back across 2 runs, newest first: {run2}, {run1}."
        )),
        "{stdout}"
    );
    assert_undone(&emu, a);
    let policy = archive_policy(&emu).unwrap();
    for sid in [
        "AllowReplicationFromSourceAccount",
        "AllowReplicationPolicyCheck",
    ] {
        assert_eq!(principals(&policy, sid), [role_arn(b)], "{sid}: {policy}");
    }
    assert_eq!(snapshot(&emu, b), before.1, "B untouched");
    for run in [&run1, &run2] {
        assert!(
            states(&th, run, a)
                .iter()
                .all(|(_, s)| s == "rolled-back" || s == "pending"),
            "{run}: every step of A is rolled back"
        );
        assert!(
            states(&th, run, b).iter().all(|(_, s)| s == "done"),
            "{run}: B's steps stand"
        );
    }
}

#[test]
fn force_undoes_a_run_under_a_later_one() {
    let (emu, th, sources, run1, run2) = applied_twice(1);
    let a = &sources[0];
    th.expect(&["rollback", &run1, "--account", a], 2);
    let (stdout, _) = th.expect(&["rollback", &run1, "--account", a, "--force"], 0);
    assert!(
        stdout.contains(&format!("Rollback of run {run1} ({a})")),
        "{stdout}"
    );
    assert_undone(&emu, a);
    assert_eq!(
        archive_policy(&emu),
        None,
        "the only principal taken out, then the policy"
    );
    assert!(
        states(&th, &run2, a).iter().all(|(_, s)| s == "done"),
        "run 2's journal still says done: what --force overrides"
    );
}

#[test]
fn a_rollback_across_runs_stops_at_the_first_run_whose_part_fails() {
    let (emu, th, sources, run1, run2) = applied_twice(2);
    let (a, b) = (&sources[0], &sources[1]);
    // A's profile now reaches B: every step of A fails its identity check, and changes nothing.
    let credentials = th.dir.path().join("aws-credentials");
    let good = std::fs::read_to_string(&credentials).unwrap();
    std::fs::write(&credentials, "").unwrap();
    th.profile(a, b);
    th.profile(b, b);

    let lines = th.json(&["rollback", "--account", a], 1);
    let plan = lines
        .iter()
        .find(|l| l["type"] == "rollback-accounts")
        .unwrap();
    assert_eq!(
        plan["runs"],
        json!([{"run": run2, "accounts": [a]}, {"run": run1, "accounts": [a]}])
    );
    let end = lines.last().unwrap();
    assert_eq!(end["type"], "rollback-accounts-finished", "{lines:?}");
    assert_eq!(end["status"], "stopped");
    assert_eq!(end["stopped_at"], run2.as_str());
    assert_eq!(end["rolled_back"], json!([]));
    assert_eq!(end["not_rolled_back"], json!([run1]));
    assert_source(&emu, a);
    assert!(
        states(&th, &run1, a).iter().all(|(_, s)| s == "done"),
        "run 1 was not touched"
    );

    std::fs::write(&credentials, good).unwrap();
    let (stdout, _) = th.expect(&["rollback", "--account", a], 0);
    assert!(
        stdout.contains(&format!(
            "rolled back across 2 runs, newest first: {run2}, {run1}"
        )),
        "{stdout}"
    );
    assert_undone(&emu, a);
}
