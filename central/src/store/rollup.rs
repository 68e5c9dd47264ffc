//! Usage rolled up as events arrive: the fleet's usage pages read these small tables,
//! never the events (a year of 500 boxes is millions of events). Additive counts per
//! site and day (and month, for long periods); each tablet's days of use packed in
//! blocks of days, since "tablets used" is a distinct count no sum can give.
//!
//! A batch's events are first added up here (pure), then each backend applies the
//! sums: a duplicate batch adds nothing because only the events the store took as new
//! are rolled up, in the same transaction.

use std::collections::BTreeMap;

use cartable_protocol::events::EventBody;

/// The schema of the additive rollups, in SQL both SQLite and PostgreSQL read
/// (`BIGINT` is an integer to SQLite).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS usage_app_day (
    site    TEXT NOT NULL,
    day     BIGINT NOT NULL,
    app     TEXT NOT NULL,
    seconds BIGINT NOT NULL,
    PRIMARY KEY (site, day, app)
);
CREATE INDEX IF NOT EXISTS usage_app_day_by_day ON usage_app_day(day, site);
CREATE TABLE IF NOT EXISTS usage_app_month (
    site    TEXT NOT NULL,
    month   BIGINT NOT NULL,
    app     TEXT NOT NULL,
    seconds BIGINT NOT NULL,
    PRIMARY KEY (site, month, app)
);
CREATE INDEX IF NOT EXISTS usage_app_month_by_month ON usage_app_month(month, site);
CREATE TABLE IF NOT EXISTS usage_dns_day (
    site    TEXT NOT NULL,
    day     BIGINT NOT NULL,
    queries BIGINT NOT NULL,
    blocked BIGINT NOT NULL,
    PRIMARY KEY (site, day)
);
CREATE INDEX IF NOT EXISTS usage_dns_day_by_day ON usage_dns_day(day, site);
CREATE TABLE IF NOT EXISTS usage_dns_month (
    site    TEXT NOT NULL,
    month   BIGINT NOT NULL,
    queries BIGINT NOT NULL,
    blocked BIGINT NOT NULL,
    PRIMARY KEY (site, month)
);
CREATE INDEX IF NOT EXISTS usage_dns_month_by_month ON usage_dns_month(month, site);
CREATE TABLE IF NOT EXISTS usage_category_day (
    site     TEXT NOT NULL,
    day      BIGINT NOT NULL,
    category TEXT NOT NULL,
    blocked  BIGINT NOT NULL,
    PRIMARY KEY (site, day, category)
);
CREATE INDEX IF NOT EXISTS usage_category_day_by_day ON usage_category_day(day, site);
CREATE TABLE IF NOT EXISTS usage_category_month (
    site     TEXT NOT NULL,
    month    BIGINT NOT NULL,
    category TEXT NOT NULL,
    blocked  BIGINT NOT NULL,
    PRIMARY KEY (site, month, category)
);
CREATE INDEX IF NOT EXISTS usage_category_month_by_month ON usage_category_month(month, site);
CREATE TABLE IF NOT EXISTS usage_attendance_day (
    site    TEXT NOT NULL,
    day     BIGINT NOT NULL,
    present BIGINT NOT NULL,
    absent  BIGINT NOT NULL,
    PRIMARY KEY (site, day)
);
CREATE INDEX IF NOT EXISTS usage_attendance_day_by_day ON usage_attendance_day(day, site);
CREATE TABLE IF NOT EXISTS usage_attendance_month (
    site    TEXT NOT NULL,
    month   BIGINT NOT NULL,
    present BIGINT NOT NULL,
    absent  BIGINT NOT NULL,
    PRIMARY KEY (site, month)
);
CREATE INDEX IF NOT EXISTS usage_attendance_month_by_month ON usage_attendance_month(month, site);
";

/// Each tablet's use, one row per [`BLOCK_DAYS`] days (keyed by block first: a period
/// reads a range of the table itself): its class and, per day, the
/// seconds of use in [`UNIT_SECS`] units (`u16`, little-endian). Which tablets were
/// used is a distinct count over days; kept this way, a year of 500 boxes is some
/// 50,000 small rows the report reads whole, not millions of tablet-days.
pub const TABLET_BLOCKS_SQLITE: &str = "
CREATE TABLE IF NOT EXISTS usage_tablet_block (
    site   TEXT NOT NULL,
    box    TEXT NOT NULL,
    device TEXT NOT NULL,
    block  INTEGER NOT NULL,
    class  TEXT,
    units  BLOB NOT NULL,
    PRIMARY KEY (block, site, box, device)
) WITHOUT ROWID;
";

