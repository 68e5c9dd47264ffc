//! A receiving thread's own table of the answers it served, in front of the shared
//! cache, so a batch can announce the memory it is about to read.
//!
//! Why: with the filter's verdict memoised in the entry (`Listing`), what is left of a
//! cached answer's own cost is waiting on memory: the shared cache's control bytes,
//! then its slot, then the entry, each found only once the one before arrived, for
//! each query in turn. This table is a plain array indexed by the hash of the
//! question's bytes, owned by one thread (no lock), so the thread can compute every
//! query's slot as soon as the batch arrives and prefetch the slots, then the entries
//! they point to, before it answers the first query: the waits overlap instead of
//! adding up.
//!
//! It never decides anything the shared cache would not: an entry is taken from here
//! only while the shared cache still holds it (the cache marks an entry it replaces or
//! drops as superseded) and only for the same question, compared byte for byte (letters
//! of the name without case). Everything else falls through to the shared cache.

use std::sync::Arc;

use super::cache::Entry;
use super::wire::HEADER;

/// Slots per thread: room for the names a school asks most (a few thousand) with few
/// of them sharing a slot, at 8 bytes each.
const SLOTS: usize = 16_384;

/// One thread's table.
pub struct Front {
    slots: Box<[Option<Arc<Entry>>]>,
}

impl Default for Front {
    fn default() -> Self {
        Front {
            slots: vec![None; SLOTS].into_boxed_slice(),
        }
    }
}

/// The question of `query` (name, type and class, as on the wire), if it is a plain
/// one: uncompressed labels, whole.
pub(crate) fn question(query: &[u8]) -> Option<&[u8]> {
    query.get(HEADER..super::cache::question_end(query)?)
}

