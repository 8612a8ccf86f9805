//! Fleet views: what `apply`, `resume`, `rollback`, `status` and the report show of many
//! accounts at once. Counts first, then the failures grouped by cause (one block per distinct
//! step, error code and hint, with the ids of the accounts it hit), then a row per account that
//! is not done. Fleets smaller than [`FLEET`] keep the per-account table of every account.
//!
//! A cause is told once for all the accounts it hit, so the text that names an account (a bucket
//! `cm-members-cloudtrail-200000000011`, a hint "in account 200000000011") is shown with
//! `{account_id}` in its place, the inventory's own placeholder.

use crate::output::table;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use trailhub_engine::{
    ErrorRecord, GroupResult, GroupSummary, NodeId, NodeRecord, NodeState, Shape,
};
use trailhub_workflows::ARCHIVE;

/// From this many source accounts on, summaries group and list only the accounts not done.
pub const FLEET: usize = 10;

/// The account ids a cause lists in full; beyond them, where the rest are.
pub const IDS_SHOWN: usize = 20;

/// Whether `groups` (the archive and the accounts) make a fleet.
pub fn is_fleet(groups: &[GroupSummary]) -> bool {
    groups.iter().filter(|g| g.group != ARCHIVE).count() >= FLEET
}

/// Whether a group needs nothing more: everything done, or rolled back as asked.
pub fn is_done(result: GroupResult) -> bool {
    matches!(
        result,
        GroupResult::Succeeded | GroupResult::RolledBack | GroupResult::PartlyRolledBack
    )
}

/// `text` with the account's own id written `{account_id}`, so that what differs only by the
/// account reads the same. The archive's text is left as it is (it is one account).
pub fn generalize(text: &str, group: &str) -> String {
    if group.len() == 12 && group.bytes().all(|b| b.is_ascii_digit()) {
        text.replace(group, "{account_id}")
    } else {
        text.to_string()
    }
}

/// What a cause is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CauseKind {
    /// A step failed (or its rollback did).
    Failed,
    /// Nothing failed in these accounts; a step waits for one that failed elsewhere.
    Blocked,
}

/// One cause and every account it hit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cause {
    /// Failed or blocked.
    pub kind: CauseKind,
    /// The step that failed (for a block, the step that waits).
    pub step: String,
    /// The AWS error code, when there is one.
    pub code: Option<String>,
    /// The first account's message, generalized when the cause hit several accounts.
    pub message: String,
    /// Whether the accounts' messages differ once generalized (then `status --all` shows each).
    pub messages_differ: bool,
    /// What to do, generalized as the message is.
    pub hint: Option<String>,
    /// For a block: the failed node that blocks it.
    pub by: Option<NodeId>,
    /// The accounts (groups) it hit, in the workflow's order.
    pub accounts: Vec<String>,
    /// The nodes it hit.
    pub nodes: Vec<NodeId>,
}

/// The failures grouped by (step, error code, hint), the hint generalized: the most accounts
/// first, then in the order of their first account. `failed` lists each failed node with its
/// error, in the workflow's order.
pub fn failures<'a>(failed: impl IntoIterator<Item = (&'a NodeId, &'a ErrorRecord)>) -> Vec<Cause> {
    type Key = (String, Option<String>, Option<String>);
    let mut causes: Vec<Cause> = Vec::new();
    let mut index: BTreeMap<Key, usize> = BTreeMap::new();
    let mut originals: Vec<(String, Option<String>)> = Vec::new();
    for (node, error) in failed {
        let group = node.group();
        let hint = error.hint.as_deref().map(|h| generalize(h, group));
        let message = generalize(&error.message, group);
        let key = (node.step().to_string(), error.code.clone(), hint.clone());
        match index.get(&key) {
            Some(&i) => {
                let cause = &mut causes[i];
                cause.messages_differ |= message != cause.message;
                if !cause.accounts.iter().any(|a| a == group) {
                    cause.accounts.push(group.to_string());
                }
                cause.nodes.push(node.clone());
            }
            None => {
                index.insert(key, causes.len());
                originals.push((error.message.clone(), error.hint.clone()));
                causes.push(Cause {
                    kind: CauseKind::Failed,
                    step: node.step().to_string(),
                    code: error.code.clone(),
                    message,
                    messages_differ: false,
                    hint,
                    by: None,
                    accounts: vec![group.to_string()],
                    nodes: vec![node.clone()],
                });
            }
        }
    }
    // A cause of one account reads best as that account's own words.
    for (cause, (message, hint)) in causes.iter_mut().zip(originals) {
        if cause.accounts.len() == 1 {
            cause.message = message;
            cause.hint = hint;
        }
    }
    sort(causes)
}

