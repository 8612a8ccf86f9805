//! S3 lifecycle rules as serde records in the AWS CLI's JSON shape ([`RuleDoc`]), converted to
//! and from the SDK's types: what the lifecycle step journals (a rule found before, the rule it
//! wrote) and compares. A rule read, journaled and put back comes back field for field; nothing
//! here calls AWS.

use crate::spec::Lifecycle;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleAndOperator, LifecycleRuleFilter, NoncurrentVersionExpiration,
    NoncurrentVersionTransition, Tag, Transition, TransitionStorageClass,
};
use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use serde::{Deserialize, Serialize};

/// The ID of trailhub's one rule in the archive bucket's lifecycle configuration: the rule is
/// found, compared, replaced and removed by it, and no other rule is touched.
pub const RULE_ID: &str = "trailhub-archive";

/// One lifecycle rule (`GetBucketLifecycleConfiguration`'s `Rules[]`), every field S3 has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuleDoc {
    /// The rule's ID.
    #[serde(rename = "ID", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `Enabled` or `Disabled`.
    pub status: String,
    /// The first schema's rule-level prefix (deprecated by S3, kept as found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Which objects the rule applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterDoc>,
    /// When current versions expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<ExpirationDoc>,
    /// Where current versions move, and when.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<TransitionDoc>,
    /// Where noncurrent versions move, and when.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub noncurrent_version_transitions: Vec<NoncurrentTransitionDoc>,
    /// When noncurrent versions are deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_version_expiration: Option<NoncurrentExpirationDoc>,
    /// When incomplete multipart uploads are aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_incomplete_multipart_upload: Option<AbortDoc>,
}

/// A rule's `Filter`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FilterDoc {
    /// Key prefix (`""`: every object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// One tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<TagDoc>,
    /// Minimum object size, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_size_greater_than: Option<i64>,
    /// Maximum object size, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_size_less_than: Option<i64>,
    /// Several conditions together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub and: Option<AndDoc>,
}

/// A filter's `And`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AndDoc {
    /// Key prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Tags, all required.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<TagDoc>,
    /// Minimum object size, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_size_greater_than: Option<i64>,
    /// Maximum object size, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_size_less_than: Option<i64>,
}

/// An object tag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagDoc {
    /// Its key.
    pub key: String,
    /// Its value.
    pub value: String,
}

/// A rule's `Expiration`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExpirationDoc {
    /// A date (ISO 8601, midnight UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// Days after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<i32>,
    /// Whether delete markers with no noncurrent version are removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_object_delete_marker: Option<bool>,
}

/// One of a rule's `Transitions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TransitionDoc {
    /// A date (ISO 8601, midnight UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// Days after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<i32>,
    /// The storage class moved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

/// One of a rule's `NoncurrentVersionTransitions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NoncurrentTransitionDoc {
    /// Days after the version became noncurrent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_days: Option<i32>,
    /// The storage class moved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// How many newer noncurrent versions are kept out of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newer_noncurrent_versions: Option<i32>,
}

/// A rule's `NoncurrentVersionExpiration`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NoncurrentExpirationDoc {
    /// Days after the version became noncurrent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_days: Option<i32>,
    /// How many newer noncurrent versions are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newer_noncurrent_versions: Option<i32>,
}

/// A rule's `AbortIncompleteMultipartUpload`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AbortDoc {
    /// Days after the upload began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_after_initiation: Option<i32>,
}

/// The rule `lifecycle` asks for: trailhub's ID, enabled, on every object of the bucket.
pub fn desired(lifecycle: &Lifecycle) -> RuleDoc {
    RuleDoc {
        id: Some(RULE_ID.to_string()),
        status: ExpirationStatus::Enabled.as_str().to_string(),
        filter: Some(FilterDoc {
            prefix: Some(String::new()),
            ..FilterDoc::default()
        }),
        expiration: lifecycle.expire_days.map(|days| ExpirationDoc {
            days: Some(days),
            ..ExpirationDoc::default()
        }),
        transitions: lifecycle
            .transition
            .iter()
            .map(|t| TransitionDoc {
                days: Some(t.days),
                storage_class: Some(t.storage_class.clone()),
                date: None,
            })
            .collect(),
        noncurrent_version_expiration: lifecycle.noncurrent_expire_days.map(|days| {
            NoncurrentExpirationDoc {
                noncurrent_days: Some(days),
                newer_noncurrent_versions: None,
            }
        }),
        ..RuleDoc::default()
    }
}

