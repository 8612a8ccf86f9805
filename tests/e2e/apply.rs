//! `apply` performs every step of the article (issue 3), read back with the SDK.

use crate::support::article::{
    archive_policy, assert_archive, assert_policy, assert_source, principals,
};
use crate::support::*;
use serde_json::json;

#[test]
fn one_source_gets_the_articles_configuration() {
    let emu = Emulator::start();
    let sources = accounts(1);
    emu.seed_sources(&sources);
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    let (_, stderr) = th.expect(&["apply", "-c", inv.to_str().unwrap()], 0);
    assert!(stderr.contains("onboarding 1 account"), "{stderr}");
    assert_archive(&emu);
    assert_source(&emu, &sources[0]);
    assert_policy(&emu, &sources);
}

#[test]
fn twelve_sources_in_one_run_then_a_converged_reapply_changes_nothing() {
    let emu = Emulator::start();
    let sources = accounts(12);
    emu.seed_sources(&sources);
    let th = Trailhub::new(&emu);
    th.profiles(&sources);
    let inv = th.write_inventory(&inventory(&sources, ""));
    let started = std::time::Instant::now();
    let lines = th.json(&["apply", "-c", inv.to_str().unwrap()], 0);
    eprintln!("apply of 12 accounts took {:?}", started.elapsed());
    let finished = lines
        .iter()
        .find(|l| l["type"] == "run-finished")
        .expect("a summary line");
    assert_eq!(finished["status"], "succeeded");
    assert_eq!(finished["accounts_succeeded"], 13);
    assert_archive(&emu);
    for s in &sources {
        assert_source(&emu, s);
    }
    assert_policy(&emu, &sources);

    emu.start_recording();
    let lines = th.json(&["apply", "-c", inv.to_str().unwrap()], 0);
    let requests = emu.stop_recording();
    let finished = lines
        .iter()
        .find(|l| l["type"] == "run-finished")
        .expect("a summary line");
    assert_eq!(finished["steps_changed"], 0);
    assert!(!requests.is_empty(), "the re-apply probed live state");
    let mutating: Vec<_> = requests.iter().filter(|r| r.mutating).collect();
    assert!(
        mutating.is_empty(),
        "a converged re-apply mutates nothing: {mutating:?}"
    );
    // Each resource is read once: verify reuses what the steps read and did not change. (The
    // archive's retention and lifecycle steps read nothing without `[archive] retention` or
    // `lifecycle`, and one configuration each with them: archive_retention.rs counts those.)
    for s in &sources {
        let mine: Vec<&str> = requests
            .iter()
            .filter(|r| r.account == *s)
            .map(|r| r.operation.as_str())
            .collect();
        eprintln!("converged re-apply, account {s}: {} requests", mine.len());
        assert!(
            mine.len() <= 12,
            "{s}: {} requests in a converged re-apply (at most 12): {mine:?}",
            mine.len()
        );
    }
}

#[test]
fn adding_accounts_later_adds_only_their_principals() {
    let emu = Emulator::start();
    let all = accounts(5);
    emu.seed_sources(&all);
    let th = Trailhub::new(&emu);
    th.profiles(&all);
    let first = th.write_inventory(&inventory(&all[..2], ""));
    th.expect(&["apply", "-c", first.to_str().unwrap()], 0);

    // An operator's own statement in the archive policy must survive later grants.
    let mut policy = archive_policy(&emu).expect("policy");
    let unrelated = json!({
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [format!("arn:aws:s3:::{}", archive_bucket()), format!("arn:aws:s3:::{}/*", archive_bucket())],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}
    });
    policy["Statement"]
        .as_array_mut()
        .unwrap()
        .push(unrelated.clone());
    let s3 = emu.s3(ARCHIVE);
    emu.rt.block_on(async {
        s3.put_bucket_policy()
            .bucket(archive_bucket())
            .policy(policy.to_string())
            .send()
            .await
            .expect("put the operator's policy");
    });

    let later = th.write_inventory(&inventory(&all, ""));
    emu.start_recording();
    th.expect(&["apply", "-c", later.to_str().unwrap()], 0);
    let requests = emu.stop_recording();
    assert_policy(&emu, &all);
    let policy = archive_policy(&emu).expect("policy");
    let kept = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "DenyInsecureTransport")
        .expect("the unrelated statement is still there");
    assert_eq!(kept, &unrelated);
    for old in &all[..2] {
        let touched: Vec<_> = requests
            .iter()
            .filter(|r| r.mutating && &r.account == old)
            .collect();
        assert!(touched.is_empty(), "nothing changes in {old}: {touched:?}");
    }
    for new in &all[2..] {
        assert!(
            requests
                .iter()
                .any(|r| r.mutating && &r.account == new && r.operation == "CreateStack")
        );
    }
    let puts = requests
        .iter()
        .filter(|r| r.operation.starts_with("PUT") && r.operation.ends_with("?policy"))
        .count();
    assert!(
        (1..=3).contains(&puts),
        "the new grants are written in few policy writes: {puts}"
    );
}

