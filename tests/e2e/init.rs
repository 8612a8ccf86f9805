//! `trailhub init --from-aws-config` (issue 21): an inventory written from an AWS config file
//! of SSO and assume-role profiles, read back as trailhub reads any inventory, and used.

use crate::support::*;
use std::collections::BTreeMap;

/// A config as `aws configure sso` leaves it for a fleet: one SSO session, the log archive and
/// 20 member accounts with an administrator profile each, a read-only profile for some, an
/// old-style SSO profile (its start URL in the profile), assume-role profiles, and profiles
/// that name no account or a malformed one.
fn fleet_config() -> String {
    let mut text = String::from(
        "[default]\nregion = ap-northeast-1\noutput = json\n\n\
         [sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = us-east-1\n\
         sso_registration_scopes = sso:account:access\n\n\
         [profile log-archive-admin]\nsso_session = corp\nsso_account_id = 111111111111\n\
         sso_role_name = AdministratorAccess\nregion = ap-northeast-1\n\n",
    );
    for i in 1..=20 {
        text.push_str(&format!(
            "[profile team-{i:02}-admin]\nsso_session = corp\nsso_account_id = 2000000000{i:02}\n\
             sso_role_name = AdministratorAccess\nregion = ap-northeast-1\n\n"
        ));
        if i % 4 == 0 {
            text.push_str(&format!(
                "[profile team-{i:02}-readonly]\nsso_session = corp\nsso_account_id = 2000000000{i:02}\n\
                 sso_role_name = ReadOnlyAccess\nregion = ap-northeast-1\n\n"
            ));
        }
    }
    text.push_str(
        "# An SSO profile of the legacy form.\n[profile legacy]\nsso_start_url = https://corp.awsapps.com/start\n\
         sso_region = us-east-1\nsso_account_id = 300000000001\nsso_role_name = AdministratorAccess\n\n\
         [profile ops-a]\nrole_arn = arn:aws:iam::300000000002:role/OrganizationAccountAccessRole\n\
         source_profile = base\nregion = ap-northeast-1\n\n\
         [profile ops-b]\nrole_arn = arn:aws:iam::300000000003:role/OrganizationAccountAccessRole\n\
         source_profile = base\n\n\
         [profile archive-readonly]\nsso_session = corp\nsso_account_id = 111111111111\nsso_role_name = ReadOnlyAccess\n\n\
         [profile typo]\nsso_session = corp\nsso_account_id = 20000000001\nsso_role_name = AdministratorAccess\n\n\
         [profile tools]\ncredential_process = /usr/local/bin/get-creds\n",
    );
    text
}

/// The `(account_id, profile)` of every `[[source]]` of an inventory, and its archive's.
fn sources_of(inventory: &str) -> (Vec<(String, String)>, Option<String>) {
    let value = |line: &str| line.split('"').nth(1).unwrap_or_default().to_string();
    let mut sources = Vec::new();
    let mut archive_profile = None;
    let mut section = "";
    let mut account = String::new();
    for line in inventory.lines() {
        if line.starts_with('[') {
            section = if line == "[archive]" {
                "archive"
            } else if line == "[[source]]" {
                "source"
            } else {
                ""
            };
        } else if line.starts_with("account_id = ") {
            account = value(line);
        } else if line.starts_with("profile = ") {
            match section {
                "source" => sources.push((account.clone(), value(line))),
                "archive" => archive_profile = Some(value(line)),
                _ => {}
            }
        }
    }
    (sources, archive_profile)
}

