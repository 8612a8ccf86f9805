//! The delivery check's prediction against what the emulator did (issue 20). For every layout
//! of "Prove that the logs arrive", in every policy mode, and for four refusals made by hand
//! (an archive policy without the role, a Deny on `s3:ReplicateObject`, an archive key policy
//! without the role, an archive key context naming another prefix): `verify --output json`
//! says what trailhub predicts, a log is then written, and the emulator's replication log
//! says what S3 did. The two evaluators are independent (Rust from AWS's docs; the emulator's
//! own Python), so agreement is evidence, not tautology. The agreement table goes to stderr.

use crate::delivery::{LAYOUTS, Layout, MODES, Mode, REGION, event, log_key, seed, write_log};
use crate::support::*;
use serde_json::{Value, json};

/// A refusal made by hand after apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The member's principal taken out of the archive bucket policy.
    PolicyWithoutRole,
    /// A Deny on `s3:ReplicateObject` added to the archive bucket policy.
    DenyReplicate,
    /// The member's role taken out of the archive key policy.
    KeyWithoutRole,
    /// The archive key's encryption-context condition names another prefix.
    KeyOtherContext,
}

impl Refusal {
    fn name(self) -> &'static str {
        match self {
            Refusal::PolicyWithoutRole => "archive policy without the role",
            Refusal::DenyReplicate => "Deny on s3:ReplicateObject",
            Refusal::KeyWithoutRole => "archive key policy without the role",
            Refusal::KeyOtherContext => "key context names another prefix",
        }
    }

    fn layout(self) -> Layout {
        match self {
            Refusal::PolicyWithoutRole | Refusal::DenyReplicate => Layout::Plain,
            Refusal::KeyWithoutRole | Refusal::KeyOtherContext => Layout::TrailKms,
        }
    }
}

const REFUSALS: [Refusal; 4] = [
    Refusal::PolicyWithoutRole,
    Refusal::DenyReplicate,
    Refusal::KeyWithoutRole,
    Refusal::KeyOtherContext,
];

/// One row of the agreement table.
struct Row {
    case: String,
    mode: &'static str,
    prediction: String,
    emulator: String,
    agree: Result<(), String>,
}

/// Each account's `delivery` object from `verify --output json`.
fn predictions(th: &Trailhub, inv: &str, code: i32) -> Vec<(String, Value)> {
    th.json(&["verify", "-c", inv, "--output", "json"], code)
        .into_iter()
        .filter(|l| !l["delivery"].is_null() && l["account"].is_string())
        .map(|l| {
            (
                l["account"].as_str().unwrap().to_string(),
                l["delivery"].clone(),
            )
        })
        .collect()
}

fn prediction_of(all: &[(String, Value)], account: &str) -> Value {
    all.iter()
        .find(|(a, _)| a == account)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| json!({"verdict": "none"}))
}

fn show_prediction(p: &Value) -> String {
    match p["verdict"].as_str() {
        Some("would_fail") => format!(
            "would fail: {} ({}{})",
            p["request"]
                .as_str()
                .unwrap_or("?")
                .split(" on ")
                .next()
                .unwrap_or("?"),
            p["policy"].as_str().unwrap_or("?"),
            p["statement"]
                .as_str()
                .map(|s| format!(", {s}"))
                .unwrap_or_default()
        ),
        Some(v) => v.replace('_', " "),
        None => "?".into(),
    }
}

fn show_outcome(e: Option<&Value>) -> String {
    match e {
        None => "not replicated".into(),
        Some(e) if e["status"] == "COMPLETED" => "delivered".into(),
        Some(e) => {
            let d = &e["denied"];
            let statement = d["statement"]
                .as_str()
                .map(str::to_string)
                .or_else(|| d["unmatched"][0]["statement"].as_str().map(str::to_string));
            format!(
                "FAILED: {} ({}{})",
                d["action"].as_str().unwrap_or("?"),
                d["policy"].as_str().unwrap_or("?"),
                statement.map(|s| format!(", {s}")).unwrap_or_default()
            )
        }
    }
}

