//! What the queries of one batch share: one reading of the clock, one snapshot of the
//! filter and of the device rules, one tally of the counters, and the receiving
//! thread's table in front of the cache (`dns::front`).
//!
//! Why: a receiving thread takes up to 32 queries per system call, and a cached answer
//! costs about a microsecond of its own work. Reading the clock twice, loading two
//! `ArcSwap`s and adding to three shared counters and a locked per-client map for each
//! query were a fifth of that; once per batch they cost nothing. A batch lasts the few
//! microseconds its queries take, so its clock reading is as good as one per query,
//! and a reload that swaps the filter mid-batch takes effect at the next batch, as a
//! query already in flight finishes with the filter it started with.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::Guard;

use super::front::Front;
use super::stats::{Stats, Tally};
use crate::base::clock::LocalTime;
use crate::filter::decide::{DeviceRule, Filter};
use crate::filter::policy::MacAddr;

/// One batch's shared readings; its counts go to the shared counters when it is
/// dropped.
pub struct Batch<'a> {
    pub(super) stats: &'a Stats,
    /// The monotonic instant (TTLs, stale ages).
    pub(super) instant: Instant,
    /// Unix seconds (the query log).
    pub(super) unix: u64,
    /// School-local time (schedules).
    pub(super) local: LocalTime,
    pub(super) filter: Guard<Arc<Filter>>,
    pub(super) devices: Guard<Arc<HashMap<IpAddr, DeviceRule>>>,
    /// The cart's leases (address -> MAC), loaded only when a policy names MACs.
    pub(super) leases: Option<Guard<Arc<HashMap<IpAddr, MacAddr>>>>,
    /// The receiving thread's table in front of the shared cache, if it has one.
    pub(super) front: Option<&'a mut Front>,
    pub tally: Tally,
}

impl Batch<'_> {
    /// Starts bringing in what answering `question` (its hash in the front table:
    /// `hash`) will read: the entries its front slots point to, or, with none there
    /// (a name not answered from the cache lately, as a blocked one), the slots of
    /// the lists' index its lookup reads. Called for every query of a batch before
    /// the first is answered (see `dns::front`).
    pub fn prefetch(&self, question: &[u8], hash: u64) {
        let in_front = self.front.as_ref().is_some_and(|f| f.prefetch_entry(hash));
        if !in_front {
            self.filter.index.prefetch_question(question);
        }
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.tally.add_to(self.stats);
    }
}
