//! From a query's bytes to the reply's bytes: local names, then the filter's verdict,
//! then the cache, then the upstream.
//!
//! `start` does everything that needs no waiting (parsing, local names, blocked
//! answers, cache hits) on the receiving task; only a miss or a refresh becomes a
//! `Pending` for `finish`, which asks the upstream once however many clients ask the
//! same thing at the same time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Message, MessageType, OpCode};
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{Name, RData, Record};
use tokio::sync::watch;

use super::batch::Batch;
use super::cache::{Cache, Entry, Freshness, Key, KeyRef, STALE_TTL};
use super::forward::Forwarder;
use super::front::Front;
use super::querylog::{Line, Outcome, QueryLog};
use super::ratelimit::Limits;
use super::rebind::Rebind;
use super::stats::{Counters, Stats, Tally};
use super::wire::{self, Query};
use crate::base::clock::{Clock, LocalTime};
use crate::filter::decide::{Action, DeviceRule, Filter, Listing, Reason};
use crate::filter::policy::{BlockMode, Cidr};

/// TTL of the answers the box makes itself (blocked, local names, rewrites).
const OWN_TTL: u32 = 60;
/// RFC 8767's client response timer: past this, a stale answer goes out while the
/// upstream is still being asked.
const STALE_AFTER: Duration = Duration::from_millis(1800);
/// A popular answer this close to expiry is refreshed before it expires.
const PREFETCH_BELOW: f32 = 0.1;
/// RFC 8767's failure recheck timer: once the upstream has failed, stale answers go
/// out at once for this long, and one background refresh at a time probes it.
const FAILURE_RECHECK: Duration = Duration::from_secs(30);
/// Answers learned since the last write that wait for the store; past this, the
/// periodic full save catches them.
const LEARNED_MAX: usize = 20_000;
/// TTL of the RFC 8482 answer to ANY.
const ANY_TTL: u32 = 3600;

/// What the engine needs besides the filter.
pub struct EngineConfig {
    /// Names the box answers itself (its own name, the hub, cache origins).
    /// (hashbrown's hasher: looked up at every query.)
    pub local: hashbrown::HashMap<String, Vec<IpAddr>>,
    /// Where the block page is served; empty falls back to the null address.
    pub box_addresses: Vec<IpAddr>,
    pub cache_entries: usize,
    pub max_stale: Duration,
    /// Every time the engine reads: TTLs, stale ages, schedules (tests move it).
    pub clock: Clock,
    /// Lines kept in the in-memory query log (0: none).
    pub query_log: usize,
    /// Who may ask (`[dns] allow_clients`); the rest get REFUSED.
    pub allow_clients: Vec<Cidr>,
    /// DNS-rebinding protection, when on.
    pub rebind: Option<Rebind>,
    /// The per-client rate limit each socket applies.
    pub limits: Limits,
}

#[cfg(test)]
impl EngineConfig {
    /// For unit tests: every client allowed, no rebinding check, no rate limit, no
    /// query log.
    pub(crate) fn open(
        local: hashbrown::HashMap<String, Vec<IpAddr>>,
        max_stale: Duration,
        clock: Clock,
    ) -> EngineConfig {
        EngineConfig {
            local,
            box_addresses: Vec::new(),
            cache_entries: 100,
            max_stale,
            clock,
            query_log: 0,
            allow_clients: vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
            rebind: None,
            limits: Limits {
                rate: 0,
                burst: 0,
                exempt: Vec::new(),
            },
        }
    }
}

/// Why a fetch has no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No upstream answered (or none is configured): a stale answer may stand in.
    Upstream,
    /// The upstream gave a public name a private address: refused, never stale.
    Rebind,
}

type FetchResult = Result<Arc<Entry>, Failure>;

