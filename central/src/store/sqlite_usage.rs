//! The usage rollups in SQLite: the column and backfill a store made before them
//! gets, a batch's sums applied in the ingest's transaction, the tablets' blocks read
//! and written back, and the report's queries.

use rusqlite::{Connection, OptionalExtension, params};

use super::report::{self, BlockRow, Period, Sums, UsageReport};
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
        "SELECT units FROM usage_tablet_block WHERE site = ?1 AND box = ?2 AND device = ?3 AND block = ?4",
    )?;
    let mut put = tx.prepare_cached(
        "INSERT INTO usage_tablet_block(site, box, device, block, class, units)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (site, box, device, block) DO UPDATE
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
    for ((site, day, class), (p, a)) in &r.attendance_day {
        st.execute(params![site, day, class, p, a])?;
    }
    Ok(())
}

/// The usage pages' report for `p`.
pub fn usage_report(conn: &Connection, p: &Period) -> rusqlite::Result<UsageReport> {
    let (first, last) = p.blocks();
    let blocks: Vec<BlockRow> = conn
        .prepare_cached(report::Q_BLOCKS)?
        .query_map(params![first, last, p.site], |r| {
            Ok(BlockRow {
                site: r.get(0)?,
                r#box: r.get(1)?,
                device: r.get(2)?,
                block: r.get(3)?,
                class: r.get(4)?,
                units: r.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;
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
    let sums = Sums {
        dns: triples(report::Q_SITES_DNS)?,
        attendance: triples(report::Q_SITES_ATTENDANCE)?,
        apps: pairs(report::Q_APPS)?,
        categories: pairs(report::Q_CATEGORIES)?,
    };
    Ok(report::assemble(p, &blocks, sums))
}
