//! The fleet store in SQLite (WAL, synchronous=FULL): the default, for a fleet one
//! machine serves.

use std::path::Path;

use cartable_protocol::events::{Batch, Presence, ReportedState};
use rusqlite::{Connection, OptionalExtension, params};

use super::rollup::{self, Rollups};
use super::{BoxRow, EventRow, Held, Ingested, Order, Pinned, Published, Stamp};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS boxes (
    site      TEXT NOT NULL,
    box       TEXT NOT NULL,
    online    INTEGER NOT NULL DEFAULT 0,
    version   TEXT NOT NULL DEFAULT '',
    last_seen INTEGER NOT NULL DEFAULT 0,
    state     TEXT,
    -- Events stored for the box (kept at ingest: the fleet page never counts them).
    events    INTEGER NOT NULL DEFAULT 0,
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
CREATE TABLE IF NOT EXISTS box_keys (
    site           TEXT NOT NULL,
    box            TEXT NOT NULL,
    public_key     TEXT NOT NULL,
    source         TEXT NOT NULL,
    pinned_at      INTEGER NOT NULL,
    presence_stamp INTEGER NOT NULL DEFAULT -1,
    state_stamp    INTEGER NOT NULL DEFAULT -1,
    PRIMARY KEY (site, box)
) STRICT;
CREATE TABLE IF NOT EXISTS quarantine (
    id          INTEGER PRIMARY KEY,
    site        TEXT NOT NULL,
    box         TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    topic       TEXT NOT NULL,
    payload     BLOB NOT NULL,
    received_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS quarantine_by_key ON quarantine(site, box, public_key);
CREATE TABLE IF NOT EXISTS rollouts (
    scope      TEXT PRIMARY KEY,
    body       TEXT NOT NULL,
    changed_at INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS admins (
    login    TEXT PRIMARY KEY,
    password TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS published (
    kind     TEXT NOT NULL,
    scope    TEXT NOT NULL,
    version  INTEGER NOT NULL,
    source   TEXT NOT NULL,
    by_login TEXT NOT NULL,
    at       INTEGER NOT NULL,
    PRIMARY KEY (kind, scope)
) STRICT;
";

/// Adds an admin, or sets an admin's password (`password`: the stored form).
pub fn set_admin(conn: &Connection, login: &str, password: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO admins (login, password) VALUES (?1, ?2)
         ON CONFLICT (login) DO UPDATE SET password = excluded.password",
        params![login, password],
    )?;
    Ok(())
}

/// An admin's stored password, if the account exists.
pub fn admin_password(conn: &Connection, login: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT password FROM admins WHERE login = ?1",
        [login],
        |r| r.get(0),
    )
    .optional()
}

pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(SCHEMA)?;
    super::sqlite_usage::add_events_column(&conn)?;
    conn.execute_batch(rollup::SCHEMA)?;
    conn.execute_batch(rollup::TABLET_BLOCKS_SQLITE)?;
    super::sqlite_usage::backfill_rollups(&mut conn)?;
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
    let mut rolled = Rollups::default();
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
                rolled.add(site, box_id, e.at, &e.body);
                out.new += 1;
                if (e.seq as i64) < max_seq {
                    out.out_of_order += 1;
                }
                max_seq = max_seq.max(e.seq as i64);
            }
        }
        tx.prepare_cached(
            "INSERT INTO boxes(site, box, last_seen, events) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(site, box) DO UPDATE SET last_seen = excluded.last_seen,
               events = boxes.events + excluded.events",
        )?
        .execute(params![site, box_id, received, out.new as i64])?;
        bump(&tx, "events", out.new as i64)?;
        bump(&tx, "duplicates", out.duplicates as i64)?;
        bump(&tx, "out_of_order", out.out_of_order as i64)?;
        super::sqlite_usage::apply_rollups(&tx, &rolled)?;
    }
    tx.commit()?;
    Ok(out)
}

