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
    pub name: Box<str>,
    pub qtype: u16,
    pub outcome: Outcome,
    /// The category that blocked it, if a list did.
    pub category: Option<u8>,
}

pub struct QueryLog {
    slots: Box<[Mutex<Option<LogEntry>>]>,
    next: AtomicUsize,
}

impl QueryLog {
    /// A log of `capacity` lines; 0 keeps nothing.
    pub fn new(capacity: usize) -> QueryLog {
        QueryLog {
            slots: (0..capacity).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.slots.is_empty()
    }

    /// Records a line; never waits (a slot being read is skipped, the line dropped).
    pub fn push(&self, entry: LogEntry) {
        if self.slots.is_empty() {
            return;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        if let Ok(mut slot) = self.slots[i].try_lock() {
            *slot = Some(entry);
        }
    }

    /// Up to `limit` lines, newest first, optionally only one client's.
    pub fn recent(&self, limit: usize, client: Option<IpAddr>) -> Vec<LogEntry> {
        let n = self.slots.len();
        if n == 0 {
            return Vec::new();
        }
        let end = self.next.load(Ordering::Relaxed);
        let mut out = Vec::new();
        for k in 0..n.min(end) {
            let i = (end - 1 - k) % n;
            let Ok(slot) = self.slots[i].lock() else {
                continue;
            };
            if let Some(e) = slot.as_ref()
                && client.is_none_or(|c| c == e.client)
            {
                out.push(e.clone());
                if out.len() >= limit {
                    break;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64, client: &str) -> LogEntry {
        LogEntry {
            at: i,
            client: client.parse().unwrap(),
            name: format!("n{i}.test").into(),
            qtype: 1,
            outcome: Outcome::Allowed,
            category: None,
        }
    }

    #[test]
    fn keeps_the_newest_within_its_capacity() {
        let log = QueryLog::new(4);
        for i in 0..10 {
            log.push(entry(i, if i % 2 == 0 { "10.0.0.1" } else { "10.0.0.2" }));
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
        off.push(entry(1, "10.0.0.1"));
        assert!(off.recent(10, None).is_empty());
    }
}
