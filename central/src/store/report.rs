//! The usage report of a period and a site (or all) from the rollups: the tablets'
//! blocks are read whole and counted here (days, sites, classes per week, tablets);
//! the additive counts are summed by the store (months for the whole months of the
//! period, days for its ends), so no query grows with the fleet's days.

use std::collections::{BTreeMap, HashMap};

use super::rollup::{BLOCK_DAYS, UNIT_SECS, month_of, month_start};

/// The usage pages' filters: a period of days (both included) and a site, or all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub from_day: i64,
    pub to_day: i64,
    /// Empty: every site.
    pub site: String,
}

impl Period {
    /// The blocks of `usage_tablet_block` the period touches (first, last).
    pub fn blocks(&self) -> (i64, i64) {
        (
            self.from_day.div_euclid(BLOCK_DAYS),
            self.to_day.div_euclid(BLOCK_DAYS),
        )
    }

    /// The whole months inside the period (first, last: empty when first > last) and
    /// the days around them: `[from, left_end]` and `[right_start, to]`.
    pub fn months(&self) -> (i64, i64, i64, i64) {
        let first = {
            let m = month_of(self.from_day);
            if month_start(m) == self.from_day {
                m
            } else {
                m + 1
            }
        };
        let last = {
            let m = month_of(self.to_day);
            if month_start(m + 1) - 1 == self.to_day {
                m
            } else {
                m - 1
            }
        };
        if first > last {
            // No whole month: every day from the day tables.
            return (first, last, self.to_day, self.to_day + 1);
        }
        (first, last, month_start(first) - 1, month_start(last + 1))
    }
}

/// What the usage pages show for a [`Period`].
#[derive(Debug, Default, serde::Serialize)]
pub struct UsageReport {
    /// (day, tablets used, minutes of use) across the chosen sites, days with use.
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

/// The tablets' blocks of the period's sites: `?1` first block, `?2` last, `?3` the
/// site or ''.
pub const Q_BLOCKS: &str = "SELECT site, box, device, block, class, units FROM usage_tablet_block
 WHERE block BETWEEN ?1 AND ?2 AND (CAST(?3 AS TEXT) = '' OR site = ?3)";

/// The additive sums (each: months for the whole months, days for the rest): `?1`
/// from, `?2` to, `?3` site or '', `?4`/`?5` the whole months,
/// `?6` the last day before them, `?7` the first day after them. (Sums cast:
/// PostgreSQL's `sum` of integers is a `numeric`.)
pub const Q_SITES_DNS: &str = "SELECT site, CAST(sum(q) AS BIGINT), CAST(sum(b) AS BIGINT) FROM (
   SELECT site, queries AS q, blocked AS b FROM usage_dns_month
   WHERE month BETWEEN ?4 AND ?5 AND (CAST(?3 AS TEXT) = '' OR site = ?3)
   UNION ALL
   SELECT site, queries, blocked FROM usage_dns_day
   WHERE (day BETWEEN ?1 AND ?6 OR day BETWEEN ?7 AND ?2) AND (CAST(?3 AS TEXT) = '' OR site = ?3)
 ) AS u GROUP BY site";
pub const Q_SITES_ATTENDANCE: &str =
    "SELECT site, CAST(sum(p) AS BIGINT), CAST(sum(a) AS BIGINT) FROM (
   SELECT site, present AS p, absent AS a FROM usage_attendance_month
   WHERE month BETWEEN ?4 AND ?5 AND (CAST(?3 AS TEXT) = '' OR site = ?3)
   UNION ALL
   SELECT site, present, absent FROM usage_attendance_day
   WHERE (day BETWEEN ?1 AND ?6 OR day BETWEEN ?7 AND ?2) AND (CAST(?3 AS TEXT) = '' OR site = ?3)
 ) AS u GROUP BY site";
pub const Q_APPS: &str = "SELECT app, CAST(sum(s) / 60 AS BIGINT) AS m FROM (
   SELECT app, seconds AS s FROM usage_app_month
   WHERE month BETWEEN ?4 AND ?5 AND (CAST(?3 AS TEXT) = '' OR site = ?3)
   UNION ALL
   SELECT app, seconds FROM usage_app_day
   WHERE (day BETWEEN ?1 AND ?6 OR day BETWEEN ?7 AND ?2) AND (CAST(?3 AS TEXT) = '' OR site = ?3)
 ) AS u GROUP BY app ORDER BY m DESC, app LIMIT 20";
pub const Q_CATEGORIES: &str = "SELECT category, CAST(sum(n) AS BIGINT) AS t FROM (
   SELECT category, blocked AS n FROM usage_category_month
   WHERE month BETWEEN ?4 AND ?5 AND (CAST(?3 AS TEXT) = '' OR site = ?3)
   UNION ALL
   SELECT category, blocked FROM usage_category_day
   WHERE (day BETWEEN ?1 AND ?6 OR day BETWEEN ?7 AND ?2) AND (CAST(?3 AS TEXT) = '' OR site = ?3)
 ) AS u GROUP BY category ORDER BY t DESC, category LIMIT 20";

