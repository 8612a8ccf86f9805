//! A journal written by the previous release (format 1: `tests/fixtures/journal-v1`, written by
//! its `make.py` with trailhub at commit 0e497ad) is migrated when this trailhub opens it, then
//! resumed and rolled back, its undo records of the old shapes included.

use crate::support::article::{archive_policy, assert_source, bucket_exists, snapshot};
use crate::support::*;
use serde_json::json;
use std::path::{Path, PathBuf};

const A: &str = "222222222222";
const B: &str = "333333333333";

fn fixture() -> PathBuf {
    root().join("tests/fixtures/journal-v1")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The stack A had before the fixture's run, made by hand from an older template.
fn create_older_stack(emu: &Emulator) {
    let template = std::fs::read_to_string(fixture().join("older-template.json")).unwrap();
    let cfn = emu.cfn(A);
    emu.rt.block_on(async {
        cfn.create_stack()
            .stack_name("cloudtrail-replication-role")
            .template_body(template)
            .parameters(
                aws_sdk_cloudformation::types::Parameter::builder()
                    .parameter_key("DestinationAccountId")
                    .parameter_value(ARCHIVE)
                    .build(),
            )
            .capabilities(aws_sdk_cloudformation::types::Capability::CapabilityNamedIam)
            .send()
            .await
            .unwrap();
    });
}

/// The `Description` of the template the account's stack has now; `None` without a stack.
fn stack_description(emu: &Emulator, account: &str) -> Option<String> {
    let cfn = emu.cfn(account);
    emu.rt.block_on(async {
        let out = cfn
            .describe_stacks()
            .stack_name("cloudtrail-replication-role")
            .send()
            .await
            .ok()?;
        let stack = out.stacks().first()?;
        if stack.stack_status().map(|s| s.as_str()) == Some("DELETE_COMPLETE") {
            return None;
        }
        let template = cfn
            .get_template()
            .stack_name("cloudtrail-replication-role")
            .send()
            .await
            .ok()?;
        let body: serde_json::Value = serde_json::from_str(template.template_body()?).ok()?;
        body["Description"].as_str().map(str::to_string)
    })
}

#[test]
fn a_journal_of_the_previous_format_is_migrated_resumed_and_rolled_back() {
    let emu = Emulator::start();
    // The accounts as the fixture's run found them: A with its hand-made stack, B without its
    // CloudTrail bucket (it failed at bucket-check).
    emu.seed_source(A);
    create_older_stack(&emu);
    let inventory = std::fs::read_to_string(fixture().join("inventory.toml")).unwrap();
    // What the fixture's run changed, made again here by a run of A alone, in another state
    // directory: the emulator's state is the world the journal describes.
    let setup = Trailhub::new(&emu);
    setup.profiles(&[A.to_string(), B.to_string()]);
    let inv = setup.write_inventory(&inventory);
    setup.expect(&["apply", "-c", inv.to_str().unwrap(), "--account", A], 0);
    assert_eq!(
        stack_description(&emu, A).as_deref(),
        Some("CloudTrail S3 Replication IAM Role for cross-account log aggregation"),
        "the stack now has the article's template"
    );

    let th = Trailhub::new(&emu);
    th.profiles(&[A.to_string(), B.to_string()]);
    th.write_inventory(&inventory);
    copy_dir(&fixture().join("state"), &th.state());
    let marker = || std::fs::read_to_string(th.state().join("trailhub.json")).unwrap();
    assert!(marker().contains("\"version\": 1"), "{}", marker());

    // Opening it migrates it: the run reads as the old binary left it.
    let status = th.json(&["status"], 0);
    assert!(marker().contains("\"version\": 2"), "{}", marker());
    let account = |a: &str| {
        status
            .iter()
            .find(|l| l["type"] == "account" && l["account"] == a)
            .cloned()
            .unwrap()
    };
    // Every step format 1 had is done; the archive key's grant, added since, is not yet.
    assert_eq!(account(A)["result"], "not finished");
    assert_eq!(account(A)["done"], 7);
    assert_eq!(account(A)["steps"], 8);
    assert_eq!(account(B)["result"], "failed");
    assert_eq!(account(B)["error"]["code"], "NoSuchBucket");

    // B's bucket is there now: resume finishes B only.
    emu.seed_source(B);
    th.expect(&["resume"], 0);
    assert_source(&emu, B);

    // The whole run is rolled back with the undo records each release wrote.
    let (out, _) = th.expect(&["rollback"], 0);
    assert_eq!(
        stack_description(&emu, A).as_deref(),
        Some("CloudTrail S3 Replication IAM Role (made by hand, before trailhub)"),
        "A's stack is back to the template it had (a format-1 undo record, migrated): {out}"
    );
    assert_eq!(
        stack_description(&emu, B),
        None,
        "B's stack, created by the resume, deleted"
    );
    for a in [A, B] {
        assert_eq!(snapshot(&emu, a)["replication"], json!(null), "{a}");
    }
    assert_eq!(
        archive_policy(&emu),
        None,
        "both principals removed, then the policy"
    );
    // The journal says this run created the archive bucket, but the bucket there now was made
    // (and tagged) by the setup's run, in another state directory: a format-1 undo record
    // proves nothing about ownership, so the bucket is kept, and the rollback says why.
    assert!(
        bucket_exists(&emu, ARCHIVE, &archive_bucket()),
        "the archive bucket another run created is kept: {out}"
    );
    assert!(
        out.contains(&format!("bucket {} kept", archive_bucket()))
            && out.contains("another run made it"),
        "{out}"
    );
}
