//! Fuzzes `trailhub_steps::policy::parse` on raw bytes (the text of a bucket policy as S3 would
//! return it), then, when it parses, `missing`, `add`, `remove` and `normalize` on whatever JSON
//! object it is, in both modes.
//!
//! Properties: nothing panics; `parse` accepts exactly the JSON objects; after `add`, `missing`
//! is empty; `add` twice changes nothing the second time, and so does `remove` twice;
//! `normalize` is idempotent.
//!
//! Every property is asserted; the findings of earlier runs (fuzz/README.md, "Findings") are
//! fixed, and their reproducers are in fuzz/regressions/.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use trailhub_steps::PolicyMode;
use trailhub_steps::policy::{Grant, add, missing, normalize, parse, remove};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse(text);
    let is_object = serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_object());
    assert_eq!(
        parsed.is_ok(),
        is_object,
        "parse disagrees with serde_json on {text:?}"
    );
    let Ok(policy) = parsed else {
        return;
    };
    let n = normalize(&policy);
    assert_eq!(normalize(&n), n, "normalize is not idempotent");
    for mode in [
        PolicyMode::Article,
        PolicyMode::LeastPrivilege,
        PolicyMode::Accounts,
    ] {
        let grant = Grant {
            mode,
            bucket_arn: "arn:aws:s3:::aggregation-cloudtrail-logs-111111111111".into(),
            principal: "arn:aws:iam::222222222222:role/S3ReplicationRole".into(),
            account: "222222222222".into(),
            prefix: "AWSLogs/".into(),
        };
        let _ = missing(Some(&policy), &grant);
        let (merged, _) = add(Some(&policy), &grant);
        let still = missing(Some(&merged), &grant);
        assert!(
            still.is_empty(),
            "still missing after add: {still:?}\n{merged:#}"
        );
        let (twice, changed) = add(Some(&merged), &grant);
        assert!(!changed, "a second add changed the policy");
        assert_eq!(twice, merged);
        for p in [&policy, &merged] {
            let (out, _) = remove(p, &grant);
            if let Some(out) = out {
                let (_, again) = remove(&out, &grant);
                assert!(!again, "a second remove changed the policy");
            }
        }
    }
});