pub struct Engine {
    filter: ArcSwap<Filter>,
    devices: ArcSwap<HashMap<IpAddr, DeviceRule>>,
    /// The cart's DHCP leases: which MAC has which address.
    leases: ArcSwap<HashMap<IpAddr, crate::filter::policy::MacAddr>>,
    config: EngineConfig,
    cache: Cache,
    forwarder: Forwarder,
    inflight: Mutex<HashMap<Key, watch::Receiver<Option<FetchResult>>>>,
    uplink_down: AtomicBool,
    /// Until when (ms since `epoch` on the engine's clock) stale answers go out at once
    /// after an upstream failure; 0 when the upstream is answering.
    failing_until: AtomicU64,
    /// A refresh is probing a failing upstream (one at a time).
    probing: AtomicBool,
    /// When a refused stranger was last logged (ms since `epoch`).
    stranger_warned: AtomicU64,
    epoch: Instant,
    /// Answers learned from the upstream that the store does not have yet.
    learned: Mutex<Vec<(Key, Arc<Entry>)>>,
    /// The last local time worked out; see [`Engine::local_time`].
    local_minute: AtomicU64,
    pub stats: Stats,
    pub log: QueryLog,
    /// What of `stats` the store's hourly rows have: the server flushes every few
    /// minutes, the admin's dashboard before it reads.
    pub(crate) flushed: super::persist::Flusher,
}

/// What `start` could not finish without the upstream.
pub struct Pending {
    q: Query,
    /// The name to fetch: the question's, or a safe-search endpoint.
    key: Key,
    rewrite: Option<&'static str>,
    stale: Option<Arc<Entry>>,
    max_size: Option<usize>,
}

pub enum Step {
    /// The reply, or nothing to send (unparseable garbage).
    Done(Option<Vec<u8>>),
    /// Boxed: with the question's name kept inline a `Pending` is some 200 bytes,
    /// and only a query that waits on the upstream pays for moving it.
    Upstream(Box<Pending>),
}

impl Engine {
    pub fn new(filter: Filter, forwarder: Forwarder, config: EngineConfig) -> Engine {
        let stats = Stats::default();
        Engine {
            filter: ArcSwap::from_pointee(filter),
            devices: ArcSwap::from_pointee(HashMap::default()),
            leases: ArcSwap::from_pointee(HashMap::default()),
            cache: Cache::new(config.cache_entries, config.max_stale),
            forwarder,
            inflight: Mutex::new(HashMap::new()),
            uplink_down: AtomicBool::new(false),
            failing_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            stranger_warned: AtomicU64::new(0),
            epoch: config.clock.instant(),
            learned: Mutex::new(Vec::new()),
            local_minute: AtomicU64::new(0),
            log: QueryLog::new(config.query_log),
            flushed: Default::default(),
            config,
            stats,
        }
    }

    /// Swaps in a new filter; queries in flight finish with the old one.
    pub fn swap_filter(&self, filter: Filter) {
        self.filter.store(Arc::new(filter));
    }

    pub fn filter(&self) -> Arc<Filter> {
        self.filter.load_full()
    }

    /// The hub's rule for the device at `client`, if any.
    pub fn device_rule(&self, client: IpAddr) -> Option<DeviceRule> {
        self.devices.load().get(&client).cloned()
    }

    /// Replaces every device rule (from the hub).
    pub fn set_devices(&self, devices: HashMap<IpAddr, DeviceRule>) {
        self.devices.store(Arc::new(devices));
    }

    /// The cart's leases, so that a policy naming a tablet's MAC follows it to
    /// whatever address DHCP gave it.
    pub fn set_leases(&self, leases: HashMap<IpAddr, crate::filter::policy::MacAddr>) {
        self.leases.store(Arc::new(leases));
    }

    /// The MAC of the tablet at `client`, if the cart leased it that address.
    pub fn mac_of(&self, client: IpAddr) -> Option<crate::filter::policy::MacAddr> {
        self.leases.load().get(&client).copied()
    }

    /// With the uplink down, stale answers go out at once instead of after a timeout.
    pub fn set_uplink_down(&self, down: bool) {
        self.uplink_down.store(down, Ordering::Relaxed);
    }

