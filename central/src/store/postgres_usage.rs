//! The usage rollups in PostgreSQL: the backfill of a store made before them, a
//! batch's sums applied with one statement per table (`unnest` of arrays), the
//! tablets' blocks read locked and written back, and the report's queries.

use futures_util::StreamExt;
use tokio_postgres::Client;

use super::report::{self, Period, Sums, UsageReport};
use super::rollup::{self, Rollups};

/// Rolls up the events a store already had when the rollups came (once), a box at a
/// time (its events read, rolled up and applied before the next box's: memory stays
/// that of one box), and counts each box's events.
pub async fn backfill(c: &Client) -> anyhow::Result<()> {
    // The column on its own, before the transaction (see `postgres::apply_schema`).
    c.batch_execute("ALTER TABLE boxes ADD COLUMN IF NOT EXISTS events BIGINT NOT NULL DEFAULT 0")
        .await?;
    c.batch_execute("BEGIN; LOCK TABLE counters IN EXCLUSIVE MODE")
        .await?;
    let result = async {
        let done = c
            .query_opt("SELECT 1 FROM counters WHERE name = 'rollups_built'", &[])
            .await?
            .is_some();
        if done {
            return anyhow::Ok(());
        }
        let boxes = c
            .query(
                "SELECT DISTINCT site, box FROM events ORDER BY site, box",
                &[],
            )
            .await?;
        for b in &boxes {
            let (site, box_id): (&str, &str) = (b.get(0), b.get(1));
            let mut r = Rollups::default();
            for row in c
                .query(
                    "SELECT at, body::text FROM events WHERE site = $1 AND box = $2
                     AND type IN ('app_usage', 'dns_hourly', 'attendance') ORDER BY seq",
                    &[&site, &box_id],
                )
                .await?
            {
                if let Ok(body) = serde_json::from_str(row.get::<_, &str>(1)) {
                    r.add(site, box_id, row.get(0), &body);
                }
            }
            apply_rollups(c, &r).await?;
        }
        c.batch_execute(
            "UPDATE boxes SET events = (SELECT count(*) FROM events e
             WHERE e.site = boxes.site AND e.box = boxes.box);
             INSERT INTO counters(name, value) VALUES ('rollups_built', 1);",
        )
        .await?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok(c.batch_execute("COMMIT").await?),
        Err(e) => {
            let _ = c.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Columns of one rollup table, for `unnest`.
#[derive(Default)]
struct Columns<'a> {
    site: Vec<&'a str>,
    day: Vec<i64>,
    key: Vec<&'a str>,
    a: Vec<i64>,
    b: Vec<i64>,
}

impl<'a> Columns<'a> {
    fn push(&mut self, site: &'a str, day: i64, key: &'a str, a: i64, b: i64) {
        self.site.push(site);
        self.day.push(day);
        self.key.push(key);
        self.a.push(a);
        self.b.push(b);
    }
}

/// Adds the tablets' days to their blocks: the blocks read (locked, for a second
/// console instance) and written back, one statement each.
async fn apply_blocks(c: &Client, r: &Rollups) -> anyhow::Result<()> {
    let blocks = r.blocks();
    if blocks.is_empty() {
        return Ok(());
    }
    let (mut sites, mut boxes, mut devices, mut numbers) = (vec![], vec![], vec![], vec![]);
    for (site, b, device, block) in blocks.keys() {
        sites.push(site.as_str());
        boxes.push(b.as_str());
        devices.push(device.as_str());
        numbers.push(*block);
    }
    let found = c
        .query(
            "SELECT t.site, t.box, t.device, t.block, t.units FROM usage_tablet_block t
             JOIN unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS k(s, b, d, n)
               ON t.site = k.s AND t.box = k.b AND t.device = k.d AND t.block = k.n
             FOR UPDATE OF t",
            &[&sites, &boxes, &devices, &numbers],
        )
        .await?;
    let mut units: std::collections::HashMap<(String, String, String, i64), Vec<u8>> = found
        .into_iter()
        .map(|row| ((row.get(0), row.get(1), row.get(2), row.get(3)), row.get(4)))
        .collect();
    let mut classes: Vec<Option<&str>> = Vec::new();
    let mut all_units: Vec<Vec<u8>> = Vec::new();
    for (key, (class, days)) in &blocks {
        let mut u = units.remove(key).unwrap_or_default();
        for (offset, seconds) in days {
            rollup::add_units(&mut u, *offset, *seconds);
        }
        classes.push(class.as_deref());
        all_units.push(u);
    }
    c.execute(
        "INSERT INTO usage_tablet_block(site, box, device, block, class, units)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bytea[])
         ON CONFLICT (block, site, box, device) DO UPDATE
         SET class = coalesce(excluded.class, usage_tablet_block.class), units = excluded.units",
        &[&sites, &boxes, &devices, &numbers, &classes, &all_units],
    )
    .await?;
    Ok(())
}

/// Adds `r` to the rollup tables, one statement per table (`unnest` of arrays).
pub async fn apply_rollups(c: &Client, r: &Rollups) -> anyhow::Result<()> {
    apply_blocks(c, r).await?;
    let mut apps = Columns::default();
    for ((site, day, app), seconds) in &r.app_day {
        apps.push(site, *day, app, *seconds, 0);
    }
    let mut app_months = Columns::default();
    for ((site, month, app), seconds) in &r.app_month {
        app_months.push(site, *month, app, *seconds, 0);
    }
    let mut category_months = Columns::default();
    for ((site, month, category), n) in &r.category_month {
        category_months.push(site, *month, category, *n, 0);
    }
    let mut dns = Columns::default();
    for ((site, day), (q, b)) in &r.dns_day {
        dns.push(site, *day, "", *q, *b);
    }
    let mut categories = Columns::default();
    for ((site, day, category), n) in &r.category_day {
        categories.push(site, *day, category, *n, 0);
    }
    let mut dns_months = Columns::default();
    for ((site, month), (q, b)) in &r.dns_month {
        dns_months.push(site, *month, "", *q, *b);
    }
    let mut attendance_months = Columns::default();
    for ((site, month), (p, a)) in &r.attendance_month {
        attendance_months.push(site, *month, "", *p, *a);
    }
    let mut attendance = Columns::default();
    for ((site, day), (p, a)) in &r.attendance_day {
        attendance.push(site, *day, "", *p, *a);
    }
    let tables = [
        (
            &dns_months,
            "INSERT INTO usage_dns_month(site, month, queries, blocked)
             SELECT s, d, a, b FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[]) AS u(s, d, k, a, b)
             ON CONFLICT (site, month) DO UPDATE SET queries = usage_dns_month.queries + excluded.queries,
               blocked = usage_dns_month.blocked + excluded.blocked",
        ),
        (
            &attendance_months,
            "INSERT INTO usage_attendance_month(site, month, present, absent)
             SELECT s, d, a, b FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[]) AS u(s, d, k, a, b)
             ON CONFLICT (site, month) DO UPDATE SET present = usage_attendance_month.present + excluded.present,
               absent = usage_attendance_month.absent + excluded.absent",
        ),
        (
            &app_months,
            "INSERT INTO usage_app_month(site, month, app, seconds)
             SELECT s, d, k, a FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[]) AS u(s, d, k, a, b)
             ON CONFLICT (site, month, app) DO UPDATE SET seconds = usage_app_month.seconds + excluded.seconds",
        ),
        (
            &category_months,
            "INSERT INTO usage_category_month(site, month, category, blocked)
             SELECT s, d, k, a FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[]) AS u(s, d, k, a, b)
             ON CONFLICT (site, month, category) DO UPDATE
             SET blocked = usage_category_month.blocked + excluded.blocked",
        ),
        (
            &apps,
            "INSERT INTO usage_app_day(site, day, app, seconds)
             SELECT s, d, k, a FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[]) AS u(s, d, k, a, b)
             ON CONFLICT (site, day, app) DO UPDATE SET seconds = usage_app_day.seconds + excluded.seconds",
        ),
        (
            &dns,
            "INSERT INTO usage_dns_day(site, day, queries, blocked)
             SELECT s, d, a, b FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[]) AS u(s, d, k, a, b)
             ON CONFLICT (site, day) DO UPDATE SET queries = usage_dns_day.queries + excluded.queries,
               blocked = usage_dns_day.blocked + excluded.blocked",
        ),
        (
            &categories,
            "INSERT INTO usage_category_day(site, day, category, blocked)
             SELECT s, d, k, a FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[]) AS u(s, d, k, a, b)
             ON CONFLICT (site, day, category) DO UPDATE
             SET blocked = usage_category_day.blocked + excluded.blocked",
        ),
        (
            &attendance,
            "INSERT INTO usage_attendance_day(site, day, present, absent)
             SELECT s, d, a, b FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[]) AS u(s, d, k, a, b)
             ON CONFLICT (site, day) DO UPDATE
             SET present = usage_attendance_day.present + excluded.present,
                 absent = usage_attendance_day.absent + excluded.absent",
        ),
    ];
    for (cols, sql) in tables {
        if !cols.site.is_empty() {
            c.execute(sql, &[&cols.site, &cols.day, &cols.key, &cols.a, &cols.b])
                .await?;
        }
    }
    Ok(())
}

