//! The last queries, in memory only: a fixed ring of slots, so the log never grows
//! and a busy school overwrites its oldest lines. For the admin's "why can't this
//! tablet reach that site"; aggregated counts are what goes to the store.

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

/// What became of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allowed,
    Blocked,
    SafeSearch,
    Refused,
    Bypass,
    Local,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub client: IpAddr,
    /// Its buffer is reused by the next line written to the same slot: the answer
    /// path neither allocates nor frees for the log once the ring has gone round.
    pub name: String,
    pub qtype: u16,
    pub outcome: Outcome,
    /// The category that blocked it, if a list did.
    pub category: Option<u8>,
}

/// A line as the answer path hands it over, the name borrowed from the query.
pub struct Line<'a> {
    pub at: u64,
    pub client: IpAddr,
    pub name: &'a str,
    pub qtype: u16,
    pub outcome: Outcome,
    pub category: Option<u8>,
}

/// A line and its place in the log: (second << 32) | the ring's count of lines, so
/// lines of one ring keep their order and rings merge by second, without reading the
/// clock again on the answer path.
type Slot = Mutex<Option<(u64, LogEntry)>>;

/// One thread's part of the log (see `stats`: answering threads never share a ring).
#[repr(align(128))]
struct Ring {
    slots: Box<[Slot]>,
    next: AtomicUsize,
}

pub struct QueryLog {
    rings: Box<[Ring]>,
}

impl QueryLog {
    /// A log of about `capacity` lines; 0 keeps nothing.
    pub fn new(capacity: usize) -> QueryLog {
        let stripes = if capacity == 0 {
            0
        } else {
            super::stats::STRIPES
        };
        let per_ring = capacity.div_ceil(super::stats::STRIPES);
        QueryLog {
            rings: (0..stripes)
                .map(|_| Ring {
                    slots: (0..per_ring).map(|_| Mutex::new(None)).collect(),
                    next: AtomicUsize::new(0),
                })
                .collect(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.rings.is_empty()
    }

    /// Records a line; never waits (a slot being read is skipped, the line dropped).
    pub fn push(&self, entry: Line<'_>) {
        let Some(ring) = self.rings.get(super::stats::stripe()) else {
            return;
        };
        let n = ring.next.fetch_add(1, Ordering::Relaxed);
        let i = n % ring.slots.len();
        let seq = (entry.at << 32) | (n as u64 & 0xffff_ffff);
        if let Ok(mut slot) = ring.slots[i].try_lock() {
            let mut name = slot.take().map(|(_, old)| old.name).unwrap_or_default();
            name.clear();
            name.push_str(entry.name);
            *slot = Some((
                seq,
                LogEntry {
                    at: entry.at,
                    client: entry.client,
                    name,
                    qtype: entry.qtype,
                    outcome: entry.outcome,
                    category: entry.category,
                },
            ));
        }
    }

    /// Up to `limit` lines, newest first, optionally only one client's.
    pub fn recent(&self, limit: usize, client: Option<IpAddr>) -> Vec<LogEntry> {
        let mut all: Vec<(u64, LogEntry)> = Vec::new();
        for ring in self.rings.iter() {
            for slot in ring.slots.iter() {
                let Ok(slot) = slot.lock() else { continue };
                if let Some((seq, e)) = slot.as_ref()
                    && client.is_none_or(|c| c == e.client)
                {
                    all.push((*seq, e.clone()));
                }
            }
        }
        all.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        all.into_iter().take(limit).map(|(_, e)| e).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(i: u64, client: &str, name: &'a str) -> Line<'a> {
        Line {
            at: i,
            client: client.parse().unwrap(),
            name,
            qtype: 1,
            outcome: Outcome::Allowed,
            category: None,
        }
    }

    #[test]
    fn keeps_the_newest_within_its_capacity() {
        // One thread writes one ring: capacity 4 per ring.
        let log = QueryLog::new(4 * super::super::stats::STRIPES);
        for i in 0..10 {
            let name = format!("n{i}.test");
            log.push(entry(
                i,
                if i % 2 == 0 { "10.0.0.1" } else { "10.0.0.2" },
                &name,
            ));
        }
        let all: Vec<u64> = log.recent(100, None).iter().map(|e| e.at).collect();
        assert_eq!(all, [9, 8, 7, 6]);
        let one: Vec<u64> = log
            .recent(100, Some("10.0.0.1".parse().unwrap()))
            .iter()
            .map(|e| e.at)
            .collect();
        assert_eq!(one, [8, 6]);
        assert_eq!(log.recent(1, None).len(), 1);
        let off = QueryLog::new(0);
        off.push(entry(1, "10.0.0.1", "x.test"));
        assert!(off.recent(10, None).is_empty());
    }
}