/// [`TABLET_BLOCKS_SQLITE`] in PostgreSQL's words.
pub const TABLET_BLOCKS_POSTGRES: &str = "
CREATE TABLE IF NOT EXISTS usage_tablet_block (
    site   TEXT NOT NULL,
    box    TEXT NOT NULL,
    device TEXT NOT NULL,
    block  BIGINT NOT NULL,
    class  TEXT,
    units  BYTEA NOT NULL,
    PRIMARY KEY (block, site, box, device)
);
";

/// Days per row of `usage_tablet_block`.
pub const BLOCK_DAYS: i64 = 128;
/// The unit of a tablet's daily use (a day of 24 h is 8,640 units: a `u16` holds it).
pub const UNIT_SECS: i64 = 10;

/// Adds `seconds` of use on day `offset` of a block's `units`.
pub fn add_units(units: &mut Vec<u8>, offset: usize, seconds: i64) {
    units.resize(BLOCK_DAYS as usize * 2, 0);
    let at = offset * 2;
    let old = u16::from_le_bytes([units[at], units[at + 1]]);
    let add =
        u16::try_from(seconds.max(0).saturating_add(UNIT_SECS / 2) / UNIT_SECS).unwrap_or(u16::MAX);
    units[at..at + 2].copy_from_slice(&old.saturating_add(add).to_le_bytes());
}

/// The seconds of use on day `offset` of a block's `units`.
pub fn seconds_on(units: &[u8], offset: usize) -> i64 {
    match units.get(offset * 2..offset * 2 + 2) {
        Some(b) => i64::from(u16::from_le_bytes([b[0], b[1]])) * UNIT_SECS,
        None => 0,
    }
}

/// The month (months since January 1970) of a day.
pub fn month_of(day: i64) -> i64 {
    let d = jiff::Timestamp::from_second(day.saturating_mul(86_400))
        .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date())
        .unwrap_or_default();
    (i64::from(d.year()) - 1970) * 12 + i64::from(d.month()) - 1
}

/// The first day of a month.
pub fn month_start(month: i64) -> i64 {
    let (y, m) = (1970 + month.div_euclid(12), month.rem_euclid(12) + 1);
    let (Ok(y), Ok(m)) = (i16::try_from(y), i8::try_from(m)) else {
        return 0;
    };
    jiff::civil::date(y, m, 1)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp().as_second().div_euclid(86_400))
        .unwrap_or(0)
}

/// The upserts of the additive tables, with `?N` placeholders (PostgreSQL's `$N` by
/// [`for_postgres`]).
pub const UPSERT_APP_DAY: &str = "INSERT INTO usage_app_day(site, day, app, seconds)
 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (site, day, app) DO UPDATE
 SET seconds = usage_app_day.seconds + excluded.seconds";
pub const UPSERT_APP_MONTH: &str = "INSERT INTO usage_app_month(site, month, app, seconds)
 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (site, month, app) DO UPDATE
 SET seconds = usage_app_month.seconds + excluded.seconds";
pub const UPSERT_DNS_DAY: &str = "INSERT INTO usage_dns_day(site, day, queries, blocked)
 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (site, day) DO UPDATE
 SET queries = usage_dns_day.queries + excluded.queries,
     blocked = usage_dns_day.blocked + excluded.blocked";
pub const UPSERT_DNS_MONTH: &str = "INSERT INTO usage_dns_month(site, month, queries, blocked)
 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (site, month) DO UPDATE
 SET queries = usage_dns_month.queries + excluded.queries,
     blocked = usage_dns_month.blocked + excluded.blocked";
pub const UPSERT_ATTENDANCE_MONTH: &str =
    "INSERT INTO usage_attendance_month(site, month, present, absent)
 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (site, month) DO UPDATE
 SET present = usage_attendance_month.present + excluded.present,
     absent = usage_attendance_month.absent + excluded.absent";
pub const UPSERT_CATEGORY_DAY: &str = "INSERT INTO usage_category_day(site, day, category, blocked)
 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (site, day, category) DO UPDATE
 SET blocked = usage_category_day.blocked + excluded.blocked";
pub const UPSERT_CATEGORY_MONTH: &str =
    "INSERT INTO usage_category_month(site, month, category, blocked)
 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (site, month, category) DO UPDATE
 SET blocked = usage_category_month.blocked + excluded.blocked";