/// The failed nodes of `records` with their errors, in the shape's order.
pub fn failed_nodes<'a>(
    shape: &'a Shape,
    records: &'a BTreeMap<NodeId, NodeRecord>,
) -> Vec<(&'a NodeId, &'a ErrorRecord)> {
    ordered(shape)
        .into_iter()
        .filter_map(|id| {
            let rec = records.get(id)?;
            match (rec.state, &rec.last_error) {
                (NodeState::Failed | NodeState::RollbackFailed, Some(e)) => Some((id, e)),
                _ => None,
            }
        })
        .collect()
}

/// The accounts that are blocked (nothing of theirs failed, a step waits for a failure
/// elsewhere), grouped by the failed node they wait for.
pub fn blocked(
    shape: &Shape,
    records: &BTreeMap<NodeId, NodeRecord>,
    groups: &[GroupSummary],
) -> Vec<Cause> {
    let state = |id: &NodeId| records.get(id).map_or(NodeState::Pending, |r| r.state);
    let mut causes: Vec<Cause> = Vec::new();
    for g in groups.iter().filter(|g| g.result == GroupResult::Blocked) {
        let Some((node, by)) = ordered(shape)
            .into_iter()
            .filter(|id| id.group() == g.group && state(id) == NodeState::Blocked)
            .find_map(|id| {
                let by = shape
                    .ancestors(id)
                    .into_iter()
                    .find(|a| matches!(state(a), NodeState::Failed | NodeState::RollbackFailed))?;
                Some((id, by))
            })
        else {
            continue;
        };
        match causes.iter_mut().find(|c| c.by.as_ref() == Some(by)) {
            Some(cause) => {
                cause.accounts.push(g.group.clone());
                cause.nodes.push(node.clone());
            }
            None => causes.push(Cause {
                kind: CauseKind::Blocked,
                step: node.step().to_string(),
                code: None,
                message: format!("waits for {by}, which failed"),
                messages_differ: false,
                hint: None,
                by: Some(by.clone()),
                accounts: vec![g.group.clone()],
                nodes: vec![node.clone()],
            }),
        }
    }
    sort(causes)
}

fn ordered(shape: &Shape) -> Vec<&NodeId> {
    let groups = shape.groups();
    let mut nodes = shape.topological();
    nodes.sort_by_key(|n| groups.iter().position(|g| *g == n.group()));
    nodes
}

fn sort(mut causes: Vec<Cause>) -> Vec<Cause> {
    // A stable sort keeps causes of as many accounts in the order of their first account.
    causes.sort_by_key(|c| std::cmp::Reverse(c.accounts.len()));
    causes
}

/// `200000000001 200000000002 …`: every id up to [`IDS_SHOWN`], then how many more and where
/// they are (`rest`).
pub fn id_list(ids: &[String], shown: usize, rest: &str) -> String {
    if ids.len() <= shown {
        return ids.join(" ");
    }
    format!(
        "{} … and {} more ({rest})",
        ids[..shown].join(" "),
        ids.len() - shown
    )
}

