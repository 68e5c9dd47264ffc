//! The fleet's state and events: SQLite by default, PostgreSQL for large fleets
//! (`--database postgres://...`), behind one async façade.
//!
//! Events are keyed by (site, box, seq): a batch delivered twice (at-least-once) adds
//! nothing the second time, and the duplicates are counted. `id` keeps the arrival
//! order, so "in order per box" can be checked, not assumed.

pub mod postgres;
pub mod postgres_usage;
pub mod report;
pub mod rollup;
pub mod sqlite;
pub mod sqlite_usage;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use cartable_protocol::events::{Batch, Presence, ReportedState};
use serde::Serialize;

/// What one batch added.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ingested {
    pub new: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
}

#[derive(Debug, Serialize)]
pub struct BoxRow {
    pub site: String,
    pub r#box: String,
    pub online: bool,
    pub version: String,
    pub last_seen: i64,
    pub state: Option<ReportedState>,
    pub events: i64,
    /// The public key pinned for the box (hex), if any.
    pub key: Option<String>,
    /// Messages held because they were sealed with another key than the pinned one.
    pub held: i64,
}

/// What the console last published for a kind and scope: its source as the admin
/// wrote it (to edit it again), its version, who and when.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    pub kind: String,
    pub scope: String,
    pub version: i64,
    pub source: String,
    pub by: String,
    pub at: i64,
}

/// What pinning a key did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pinned {
    New,
    Same,
    Replaced {
        old: String,
    },
    /// Another key is pinned and was kept.
    Conflict {
        old: String,
    },
}

/// Which retained message a stamp orders.
#[derive(Debug, Clone, Copy)]
pub enum Stamp {
    Presence,
    State,
}

/// Where a retained message's stamp stands against the last one stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// Stored now.
    Newer,
    /// The one already stored, delivered again: nothing to write, and not a replay.
    Same,
    /// Older than what is stored: a replay, dropped.
    Older,
}

impl Stamp {
    /// Its column in `box_keys`.
    pub(crate) fn column(self) -> &'static str {
        match self {
            Stamp::Presence => "presence_stamp",
            Stamp::State => "state_stamp",
        }
    }
}

/// A message held in quarantine.
#[derive(Debug)]
pub struct Held {
    pub id: i64,
    pub topic: String,
    pub payload: Vec<u8>,
}

#[derive(Debug, Serialize)]
pub struct EventRow {
    pub id: i64,
    pub site: String,
    pub r#box: String,
    pub seq: i64,
    pub at: i64,
    pub body: serde_json::Value,
}

/// The counters the JSON API and the tests read.
pub const COUNTERS: [&str; 9] = [
    "events",
    "duplicates",
    "out_of_order",
    "malformed",
    // Not sealed by a box, or sealed with a signature that does not verify.
    "unsigned",
    "bad_signature",
    // Sealed with another key than the one pinned for the box: held, not stored.
    "held",
    // ... past the box's quarantine bound (MAX_HELD): dropped.
    "held_full",
    // A retained presence or state older than the last one taken in (a replay).
    "stale",
];

/// Most messages held per box: a forger who fills it loses the rest (counted), and
/// a genuine box with a new key has a day of messages kept for its admin.
pub const MAX_HELD: i64 = 5_000;

#[derive(Clone)]
pub enum Db {
    Sqlite {
        /// The reading connections, kept between requests.
        readers: Arc<Readers>,
        /// The one writing connection.
        writer: Arc<Mutex<rusqlite::Connection>>,
    },
    Postgres(Arc<Pg>),
}

/// SQLite's reading connections: opened on demand, kept for the next request (at
/// most [`Readers::KEEP`]). A fresh connection per request mapped the file anew and
/// faulted every page of a year-wide report in again; a kept one finds them mapped.
/// Each is opened without SQLite's own locking (one thread at a time holds it).
pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl Readers {
    /// Connections kept idle: the usage report reads on three at once, and two
    /// pages may be asked at the same time.
    const KEEP: usize = 6;

    fn take(&self) -> rusqlite::Result<rusqlite::Connection> {
        if let Some(c) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(c);
        }
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // Pages mapped, not copied by `pread` into each connection's cache.
        conn.pragma_update(None, "mmap_size", 1i64 << 30)?;
        Ok(conn)
    }

    fn give_back(&self, conn: rusqlite::Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < Self::KEEP {
            idle.push(conn);
        }
    }
}

