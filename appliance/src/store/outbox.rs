//! The outbox: events waiting for the broker, in the store.
//!
//! Producers call [`append`] inside the store transaction of the change the event
//! describes, so an event exists if and only if its change was committed. The drainer
//! reads rows in sequence order and deletes them only once the broker acknowledged the
//! batch that carried them. Storage is bounded: past the bound, statistics go first,
//! oldest first, then records; audit rows are never dropped. Every drop is counted.

use cartable_protocol::events::{Backlog, Event, EventBody, Priority};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::base::clock::unix_now;
use crate::store::StoreError;

/// Counter names in `sync_counters`.
const BYTES: &str = "outbox_bytes";
const BOUND: &str = "outbox_bound";
const DROPPED: &str = "outbox_dropped_rows";
const LAST_SYNC: &str = "last_sync_at";
/// Trimming goes this far under the bound, so it does not run on every append.
const TRIM_TO_PERCENT: i64 = 90;

/// A counter of `sync_counters` (0 when never set).
pub(crate) fn counter(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT value FROM sync_counters WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()
        .map(|v| v.unwrap_or(0))
}

pub(crate) fn add_counter(tx: &Transaction<'_>, name: &str, delta: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO sync_counters(name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
    )?
    .execute(params![name, delta])?;
    Ok(())
}

pub(crate) fn set_counter(tx: &Transaction<'_>, name: &str, value: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO sync_counters(name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![name, value])?;
    Ok(())
}

/// Sets the storage bound in bytes (from `[sync] outbox_max_bytes`), trimming at once
/// if the outbox is already past it.
pub fn set_bound(tx: &Transaction<'_>, bytes: u64) -> Result<(), StoreError> {
    set_counter(tx, BOUND, bytes.min(i64::MAX as u64) as i64)?;
    trim_if_over(tx)?;
    Ok(())
}