/// Whether the prediction and the emulator's outcome say the same: delivered and `delivers`,
/// or refused for the same request by the same policy (and statement, where the emulator names
/// one).
fn agree(p: &Value, e: Option<&Value>) -> Result<(), String> {
    let delivered = e.is_some_and(|e| e["status"] == "COMPLETED");
    match (p["verdict"].as_str(), delivered) {
        (Some("delivers"), true) => Ok(()),
        (Some("would_fail"), false) => {
            let e = e.ok_or("the emulator replicated nothing")?;
            let d = &e["denied"];
            let action = p["request"]
                .as_str()
                .unwrap_or("")
                .split(" on ")
                .next()
                .unwrap_or("");
            if d["action"] != action {
                return Err(format!(
                    "predicted {action}, the emulator refused {}",
                    d["action"]
                ));
            }
            let policy = p["policy"].as_str().unwrap_or("");
            let emulated = d["policy"].as_str().unwrap_or("");
            let same_policy = (policy.starts_with("archive bucket")
                && emulated.contains("bucket policy"))
                || (policy.starts_with("archive key") && emulated.contains("key policy"))
                || (policy.starts_with("role ") && emulated.contains("role"));
            if !same_policy {
                return Err(format!("predicted {policy}, the emulator names {emulated}"));
            }
            let named: Vec<&str> = d["statement"]
                .as_str()
                .into_iter()
                .chain(
                    d["unmatched"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|m| m["statement"].as_str()),
                )
                .collect();
            match p["statement"].as_str() {
                Some(s) if !named.is_empty() && !named.contains(&s) => Err(format!(
                    "predicted statement {s}, the emulator names {named:?}"
                )),
                _ => Ok(()),
            }
        }
        (v, _) => Err(format!("predicted {v:?}, delivered: {delivered}")),
    }
}

fn layouts_of_mode(emu: &Emulator, mode: Mode) -> Vec<Row> {
    let sources = mode.sources();
    let trail_keys: Vec<_> = sources.iter().map(|(a, l)| seed(emu, a, *l)).collect();
    let th = Trailhub::new(emu);
    let ids: Vec<String> = sources.iter().map(|(a, _)| a.clone()).collect();
    th.profiles(&ids);
    th.profile(mode.archive, mode.archive);
    let inv = th.write_inventory(&mode.inventory());
    let inv = inv.to_str().unwrap();
    th.expect(&["apply", "-c", inv], 0);
    let predicted = predictions(&th, inv, 0);
    sources
        .iter()
        .zip(&trail_keys)
        .map(|((account, layout), trail_key)| {
            let key = log_key(account, *layout, "predicted");
            write_log(emu, account, *layout, &key, trail_key.as_deref(), None);
            let e = event(emu, &source_bucket(account), &key, &mode.archive_bucket());
            let p = prediction_of(&predicted, account);
            Row {
                case: layout.name().to_string(),
                mode: mode.policy,
                prediction: show_prediction(&p),
                emulator: show_outcome(e.as_ref()),
                agree: agree(&p, e.as_ref()),
            }
        })
        .collect()
}

fn put_bucket_policy(emu: &Emulator, account: &str, bucket: &str, policy: &Value) {
    let s3 = emu.s3(account);
    emu.rt.block_on(async {
        s3.put_bucket_policy()
            .bucket(bucket)
            .policy(policy.to_string())
            .send()
            .await
            .expect("put the edited policy");
    });
}

fn bucket_policy(emu: &Emulator, account: &str, bucket: &str) -> Value {
    let s3 = emu.s3(account);
    emu.rt.block_on(async {
        let out = s3.get_bucket_policy().bucket(bucket).send().await.unwrap();
        serde_json::from_str(out.policy().unwrap()).unwrap()
    })
}

/// The archive key (the rule's replica key) and its policy.
fn archive_key(emu: &Emulator, source: &str, archive: &str) -> (String, Value) {
    let s3 = emu.s3(source);
    let kms = emu.kms_in(archive, REGION);
    emu.rt.block_on(async {
        let config = s3
            .get_bucket_replication()
            .bucket(source_bucket(source))
            .send()
            .await
            .unwrap();
        let rule = &config.replication_configuration().unwrap().rules()[0];
        let key = rule
            .destination()
            .unwrap()
            .encryption_configuration()
            .unwrap()
            .replica_kms_key_id()
            .unwrap()
            .to_string();
        let policy = kms
            .get_key_policy()
            .key_id(&key)
            .policy_name("default")
            .send()
            .await
            .unwrap();
        (key, serde_json::from_str(policy.policy().unwrap()).unwrap())
    })
}

