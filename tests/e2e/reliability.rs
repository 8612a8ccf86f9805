//! Reliability and security (issue 7): transient faults, an endpoint that goes away, locks,
//! no secret in the journal or output, private state directory, least-privilege mode.

use crate::support::article::{archive_policy, assert_archive, assert_policy, assert_source};
use crate::support::*;
use serde_json::{Value, json};

#[test]
fn a_fifth_of_requests_failing_still_converges_and_history_shows_the_retries() {
    let emu = Emulator::start();
    let sources = accounts(12);
    emu.seed_sources(&sources);
    let log = tempfile::NamedTempFile::new().unwrap();
    let proxy = Proxy::start(
        &emu.url,
        &[
            "--delay-ms",
            "0",
            "--create-stack-delay-ms",
            "0",
            "--fail-rate",
            "0.2",
            "--reset-rate",
            "0.03",
            "--seed",
            "7",
            "--log",
            log.path().to_str().unwrap(),
        ],
    );
    let th = Trailhub::with_endpoint(&proxy.url);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    // The retry budget that ships (8 attempts per step, 3 SDK attempts per call). On a 2-core
    // machine this rate (20% answered 503, 3% reset) converged in 5 runs of 5; with 35% 503s,
    // in 2 of 3 (a step of many reads, verify's, can fail all 8 attempts); with 50%, never.
    let out = th
        .command()
        .args(["apply", "-c", inv.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_archive(&emu);
    for s in &sources {
        assert_source(&emu, s);
    }
    assert_policy(&emu, &sources);

    let faults = std::fs::read_to_string(log.path())
        .unwrap()
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).unwrap()["fault"] != Value::Null)
        .count();
    let history = th.json(&["history"], 0);
    let call_retries = history
        .iter()
        .filter(|e| e["event"]["type"] == "call-retried")
        .count();
    let node_retries = history
        .iter()
        .filter(|e| e["event"]["type"] == "attempt-failed")
        .count();
    assert!(faults > 20, "the proxy injected faults: {faults}");
    assert!(call_retries > 0, "history shows the retried calls");
    assert!(
        call_retries + node_retries >= faults * 9 / 10 && call_retries + node_retries <= faults,
        "every injected fault shows in the history as a retried call or a failed attempt: {call_retries} + {node_retries} vs {faults}"
    );
    let (text, _) = th.expect(&["history"], 0);
    assert!(
        text.contains("call-retried") && text.contains("after HTTP 503"),
        "{}",
        &text[..2000.min(text.len())]
    );
}