/// The key pinned for a box, if any.
fn pinned(conn: &Connection, site: &str, box_id: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT public_key FROM box_keys WHERE site = ?1 AND box = ?2")?
        .query_row(params![site, box_id], |r| r.get(0))
        .optional()
}

/// Pins `key` for a box; an existing, different pin is kept unless `replace`.
pub fn pin(
    conn: &mut Connection,
    site: &str,
    box_id: &str,
    key: &str,
    source: &str,
    replace: bool,
) -> rusqlite::Result<Pinned> {
    let tx = conn.transaction()?;
    let old = pinned(&tx, site, box_id)?;
    let out = match old {
        Some(old) if old == key => Pinned::Same,
        Some(old) if !replace => Pinned::Conflict { old },
        old => {
            tx.prepare_cached(
                "INSERT INTO box_keys(site, box, public_key, source, pinned_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(site, box) DO UPDATE SET public_key = excluded.public_key,
                   source = excluded.source, pinned_at = excluded.pinned_at,
                   presence_stamp = -1, state_stamp = -1",
            )?
            .execute(params![site, box_id, key, source, now()])?;
            match old {
                Some(old) => Pinned::Replaced { old },
                None => Pinned::New,
            }
        }
    };
    tx.commit()?;
    Ok(out)
}

/// Moves a box's stamp for `which` forward to `stamp`, if it is newer.
fn advance(
    tx: &Connection,
    site: &str,
    box_id: &str,
    which: Stamp,
    stamp: i64,
) -> rusqlite::Result<Order> {
    let column = which.column();
    let moved = tx
        .prepare_cached(&format!(
            "UPDATE box_keys SET {column} = ?3 WHERE site = ?1 AND box = ?2 AND {column} < ?3"
        ))?
        .execute(params![site, box_id, stamp])?;
    if moved == 1 {
        return Ok(Order::Newer);
    }
    let same = tx
        .prepare_cached(&format!(
            "SELECT 1 FROM box_keys WHERE site = ?1 AND box = ?2 AND {column} = ?3"
        ))?
        .exists(params![site, box_id, stamp])?;
    Ok(if same { Order::Same } else { Order::Older })
}

/// Keeps a message whose key is not the pinned one, up to `max` per box.
pub fn hold(
    conn: &Connection,
    site: &str,
    box_id: &str,
    key: &str,
    topic: &str,
    payload: &[u8],
    max: i64,
) -> rusqlite::Result<bool> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM quarantine WHERE site = ?1 AND box = ?2")?
        .query_row(params![site, box_id], |r| r.get(0))?;
    if n >= max {
        return Ok(false);
    }
    conn.prepare_cached(
        "INSERT INTO quarantine(site, box, public_key, topic, payload, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![site, box_id, key, topic, payload, now()])?;
    Ok(true)
}

/// The messages held for a box under `key`, oldest first.
pub fn held(conn: &Connection, site: &str, box_id: &str, key: &str) -> rusqlite::Result<Vec<Held>> {
    conn.prepare_cached(
        "SELECT id, topic, payload FROM quarantine
         WHERE site = ?1 AND box = ?2 AND public_key = ?3 ORDER BY id",
    )?
    .query_map(params![site, box_id, key], |r| {
        Ok(Held {
            id: r.get(0)?,
            topic: r.get(1)?,
            payload: r.get(2)?,
        })
    })?
    .collect()
}

