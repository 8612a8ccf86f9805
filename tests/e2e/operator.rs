//! Operator experience (issue 8): the progress display on a terminal, JSON lines and tables
//! (snapshots, with times and ids normalized), completions, and the HTML report opened in
//! headless Chromium.

use crate::support::*;
use regex::Regex;
use std::process::Command;

/// Replaces what changes from run to run (ids, times, durations, paths, pids) with placeholders.
fn normalize(text: &str, th: &Trailhub) -> String {
    let mut out = text.replace(th.dir.path().to_str().unwrap(), "[DIR]");
    for (pattern, with) in [
        (r"\d{8}T\d{6}Z-\d{4}", "[RUN]"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "[TIME]"),
        (r"\b\d\d:\d\d:\d\d\b", "[CLOCK]"),
        (r#""(at_ms|elapsed_ms|seq)":\d+"#, r#""$1":0"#),
        (r"\b\d+(\.\d+)?(ms|s)\b", "[DURATION]"),
        (r"pid \d+", "pid [PID]"),
    ] {
        out = Regex::new(pattern)
            .unwrap()
            .replace_all(&out, with)
            .into_owned();
    }
    out
}

fn two_accounts_one_broken() -> (Emulator, Trailhub, std::path::PathBuf) {
    let emu = Emulator::start();
    let sources = accounts(2);
    emu.seed_source(&sources[0]);
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    (emu, th, inv)
}

#[test]
fn json_lines_and_tables_keep_their_shape() {
    let (_emu, th, inv) = two_accounts_one_broken();
    let inv = inv.to_str().unwrap();
    let (plan, _) = th.expect(&["--output", "json", "plan", "-c", inv], 1);
    insta::assert_snapshot!("plan_json", normalize(&plan, &th));
    let (plan_text, _) = th.expect(&["plan", "-c", inv], 1);
    insta::assert_snapshot!("plan_text", normalize(&plan_text, &th));

    let (apply, _) = th.expect(&["--output", "json", "apply", "-c", inv], 1);
    // Node events arrive in a scheduling order; their set, and the summaries, are stable.
    let mut lines: Vec<String> = normalize(&apply, &th).lines().map(str::to_string).collect();
    lines.sort();
    insta::assert_snapshot!("apply_json_sorted", lines.join("\n"));

    let (status, _) = th.expect(&["--output", "json", "status"], 0);
    insta::assert_snapshot!("status_json", normalize(&status, &th));
    let (status_text, _) = th.expect(&["status"], 0);
    insta::assert_snapshot!("status_text", normalize(&status_text, &th));
    let (runs, _) = th.expect(&["--output", "json", "runs"], 0);
    insta::assert_snapshot!("runs_json", normalize(&runs, &th));
    let (verify, _) = th.expect(&["--output", "json", "verify", "-c", inv], 3);
    insta::assert_snapshot!("verify_json", normalize(&verify, &th));
    let (history, _) = th.expect(&["--output", "json", "history"], 0);
    for line in history.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for key in ["type", "run", "seq", "at", "at_ms", "node", "event"] {
            assert!(v.get(key).is_some(), "history line without {key}: {line}");
        }
    }
}

#[test]
fn the_progress_display_shows_on_a_terminal() {
    let (_emu, th, inv) = two_accounts_one_broken();
    // `script` gives the command a pseudo-terminal, as a person's shell would.
    let mut cmd = th.command();
    cmd.env_remove("CI").env("TERM", "xterm");
    let program = cmd.get_program().to_str().unwrap().to_string();
    let line = format!("{program} apply -c {}", inv.display());
    let out = cmd_with_env(&cmd, Command::new("script"))
        .args(["-qefc", &line, "/dev/null"])
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("steps, ETA"), "the bar is drawn: {screen}");
    assert!(screen.contains("✓ archive done"), "{screen}");
    assert!(
        screen.contains("✗ 200000000002 failed at bucket-check"),
        "{screen}"
    );
    assert!(
        screen.contains("ACCOUNT") && screen.contains("RESULT"),
        "the summary table: {screen}"
    );

    // Not a terminal: plain timestamped lines, no bar.
    let (stdout, stderr) = th.expect(&["apply", "-c", inv.to_str().unwrap()], 1);
    assert!(!stderr.contains("ETA") && !stdout.contains("ETA"));
    assert!(
        Regex::new(r"\[\d\d:\d\d:\d\d\] ✓ archive done")
            .unwrap()
            .is_match(&stderr),
        "{stderr}"
    );
}

