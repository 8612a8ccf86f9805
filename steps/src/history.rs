//! How old a source's CloudTrail history is, read from its key layout, and how much of it an
//! archive lifecycle expiry would delete as soon as `trailhub backfill` copies it.
//!
//! S3 lifecycle rules age a replica from its source object's creation time, not from when it
//! reached the destination (User Guide, "Replication: additional considerations", lifecycle
//! configuration and object replicas). CloudTrail writes under
//! `<prefix><account>/CloudTrail/<region>/YYYY/MM/DD/…` (CloudTrail User Guide, "Finding your
//! CloudTrail log files"), so the first key under each region's folder, in S3's lexicographic
//! listing order, is that region's oldest log: two small listings per region, read only when
//! the archive expires objects at all.

use crate::errors::classify;
use crate::spec::SourceSpec;
use crate::tasks::{StepContext, call};
use std::time::SystemTime;
use trailhub_engine::TaskError;

/// A calendar day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Day {
    /// Year.
    pub year: i64,
    /// Month, 1 to 12.
    pub month: u32,
    /// Day of the month, 1 to 31.
    pub day: u32,
}

impl Day {
    /// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`, proleptic Gregorian).
    pub fn ordinal(self) -> i64 {
        let y = if self.month <= 2 {
            self.year - 1
        } else {
            self.year
        };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The day of `t` (UTC).
    pub fn of(t: SystemTime) -> Day {
        let days = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| (d.as_secs() / 86_400) as i64);
        Day::from_ordinal(days)
    }

    /// The day `days` after 1970-01-01 (`civil_from_days`).
    pub fn from_ordinal(days: i64) -> Day {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Day { year, month, day }
    }
}

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// The day in a CloudTrail key after its region folder (`…/CloudTrail/<region>/YYYY/MM/DD/…`).
pub fn day_of_key(key: &str) -> Option<Day> {
    let rest = key.split("/CloudTrail/").nth(1)?;
    let mut parts = rest.split('/').skip(1);
    let year = parts.next()?.parse().ok()?;
    let month = parts
        .next()?
        .parse()
        .ok()
        .filter(|m| (1..=12).contains(m))?;
    let day = parts
        .next()?
        .parse()
        .ok()
        .filter(|d| (1..=31).contains(d))?;
    Some(Day { year, month, day })
}

/// What an expiry after `expire_days` does to history whose oldest log is of `oldest`, on
/// `today`: `None` when nothing is that old.
pub fn expiring(oldest: Day, today: Day, expire_days: i32) -> Option<String> {
    let cutoff = Day::from_ordinal(today.ordinal() - i64::from(expire_days));
    let days = cutoff.ordinal() - oldest.ordinal();
    (days > 0).then(|| {
        format!(
            "{days} days of logs (from {oldest} to {cutoff}) are older than [archive] lifecycle expire_days = {expire_days}: S3 ages a replica from its source object's creation, so their copies expire as soon as they land"
        )
    })
}

/// The oldest CloudTrail log of `source` under `prefixes`, in the bucket of `region`: `None`
/// when there is none.
pub(crate) async fn oldest_log(
    ctx: &StepContext,
    source: &SourceSpec,
    prefixes: &[String],
) -> Result<Option<Day>, TaskError> {
    let account = source.account_id.as_str();
    let s3 = ctx.s3_for(account, &source.bucket).await?;
    let mut oldest: Option<Day> = None;
    for prefix in prefixes {
        let trail_root = format!("{prefix}{account}/CloudTrail/");
        let regions = call(
            account,
            "s3",
            "ListObjectsV2",
            &trail_root,
            s3.list_objects_v2()
                .bucket(&source.bucket)
                .prefix(&trail_root)
                .delimiter("/")
                .expected_bucket_owner(account)
                .send(),
        )
        .await
        .map_err(|e| classify("ListObjectsV2", &source.bucket, e, &[]))?;
        for region in regions.common_prefixes().iter().filter_map(|p| p.prefix()) {
            let first = call(
                account,
                "s3",
                "ListObjectsV2",
                region,
                s3.list_objects_v2()
                    .bucket(&source.bucket)
                    .prefix(region)
                    .max_keys(1)
                    .expected_bucket_owner(account)
                    .send(),
            )
            .await
            .map_err(|e| classify("ListObjectsV2", &source.bucket, e, &[]))?;
            let day = first
                .contents()
                .first()
                .and_then(|o| o.key())
                .and_then(day_of_key);
            oldest = match (oldest, day) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
    Ok(oldest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_count_across_months_leap_years_and_the_epoch() {
        let d = |year, month, day| Day { year, month, day };
        assert_eq!(d(1970, 1, 1).ordinal(), 0);
        assert_eq!(d(2000, 3, 1).ordinal() - d(2000, 2, 28).ordinal(), 2);
        assert_eq!(d(2026, 12, 1).ordinal() - d(2025, 12, 1).ordinal(), 365);
        for n in [-1000, 0, 11_016, 20_423, 30_000] {
            assert_eq!(Day::from_ordinal(n).ordinal(), n);
        }
        assert_eq!(d(2026, 2, 9).to_string(), "2026-02-09");
    }

    #[test]
    fn the_day_is_read_from_cloudtrails_key_layout() {
        assert_eq!(
            day_of_key(
                "org/AWSLogs/222222222222/CloudTrail/us-east-1/2024/03/07/222222222222_CloudTrail_us-east-1_20240307T0000Z_x.json.gz"
            ),
            Some(Day {
                year: 2024,
                month: 3,
                day: 7
            })
        );
        assert_eq!(day_of_key("AWSLogs/222222222222/CloudTrail-Digest/x"), None);
        assert_eq!(
            day_of_key("AWSLogs/2/CloudTrail/us-east-1/2024/13/01/x"),
            None
        );
    }

    #[test]
    fn only_history_older_than_the_expiry_is_counted() {
        let today = Day {
            year: 2026,
            month: 12,
            day: 1,
        };
        let old = Day {
            year: 2025,
            month: 1,
            day: 1,
        };
        let said = expiring(old, today, 365).expect("a year and more of history");
        assert!(
            said.starts_with("334 days of logs (from 2025-01-01 to 2025-12-01)"),
            "{said}"
        );
        assert_eq!(expiring(old, today, 800), None);
    }
}
