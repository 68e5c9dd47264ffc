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

/// Declares the counters once, for both the shared stripes ([`Counters`]) and a
/// batch's plain tally of them ([`Tally`]).
macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// One thread's counters.
        #[repr(align(128))]
        #[derive(Default)]
        pub struct Counters {
            $($(#[$doc])* pub $name: AtomicU64,)*
            per_category: Vec<AtomicU64>,
            /// Queries and blocked queries per client.
            clients: Mutex<HashMap<IpAddr, (u64, u64)>>,
        }

        /// What one batch of queries adds to the counters, in plain integers: a
        /// receiving thread counts its batch without an atomic operation or a lock
        /// per query, and adds it to its stripe once when the batch ends (see
        /// `dns::batch`).
        #[derive(Default)]
        pub struct Tally {
            $(pub $name: u64,)*
            /// (category, blocked queries)
            categories: Vec<(u8, u64)>,
            /// (client, queries, blocked)
            clients: Vec<(IpAddr, u64, u64)>,
        }

        impl Tally {
            fn add_counts_to(&mut self, c: &Counters) {
                $(if self.$name != 0 {
                    c.$name.fetch_add(std::mem::take(&mut self.$name), Ordering::Relaxed);
                })*
            }
        }
    };
}

counters! {
    queries,
    blocked,
    rewritten,
    refused,
    local,
    cache_hits,
    stale_served,
    forwarded,
    servfail,
    malformed,
    /// Dropped: the client was past its rate limit.
    rate_limited,
}

impl Tally {
    /// A blocked query in category `id`.
    pub fn blocked_in(&mut self, category: u8) {
        match self.categories.iter_mut().find(|(c, _)| *c == category) {
            Some((_, n)) => *n += 1,
            None => self.categories.push((category, 1)),
        }
    }

    /// A query from `client`.
    pub fn client(&mut self, client: IpAddr, blocked: bool) {
        // Most of a batch is a few clients; the last one first.
        let found = self
            .clients
            .iter_mut()
            .rev()
            .find(|(ip, _, _)| *ip == client);
        match found {
            Some((_, q, b)) => {
                *q += 1;
                *b += u64::from(blocked);
            }
            None => self.clients.push((client, 1, u64::from(blocked))),
        }
    }

    /// Adds everything to `stats` (the calling thread's stripe) and starts again.
    pub fn add_to(&mut self, stats: &Stats) {
        let c = stats.local();
        self.add_counts_to(c);
        for (category, n) in self.categories.drain(..) {
            if let Some(counter) = c.per_category.get(usize::from(category)) {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
        if self.clients.is_empty() {
            return;
        }
        let mut m = c.clients.lock().unwrap_or_else(|e| e.into_inner());
        for (client, q, b) in self.clients.drain(..) {
            if m.len() >= CLIENTS_PER_STRIPE && !m.contains_key(&client) {
                m.clear();
            }
            let e = m.entry(client).or_insert((0, 0));
            e.0 += q;
            e.1 += b;
        }
    }
}

impl Counters {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
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
    fn tallies_add_up_across_threads() {
        let stats = std::sync::Arc::new(Stats::default());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let stats = stats.clone();
                std::thread::spawn(move || {
                    let mut tally = Tally::default();
                    for i in 0..1000u32 {
                        tally.queries += 1;
                        tally.blocked_in(3);
                        tally.client(IpAddr::from([10, 0, 0, (i % 2) as u8]), i % 2 == 0);
                        if i % 32 == 31 {
                            tally.add_to(&stats);
                        }
                    }
                    tally.add_to(&stats);
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