    /// The addresses of `host` as the upstream servers give them, past the filter and
    /// the local names: the cache's redirect mode answers origins with the box's own
    /// address, so the cache itself must look them up here.
    pub async fn addresses_upstream(&self, host: &str) -> Vec<IpAddr> {
        let mut out = Vec::new();
        for qtype in [1u16, 28] {
            if let Ok(bytes) = self.forwarder.resolve(host, qtype, 1).await
                && let Ok(m) = Message::from_vec(&bytes)
            {
                out.extend(m.answers.iter().filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                }));
            }
            if !out.is_empty() {
                break;
            }
        }
        out
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Takes the answers learned since the last call, for the store.
    pub(crate) fn take_learned(&self) -> Vec<(Key, Arc<Entry>)> {
        std::mem::take(&mut *self.learned.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The per-client rate limit the sockets apply.
    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }

    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64 + 1
    }

    /// Whether a stale answer goes out now without asking the upstream first: the
    /// uplink is down, or the upstream failed within the failure recheck period.
    fn serve_stale_at_once(&self, now: Instant) -> bool {
        self.uplink_down.load(Ordering::Relaxed)
            || self.millis(now) < self.failing_until.load(Ordering::Relaxed)
    }

    /// Whether the box answers `name` itself (`[dns] local`, the cache's origins).
    pub(crate) fn is_local_name(&self, name: &str) -> bool {
        self.config
            .local
            .contains_key(name.trim_end_matches('.').to_ascii_lowercase().as_str())
    }

    /// The clock every answer is decided with.
    pub fn clock(&self) -> &Clock {
        &self.config.clock
    }

    fn record(
        &self,
        at: u64,
        client: IpAddr,
        name: &str,
        qtype: u16,
        outcome: Outcome,
        category: Option<u8>,
    ) {
        if self.log.enabled() {
            self.log.push(Line {
                at,
                client,
                name,
                qtype,
                outcome,
                category,
            });
        }
    }

    /// The local time, worked out (time zone rules) once a minute; between, one atomic
    /// read: (minutes since the epoch << 24) | (weekday << 16) | minute of the day.
    /// With it, the Unix time in seconds (from the same reading of the clock).
    fn local_time(&self) -> (LocalTime, u64) {
        let now = self.config.clock.now();
        let unix = now.as_second().max(0) as u64;
        let minute = unix / 60;
        let packed = self.local_minute.load(Ordering::Relaxed);
        if packed >> 24 == minute {
            let local = LocalTime {
                weekday: ((packed >> 16) & 0xff) as u8,
                minute: (packed & 0xffff) as u16,
            };
            return (local, unix);
        }
        let local = LocalTime::at(now, self.config.clock.zone());
        let packed = (minute << 24) | (u64::from(local.weekday) << 16) | u64::from(local.minute);
        self.local_minute.store(packed, Ordering::Relaxed);
        (local, unix)
    }

    /// What a batch of queries shares (see [`Batch`]).
    pub fn batch(&self) -> Batch<'_> {
        self.batch_in_front_of(None)
    }

    /// A batch of a receiving thread that keeps `front` in front of the cache.
    pub fn batch_with<'a>(&'a self, front: &'a mut Front) -> Batch<'a> {
        self.batch_in_front_of(Some(front))
    }

    fn batch_in_front_of<'a>(&'a self, front: Option<&'a mut Front>) -> Batch<'a> {
        let (local, unix) = self.local_time();
        let filter = self.filter.load();
        let leases = filter.policies.by_mac().then(|| self.leases.load());
        Batch {
            stats: &self.stats,
            instant: self.config.clock.instant(),
            unix,
            local,
            filter,
            devices: self.devices.load(),
            leases,
            front,
            tally: Tally::default(),
        }
    }

    /// The entry for the question of `query` in the thread's front table (`hash`: the
    /// question's hash there, which the receiving loop worked out to prefetch its
    /// slot), while the shared cache may still serve it.
    fn in_front<'f>(
        &self,
        front: Option<&'f Front>,
        question_hash: Option<u64>,
        now: Instant,
        query: &[u8],
        q: &Query,
    ) -> Option<&'f Arc<Entry>> {
        let (front, hash) = (front?, question_hash?);
        let question = &query[wire::HEADER..q.question_end];
        front
            .get(hash, question)
            .filter(|entry| self.cache.usable(entry, now))
    }

    /// The entry for `q` in the shared cache, then kept in the thread's front table
    /// when there is one.
    fn shared_cached(
        &self,
        front: Option<&mut Front>,
        question_hash: Option<u64>,
        now: Instant,
        q: &Query,
    ) -> Option<Arc<Entry>> {
        let entry = self.cache.get(KeyRef::of(q), now)?;
        if let (Some(front), Some(hash)) = (front, question_hash) {
            front.put(hash, entry.clone());
        }
        Some(entry)
    }

    /// Answers what can be answered now, as a batch of one.
    pub fn start(self: &Arc<Self>, query: &[u8], client: IpAddr, max_udp: bool) -> Step {
        self.start_in(&mut self.batch(), query, None, client, max_udp)
    }

    /// Answers what can be answered now. `max_size` is the UDP limit, `None` for TCP;
    /// `question_hash` is the question's hash in the batch's front table
    /// (`front::question_hash`), when the caller has one.
    // Long: the answer path, in the order a query meets it (parse, local names, the
    // filter, the cache); kept in one piece so the hot path is read, and profiled, as one.
    pub fn start_in(
        self: &Arc<Self>,
        b: &mut Batch<'_>,
        query: &[u8],
        question_hash: Option<u64>,
        client: IpAddr,
        max_udp: bool,
    ) -> Step {
        b.tally.queries += 1;
        // A response (QR=1) is never answered, not even with FORMERR: answering one
        // sent from our own address would loop forever, and two resolvers could be
        // bounced off each other.
        if query.get(2).is_some_and(|flags| flags & 0x80 != 0) {
            b.tally.malformed += 1;
            return Step::Done(None);
        }
        let q = match wire::parse_query(query) {
            Ok(q) => q,
            Err(e) => {
                b.tally.malformed += 1;
                tracing::debug!(%client, error = %e, "malformed query");
                return Step::Done(wire::id_of(query).map(wire::formerr));
            }
        };
        let max_size = max_udp.then(|| q.max_udp());
        let done = |mut reply: Vec<u8>| {
            if let Some(max) = max_size
                && reply.len() > max
            {
                wire::truncate(&mut reply, &q);
            }
            Step::Done(Some(reply))
        };
        if !self.config.allow_clients.iter().any(|c| c.contains(client)) {
            b.tally.refused += 1;
            self.warn_stranger(client);
            return done(wire::error_response(query, &q, wire::RCODE_REFUSED));
        }
        if q.opcode != 0 {
            return done(wire::error_response(query, &q, wire::RCODE_NOTIMP));
        }
        if q.qclass != wire::CLASS_IN {
            b.tally.refused += 1;
            return done(wire::error_response(query, &q, wire::RCODE_REFUSED));
        }
        let name = q.name.as_str();
        if let Some(addrs) = self.config.local.get(name) {
            b.tally.local += 1;
            self.record(b.unix, client, name, q.qtype, Outcome::Local, None);
            return done(wire::address_response(query, &q, addrs, OWN_TTL, true));
        }
        if !q.valid {
            b.tally.refused += 1;
            return done(wire::error_response(query, &q, wire::RCODE_REFUSED));
        }
        let filter = &b.filter;
        let device = if b.devices.is_empty() {
            None
        } else {
            b.devices.get(&client)
        };
        // The thread's front table first: an answer served from it lately may carry
        // what the lists are known to hold of its name, which spares the index lookup
        // (see `Listing`). The shared cache comes after the filter, and only for what
        // it allows: a blocked name (never cached) costs no lookup under its lock.
        let now = b.instant;
        let front_entry = self
            .in_front(b.front.as_deref(), question_hash, now, query, &q)
            .cloned();
        let generation = filter.index.generation();
        let known = match &front_entry {
            Some(entry) if entry.unlisted_in(generation) => Listing::Unlisted,
            _ => Listing::Unknown,
        };
        let mut listing = known;
        let mac = b.leases.as_ref().and_then(|l| l.get(&client));
        let verdict = filter.decide_for(name, client, mac, b.local, device, &mut listing);
        let cached = match (front_entry, verdict.action) {
            (Some(entry), _) => Some(entry),
            (None, Action::Allow) => {
                self.shared_cached(b.front.as_deref_mut(), question_hash, now, &q)
            }
            // Rewritten names are looked up under their target below; refusals need
            // no answer.
            (None, _) => None,
        };
        if let (Listing::Unknown, Listing::Unlisted, Some(entry)) = (known, listing, &cached) {
            entry.set_unlisted_in(generation);
        }
        let mut rewrite = None;
        let (outcome, category) = match (verdict.action, verdict.reason) {
            (Action::Allow, _) => (Outcome::Allowed, None),
            (Action::Refuse, _) => (Outcome::Refused, None),
            (Action::NxDomain, _) => (Outcome::Bypass, None),
            (Action::Rewrite(_), _) => (Outcome::SafeSearch, None),
            (Action::Block(_), Reason::Listed { category, .. }) => {
                (Outcome::Blocked, Some(category))
            }
            (Action::Block(_), _) => (Outcome::Blocked, None),
        };
        self.record(b.unix, client, name, q.qtype, outcome, category);
        b.tally.client(client, outcome == Outcome::Blocked);
        match verdict.action {
            Action::Allow => {}
            Action::Refuse => {
                b.tally.refused += 1;
                return done(wire::error_response(query, &q, wire::RCODE_REFUSED));
            }
            Action::NxDomain => {
                b.tally.blocked += 1;
                return done(wire::error_response(query, &q, wire::RCODE_NXDOMAIN));
            }
            Action::Block(mode) => {
                b.tally.blocked += 1;
                if let Reason::Listed { category, .. } = verdict.reason {
                    b.tally.blocked_in(category);
                }
                return done(self.blocked_reply(query, &q, mode));
            }
            Action::Rewrite(target) => {
                b.tally.rewritten += 1;
                rewrite = Some(target);
            }
        }
        if q.qtype == wire::TYPE_ANY {
            // RFC 8482: one small record instead of everything the name has (a 45-byte
            // query must not buy a 1,000-byte answer aimed at someone else).
            b.tally.local += 1;
            return done(wire::hinfo_response(query, &q, ANY_TTL));
        }
        let (key, cached) = match rewrite {
            Some(target) => {
                let key = KeyRef {
                    name: target,
                    qtype: q.qtype,
                    qclass: q.qclass,
                };
                (key, self.cache.get(key, now))
            }
            None => (KeyRef::of(&q), cached),
        };
        if let Some(entry) = &cached {
            match entry.freshness(now) {
                Freshness::Fresh { remaining, ttl } => {
                    b.tally.cache_hits += 1;
                    let hits = entry.hit();
                    if hits >= 1 && (remaining as f32) < PREFETCH_BELOW * ttl as f32 {
                        self.refresh_in_background(&key.to_owned(), entry);
                    }
                    return done(answer(query, &q, rewrite, entry, now));
                }
                Freshness::Stale if self.serve_stale_at_once(now) => {
                    b.tally.stale_served += 1;
                    self.probe_in_background(&key.to_owned(), entry);
                    return done(answer(query, &q, rewrite, entry, now));
                }
                Freshness::Stale => {}
            }
        }
        let key = key.to_owned();
        Step::Upstream(Box::new(Pending {
            q,
            key,
            rewrite,
            stale: cached,
            max_size,
        }))
    }

    /// Says, at most once a minute, that a client outside `allow_clients` was refused:
    /// a school whose network uses public addresses must learn why its tablets get
    /// REFUSED from the log, not from a teacher.
    fn warn_stranger(&self, client: IpAddr) {
        let now = self.millis(self.config.clock.instant());
        let last = self.stranger_warned.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 60_000)
            && self
                .stranger_warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(%client, "DNS query refused: the client is outside [dns] allow_clients (add the school's subnets there if they are public addresses)");
        }
    }

    fn blocked_reply(&self, query: &[u8], q: &Query, mode: BlockMode) -> Vec<u8> {
        const NULL: [IpAddr; 2] = [
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        ];
        match mode {
            BlockMode::Nxdomain => wire::error_response(query, q, wire::RCODE_NXDOMAIN),
            BlockMode::Blockpage if !self.config.box_addresses.is_empty() => {
                wire::address_response(query, q, &self.config.box_addresses, OWN_TTL, false)
            }
            _ => wire::address_response(query, q, &NULL, OWN_TTL, false),
        }
    }

    /// Waits for the upstream (or a stale answer) and makes the reply.
    pub async fn finish(self: Arc<Self>, query: Vec<u8>, p: Box<Pending>) -> Vec<u8> {
        let fetch = self.fetch(p.key.clone(), p.stale.as_ref());
        let entry = match &p.stale {
            Some(stale) => {
                tokio::pin!(fetch);
                tokio::select! {
                    fresh = &mut fetch => match fresh {
                        Err(Failure::Upstream) => {
                            Counters::add(&self.stats.local().stale_served);
                            Ok(stale.clone())
                        }
                        other => other,
                    },
                    _ = tokio::time::sleep(STALE_AFTER) => {
                        Counters::add(&self.stats.local().stale_served);
                        Ok(stale.clone())
                    }
                }
            }
            None => fetch.await,
        };
        let entry = match entry {
            Ok(entry) => entry,
            Err(Failure::Rebind) => {
                Counters::add(&self.stats.local().refused);
                return wire::error_response(&query, &p.q, wire::RCODE_REFUSED);
            }
            Err(Failure::Upstream) => {
                Counters::add(&self.stats.local().servfail);
                return wire::error_response(&query, &p.q, wire::RCODE_SERVFAIL);
            }
        };
        Counters::add(&self.stats.local().forwarded);
        let mut reply = answer(&query, &p.q, p.rewrite, &entry, self.config.clock.instant());
        if let Some(max) = p.max_size
            && reply.len() > max
        {
            wire::truncate(&mut reply, &p.q);
        }
        reply
    }

    /// Asks the upstream for `key`, once for every concurrent asker; caches the answer.
    /// `seen` is the entry the asker found in the cache, if any: a fresh entry other
    /// than that one was stored by a fetch that ended since, and is the answer (a
    /// fetch leaves the in-flight map only after the cache has its answer).
    async fn fetch(self: &Arc<Self>, key: Key, seen: Option<&Arc<Entry>>) -> FetchResult {
        let mut rx = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match inflight.get(&key) {
                Some(rx) => rx.clone(),
                None => {
                    let now = self.config.clock.instant();
                    if let Some(newer) = self.cache.get(key.as_key_ref(), now)
                        && !seen.is_some_and(|s| Arc::ptr_eq(s, &newer))
                        && matches!(newer.freshness(now), Freshness::Fresh { .. })
                    {
                        return Ok(newer);
                    }
                    let (tx, rx) = watch::channel(None);
                    inflight.insert(key.clone(), rx.clone());
                    let engine = self.clone();
                    // A task of its own: the answer is cached even if every asker left.
                    tokio::spawn(async move {
                        let result = engine.resolve_upstream(&key).await;
                        engine
                            .inflight
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&key);
                        let _ = tx.send(Some(result));
                    });
                    rx
                }
            }
        };
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or(Err(Failure::Upstream)),
            Err(_) => Err(Failure::Upstream),
        }
    }

    async fn resolve_upstream(&self, key: &Key) -> FetchResult {
        match self
            .forwarder
            .resolve(&key.name, key.qtype, key.qclass)
            .await
        {
            Ok(bytes) => {
                let now = self.config.clock.instant();
                self.failing_until.store(0, Ordering::Relaxed);
                if let Some(ip) = self
                    .config
                    .rebind
                    .as_ref()
                    .and_then(|r| r.violation(&key.name, &bytes))
                {
                    tracing::warn!(name = %key.name, address = %ip, "DNS rebinding refused: a public name answered with a private address");
                    return Err(Failure::Rebind);
                }
                // An answer not worth keeping (SERVFAIL, truncated) counts as no answer.
                let entry = Arc::new(Entry::from_response(&bytes, now).ok_or(Failure::Upstream)?);
                self.cache.insert(key.clone(), entry.clone(), now);
                let mut learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
                if learned.len() < LEARNED_MAX {
                    learned.push((key.clone(), entry.clone()));
                }
                Ok(entry)
            }
            Err(e) => {
                let until =
                    self.millis(self.config.clock.instant()) + FAILURE_RECHECK.as_millis() as u64;
                self.failing_until.store(until, Ordering::Relaxed);
                tracing::debug!(name = %key.name, error = %e, "upstream failed");
                Err(Failure::Upstream)
            }
        }
    }

    /// A stale answer was served at once: refresh it in the background, but while the
    /// upstream is failing, with one refresh at a time for the whole engine (RFC
    /// 8767: no more attempts than the failure recheck allows).
    fn probe_in_background(self: &Arc<Self>, key: &Key, entry: &Arc<Entry>) {
        if self.failing_until.load(Ordering::Relaxed) == 0 {
            return self.refresh_in_background(key, entry);
        }
        if self.probing.swap(true, Ordering::Relaxed) {
            return;
        }
        let engine = self.clone();
        let (key, entry) = (key.clone(), entry.clone());
        tokio::spawn(async move {
            let _ = engine.fetch(key, Some(&entry)).await;
            engine.probing.store(false, Ordering::Relaxed);
        });
    }

    fn refresh_in_background(self: &Arc<Self>, key: &Key, entry: &Arc<Entry>) {
        if entry.refreshing.swap(true, Ordering::Relaxed) {
            return;
        }
        let engine = self.clone();
        let key = key.clone();
        let entry = entry.clone();
        tokio::spawn(async move {
            let _ = engine.fetch(key, Some(&entry)).await;
            entry.refreshing.store(false, Ordering::Relaxed);
        });
    }
}

