//! What the DNS server keeps in the store: its cache and hourly counters. Both are
//! written by the store's writer thread; the answer path only hands it snapshots.
//!
//! The cache is written two ways. Every answer learned from the upstream goes to the
//! store within seconds (`save_learned`, batched): a power cut in a school whose uplink
//! is down at that moment must not lose what the tablets resolved this morning. Every
//! few minutes and at shutdown the whole cache replaces the saved one (`save_cache`),
//! which also drops what the cache evicted.

use std::collections::HashMap;
use std::time::Duration;

use rusqlite::params;

use super::cache::Key;
use super::engine::Engine;
use crate::store::{Store, StoreError};

fn unix_now(engine: &Engine) -> u64 {
    engine.clock().unix().max(0) as u64
}

/// Replaces the saved cache with the engine's current one.
pub(crate) async fn save_cache(engine: &Engine, store: &Store) -> Result<usize, StoreError> {
    write_entries(engine, store, engine.cache().entries(), true).await
}

/// Writes the answers learned since the last call (new rows, or newer answers for
/// names already saved).
pub(crate) async fn save_learned(engine: &Engine, store: &Store) -> Result<usize, StoreError> {
    let learned = engine.take_learned();
    if learned.is_empty() {
        return Ok(0);
    }
    write_entries(engine, store, learned, false).await
}

/// Stores `entries` (each with the Unix time it was learned) in one transaction, after
/// emptying the table if `replace_all`.
async fn write_entries(
    engine: &Engine,
    store: &Store,
    entries: Vec<(Key, std::sync::Arc<super::cache::Entry>)>,
    replace_all: bool,
) -> Result<usize, StoreError> {
    let now = engine.clock().instant();
    let unix = unix_now(engine);
    let rows: Vec<(Key, Vec<u8>, u64)> = entries
        .into_iter()
        .map(|(k, e)| (k, e.wire().to_vec(), unix.saturating_sub(e.age(now))))
        .collect();
    let count = rows.len();
    store
        .write(move |t| {
            if replace_all {
                t.execute("DELETE FROM dns_cache", [])?;
            }
            let mut upsert = t.prepare_cached(
                "INSERT OR REPLACE INTO dns_cache(name, qtype, qclass, response, stored_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (k, wire, stored_at) in &rows {
                upsert.execute(params![&*k.name, k.qtype, k.qclass, wire, *stored_at as i64])?;
            }
            Ok(())
        })
        .await?;
    Ok(count)
}

/// Puts the saved cache back; entries expired past `max_stale` are skipped.
pub(crate) fn restore_cache(engine: &Engine, store: &Store) -> Result<usize, StoreError> {
    let unix = unix_now(engine);
    let now = engine.clock().instant();
    store.read_blocking(|c| {
        let mut st = c.prepare("SELECT name, qtype, qclass, response, stored_at FROM dns_cache")?;
        let mut rows = st.query([])?;
        let mut restored = 0;
        while let Some(r) = rows.next()? {
            let key = Key {
                name: r.get::<_, String>(0)?.into(),
                qtype: r.get(1)?,
                qclass: r.get(2)?,
            };
            let response: Vec<u8> = r.get(3)?;
            let stored_at: i64 = r.get(4)?;
            let age = Duration::from_secs(unix.saturating_sub(stored_at.max(0) as u64));
            if engine.cache().restore(key, &response, age, now) {
                restored += 1;
            }
        }
        Ok(restored)
    })
}

/// Remembers the counters at the last flush, to store only what changed since.
#[derive(Default)]
pub(crate) struct Flusher {
    last: std::sync::Mutex<HashMap<String, u64>>,
    last_clients: std::sync::Mutex<HashMap<std::net::IpAddr, (u64, u64)>>,
}