#[test]
fn an_endpoint_that_goes_away_fails_after_bounded_retries_and_resume_completes() {
    let emu = Emulator::start();
    let sources = accounts(3);
    emu.seed_sources(&sources);
    let log = tempfile::NamedTempFile::new().unwrap();
    let proxy = Proxy::start(
        &emu.url,
        &[
            "--delay-ms",
            "30",
            "--create-stack-delay-ms",
            "1500",
            "--log",
            log.path().to_str().unwrap(),
        ],
    );
    let port = proxy.url.rsplit(':').next().unwrap().to_string();
    let th = Trailhub::with_endpoint(&proxy.url);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    let child = th
        .command()
        .env("TRAILHUB_RETRY_MAX_ATTEMPTS", "3")
        .args(["apply", "-c", inv.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The endpoint disappears once the first stack is created: the others' creations, the
    // grants and the replication rules are still to come.
    wait_for_action(log.path(), "CreateStack", 1);
    drop(proxy);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ConnectionError") && stdout.contains("gave up after 3 attempts"),
        "{stdout}"
    );

    let _back = Proxy::start(&emu.url, &["--port", &port]);
    let (stdout, _) = th.expect(&["resume"], 0);
    assert!(stdout.contains("succeeded"), "{stdout}");
    for s in &sources {
        assert_source(&emu, s);
    }
    assert_policy(&emu, &sources);
}

#[test]
fn a_state_directory_in_use_is_locked_and_a_killed_holder_does_not_block() {
    let emu = Emulator::start();
    let sources = accounts(2);
    emu.seed_sources(&sources);
    let log = tempfile::NamedTempFile::new().unwrap();
    let proxy = Proxy::start(
        &emu.url,
        &[
            "--delay-ms",
            "50",
            "--create-stack-delay-ms",
            "30000",
            "--log",
            log.path().to_str().unwrap(),
        ],
    );
    let th = Trailhub::with_endpoint(&proxy.url);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    let inv = inv.to_str().unwrap();
    let mut holder = th
        .command()
        .args(["apply", "-c", inv])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The holder has the lock before its first AWS call, and its stacks take 30 s.
    wait_for_log(log.path(), "a first request", 1, |_| true);
    let pid = holder.id();
    for args in [
        vec!["apply", "-c", inv],
        vec!["resume"],
        vec!["rollback"],
        vec!["status"],
    ] {
        let (_, stderr) = th.expect(&args, 2);
        assert!(
            stderr.contains(&format!("locked by another trailhub process (pid {pid})")),
            "{args:?}: {stderr}"
        );
    }
    assert!(
        holder.try_wait().unwrap().is_none(),
        "the holder was still running"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    // The kernel released the lock with the process: nothing stale is left to remove. (The
    // proxy goes with the stacks it holds back; resume talks to the emulator.)
    drop(proxy);
    let mut th = th;
    th.endpoint = emu.url.clone();
    let (stdout, _) = th.expect(&["resume"], 0);
    assert!(stdout.contains("succeeded"), "{stdout}");
}

#[test]
fn no_secret_reaches_the_journal_or_the_output_and_the_state_is_private() {
    let emu = Emulator::start();
    let sources = accounts(2);
    emu.seed_sources(&sources);
    let th = Trailhub::new(&emu);
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    // Members reached by assuming a role: session credentials exist in memory.
    // The trust conditions are an opt-in of their own (not in AWS's replication documentation).
    let inv = th.write_inventory(&inventory(&sources, "trust_conditions = true").replace(
        "profile = \"acct-{account_id}\"",
        "assume_role = \"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole\"",
    ));
    emu.start_recording();
    let out = th
        .command()
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .args(["-vv", "apply", "-c", inv.to_str().unwrap()])
        .output()
        .unwrap();
    let recording = emu.stop_recording_raw();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_source(&emu, &sources[0]);

    // Every session token and temporary key the run used, as the emulator saw them.
    let mut secrets = vec![secret.to_string()];
    for line in recording.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if let Some(token) = v["headers"]["X-Amz-Security-Token"].as_str() {
            secrets.push(token.to_string());
        }
        let auth = v["headers"]["Authorization"].as_str().unwrap_or_default();
        if let Some(key) = auth
            .split("Credential=")
            .nth(1)
            .and_then(|c| c.split('/').next())
            && key.starts_with("ASIA")
        {
            secrets.push(key.to_string());
        }
    }
    secrets.sort();
    secrets.dedup();
    assert!(
        secrets.len() > 2,
        "the run used session credentials: {secrets:?}"
    );
    let status = th.run(&["--output", "json", "status"]);
    let history = th.run(&["--output", "json", "history"]);
    let mut haystacks = vec![
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        String::from_utf8_lossy(&status.stdout).into_owned(),
        String::from_utf8_lossy(&history.stdout).into_owned(),
    ];
    let mut files = 0;
    let mut stack = vec![th.state()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files += 1;
                haystacks
                    .push(String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned());
            }
        }
    }
    assert!(files >= 3, "the journal was scanned");
    for s in &secrets {
        for h in &haystacks {
            assert!(!h.contains(s.as_str()), "a credential leaked: {s}");
        }
    }

    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&th.state()), 0o700);
    let mut stack = vec![th.state()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                assert_eq!(mode(&path), 0o700, "{}", path.display());
                stack.push(path);
            } else {
                assert_eq!(mode(&path), 0o600, "{}", path.display());
            }
        }
    }
}

