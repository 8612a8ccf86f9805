//! Team use: the journal in S3 (`--state s3://…`) shared by several machines (workplaces with
//! their own HOME, so their own working copies), and the archive lock. Moments are chosen by
//! the proxy's log (a response sent, or a held request in flight), never by sleeping.

use crate::support::article::{archive_policy, assert_policy, principals};
use crate::support::{ARCHIVE, Emulator, Proxy, Trailhub, accounts, archive_bucket, inventory};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const BUCKET: &str = "team-trailhub-state";
const URL: &str = "s3://team-trailhub-state/prod";

/// Creates the state bucket in the archive account, versioned or not.
fn state_bucket(emu: &Emulator, versioned: bool) {
    let s3 = emu.s3(ARCHIVE);
    emu.rt.block_on(async {
        s3.create_bucket()
            .bucket(BUCKET)
            .create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::ApNortheast1)
                    .build(),
            )
            .send()
            .await
            .expect("create the state bucket");
        if versioned {
            s3.put_bucket_versioning()
                .bucket(BUCKET)
                .versioning_configuration(
                    aws_sdk_s3::types::VersioningConfiguration::builder()
                        .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .expect("versioning");
        }
    });
}

/// Every object key in the state bucket.
fn state_keys(emu: &Emulator) -> Vec<String> {
    let s3 = emu.s3(ARCHIVE);
    emu.rt.block_on(async {
        let out = s3
            .list_objects_v2()
            .bucket(BUCKET)
            .send()
            .await
            .expect("list");
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    })
}

/// The object at `key` of the state bucket, parsed; `None` when there is none.
fn state_object(emu: &Emulator, key: &str) -> Option<Value> {
    let s3 = emu.s3(ARCHIVE);
    emu.rt.block_on(async {
        let out = s3.get_object().bucket(BUCKET).key(key).send().await.ok()?;
        let body = out.body.collect().await.expect("body").into_bytes();
        Some(serde_json::from_slice(&body).expect("JSON"))
    })
}

/// Every write of every segment in the state bucket, in key order (runs, then segments).
fn shared_writes(emu: &Emulator) -> Vec<Value> {
    let mut keys: Vec<String> = state_keys(emu)
        .into_iter()
        .filter(|k| k.starts_with("prod/runs/"))
        .collect();
    keys.sort();
    keys.iter()
        .flat_map(|k| {
            let segment = state_object(emu, k).expect("segment");
            segment["writes"].as_array().expect("writes").clone()
        })
        .collect()
}

/// A workplace (another machine) sharing the state, with profiles for `sources`.
fn machine(endpoint: &str, sources: &[String]) -> Trailhub {
    let th = Trailhub::with_endpoint(endpoint).sharing(URL);
    th.profiles(sources);
    th
}