/// The two connections to PostgreSQL. A transaction is `BEGIN` … `COMMIT` on one
/// connection, so any other task's statement sent on it meanwhile would land inside
/// (and a failing one would abort it): transactions have a connection of their own,
/// one at a time, and every other statement (the pages' reads, the rollouts, the
/// accounts) goes on the other, each its own transaction.
pub struct Pg {
    tx: tokio::sync::Mutex<tokio_postgres::Client>,
    auto: tokio_postgres::Client,
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Db {
    /// `postgres://...` (or `postgresql://`), else a SQLite file path.
    pub async fn open(spec: &str) -> anyhow::Result<Db> {
        if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
            let (tx, auto) = postgres::connect(spec).await?;
            return Ok(Db::Postgres(Arc::new(Pg {
                tx: tokio::sync::Mutex::new(tx),
                auto,
            })));
        }
        let path = PathBuf::from(spec);
        let conn = sqlite::open(&path).with_context(|| format!("opening {}", path.display()))?;
        Ok(Db::Sqlite {
            readers: Arc::new(Readers {
                path,
                idle: Mutex::new(Vec::new()),
            }),
            writer: Arc::new(Mutex::new(conn)),
        })
    }

    async fn write_sqlite<T: Send + 'static>(
        writer: &Arc<Mutex<rusqlite::Connection>>,
        f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let writer = writer.clone();
        Ok(tokio::task::spawn_blocking(move || {
            let mut conn = writer.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn)
        })
        .await??)
    }

    async fn read_sqlite<T: Send + 'static>(
        readers: &Arc<Readers>,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let readers = readers.clone();
        Ok(tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let out = f(&conn);
            // A connection whose statement failed is dropped, not kept.
            if out.is_ok() {
                readers.give_back(conn);
            }
            out
        })
        .await??)
    }

    pub async fn ingest(&self, site: &str, box_id: &str, batch: Batch) -> anyhow::Result<Ingested> {
        match self {
            Db::Sqlite { writer, .. } => {
                let (site, box_id) = (site.to_string(), box_id.to_string());
                Self::write_sqlite(writer, move |c| sqlite::ingest(c, &site, &box_id, &batch)).await
            }
            Db::Postgres(c) => postgres::ingest(&*c.tx.lock().await, site, box_id, &batch).await,
        }
    }

    /// Records a presence stamped `stamp`; false when it is older than the last. The
    /// same stamp again is the same message (a retained one redelivered, or taken by
    /// another central instance too): true, and nothing written.
    pub async fn presence(
        &self,
        site: &str,
        box_id: &str,
        p: Presence,
        stamp: i64,
    ) -> anyhow::Result<bool> {
        match self {
            Db::Sqlite { writer, .. } => {
                let (site, box_id) = (site.to_string(), box_id.to_string());
                Self::write_sqlite(writer, move |c| {
                    sqlite::presence(c, &site, &box_id, &p, stamp)
                })
                .await
            }
            Db::Postgres(c) => {
                postgres::presence(&*c.tx.lock().await, site, box_id, &p, stamp).await
            }
        }
    }

    /// Records a state stamped `stamp`; false when it is older than the last. The
    /// same stamp again is the same message (a retained one redelivered, or taken by
    /// another central instance too): true, and nothing written.
    pub async fn state(
        &self,
        site: &str,
        box_id: &str,
        s: ReportedState,
        stamp: i64,
    ) -> anyhow::Result<bool> {
        match self {
            Db::Sqlite { writer, .. } => {
                let (site, box_id) = (site.to_string(), box_id.to_string());
                Self::write_sqlite(writer, move |c| sqlite::state(c, &site, &box_id, &s, stamp))
                    .await
            }
            Db::Postgres(c) => postgres::state(&*c.tx.lock().await, site, box_id, &s, stamp).await,
        }
    }

    /// Pins `key` for a box; an existing, different pin is kept unless `replace`
    /// (what [`Pinned`] says). Without `replace` it is the check of a box's message.
    pub async fn pin(
        &self,
        site: &str,
        box_id: &str,
        key: &str,
        source: &'static str,
        replace: bool,
    ) -> anyhow::Result<Pinned> {
        match self {
            Db::Sqlite { writer, .. } => {
                let (site, box_id, key) = (site.to_string(), box_id.to_string(), key.to_string());
                Self::write_sqlite(writer, move |c| {
                    sqlite::pin(c, &site, &box_id, &key, source, replace)
                })
                .await
            }
            Db::Postgres(c) => postgres::pin(&c.auto, site, box_id, key, source, replace).await,
        }
    }

    /// Holds a message sealed with `key`; false when the box's quarantine is full.
    pub async fn hold(
        &self,
        site: &str,
        box_id: &str,
        key: &str,
        topic: &str,
        payload: &[u8],
    ) -> anyhow::Result<bool> {
        match self {
            Db::Sqlite { writer, .. } => {
                let (site, box_id, key, topic, payload) = (
                    site.to_string(),
                    box_id.to_string(),
                    key.to_string(),
                    topic.to_string(),
                    payload.to_vec(),
                );
                Self::write_sqlite(writer, move |c| {
                    sqlite::hold(c, &site, &box_id, &key, &topic, &payload, MAX_HELD)
                })
                .await
            }
            Db::Postgres(c) => {
                postgres::hold(&c.auto, site, box_id, key, topic, payload, MAX_HELD).await
            }
        }
    }

    pub async fn held(&self, site: &str, box_id: &str, key: &str) -> anyhow::Result<Vec<Held>> {
        match self {
            Db::Sqlite { writer, .. } => {
                let (site, box_id, key) = (site.to_string(), box_id.to_string(), key.to_string());
                Self::write_sqlite(writer, move |c| sqlite::held(c, &site, &box_id, &key)).await
            }
            Db::Postgres(c) => postgres::held(&c.auto, site, box_id, key).await,
        }
    }

    pub async fn release(&self, id: i64) -> anyhow::Result<()> {
        match self {
            Db::Sqlite { writer, .. } => {
                Self::write_sqlite(writer, move |c| sqlite::release(c, id)).await
            }
            Db::Postgres(c) => postgres::release(&c.auto, id).await,
        }
    }

    /// Adds an admin of the console, or sets an admin's password (its stored form).
    pub async fn set_admin(&self, login: &str, password: &str) -> anyhow::Result<()> {
        match self {
            Db::Sqlite { writer, .. } => {
                let (login, password) = (login.to_string(), password.to_string());
                Self::write_sqlite(writer, move |c| sqlite::set_admin(c, &login, &password)).await
            }
            Db::Postgres(c) => postgres::set_admin(&c.auto, login, password).await,
        }
    }

    /// An admin's stored password, if the account exists.
    pub async fn admin_password(&self, login: &str) -> anyhow::Result<Option<String>> {
        match self {
            Db::Sqlite { readers, .. } => {
                let login = login.to_string();
                Self::read_sqlite(readers, move |c| sqlite::admin_password(c, &login)).await
            }
            Db::Postgres(c) => postgres::admin_password(&c.auto, login).await,
        }
    }

    pub async fn bump(&self, name: &'static str) -> anyhow::Result<()> {
        match self {
            Db::Sqlite { writer, .. } => {
                Self::write_sqlite(writer, move |c| sqlite::bump(c, name, 1)).await
            }
            Db::Postgres(c) => postgres::bump(&c.auto, name, 1).await,
        }
    }

    pub async fn boxes(&self) -> anyhow::Result<Vec<BoxRow>> {
        match self {
            Db::Sqlite { readers, .. } => Self::read_sqlite(readers, sqlite::boxes).await,
            Db::Postgres(c) => postgres::boxes(&c.auto).await,
        }
    }

    pub async fn events(
        &self,
        site: Option<String>,
        box_id: Option<String>,
        after_id: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<EventRow>> {
        match self {
            Db::Sqlite { readers, .. } => {
                Self::read_sqlite(readers, move |c| {
                    sqlite::events(c, site.as_deref(), box_id.as_deref(), after_id, limit)
                })
                .await
            }
            Db::Postgres(c) => postgres::events(&c.auto, site, box_id, after_id, limit).await,
        }
    }

    /// Events of one type, per box in sequence order: (site, box, body).
    /// The usage pages' report for a period and a site (or all).
    pub async fn usage_report(&self, p: report::Period) -> anyhow::Result<report::UsageReport> {
        match self {
            Db::Sqlite { readers, .. } => {
                // Three readers at once: the blocks, the per-site sums, the top lists
                // (one reader per block range was slower on two cores).
                let (p1, p2, p3) = (p.clone(), p.clone(), p);
                let (gathered, per_site, top) = tokio::join!(
                    Self::read_sqlite(readers, move |c| sqlite_usage::gather(c, &p1, p1.blocks())),
                    Self::read_sqlite(readers, move |c| sqlite_usage::sums(c, &p2, true)),
                    Self::read_sqlite(readers, move |c| sqlite_usage::sums(c, &p3, false)),
                );
                Ok(gathered?.finish(per_site?.with_top(top?)))
            }
            Db::Postgres(c) => postgres_usage::usage_report(&c.auto, &p).await,
        }
    }

    pub async fn events_of_type(
        &self,
        kind: &'static str,
    ) -> anyhow::Result<Vec<(String, String, serde_json::Value)>> {
        match self {
            Db::Sqlite { readers, .. } => {
                Self::read_sqlite(readers, move |c| sqlite::events_of_type(c, kind)).await
            }
            Db::Postgres(c) => postgres::events_of_type(&c.auto, kind).await,
        }
    }

    /// Every rollout (see `rollout::Rollout`), one per scope.
    pub async fn rollouts(&self) -> anyhow::Result<Vec<crate::rollout::Rollout>> {
        let rows = match self {
            Db::Sqlite { readers, .. } => Self::read_sqlite(readers, sqlite::rollouts).await?,
            Db::Postgres(c) => postgres::rollouts(&c.auto).await?,
        };
        rows.iter()
            .map(|r| serde_json::from_str(r).context("a rollout in the database"))
            .collect()
    }

    pub async fn put_rollout(&self, r: &crate::rollout::Rollout) -> anyhow::Result<()> {
        let (scope, body) = (r.scope.label(), serde_json::to_string(r)?);
        match self {
            Db::Sqlite { writer, .. } => {
                Self::write_sqlite(writer, move |c| sqlite::put_rollout(c, &scope, &body)).await
            }
            Db::Postgres(c) => postgres::put_rollout(&c.auto, &scope, &body).await,
        }
    }

    pub async fn published(&self) -> anyhow::Result<Vec<Published>> {
        match self {
            Db::Sqlite { readers, .. } => Self::read_sqlite(readers, sqlite::published).await,
            Db::Postgres(c) => postgres::published(&c.auto).await,
        }
    }

    pub async fn put_published(&self, p: Published) -> anyhow::Result<()> {
        match self {
            Db::Sqlite { writer, .. } => {
                Self::write_sqlite(writer, move |c| sqlite::put_published(c, &p)).await
            }
            Db::Postgres(c) => postgres::put_published(&c.auto, &p).await,
        }
    }

    pub async fn counters(&self) -> anyhow::Result<BTreeMap<&'static str, i64>> {
        let mut out = BTreeMap::new();
        for name in COUNTERS {
            let v = match self {
                Db::Sqlite { readers, .. } => {
                    Self::read_sqlite(readers, move |c| sqlite::count(c, name)).await?
                }
                Db::Postgres(c) => postgres::count(&c.auto, name).await?,
            };
            out.insert(name, v);
        }
        Ok(out)
    }
}