/// The week (its Monday, as a day) of a day: 1970-01-01 was a Thursday.
pub fn week_of(day: i64) -> i64 {
    (day + 3).div_euclid(7) * 7 - 3
}

/// The additive sums the store gave, per query.
#[derive(Default)]
pub struct Sums {
    pub dns: Vec<(String, i64, i64)>,
    pub attendance: Vec<(String, i64, i64)>,
    pub apps: Vec<(String, i64)>,
    pub categories: Vec<(String, i64)>,
}

impl Sums {
    /// The per-site sums with the top lists another query read.
    pub fn with_top(self, top: Sums) -> Sums {
        Sums {
            apps: top.apps,
            categories: top.categories,
            ..self
        }
    }
}

/// One tablet's use in the period, gathered from its blocks.
#[derive(Default)]
struct TabletAgg {
    /// Where the key's two `\0` stand (after the site, after the box).
    split: (usize, usize),
    days_used: i64,
    /// In units of `UNIT_SECS` (summed as integers, converted once).
    units: i64,
    last_day: i64,
    /// The class of its latest block, and that block.
    class: Option<(i64, String)>,
    /// Units per week of the period.
    weeks: Vec<i64>,
}

/// Gathers the tablets' blocks as the store reads them, one row at a time and
/// borrowed: one hash lookup per block (its key built in a reused buffer), then one
/// pass over the block's days inside the period, each day's week looked up in a table
/// made once (a year of 500 boxes is some 60,000 blocks, 7 million tablet-days: the
/// pass is the report's inner loop). No allocation but one key per tablet.
pub struct Gatherer {
    p: Period,
    first_week: i64,
    n_weeks: usize,
    /// The week (index from `first_week`) of each day of the period.
    week_index: Vec<u32>,
    /// Per day of the period: tablets used, units of use.
    per_day: Vec<(i64, i64)>,
    /// `site \0 box \0 device` → the tablet's use.
    tablets: HashMap<String, TabletAgg>,
    key: String,
}

impl Gatherer {
    pub fn new(p: &Period) -> Gatherer {
        let first_week = week_of(p.from_day);
        let days = (p.to_day - p.from_day + 1).max(0);
        Gatherer {
            p: p.clone(),
            first_week,
            n_weeks: ((week_of(p.to_day) - first_week) / 7 + 1).max(1) as usize,
            week_index: (0..days)
                .map(|i| ((week_of(p.from_day + i) - first_week) / 7) as u32)
                .collect(),
            per_day: vec![(0, 0); days as usize],
            tablets: HashMap::new(),
            key: String::new(),
        }
    }

    /// One row of `usage_tablet_block`.
    pub fn add(
        &mut self,
        site: &str,
        b: &str,
        device: &str,
        block: i64,
        class: Option<&str>,
        units: &[u8],
    ) {
        let p = &self.p;
        let start = block * BLOCK_DAYS;
        // The block's days inside the period, as offsets in the block and the period.
        let (lo, hi) = (p.from_day.max(start), p.to_day.min(start + BLOCK_DAYS - 1));
        if lo > hi {
            return;
        }
        self.key.clear();
        self.key.push_str(site);
        self.key.push('\0');
        self.key.push_str(b);
        self.key.push('\0');
        self.key.push_str(device);
        let t = match self.tablets.get_mut(self.key.as_str()) {
            Some(t) => t,
            None => {
                let split = (site.len(), site.len() + 1 + b.len());
                let t = self.tablets.entry(self.key.clone()).or_default();
                t.split = split;
                t
            }
        };
        if let Some(class) = class
            && t.class.as_ref().is_none_or(|c| c.0 < block)
        {
            t.class = Some((block, class.to_string()));
        }
        // A short blob (never written so by `add_units`) counts the days it has.
        let (from, to) = ((lo - start) as usize * 2, (hi - start + 1) as usize * 2);
        let days = units.get(from..to.min(units.len())).unwrap_or_default();
        let first = (lo - p.from_day) as usize;
        for (i, pair) in days.chunks_exact(2).enumerate() {
            let n = i64::from(u16::from_le_bytes([pair[0], pair[1]]));
            if n == 0 {
                continue;
            }
            let at = first + i;
            t.days_used += 1;
            t.units += n;
            t.last_day = t.last_day.max(p.from_day + at as i64);
            if t.weeks.is_empty() {
                t.weeks = vec![0; self.n_weeks];
            }
            t.weeks[self.week_index[at] as usize] += n;
            let d = &mut self.per_day[at];
            d.0 += 1;
            d.1 += n;
        }
    }

