//! What `--concurrency` and `--account` promise: a run converges one account at a time or two
//! side by side, never with more accounts in flight than asked (read from the proxy's log of
//! who sent each request, and when); `plan` and `apply` of one account read and change nothing
//! of the others (read back, and from the emulator's recording).

use crate::support::article::{assert_archive, assert_policy, assert_source, snapshot};
use crate::support::*;
use serde_json::Value;

/// The most source accounts in flight at once: each account's span runs from the start of its
/// first request to the end of its last (requests signed with its key), as the proxy logged.
fn most_accounts_in_flight(log: &[Value], sources: &[String]) -> usize {
    let mut edges: Vec<(f64, i32)> = Vec::new();
    for s in sources {
        let spans: Vec<(f64, f64)> = log
            .iter()
            .filter(|l| l["key"] == s.as_str())
            .map(|l| {
                let t = l["t"].as_f64().unwrap();
                (t, t + l["ms"].as_f64().unwrap() / 1000.0)
            })
            .collect();
        assert!(!spans.is_empty(), "no request of {s} in the proxy's log");
        let first = spans.iter().map(|s| s.0).fold(f64::INFINITY, f64::min);
        let last = spans.iter().map(|s| s.1).fold(0.0, f64::max);
        edges.push((first, 1));
        edges.push((last, -1));
    }
    // An account ending at the moment another starts is not in flight with it.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0, 0);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    most as usize
}

#[test]
fn apply_with_concurrency_one_or_two_converges_with_no_more_accounts_in_flight() {
    for n in [1usize, 2] {
        let emu = Emulator::start();
        let sources = accounts(4);
        emu.seed_sources(&sources);
        let log = tempfile::NamedTempFile::new().unwrap();
        let proxy = Proxy::start(
            &emu.url,
            &[
                "--delay-ms",
                "15",
                "--create-stack-delay-ms",
                "150",
                "--log",
                log.path().to_str().unwrap(),
            ],
        );
        let th = Trailhub::with_endpoint(&proxy.url);
        th.profiles(&sources);
        let inv = th.write_inventory(&inventory(&sources, ""));
        let (stdout, _) = th.expect(
            &[
                "apply",
                "-c",
                inv.to_str().unwrap(),
                "--concurrency",
                &n.to_string(),
            ],
            0,
        );
        assert!(stdout.contains("succeeded"), "--concurrency {n}: {stdout}");
        assert_archive(&emu);
        for s in &sources {
            assert_source(&emu, s);
        }
        assert_policy(&emu, &sources);
        let most = most_accounts_in_flight(&proxy_log(log.path()), &sources);
        assert!(
            most <= n,
            "--concurrency {n}: {most} accounts were in flight at once"
        );
        if n > 1 {
            assert_eq!(most, n, "--concurrency {n}: accounts went side by side");
        }
    }
}

#[test]
fn plan_and_apply_of_one_account_leave_the_others_untouched() {
    let emu = Emulator::start();
    let sources = accounts(3);
    emu.seed_sources(&sources);
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    let inv = inv.to_str().unwrap();
    let chosen = &sources[1];
    let others: Vec<&String> = sources.iter().filter(|s| *s != chosen).collect();
    let before: Vec<Value> = others.iter().map(|s| snapshot(&emu, s)).collect();

    emu.start_recording();
    let plan = th.json(&["plan", "-c", inv, "--account", chosen], 0);
    let requests = emu.stop_recording();
    let planned: Vec<&str> = plan
        .iter()
        .filter(|l| l["type"] == "plan")
        .map(|l| l["account"].as_str().unwrap())
        .collect();
    assert!(planned.contains(&chosen.as_str()), "{planned:?}");
    assert!(
        planned.iter().all(|a| *a == chosen || *a == "archive"),
        "only the archive and {chosen} are planned: {planned:?}"
    );
    for o in &others {
        let theirs: Vec<_> = requests.iter().filter(|r| &r.account == *o).collect();
        assert!(theirs.is_empty(), "plan sent nothing as {o}: {theirs:?}");
    }

    emu.start_recording();
    th.expect(&["apply", "-c", inv, "--account", chosen], 0);
    let requests = emu.stop_recording();
    assert_source(&emu, chosen);
    assert_policy(&emu, std::slice::from_ref(chosen));
    for (o, snap) in others.iter().zip(&before) {
        let theirs: Vec<_> = requests.iter().filter(|r| &r.account == *o).collect();
        assert!(theirs.is_empty(), "apply sent nothing as {o}: {theirs:?}");
        assert_eq!(&snapshot(&emu, o), snap, "{o} as it was");
    }
    let status = th.json(&["status"], 0);
    assert!(
        status
            .iter()
            .filter(|l| l["type"] == "node")
            .all(|l| l["account"] == "archive" || l["account"] == chosen.as_str()),
        "the run holds only the archive's and {chosen}'s steps"
    );
}
