//! Upstream answers kept in wire format, so a hit is served by copying bytes and
//! patching the ID, the question's case and each TTL: no parsing, no allocation but
//! the reply itself.
//!
//! Expired answers are kept (up to `max_stale`) and served when the upstream cannot be
//! reached, with a short TTL (RFC 8767): a school whose uplink is down keeps resolving
//! every name it used recently.

use hashbrown::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::inline::InlineBytes;
use super::wire::{self, Query, RCODE_NOERROR, RCODE_NXDOMAIN, TYPE_OPT, TYPE_SOA};

/// TTL given to a stale answer (RFC 8767 suggests 30 s).
pub(crate) const STALE_TTL: u32 = 30;
/// Longest time an answer is trusted, whatever its TTL says.
const MAX_TTL: u32 = 86_400;
/// Negative answers without an SOA are kept this long.
const DEFAULT_NEGATIVE_TTL: u32 = 300;
const SHARDS: usize = 64;

/// Hashes like `KeyRef` (its name as a `&str`, then the type and class).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// Lower-cased name.
    pub name: KeyName,
    pub qtype: u16,
    pub qclass: u16,
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_key_ref().hash(state);
    }
}

impl Key {
    pub fn as_key_ref(&self) -> KeyRef<'_> {
        KeyRef {
            name: &self.name,
            qtype: self.qtype,
            qclass: self.qclass,
        }
    }
}

/// Names up to this long live inside the key (most names do).
const INLINE_NAME: usize = 30;
/// Responses (with their TTL offsets) up to this long live inside the entry: a
/// typical answer of one to three records, so the `Arc`'s one allocation is 256 bytes.
const INLINE_DATA: usize = 198;

/// A cached name, kept inside the map's slot when short: a lookup confirms its match
/// on bytes the slot already brought into the processor's cache.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyName(InlineBytes<INLINE_NAME>);

impl KeyName {
    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl From<&str> for KeyName {
    fn from(name: &str) -> KeyName {
        KeyName(InlineBytes::new(name.as_bytes()))
    }
}

impl From<String> for KeyName {
    fn from(name: String) -> KeyName {
        KeyName::from(name.as_str())
    }
}

impl std::ops::Deref for KeyName {
    type Target = str;
    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

impl std::fmt::Display for KeyName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl std::fmt::Debug for KeyName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

/// A key borrowed from a query, to look up without allocating.
#[derive(Debug, Clone, Copy, Hash)]
pub struct KeyRef<'a> {
    pub name: &'a str,
    pub qtype: u16,
    pub qclass: u16,
}

impl<'a> KeyRef<'a> {
    pub fn of(q: &'a Query) -> KeyRef<'a> {
        KeyRef {
            name: &q.name,
            qtype: q.qtype,
            qclass: q.qclass,
        }
    }

    pub fn to_owned(self) -> Key {
        Key {
            name: self.name.into(),
            qtype: self.qtype,
            qclass: self.qclass,
        }
    }
}

impl hashbrown::Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        key.name.as_bytes() == self.name.as_bytes()
            && key.qtype == self.qtype
            && key.qclass == self.qclass
    }
}

/// One cached response. What a hit reads comes first, then the response itself,
/// in the same allocation when it is short (see [`InlineBytes`]).
#[derive(Debug)]
#[repr(C)]
pub struct Entry {
    stored: Instant,
    /// How long it is fresh.
    ttl: u32,
    /// End of the question in the response.
    question_end: u16,
    /// Length of the response in `data`.
    wire_len: u16,
    /// The generation of the filter index known to list none of this name's
    /// suffixes (0: not known); see `filter::decide::Listing`.
    unlisted_in: AtomicU64,
    pub hits: AtomicU32,
    /// A refresh is under way (prefetch or stale refresh).
    pub refreshing: AtomicBool,
    /// The shared cache replaced or dropped it: a thread's front table lets it go.
    superseded: AtomicBool,
    /// The upstream response without its OPT record (ID and question as received),
    /// then the offset of each record's TTL, two bytes each, big-endian; the TTL as
    /// received is read from the response at that offset.
    data: InlineBytes<INLINE_DATA>,
}

/// Whether an entry may be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Fresh { remaining: u32, ttl: u32 },
    Stale,
}

