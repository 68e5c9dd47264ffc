//! Usage rolled up per day as events arrive: the fleet's usage pages read these small
//! tables, never the events (a year of 500 boxes is tens of millions of events; its
//! days per tablet are a few million rows, indexed by day).
//!
//! A batch's events are first added up here (pure), then each backend applies the
//! sums with one upsert per table row: a duplicate batch adds nothing because only the
//! events the store took as new are rolled up, in the same transaction.

use std::collections::BTreeMap;

use cartable_protocol::events::EventBody;

/// The schema of the rollups, in SQL both SQLite and PostgreSQL read (`BIGINT` is an
/// integer to SQLite).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS usage_device_day (
    site    TEXT NOT NULL,
    box     TEXT NOT NULL,
    device  TEXT NOT NULL,
    day     BIGINT NOT NULL,
    class   TEXT,
    seconds BIGINT NOT NULL,
    PRIMARY KEY (site, box, device, day)
);
CREATE INDEX IF NOT EXISTS usage_device_day_by_day ON usage_device_day(day, site);
CREATE TABLE IF NOT EXISTS usage_app_day (
    site    TEXT NOT NULL,
    day     BIGINT NOT NULL,
    app     TEXT NOT NULL,
    seconds BIGINT NOT NULL,
    PRIMARY KEY (site, day, app)
);
CREATE INDEX IF NOT EXISTS usage_app_day_by_day ON usage_app_day(day, site);
CREATE TABLE IF NOT EXISTS usage_dns_day (
    site    TEXT NOT NULL,
    day     BIGINT NOT NULL,
    queries BIGINT NOT NULL,
    blocked BIGINT NOT NULL,
    PRIMARY KEY (site, day)
);
CREATE TABLE IF NOT EXISTS usage_category_day (
    site     TEXT NOT NULL,
    day      BIGINT NOT NULL,
    category TEXT NOT NULL,
    blocked  BIGINT NOT NULL,
    PRIMARY KEY (site, day, category)
);
CREATE TABLE IF NOT EXISTS usage_attendance_day (
    site    TEXT NOT NULL,
    day     BIGINT NOT NULL,
    class   TEXT NOT NULL,
    present BIGINT NOT NULL,
    absent  BIGINT NOT NULL,
    PRIMARY KEY (site, day, class)
);
";

/// The upserts, one per table, with `?N` placeholders (PostgreSQL's `$N` by
/// [`for_postgres`]). Columns in the order of the `Rollups` maps' keys and values.
pub const UPSERT_DEVICE_DAY: &str =
    "INSERT INTO usage_device_day(site, box, device, day, class, seconds)
 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (site, box, device, day) DO UPDATE
 SET class = coalesce(excluded.class, usage_device_day.class),
     seconds = usage_device_day.seconds + excluded.seconds";
pub const UPSERT_APP_DAY: &str = "INSERT INTO usage_app_day(site, day, app, seconds)
 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (site, day, app) DO UPDATE
 SET seconds = usage_app_day.seconds + excluded.seconds";
pub const UPSERT_DNS_DAY: &str = "INSERT INTO usage_dns_day(site, day, queries, blocked)
 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (site, day) DO UPDATE
 SET queries = usage_dns_day.queries + excluded.queries,
     blocked = usage_dns_day.blocked + excluded.blocked";
pub const UPSERT_CATEGORY_DAY: &str = "INSERT INTO usage_category_day(site, day, category, blocked)
 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (site, day, category) DO UPDATE
 SET blocked = usage_category_day.blocked + excluded.blocked";
pub const UPSERT_ATTENDANCE_DAY: &str =
    "INSERT INTO usage_attendance_day(site, day, class, present, absent)
 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (site, day, class) DO UPDATE
 SET present = usage_attendance_day.present + excluded.present,
     absent = usage_attendance_day.absent + excluded.absent";

/// `?N` placeholders as PostgreSQL writes them.
pub fn for_postgres(sql: &str) -> String {
    sql.replace('?', "$")
}

/// The day (UTC) of a Unix time, as days since the epoch.
pub fn day_of(unix: i64) -> i64 {
    unix.div_euclid(86_400)
}

/// A tablet's day: (site, box, device, day).
pub type DeviceDay = (String, String, String, i64);

