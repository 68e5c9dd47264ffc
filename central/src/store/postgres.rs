//! The fleet store in PostgreSQL, for fleets too large for one SQLite file. Same
//! tables and meanings as `sqlite.rs`; bodies are `jsonb`. A batch goes in with one
//! statement (`unnest` of arrays), so its cost does not grow with round trips.

use anyhow::Context;
use cartable_protocol::events::{Batch, Presence, ReportedState};
use tokio_postgres::Client;

use super::rollup::{self, Rollups};
use super::{BoxRow, EventRow, Held, Ingested, Order, Pinned, Published, Stamp, now};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS boxes (
    site      TEXT NOT NULL,
    box       TEXT NOT NULL,
    online    BOOLEAN NOT NULL DEFAULT false,
    version   TEXT NOT NULL DEFAULT '',
    last_seen BIGINT NOT NULL DEFAULT 0,
    state     JSONB,
    PRIMARY KEY (site, box)
);
CREATE TABLE IF NOT EXISTS events (
    id          BIGSERIAL PRIMARY KEY,
    site        TEXT NOT NULL,
    box         TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    type        TEXT NOT NULL,
    body        JSONB NOT NULL,
    received_at BIGINT NOT NULL,
    UNIQUE (site, box, seq)
);
CREATE INDEX IF NOT EXISTS events_by_type ON events(type, site, at);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS box_keys (
    site           TEXT NOT NULL,
    box            TEXT NOT NULL,
    public_key     TEXT NOT NULL,
    source         TEXT NOT NULL,
    pinned_at      BIGINT NOT NULL,
    presence_stamp BIGINT NOT NULL DEFAULT -1,
    state_stamp    BIGINT NOT NULL DEFAULT -1,
    PRIMARY KEY (site, box)
);
CREATE TABLE IF NOT EXISTS quarantine (
    id          BIGSERIAL PRIMARY KEY,
    site        TEXT NOT NULL,
    box         TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    topic       TEXT NOT NULL,
    payload     BYTEA NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantine_by_key ON quarantine(site, box, public_key);
CREATE TABLE IF NOT EXISTS rollouts (
    scope      TEXT PRIMARY KEY,
    body       JSONB NOT NULL,
    changed_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS admins (
    login    TEXT PRIMARY KEY,
    password TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS published (
    kind     TEXT NOT NULL,
    scope    TEXT NOT NULL,
    version  BIGINT NOT NULL,
    source   TEXT NOT NULL,
    by_login TEXT NOT NULL,
    at       BIGINT NOT NULL,
    PRIMARY KEY (kind, scope)
);
";

/// Adds an admin, or sets an admin's password (`password`: the stored form).
pub async fn set_admin(c: &Client, login: &str, password: &str) -> anyhow::Result<()> {
    c.execute(
        "INSERT INTO admins (login, password) VALUES ($1, $2)
         ON CONFLICT (login) DO UPDATE SET password = excluded.password",
        &[&login, &password],
    )
    .await?;
    Ok(())
}

/// An admin's stored password, if the account exists.
pub async fn admin_password(c: &Client, login: &str) -> anyhow::Result<Option<String>> {
    Ok(
        c.query_opt("SELECT password FROM admins WHERE login = $1", &[&login])
            .await?
            .map(|r| r.get(0)),
    )
}

/// One connection, its driver spawned.
async fn connection(url: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!(error = %e, "PostgreSQL connection lost");
        }
    });
    Ok(client)
}

/// Runs a schema's statements one at a time. Sent whole, they are one implicit
/// transaction holding each table's lock until the last: an instance starting beside
/// one that ingests then closed a lock cycle with it and failed to start (a deadlock,
/// seen in the shared-subscription test).
pub(super) async fn apply_schema(c: &Client, schema: &str) -> anyhow::Result<()> {
    for statement in schema.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        c.batch_execute(statement).await?;
    }
    Ok(())
}

/// The tables made or brought up to date, then two connections: one for
/// transactions, one for the rest (`store::Pg`).
pub async fn connect(url: &str) -> anyhow::Result<(Client, Client)> {
    let client = connection(url).await?;
    apply_schema(&client, SCHEMA)
        .await
        .context("creating the tables")?;
    apply_schema(&client, rollup::SCHEMA)
        .await
        .context("creating the usage rollups")?;
    apply_schema(&client, rollup::TABLET_BLOCKS_POSTGRES)
        .await
        .context("creating the tablets' usage")?;
    super::postgres_usage::backfill(&client)
        .await
        .context("rolling up the events already stored")?;
    Ok((client, connection(url).await?))
}

