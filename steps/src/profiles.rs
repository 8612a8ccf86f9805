//! The AWS config file's profiles, read with the SDK's own profile parser (aws-config's
//! `profile::load`: the config file at `AWS_CONFIG_FILE` or `~/.aws/config`, the credentials
//! file at `AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`, `[profile x]` and
//! `[sso-session x]` sections, comments and continuation lines as every SDK reads them), reduced
//! to what `trailhub init` needs: each profile's account and how the profile reaches it.
//!
//! Nothing here resolves credentials or calls AWS: a profile is only read.

use aws_runtime::env_config::file::EnvConfigFiles;
use aws_types::os_shim_internal::{Env, Fs};

/// How a profile reaches its account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// IAM Identity Center (SSO): `sso_account_id` with `sso_role_name`.
    Sso {
        /// The permission set's role (`sso_role_name`), when given.
        role: Option<String>,
    },
    /// Assuming `role_arn` (from `source_profile` or `credential_source`).
    AssumeRole {
        /// The role's ARN.
        role_arn: String,
        /// The profile whose credentials assume it, if any.
        source_profile: Option<String>,
    },
    /// Neither: static keys, `credential_process`, or only settings such as `region`.
    Unknown,
}

/// One profile, as `init` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileAccount {
    /// The profile's name (`[profile NAME]` in the config file, `[NAME]` in credentials).
    pub name: String,
    /// The account the profile reaches, when it says which.
    pub account: Option<String>,
    /// Why the profile names no usable account, when it names something that is not one.
    pub problem: Option<String>,
    /// How it reaches the account.
    pub reach: Reach,
    /// Its `region`, if set.
    pub region: Option<String>,
}

/// The profile files could not be read or parsed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the AWS config files")]
pub struct ProfilesError(#[source] aws_config::profile::ProfileFileLoadError);

/// Every profile of the AWS config and credentials files, sorted by name.
pub async fn load() -> Result<Vec<ProfileAccount>, ProfilesError> {
    let set =
        aws_config::profile::load(&Fs::real(), &Env::real(), &EnvConfigFiles::default(), None)
            .await
            .map_err(ProfilesError)?;
    let mut names: Vec<&str> = set.profiles().collect();
    names.sort_unstable();
    Ok(names
        .into_iter()
        .filter_map(|name| set.get_profile(name))
        .map(|p| describe(p.name(), |key| p.get(key)))
        .collect())
}

/// What profile `name` (whose keys `get` reads) reaches.
fn describe<'a>(name: &str, get: impl Fn(&str) -> Option<&'a str>) -> ProfileAccount {
    let region = get("region").map(str::to_string);
    let mut profile = ProfileAccount {
        name: name.to_string(),
        account: None,
        problem: None,
        reach: Reach::Unknown,
        region,
    };
    if let Some(id) = get("sso_account_id") {
        profile.reach = Reach::Sso {
            role: get("sso_role_name").map(str::to_string),
        };
        if is_account_id(id) {
            profile.account = Some(id.to_string());
        } else {
            profile.problem = Some(format!(
                "sso_account_id `{id}` is not a 12-digit account id"
            ));
        }
    } else if let Some(arn) = get("role_arn") {
        profile.reach = Reach::AssumeRole {
            role_arn: arn.to_string(),
            source_profile: get("source_profile").map(str::to_string),
        };
        match role_account(arn) {
            Some(id) => profile.account = Some(id.to_string()),
            None => {
                profile.problem = Some(format!(
                    "role_arn `{arn}` is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"
                ))
            }
        }
    }
    profile
}

fn is_account_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())
}

/// The account of `arn:<partition>:iam::<account>:role/<name>`.
fn role_account(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (prefix, _partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    (prefix == "arn"
        && service == "iam"
        && region.is_empty()
        && is_account_id(account)
        && resource.starts_with("role/"))
    .then_some(account)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn of(name: &str, keys: &[(&str, &str)]) -> ProfileAccount {
        let map: HashMap<&str, &str> = keys.iter().copied().collect();
        describe(name, |k| map.get(k).copied())
    }

    #[test]
    fn sso_and_assume_role_profiles_name_their_account() {
        let sso = of(
            "prod",
            &[
                ("sso_account_id", "200000000001"),
                ("sso_role_name", "AdministratorAccess"),
                ("region", "eu-west-1"),
            ],
        );
        assert_eq!(sso.account.as_deref(), Some("200000000001"));
        assert_eq!(
            sso.reach,
            Reach::Sso {
                role: Some("AdministratorAccess".into())
            }
        );
        assert_eq!(sso.region.as_deref(), Some("eu-west-1"));
        let role = of(
            "dev",
            &[
                ("role_arn", "arn:aws-cn:iam::300000000002:role/path/Admin"),
                ("source_profile", "base"),
            ],
        );
        assert_eq!(role.account.as_deref(), Some("300000000002"));
        assert!(matches!(role.reach, Reach::AssumeRole { .. }));
    }

    #[test]
    fn what_is_not_an_account_is_said() {
        assert_eq!(
            of("keys", &[("aws_access_key_id", "AKIA")]).reach,
            Reach::Unknown
        );
        let bad = of("bad", &[("sso_account_id", "12345")]);
        assert_eq!(bad.account, None);
        assert!(
            bad.problem
                .unwrap()
                .contains("`12345` is not a 12-digit account id")
        );
        for arn in [
            "arn:aws:iam::12345:role/x",
            "arn:aws:iam::200000000001:user/x",
            "arn:aws:sts::200000000001:role/x",
            "not-an-arn",
        ] {
            let p = of("r", &[("role_arn", arn)]);
            assert_eq!(p.account, None, "{arn}");
            assert!(p.problem.is_some(), "{arn}");
        }
    }
}