fn put_key_policy(emu: &Emulator, archive: &str, key: &str, policy: &Value) {
    let kms = emu.kms_in(archive, REGION);
    emu.rt.block_on(async {
        kms.put_key_policy()
            .key_id(key)
            .policy_name("default")
            .policy(policy.to_string())
            .send()
            .await
            .expect("put the edited key policy");
    });
}

/// Takes `principal` out of every statement that names it; drops the statements left empty.
fn without_principal(policy: &mut Value, principal: &str) {
    let statements = policy["Statement"].as_array_mut().unwrap();
    for s in statements.iter_mut() {
        if let Some(list) = s["Principal"]["AWS"].as_array_mut() {
            list.retain(|p| p != principal);
        } else if s["Principal"]["AWS"] == principal {
            s["Principal"]["AWS"] = json!([]);
        }
    }
    statements.retain(|s| {
        s["Principal"]["AWS"]
            .as_array()
            .is_none_or(|l| !l.is_empty())
    });
}

fn refusal(emu: &Emulator, mode: Mode, index: usize, case: Refusal) -> Row {
    // Each case has an archive and a member of its own: the edits never reach another case.
    let archive = format!("1111111{}{index:02}{:02}", mode_digit(mode), case as u8);
    let archive = archive.as_str();
    let source = format!("24{}{index}{:08}", mode_digit(mode), case as u8);
    let bucket = format!("aggregation-cloudtrail-logs-{archive}");
    let layout = case.layout();
    let trail_key = seed(emu, &source, layout);
    let th = Trailhub::new(emu);
    th.profiles(std::slice::from_ref(&source));
    th.profile(archive, archive);
    let inv = th.write_inventory(&format!(
        "region = \"{REGION}\"\npolicy = \"{}\"\n\n[archive]\naccount_id = \"{archive}\"\nprofile = \"acct-{archive}\"\n\n[source_defaults]\nprofile = \"acct-{{account_id}}\"\n\n[[source]]\naccount_id = \"{source}\"\n",
        mode.policy
    ));
    let inv = inv.to_str().unwrap();
    if case == Refusal::DenyReplicate {
        // Before apply, plan evaluates what apply would write (the role, the grant, the rule):
        // a fresh account delivers.
        let (text, _) = th.expect(&["plan", "-c", inv], 0);
        assert!(
            text.contains("  delivery check: delivers\n")
                && text.contains("delivery: 1 deliver, 0 would fail, 0 unknown"),
            "plan on a fresh account predicts delivery:\n{text}"
        );
    }
    th.expect(&["apply", "-c", inv], 0);
    let role = role_arn(&source);
    let principal = match mode.policy {
        "accounts" => format!("arn:aws:iam::{source}:root"),
        _ => role.clone(),
    };
    match case {
        Refusal::PolicyWithoutRole => {
            let mut policy = bucket_policy(emu, archive, &bucket);
            without_principal(&mut policy, &principal);
            put_bucket_policy(emu, archive, &bucket, &policy);
        }
        Refusal::DenyReplicate => {
            let mut policy = bucket_policy(emu, archive, &bucket);
            policy["Statement"].as_array_mut().unwrap().push(json!({
                "Sid": "DenyReplicationByHand", "Effect": "Deny", "Principal": "*",
                "Action": "s3:ReplicateObject", "Resource": format!("arn:aws:s3:::{bucket}/*"),
            }));
            put_bucket_policy(emu, archive, &bucket, &policy);
        }
        Refusal::KeyWithoutRole => {
            let (key, mut policy) = archive_key(emu, &source, archive);
            without_principal(&mut policy, &principal);
            put_key_policy(emu, archive, &key, &policy);
        }
        Refusal::KeyOtherContext => {
            let (key, mut policy) = archive_key(emu, &source, archive);
            for s in policy["Statement"].as_array_mut().unwrap() {
                if s["Condition"]["StringLike"]["kms:EncryptionContext:aws:s3:arn"].is_array() {
                    s["Condition"]["StringLike"]["kms:EncryptionContext:aws:s3:arn"] =
                        json!([format!("arn:aws:s3:::{bucket}/other-prefix/*")]);
                }
            }
            put_key_policy(emu, archive, &key, &policy);
        }
    }
    let predicted = predictions(&th, inv, 3);
    // What an operator reads: the verdict names the policy, the statement and the fix.
    let (text, _) = th.expect(&["verify", "-c", inv], 3);
    assert!(
        text.contains("would fail")
            && text.contains("a statement trailhub did not write stays after apply"),
        "verify says it, and that apply does not rewrite what is not trailhub's:\n{text}"
    );
    if case == Refusal::DenyReplicate && mode.policy == "article" {
        eprintln!(
            "\n`trailhub verify` after a Deny on s3:ReplicateObject was added by hand:\n{text}"
        );
    }
    if case == Refusal::DenyReplicate {
        // The canary's explanation leads with the verdict, naming the statement: never the
        // fixed list of S3's reasons ("every setting checks out") when a refusal is predicted.
        let lines: Vec<Value> = canary(&th, inv, true)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["type"] == "canary")
            .collect();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["outcome"], "failed", "{lines:?}");
        let causes = lines[0]["causes"].as_array().unwrap();
        let lead = causes[0].as_str().unwrap();
        assert!(
            lead.starts_with("the delivery check says S3 would fail: s3:ReplicateObject")
                && lead.contains("DenyReplicationByHand"),
            "the explanation leads with the verdict: {causes:?}"
        );
        assert!(
            !causes
                .iter()
                .any(|c| c.as_str().unwrap().contains("every setting checks out")),
            "{causes:?}"
        );
        let (plan, _) = th.expect(&["plan", "-c", inv], 0);
        assert!(
            plan.contains("delivery check: would fail: s3:ReplicateObject")
                && plan.contains("statement DenyReplicationByHand")
                && plan.contains("delivery: 0 deliver, 1 would fail, 0 unknown"),
            "plan after the Deny predicts the refusal:\n{plan}"
        );
        if mode.policy == "article" {
            eprintln!("\n`trailhub plan` after the same Deny:\n{plan}");
            let text = canary(&th, inv, false);
            eprintln!("\n`trailhub verify --canary` after the same Deny:\n{text}");
        }
    }
    let key = log_key(&source, layout, "refused");
    write_log(emu, &source, layout, &key, trail_key.as_deref(), None);
    let e = event(emu, &source_bucket(&source), &key, &bucket);
    let p = prediction_of(&predicted, &source);
    Row {
        case: format!("{} ({})", case.name(), layout.name()),
        mode: mode.policy,
        prediction: show_prediction(&p),
        emulator: show_outcome(e.as_ref()),
        agree: agree(&p, e.as_ref()),
    }
}

