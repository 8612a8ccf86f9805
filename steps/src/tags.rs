//! The tags trailhub puts on what it creates (the role stack, which CloudFormation passes to the
//! role; the archive bucket; the archive key): an operator in the console sees who owns it, and
//! rollback checks them, beside the journaled identity, before deleting anything.

/// `true` on everything trailhub created.
pub const MANAGED: &str = "trailhub:managed";
/// The id of the run that created it.
pub const RUN: &str = "trailhub:run";

/// The tags of something `run` creates, as `(key, value)`.
pub fn marks(run: &str) -> Vec<(String, String)> {
    vec![
        (MANAGED.to_string(), "true".to_string()),
        (RUN.to_string(), run.to_string()),
    ]
}

/// Whether `tags` say that `run` created their resource.
pub fn made_by(tags: &[(&str, &str)], run: &str) -> bool {
    tags.contains(&(MANAGED, "true")) && tags.contains(&(RUN, run))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_is_a_runs_only_with_both_marks() {
        let marks = marks("20261129T000000Z-0001");
        let tags: Vec<(&str, &str)> = marks
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert!(made_by(&tags, "20261129T000000Z-0001"));
        assert!(!made_by(&tags, "20261129T000000Z-0002"));
        assert!(!made_by(&tags[1..], "20261129T000000Z-0001"));
        assert!(!made_by(&[], "20261129T000000Z-0001"));
    }
}