/// `to` with the environment and working directory of `from`.
fn cmd_with_env(from: &Command, mut to: Command) -> Command {
    to.env_clear();
    for (k, v) in from.get_envs() {
        if let Some(v) = v {
            to.env(k, v);
        }
    }
    if let Some(dir) = from.get_current_dir() {
        to.current_dir(dir);
    }
    to
}

/// `trailhub runs | head -1`: the reader goes away before the command has written everything.
/// The command must not panic (Rust ignores SIGPIPE: a write then fails with BrokenPipe), say
/// nothing about it, and exit as it would have.
#[test]
fn every_printing_command_exits_quietly_when_its_reader_goes_away() {
    let (_emu, th, inv) = two_accounts_one_broken();
    let inv = inv.to_str().unwrap();
    th.expect(&["apply", "-c", inv], 1);
    for (args, code) in [
        (vec!["runs"], 0),
        (vec!["status"], 0),
        (vec!["status", "--all"], 0),
        (vec!["--output", "json", "status"], 0),
        (vec!["history"], 0),
        (vec!["plan", "-c", inv], 1),
        (vec!["graph", "-c", inv, "--format", "dot"], 0),
        (vec!["verify", "-c", inv], 3),
        (vec!["completions", "bash"], 0),
        (vec!["apply", "-c", inv], 1),
    ] {
        let mut child = th
            .command()
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before anything is read.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    }
}