/// What a set of events adds to each rollup, summed per row.
#[derive(Debug, Default, PartialEq)]
pub struct Rollups {
    /// (site, box, device, day) → (class, seconds).
    pub device_day: BTreeMap<DeviceDay, (Option<String>, i64)>,
    /// (site, day, app) → seconds.
    pub app_day: BTreeMap<(String, i64, String), i64>,
    /// (site, day) → (queries, blocked), from the box-wide hourly counters.
    pub dns_day: BTreeMap<(String, i64), (i64, i64)>,
    /// (site, day, category) → blocked queries.
    pub category_day: BTreeMap<(String, i64, String), i64>,
    /// (site, day, class) → (present, absent).
    pub attendance_day: BTreeMap<(String, i64, String), (i64, i64)>,
}

impl Rollups {
    /// Adds one event of `box_id` at `site`, recorded at `at`.
    pub fn add(&mut self, site: &str, box_id: &str, at: i64, body: &EventBody) {
        match body {
            EventBody::AppUsage {
                hour,
                device,
                app,
                seconds,
                class,
            } => {
                let day = day_of(*hour);
                let seconds = i64::from(*seconds);
                let row = self
                    .device_day
                    .entry((site.into(), box_id.into(), device.clone(), day))
                    .or_default();
                row.1 += seconds;
                if class.is_some() {
                    row.0.clone_from(class);
                }
                *self
                    .app_day
                    .entry((site.into(), day, app.clone()))
                    .or_default() += seconds;
            }
            EventBody::DnsHourly {
                hour,
                client,
                queries,
                blocked,
                categories,
            } if client == "*" => {
                let day = day_of(*hour);
                let row = self.dns_day.entry((site.into(), day)).or_default();
                row.0 += clamp(*queries);
                row.1 += clamp(*blocked);
                for (category, n) in categories {
                    *self
                        .category_day
                        .entry((site.into(), day, category.clone()))
                        .or_default() += clamp(*n);
                }
            }
            EventBody::Attendance { class, present, .. } => {
                let row = self
                    .attendance_day
                    .entry((site.into(), day_of(at), class.clone()))
                    .or_default();
                if *present {
                    row.0 += 1;
                } else {
                    row.1 += 1;
                }
            }
            _ => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        self.device_day.is_empty()
            && self.app_day.is_empty()
            && self.dns_day.is_empty()
            && self.category_day.is_empty()
            && self.attendance_day.is_empty()
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The usage pages' filters: a period of days (both included) and a site, or all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub from_day: i64,
    pub to_day: i64,
    /// Empty: every site.
    pub site: String,
}

/// What the usage pages show for a [`Period`].
#[derive(Debug, Default, serde::Serialize)]
pub struct UsageReport {
    /// (day, tablets used, minutes of use) across the chosen sites, every day.
    pub days: Vec<(i64, i64, i64)>,
    /// Per site: tablets used, minutes, queries, blocked queries, present, absent.
    pub sites: Vec<SiteUsage>,
    /// Per site, class and week (the week's Monday, as a day): minutes, tablets used.
    pub class_weeks: Vec<(String, String, i64, i64, i64)>,
    /// Per tablet: site, box, tablet, class, days used, minutes, last day used.
    pub tablets: Vec<TabletUsage>,
    /// Top apps: (app, minutes).
    pub apps: Vec<(String, i64)>,
    /// Top blocked categories: (category, blocked queries).
    pub categories: Vec<(String, i64)>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct SiteUsage {
    pub site: String,
    pub tablets_used: i64,
    pub minutes: i64,
    pub queries: i64,
    pub blocked: i64,
    pub present: i64,
    pub absent: i64,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct TabletUsage {
    pub site: String,
    pub r#box: String,
    pub tablet: String,
    pub class: Option<String>,
    pub days_used: i64,
    pub minutes: i64,
    pub last_day: i64,
}

/// The report's queries, `?1` the first day, `?2` the last, `?3` the site or ''.
/// (Sums cast: PostgreSQL's `sum` of integers is a `numeric`.)
pub const Q_DAYS: &str =
    "SELECT day, count(*), CAST(sum(seconds) / 60 AS BIGINT) FROM usage_device_day
 WHERE day BETWEEN ?1 AND ?2 AND (site = ?3 OR ?3 = '') GROUP BY day ORDER BY day";
pub const Q_SITES_USE: &str =
    "SELECT site, count(DISTINCT box || '/' || device), CAST(sum(seconds) / 60 AS BIGINT)
 FROM usage_device_day WHERE day BETWEEN ?1 AND ?2 AND (site = ?3 OR ?3 = '') GROUP BY site";
pub const Q_SITES_DNS: &str =
    "SELECT site, CAST(sum(queries) AS BIGINT), CAST(sum(blocked) AS BIGINT) FROM usage_dns_day
 WHERE day BETWEEN ?1 AND ?2 AND (site = ?3 OR ?3 = '') GROUP BY site";
pub const Q_SITES_ATTENDANCE: &str = "SELECT site, CAST(sum(present) AS BIGINT), CAST(sum(absent) AS BIGINT) FROM usage_attendance_day
 WHERE day BETWEEN ?1 AND ?2 AND (site = ?3 OR ?3 = '') GROUP BY site";
pub const Q_CLASS_WEEKS: &str = "SELECT site, coalesce(class, ''), (day + 3) / 7 * 7 - 3 AS week,
 CAST(sum(seconds) / 60 AS BIGINT), count(DISTINCT box || '/' || device)
 FROM usage_device_day WHERE day BETWEEN ?1 AND ?2 AND (site = ?3 OR ?3 = '')
 GROUP BY site, coalesce(class, ''), week ORDER BY site, coalesce(class, ''), week";
pub const Q_TABLETS: &str =
    "SELECT site, box, device, max(class), count(*), CAST(sum(seconds) / 60 AS BIGINT), max(day)
 FROM usage_device_day WHERE day BETWEEN ?1 AND ?2 AND (site = ?3 OR ?3 = '')
 GROUP BY site, box, device ORDER BY site, box, device";
pub const Q_APPS: &str = "SELECT app, CAST(sum(seconds) / 60 AS BIGINT) AS m FROM usage_app_day
 WHERE day BETWEEN ?1 AND ?2 AND (site = ?3 OR ?3 = '') GROUP BY app ORDER BY m DESC, app LIMIT 20";
pub const Q_CATEGORIES: &str = "SELECT category, CAST(sum(blocked) AS BIGINT) AS n FROM usage_category_day
 WHERE day BETWEEN ?1 AND ?2 AND (site = ?3 OR ?3 = '') GROUP BY category ORDER BY n DESC, category LIMIT 20";

/// Merges the per-site rows of the three site queries.
pub fn sites(
    usage: Vec<(String, i64, i64)>,
    dns: Vec<(String, i64, i64)>,
    attendance: Vec<(String, i64, i64)>,
) -> Vec<SiteUsage> {
    fn row(by: &mut BTreeMap<String, SiteUsage>, site: String) -> &mut SiteUsage {
        by.entry(site.clone()).or_insert_with(|| SiteUsage {
            site,
            ..SiteUsage::default()
        })
    }
    let mut by: BTreeMap<String, SiteUsage> = BTreeMap::new();
    for (site, tablets, minutes) in usage {
        let s = row(&mut by, site);
        (s.tablets_used, s.minutes) = (tablets, minutes);
    }
    for (site, queries, blocked) in dns {
        let s = row(&mut by, site);
        (s.queries, s.blocked) = (queries, blocked);
    }
    for (site, present, absent) in attendance {
        let s = row(&mut by, site);
        (s.present, s.absent) = (present, absent);
    }
    by.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_sums_per_row_and_only_the_box_wide_dns_counters_count() {
        let mut r = Rollups::default();
        let app =
            |device: &str, app: &str, seconds: u32, class: Option<&str>| EventBody::AppUsage {
                hour: 86_400 * 3 + 3600 * 9,
                device: device.into(),
                app: app.into(),
                seconds,
                class: class.map(String::from),
            };
        r.add("s", "b", 0, &app("t1", "lecture", 600, Some("CM1")));
        r.add("s", "b", 0, &app("t1", "calcul", 300, None));
        r.add("s", "b", 0, &app("t2", "lecture", 60, Some("CE2")));
        r.add(
            "s",
            "b",
            0,
            &EventBody::DnsHourly {
                hour: 86_400 * 3,
                client: "10.0.0.2".into(),
                queries: 99,
                blocked: 9,
                categories: BTreeMap::new(),
            },
        );
        r.add(
            "s",
            "b",
            0,
            &EventBody::DnsHourly {
                hour: 86_400 * 3,
                client: "*".into(),
                queries: 100,
                blocked: 10,
                categories: [("adult".to_string(), 7)].into(),
            },
        );
        let key = ("s".to_string(), "b".to_string(), "t1".to_string(), 3);
        assert_eq!(r.device_day[&key], (Some("CM1".into()), 900));
        assert_eq!(r.app_day[&("s".into(), 3, "lecture".into())], 660);
        assert_eq!(r.dns_day[&("s".into(), 3)], (100, 10));
        assert_eq!(r.category_day[&("s".into(), 3, "adult".into())], 7);
    }
}