/// The usage pages' report for `p`.
pub async fn usage_report(c: &Client, p: &Period) -> anyhow::Result<UsageReport> {
    let (first, last) = p.blocks();
    let blocks_sql = rollup::for_postgres(report::Q_BLOCKS);
    let block_args: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&first, &last, &p.site];
    // Streamed: each row is counted as it arrives, while the server sends the next
    // (collected first, the server then the client would each wait for the other).
    let blocks = async {
        let rows = c.query_raw(&blocks_sql, block_args).await?;
        let mut rows = std::pin::pin!(rows);
        let mut gathered = report::Gatherer::new(p);
        while let Some(r) = rows.next().await {
            let r = r?;
            gathered.add(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
        }
        anyhow::Ok(gathered)
    };
    let (m1, m2, left, right) = p.months();
    let all: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
        [&p.from_day, &p.to_day, &p.site, &m1, &m2, &left, &right];
    let triples = |sql: &'static str| async move {
        let rows = c.query(&rollup::for_postgres(sql), &all).await?;
        anyhow::Ok(
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect::<Vec<_>>(),
        )
    };
    let pairs = |sql: &'static str| async move {
        let rows = c.query(&rollup::for_postgres(sql), &all).await?;
        anyhow::Ok(
            rows.iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect::<Vec<_>>(),
        )
    };
    // Sent together: the connection pipelines them.
    let (blocks, dns, attendance, apps, categories) = tokio::join!(
        blocks,
        triples(report::Q_SITES_DNS),
        triples(report::Q_SITES_ATTENDANCE),
        pairs(report::Q_APPS),
        pairs(report::Q_CATEGORIES),
    );
    let gathered = blocks?;
    let sums = Sums {
        dns: dns?,
        attendance: attendance?,
        apps: apps?,
        categories: categories?,
    };
    Ok(gathered.finish(sums))
}