/// `3 accounts`, `1 account`, `the archive`.
fn who(accounts: &[String]) -> String {
    match accounts {
        [one] if one == ARCHIVE => "the archive".to_string(),
        [_] => "1 account".to_string(),
        many => format!("{} accounts", many.len()),
    }
}

/// A cause as text: a headline with the ids, the message, and what to do. `rest` says where the
/// ids beyond the first [`IDS_SHOWN`] are.
pub fn cause_text(cause: &Cause, rest: &str) -> String {
    let ids: Vec<String> = cause
        .accounts
        .iter()
        .filter(|a| *a != ARCHIVE || cause.accounts.len() > 1)
        .cloned()
        .collect();
    let ids = if ids.is_empty() {
        String::new()
    } else {
        format!(" — {}", id_list(&ids, IDS_SHOWN, rest))
    };
    let mut out = match cause.kind {
        CauseKind::Failed => {
            let code = cause.code.as_deref().unwrap_or("no error code");
            format!(
                "{} failed at {}: {code}{ids}\n  {}\n",
                who(&cause.accounts),
                cause.step,
                cause.message
            )
        }
        CauseKind::Blocked => {
            let by = cause
                .by
                .as_ref()
                .map_or("a failure".to_string(), |b| b.to_string());
            format!(
                "{} blocked by {by}{ids}\n  (nothing failed there: their steps run once {by} is fixed)\n",
                who(&cause.accounts)
            )
        }
    };
    if cause.messages_differ {
        out.push_str(
            "  (the message differs between the accounts: `trailhub status --all` shows each)\n",
        );
    }
    if let Some(hint) = &cause.hint {
        out.push_str(&format!("  what to do: {hint}\n"));
    }
    out
}

/// A cause as a JSON line: `failure-group` or `blocked-group`.
pub fn cause_json(run: &str, cause: &Cause) -> serde_json::Value {
    match cause.kind {
        CauseKind::Failed => json!({
            "type": "failure-group", "run": run, "step": cause.step, "code": cause.code,
            "message": cause.message, "messages_differ": cause.messages_differ, "hint": cause.hint,
            "count": cause.accounts.len(), "accounts": cause.accounts, "nodes": cause.nodes,
        }),
        CauseKind::Blocked => json!({
            "type": "blocked-group", "run": run, "step": cause.step, "by": cause.by,
            "count": cause.accounts.len(), "accounts": cause.accounts, "nodes": cause.nodes,
        }),
    }
}

/// How many accounts stand how, for the counts line and the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counts {
    /// The archive's result, when the run has it.
    pub archive: Option<&'static str>,
    /// Source accounts.
    pub accounts: usize,
    /// Source accounts succeeded.
    pub succeeded: usize,
    /// Source accounts with a failed step.
    pub failed: usize,
    /// Source accounts waiting for a failure elsewhere.
    pub blocked: usize,
    /// Source accounts not finished (the run stopped, or has not reached them).
    pub pending: usize,
    /// Source accounts rolled back, wholly or partly.
    pub rolled_back: usize,
}

impl Counts {
    /// Counts `groups`.
    pub fn of(groups: &[GroupSummary]) -> Counts {
        let mut c = Counts::default();
        for g in groups {
            if g.group == ARCHIVE {
                c.archive = Some(g.result.as_str());
                continue;
            }
            c.accounts += 1;
            match g.result {
                GroupResult::Succeeded => c.succeeded += 1,
                GroupResult::Failed => c.failed += 1,
                GroupResult::Blocked => c.blocked += 1,
                GroupResult::NotFinished => c.pending += 1,
                GroupResult::RolledBack | GroupResult::PartlyRolledBack => c.rolled_back += 1,
            }
        }
        c
    }

