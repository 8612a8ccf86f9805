//! A bad day, part one (issue 4): a partial failure then resume, and crashes then resume.

use crate::support::article::{
    archive_policy, assert_archive, assert_policy, assert_source, principals, snapshot,
};
use crate::support::*;
use std::time::Duration;

#[test]
fn a_missing_bucket_fails_one_account_and_resume_finishes_only_it() {
    let emu = Emulator::start();
    let sources = accounts(12);
    let broken = sources[6].clone();
    for s in &sources {
        if *s != broken {
            emu.seed_source(s);
        }
    }
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    let (stdout, _) = th.expect(&["apply", "-c", inv.to_str().unwrap()], 1);
    assert!(stdout.contains(&format!("{broken}  failed")), "{stdout}");

    let ok: Vec<String> = sources.iter().filter(|s| **s != broken).cloned().collect();
    for s in &ok {
        assert_source(&emu, s);
    }
    assert_policy(&emu, &ok);

    // Twelve accounts are a fleet: the failure is told by cause; `--all` has every node.
    let (status, _) = th.expect(&["status"], 0);
    assert!(
        status.contains(&format!(
            "1 account failed at bucket-check: NoSuchBucket — {broken}\n"
        )),
        "{status}"
    );
    let (all, _) = th.expect(&["status", "--all"], 0);
    assert!(
        all.contains(&format!("{broken}/bucket-check failed: [NoSuchBucket]")),
        "{all}"
    );
    assert!(
        status.contains("what to do: create the CloudTrail bucket"),
        "{status}"
    );
    let nodes = th.json(&["status"], 0);
    let failed: Vec<&serde_json::Value> = nodes.iter().filter(|n| n["state"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["account"], broken.as_str());
    assert_eq!(failed[0]["step"], "bucket-check");
    assert_eq!(failed[0]["error"]["code"], "NoSuchBucket");
    let blocked = nodes
        .iter()
        .filter(|n| n["state"] == "blocked" && n["account"] == broken.as_str())
        .count();
    assert_eq!(blocked, 6, "the broken account's later steps are blocked");

    let before: Vec<serde_json::Value> = ok.iter().map(|s| snapshot(&emu, s)).collect();
    emu.seed_source(&broken);
    emu.start_recording();
    let (_, stderr) = th.expect(&["resume"], 0);
    let requests = emu.stop_recording();
    assert!(stderr.contains("frozen"), "{stderr}");
    for (s, snap) in ok.iter().zip(&before) {
        let writes: Vec<_> = requests
            .iter()
            .filter(|r| r.mutating && &r.account == s)
            .collect();
        assert!(
            writes.is_empty(),
            "resume changes nothing in {s}: {writes:?}"
        );
        assert_eq!(&snapshot(&emu, s), snap);
    }
    let stacks = requests
        .iter()
        .filter(|r| r.operation == "CreateStack")
        .count();
    assert_eq!(stacks, 1, "exactly one CreateStack, in {broken}");
    assert_source(&emu, &broken);
    assert_policy(&emu, &sources);
}

#[test]
fn resume_uses_the_frozen_inventory_and_says_so() {
    let emu = Emulator::start();
    let sources = accounts(2);
    emu.seed_source(&sources[0]);
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    th.expect(&["apply", "-c", inv.to_str().unwrap()], 1);
    // The operator edits the file (drops the failing account) instead of fixing the bucket.
    th.write_inventory(&inventory(&sources[..1], "storage_class = \"GLACIER\""));
    emu.seed_source(&sources[1]);
    let (_, stderr) = th.expect(&["resume"], 0);
    assert!(
        stderr.contains("has changed since, and its edits are not used"),
        "{stderr}"
    );
    assert!(stderr.contains("trailhub apply -c"), "{stderr}");
    assert_source(&emu, &sources[1]);
    let history = th.json(&["history"], 0);
    assert!(history.iter().any(|e| {
        e["event"]["type"] == "note"
            && e["event"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("frozen")
    }));
}

fn assert_converged(emu: &Emulator, sources: &[String]) {
    assert_archive(emu);
    for s in sources {
        assert_source(emu, s);
        let snap = snapshot(emu, s);
        assert_eq!(
            snap["stacks"],
            serde_json::json!(["cloudtrail-replication-role CREATE_COMPLETE"]),
            "one stack in {s}"
        );
    }
    assert_policy(emu, sources);
    let policy = archive_policy(emu).expect("policy");
    for sid in [
        "AllowReplicationFromSourceAccount",
        "AllowReplicationPolicyCheck",
    ] {
        let list = principals(&policy, sid);
        let mut dedup = list.clone();
        dedup.dedup();
        assert_eq!(list, dedup, "no principal twice in {sid}");
    }
}

#[test]
fn killed_at_several_moments_then_resumed_converges() {
    // Each round kills the first run just after the proxy answered one request of a phase (so
    // the moment does not depend on how busy the machine is): during the read-only checks,
    // while the stacks are being created, and once replication is being written.
    for (round, action) in ["GET ?versioning", "CreateStack", "PUT ?replication"]
        .into_iter()
        .enumerate()
    {
        let emu = Emulator::start();
        let sources = accounts(4);
        emu.seed_sources(&sources);
        let log = tempfile::NamedTempFile::new().unwrap();
        let proxy = Proxy::start(
            &emu.url,
            &[
                "--delay-ms",
                "25",
                "--create-stack-delay-ms",
                "400",
                "--log",
                log.path().to_str().unwrap(),
            ],
        );
        let th = Trailhub::with_endpoint(&proxy.url);
        th.profiles(&sources);
        let inv = th.write_inventory(&inventory(&sources, ""));
        let mut child = th
            .command()
            .args(["apply", "-c", inv.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_for_action(log.path(), action);
        let finished_first = child.try_wait().unwrap().is_some();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            !finished_first,
            "round {round}: the run was still going when killed after {action}"
        );

        // A second kill, during the resume, then a resume to the end.
        let mut child = th
            .command()
            .arg("resume")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        child.kill().unwrap();
        child.wait().unwrap();

        let (stdout, _) = th.expect(&["resume"], 0);
        assert!(stdout.contains("succeeded"), "round {round}: {stdout}");
        assert_converged(&emu, &sources);
        let (status, _) = th.expect(&["status"], 0);
        assert!(
            !status.contains("failed") && !status.contains("running"),
            "round {round}: {status}"
        );
    }
}

/// Waits until the proxy's log shows a response to `action` (its log line is written when the
/// response has been sent).
fn wait_for_action(log: &std::path::Path, action: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let seen = text.lines().any(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .map(|v| v["action"] == action)
                .unwrap_or(false)
        });
        if seen {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {action} in the proxy's log within 60 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