#[test]
fn least_privilege_grants_only_what_replication_needs() {
    let emu = Emulator::start();
    let sources = accounts(2);
    emu.seed_sources(&sources);
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    // The trust conditions are an opt-in of their own (not in AWS's replication documentation).
    let inv = th.write_inventory(&inventory(&sources, "trust_conditions = true").replace(
        "region = \"ap-northeast-1\"",
        "region = \"ap-northeast-1\"\npolicy = \"least-privilege\"",
    ));
    let inv = inv.to_str().unwrap();
    th.expect(&["apply", "-c", inv], 0);
    let policy = archive_policy(&emu).unwrap();
    let text = policy.to_string();
    assert!(
        !text.contains("s3:PutBucketVersioning") && !text.contains("s3:List*"),
        "{text}"
    );
    for s in &sources {
        let objects = policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|st| st["Sid"] == format!("TrailhubReplicateObjects{s}"))
            .unwrap_or_else(|| panic!("{text}"));
        assert_eq!(objects["Principal"]["AWS"], role_arn(s));
        assert_eq!(
            objects["Resource"],
            format!("arn:aws:s3:::{}/AWSLogs/{s}/*", archive_bucket())
        );
        assert_eq!(
            objects["Condition"],
            json!({"StringEquals": {"aws:PrincipalAccount": s}})
        );
        let iam = emu.iam(s);
        let trust = emu.rt.block_on(async {
            iam.get_role()
                .role_name("S3ReplicationRole")
                .send()
                .await
                .unwrap()
        });
        let doc = percent_encoding::percent_decode_str(
            trust.role().unwrap().assume_role_policy_document().unwrap(),
        )
        .decode_utf8()
        .unwrap()
        .to_string();
        let doc: Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(
            doc["Statement"][0]["Condition"],
            json!({
                "StringEquals": {"aws:SourceAccount": s},
                "ArnLike": {"aws:SourceArn": format!("arn:aws:s3:::{}", source_bucket(s))}
            })
        );
    }
    th.expect(&["verify", "-c", inv], 0);
    th.expect(&["rollback", "--account", &sources[0]], 0);
    let after = archive_policy(&emu).unwrap().to_string();
    assert!(
        !after.contains(&sources[0]) && after.contains(&sources[1]),
        "{after}"
    );
}

#[test]
fn accounts_mode_names_each_account_once_and_rollback_takes_one_out() {
    let emu = Emulator::start();
    let sources = accounts(3);
    emu.seed_sources(&sources);
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    // The trust conditions are an opt-in of their own (not in AWS's replication documentation).
    let inv = th.write_inventory(&inventory(&sources, "trust_conditions = true").replace(
        "region = \"ap-northeast-1\"",
        "region = \"ap-northeast-1\"\npolicy = \"accounts\"",
    ));
    let inv = inv.to_str().unwrap();
    th.expect(&["apply", "-c", inv], 0);
    let roots = |policy: &Value| -> Vec<String> {
        let statements = policy["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 1, "one statement: {policy}");
        let st = &statements[0];
        assert_eq!(st["Sid"], "TrailhubReplicationByAccountS3ReplicationRole");
        assert_eq!(
            st["Condition"],
            json!({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/S3ReplicationRole"}})
        );
        let mut roots: Vec<String> = match &st["Principal"]["AWS"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(list) => list.iter().map(|v| v.as_str().unwrap().into()).collect(),
            other => panic!("{other}"),
        };
        roots.sort();
        roots
    };
    let policy = archive_policy(&emu).expect("a policy");
    assert_eq!(
        roots(&policy),
        sources
            .iter()
            .map(|s| format!("arn:aws:iam::{s}:root"))
            .collect::<Vec<_>>()
    );
    th.expect(&["verify", "-c", inv], 0);

    th.expect(&["rollback", "--account", &sources[1]], 0);
    let policy = archive_policy(&emu).expect("two accounts remain");
    assert_eq!(
        roots(&policy),
        vec![
            format!("arn:aws:iam::{}:root", sources[0]),
            format!("arn:aws:iam::{}:root", sources[2])
        ]
    );
    // verify sees the rolled-back account's grant missing, by the principal it expects.
    let lines = th.json(&["verify", "-c", inv], 3);
    let expected = format!("includes arn:aws:iam::{}:root", sources[1]);
    assert!(
        lines.iter().any(|l| l["type"] == "drift"
            && l["account"] == sources[1].as_str()
            && l["expected"] == expected.as_str()),
        "{lines:?}"
    );
}