impl Entry {
    /// Makes an entry of an upstream response; `None` when it must not be cached
    /// (SERVFAIL and other errors, truncated answers, unparseable records).
    pub fn from_response(response: &[u8], now: Instant) -> Option<Entry> {
        if response.len() < wire::HEADER || response[2] & 0x02 != 0 {
            return None;
        }
        let rcode = response[3] & 0x0f;
        if rcode != RCODE_NOERROR && rcode != RCODE_NXDOMAIN {
            return None;
        }
        let mut records = wire::records(response).ok()?;
        let mut bytes = response.to_vec();
        // Drop a trailing OPT: the reply gets one of ours when the client sent one.
        if let Some(last) = records.last()
            && last.rtype == TYPE_OPT
        {
            let start = start_of_last_record(&records, response)?;
            bytes.truncate(start);
            let ar = u16::from_be_bytes([bytes[10], bytes[11]]).saturating_sub(1);
            bytes[10..12].copy_from_slice(&ar.to_be_bytes());
            records.pop();
        }
        if records.iter().any(|r| r.rtype == TYPE_OPT) {
            return None;
        }
        let answers = usize::from(u16::from_be_bytes([bytes[6], bytes[7]]));
        let negative = rcode == RCODE_NXDOMAIN || answers == 0;
        let ttl = if negative {
            records
                .iter()
                .find(|r| r.rtype == TYPE_SOA)
                .map(|soa| soa.ttl.min(soa_minimum(&bytes, soa).unwrap_or(soa.ttl)))
                .unwrap_or(DEFAULT_NEGATIVE_TTL)
        } else {
            records
                .iter()
                .take(answers)
                .map(|r| r.ttl)
                .min()
                .unwrap_or(0)
        }
        .min(MAX_TTL);
        let question_end = u16::try_from(question_end(&bytes)?).ok()?;
        let wire_len = u16::try_from(bytes.len()).ok()?;
        for r in &records {
            bytes.extend_from_slice(&u16::try_from(r.ttl_at).ok()?.to_be_bytes());
        }
        Some(Entry {
            stored: now,
            ttl,
            question_end,
            wire_len,
            unlisted_in: AtomicU64::new(0),
            hits: AtomicU32::new(0),
            refreshing: AtomicBool::new(false),
            superseded: AtomicBool::new(false),
            data: InlineBytes::new(&bytes),
        })
    }

    pub fn freshness(&self, now: Instant) -> Freshness {
        let age = now.saturating_duration_since(self.stored).as_secs();
        match u32::try_from(age) {
            Ok(age) if age < self.ttl => Freshness::Fresh {
                remaining: self.ttl - age,
                ttl: self.ttl,
            },
            _ => Freshness::Stale,
        }
    }

    /// How long since it expired (zero while fresh).
    pub fn expired_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.stored + Duration::from_secs(u64::from(self.ttl)))
    }

    /// The reply to `query` from this entry; stale answers get `STALE_TTL`. The caller
    /// truncates it for UDP.
    pub fn reply(&self, query: &[u8], q: &Query, now: Instant) -> Vec<u8> {
        let age = now
            .saturating_duration_since(self.stored)
            .as_secs()
            .min(u64::from(u32::MAX)) as u32;
        let stale = matches!(self.freshness(now), Freshness::Stale);
        let (response, ttl_offsets) = self.data.as_bytes().split_at(usize::from(self.wire_len));
        // Room for our OPT record: one allocation per reply, no regrowth.
        let mut out = Vec::with_capacity(response.len() + wire::OPT_LEN);
        out.extend_from_slice(response);
        out[0..2].copy_from_slice(&q.id.to_be_bytes());
        out[2] = (out[2] & !0x01) | u8::from(q.rd);
        // Same name, so the same length: echo the client's case (0x20 encoding).
        let question_end = usize::from(self.question_end);
        if question_end == q.question_end {
            out[wire::HEADER..question_end].copy_from_slice(&query[wire::HEADER..question_end]);
        }
        for at in ttl_offsets.chunks_exact(2) {
            let at = usize::from(u16::from_be_bytes([at[0], at[1]]));
            let field = &mut out[at..at + 4];
            let new = if stale {
                STALE_TTL
            } else {
                let ttl = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
                ttl.min(self.ttl).saturating_sub(age)
            };
            field.copy_from_slice(&new.to_be_bytes());
        }
        wire::add_opt(&mut out, q);
        out
    }

    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// Whether the index of `generation` is known to list none of this name's suffixes.
    pub fn unlisted_in(&self, generation: u64) -> bool {
        self.unlisted_in.load(Ordering::Relaxed) == generation
    }

    /// Notes that the index of `generation` lists none of this name's suffixes.
    pub fn set_unlisted_in(&self, generation: u64) {
        self.unlisted_in.store(generation, Ordering::Relaxed);
    }

    /// Counts a hit; returns the hits before. The count stops at a few: past that it
    /// is only read, so two threads serving the same popular answer do not bounce
    /// its cache line at every query (prefetch needs "asked again", eviction "least
    /// used", and neither needs more).
    pub fn hit(&self) -> u32 {
        const ENOUGH: u32 = 64;
        let hits = self.hits.load(Ordering::Relaxed);
        if hits < ENOUGH {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        hits
    }

    /// The question (name, type, class) as the upstream answered it.
    pub fn question(&self) -> &[u8] {
        self.data
            .as_bytes()
            .get(wire::HEADER..usize::from(self.question_end))
            .unwrap_or_default()
    }

    /// Whether the shared cache replaced or dropped it.
    pub fn is_superseded(&self) -> bool {
        self.superseded.load(Ordering::Relaxed)
    }

    fn supersede(&self) {
        self.superseded.store(true, Ordering::Relaxed);
    }

    /// The response bytes as stored (for persistence).
    pub fn wire(&self) -> &[u8] {
        &self.data.as_bytes()[..usize::from(self.wire_len)]
    }

    /// Seconds since it was stored.
    pub fn age(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.stored).as_secs()
    }
}