/// Waits until the proxy's log has a line for which `seen` holds.
fn wait_for_log(log: &Path, what: &str, seen: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|v| seen(&v))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} in the proxy's log within 90 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn proxy_lines(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn notes(th: &Trailhub, run: &str) -> Vec<String> {
    th.json(&["history", run], 0)
        .into_iter()
        .filter(|e| e["event"]["type"] == "note")
        .map(|e| {
            e["event"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn run_id(lines: &[Value]) -> String {
    lines
        .iter()
        .find(|l| l["type"] == "run")
        .and_then(|l| l["run"].as_str())
        .expect("a run line")
        .to_string()
}

#[test]
fn two_operators_on_one_shared_state_both_finish_and_no_grant_is_lost() {
    let emu = Emulator::start();
    state_bucket(&emu, true);
    let all = accounts(16);
    emu.seed_sources(&all);
    // Three injected 409s on the conditional writes (run creation, segments, the lock): both
    // processes retry them by their code.
    let proxy = Proxy::start(
        &emu.url,
        &[
            "--delay-ms",
            "20",
            "--create-stack-delay-ms",
            "300",
            "--conflicts",
            "3",
        ],
    );
    let (first, second) = all.split_at(8);
    let a = machine(&proxy.url, first);
    let b = machine(&proxy.url, second);
    let spawn = |th: &Trailhub, sources: &[String]| {
        let inv = th.write_inventory(&inventory(sources, ""));
        th.command()
            .args(["--output", "json", "--lock-timeout", "2m", "apply", "-c"])
            .arg(inv)
            .env("TRAILHUB_LOCK_HEARTBEAT_MS", "500")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (ca, cb) = (spawn(&a, first), spawn(&b, second));
    let (oa, ob) = (
        ca.wait_with_output().unwrap(),
        cb.wait_with_output().unwrap(),
    );
    let lines = |o: &std::process::Output| -> Vec<Value> {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    for (name, out) in [("A", &oa), ("B", &ob)] {
        assert_eq!(
            out.status.code(),
            Some(0),
            "operator {name}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_policy(&emu, &all);
    let (run_a, run_b) = (run_id(&lines(&oa)), run_id(&lines(&ob)));
    let mut suffixes = [
        run_a[run_a.len() - 4..].to_string(),
        run_b[run_b.len() - 4..].to_string(),
    ];
    suffixes.sort();
    assert_eq!(
        suffixes,
        ["0001", "0002"],
        "two runs, two sequences: {run_a} {run_b}"
    );
    // Either machine sees both runs, and each run's history shows the waits for the lock.
    let runs = a.json(&["runs"], 0);
    assert_eq!(runs.len(), 2, "{runs:?}");
    let waits: Vec<(String, Vec<String>)> = [(&a, &run_a), (&b, &run_b)]
        .into_iter()
        .map(|(th, run)| {
            let waited = notes(th, run)
                .into_iter()
                .filter(|n| n.starts_with("waited") && n.contains("for the archive lock"))
                .collect();
            (run.clone(), waited)
        })
        .collect();
    assert!(
        waits.iter().any(|(_, w)| !w.is_empty()),
        "one of the two waited for the other's lock: {waits:?}"
    );
    eprintln!("two operators: exit 0 and 0, 16 of 16 principals, waits {waits:?}");
    assert!(
        !state_keys(&emu)
            .iter()
            .any(|k| k.starts_with("prod/locks/")),
        "both released the lock"
    );
}

#[test]
fn a_killed_lock_holder_is_seen_broken_and_its_run_resumed_and_rolled_back_elsewhere() {
    let emu = Emulator::start();
    state_bucket(&emu, true);
    let sources = accounts(3);
    emu.seed_sources(&sources);
    let log = tempfile::NamedTempFile::new().unwrap();
    let proxy = Proxy::start(
        &emu.url,
        &[
            "--delay-ms",
            "20",
            "--create-stack-delay-ms",
            "200",
            "--log",
            log.path().to_str().unwrap(),
        ],
    );
    let a = machine(&proxy.url, &sources);
    let inv = a.write_inventory(&inventory(&sources, ""));
    let mut child = a
        .command()
        .args(["apply", "-c"])
        .arg(&inv)
        .env("TRAILHUB_LOCK_HEARTBEAT_MS", "200")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_log(log.path(), "PUT ?policy", |v| {
        v["action"] == "PUT ?policy" && v["status"] == 200
    });
    child.kill().unwrap();
    child.wait().unwrap();

    // Another machine: its working copy is pulled from the bucket; the lock is there, its
    // holder named, its heartbeat going stale.
    let b = machine(&proxy.url, &sources);
    let deadline = Instant::now() + Duration::from_secs(30);
    let lock = loop {
        let lines = b.json(&["status"], 0);
        let lock = lines
            .iter()
            .find(|l| l["type"] == "lock")
            .cloned()
            .expect("the lock is listed");
        if lock["stale"] == true {
            break lock;
        }
        assert!(
            Instant::now() < deadline,
            "the lock never went stale: {lock}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let run = lock["lock"]["run"]
        .as_str()
        .expect("the lock names its run")
        .to_string();
    let id = lock["lock"]["id"].as_str().unwrap().to_string();
    assert_eq!(lock["lock"]["command"], "apply");
    let (text, _) = b.expect(&["status", &run], 0);
    assert!(
        text.contains("stale") && text.contains(&format!("trailhub force-unlock {id}")),
        "{text}"
    );
    let (_, err) = b.expect(&["resume", &run], 2);
    assert!(
        err.contains("locked by another trailhub process") && err.contains(&id),
        "{err}"
    );

    b.expect(&["force-unlock", &id], 0);
    assert!(
        !state_keys(&emu)
            .iter()
            .any(|k| k.starts_with("prod/locks/"))
    );
    let (out, _) = b.expect(&["resume", &run], 0);
    assert!(out.contains("succeeded"), "{out}");
    assert_policy(&emu, &sources);

    b.expect(&["rollback", &run], 0);
    let policy = archive_policy(&emu);
    for sid in [
        "AllowReplicationFromSourceAccount",
        "AllowReplicationPolicyCheck",
    ] {
        let left = policy
            .as_ref()
            .map(|p| principals(p, sid))
            .unwrap_or_default();
        assert!(left.is_empty(), "{sid} still names {left:?}");
    }
    // The first machine sees the same run, rolled back.
    let status = a.json(&["status", &run], 0);
    assert_eq!(status[0]["status"], "rolled-back", "{:?}", status[0]);
}

#[test]
fn after_force_unlock_the_old_holder_makes_no_further_archive_write() {
    let emu = Emulator::start();
    state_bucket(&emu, true);
    let sources = accounts(3);
    emu.seed_sources(&sources);
    let log = tempfile::NamedTempFile::new().unwrap();
    // A's first policy write is held in flight for 3 s; one node at a time, so that its second
    // grant is a second write.
    let proxy_a = Proxy::start(
        &emu.url,
        &[
            "--delay-ms",
            "10",
            "--create-stack-delay-ms",
            "50",
            "--hold",
            "PUT ?policy=3000",
            "--log",
            log.path().to_str().unwrap(),
        ],
    );
    let (mine, theirs) = sources.split_at(2);
    let a = machine(&proxy_a.url, mine);
    let inv = a.write_inventory(&inventory(mine, ""));
    let child = a
        .command()
        .args(["--output", "json", "apply", "--concurrency", "1", "-c"])
        .arg(&inv)
        .env("TRAILHUB_LOCK_HEARTBEAT_MS", "200")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_log(log.path(), "the held policy write", |v| v["held"] == true);
    let lock = state_object(&emu, &format!("prod/locks/{}.json", archive_bucket()))
        .expect("A holds the lock");
    let b = machine(&emu.url, theirs);
    b.expect(&["force-unlock", lock["id"].as_str().unwrap()], 0);
    // B takes the lock for its own grant while A's write is still in flight.
    let inv_b = b.write_inventory(&inventory(theirs, ""));
    b.expect(
        &[
            "--lock-timeout",
            "1m",
            "apply",
            "-c",
            inv_b.to_str().unwrap(),
        ],
        0,
    );

    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "A lost its lock: {stdout}");
    let policy_writes = proxy_lines(log.path())
        .into_iter()
        .filter(|v| v["action"] == "PUT ?policy" && v["held"] != true)
        .count();
    assert_eq!(
        policy_writes, 1,
        "A wrote the archive policy once (the write in flight), never after"
    );
    assert!(
        stdout.contains("LockLost"),
        "A's second grant failed on the lost lock: {stdout}"
    );
    // A's write in flight was read before B's and lands after it: no lock can call back a
    // request already sent, which is why force-unlock is for holders that are gone. `verify`
    // names what it dropped and B's next apply writes it again, under the lock.
    let theirs_role = crate::support::role_arn(&theirs[0]);
    let granted = |emu: &Emulator| {
        archive_policy(emu)
            .map(|p| principals(&p, "AllowReplicationPolicyCheck").contains(&theirs_role))
            .unwrap_or(false)
    };
    if !granted(&emu) {
        let (out, _) = b.expect(&["verify", "-c", inv_b.to_str().unwrap()], 3);
        assert!(out.contains(&theirs[0]), "{out}");
    }
    b.expect(&["apply", "-c", inv_b.to_str().unwrap()], 0);
    assert!(granted(&emu), "B's grant is there");
}

#[test]
fn an_undo_record_is_in_the_bucket_before_its_mutation() {
    let emu = Emulator::start();
    state_bucket(&emu, true);
    let sources = accounts(2);
    emu.seed_sources(&sources);
    let log = tempfile::NamedTempFile::new().unwrap();
    let proxy = Proxy::start(
        &emu.url,
        &[
            "--delay-ms",
            "10",
            "--create-stack-delay-ms",
            "2000",
            "--log",
            log.path().to_str().unwrap(),
        ],
    );
    let a = machine(&proxy.url, &sources);
    let inv = a.write_inventory(&inventory(&sources, ""));
    let mut child = a
        .command()
        .args(["apply", "-c"])
        .arg(&inv)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_log(log.path(), "PUT ?versioning", |v| {
        v["action"] == "PUT ?versioning" && v["status"] == 200
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let bucket = proxy_lines(log.path())
        .into_iter()
        .find(|v| v["action"] == "PUT ?versioning")
        .and_then(|v| v["path"].as_str().map(|p| p.trim_matches('/').to_string()))
        .unwrap();
    let node = if bucket == archive_bucket() {
        "archive/versioning".to_string()
    } else {
        format!("{}/versioning", bucket.rsplit('-').next().unwrap())
    };
    let undo = shared_writes(&emu)
        .into_iter()
        .filter(|w| w["type"] == "node" && w["node"] == node.as_str())
        .find_map(|w| w["record"]["undo"].as_object().cloned());
    assert!(
        undo.is_some(),
        "the bucket has {node}'s undo record, written before its PutBucketVersioning"
    );
}

#[test]
fn a_state_bucket_that_cannot_hold_state_is_refused_before_anything_is_written() {
    let emu = Emulator::start();
    let sources = accounts(1);
    emu.seed_sources(&sources);
    let check = |th: &Trailhub, args: &[&str], want: &[&str]| {
        let (_, err) = th.expect(args, 2);
        for w in want {
            assert!(err.contains(w), "{args:?}: {err}");
        }
        assert!(
            !th.dir
                .path()
                .join(".cache/trailhub")
                .join("s3")
                .join(BUCKET)
                .join("prod")
                .join("working-copy")
                .exists(),
            "no working copy was made"
        );
    };
    let th = machine(&emu.url, &sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    let inv = inv.to_str().unwrap();
    let bad_url = Trailhub::with_endpoint(&emu.url).sharing("s3://Not_A_Bucket/x");
    check(
        &bad_url,
        &["status"],
        &["is not a state URL", "s3://BUCKET/PREFIX"],
    );
    check(
        &th,
        &["apply", "-c", inv],
        &[
            "does not exist",
            "aws s3api create-bucket --bucket team-trailhub-state",
            "put-bucket-versioning",
        ],
    );
    state_bucket(&emu, false);
    check(
        &th,
        &["apply", "-c", inv],
        &[
            "is not versioned",
            "--versioning-configuration Status=Enabled",
        ],
    );
    assert!(
        state_keys(&emu).is_empty(),
        "nothing written to the unversioned bucket"
    );
    let archive_as_state =
        Trailhub::with_endpoint(&emu.url).sharing(&format!("s3://{}/state", archive_bucket()));
    archive_as_state.profiles(&sources);
    check(
        &archive_as_state,
        &["apply", "-c", inv],
        &["is the archive bucket", "Object Lock"],
    );
    assert!(
        !crate::support::article::bucket_exists(&emu, ARCHIVE, &archive_bucket()),
        "no AWS request made for the run"
    );
}

#[test]
fn a_local_state_is_pushed_to_s3_and_read_from_another_machine() {
    let emu = Emulator::start();
    state_bucket(&emu, true);
    let sources = accounts(1);
    emu.seed_sources(&sources);
    let local = Trailhub::new(&emu);
    local.profiles(&sources);
    let inv = local.write_inventory(&inventory(&sources, ""));
    let (_, err) = local.expect(&["apply", "-c", inv.to_str().unwrap()], 0);
    assert!(
        err.contains("concurrent operators of this archive need a shared state, --state s3://"),
        "{err}"
    );
    let (out, _) = local.expect(&["state", "push", "--to", URL], 0);
    assert!(out.contains("Pushed 1 run"), "{out}");
    local.expect(&["state", "push", "--to", URL], 2);
    let other = machine(&emu.url, &sources);
    let runs = other.json(&["runs"], 0);
    assert_eq!(runs.len(), 1);
    let status = other.json(&["status"], 0);
    assert_eq!(status[0]["status"], "succeeded");
    // A new run from the other machine takes the next sequence.
    let lines = other.json(
        &[
            "apply",
            "-c",
            other
                .write_inventory(&inventory(&sources, ""))
                .to_str()
                .unwrap(),
        ],
        0,
    );
    assert!(run_id(&lines).ends_with("-0002"));
}
