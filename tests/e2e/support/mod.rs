//! Test support: the emulator process, SDK clients per account, seeding of member accounts,
//! the request recorder, and running the binary.

pub mod article;
mod emulator;
mod proxy;
mod recorder;
mod trailhub;

pub use emulator::{Emulator, root};
pub use proxy::{Proxy, proxy_log, wait_for_action, wait_for_log};
pub use trailhub::{Trailhub, inventory};

/// The archive account of the tests.
pub const ARCHIVE: &str = "111111111111";

/// `n` source account ids: 200000000001, 200000000002, …
pub fn accounts(n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| format!("{}", 200_000_000_000u64 + i as u64))
        .collect()
}

/// The archive bucket of the tests' inventories.
pub fn archive_bucket() -> String {
    format!("aggregation-cloudtrail-logs-{ARCHIVE}")
}

/// A source account's CloudTrail bucket.
pub fn source_bucket(account: &str) -> String {
    format!("cm-members-cloudtrail-{account}")
}

/// The replication role ARN of a source account.
pub fn role_arn(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/S3ReplicationRole")
}

/// What parliament (duo-labs' IAM policy linter, pinned in the emulator's venv by
/// scripts/setup-emulator) finds in a policy document: one JSON object per finding.
pub fn parliament(doc: &serde_json::Value) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(root().join(".venv/bin/parliament"))
        .args(["--string", &doc.to_string(), "--json"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run parliament (scripts/setup-emulator installs it)");
    let findings: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("parliament said {l}: {e}")))
        .collect();
    assert!(
        out.status.success() || !findings.is_empty(),
        "parliament failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    findings
}