/// The reply to `q` from a cached answer: the answer itself, or for a safe-search
/// rewrite, a CNAME to the endpoint followed by the endpoint's records.
fn answer(
    query: &[u8],
    q: &Query,
    rewrite: Option<&'static str>,
    entry: &Entry,
    now: Instant,
) -> Vec<u8> {
    match rewrite {
        None => entry.reply(query, q, now),
        Some(target) => rewrite_reply(query, q, target, entry, now)
            .unwrap_or_else(|| wire::error_response(query, q, wire::RCODE_SERVFAIL)),
    }
}

/// The question's name as a CNAME to `target`, followed by `target`'s records.
fn rewrite_reply(
    query: &[u8],
    q: &Query,
    target: &'static str,
    entry: &Entry,
    now: Instant,
) -> Option<Vec<u8>> {
    let upstream = Message::from_vec(entry.wire()).ok()?;
    let stale = matches!(entry.freshness(now), Freshness::Stale);
    let age = entry.age(now) as u32;
    let mut m = Message::new(q.id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = q.rd;
    m.metadata.recursion_available = true;
    m.metadata.response_code = upstream.metadata.response_code;
    // The question as the client wrote it (some clients check the case they sent).
    let qname = Name::from_ascii(format!("{}.", q.name_as_sent(query))).ok()?;
    let mut question = hickory_proto::op::Query::query(qname.clone(), q.qtype.into());
    question.set_query_class(q.qclass.into());
    m.add_query(question);
    let target_name = Name::from_ascii(format!("{target}.")).ok()?;
    m.add_answer(Record::from_rdata(
        qname,
        OWN_TTL,
        RData::CNAME(CNAME(target_name)),
    ));
    for mut r in upstream.answers {
        r.ttl = if stale {
            STALE_TTL
        } else {
            r.ttl.min(entry.ttl()).saturating_sub(age)
        };
        m.add_answer(r);
    }
    if q.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(wire::EDNS_PAYLOAD);
        m.set_edns(edns);
    }
    m.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Upstream;
    use crate::filter::index::Index;
    use crate::filter::policy::{BlockMode, Policies, builtin};
    use hickory_proto::rr::{Record, rdata::A};

    /// A real UDP resolver on loopback answering every A question with `10.5.0.1`,
    /// TTL `ttl`; each question it receives is sent on the channel.
    async fn upstream(
        ttl: u32,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::mpsc::UnboundedReceiver<String>,
        tokio::task::JoinHandle<()>,
    ) {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let name = q.queries[0].name().clone();
                let _ = tx.send(name.to_ascii());
                let mut reply = Message::response(q.id, q.op_code);
                reply.add_query(q.queries[0].clone());
                reply.add_answer(Record::from_rdata(name, ttl, RData::A(A::new(10, 5, 0, 1))));
                let _ = socket.send_to(&reply.to_vec().unwrap(), from).await;
            }
        });
        (addr, rx, task)
    }

    fn engine(upstream: std::net::SocketAddr, clock: Clock) -> Arc<Engine> {
        let index = Arc::new(Index::empty());
        let policies = Policies::compile(&builtin(), &index, BlockMode::Nxdomain).unwrap();
        Arc::new(Engine::new(
            Filter { index, policies },
            Forwarder::new(
                vec![Upstream::Plain(upstream)],
                Duration::from_millis(1500),
                None,
            ),
            EngineConfig::open(Default::default(), Duration::from_secs(3600), clock),
        ))
    }

    fn query(name: &str) -> Vec<u8> {
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(hickory_proto::op::Query::query(
            Name::from_ascii(name).unwrap(),
            hickory_proto::rr::RecordType::A,
        ));
        m.to_vec().unwrap()
    }

    /// The answer's first TTL and address.
    async fn ask(engine: &Arc<Engine>, name: &str) -> (u32, IpAddr) {
        let q = query(name);
        let reply = match engine.start(&q, IpAddr::from([10, 0, 0, 9]), true) {
            Step::Done(Some(r)) => r,
            Step::Done(None) => panic!("no answer"),
            Step::Upstream(p) => engine.clone().finish(q, p).await,
        };
        let m = Message::from_vec(&reply).unwrap();
        let r = &m.answers[0];
        match &r.data {
            RData::A(a) => (r.ttl, IpAddr::V4(a.0)),
            other => panic!("not an A record: {other:?}"),
        }
    }

    /// A cached name skips the index once it is known unlisted; a reload (a new index,
    /// which lists it) is not fooled by that memo.
    #[tokio::test]
    async fn a_reload_that_lists_a_cached_name_blocks_it() {
        let (addr, _asked, _server) = upstream(300).await;
        let clock = Clock::manual(jiff::tz::TimeZone::UTC, jiff::Timestamp::UNIX_EPOCH);
        let engine = engine(addr, clock);
        for _ in 0..3 {
            assert_eq!(
                ask(&engine, "site.test").await.1,
                IpAddr::from([10, 5, 0, 1])
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("adult");
        std::fs::write(&list, "site.test\n").unwrap();
        let index = Index::build(
            vec![crate::filter::ut1::Ut1Category {
                name: "adult".into(),
                aliases: vec![],
                kind: crate::filter::ut1::Kind::Black,
                titles: Default::default(),
                descriptions: Default::default(),
                domains: None,
            }],
            vec![crate::filter::index::ListSource {
                category: "adult".into(),
                path: list,
            }],
        )
        .unwrap();
        let policies = Policies::compile(&builtin(), &index, BlockMode::Nxdomain).unwrap();
        engine.swap_filter(Filter {
            index: Arc::new(index),
            policies,
        });
        let q = query("site.test");
        let Step::Done(Some(reply)) = engine.start(&q, IpAddr::from([10, 0, 0, 9]), true) else {
            panic!("a blocked name is answered at once");
        };
        assert_eq!(reply[3] & 0x0f, wire::RCODE_NXDOMAIN);
    }

    /// A name asked for again near the end of its TTL is refreshed before it expires:
    /// after the upstream is gone, the answer is still fresh, not stale. Time moves on
    /// the engine's clock, not by sleeping.
    #[tokio::test]
    async fn popular_names_are_refreshed_before_they_expire() {
        let (addr, mut asked, server) = upstream(11).await;
        let clock = Clock::manual(jiff::tz::TimeZone::UTC, jiff::Timestamp::UNIX_EPOCH);
        let engine = engine(addr, clock.clone());
        assert_eq!(
            ask(&engine, "popular.test").await.1,
            IpAddr::from([10, 5, 0, 1])
        );
        assert_eq!(asked.recv().await.unwrap(), "popular.test.");
        assert_eq!(
            ask(&engine, "popular.test").await.1,
            IpAddr::from([10, 5, 0, 1])
        );
        // Under 10% of the TTL left: this hit starts a refresh.
        clock.advance(Duration::from_millis(10_200));
        let near_expiry = ask(&engine, "popular.test").await;
        assert_eq!(near_expiry.0, 1, "{near_expiry:?}");
        // The refresh reached the upstream (a bound, not an ordering: without a
        // refresh this fails after 5 s); its answer is stored once the engine's fetch
        // is done, which the in-flight map shows.
        let refresh = tokio::time::timeout(Duration::from_secs(5), asked.recv()).await;
        assert_eq!(refresh.expect("a refresh").unwrap(), "popular.test.");
        while !engine
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
        {
            tokio::task::yield_now().await;
        }
        server.abort();
        clock.advance(Duration::from_millis(2000));
        let (ttl, addr) = ask(&engine, "popular.test").await;
        assert_eq!(addr, IpAddr::from([10, 5, 0, 1]));
        assert!(
            (8..=11).contains(&ttl),
            "refreshed, not stale (30 s) nor expired: TTL {ttl}"
        );
    }
}
