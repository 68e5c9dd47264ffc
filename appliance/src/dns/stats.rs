//! The DNS counters, striped by thread: each answering thread adds to its own
//! cache-line-aligned stripe, so two cores answering at full speed never fight over a
//! counter; readers add the stripes up.

use hashbrown::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::filter::index::MAX_CATEGORIES;

pub(crate) const STRIPES: usize = 8;
/// Clients remembered per stripe; a stripe that fills up starts over.
const CLIENTS_PER_STRIPE: usize = 8192;

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: usize = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
}

/// This thread's stripe number.
pub(crate) fn stripe() -> usize {
    STRIPE.with(|s| *s)
}

/// One thread's counters.
#[repr(align(128))]
#[derive(Default)]
pub struct Counters {
    pub queries: AtomicU64,
    pub blocked: AtomicU64,
    pub rewritten: AtomicU64,
    pub refused: AtomicU64,
    pub local: AtomicU64,
    pub cache_hits: AtomicU64,
    pub stale_served: AtomicU64,
    pub forwarded: AtomicU64,
    pub servfail: AtomicU64,
    pub malformed: AtomicU64,
    /// Dropped: the client was past its rate limit.
    pub rate_limited: AtomicU64,
    per_category: Vec<AtomicU64>,
    /// Queries and blocked queries per client.
    clients: Mutex<HashMap<IpAddr, (u64, u64)>>,
}

impl Counters {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn blocked_in(&self, category: u8) {
        if let Some(c) = self.per_category.get(usize::from(category)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn client(&self, client: IpAddr, blocked: bool) {
        let mut m = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= CLIENTS_PER_STRIPE && !m.contains_key(&client) {
            m.clear();
        }
        let e = m.entry(client).or_insert((0, 0));
        e.0 += 1;
        e.1 += u64::from(blocked);
    }
}

pub struct Stats {
    stripes: Box<[Counters]>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            stripes: (0..STRIPES)
                .map(|_| Counters {
                    per_category: (0..MAX_CATEGORIES).map(|_| AtomicU64::new(0)).collect(),
                    ..Counters::default()
                })
                .collect(),
        }
    }
}

impl Stats {
    /// The calling thread's counters.
    pub fn local(&self) -> &Counters {
        &self.stripes[stripe()]
    }

    /// One counter, added up over the stripes.
    pub fn total(&self, counter: impl Fn(&Counters) -> &AtomicU64) -> u64 {
        self.stripes
            .iter()
            .map(|s| counter(s).load(Ordering::Relaxed))
            .sum()
    }

    /// Blocked queries in category `id`.
    pub fn category(&self, id: u8) -> u64 {
        self.stripes
            .iter()
            .filter_map(|s| s.per_category.get(usize::from(id)))
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// (client, queries, blocked), most active first.
    pub fn top_clients(&self, limit: usize) -> Vec<(IpAddr, u64, u64)> {
        let mut merged: HashMap<IpAddr, (u64, u64)> = HashMap::default();
        for s in self.stripes.iter() {
            let m = s.clients.lock().unwrap_or_else(|e| e.into_inner());
            for (ip, (q, b)) in m.iter() {
                let e = merged.entry(*ip).or_insert((0, 0));
                e.0 += q;
                e.1 += b;
            }
        }
        let mut all: Vec<(IpAddr, u64, u64)> =
            merged.into_iter().map(|(ip, (q, b))| (ip, q, b)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(limit);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_add_up_across_threads() {
        let stats = std::sync::Arc::new(Stats::default());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let stats = stats.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u32 {
                        let local = stats.local();
                        Counters::add(&local.queries);
                        local.blocked_in(3);
                        local.client(IpAddr::from([10, 0, 0, (i % 2) as u8]), i % 2 == 0);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(stats.total(|c| &c.queries), 4000);
        assert_eq!(stats.category(3), 4000);
        let top = stats.top_clients(10);
        assert_eq!(top.len(), 2);
        assert_eq!((top[0].1, top[1].1), (2000, 2000));
        assert_eq!(top.iter().map(|t| t.2).sum::<u64>(), 2000);
    }
}