    /// `the archive succeeded; 50 accounts: 47 succeeded, 3 failed, 0 blocked, 0 pending`.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if let Some(archive) = self.archive {
            out.push_str(&format!("the archive {archive}; "));
        }
        out.push_str(&format!(
            "{} account{}: {} succeeded, {} failed, {} blocked, {} pending",
            self.accounts,
            if self.accounts == 1 { "" } else { "s" },
            self.succeeded,
            self.failed,
            self.blocked,
            self.pending
        ));
        if self.rolled_back > 0 {
            out.push_str(&format!(", {} rolled back", self.rolled_back));
        }
        out
    }
}

/// The rows of the accounts not done (every account with `all`), short: the failed step and
/// its code, since the causes above say the rest. Ends with a line saying what was left out.
pub fn rows_text(groups: &[GroupSummary], all: bool, all_hint: &str) -> String {
    let shown: Vec<&GroupSummary> = groups
        .iter()
        .filter(|g| all || !is_done(g.result))
        .collect();
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|g| {
            let failure = match (&g.failed_step, &g.error) {
                (Some(step), Some(e)) => match &e.code {
                    Some(code) => format!("{}: {code}", step.step()),
                    None => step.step().to_string(),
                },
                _ => String::new(),
            };
            vec![
                g.group.clone(),
                g.result.as_str().to_string(),
                format!("{}/{}", g.done, g.steps),
                failure,
            ]
        })
        .collect();
    let mut out = String::new();
    if !rows.is_empty() {
        out.push_str(&table(
            &["ACCOUNT", "RESULT", "STEPS", "FAILED STEP"],
            &rows,
        ));
    }
    let hidden = |g: &&GroupSummary| !all && is_done(g.result);
    let archive = groups.iter().filter(hidden).any(|g| g.group == ARCHIVE);
    let accounts = groups
        .iter()
        .filter(hidden)
        .filter(|g| g.group != ARCHIVE)
        .count();
    let left = match (archive, accounts) {
        (false, 0) => None,
        (true, 0) => Some("the archive is".to_string()),
        (false, 1) => Some("1 account is".to_string()),
        (false, n) => Some(format!("{n} accounts are")),
        (true, 1) => Some("the archive and 1 account are".to_string()),
        (true, n) => Some(format!("the archive and {n} accounts are")),
    };
    if let Some(left) = left {
        out.push_str(&format!(
            "({left} done and not listed: {all_hint} lists every account)\n"
        ));
    }
    out
}

/// A note shared by the accounts of one step (a rollback's "kept, because …").
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    /// The step.
    pub step: String,
    /// The note, generalized when it concerns several accounts.
    pub text: String,
    /// The accounts (groups) it concerns.
    pub accounts: Vec<String>,
}

/// `notes` grouped by step and generalized text, most accounts first.
pub fn notes<'a>(notes: impl IntoIterator<Item = (&'a NodeId, String)>) -> Vec<Note> {
    let mut out: Vec<(Note, String)> = Vec::new();
    for (node, text) in notes {
        let general = generalize(&text, node.group());
        match out
            .iter_mut()
            .find(|(n, _)| n.step == node.step() && n.text == general)
        {
            Some((n, _)) => n.accounts.push(node.group().to_string()),
            None => out.push((
                Note {
                    step: node.step().to_string(),
                    text: general,
                    accounts: vec![node.group().to_string()],
                },
                text,
            )),
        }
    }
    let mut out: Vec<Note> = out
        .into_iter()
        .map(|(mut n, own)| {
            if n.accounts.len() == 1 {
                n.text = own;
            }
            n
        })
        .collect();
    out.sort_by_key(|n| std::cmp::Reverse(n.accounts.len()));
    out
}

/// A fleet's summary: the headline (with the counts), the causes, the accounts not done.
pub struct Summary<'a> {
    /// The first line: the run, its status and the counts.
    pub headline: &'a str,
    /// The failures and blocks, grouped.
    pub causes: &'a [Cause],
    /// Every group of the run (or of the rollback's scope).
    pub groups: &'a [GroupSummary],
    /// List every account (`--all`).
    pub all: bool,
    /// Where the ids beyond the first [`IDS_SHOWN`] of a cause are.
    pub rest: &'a str,
    /// How to list every account.
    pub all_hint: &'a str,
}