/// The hash of a question: the name's letters without case, type and class as they
/// are (a type's bytes may look like letters).
pub(crate) fn question_hash(question: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let (name, rest) = question.split_at(question.len().saturating_sub(4));
    let mut h: u64 = 0;
    for chunk in name.chunks(8) {
        let mut word = [0u8; 8];
        for (w, b) in word.iter_mut().zip(chunk) {
            *w = b.to_ascii_lowercase();
        }
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    tail[..rest.len()].copy_from_slice(rest);
    h = (h.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h ^ (h >> 29)
}

/// Whether two questions are the same: names without case, type and class exactly.
pub(crate) fn same_question(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.len() >= 4 && {
        let (an, at) = a.split_at(a.len() - 4);
        let (bn, bt) = b.split_at(b.len() - 4);
        at == bt && an.eq_ignore_ascii_case(bn)
    }
}

impl Front {
    fn index(hash: u64) -> usize {
        (hash as usize) & (SLOTS - 1)
    }

    /// Starts bringing in the slot of `hash`.
    pub fn prefetch_slot(&self, hash: u64) {
        cartable_sys::prefetch(&self.slots[Self::index(hash)]);
    }

    /// The two slots a question may be in: its own, then its pair's (the same cache
    /// line), so two names a school asks that share a slot do not evict each other.
    fn ways(hash: u64) -> [usize; 2] {
        let i = Self::index(hash);
        [i, i ^ 1]
    }

    /// Starts bringing in the entries the slots of `hash` point to; says whether
    /// there were any (none: the question was not answered from the cache lately).
    pub fn prefetch_entry(&self, hash: u64) -> bool {
        let mut any = false;
        for i in Self::ways(hash) {
            if let Some(entry) = &self.slots[i] {
                cartable_sys::prefetch(&**entry);
                any = true;
            }
        }
        any
    }

    /// The entry for `question`, while the shared cache still holds it.
    pub fn get(&self, hash: u64, question: &[u8]) -> Option<&Arc<Entry>> {
        Self::ways(hash).into_iter().find_map(|i| {
            self.slots[i]
                .as_ref()
                .filter(|e| !e.is_superseded() && same_question(e.question(), question))
        })
    }

    /// Remembers the entry the shared cache gave for `hash`'s question, in its own
    /// slot; what was there moves to the pair's slot, unless the cache let it go.
    pub fn put(&mut self, hash: u64, entry: Arc<Entry>) {
        let [own, pair] = Self::ways(hash);
        let previous = self.slots[own].replace(entry);
        if let Some(previous) = previous.filter(|e| !e.is_superseded()) {
            self.slots[pair] = Some(previous);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str, qtype: u16) -> Vec<u8> {
        let mut b = vec![0u8; HEADER];
        for label in name.split('.') {
            b.push(label.len() as u8);
            b.extend_from_slice(label.as_bytes());
        }
        b.push(0);
        b.extend_from_slice(&qtype.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        b
    }

    #[test]
    fn questions_match_without_case_but_types_exactly() {
        let a = q("WWW.Example.test", 65);
        let b = q("www.example.TEST", 65);
        let (qa, qb) = (question(&a).unwrap(), question(&b).unwrap());
        assert!(same_question(qa, qb));
        assert_eq!(question_hash(qa), question_hash(qb));
        // Type 65 is 0x0041, 'A'; type 97 is 'a': never the same question.
        let c = q("www.example.test", 97);
        assert!(!same_question(qa, question(&c).unwrap()));
        assert_ne!(question_hash(qa), question_hash(question(&c).unwrap()));
        assert!(!same_question(
            qa,
            question(&q("www.example.tesu", 65)).unwrap()
        ));
    }

    /// An answer for `name` with one A record.
    fn answer(name: &str, last_octet: u8) -> Vec<u8> {
        let mut b = q(name, 1);
        b[2] = 0x81; // QR, RD
        b[3] = 0x80; // RA
        b[5] = 1; // one question
        b[7] = 1; // one answer
        b.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 10, 0, 0]);
        b.push(last_octet);
        b
    }

    /// The front never serves what the shared cache replaced or dropped (a refreshed
    /// answer, an entry evicted), nor another question that shares its slot.
    #[test]
    fn what_the_cache_replaced_is_not_served_from_the_front() {
        use super::super::cache::{Cache, KeyRef};
        let now = std::time::Instant::now();
        let cache = Cache::new(1000, std::time::Duration::from_secs(60));
        let key = KeyRef {
            name: "a.test",
            qtype: 1,
            qclass: 1,
        };
        let old = Arc::new(Entry::from_response(&answer("a.test", 1), now).unwrap());
        cache.insert(key.to_owned(), old.clone(), now);
        let query = q("A.Test", 1);
        let asked = question(&query).unwrap();
        let hash = question_hash(asked);
        let mut front = Front::default();
        front.put(hash, cache.get(key, now).unwrap());
        assert!(Arc::ptr_eq(front.get(hash, asked).unwrap(), &old));
        let other = q("b.test", 1);
        assert!(
            front.get(hash, question(&other).unwrap()).is_none(),
            "not its question"
        );
        // Another question put in the same slot leaves this one in the pair's slot.
        let other_entry = Arc::new(Entry::from_response(&answer("b.test", 3), now).unwrap());
        front.put(hash, other_entry.clone());
        assert!(Arc::ptr_eq(front.get(hash, asked).unwrap(), &old));
        assert!(Arc::ptr_eq(
            front.get(hash, question(&other).unwrap()).unwrap(),
            &other_entry
        ));
        let new = Arc::new(Entry::from_response(&answer("a.test", 2), now).unwrap());
        cache.insert(key.to_owned(), new, now);
        assert!(front.get(hash, asked).is_none(), "replaced in the cache");
    }

    #[test]
    fn only_plain_whole_questions_are_read() {
        let mut compressed = vec![0u8; HEADER];
        compressed.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(question(&compressed), None);
        let whole = q("a.test", 1);
        assert_eq!(question(&whole[..whole.len() - 1]), None, "cut short");
        assert_eq!(question(&whole), Some(&whole[HEADER..]));
    }
}