impl Flusher {
    /// Adds what the counters gained since the last call to the current hour's rows.
    pub(crate) async fn flush(&self, engine: &Engine, store: &Store) -> Result<(), StoreError> {
        let s = &engine.stats;
        let mut now: Vec<(String, u64)> = vec![
            ("queries".into(), s.total(|c| &c.queries)),
            ("blocked".into(), s.total(|c| &c.blocked)),
            ("safe_search".into(), s.total(|c| &c.rewritten)),
            ("refused".into(), s.total(|c| &c.refused)),
            ("cache_hits".into(), s.total(|c| &c.cache_hits)),
            ("stale_served".into(), s.total(|c| &c.stale_served)),
            ("forwarded".into(), s.total(|c| &c.forwarded)),
            ("servfail".into(), s.total(|c| &c.servfail)),
            ("malformed".into(), s.total(|c| &c.malformed)),
            ("rate_limited".into(), s.total(|c| &c.rate_limited)),
        ];
        let filter = engine.filter();
        for c in filter.index.categories() {
            let n = s.category(c.id);
            if n > 0 {
                now.push((format!("blocked:{}", c.name), n));
            }
        }
        let deltas: Vec<(String, u64)> = {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            now.into_iter()
                .filter_map(|(k, v)| {
                    let before = last.insert(k.clone(), v).unwrap_or(0);
                    // A counter below its last value was reset (a new filter): count it whole.
                    let d = if v >= before { v - before } else { v };
                    (d > 0).then_some((k, d))
                })
                .collect()
        };
        let clients: Vec<(String, u64, u64)> = {
            let mut last = self.last_clients.lock().unwrap_or_else(|e| e.into_inner());
            s.top_clients(usize::MAX)
                .into_iter()
                .filter_map(|(ip, q, b)| {
                    let (q0, b0) = last.insert(ip, (q, b)).unwrap_or((0, 0));
                    let (dq, db) = if q >= q0 {
                        (q - q0, b.saturating_sub(b0))
                    } else {
                        (q, b)
                    };
                    (dq > 0).then(|| (ip.to_string(), dq, db))
                })
                .collect()
        };
        let hour = (unix_now(engine) / 3600) as i64;
        store
            .write(move |t| {
                let mut up = t.prepare_cached(
                    "INSERT INTO dns_hourly(hour, counter, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT(hour, counter) DO UPDATE SET value = value + excluded.value",
                )?;
                for (k, d) in &deltas {
                    up.execute(params![hour, k, *d as i64])?;
                }
                let mut per_client = t.prepare_cached(
                    "INSERT INTO dns_client_hourly(hour, client, queries, blocked) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(hour, client) DO UPDATE SET queries = queries + excluded.queries,
                       blocked = blocked + excluded.blocked",
                )?;
                for (client, q, b) in &clients {
                    per_client.execute(params![hour, client, *q as i64, *b as i64])?;
                }
                close_hours(t, hour)
            })
            .await
    }
}

/// Turns the per-client counters of every hour before `current` into outbox events
/// (one per client, plus one for the whole box with the blocked categories), in the
/// same transaction that deletes them: an hour is reported exactly once.
pub(crate) fn close_hours(t: &rusqlite::Transaction<'_>, current: i64) -> Result<(), StoreError> {
    use cartable_protocol::events::EventBody;
    let hours: Vec<i64> = t
        .prepare_cached(
            "SELECT DISTINCT hour FROM dns_client_hourly WHERE hour < ?1 ORDER BY hour",
        )?
        .query_map([current], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for hour in hours {
        let start = hour * 3600;
        let rows: Vec<(String, i64, i64)> = t
            .prepare_cached(
                "SELECT client, queries, blocked FROM dns_client_hourly WHERE hour = ?1 ORDER BY client",
            )?
            .query_map([hour], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        for (client, q, b) in rows {
            crate::store::outbox::append(
                t,
                start + 3599,
                &EventBody::DnsHourly {
                    hour: start,
                    client,
                    queries: q as u64,
                    blocked: b as u64,
                    categories: Default::default(),
                },
            )?;
        }
        let mut categories = std::collections::BTreeMap::new();
        let (mut queries, mut blocked) = (0u64, 0u64);
        let mut st = t.prepare_cached("SELECT counter, value FROM dns_hourly WHERE hour = ?1")?;
        for r in st.query_map([hour], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })? {
            let (counter, value) = r?;
            match counter.strip_prefix("blocked:") {
                Some(cat) => {
                    categories.insert(cat.to_string(), value as u64);
                }
                None if counter == "queries" => queries = value as u64,
                None if counter == "blocked" => blocked = value as u64,
                None => {}
            }
        }
        crate::store::outbox::append(
            t,
            start + 3599,
            &EventBody::DnsHourly {
                hour: start,
                client: "*".into(),
                queries,
                blocked,
                categories,
            },
        )?;
        t.prepare_cached("DELETE FROM dns_client_hourly WHERE hour = ?1")?
            .execute([hour])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cartable_protocol::events::EventBody;

    #[tokio::test]
    async fn a_closed_hour_becomes_events_once_and_the_open_hour_waits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .write(|t| {
                t.execute_batch(
                    "INSERT INTO dns_client_hourly VALUES (10, '10.0.0.2', 40, 2), (10, '10.0.0.3', 7, 0), (11, '10.0.0.2', 5, 0);
                     INSERT INTO dns_hourly VALUES (10, 'queries', 47), (10, 'blocked', 2), (10, 'blocked:adult', 2);",
                )?;
                close_hours(t, 11)?;
                // Closing again adds nothing: the hour's rows are gone.
                close_hours(t, 11)
            })
            .await
            .unwrap();
        let (events, _) = store
            .read(|c| crate::store::outbox::read_after(c, 0, 100, usize::MAX))
            .await
            .unwrap();
        assert_eq!(events.len(), 3);
        match &events[2].body {
            EventBody::DnsHourly {
                hour,
                client,
                queries,
                blocked,
                categories,
            } => {
                assert_eq!(
                    (*hour, client.as_str(), *queries, *blocked),
                    (36_000, "*", 47, 2)
                );
                assert_eq!(categories.get("adult"), Some(&2));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&events[0].body, EventBody::DnsHourly { client, queries: 40, .. } if client == "10.0.0.2")
        );
        let open: i64 = store
            .read(|c| Ok(c.query_row("SELECT count(*) FROM dns_client_hourly", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(open, 1);
    }
}
