//! The usage rollups in SQLite: the column and backfill a store made before them
//! gets, a batch's sums applied in the ingest's transaction, the tablets' blocks read
//! and written back, and the report's queries.

use rusqlite::{Connection, OptionalExtension, params};

use super::report::{self, Period, Sums};
use super::rollup::{self, Rollups};

/// A store made before the boxes' event counts gets the column (counted once, with
/// the rollups' backfill).
pub fn add_events_column(conn: &Connection) -> rusqlite::Result<()> {
    let has: bool = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('boxes') WHERE name = 'events'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has {
        conn.execute_batch(
            "ALTER TABLE boxes ADD COLUMN events INTEGER NOT NULL DEFAULT 0;
             DELETE FROM counters WHERE name = 'rollups_built';",
        )?;
    }
    Ok(())
}

/// Rolls up the events a store already had when the rollups came (once), a box at a
/// time (memory stays that of one box's rollups), and counts each box's events.
pub fn backfill_rollups(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let done: Option<i64> = tx
        .query_row(
            "SELECT value FROM counters WHERE name = 'rollups_built'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if done.is_none() {
        let mut r = Rollups::default();
        let mut current: Option<(String, String)> = None;
        {
            let mut st = tx.prepare(
                "SELECT site, box, at, body FROM events
                 WHERE type IN ('app_usage', 'dns_hourly', 'attendance') ORDER BY site, box, seq",
            )?;
            let mut rows = st.query([])?;
            while let Some(row) = rows.next()? {
                let (site, b): (String, String) = (row.get(0)?, row.get(1)?);
                if current.as_ref().is_some_and(|c| c.0 != site || c.1 != b) {
                    apply_rollups(&tx, &std::mem::take(&mut r))?;
                }
                let body: String = row.get(3)?;
                if let Ok(body) = serde_json::from_str(&body) {
                    r.add(&site, &b, row.get(2)?, &body);
                }
                current = Some((site, b));
            }
        }
        apply_rollups(&tx, &r)?;
        tx.execute(
            "UPDATE boxes SET events = (SELECT count(*) FROM events e
             WHERE e.site = boxes.site AND e.box = boxes.box)",
            [],
        )?;
        tx.execute(
            "INSERT INTO counters(name, value) VALUES ('rollups_built', 1)",
            [],
        )?;
    }
    tx.commit()
}

/// Adds `r` to the rollup tables (in the caller's transaction).
pub fn apply_rollups(tx: &Connection, r: &Rollups) -> rusqlite::Result<()> {
    let mut get = tx.prepare_cached(
        "SELECT units FROM usage_tablet_block WHERE block = ?4 AND site = ?1 AND box = ?2 AND device = ?3",
    )?;
    let mut put = tx.prepare_cached(
        "INSERT INTO usage_tablet_block(site, box, device, block, class, units)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (block, site, box, device) DO UPDATE
         SET class = coalesce(excluded.class, usage_tablet_block.class), units = excluded.units",
    )?;
    for ((site, b, device, block), (class, days)) in r.blocks() {
        let mut units: Vec<u8> = get
            .query_row(params![site, b, device, block], |r| r.get(0))
            .optional()?
            .unwrap_or_default();
        for (offset, seconds) in days {
            rollup::add_units(&mut units, offset, seconds);
        }
        put.execute(params![site, b, device, block, class, units])?;
    }
    let four = |sql: &str, rows: Vec<(&String, i64, &String, i64)>| -> rusqlite::Result<()> {
        let mut st = tx.prepare_cached(sql)?;
        for (a, b, c, d) in rows {
            st.execute(params![a, b, c, d])?;
        }
        Ok(())
    };
    four(
        rollup::UPSERT_APP_DAY,
        r.app_day
            .iter()
            .map(|((s, d, a), n)| (s, *d, a, *n))
            .collect(),
    )?;
    four(
        rollup::UPSERT_APP_MONTH,
        r.app_month
            .iter()
            .map(|((s, m, a), n)| (s, *m, a, *n))
            .collect(),
    )?;
    four(
        rollup::UPSERT_CATEGORY_DAY,
        r.category_day
            .iter()
            .map(|((s, d, c), n)| (s, *d, c, *n))
            .collect(),
    )?;
    four(
        rollup::UPSERT_CATEGORY_MONTH,
        r.category_month
            .iter()
            .map(|((s, m, c), n)| (s, *m, c, *n))
            .collect(),
    )?;
    for (sql, rows) in [
        (rollup::UPSERT_DNS_MONTH, &r.dns_month),
        (rollup::UPSERT_ATTENDANCE_MONTH, &r.attendance_month),
    ] {
        let mut st = tx.prepare_cached(sql)?;
        for ((site, month), (a, b)) in rows {
            st.execute(params![site, month, a, b])?;
        }
    }
    let mut st = tx.prepare_cached(rollup::UPSERT_DNS_DAY)?;
    for ((site, day), (q, b)) in &r.dns_day {
        st.execute(params![site, day, q, b])?;
    }
    let mut st = tx.prepare_cached(rollup::UPSERT_ATTENDANCE_DAY)?;
    for ((site, day), (p, a)) in &r.attendance_day {
        st.execute(params![site, day, p, a])?;
    }
    Ok(())
}

/// The tablets' blocks `first..=last` of `p`, gathered.
pub fn gather(
    conn: &Connection,
    p: &Period,
    (first, last): (i64, i64),
) -> rusqlite::Result<report::Gatherer> {
    let mut gathered = report::Gatherer::new(p);
    let mut st = conn.prepare_cached(report::Q_BLOCKS)?;
    let mut rows = st.query(params![first, last, p.site])?;
    while let Some(r) = rows.next()? {
        gathered.add(
            r.get_ref(0)?.as_str()?,
            r.get_ref(1)?.as_str()?,
            r.get_ref(2)?.as_str()?,
            r.get(3)?,
            r.get_ref(4)?.as_str_or_null()?,
            r.get_ref(5)?.as_blob()?,
        );
    }
    Ok(gathered)
}

/// The sums of `p`: with `per_site`, DNS counters and roll calls per site; else the
/// top apps and blocked categories.
pub fn sums(conn: &Connection, p: &Period, per_site: bool) -> rusqlite::Result<Sums> {
    let (m1, m2, left, right) = p.months();
    let all = params![p.from_day, p.to_day, p.site, m1, m2, left, right];
    let triples = |sql: &str| -> rusqlite::Result<Vec<(String, i64, i64)>> {
        conn.prepare_cached(sql)?
            .query_map(all, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect()
    };
    let pairs = |sql: &str| -> rusqlite::Result<Vec<(String, i64)>> {
        conn.prepare_cached(sql)?
            .query_map(all, |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
    };
    Ok(if per_site {
        Sums {
            dns: triples(report::Q_SITES_DNS)?,
            attendance: triples(report::Q_SITES_ATTENDANCE)?,
            ..Sums::default()
        }
    } else {
        Sums {
            apps: pairs(report::Q_APPS)?,
            categories: pairs(report::Q_CATEGORIES)?,
            ..Sums::default()
        }
    })
}

/// The usage pages' report for `p`, on one connection: the tests' way (the console
/// runs the same parts on three at once, `Db::usage_report`).
#[cfg(test)]
pub fn usage_report(conn: &Connection, p: &Period) -> rusqlite::Result<report::UsageReport> {
    let s = sums(conn, p, true)?.with_top(sums(conn, p, false)?);
    Ok(gather(conn, p, p.blocks())?.finish(s))
}