impl Summary<'_> {
    /// The summary as text: headline, causes, rows; a blank line between the parts.
    pub fn text(&self) -> String {
        self.text_with(&[])
    }

    /// The summary with `notes` after the causes.
    pub fn text_with(&self, notes: &[Note]) -> String {
        let mut out = format!("{}\n", self.headline);
        if !self.causes.is_empty() {
            out.push('\n');
            for cause in self.causes {
                out.push_str(&cause_text(cause, self.rest));
            }
        }
        if !notes.is_empty() {
            out.push('\n');
            for note in notes {
                out.push_str(&format!(
                    "{} at {}: {} — {}\n",
                    who(&note.accounts),
                    note.step,
                    note.text,
                    id_list(&note.accounts, IDS_SHOWN, self.rest)
                ));
            }
        }
        let rows = rows_text(self.groups, self.all, self.all_hint);
        if !rows.is_empty() {
            out.push('\n');
            out.push_str(&rows);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> NodeId {
        text.parse().expect("a node id")
    }

    fn no_bucket(account: &str) -> ErrorRecord {
        ErrorRecord {
            message: format!(
                "source bucket cm-members-cloudtrail-{account} does not exist in account {account}: HeadBucket answered 404"
            ),
            code: Some("NoSuchBucket".into()),
            retryable: false,
            hint: Some(format!(
                "create the CloudTrail bucket cm-members-cloudtrail-{account} in account {account}, then `trailhub resume`"
            )),
        }
    }

    #[test]
    fn failures_of_the_same_step_code_and_hint_are_one_cause_listing_every_account() {
        let nodes: Vec<(NodeId, ErrorRecord)> = ["200000000011", "200000000012", "200000000013"]
            .iter()
            .map(|a| (id(&format!("{a}/bucket-check")), no_bucket(a)))
            .chain([(
                id("200000000020/role-stack"),
                ErrorRecord {
                    message: "access denied".into(),
                    code: Some("AccessDenied".into()),
                    retryable: false,
                    hint: None,
                },
            )])
            .collect();
        let causes = failures(nodes.iter().map(|(n, e)| (n, e)));
        assert_eq!(causes.len(), 2);
        assert_eq!(
            causes[0].accounts,
            ["200000000011", "200000000012", "200000000013"]
        );
        let text = cause_text(&causes[0], "see status");
        assert_eq!(
            text,
            "3 accounts failed at bucket-check: NoSuchBucket — 200000000011 200000000012 200000000013\n  \
             source bucket cm-members-cloudtrail-{account_id} does not exist in account {account_id}: HeadBucket answered 404\n  \
             what to do: create the CloudTrail bucket cm-members-cloudtrail-{account_id} in account {account_id}, then `trailhub resume`\n"
        );
        assert_eq!(
            cause_text(&causes[1], "see status"),
            "1 account failed at role-stack: AccessDenied — 200000000020\n  access denied\n"
        );
    }

    #[test]
    fn a_cause_of_one_account_keeps_its_own_words() {
        let node = id("200000000011/bucket-check");
        let error = no_bucket("200000000011");
        let causes = failures([(&node, &error)]);
        assert_eq!(causes[0].message, error.message);
        assert_eq!(causes[0].hint, error.hint);
    }

    #[test]
    fn beyond_twenty_ids_the_list_says_where_the_rest_are() {
        let ids: Vec<String> = (1..=25)
            .map(|i| format!("{}", 200_000_000_000u64 + i))
            .collect();
        let list = id_list(&ids, IDS_SHOWN, "`trailhub status --all` lists them");
        assert!(list.starts_with("200000000001 200000000002"));
        assert!(list.contains("200000000020 … and 5 more (`trailhub status --all` lists them)"));
        assert!(!list.contains("200000000021"));
    }
}