pub const UPSERT_ATTENDANCE_DAY: &str =
    "INSERT INTO usage_attendance_day(site, day, present, absent)
 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (site, day) DO UPDATE
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

/// A block's class and its days of use: (day in the block, seconds).
pub type BlockDays = (Option<String>, Vec<(usize, i64)>);

/// What a set of events adds to each rollup, summed per row.
#[derive(Debug, Default, PartialEq)]
pub struct Rollups {
    /// (site, box, device, day) → (class, seconds): applied as [`Rollups::blocks`].
    pub device_day: BTreeMap<DeviceDay, (Option<String>, i64)>,
    /// (site, day, app) → seconds.
    pub app_day: BTreeMap<(String, i64, String), i64>,
    /// (site, month, app) → seconds.
    pub app_month: BTreeMap<(String, i64, String), i64>,
    /// (site, month, category) → blocked queries.
    pub category_month: BTreeMap<(String, i64, String), i64>,
    /// (site, day) → (queries, blocked), from the box-wide hourly counters.
    pub dns_day: BTreeMap<(String, i64), (i64, i64)>,
    /// (site, month) → (queries, blocked).
    pub dns_month: BTreeMap<(String, i64), (i64, i64)>,
    /// (site, month) → (present, absent).
    pub attendance_month: BTreeMap<(String, i64), (i64, i64)>,
    /// (site, day, category) → blocked queries.
    pub category_day: BTreeMap<(String, i64, String), i64>,
    /// (site, day) → (present, absent).
    pub attendance_day: BTreeMap<(String, i64), (i64, i64)>,
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
                *self
                    .app_month
                    .entry((site.into(), month_of(day), app.clone()))
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
                for row in [
                    self.dns_day.entry((site.into(), day)).or_default(),
                    self.dns_month
                        .entry((site.into(), month_of(day)))
                        .or_default(),
                ] {
                    row.0 += clamp(*queries);
                    row.1 += clamp(*blocked);
                }
                for (category, n) in categories {
                    *self
                        .category_day
                        .entry((site.into(), day, category.clone()))
                        .or_default() += clamp(*n);
                    *self
                        .category_month
                        .entry((site.into(), month_of(day), category.clone()))
                        .or_default() += clamp(*n);
                }
            }
            EventBody::Attendance { present, .. } => {
                let day = day_of(at);
                for row in [
                    self.attendance_day.entry((site.into(), day)).or_default(),
                    self.attendance_month
                        .entry((site.into(), month_of(day)))
                        .or_default(),
                ] {
                    if *present {
                        row.0 += 1;
                    } else {
                        row.1 += 1;
                    }
                }
            }
            _ => {}
        }
    }

    /// The tablets' days grouped by block: (site, box, device, block) → (class, [(day
    /// in the block, seconds)]).
    pub fn blocks(&self) -> BTreeMap<DeviceDay, BlockDays> {
        let mut out: BTreeMap<DeviceDay, BlockDays> = BTreeMap::new();
        for ((site, b, device, day), (class, seconds)) in &self.device_day {
            let block = day.div_euclid(BLOCK_DAYS);
            let row = out
                .entry((site.clone(), b.clone(), device.clone(), block))
                .or_default();
            if class.is_some() {
                row.0.clone_from(class);
            }
            row.1.push(((day - block * BLOCK_DAYS) as usize, *seconds));
        }
        out
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_add_up_per_day_and_months_round_trip() {
        let mut u = Vec::new();
        add_units(&mut u, 5, 600);
        add_units(&mut u, 5, 44);
        assert_eq!(
            (u.len(), seconds_on(&u, 5), seconds_on(&u, 4)),
            (256, 640, 0)
        );
        add_units(&mut u, 127, i64::MAX);
        assert_eq!(seconds_on(&u, 127), i64::from(u16::MAX) * UNIT_SECS);
        let day = crate::page::parse_date("2026-12-03").unwrap();
        assert_eq!(month_of(day), 56 * 12 + 11);
        assert_eq!(crate::page::date(month_start(month_of(day))), "2026-12-01");
    }

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
        assert_eq!(r.app_month[&("s".into(), 0, "lecture".into())], 660);
        let blocks = r.blocks();
        let (class, days) = &blocks[&("s".into(), "b".into(), "t1".into(), 0)];
        assert_eq!(
            (class.as_deref(), days.as_slice()),
            (Some("CM1"), &[(3, 900)][..])
        );
        assert_eq!(r.dns_day[&("s".into(), 3)], (100, 10));
        assert_eq!(r.category_day[&("s".into(), 3, "adult".into())], 7);
    }
}
