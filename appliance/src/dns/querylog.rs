//! The last queries, in memory only: a fixed ring of slots, so the log never grows
//! and a busy school overwrites its oldest lines. For the admin's "why can't this
//! tablet reach that site"; aggregated counts are what goes to the store.

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use super::inline::InlineBytes;

/// What became of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
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

/// Names up to this long are kept in the slot itself, which fills two cache lines.
const INLINE_NAME: usize = 78;
/// Slots announced ahead of the one written, so the next lines' memory is on its way
/// (a ring is tens of kilobytes, written in turn: each line went to memory the
/// processor had long let go, a tenth of a cached answer's own cost).
const AHEAD: usize = 4;

/// A line as a slot keeps it: the name inline when short, so writing a line touches
/// the slot alone (no separate buffer to reach).
struct Logged {
    /// Its place in the log: (second << 32) | the ring's count of lines, so lines of
    /// one ring keep their order and rings merge by second, without reading the clock
    /// again on the answer path.
    seq: u64,
    at: u64,
    client: IpAddr,
    name: InlineBytes<INLINE_NAME>,
    qtype: u16,
    outcome: Outcome,
    category: Option<u8>,
}

type Slot = Mutex<Option<Logged>>;

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
        cartable_sys::prefetch(&ring.slots[(i + AHEAD) % ring.slots.len()]);
        if let Ok(mut slot) = ring.slots[i].try_lock() {
            *slot = Some(Logged {
                seq: (entry.at << 32) | (n as u64 & 0xffff_ffff),
                at: entry.at,
                client: entry.client,
                name: InlineBytes::new(entry.name.as_bytes()),
                qtype: entry.qtype,
                outcome: entry.outcome,
                category: entry.category,
            });
        }
    }

    /// Up to `limit` lines, newest first, of those `keep` says yes to (by client,
    /// name and outcome: the admin page's search).
    pub fn recent(
        &self,
        limit: usize,
        keep: impl Fn(IpAddr, &str, Outcome) -> bool,
    ) -> Vec<LogEntry> {
        let mut all: Vec<(u64, LogEntry)> = Vec::new();
        for ring in self.rings.iter() {
            for slot in ring.slots.iter() {
                let Ok(slot) = slot.lock() else { continue };
                if let Some(e) = slot.as_ref()
                    && keep(e.client, e.name.as_str(), e.outcome)
                {
                    let line = LogEntry {
                        at: e.at,
                        client: e.client,
                        name: e.name.as_str().to_string(),
                        qtype: e.qtype,
                        outcome: e.outcome,
                        category: e.category,
                    };
                    all.push((e.seq, line));
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
    fn a_slot_fills_two_cache_lines() {
        assert_eq!(std::mem::size_of::<Slot>(), 128);
    }

    #[test]
    fn long_names_are_logged_whole() {
        let log = QueryLog::new(super::super::stats::STRIPES);
        let name = format!("{}.test", "a".repeat(120));
        log.push(entry(1, "10.0.0.1", &name));
        assert_eq!(log.recent(1, |_, _, _| true)[0].name, name);
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
        let all: Vec<u64> = log
            .recent(100, |_, _, _| true)
            .iter()
            .map(|e| e.at)
            .collect();
        assert_eq!(all, [9, 8, 7, 6]);
        let one: Vec<u64> = log
            .recent(100, |c, _, _| c == "10.0.0.1".parse::<IpAddr>().unwrap())
            .iter()
            .map(|e| e.at)
            .collect();
        assert_eq!(one, [8, 6]);
        assert_eq!(log.recent(1, |_, _, _| true).len(), 1);
        let off = QueryLog::new(0);
        off.push(entry(1, "10.0.0.1", "x.test"));
        assert!(off.recent(10, |_, _, _| true).is_empty());
    }
}