#[test]
fn twenty_sso_profiles_round_trip_into_an_inventory_that_loads() {
    let emu = Emulator::start();
    let th = Trailhub::new(&emu);
    std::fs::write(th.dir.path().join("aws-config"), fleet_config()).unwrap();
    std::fs::write(
        th.dir.path().join("aws-credentials"),
        "[base]\naws_access_key_id = 111111111111\naws_secret_access_key = emulator\n",
    )
    .unwrap();
    let (said, _) = th.expect(
        &[
            "init",
            "--from-aws-config",
            "--match",
            "admin$",
            "-o",
            "inventory.toml",
        ],
        0,
    );
    eprintln!("--- init\n{said}");
    let written = std::fs::read_to_string(th.dir.path().join("inventory.toml")).unwrap();
    eprintln!("--- inventory.toml\n{written}");
    let (sources, archive_profile) = sources_of(&written);
    let mut expected: Vec<(String, String)> = (1..=20)
        .map(|i| (format!("2000000000{i:02}"), format!("team-{i:02}-admin")))
        .collect();
    expected.extend([
        ("300000000001".into(), "legacy".into()),
        ("300000000002".into(), "ops-a".into()),
        ("300000000003".into(), "ops-b".into()),
    ]);
    assert_eq!(
        sources, expected,
        "one source per account, through the matching profile"
    );
    assert_eq!(archive_profile.as_deref(), Some("log-archive-admin"));
    assert!(written.contains("account_id = \"111111111111\""));
    assert!(written.contains("region = \"ap-northeast-1\""));

    // What was left out, and why.
    let skipped: BTreeMap<&str, &str> = said
        .lines()
        .filter_map(|l| l.strip_prefix("  ")?.split_once(": "))
        .collect();
    assert_eq!(
        skipped.get("team-04-readonly").copied(),
        Some(
            "a duplicate: account 200000000004 is reached through profile team-04-admin, which matches --match"
        )
    );
    assert!(
        skipped["archive-readonly"].starts_with("the archive account 111111111111"),
        "{said}"
    );
    assert!(skipped["default"].contains("names no account"), "{said}");
    assert!(skipped["base"].contains("names no account"), "{said}");
    assert!(skipped["tools"].contains("names no account"), "{said}");
    assert!(
        skipped["typo"].contains("`20000000001` is not a 12-digit account id"),
        "{said}"
    );
    assert_eq!(skipped.len(), 4 + 1 + 5, "{said}");

    // trailhub reads it back as any inventory: the graph of 23 sources and the archive.
    let (graph, _) = th.expect(&["graph", "-c", "inventory.toml"], 0);
    let groups: Vec<&str> = graph.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(groups.len(), 24, "{graph}");

    // An existing file is kept unless --force; `-o -` writes the inventory to stdout.
    let (_, err) = th.expect(&["init", "--from-aws-config", "-o", "inventory.toml"], 2);
    assert!(err.contains("inventory.toml exists: pass --force"), "{err}");
    let (stdout, stderr) = th.expect(
        &["init", "--from-aws-config", "--match", "admin$", "-o", "-"],
        0,
    );
    assert_eq!(stdout.trim_end(), written.trim_end());
    assert!(stderr.contains("Skipped 10 profiles"), "{stderr}");
}

#[test]
fn the_profiles_it_writes_reach_their_accounts() {
    let emu = Emulator::start();
    let sources = accounts(2);
    emu.seed_sources(&sources);
    let th = Trailhub::new(&emu);
    let mut config = String::from("[default]\nregion = ap-northeast-1\n");
    for s in &sources {
        config.push_str(&format!(
            "\n[profile member-{s}]\nrole_arn = arn:aws:iam::{s}:role/OrganizationAccountAccessRole\nsource_profile = base\nregion = ap-northeast-1\n"
        ));
    }
    std::fs::write(th.dir.path().join("aws-config"), config).unwrap();
    std::fs::write(
        th.dir.path().join("aws-credentials"),
        format!("[base]\naws_access_key_id = {ARCHIVE}\naws_secret_access_key = emulator\n"),
    )
    .unwrap();
    th.expect(
        &[
            "init",
            "--from-aws-config",
            "--archive",
            ARCHIVE,
            "-o",
            "inventory.toml",
        ],
        0,
    );
    // plan resolves each profile (AssumeRole from `base`) and checks its identity: an account
    // reached as another would fail there.
    let lines = th.json(&["plan", "-c", "inventory.toml"], 0);
    for s in &sources {
        let identity = lines
            .iter()
            .find(|l| l["node"] == format!("{s}/identity"))
            .expect("the identity step is planned");
        assert_eq!(identity["action"], "no-op", "{identity}");
        assert!(
            identity["note"]
                .as_str()
                .unwrap()
                .contains(&format!("arn:aws:sts::{s}:")),
            "{identity}"
        );
    }
}