/// `verify --canary` over `inv` (text, or JSON lines): its stdout; exits 3, the verdict being
/// drift whatever the canary does.
fn canary(th: &Trailhub, inv: &str, json: bool) -> String {
    let mut args = vec!["verify", "-c", inv, "--canary", "--timeout", "30s"];
    if json {
        args.splice(0..0, ["--output", "json"]);
    }
    let out = th
        .command()
        .env("TRAILHUB_CANARY_POLL_MS", "100")
        .args(&args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(3), "verify --canary: {stdout}");
    stdout
}

fn mode_digit(mode: Mode) -> u8 {
    match mode.policy {
        "article" => 1,
        "least-privilege" => 2,
        _ => 3,
    }
}

#[test]
fn the_delivery_check_predicts_what_the_emulator_does_for_every_layout_and_refusal() {
    let emu = Emulator::start();
    let mut rows: Vec<Row> = std::thread::scope(|scope| {
        let emu = &emu;
        let layouts: Vec<_> = MODES
            .iter()
            .map(|mode| scope.spawn(move || layouts_of_mode(emu, *mode)))
            .collect();
        let refusals: Vec<_> = MODES
            .iter()
            .flat_map(|mode| {
                REFUSALS
                    .iter()
                    .enumerate()
                    .map(move |(i, case)| (*mode, i, *case))
            })
            .map(|(mode, i, case)| scope.spawn(move || vec![refusal(emu, mode, i, case)]))
            .collect();
        layouts
            .into_iter()
            .chain(refusals)
            .flat_map(|h| h.join().expect("a case's run"))
            .collect()
    });
    rows.sort_by_key(|r| {
        (
            r.agree.is_ok(),
            r.case.starts_with("archive")
                || r.case.starts_with("Deny")
                || r.case.starts_with("key"),
        )
    });
    let mut table = format!(
        "{:<58} | {:<15} | {:<70} | {:<70} | agree\n",
        "layout / case", "mode", "prediction", "emulator"
    );
    for r in &rows {
        table.push_str(&format!(
            "{:<58} | {:<15} | {:<70} | {:<70} | {}\n",
            r.case,
            r.mode,
            r.prediction,
            r.emulator,
            match &r.agree {
                Ok(()) => "yes".to_string(),
                Err(why) => format!("NO: {why}"),
            }
        ));
    }
    eprintln!("\nAgreement of the delivery check with the emulator:\n{table}");
    assert_eq!(rows.len(), LAYOUTS.len() * 3 + REFUSALS.len() * 3);
    assert!(
        rows.iter().all(|r| r.agree.is_ok()),
        "every row agrees:\n{table}"
    );
    assert_eq!(
        rows.iter()
            .filter(|r| r.prediction.starts_with("would fail"))
            .count(),
        REFUSALS.len() * 3,
        "each refusal is predicted to fail, each layout to deliver:\n{table}"
    );
}