#[test]
fn completions_and_help() {
    let emu = Emulator::start();
    let th = Trailhub::new(&emu);
    let (bash, _) = th.expect(&["completions", "bash"], 0);
    assert!(bash.contains("_trailhub()") && bash.contains("rollback"));
    let (zsh, _) = th.expect(&["completions", "zsh"], 0);
    assert!(zsh.contains("#compdef trailhub"));
    // Loaded into fish (installed by scripts/setup-tools), it completes commands and flags.
    let (fish, _) = th.expect(&["completions", "fish"], 0);
    let script = th.dir.path().join("trailhub.fish");
    std::fs::write(&script, &fish).unwrap();
    let complete = |line: &str| {
        let out = Command::new("fish")
            .args(["--no-config", "-c"])
            .arg(format!("source {}; complete -C '{line}'", script.display()))
            .env("HOME", th.dir.path())
            .output()
            .expect("fish is installed by scripts/setup-tools");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let commands = complete("trailhub ro");
    assert!(commands.starts_with("rollback\t"), "{commands}");
    let flags = complete("trailhub apply --conc");
    assert!(flags.starts_with("--concurrency\t"), "{flags}");
    for command in [
        "plan", "apply", "resume", "rollback", "status", "runs", "history", "graph", "verify",
        "report",
    ] {
        let (help, _) = th.expect(&[command, "--help"], 0);
        assert!(help.contains("Usage: trailhub"), "{command}: {help}");
        if command != "runs" {
            assert!(
                help.contains("trailhub ") && help.to_lowercase().contains("example"),
                "{command} has examples: {help}"
            );
        }
    }
}

#[test]
fn the_report_renders_in_a_browser() {
    let (_emu, th, inv) = two_accounts_one_broken();
    th.expect(&["apply", "-c", inv.to_str().unwrap()], 1);
    let report = th.dir.path().join("report.html");
    th.expect(&["report", "-o", report.to_str().unwrap()], 0);
    let html = std::fs::read_to_string(&report).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&report).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the report is its owner's alone: {mode:o}");
        // A symbolic link in its place is refused, and what it points to stays as it was.
        let target = th.dir.path().join("elsewhere.txt");
        std::fs::write(&target, "untouched").unwrap();
        let link = th.dir.path().join("linked.html");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let (_, err) = th.expect(&["report", "-o", link.to_str().unwrap()], 1);
        assert!(err.contains("is a symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
    }
    assert!(
        !html.contains("http://")
            || !Regex::new(r#"(src|href)="https?://"#)
                .unwrap()
                .is_match(&html),
        "self-contained"
    );

    let profile = tempfile::tempdir().unwrap();
    let chromium = |extra: &[&str]| {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                &format!("--user-data-dir={}", profile.path().display()),
                "--window-size=1300,1800",
            ])
            .args(extra)
            .arg(format!("file://{}", report.display()))
            .output()
            .expect("chromium is installed by scripts/setup-tools")
    };
    let dom = String::from_utf8_lossy(&chromium(&["--dump-dom"]).stdout).into_owned();
    assert!(
        dom.contains("id=\"run-status\">partially-failed<"),
        "the run's status is shown"
    );
    let graph_nodes = Regex::new(r#"<g id="node\d+" class="node">"#)
        .unwrap()
        .find_iter(&dom)
        .count();
    assert_eq!(
        graph_nodes,
        5 + 8,
        "the DAG drawn once: the archive's steps and one account's"
    );
    assert!(
        dom.contains("each of 2 accounts"),
        "the accounts' cluster says how many it stands for"
    );
    assert!(dom.contains("#f4a3a3"), "the failed node is colored");
    assert!(
        dom.contains("1 failed · 1 done"),
        "bucket-check counts each state"
    );
    let bars = Regex::new(r#"<rect class="bar (done|failed|retried)""#)
        .unwrap()
        .find_iter(&dom)
        .count();
    let attempts: u64 = th
        .json(&["status"], 0)
        .iter()
        .filter(|l| l["type"] == "node")
        .map(|l| l["attempts"].as_u64().unwrap())
        .sum();
    assert_eq!(bars as u64, attempts, "one timeline bar per attempt");
    assert!(
        dom.contains(r#"<tr class="failed" data-account="200000000002">"#),
        "{dom}"
    );
    let failures = dom.find("id=\"failures\"").unwrap();
    let matrix = dom.find("id=\"matrix\"").unwrap();
    let timeline = dom.find("id=\"timeline\"").unwrap();
    assert!(
        failures < matrix && matrix < timeline,
        "failures, then the matrix, then the timeline"
    );
    assert!(dom[failures..matrix].contains("1 account failed at bucket-check: NoSuchBucket"));
    assert!(dom[failures..matrix].contains("What to do:"));
    let shot = th.dir.path().join("report.png");
    let out = chromium(&[&format!("--screenshot={}", shot.display())]);
    assert!(out.status.success());
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a screenshot with content"
    );
}

#[test]
fn the_readme_demo_shows_progress_in_a_terminal_and_writes_the_report() {
    let out_dir = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("script")
        .args(["-qefc", &format!("{root}/scripts/demo"), "/dev/null"])
        .env("TRAILHUB_DEMO_OUT", out_dir.path())
        // The binary cargo built for this test: the demo's own `cargo build` can mean a second
        // build of every dependency with other features (minutes on a fresh CI machine).
        .env("TRAILHUB_BIN", env!("CARGO_BIN_EXE_trailhub"))
        .env("TERM", "xterm")
        .env_remove("CI")
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    for shown in [
        "trailhub plan",
        "Plan: ",
        "steps, ETA",
        "✓ 666666666666 done",
        "Run ",
        "succeeded",
        "ACCOUNT",
        "STATE",
        "trailhub graph",
        "Verified 6 accounts",
        "report of run",
    ] {
        assert!(
            screen.contains(shown),
            "the demo shows {shown:?}:\n{screen}"
        );
    }
    let canaries: Vec<&str> = screen
        .lines()
        .filter(|l| {
            l.contains("REPLICATED") && l.contains("REPLICA, STANDARD_IA, GOVERNANCE until")
        })
        .collect();
    assert_eq!(
        canaries.len(),
        5,
        "the demo ends with five canaries delivered and locked:\n{screen}"
    );
    let report = std::fs::read_to_string(out_dir.path().join("report.html")).unwrap();
    assert!(report.contains("<svg") && report.contains("id=\"run-status\">succeeded<"));
}