/// Where the first question of `b` (uncompressed labels) ends, type and class
/// included; not checked against `b`'s length.
pub(super) fn question_end(b: &[u8]) -> Option<usize> {
    let mut at = wire::HEADER;
    loop {
        let len = usize::from(*b.get(at)?);
        if len == 0 {
            return Some(at + 5);
        }
        if len > 63 {
            return None;
        }
        at += 1 + len;
    }
}

fn start_of_last_record(records: &[wire::RecordAt], b: &[u8]) -> Option<usize> {
    // A record starts where the previous ends (or after the question).
    match records.len() {
        0 => None,
        1 => question_end(b),
        n => Some(records[n - 2].next),
    }
}

/// The SOA's MINIMUM field: the last 4 bytes of its RDATA.
fn soa_minimum(b: &[u8], soa: &wire::RecordAt) -> Option<u32> {
    let m = b.get(soa.next - 4..soa.next)?;
    Some(u32::from_be_bytes([m[0], m[1], m[2], m[3]]))
}

/// The cache: sharded maps, bounded in entries.
pub struct Cache {
    shards: Vec<Mutex<HashMap<Key, Arc<Entry>>>>,
    per_shard: usize,
    max_stale: Duration,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Cache {
    pub fn new(max_entries: usize, max_stale: Duration) -> Cache {
        Cache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: (max_entries / SHARDS).max(16),
            max_stale,
            hasher: hashbrown::DefaultHashBuilder::default(),
        }
    }