/// apply's verify step fails an account whose logs S3 would refuse, with the verdict, and only
/// that account: the others are done. A Deny added by hand for one member (by its account, with
/// `aws:PrincipalAccount`) is not trailhub's, so apply keeps it, and the account is not "done"
/// while its logs would not arrive. With the Deny taken out, `resume` finishes it.
#[test]
fn apply_fails_the_verify_step_of_the_account_s3_would_refuse_and_only_it() {
    let emu = Emulator::start();
    let archive = "111111111111";
    let denied = "251000000001".to_string();
    let fine = "251000000002".to_string();
    for s in [&denied, &fine] {
        seed(&emu, s, Layout::Plain);
    }
    let th = Trailhub::new(&emu);
    th.profiles(&[denied.clone(), fine.clone()]);
    th.profile(archive, archive);
    let inv = th.write_inventory(&format!(
        "region = \"{REGION}\"\n\n[archive]\naccount_id = \"{archive}\"\nprofile = \"acct-{archive}\"\n\n[source_defaults]\nprofile = \"acct-{{account_id}}\"\n\n[[source]]\naccount_id = \"{denied}\"\n\n[[source]]\naccount_id = \"{fine}\"\n"
    ));
    let inv = inv.to_str().unwrap();
    th.expect(&["apply", "-c", inv], 0);

    let bucket = format!("aggregation-cloudtrail-logs-{archive}");
    let mut policy = bucket_policy(&emu, archive, &bucket);
    let before = policy.clone();
    policy["Statement"].as_array_mut().unwrap().push(json!({
        "Sid": "DenyReplicationByHand", "Effect": "Deny", "Principal": "*",
        "Action": "s3:ReplicateObject", "Resource": format!("arn:aws:s3:::{bucket}/*"),
        "Condition": {"StringEquals": {"aws:PrincipalAccount": denied.as_str()}},
    }));
    put_bucket_policy(&emu, archive, &bucket, &policy);

    th.expect(&["apply", "-c", inv], 1);
    let nodes = th.json(&["status"], 0);
    let verify = |account: &str| {
        nodes
            .iter()
            .find(|n| n["account"] == account && n["step"] == "verify")
            .unwrap_or_else(|| panic!("{account}/verify in {nodes:?}"))
            .clone()
    };
    let failed = verify(&denied);
    assert_eq!(failed["state"], "failed", "{failed}");
    let why = failed["error"].to_string();
    assert!(
        why.contains("would fail") && why.contains("DenyReplicationByHand"),
        "the verify step fails with the verdict, naming the statement: {why}"
    );
    assert_eq!(verify(&fine)["state"], "done", "the other account is done");
    // The hand-made Deny is kept: it is not trailhub's to remove.
    let kept = bucket_policy(&emu, archive, &bucket);
    assert!(
        kept["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["Sid"] == "DenyReplicationByHand"),
        "{kept}"
    );

    // The fix, then resume: only the refused account's verify is left, and it passes.
    put_bucket_policy(&emu, archive, &bucket, &before);
    th.expect(&["resume"], 0);
    let nodes = th.json(&["status"], 0);
    let done = nodes
        .iter()
        .find(|n| n["account"] == denied.as_str() && n["step"] == "verify")
        .unwrap();
    assert_eq!(done["state"], "done", "{done}");
}
