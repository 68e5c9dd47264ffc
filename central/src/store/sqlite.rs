//! The fleet store in SQLite (WAL, synchronous=FULL): the default, for a fleet one
//! machine serves.

use std::path::Path;

use cartable_protocol::events::{Batch, Presence, ReportedState};
use rusqlite::{Connection, OptionalExtension, params};

use super::{BoxRow, EventRow, Ingested, Usage};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS boxes (
    site      TEXT NOT NULL,
    box       TEXT NOT NULL,
    online    INTEGER NOT NULL DEFAULT 0,
    version   TEXT NOT NULL DEFAULT '',
    last_seen INTEGER NOT NULL DEFAULT 0,
    state     TEXT,
    PRIMARY KEY (site, box)
) STRICT;
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY,
    site        TEXT NOT NULL,
    box         TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    type        TEXT NOT NULL,
    body        TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    UNIQUE (site, box, seq)
) STRICT;
CREATE INDEX IF NOT EXISTS events_by_type ON events(type, site, at);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
";

pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub fn bump(conn: &Connection, name: &str, by: i64) -> rusqlite::Result<()> {
    if by != 0 {
        conn.prepare_cached(
            "INSERT INTO counters(name, value) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
        )?
        .execute(params![name, by])?;
    }
    Ok(())
}

/// Stores a batch from `site`/`box` (the topic's names, not the batch's claims).
pub fn ingest(
    conn: &mut Connection,
    site: &str,
    box_id: &str,
    batch: &Batch,
) -> rusqlite::Result<Ingested> {
    let tx = conn.transaction()?;
    let mut out = Ingested::default();
    {
        let mut max_seq: i64 = tx
            .prepare_cached(
                "SELECT coalesce(max(seq), 0) FROM events WHERE site = ?1 AND box = ?2",
            )?
            .query_row(params![site, box_id], |r| r.get(0))?;
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO events(site, box, seq, at, type, body, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let received = now();
        for e in &batch.events {
            let body = serde_json::to_value(&e.body).unwrap_or_default();
            let kind = body
                .get("type")
                .and_then(|t| t.as_str())
                .unwrap_or("unknown")
                .to_string();
            let n = insert.execute(params![
                site,
                box_id,
                e.seq as i64,
                e.at,
                kind,
                body.to_string(),
                received
            ])?;
            if n == 0 {
                out.duplicates += 1;
            } else {
                out.new += 1;
                if (e.seq as i64) < max_seq {
                    out.out_of_order += 1;
                }
                max_seq = max_seq.max(e.seq as i64);
            }
        }
        tx.prepare_cached(
            "INSERT INTO boxes(site, box, last_seen) VALUES (?1, ?2, ?3)
             ON CONFLICT(site, box) DO UPDATE SET last_seen = excluded.last_seen",
        )?
        .execute(params![site, box_id, received])?;
        bump(&tx, "events", out.new as i64)?;
        bump(&tx, "duplicates", out.duplicates as i64)?;
        bump(&tx, "out_of_order", out.out_of_order as i64)?;
    }
    tx.commit()?;
    Ok(out)
}

pub fn presence(conn: &Connection, site: &str, box_id: &str, p: &Presence) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO boxes(site, box, online, version, last_seen) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(site, box) DO UPDATE SET online = excluded.online,
           version = CASE WHEN excluded.version = '' THEN version ELSE excluded.version END,
           last_seen = excluded.last_seen",
    )?
    .execute(params![site, box_id, p.online as i64, p.version, now()])?;
    Ok(())
}

pub fn state(
    conn: &Connection,
    site: &str,
    box_id: &str,
    s: &ReportedState,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO boxes(site, box, version, last_seen, state) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(site, box) DO UPDATE SET version = excluded.version,
           last_seen = excluded.last_seen, state = excluded.state",
    )?
    .execute(params![
        site,
        box_id,
        s.version,
        now(),
        serde_json::to_string(s).unwrap_or_default()
    ])?;
    Ok(())
}

pub fn count(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    Ok(conn
        .prepare_cached("SELECT value FROM counters WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

pub fn boxes(conn: &Connection) -> rusqlite::Result<Vec<BoxRow>> {
    let mut st = conn.prepare(
        "SELECT b.site, b.box, b.online, b.version, b.last_seen, b.state,
                (SELECT count(*) FROM events e WHERE e.site = b.site AND e.box = b.box)
         FROM boxes b ORDER BY b.site, b.box",
    )?;
    st.query_map([], |r| {
        let state: Option<String> = r.get(5)?;
        Ok(BoxRow {
            site: r.get(0)?,
            r#box: r.get(1)?,
            online: r.get::<_, i64>(2)? != 0,
            version: r.get(3)?,
            last_seen: r.get(4)?,
            state: state.and_then(|s| serde_json::from_str(&s).ok()),
            events: r.get(6)?,
        })
    })?
    .collect()
}

/// Events in arrival order, after `after_id`.
pub fn events(
    conn: &Connection,
    site: Option<&str>,
    box_id: Option<&str>,
    after_id: i64,
    limit: i64,
) -> rusqlite::Result<Vec<EventRow>> {
    let mut st = conn.prepare_cached(
        "SELECT id, site, box, seq, at, body FROM events
         WHERE id > ?1 AND (?2 IS NULL OR site = ?2) AND (?3 IS NULL OR box = ?3)
         ORDER BY id LIMIT ?4",
    )?;
    st.query_map(params![after_id, site, box_id, limit], |r| {
        let body: String = r.get(5)?;
        Ok(EventRow {
            id: r.get(0)?,
            site: r.get(1)?,
            r#box: r.get(2)?,
            seq: r.get(3)?,
            at: r.get(4)?,
            body: serde_json::from_str(&body).unwrap_or_default(),
        })
    })?
    .collect()
}

pub fn usage(conn: &Connection) -> rusqlite::Result<Usage> {
    let active_devices = conn
        .prepare(
            "SELECT site, date(json_extract(body, '$.hour'), 'unixepoch') AS day,
                    count(DISTINCT json_extract(body, '$.client'))
             FROM events WHERE type = 'dns_hourly' AND json_extract(body, '$.client') != '*'
             GROUP BY site, day ORDER BY site, day DESC LIMIT 500",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let top_apps = conn
        .prepare(
            "SELECT site, json_extract(body, '$.app') AS app, sum(json_extract(body, '$.seconds')) AS s
             FROM events WHERE type = 'app_usage' GROUP BY site, app ORDER BY site, s DESC LIMIT 500",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let blocked_categories = conn
        .prepare(
            "SELECT e.site, c.key, sum(c.value) AS n
             FROM events e, json_each(e.body, '$.categories') c
             WHERE e.type = 'dns_hourly' GROUP BY e.site, c.key ORDER BY e.site, n DESC LIMIT 500",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    Ok(Usage {
        active_devices,
        top_apps,
        blocked_categories,
    })
}