pub fn release(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM quarantine WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Records a presence if its stamp is newer than the last one; false if not.
pub fn presence(
    conn: &mut Connection,
    site: &str,
    box_id: &str,
    p: &Presence,
    stamp: i64,
) -> rusqlite::Result<bool> {
    let tx = conn.transaction()?;
    match advance(&tx, site, box_id, Stamp::Presence, stamp)? {
        Order::Newer => {}
        other => return Ok(other == Order::Same),
    }
    tx.prepare_cached(
        "INSERT INTO boxes(site, box, online, version, last_seen) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(site, box) DO UPDATE SET online = excluded.online,
           version = CASE WHEN excluded.version = '' THEN version ELSE excluded.version END,
           last_seen = excluded.last_seen",
    )?
    .execute(params![site, box_id, p.online as i64, p.version, now()])?;
    tx.commit()?;
    Ok(true)
}

/// Records a state if its stamp is newer than the last one; false if not.
pub fn state(
    conn: &mut Connection,
    site: &str,
    box_id: &str,
    s: &ReportedState,
    stamp: i64,
) -> rusqlite::Result<bool> {
    let tx = conn.transaction()?;
    match advance(&tx, site, box_id, Stamp::State, stamp)? {
        Order::Newer => {}
        other => return Ok(other == Order::Same),
    }
    tx.prepare_cached(
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
    tx.commit()?;
    Ok(true)
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
                b.events,
                k.public_key,
                (SELECT count(*) FROM quarantine q WHERE q.site = b.site AND q.box = b.box)
         FROM boxes b LEFT JOIN box_keys k ON k.site = b.site AND k.box = b.box
         UNION ALL
         SELECT q.site, q.box, 0, '', 0, NULL, 0, NULL, count(*) FROM quarantine q
         WHERE NOT EXISTS (SELECT 1 FROM boxes b WHERE b.site = q.site AND b.box = q.box)
         GROUP BY q.site, q.box
         ORDER BY 1, 2",
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
            key: r.get(7)?,
            held: r.get(8)?,
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

/// Events of one type, per box in sequence order: (site, box, body).
pub fn events_of_type(
    conn: &Connection,
    kind: &str,
) -> rusqlite::Result<Vec<(String, String, serde_json::Value)>> {
    let mut st = conn.prepare_cached(
        "SELECT site, box, body FROM events WHERE type = ?1 ORDER BY site, box, seq",
    )?;
    st.query_map([kind], |r| {
        let body: String = r.get(2)?;
        Ok((
            r.get(0)?,
            r.get(1)?,
            serde_json::from_str(&body).unwrap_or_default(),
        ))
    })?
    .collect()
}

/// Every rollout's row, as JSON text.
pub fn rollouts(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut st = conn.prepare_cached("SELECT body FROM rollouts ORDER BY scope")?;
    st.query_map([], |r| r.get(0))?.collect()
}

pub fn put_rollout(conn: &Connection, scope: &str, body: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO rollouts(scope, body, changed_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(scope) DO UPDATE SET body = excluded.body, changed_at = excluded.changed_at",
    )?
    .execute(params![scope, body, now()])?;
    Ok(())
}

/// What the console last published, per kind and scope.
pub fn published(conn: &Connection) -> rusqlite::Result<Vec<Published>> {
    let mut st = conn.prepare_cached(
        "SELECT kind, scope, version, source, by_login, at FROM published ORDER BY kind, scope",
    )?;
    st.query_map([], |r| {
        Ok(Published {
            kind: r.get(0)?,
            scope: r.get(1)?,
            version: r.get(2)?,
            source: r.get(3)?,
            by: r.get(4)?,
            at: r.get(5)?,
        })
    })?
    .collect()
}

pub fn put_published(conn: &Connection, p: &Published) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO published(kind, scope, version, source, by_login, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(kind, scope) DO UPDATE SET version = excluded.version,
           source = excluded.source, by_login = excluded.by_login, at = excluded.at",
    )?
    .execute(params![p.kind, p.scope, p.version, p.source, p.by, p.at])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Three tablets used, seen by DNS among a teacher's PC and the box: the fleet
    /// counts three tablets, not five DNS clients.
    #[test]
    fn active_tablets_are_tablets_not_dns_clients() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let conn = super::open(&path).unwrap();
        // Events stored before the rollups existed: rolled up at the next open.
        conn.execute("DELETE FROM counters WHERE name = 'rollups_built'", [])
            .unwrap();
        let hour = 1_764_756_000; // 2025-12-03 10:00 UTC
        let mut seq = 0;
        let mut add = |kind: &str, body: serde_json::Value| {
            seq += 1;
            conn.execute(
                "INSERT INTO events (site, box, seq, at, type, body, received_at)
                 VALUES ('ecole', 'b1', ?1, ?2, ?3, ?4, ?2)",
                rusqlite::params![seq, hour, kind, body.to_string()],
            )
            .unwrap();
        };
        for client in [
            "10.0.0.11",
            "10.0.0.12",
            "10.0.0.13",
            "10.0.0.2",
            "127.0.0.1",
        ] {
            add(
                "dns_hourly",
                serde_json::json!({"type": "dns_hourly", "hour": hour, "client": client, "queries": 10, "blocked": 0}),
            );
        }
        for device in ["cm1-01", "cm1-02", "cm1-03", "cm1-01"] {
            add(
                "app_usage",
                serde_json::json!({"type": "app_usage", "hour": hour, "device": device, "app": "lecture", "seconds": 600}),
            );
        }
        drop(conn);
        let mut conn = super::open(&path).unwrap();
        let day = hour / 86_400;
        let period = super::super::report::Period {
            from_day: day - 6,
            to_day: day,
            site: String::new(),
        };
        let report = super::super::sqlite_usage::usage_report(&conn, &period).unwrap();
        assert_eq!(report.days, [(day, 3, 40)]);
        assert_eq!(report.sites[0].tablets_used, 3);
        // New events come through ingest; a batch delivered twice adds nothing.
        let batch = cartable_protocol::events::Batch {
            site: "ecole".into(),
            r#box: "b1".into(),
            events: vec![cartable_protocol::events::Event {
                seq: 100,
                at: hour + 3599,
                body: cartable_protocol::events::EventBody::AppUsage {
                    hour,
                    device: "cm1-04".into(),
                    app: "calcul".into(),
                    seconds: 1200,
                    class: Some("CM1".into()),
                },
            }],
        };
        for _ in 0..2 {
            super::ingest(&mut conn, "ecole", "b1", &batch).unwrap();
        }
        let report = super::super::sqlite_usage::usage_report(&conn, &period).unwrap();
        assert_eq!(report.days, [(day, 4, 60)]);
        assert_eq!(
            report.apps,
            [("lecture".to_string(), 40), ("calcul".to_string(), 20)]
        );
        let t4 = report
            .tablets
            .iter()
            .find(|t| t.tablet == "cm1-04")
            .unwrap();
        assert_eq!((t4.class.as_deref(), t4.minutes), (Some("CM1"), 20));
        let other_site = super::super::report::Period {
            site: "ailleurs".into(),
            ..period
        };
        assert!(
            super::super::sqlite_usage::usage_report(&conn, &other_site)
                .unwrap()
                .days
                .is_empty()
        );
    }

    /// A retained presence delivered again (a restart, or a second central instance)
    /// is the one already stored: not a replay, and nothing written; an older one is.
    #[test]
    fn the_same_stamp_again_is_not_a_replay() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = super::open(&dir.path().join("c.db")).unwrap();
        super::pin(&mut conn, "ecole", "b1", "ab", "test", false).unwrap();
        let online = |online| cartable_protocol::events::Presence {
            online,
            version: "1.0".into(),
        };
        assert!(super::presence(&mut conn, "ecole", "b1", &online(true), 5).unwrap());
        // The same stamp with another body cannot rewrite what is stored.
        assert!(super::presence(&mut conn, "ecole", "b1", &online(false), 5).unwrap());
        assert!(!super::presence(&mut conn, "ecole", "b1", &online(false), 4).unwrap());
        let online: bool = conn
            .query_row("SELECT online FROM boxes WHERE box = 'b1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(online);
    }
}
