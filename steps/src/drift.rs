//! What verify reports: one difference between live state and the inventory, as each
//! resource's own comparison found it (this module compares nothing itself).

use serde::Serialize;
use trailhub_engine::Change;

/// One difference between live state and the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The account.
    pub account: String,
    /// The resource, e.g. `bucket cm-members-cloudtrail-2222…` or `role S3ReplicationRole`.
    pub resource: String,
    /// The field, e.g. `Rules[0].Status`.
    pub field: String,
    /// What the inventory implies.
    pub expected: String,
    /// What is there.
    pub actual: String,
    /// The delivery check's verdict, when this finding is that S3 would not deliver the logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<crate::delivery::Verdict>,
}

impl Finding {
    /// A finding on `resource` of `account`.
    pub(crate) fn new(
        account: &str,
        resource: &str,
        field: &str,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> Finding {
        Finding {
            account: account.to_string(),
            resource: resource.to_string(),
            field: field.to_string(),
            expected: expected.into(),
            actual: actual.into(),
            delivery: None,
        }
    }

    /// The delivery check's verdict as a finding (`delivery`, expected `delivers`).
    pub(crate) fn delivery(account: &str, verdict: crate::delivery::Verdict) -> Finding {
        let mut f = Finding::new(account, "delivery", "verdict", "delivers", verdict.line());
        f.delivery = Some(verdict);
        f
    }

    /// A plan's change as a finding: its field under `prefix`, its absent value shown as
    /// `absent`.
    pub(crate) fn from_change(
        account: &str,
        resource: &str,
        prefix: &str,
        absent: &str,
        change: Change,
    ) -> Finding {
        Finding::new(
            account,
            resource,
            &format!("{prefix}{}", change.field),
            change.to,
            change.from.unwrap_or_else(|| absent.to_string()),
        )
    }
}