/// Members reached with `assume_role`: AssumeRole's answer (the session's ARN, in the role's
/// account) is the identity check, so no member asks GetCallerIdentity, in apply and in the
/// converged re-apply alike. (A role in another account than the one declared is refused by
/// the inventory check before any request.)
#[test]
fn an_assumed_role_is_its_own_identity_check() {
    let emu = Emulator::start();
    let sources = accounts(3);
    emu.seed_sources(&sources);
    let th = Trailhub::new(&emu);
    let inv = th.write_inventory(&inventory(&sources, "").replace(
        "profile = \"acct-{account_id}\"",
        "assume_role = \"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole\"",
    ));
    let inv = inv.to_str().unwrap();
    for (run, mutations) in [("apply", true), ("converged re-apply", false)] {
        emu.start_recording();
        th.expect(&["apply", "-c", inv], 0);
        let requests = emu.stop_recording();
        let count = |op: &str| requests.iter().filter(|r| r.operation == op).count();
        // One AssumeRole per member; one GetCallerIdentity: the archive's (default credentials).
        assert_eq!(count("AssumeRole"), 3, "{run}: {requests:?}");
        assert_eq!(count("GetCallerIdentity"), 1, "{run}: {requests:?}");
        assert_eq!(
            requests.iter().any(|r| r.mutating),
            mutations,
            "{run}: {requests:?}"
        );
    }
    for s in &sources {
        assert_source(&emu, s);
    }
}

#[test]
fn credentials_of_another_account_fail_before_any_change_there() {
    let emu = Emulator::start();
    let sources = accounts(3);
    emu.seed_sources(&sources);
    let th = Trailhub::new(&emu);
    th.profile(&sources[0], &sources[0]);
    th.profile(&sources[1], &sources[1]);
    // A profile that resolves to some other account than the one declared.
    let wrong = "299999999999";
    th.profile(&sources[2], wrong);
    let inv = th.write_inventory(&inventory(&sources, ""));
    emu.start_recording();
    let (stdout, _) = th.expect(&["apply", "-c", inv.to_str().unwrap()], 1);
    let requests = emu.stop_recording();
    assert!(stdout.contains("WrongAccount"), "{stdout}");
    let by_wrong: Vec<_> = requests
        .iter()
        .filter(|r| r.account == wrong && r.mutating)
        .collect();
    assert!(
        by_wrong.is_empty(),
        "no mutation with the wrong credentials: {by_wrong:?}"
    );
    let status = th.json(&["status"], 0);
    let identity = status
        .iter()
        .find(|l| l["node"] == format!("{}/identity", sources[2]))
        .expect("identity node");
    assert_eq!(identity["state"], "failed");
    assert_eq!(identity["error"]["code"], "WrongAccount");
    assert_source(&emu, &sources[0]);
    assert_source(&emu, &sources[1]);
    let policy = archive_policy(&emu).expect("policy");
    assert_eq!(
        principals(&policy, "AllowReplicationFromSourceAccount").len(),
        2
    );
}
