//! Validation of AWS names and identifiers, before any request: account ids, regions, bucket,
//! role and stack names, role ARNs, storage classes.

/// Regions trailhub knows (the commercial, China and GovCloud partitions).
pub(crate) const REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

/// S3 storage classes a replication destination accepts.
pub(crate) const STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
];

/// The storage classes a lifecycle rule can move objects to (API Reference, `Transition`:
/// `StorageClass`).
pub(crate) const LIFECYCLE_STORAGE_CLASSES: &[&str] = &[
    "GLACIER_IR",
    "GLACIER",
    "DEEP_ARCHIVE",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
];

/// The ARN partition of a region.
pub(crate) fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

pub(crate) fn account_id(s: &str) -> Result<(), String> {
    if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not an AWS account id (12 digits, quoted)"
        ))
    }
}

/// S3's bucket naming rules (general purpose buckets).
pub(crate) fn bucket(s: &str) -> Result<(), String> {
    let fail = |why: &str| Err(format!("`{s}` is not a valid S3 bucket name: {why}"));
    if s.len() < 3 || s.len() > 63 {
        return fail("it must be 3 to 63 characters long");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return fail("only lowercase letters, digits, hyphens and dots are allowed");
    }
    let first = s.as_bytes()[0];
    let last = s.as_bytes()[s.len() - 1];
    if !(first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric()) {
        return fail("it must begin and end with a letter or digit");
    }
    if s.contains("..") || s.contains(".-") || s.contains("-.") {
        return fail("no two adjacent dots, nor a dot next to a hyphen");
    }
    if s.split('.').count() == 4 && s.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return fail("it must not look like an IP address");
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if s.starts_with(prefix) {
            return fail(&format!("the prefix `{prefix}` is reserved"));
        }
    }
    for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if s.ends_with(suffix) {
            return fail(&format!("the suffix `{suffix}` is reserved"));
        }
    }
    Ok(())
}

pub(crate) fn role_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a valid IAM role name (1 to 64 of letters, digits and +=,.@_-)"
        ))
    }
}

pub(crate) fn stack_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.as_bytes()[0].is_ascii_alphabetic()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a valid CloudFormation stack name (a letter, then letters, digits and hyphens, at most 128)"
        ))
    }
}

/// `arn:<partition>:iam::<12 digits>:role/<path/name>`; returns the account id in it.
pub(crate) fn role_arn(s: &str, partition: &str) -> Result<String, String> {
    let fail = || {
        Err(format!(
            "`{s}` is not an IAM role ARN (arn:{partition}:iam::<account id>:role/<name>)"
        ))
    };
    let Some(rest) = s.strip_prefix(&format!("arn:{partition}:iam::")) else {
        return fail();
    };
    let Some((account, role)) = rest.split_once(":role/") else {
        return fail();
    };
    if account_id(account).is_err() || role.is_empty() {
        return fail();
    }
    let name = role.rsplit('/').next().unwrap_or_default();
    if role_name(name).is_err() {
        return fail();
    }
    Ok(account.to_string())
}

pub(crate) fn region(s: &str) -> Result<(), String> {
    if REGIONS.contains(&s) {
        Ok(())
    } else {
        Err(format!(
            "unknown region `{s}`; known regions: {}",
            REGIONS.join(", ")
        ))
    }
}

pub(crate) fn storage_class(s: &str) -> Result<(), String> {
    if STORAGE_CLASSES.contains(&s) {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a storage class; use one of {}",
            STORAGE_CLASSES.join(", ")
        ))
    }
}

/// A storage class a lifecycle rule can move objects to.
pub(crate) fn lifecycle_storage_class(s: &str) -> Result<(), String> {
    if LIFECYCLE_STORAGE_CLASSES.contains(&s) {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a storage class a lifecycle rule moves objects to; use one of {}",
            LIFECYCLE_STORAGE_CLASSES.join(", ")
        ))
    }
}

pub(crate) fn profile(s: &str) -> Result<(), String> {
    if !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c == '[' || c == ']') {
        Ok(())
    } else {
        Err(format!("`{s}` is not a valid profile name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        assert!(bucket("cm-members-cloudtrail-222222222222").is_ok());
        assert!(bucket("aggregation-cloudtrail-logs-111111111111").is_ok());
        for bad in [
            "ab",
            "Upper-case",
            "under_score",
            "-leading",
            "a..b",
            "192.168.1.1",
            "xn--abc",
            "x-s3alias",
        ] {
            assert!(bucket(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn arns_and_ids() {
        assert_eq!(
            role_arn(
                "arn:aws:iam::123456789012:role/OrganizationAccountAccessRole",
                "aws"
            ),
            Ok("123456789012".into())
        );
        assert!(role_arn("arn:aws:iam::1234:role/x", "aws").is_err());
        assert!(role_arn("arn:aws:iam::123456789012:user/x", "aws").is_err());
        assert!(account_id("012345678901").is_ok());
        assert!(account_id("12345678901").is_err());
        assert!(region("ap-northeast-1").is_ok());
        assert!(region("mars-north-1").is_err());
        assert_eq!(partition("cn-north-1"), "aws-cn");
    }
}
