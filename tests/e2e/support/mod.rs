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
