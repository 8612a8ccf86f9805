//! A bad day, part one (issue 4): a partial failure then resume, crashes then resume, and
//! Ctrl-C (a first one lets running steps finish, a second one exits at once).

use crate::support::article::{
    archive_policy, assert_archive, assert_policy, assert_source, principals, snapshot,
};
use crate::support::*;

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
        wait_for_action(log.path(), action, 1);
        let finished_first = child.try_wait().unwrap().is_some();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            !finished_first,
            "round {round}: the run was still going when killed after {action}"
        );

        // A second kill, during the resume (once it has had three answers of its own), then a
        // resume to the end.
        let answered = proxy_log(log.path()).len();
        let mut child = th
            .command()
            .arg("resume")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_for_log(
            log.path(),
            "three answers to the resume",
            answered + 3,
            |_| true,
        );
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

/// Sends SIGINT to `child`, as Ctrl-C in its terminal would.
fn interrupt(child: &std::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -INT {}", child.id());
}

/// Reads `child`'s stderr on a thread: its lines arrive on the channel as they are written.
fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle` on `lines`, and returns every line read until it.
fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(e) => panic!("no line with {needle:?} ({e}): {seen:?}"),
        }
    }
}

#[test]
fn ctrl_c_lets_running_steps_finish_starts_no_other_and_resume_completes() {
    let emu = Emulator::start();
    let sources = accounts(3);
    emu.seed_sources(&sources);
    let log = tempfile::NamedTempFile::new().unwrap();
    let proxy = Proxy::start(
        &emu.url,
        &[
            "--delay-ms",
            "20",
            "--create-stack-delay-ms",
            "1500",
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
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    // A source's versioning is written while its stack is being created (1.5 s): the stacks
    // are running steps when Ctrl-C comes, and replication has not started anywhere.
    wait_for_action(log.path(), "PUT ?versioning", 1);
    interrupt(&child);
    let said = wait_for_line(&lines, "stopping:");
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{said:?}");
    let run = th.json(&["runs"], 0).last().unwrap()["run"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        stdout.contains(&format!("Run {run} interrupted")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("`trailhub resume {run}` continues it")),
        "{stdout}"
    );
    assert_eq!(
        th.json(&["runs"], 0).last().unwrap()["status"],
        "interrupted"
    );

    // Every stack whose creation had started was waited for: its step is done, none is left
    // running, and nothing after the stacks started.
    let nodes = th.json(&["status"], 0);
    let state = |account: &str, step: &str| {
        nodes
            .iter()
            .find(|n| n["type"] == "node" && n["account"] == account && n["step"] == step)
            .map(|n| n["state"].as_str().unwrap().to_string())
    };
    let log_lines = proxy_log(log.path());
    let created = log_lines
        .iter()
        .filter(|l| l["action"] == "CreateStack")
        .count();
    assert!(created > 0, "a stack was being created: {log_lines:?}");
    let done_stacks = sources
        .iter()
        .filter(|s| state(s, "role-stack").as_deref() == Some("done"))
        .count();
    assert_eq!(
        done_stacks, created,
        "every stack started was finished: {nodes:?}"
    );
    assert!(
        !nodes.iter().any(|n| n["state"] == "running"),
        "no step left running: {nodes:?}"
    );
    assert!(
        !log_lines.iter().any(|l| l["action"] == "PUT ?replication"),
        "no replication was started after Ctrl-C"
    );
    for s in &sources {
        assert_eq!(
            snapshot(&emu, s)["replication"],
            serde_json::json!(null),
            "{s}"
        );
    }

    let (stdout, _) = th.expect(&["resume"], 0);
    assert!(stdout.contains("succeeded"), "{stdout}");
    for s in &sources {
        assert_source(&emu, s);
    }
    assert_policy(&emu, &sources);
}

#[test]
fn a_second_ctrl_c_exits_at_once_and_resume_completes() {
    let emu = Emulator::start();
    let sources = accounts(2);
    emu.seed_sources(&sources);
    let log = tempfile::NamedTempFile::new().unwrap();
    // Stacks take 30 s: after a first Ctrl-C the run would wait that long for them.
    let proxy = Proxy::start(
        &emu.url,
        &[
            "--delay-ms",
            "20",
            "--create-stack-delay-ms",
            "30000",
            "--log",
            log.path().to_str().unwrap(),
        ],
    );
    let mut th = Trailhub::with_endpoint(&proxy.url);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    let mut child = th
        .command()
        .args(["apply", "-c", inv.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    wait_for_action(log.path(), "PUT ?versioning", 1);
    interrupt(&child);
    wait_for_line(&lines, "stopping:");
    let second = std::time::Instant::now();
    interrupt(&child);
    let said = wait_for_line(&lines, "interrupted again");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{said:?}");
    assert!(
        second.elapsed() < std::time::Duration::from_secs(10),
        "exited {:?} after the second Ctrl-C, not at once",
        second.elapsed()
    );
    assert!(
        said.last().unwrap().contains("`trailhub resume` continues"),
        "{said:?}"
    );

    // The stacks' requests die with the proxy; resume goes to the emulator directly.
    drop(proxy);
    th.endpoint = emu.url.clone();
    let (stdout, _) = th.expect(&["resume"], 0);
    assert!(stdout.contains("succeeded"), "{stdout}");
    for s in &sources {
        assert_source(&emu, s);
    }
    assert_policy(&emu, &sources);
}
