//! Bad input (issue 7): each case exits 2 with a message naming the problem and the fix,
//! before any AWS request (moto's recorder sees none), and without a panic.

use crate::support::*;

const GOOD: &str = "region = \"ap-northeast-1\"\n[archive]\naccount_id = \"111111111111\"\n[[source]]\naccount_id = \"222222222222\"\n";

/// Runs `args` with `inventory` written first; asserts exit 2, no request, no panic, and that
/// stderr holds every one of `needles`.
fn refused(
    emu: &Emulator,
    th: &Trailhub,
    inventory: Option<&str>,
    args: &[&str],
    needles: &[&str],
) {
    if let Some(text) = inventory {
        th.write_inventory(text);
    }
    emu.start_recording();
    let (_, stderr) = th.expect(args, 2);
    let requests = emu.stop_recording();
    assert!(
        requests.is_empty(),
        "{args:?} made AWS requests: {requests:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?}: {needle:?} not in:\n{stderr}"
        );
    }
}

#[test]
fn every_kind_of_bad_inventory_is_refused_before_any_request() {
    let emu = Emulator::start();
    let th = Trailhub::new(&emu);
    let inv = th.dir.path().join("inventory.toml");
    let inv = inv.to_str().unwrap();
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            "region = \"ap-northeast-1\"\n[archive\n".into(),
            vec!["is not valid TOML", "line 2"],
        ),
        (
            GOOD.replace("[[source]]", "colour = \"blue\"\n[[source]]"),
            vec!["archive.colour: unknown key", "known keys here: account_id"],
        ),
        (
            GOOD.replace("222222222222", "2222"),
            vec!["source[0].account_id: `2222` is not an AWS account id (12 digits, quoted)"],
        ),
        (
            GOOD.replace("account_id = \"111111111111\"", "account_id = 111111111111"),
            vec!["write the account id as a string"],
        ),
        (
            format!("{GOOD}[[source]]\naccount_id = \"222222222222\"\n"),
            vec!["source[1].account_id: `222222222222` is listed twice (also source[0])"],
        ),
        (
            GOOD.replace("222222222222", "111111111111"),
            vec!["is the archive account; the archive is not a source"],
        ),
        (
            format!("{GOOD}bucket = \"My_Bucket\"\n"),
            vec!["source[0].bucket: `My_Bucket` is not a valid S3 bucket name"],
        ),
        (
            format!("{GOOD}bucket = \"logs-{{account}}\"\n"),
            vec!["unknown placeholder `{account}`; only {account_id} is defined"],
        ),
        (
            GOOD.replace("ap-northeast-1", "ap-nowhere-9"),
            vec!["region: unknown region `ap-nowhere-9`", "known regions:"],
        ),
        (
            GOOD.replace("[[source]]\naccount_id = \"222222222222\"\n", ""),
            vec!["at least one [[source]]"],
        ),
    ];
    for (text, needles) in &cases {
        for command in [
            vec!["apply", "-c", inv],
            vec!["plan", "-c", inv],
            vec!["verify", "-c", inv],
        ] {
            refused(&emu, &th, Some(text), &command, needles);
        }
    }
    // All problems at once.
    let many = GOOD
        .replace("222222222222", "2222")
        .replace("ap-northeast-1", "nowhere");
    refused(
        &emu,
        &th,
        Some(&many),
        &["apply", "-c", inv],
        &["has 2 problems", "region:", "source[0].account_id:"],
    );
    assert!(!th.state().exists(), "nothing was journaled");
    refused(
        &emu,
        &th,
        None,
        &["apply", "-c", "/nonexistent/inventory.toml"],
        &[
            "cannot read inventory /nonexistent/inventory.toml",
            "pass the inventory with -c FILE",
        ],
    );
    refused(
        &emu,
        &th,
        Some(GOOD),
        &["apply", "-c", inv, "--account", "999999999999"],
        &["--account 999999999999 is not a source of the inventory"],
    );
}

#[test]
fn bad_state_directories_and_run_ids_are_refused() {
    let emu = Emulator::start();
    let th = Trailhub::new(&emu);
    let inv = th.write_inventory(GOOD);
    let inv = inv.to_str().unwrap();

    refused(
        &emu,
        &th,
        None,
        &["status"],
        &["no trailhub journal at", "run `trailhub apply` first"],
    );

    // A directory that holds something else.
    let other = th.dir.path().join("photos");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("cat.jpg"), b"meow").unwrap();
    let other = other.to_str().unwrap();
    for args in [
        vec!["--state", other, "apply", "-c", inv],
        vec!["--state", other, "status"],
        vec!["--state", other, "resume"],
    ] {
        refused(
            &emu,
            &th,
            None,
            &args,
            &[
                "is not a trailhub state directory",
                "pass --state with a new or empty directory",
            ],
        );
    }
    assert_eq!(
        std::fs::read(th.dir.path().join("photos/cat.jpg")).unwrap(),
        b"meow",
        "nothing was touched"
    );

    // A journal written by a newer trailhub.
    let newer = th.dir.path().join("newer");
    std::fs::create_dir_all(&newer).unwrap();
    std::fs::write(
        newer.join("trailhub.json"),
        r#"{"format":"trailhub-journal","version":7}"#,
    )
    .unwrap();
    let newer = newer.to_str().unwrap();
    for args in [
        vec!["--state", newer, "apply", "-c", inv],
        vec!["--state", newer, "resume"],
        vec!["--state", newer, "runs"],
    ] {
        refused(
            &emu,
            &th,
            None,
            &args,
            &[
                "format version 7, newer than this trailhub writes (2)",
                "upgrade trailhub",
            ],
        );
    }

    // An unknown run id, once a journal exists.
    emu.seed_source("222222222222");
    th.profile("222222222222", "222222222222");
    th.expect(&["apply", "-c", inv], 1);
    for args in [
        vec!["status", "nope"],
        vec!["resume", "nope"],
        vec!["rollback", "nope"],
        vec!["history", "nope"],
        vec!["graph", "--run", "nope"],
    ] {
        refused(
            &emu,
            &th,
            None,
            &args,
            &[
                "no run `nope` in this journal",
                "`trailhub runs` lists the runs",
            ],
        );
    }
    refused(
        &emu,
        &th,
        None,
        &["rollback", "--account", "333333333333"],
        &["has no account 333333333333"],
    );
}