    fn shard(&self, key: KeyRef<'_>) -> &Mutex<HashMap<Key, Arc<Entry>>> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    /// The entry for `key`, fresh or stale within `max_stale`.
    pub fn get(&self, key: KeyRef<'_>, now: Instant) -> Option<Arc<Entry>> {
        let shard = self.shard(key).lock().ok()?;
        let e = shard.get(&key)?;
        self.usable(e, now).then(|| e.clone())
    }

    /// Whether `entry` may still be served (fresh, or stale within `max_stale`).
    pub fn usable(&self, entry: &Entry, now: Instant) -> bool {
        entry.expired_for(now) <= self.max_stale
    }

    pub fn insert(&self, key: Key, entry: Arc<Entry>, now: Instant) {
        let Ok(mut shard) = self.shard(key.as_key_ref()).lock() else {
            return;
        };
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            let max_stale = self.max_stale;
            shard.retain(|_, e| {
                let keep = e.expired_for(now) <= max_stale;
                if !keep {
                    e.supersede();
                }
                keep
            });
            if shard.len() >= self.per_shard {
                // Still full of live answers: drop the least used one of a sample.
                let victim = shard
                    .iter()
                    .take(32)
                    .min_by_key(|(_, e)| e.hits.load(Ordering::Relaxed))
                    .map(|(k, _)| k.clone());
                if let Some(gone) = victim.and_then(|v| shard.remove(&v)) {
                    gone.supersede();
                }
            }
        }
        if let Some(old) = shard.insert(key, entry) {
            old.supersede();
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry, for saving to the store.
    pub fn entries(&self) -> Vec<(Key, Arc<Entry>)> {
        let mut out = Vec::new();
        for s in &self.shards {
            if let Ok(m) = s.lock() {
                out.extend(m.iter().map(|(k, e)| (k.clone(), e.clone())));
            }
        }
        out
    }

    /// Puts back an entry saved `age` seconds ago.
    pub fn restore(&self, key: Key, response: &[u8], age: Duration, now: Instant) -> bool {
        let stored = now.checked_sub(age).unwrap_or(now);
        match Entry::from_response(response, stored) {
            Some(e) if e.expired_for(now) <= self.max_stale => {
                self.insert(key, Arc::new(e), now);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    fn query(name: &str, edns: bool) -> Vec<u8> {
        let mut m = Message::new(0xBEEF, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(hickory_proto::op::Query::query(
            Name::from_ascii(name).unwrap(),
            RecordType::A,
        ));
        if edns {
            m.set_edns(Edns::new());
        }
        m.to_vec().unwrap()
    }

    fn upstream_answer(name: &str, ttls: &[u32]) -> Vec<u8> {
        let mut m = Message::new(7, MessageType::Response, OpCode::Query);
        let n = Name::from_ascii(name).unwrap();
        m.add_query(hickory_proto::op::Query::query(n.clone(), RecordType::A));
        for (i, ttl) in ttls.iter().enumerate() {
            m.add_answer(Record::from_rdata(
                n.clone(),
                *ttl,
                RData::A(A::new(10, 0, 0, i as u8)),
            ));
        }
        m.set_edns(Edns::new());
        m.to_vec().unwrap()
    }

    #[test]
    fn an_entry_and_its_counts_fill_256_bytes() {
        // The `Arc`'s two counts, then the entry: four cache lines, one allocation.
        assert_eq!(16 + std::mem::size_of::<Entry>(), 256);
    }

    #[test]
    fn a_hit_patches_id_case_and_ttls() {
        let t0 = Instant::now();
        let e =
            Entry::from_response(&upstream_answer("www.example.test.", &[300, 120]), t0).unwrap();
        assert_eq!(e.ttl(), 120);
        let qb = query("WWW.Example.TEST.", true);
        let q = wire::parse_query(&qb).unwrap();
        let reply = e.reply(&qb, &q, t0 + Duration::from_secs(20));
        let m = Message::from_vec(&reply).unwrap();
        assert_eq!(m.metadata.id, 0xBEEF);
        assert!(m.metadata.recursion_desired);
        assert_eq!(m.queries[0].name().to_ascii(), "WWW.Example.TEST.");
        let ttls: Vec<u32> = m.answers.iter().map(|r| r.ttl).collect();
        assert_eq!(
            ttls,
            [100, 100],
            "never above the entry's TTL, minus the age"
        );
        assert!(m.edns.is_some());
        let plain = query("www.example.test.", false);
        let pq = wire::parse_query(&plain).unwrap();
        assert!(
            Message::from_vec(&e.reply(&plain, &pq, t0))
                .unwrap()
                .edns
                .is_none()
        );
    }

    /// A long answer lives on the heap, a short one inside the entry; both are
    /// served the same, each record's TTL read from the stored response.
    #[test]
    fn long_and_short_answers_are_served_alike() {
        let t0 = Instant::now();
        let qb = query("www.example.test.", false);
        let q = wire::parse_query(&qb).unwrap();
        for records in [1, 2, 12, 40] {
            let ttls: Vec<u32> = (0..records).map(|i| 200 + i).collect();
            let response = upstream_answer("www.example.test.", &ttls);
            let e = Entry::from_response(&response, t0).unwrap();
            assert_eq!(
                matches!(e.data, InlineBytes::Inline { .. }),
                response.len() + 2 * records as usize <= INLINE_DATA,
                "{records} records"
            );
            let m = Message::from_vec(&e.reply(&qb, &q, t0 + Duration::from_secs(50))).unwrap();
            let got: Vec<u32> = m.answers.iter().map(|r| r.ttl).collect();
            assert_eq!(got, vec![150; records as usize], "the smallest TTL, aged");
            let addresses = m.answers.iter().map(|r| r.data.to_string());
            let expected = (0..records).map(|i| format!("10.0.0.{i}"));
            assert!(addresses.eq(expected));
        }
    }

    #[test]
    fn expired_entries_are_served_stale_with_a_short_ttl() {
        let t0 = Instant::now();
        let cache = Cache::new(1000, Duration::from_secs(3600));
        let key = Key {
            name: "a.test".into(),
            qtype: 1,
            qclass: 1,
        };
        cache.insert(
            key.clone(),
            Arc::new(Entry::from_response(&upstream_answer("a.test.", &[60]), t0).unwrap()),
            t0,
        );
        let later = t0 + Duration::from_secs(600);
        let borrowed = KeyRef {
            name: "a.test",
            qtype: 1,
            qclass: 1,
        };
        let e = cache
            .get(borrowed, later)
            .expect("kept while within max_stale");
        assert_eq!(e.freshness(later), Freshness::Stale);
        let qb = query("a.test.", false);
        let q = wire::parse_query(&qb).unwrap();
        let m = Message::from_vec(&e.reply(&qb, &q, later)).unwrap();
        assert_eq!(m.answers[0].ttl, STALE_TTL);
        assert!(
            cache
                .get(borrowed, t0 + Duration::from_secs(60 + 3601))
                .is_none()
        );
    }

    #[test]
    fn negative_answers_use_the_soa_minimum_and_errors_are_not_cached() {
        let mut m = Message::new(7, MessageType::Response, OpCode::Query);
        m.metadata.response_code = ResponseCode::NXDomain;
        let n = Name::from_ascii("nope.test.").unwrap();
        m.add_query(hickory_proto::op::Query::query(n, RecordType::A));
        let soa = SOA::new(
            Name::from_ascii("test.").unwrap(),
            Name::from_ascii("h.test.").unwrap(),
            1,
            2,
            3,
            4,
            45,
        );
        m.add_authority(Record::from_rdata(
            Name::from_ascii("test.").unwrap(),
            900,
            RData::SOA(soa),
        ));
        let e = Entry::from_response(&m.to_vec().unwrap(), Instant::now()).unwrap();
        assert_eq!(e.ttl(), 45);
        m.metadata.response_code = ResponseCode::ServFail;
        assert!(Entry::from_response(&m.to_vec().unwrap(), Instant::now()).is_none());
        assert!(Entry::from_response(&[1, 2, 3], Instant::now()).is_none());
    }

    /// Short names live in the key, long ones on the heap; both hash and compare as
    /// the borrowed key does, so lookups find them.
    #[test]
    fn short_and_long_names_are_found_alike() {
        let t0 = Instant::now();
        let cache = Cache::new(1000, Duration::from_secs(60));
        let long = format!("{}.example.test", "a".repeat(40));
        for name in ["a.test", "exactly-thirty-bytes-long.test", long.as_str()] {
            let key = Key {
                name: name.into(),
                qtype: 1,
                qclass: 1,
            };
            assert_eq!(&*key.name, name);
            let answer = upstream_answer(&format!("{name}."), &[600]);
            cache.insert(
                key,
                Arc::new(Entry::from_response(&answer, t0).unwrap()),
                t0,
            );
            let found = KeyRef {
                name,
                qtype: 1,
                qclass: 1,
            };
            assert!(cache.get(found, t0).is_some(), "{name}");
            assert!(cache.get(KeyRef { qtype: 28, ..found }, t0).is_none());
        }
        assert!(matches!(
            KeyName::from("exactly-thirty-bytes-long.test").0,
            InlineBytes::Inline { .. }
        ));
        assert!(matches!(
            KeyName::from(long.as_str()).0,
            InlineBytes::Heap(_)
        ));
    }

    #[test]
    fn the_cache_stays_within_its_bound() {
        let t0 = Instant::now();
        let cache = Cache::new(SHARDS * 16, Duration::from_secs(60));
        let answer = upstream_answer("x.test.", &[600]);
        for i in 0..5000 {
            let key = Key {
                name: format!("n{i}.test").into(),
                qtype: 1,
                qclass: 1,
            };
            cache.insert(
                key,
                Arc::new(Entry::from_response(&answer, t0).unwrap()),
                t0,
            );
        }
        assert!(cache.len() <= SHARDS * 16, "{}", cache.len());
    }
}
