//! Fleet views (issue 21): fifty accounts, three of them without their CloudTrail bucket, as an
//! operator onboarding a fleet sees them: `plan`, `apply`'s summary and `status` fit on a screen
//! with the failures first, and the report's failures and matrix are in view at 1400×900.

use crate::support::*;

/// The accounts without a bucket: 200000000011, 200000000012, 200000000013.
const BROKEN: [&str; 3] = ["200000000011", "200000000012", "200000000013"];

/// The lines of what a command printed on stdout (its progress goes to stderr).
fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn fifty_accounts_with_three_failures_read_on_one_screen() {
    let emu = Emulator::start();
    let sources = accounts(50);
    let healthy: Vec<String> = sources
        .iter()
        .filter(|a| !BROKEN.contains(&a.as_str()))
        .cloned()
        .collect();
    emu.seed_sources(&healthy);
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    let inv = inv.to_str().unwrap();

    let (plan, _) = th.expect(&["plan", "-c", inv], 1);
    eprintln!("--- plan\n{plan}");
    let plan_lines = lines(&plan);
    assert!(plan_lines.len() <= 60, "plan: {} lines", plan_lines.len());
    let errors_at = plan
        .find("3 accounts — 200000000011 200000000012 200000000013\n")
        .expect("the three accounts without a bucket are one group");
    let archive_at = plan.find("archive (111111111111)").expect("the archive");
    let rest_at = plan
        .find("47 accounts — 200000000001 200000000002")
        .expect("the 47 others are one group");
    assert!(
        errors_at < archive_at && archive_at < rest_at,
        "errors first:\n{plan}"
    );
    assert!(plan.contains("NoSuchBucket] source bucket cm-members-cloudtrail-{account_id} does not exist in account {account_id}"));
    let (full, _) = th.expect(&["plan", "-c", inv, "--all"], 1);
    assert_eq!(
        full.matches("\naccount 2000000000").count(),
        50,
        "--all lists every account"
    );

    let (apply, _) = th.expect(&["apply", "-c", inv], 1);
    eprintln!("--- apply (stdout)\n{apply}");
    let apply_lines = lines(&apply);
    assert!(
        apply_lines.len() <= 15,
        "apply's summary: {} lines",
        apply_lines.len()
    );
    assert!(
        apply_lines[0].contains("47 succeeded, 3 failed, 0 blocked, 0 pending"),
        "{apply}"
    );
    assert_eq!(
        apply_lines[2],
        "3 accounts failed at bucket-check: NoSuchBucket — 200000000011 200000000012 200000000013"
    );
    assert!(apply.contains("what to do: create the CloudTrail bucket cm-members-cloudtrail-{account_id} in account {account_id}"));
    for healthy in ["200000000001  succeeded", "200000000050  succeeded"] {
        assert!(
            !apply.contains(healthy),
            "accounts done are not listed: {apply}"
        );
    }
    assert!(apply.contains("200000000012  failed"), "{apply}");

    let (status, _) = th.expect(&["status"], 0);
    eprintln!("--- status\n{status}");
    let status_lines = lines(&status);
    assert!(
        status_lines.len() <= 15,
        "status: {} lines",
        status_lines.len()
    );
    assert!(
        status_lines[3].starts_with("3 accounts failed at bucket-check: NoSuchBucket"),
        "{status}"
    );
    let (all, _) = th.expect(&["status", "--all"], 0);
    assert!(
        all.contains("200000000050  verify        done"),
        "--all lists every step"
    );

    let json = th.json(&["status"], 0);
    let groups: Vec<&serde_json::Value> = json
        .iter()
        .filter(|l| l["type"] == "failure-group")
        .collect();
    assert_eq!(groups.len(), 1, "one failure group: {groups:?}");
    assert_eq!(groups[0]["step"], "bucket-check");
    assert_eq!(groups[0]["code"], "NoSuchBucket");
    assert_eq!(groups[0]["accounts"], serde_json::json!(BROKEN));
    // What the journal says, read back through the other view: the accounts' lines agree.
    let failed: Vec<&str> = json
        .iter()
        .filter(|l| l["type"] == "account" && l["result"] == "failed")
        .map(|l| l["account"].as_str().unwrap())
        .collect();
    assert_eq!(failed, BROKEN);

    let report = th.dir.path().join("report.html");
    th.expect(&["report", "-o", report.to_str().unwrap()], 0);
    let seen = crate::report::layout_at(&report, 1400, 900);
    assert!(
        seen.failures_bottom <= 900.0,
        "the failures are in view: {seen:?}"
    );
    assert!(
        seen.first_failed_row_bottom <= 900.0,
        "the matrix's failed rows are in view: {seen:?}"
    );
    if let Some(dir) = std::env::var_os("TRAILHUB_REPORT_SCREENSHOT") {
        let shot = std::path::Path::new(&dir).join("report.png");
        crate::report::screenshot(&report, &shot, 1400, 900);
        std::fs::copy(&report, std::path::Path::new(&dir).join("report-50.html")).unwrap();
    }
}