pub async fn bump(c: &Client, name: &str, by: i64) -> anyhow::Result<()> {
    if by != 0 {
        c.execute(
            "INSERT INTO counters(name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value",
            &[&name, &by],
        )
        .await?;
    }
    Ok(())
}

pub async fn ingest(
    c: &Client,
    site: &str,
    box_id: &str,
    batch: &Batch,
) -> anyhow::Result<Ingested> {
    let mut seqs = Vec::with_capacity(batch.events.len());
    let mut ats = Vec::with_capacity(batch.events.len());
    let mut kinds = Vec::with_capacity(batch.events.len());
    let mut bodies = Vec::with_capacity(batch.events.len());
    for e in &batch.events {
        let body = serde_json::to_value(&e.body).unwrap_or_default();
        kinds.push(
            body.get("type")
                .and_then(|t| t.as_str())
                .unwrap_or("unknown")
                .to_string(),
        );
        bodies.push(body.to_string());
        seqs.push(e.seq as i64);
        ats.push(e.at);
    }
    // One transaction: the max before, the insert, the counters. Several central
    // instances may take batches of one box at once (a shared subscription): the
    // box's lock makes them one after the other, or two would each read a tablet's
    // usage block before the other's write and one addition would be lost.
    c.batch_execute("BEGIN").await?;
    let result = async {
        c.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))",
            &[&site, &box_id],
        )
        .await?;
        let max: i64 = c
            .query_one(
                "SELECT coalesce(max(seq), 0) FROM events WHERE site = $1 AND box = $2",
                &[&site, &box_id],
            )
            .await?
            .get(0);
        let inserted = c
            .query(
                "INSERT INTO events(site, box, seq, at, type, body, received_at)
                 SELECT $1, $2, s, a, t, b::jsonb, $3
                 FROM unnest($4::bigint[], $5::bigint[], $6::text[], $7::text[]) AS u(s, a, t, b)
                 ON CONFLICT (site, box, seq) DO NOTHING RETURNING seq",
                &[&site, &box_id, &now(), &seqs, &ats, &kinds, &bodies],
            )
            .await?;
        let mut out = Ingested {
            new: inserted.len() as u64,
            duplicates: (seqs.len() - inserted.len()) as u64,
            out_of_order: 0,
        };
        out.out_of_order = inserted.iter().filter(|r| r.get::<_, i64>(0) < max).count() as u64;
        let new: std::collections::HashSet<i64> = inserted.iter().map(|r| r.get(0)).collect();
        let mut rolled = Rollups::default();
        for e in batch
            .events
            .iter()
            .filter(|e| new.contains(&(e.seq as i64)))
        {
            rolled.add(site, box_id, e.at, &e.body);
        }
        super::postgres_usage::apply_rollups(c, &rolled).await?;
        c.execute(
            "INSERT INTO boxes(site, box, last_seen, events) VALUES ($1, $2, $3, $4)
             ON CONFLICT (site, box) DO UPDATE SET last_seen = excluded.last_seen,
               events = boxes.events + excluded.events",
            &[&site, &box_id, &now(), &(out.new as i64)],
        )
        .await?;
        bump(c, "events", out.new as i64).await?;
        bump(c, "duplicates", out.duplicates as i64).await?;
        bump(c, "out_of_order", out.out_of_order as i64).await?;
        anyhow::Ok(out)
    }
    .await;
    match result {
        Ok(out) => {
            c.batch_execute("COMMIT").await?;
            Ok(out)
        }
        Err(e) => {
            let _ = c.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

async fn pinned(c: &Client, site: &str, box_id: &str) -> anyhow::Result<Option<String>> {
    Ok(c.query_opt(
        "SELECT public_key FROM box_keys WHERE site = $1 AND box = $2",
        &[&site, &box_id],
    )
    .await?
    .map(|r| r.get(0)))
}

/// See `Db::pin`. One round trip for a box already pinned to `key` (every message).
pub async fn pin(
    c: &Client,
    site: &str,
    box_id: &str,
    key: &str,
    source: &str,
    replace: bool,
) -> anyhow::Result<Pinned> {
    let old = match pinned(c, site, box_id).await? {
        Some(old) if old == key => return Ok(Pinned::Same),
        Some(old) => old,
        None => {
            // Of two first contacts at once, one inserts and the other compares.
            let inserted = c
                .execute(
                    "INSERT INTO box_keys(site, box, public_key, source, pinned_at)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (site, box) DO NOTHING",
                    &[&site, &box_id, &key, &source, &now()],
                )
                .await?;
            if inserted == 1 {
                return Ok(Pinned::New);
            }
            match pinned(c, site, box_id).await?.unwrap_or_default() {
                old if old == key => return Ok(Pinned::Same),
                old => old,
            }
        }
    };
    if !replace {
        return Ok(Pinned::Conflict { old });
    }
    c.execute(
        "UPDATE box_keys SET public_key = $3, source = $4, pinned_at = $5,
           presence_stamp = -1, state_stamp = -1 WHERE site = $1 AND box = $2",
        &[&site, &box_id, &key, &source, &now()],
    )
    .await?;
    Ok(Pinned::Replaced { old })
}

/// Moves the stamp forward and runs `then` in the same transaction, if it is newer;
/// false if it is older (the same stamp: true, nothing written).
async fn advance_then(
    c: &Client,
    site: &str,
    box_id: &str,
    which: Stamp,
    stamp: i64,
    then: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> anyhow::Result<bool> {
    let column = which.column();
    let sql =
        format!("UPDATE box_keys SET {column} = $3 WHERE site = $1 AND box = $2 AND {column} < $3");
    c.batch_execute("BEGIN").await?;
    let result = async {
        if c.execute(&sql, &[&site, &box_id, &stamp]).await? != 1 {
            let same = c
                .query_opt(
                    &format!(
                        "SELECT 1 FROM box_keys WHERE site = $1 AND box = $2 AND {column} = $3"
                    ),
                    &[&site, &box_id, &stamp],
                )
                .await?;
            return anyhow::Ok(if same.is_some() {
                Order::Same
            } else {
                Order::Older
            });
        }
        c.execute(then, params).await?;
        Ok(Order::Newer)
    }
    .await;
    match result {
        Ok(order) => {
            // Only a newer stamp changed anything.
            let end = if order == Order::Newer {
                "COMMIT"
            } else {
                "ROLLBACK"
            };
            c.batch_execute(end).await?;
            Ok(order != Order::Older)
        }
        Err(e) => {
            let _ = c.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

pub async fn presence(
    c: &Client,
    site: &str,
    box_id: &str,
    p: &Presence,
    stamp: i64,
) -> anyhow::Result<bool> {
    advance_then(
        c,
        site,
        box_id,
        Stamp::Presence,
        stamp,
        "INSERT INTO boxes(site, box, online, version, last_seen) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (site, box) DO UPDATE SET online = excluded.online,
           version = CASE WHEN excluded.version = '' THEN boxes.version ELSE excluded.version END,
           last_seen = excluded.last_seen",
        &[&site, &box_id, &p.online, &p.version, &now()],
    )
    .await
}

pub async fn state(
    c: &Client,
    site: &str,
    box_id: &str,
    s: &ReportedState,
    stamp: i64,
) -> anyhow::Result<bool> {
    let json = serde_json::to_string(s)?;
    advance_then(
        c,
        site,
        box_id,
        Stamp::State,
        stamp,
        "INSERT INTO boxes(site, box, version, last_seen, state) VALUES ($1, $2, $3, $4, $5::text::jsonb)
         ON CONFLICT (site, box) DO UPDATE SET version = excluded.version,
           last_seen = excluded.last_seen, state = excluded.state",
        &[&site, &box_id, &s.version, &now(), &json],
    )
    .await
}

pub async fn hold(
    c: &Client,
    site: &str,
    box_id: &str,
    key: &str,
    topic: &str,
    payload: &[u8],
    max: i64,
) -> anyhow::Result<bool> {
    let n = c
        .execute(
            "INSERT INTO quarantine(site, box, public_key, topic, payload, received_at)
             SELECT $1, $2, $3, $4, $5, $6
             WHERE (SELECT count(*) FROM quarantine WHERE site = $1 AND box = $2) < $7",
            &[&site, &box_id, &key, &topic, &payload, &now(), &max],
        )
        .await?;
    Ok(n == 1)
}

pub async fn held(c: &Client, site: &str, box_id: &str, key: &str) -> anyhow::Result<Vec<Held>> {
    Ok(c.query(
        "SELECT id, topic, payload FROM quarantine
             WHERE site = $1 AND box = $2 AND public_key = $3 ORDER BY id",
        &[&site, &box_id, &key],
    )
    .await?
    .iter()
    .map(|r| Held {
        id: r.get(0),
        topic: r.get(1),
        payload: r.get(2),
    })
    .collect())
}

pub async fn release(c: &Client, id: i64) -> anyhow::Result<()> {
    c.execute("DELETE FROM quarantine WHERE id = $1", &[&id])
        .await?;
    Ok(())
}

pub async fn count(c: &Client, name: &str) -> anyhow::Result<i64> {
    Ok(
        c.query_opt("SELECT value FROM counters WHERE name = $1", &[&name])
            .await?
            .map_or(0, |r| r.get(0)),
    )
}

pub async fn boxes(c: &Client) -> anyhow::Result<Vec<BoxRow>> {
    let rows = c
        .query(
            "SELECT b.site, b.box, b.online, b.version, b.last_seen, b.state::text,
                    b.events,
                    k.public_key,
                    (SELECT count(*) FROM quarantine q WHERE q.site = b.site AND q.box = b.box)
             FROM boxes b LEFT JOIN box_keys k ON k.site = b.site AND k.box = b.box
             UNION ALL
             SELECT q.site, q.box, false, '', 0, NULL, 0, NULL, count(*) FROM quarantine q
             WHERE NOT EXISTS (SELECT 1 FROM boxes b WHERE b.site = q.site AND b.box = q.box)
             GROUP BY q.site, q.box
             ORDER BY 1, 2",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| BoxRow {
            site: r.get(0),
            r#box: r.get(1),
            online: r.get(2),
            version: r.get(3),
            last_seen: r.get(4),
            state: r
                .get::<_, Option<String>>(5)
                .and_then(|s| serde_json::from_str(&s).ok()),
            events: r.get(6),
            key: r.get(7),
            held: r.get(8),
        })
        .collect())
}

pub async fn events(
    c: &Client,
    site: Option<String>,
    box_id: Option<String>,
    after_id: i64,
    limit: i64,
) -> anyhow::Result<Vec<EventRow>> {
    let rows = c
        .query(
            "SELECT id, site, box, seq, at, body::text FROM events
             WHERE id > $1 AND ($2::text IS NULL OR site = $2) AND ($3::text IS NULL OR box = $3)
             ORDER BY id LIMIT $4",
            &[&after_id, &site, &box_id, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| EventRow {
            id: r.get(0),
            site: r.get(1),
            r#box: r.get(2),
            seq: r.get(3),
            at: r.get(4),
            body: serde_json::from_str(r.get::<_, &str>(5)).unwrap_or_default(),
        })
        .collect())
}

/// Events of one type, per box in sequence order: (site, box, body).
pub async fn events_of_type(
    c: &Client,
    kind: &str,
) -> anyhow::Result<Vec<(String, String, serde_json::Value)>> {
    let rows = c
        .query(
            "SELECT site, box, body::text FROM events WHERE type = $1 ORDER BY site, box, seq",
            &[&kind],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                serde_json::from_str(r.get::<_, &str>(2)).unwrap_or_default(),
            )
        })
        .collect())
}

/// Every rollout's row, as JSON text.
pub async fn rollouts(c: &Client) -> anyhow::Result<Vec<String>> {
    let rows = c
        .query("SELECT body::text FROM rollouts ORDER BY scope", &[])
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub async fn put_rollout(c: &Client, scope: &str, body: &str) -> anyhow::Result<()> {
    c.execute(
        "INSERT INTO rollouts(scope, body, changed_at) VALUES ($1, $2::text::jsonb, $3)
         ON CONFLICT(scope) DO UPDATE SET body = excluded.body, changed_at = excluded.changed_at",
        &[&scope, &body, &now()],
    )
    .await?;
    Ok(())
}

/// What the console last published, per kind and scope.
pub async fn published(c: &Client) -> anyhow::Result<Vec<Published>> {
    let rows = c
        .query(
            "SELECT kind, scope, version, source, by_login, at FROM published ORDER BY kind, scope",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Published {
            kind: r.get(0),
            scope: r.get(1),
            version: r.get(2),
            source: r.get(3),
            by: r.get(4),
            at: r.get(5),
        })
        .collect())
}

pub async fn put_published(c: &Client, p: &Published) -> anyhow::Result<()> {
    c.execute(
        "INSERT INTO published(kind, scope, version, source, by_login, at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT(kind, scope) DO UPDATE SET version = excluded.version,
           source = excluded.source, by_login = excluded.by_login, at = excluded.at",
        &[&p.kind, &p.scope, &p.version, &p.source, &p.by, &p.at],
    )
    .await?;
    Ok(())
}