    /// The report, with the store's sums.
    pub fn finish(self, sums: Sums) -> UsageReport {
        let (p, first_week, n_weeks) = (&self.p, self.first_week, self.n_weeks);
        // Sorted by key: `site \0 box \0 device` sorts as (site, box, device) does.
        let mut tablets: Vec<(String, TabletAgg)> = self
            .tablets
            .into_iter()
            .filter(|(_, t)| t.days_used > 0)
            .collect();
        tablets.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut by_site: BTreeMap<String, SiteUsage> = BTreeMap::new();
        let mut weeks: HashMap<(&str, &str), Vec<(i64, i64)>> = HashMap::new();
        let mut used: Vec<TabletUsage> = Vec::with_capacity(tablets.len());
        for (key, t) in &tablets {
            let (site, b, device) = (
                &key[..t.split.0],
                &key[t.split.0 + 1..t.split.1],
                &key[t.split.1 + 1..],
            );
            let class = t.class.as_ref().map_or("", |c| c.1.as_str());
            // Sorted by key, a site's tablets come together: its row is the last one
            // once made.
            let s = match by_site.last_entry() {
                Some(row) if row.key() == site => row.into_mut(),
                _ => site_row(&mut by_site, site),
            };
            s.tablets_used += 1;
            s.minutes += t.units;
            let w = weeks
                .entry((site, class))
                .or_insert_with(|| vec![(0, 0); n_weeks]);
            for (i, n) in t.weeks.iter().enumerate().filter(|(_, n)| **n > 0) {
                w[i].0 += 1;
                w[i].1 += n;
            }
            used.push(TabletUsage {
                site: site.to_string(),
                r#box: b.to_string(),
                tablet: device.to_string(),
                class: t.class.as_ref().map(|c| c.1.clone()),
                days_used: t.days_used,
                minutes: t.units * UNIT_SECS / 60,
                last_day: t.last_day,
            });
        }
        for s in by_site.values_mut() {
            s.minutes = s.minutes * UNIT_SECS / 60;
        }
        for (name, q, b) in &sums.dns {
            let s = site_row(&mut by_site, name);
            (s.queries, s.blocked) = (*q, *b);
        }
        for (name, present, absent) in &sums.attendance {
            let s = site_row(&mut by_site, name);
            (s.present, s.absent) = (*present, *absent);
        }
        let mut weeks: Vec<_> = weeks.into_iter().collect();
        weeks.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let class_weeks = weeks
            .into_iter()
            .flat_map(|((site, class), w)| {
                w.into_iter()
                    .enumerate()
                    .filter(|(_, x)| x.0 > 0)
                    .map(move |(i, (t, n))| {
                        (
                            site.to_string(),
                            class.to_string(),
                            first_week + 7 * i as i64,
                            n * UNIT_SECS / 60,
                            t,
                        )
                    })
            })
            .collect();
        UsageReport {
            days: self
                .per_day
                .iter()
                .enumerate()
                .filter(|(_, d)| d.0 > 0)
                .map(|(i, d)| (p.from_day + i as i64, d.0, d.1 * UNIT_SECS / 60))
                .collect(),
            sites: by_site.into_values().collect(),
            class_weeks,
            tablets: used,
            apps: sums.apps,
            categories: sums.categories,
        }
    }
}

fn site_row<'a>(by: &'a mut BTreeMap<String, SiteUsage>, name: &str) -> &'a mut SiteUsage {
    by.entry(name.to_string()).or_insert_with(|| SiteUsage {
        site: name.to_string(),
        ..SiteUsage::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::parse_date;
    use crate::store::rollup::add_units;

    #[test]
    fn whole_months_and_the_days_around_them() {
        let day = |s| parse_date(s).unwrap();
        let p = |from, to| Period {
            from_day: day(from),
            to_day: day(to),
            site: String::new(),
        };
        let (m1, m2, left, right) = p("2026-01-15", "2026-04-10").months();
        assert_eq!(
            (m1, m2),
            (month_of(day("2026-02-01")), month_of(day("2026-03-31")))
        );
        assert_eq!((left, right), (day("2026-01-31"), day("2026-04-01")));
        let (m1, m2, left, right) = p("2026-03-03", "2026-03-20").months();
        assert!(m1 > m2);
        assert_eq!((left, right), (day("2026-03-20"), day("2026-03-21")));
        let (m1, m2, ..) = p("2026-03-01", "2026-03-31").months();
        assert_eq!(m1, m2);
    }

    #[test]
    fn tablets_used_are_counted_once_and_only_inside_the_period() {
        let mut units = Vec::new();
        add_units(&mut units, 0, 600);
        add_units(&mut units, 1, 1200);
        add_units(&mut units, 40, 60);
        let start = 150 * BLOCK_DAYS;
        let p = Period {
            from_day: start,
            to_day: start + 10,
            site: String::new(),
        };
        let sums = Sums {
            dns: vec![("s".into(), 10, 1)],
            attendance: Vec::new(),
            apps: Vec::new(),
            categories: Vec::new(),
        };
        let mut g = Gatherer::new(&p);
        g.add("s", "b", "t1", 150, Some("CM1"), &units);
        g.add("s", "b", "t2", 150, Some("CE2"), &units);
        let r = g.finish(sums);
        assert_eq!(r.days, [(start, 2, 20), (start + 1, 2, 40)]);
        assert_eq!(
            (
                r.sites[0].tablets_used,
                r.sites[0].minutes,
                r.sites[0].queries
            ),
            (2, 60, 10)
        );
        assert_eq!(r.tablets[0].days_used, 2);
        assert_eq!(r.tablets[0].class.as_deref(), Some("CM1"));
        assert_eq!(r.class_weeks.iter().map(|w| w.3).sum::<i64>(), 60);
    }
}