thread_local! {
    /// Set by [`append`] on the writer thread, taken after the commit to wake the sync.
    static APPENDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True if [`append`] ran on this thread since the last call.
pub(super) fn take_appended() -> bool {
    APPENDED.with(|a| a.replace(false))
}

/// Records `body` as happening at `at` (unix seconds); returns its sequence number.
/// Once the transaction commits, [`super::Store::outbox_appended`] wakes the drainer.
pub fn append(tx: &Transaction<'_>, at: i64, body: &EventBody) -> Result<u64, StoreError> {
    APPENDED.with(|a| a.set(true));
    let json = serde_json::to_string(body)
        .map_err(|e| StoreError::Commit(format!("event does not serialize: {e}")))?;
    tx.prepare_cached("INSERT INTO outbox(at, priority, body) VALUES (?1, ?2, ?3)")?
        .execute(params![at, body.priority() as i64, json])?;
    let seq = tx.last_insert_rowid() as u64;
    add_counter(tx, BYTES, json.len() as i64)?;
    trim_if_over(tx)?;
    Ok(seq)
}

fn trim_if_over(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let bound = counter(tx, BOUND)?;
    if bound <= 0 {
        return Ok(());
    }
    let mut bytes = counter(tx, BYTES)?;
    if bytes <= bound {
        return Ok(());
    }
    let target = bound / 100 * TRIM_TO_PERCENT;
    let mut dropped = 0i64;
    for priority in [Priority::Statistics, Priority::Record] {
        let mut oldest = tx.prepare_cached(
            "SELECT seq, length(body) FROM outbox WHERE priority = ?1 ORDER BY seq LIMIT 256",
        )?;
        let mut delete = tx.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?;
        while bytes > target {
            let rows: Vec<(i64, i64)> = oldest
                .query_map([priority as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            if rows.is_empty() {
                break;
            }
            for (seq, len) in rows {
                if bytes <= target {
                    break;
                }
                delete.execute([seq])?;
                bytes -= len;
                dropped += 1;
            }
        }
    }
    if dropped > 0 {
        set_counter(tx, BYTES, bytes)?;
        add_counter(tx, DROPPED, dropped)?;
        tracing::warn!(
            dropped,
            bound,
            "outbox full: oldest statistics dropped to stay under its bound"
        );
    }
    if bytes > bound {
        tracing::warn!(
            bytes,
            bound,
            "outbox past its bound with audit rows only; they are kept"
        );
    }
    Ok(())
}

/// Rows after `after`, in order, up to `max_rows` or about `max_bytes` of JSON; with
/// the bytes read.
pub fn read_after(
    conn: &Connection,
    after: u64,
    max_rows: usize,
    max_bytes: usize,
) -> Result<(Vec<Event>, usize), StoreError> {
    let mut st = conn
        .prepare_cached("SELECT seq, at, body FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
    let mut rows = st.query(params![after as i64, max_rows as i64])?;
    let mut out = Vec::new();
    let mut bytes = 0;
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let at: i64 = r.get(1)?;
        let body: String = r.get(2)?;
        bytes += body.len();
        match serde_json::from_str::<EventBody>(&body) {
            Ok(body) => out.push(Event {
                seq: seq as u64,
                at,
                body,
            }),
            // Only this binary writes rows; one it cannot read (a downgrade) is sent as
            // an audit line rather than blocking the queue forever.
            Err(e) => out.push(Event {
                seq: seq as u64,
                at,
                body: EventBody::Audit {
                    actor: "box".into(),
                    action: "unreadable_outbox_row".into(),
                    detail: e.to_string(),
                },
            }),
        }
        if bytes >= max_bytes {
            break;
        }
    }
    Ok((out, bytes))
}

/// Deletes every row up to `seq` once the broker acknowledged them.
pub fn acknowledge(tx: &Transaction<'_>, seq: u64) -> Result<u64, StoreError> {
    let bytes: i64 = tx
        .prepare_cached("SELECT coalesce(sum(length(body)), 0) FROM outbox WHERE seq <= ?1")?
        .query_row([seq as i64], |r| r.get(0))?;
    let n = tx
        .prepare_cached("DELETE FROM outbox WHERE seq <= ?1")?
        .execute([seq as i64])?;
    add_counter(tx, BYTES, -bytes)?;
    set_counter(tx, LAST_SYNC, unix_now())?;
    Ok(n as u64)
}

/// What `/api/v1/status` and the state message show.
pub fn backlog(conn: &Connection) -> Result<Backlog, StoreError> {
    let (rows, oldest): (i64, Option<i64>) = conn
        .prepare_cached("SELECT count(*), min(at) FROM outbox")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let last = counter(conn, LAST_SYNC)?;
    Ok(Backlog {
        rows: rows as u64,
        bytes: counter(conn, BYTES)?.max(0) as u64,
        oldest_at: oldest,
        dropped_rows: counter(conn, DROPPED)?.max(0) as u64,
        last_sync_at: (last > 0).then_some(last),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn stats(i: u64) -> EventBody {
        EventBody::DnsHourly {
            hour: 1_700_000_000,
            client: format!("10.0.{}.{}", i / 250, i % 250),
            queries: i,
            blocked: 0,
            categories: Default::default(),
        }
    }

    fn audit(i: u64) -> EventBody {
        EventBody::Audit {
            actor: "admin".into(),
            action: "note".into(),
            detail: format!("audit {i}"),
        }
    }

    /// The drainer waits on `outbox_appended` instead of polling: a committed append
    /// wakes it, a write that appends nothing does not.
    #[tokio::test]
    async fn a_committed_append_wakes_the_drainer_and_other_writes_do_not() {
        use futures_util::FutureExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .write(|t| {
                t.execute("INSERT INTO meta(key, value) VALUES ('k', 'v')", [])?;
                Ok(())
            })
            .await
            .unwrap();
        // The wake-up is given before the write returns: none is pending now.
        assert!(store.outbox_appended().now_or_never().is_none());
        store.write(|t| append(t, 1, &audit(1))).await.unwrap();
        assert!(store.outbox_appended().now_or_never().is_some());
        assert!(
            store.outbox_appended().now_or_never().is_none(),
            "one wake-up per commit"
        );
        store.close();
    }

    #[tokio::test]
    async fn rows_drain_in_order_and_acknowledged_rows_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let seqs = store
            .write(|t| {
                (0..10)
                    .map(|i| append(t, 100 + i as i64, &audit(i)))
                    .collect()
            })
            .await
            .unwrap();
        let seqs: Vec<u64> = seqs;
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        let first = store
            .read(|c| read_after(c, 0, 4, usize::MAX))
            .await
            .unwrap()
            .0;
        assert_eq!(
            first.iter().map(|e| e.seq).collect::<Vec<_>>(),
            seqs[..4].to_vec()
        );
        let last = first[3].seq;
        store.write(move |t| acknowledge(t, last)).await.unwrap();
        let b = store.read(backlog).await.unwrap();
        assert_eq!(b.rows, 6);
        assert_eq!(b.oldest_at, Some(104));
        assert!(b.last_sync_at.is_some());
        // Sequence numbers are never reused, even after every row is gone.
        let end = seqs[9];
        store.write(move |t| acknowledge(t, end)).await.unwrap();
        let next = store.write(|t| append(t, 1, &audit(99))).await.unwrap();
        assert!(next > end);
        let b = store.read(backlog).await.unwrap();
        assert_eq!((b.rows, b.bytes > 0), (1, true));
    }

    #[tokio::test]
    async fn the_bound_drops_statistics_oldest_first_and_keeps_every_audit_row() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bound = 20_000u64;
        store.write(move |t| set_bound(t, bound)).await.unwrap();
        // 2,000 statistics rows (~150 bytes each) and 300 audit rows, interleaved.
        store
            .write(|t| {
                for i in 0..2000 {
                    append(t, i as i64, &stats(i))?;
                    if i % 7 == 0 {
                        append(t, i as i64, &audit(i))?;
                    }
                }
                Ok(())
            })
            .await
            .unwrap();
        let b = store.read(backlog).await.unwrap();
        assert!(b.bytes <= bound, "{} > {bound}", b.bytes);
        assert!(b.dropped_rows > 1500, "{}", b.dropped_rows);
        let events = store
            .read(|c| read_after(c, 0, usize::MAX, usize::MAX))
            .await
            .unwrap()
            .0;
        let audits = events
            .iter()
            .filter(|e| matches!(e.body, EventBody::Audit { .. }))
            .count();
        assert_eq!(audits, 2000usize.div_ceil(7));
        // What is left of the statistics is the newest.
        let oldest_stat = events
            .iter()
            .find_map(|e| match e.body {
                EventBody::DnsHourly { queries, .. } => Some(queries),
                _ => None,
            })
            .unwrap();
        assert!(oldest_stat > 1500, "{oldest_stat}");
        // The running total matches what is stored.
        let stored: i64 = store
            .read(|c| Ok(c.query_row("SELECT sum(length(body)) FROM outbox", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(stored as u64, b.bytes);
    }

    #[tokio::test]
    async fn audit_rows_are_kept_past_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.write(|t| set_bound(t, 1_000)).await.unwrap();
        store
            .write(|t| (0..100).try_for_each(|i| append(t, i, &audit(i as u64)).map(|_| ())))
            .await
            .unwrap();
        let b = store.read(backlog).await.unwrap();
        assert_eq!((b.rows, b.dropped_rows), (100, 0));
    }
}