impl RuleDoc {
    /// The rule with the ways S3 may write "every object" made one: no filter, an empty
    /// filter, an empty rule-level prefix and `Filter.Prefix = ""` all apply the rule to the
    /// whole bucket. For comparisons only; a rule is put back as it was read.
    pub fn normalized(&self) -> RuleDoc {
        let whole_bucket = |f: &FilterDoc| {
            f.tag.is_none()
                && f.and.is_none()
                && f.object_size_greater_than.is_none()
                && f.object_size_less_than.is_none()
                && f.prefix.as_deref().is_none_or(str::is_empty)
        };
        let mut rule = self.clone();
        if rule.prefix.as_deref().is_none_or(str::is_empty)
            && rule.filter.as_ref().is_none_or(whole_bucket)
        {
            rule.prefix = None;
            rule.filter = Some(FilterDoc {
                prefix: Some(String::new()),
                ..FilterDoc::default()
            });
        }
        rule
    }

    /// The rule as the SDK read it.
    #[expect(
        deprecated,
        reason = "a first-schema rule's rule-level Prefix is kept as S3 answers it, to be put back"
    )]
    pub fn from_sdk(rule: &LifecycleRule) -> RuleDoc {
        RuleDoc {
            id: rule.id().map(str::to_string),
            status: rule.status().as_str().to_string(),
            prefix: rule.prefix().map(str::to_string),
            filter: rule.filter().map(|f| FilterDoc {
                prefix: f.prefix().map(str::to_string),
                tag: f.tag().map(TagDoc::from_sdk),
                object_size_greater_than: f.object_size_greater_than(),
                object_size_less_than: f.object_size_less_than(),
                and: f.and().map(|a| AndDoc {
                    prefix: a.prefix().map(str::to_string),
                    tags: a.tags().iter().map(TagDoc::from_sdk).collect(),
                    object_size_greater_than: a.object_size_greater_than(),
                    object_size_less_than: a.object_size_less_than(),
                }),
            }),
            expiration: rule.expiration().map(|e| ExpirationDoc {
                date: e.date().map(date_text),
                days: e.days(),
                expired_object_delete_marker: e.expired_object_delete_marker(),
            }),
            transitions: rule
                .transitions()
                .iter()
                .map(|t| TransitionDoc {
                    date: t.date().map(date_text),
                    days: t.days(),
                    storage_class: t.storage_class().map(|c| c.as_str().to_string()),
                })
                .collect(),
            noncurrent_version_transitions: rule
                .noncurrent_version_transitions()
                .iter()
                .map(|t| NoncurrentTransitionDoc {
                    noncurrent_days: t.noncurrent_days(),
                    storage_class: t.storage_class().map(|c| c.as_str().to_string()),
                    newer_noncurrent_versions: t.newer_noncurrent_versions(),
                })
                .collect(),
            noncurrent_version_expiration: rule.noncurrent_version_expiration().map(|e| {
                NoncurrentExpirationDoc {
                    noncurrent_days: e.noncurrent_days(),
                    newer_noncurrent_versions: e.newer_noncurrent_versions(),
                }
            }),
            abort_incomplete_multipart_upload: rule.abort_incomplete_multipart_upload().map(|a| {
                AbortDoc {
                    days_after_initiation: a.days_after_initiation(),
                }
            }),
        }
    }

    /// The rule as the SDK puts it; an error names what the SDK refused (a date that does not
    /// parse, a rule without status).
    #[expect(
        deprecated,
        reason = "a first-schema rule's rule-level Prefix is kept as S3 answers it, to be put back"
    )]
    pub fn to_sdk(&self) -> Result<LifecycleRule, String> {
        let filter = self.filter.as_ref().map(|f| {
            Ok::<_, String>(
                LifecycleRuleFilter::builder()
                    .set_prefix(f.prefix.clone())
                    .set_tag(f.tag.as_ref().map(TagDoc::to_sdk).transpose()?)
                    .set_object_size_greater_than(f.object_size_greater_than)
                    .set_object_size_less_than(f.object_size_less_than)
                    .set_and(
                        f.and
                            .as_ref()
                            .map(|a| {
                                Ok::<_, String>(
                                    LifecycleRuleAndOperator::builder()
                                        .set_prefix(a.prefix.clone())
                                        .set_tags(non_empty(
                                            a.tags
                                                .iter()
                                                .map(TagDoc::to_sdk)
                                                .collect::<Result<Vec<_>, _>>()?,
                                        ))
                                        .set_object_size_greater_than(a.object_size_greater_than)
                                        .set_object_size_less_than(a.object_size_less_than)
                                        .build(),
                                )
                            })
                            .transpose()?,
                    )
                    .build(),
            )
        });
        let expiration = self
            .expiration
            .as_ref()
            .map(|e| {
                Ok::<_, String>(
                    LifecycleExpiration::builder()
                        .set_date(e.date.as_deref().map(parse_date).transpose()?)
                        .set_days(e.days)
                        .set_expired_object_delete_marker(e.expired_object_delete_marker)
                        .build(),
                )
            })
            .transpose()?;
        let transitions = self
            .transitions
            .iter()
            .map(|t| {
                Ok::<_, String>(
                    Transition::builder()
                        .set_date(t.date.as_deref().map(parse_date).transpose()?)
                        .set_days(t.days)
                        .set_storage_class(
                            t.storage_class.as_deref().map(TransitionStorageClass::from),
                        )
                        .build(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let noncurrent_transitions = self
            .noncurrent_version_transitions
            .iter()
            .map(|t| {
                NoncurrentVersionTransition::builder()
                    .set_noncurrent_days(t.noncurrent_days)
                    .set_storage_class(t.storage_class.as_deref().map(TransitionStorageClass::from))
                    .set_newer_noncurrent_versions(t.newer_noncurrent_versions)
                    .build()
            })
            .collect();
        LifecycleRule::builder()
            .set_id(self.id.clone())
            .status(ExpirationStatus::from(self.status.as_str()))
            .set_prefix(self.prefix.clone())
            .set_filter(filter.transpose()?)
            .set_expiration(expiration)
            .set_transitions(non_empty(transitions))
            .set_noncurrent_version_transitions(non_empty(noncurrent_transitions))
            .set_noncurrent_version_expiration(self.noncurrent_version_expiration.as_ref().map(
                |e| {
                    NoncurrentVersionExpiration::builder()
                        .set_noncurrent_days(e.noncurrent_days)
                        .set_newer_noncurrent_versions(e.newer_noncurrent_versions)
                        .build()
                },
            ))
            .set_abort_incomplete_multipart_upload(
                self.abort_incomplete_multipart_upload.as_ref().map(|a| {
                    AbortIncompleteMultipartUpload::builder()
                        .set_days_after_initiation(a.days_after_initiation)
                        .build()
                }),
            )
            .build()
            .map_err(|e| format!("lifecycle rule {}: {e}", self.id.as_deref().unwrap_or("")))
    }
}

impl TagDoc {
    fn from_sdk(tag: &Tag) -> TagDoc {
        TagDoc {
            key: tag.key().to_string(),
            value: tag.value().to_string(),
        }
    }

    fn to_sdk(&self) -> Result<Tag, String> {
        Tag::builder()
            .key(&self.key)
            .value(&self.value)
            .build()
            .map_err(|e| format!("tag {}: {e}", self.key))
    }
}

/// A list the SDK leaves unset when empty, as S3 answered it.
fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

fn date_text(date: &DateTime) -> String {
    date.fmt(Format::DateTime)
        .unwrap_or_else(|_| date.secs().to_string())
}

fn parse_date(text: &str) -> Result<DateTime, String> {
    DateTime::from_str(text, Format::DateTime).map_err(|e| format!("lifecycle date `{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Transition as TransitionSpec;

    /// A rule with every field S3 has, as another tool might have written it.
    fn everything() -> RuleDoc {
        RuleDoc {
            id: Some("their-rule".into()),
            status: "Disabled".into(),
            prefix: None,
            filter: Some(FilterDoc {
                and: Some(AndDoc {
                    prefix: Some("logs/".into()),
                    tags: vec![
                        TagDoc {
                            key: "k1".into(),
                            value: "v1".into(),
                        },
                        TagDoc {
                            key: "k2".into(),
                            value: "v2".into(),
                        },
                    ],
                    object_size_greater_than: Some(1024),
                    object_size_less_than: Some(1 << 30),
                }),
                ..FilterDoc::default()
            }),
            expiration: Some(ExpirationDoc {
                date: Some("2030-01-01T00:00:00Z".into()),
                days: None,
                expired_object_delete_marker: None,
            }),
            transitions: vec![
                TransitionDoc {
                    date: None,
                    days: Some(30),
                    storage_class: Some("STANDARD_IA".into()),
                },
                TransitionDoc {
                    date: None,
                    days: Some(365),
                    storage_class: Some("DEEP_ARCHIVE".into()),
                },
            ],
            noncurrent_version_transitions: vec![NoncurrentTransitionDoc {
                noncurrent_days: Some(10),
                storage_class: Some("GLACIER".into()),
                newer_noncurrent_versions: Some(2),
            }],
            noncurrent_version_expiration: Some(NoncurrentExpirationDoc {
                noncurrent_days: Some(40),
                newer_noncurrent_versions: Some(3),
            }),
            abort_incomplete_multipart_upload: Some(AbortDoc {
                days_after_initiation: Some(7),
            }),
        }
    }

    #[test]
    fn a_rule_round_trips_through_the_sdk_and_the_journal() {
        for rule in [everything(), desired(&lifecycle())] {
            let sdk = rule.to_sdk().expect("the SDK takes it");
            assert_eq!(RuleDoc::from_sdk(&sdk), rule);
            let text = serde_json::to_string(&rule).expect("serializes");
            assert_eq!(
                serde_json::from_str::<RuleDoc>(&text).expect("reads"),
                rule,
                "{text}"
            );
        }
    }

    fn lifecycle() -> Lifecycle {
        Lifecycle {
            transition: Some(TransitionSpec {
                days: 90,
                storage_class: "GLACIER_IR".into(),
            }),
            expire_days: Some(2555),
            noncurrent_expire_days: Some(30),
        }
    }

    #[test]
    fn the_desired_rule_is_in_the_cli_shape() {
        let json = serde_json::to_value(desired(&lifecycle())).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "ID": "trailhub-archive",
                "Status": "Enabled",
                "Filter": { "Prefix": "" },
                "Expiration": { "Days": 2555 },
                "Transitions": [{ "Days": 90, "StorageClass": "GLACIER_IR" }],
                "NoncurrentVersionExpiration": { "NoncurrentDays": 30 }
            })
        );
        let only_noncurrent = Lifecycle {
            transition: None,
            expire_days: None,
            noncurrent_expire_days: Some(30),
        };
        let json = serde_json::to_value(desired(&only_noncurrent)).expect("serializes");
        assert_eq!(json["Expiration"], serde_json::Value::Null);
        assert_eq!(json["Transitions"], serde_json::Value::Null);
    }

    #[test]
    fn every_way_of_saying_the_whole_bucket_compares_equal() {
        let ours = desired(&lifecycle());
        for filter in [
            None,
            Some(FilterDoc::default()),
            Some(FilterDoc {
                prefix: Some(String::new()),
                ..FilterDoc::default()
            }),
        ] {
            let read = RuleDoc {
                filter,
                ..ours.clone()
            };
            assert_eq!(read.normalized(), ours.normalized());
        }
        let first_schema = RuleDoc {
            filter: None,
            prefix: Some(String::new()),
            ..ours.clone()
        };
        assert_eq!(first_schema.normalized(), ours.normalized());
        let narrower = RuleDoc {
            filter: Some(FilterDoc {
                prefix: Some("AWSLogs/".into()),
                ..FilterDoc::default()
            }),
            ..ours.clone()
        };
        assert_ne!(narrower.normalized(), ours.normalized());
    }
}
