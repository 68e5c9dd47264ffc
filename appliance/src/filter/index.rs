//! The compiled block lists: every listed name in one immutable hash table.
//!
//! Each name is kept as a 64-bit hash (FNV-1a, then a 64-bit finalizer) in an
//! open-addressing table kept in hash order (see `Table`), beside the id of its
//! *category set* (a bitmask over at most 128 categories, shared by every name listed
//! in the same categories). A lookup hashes the name and each of its parents, so a listed domain
//! covers its subdomains; a few probes each, most often inside one cache line.
//! Two different names share a hash with a chance of about n / 2^64 per lookup
//! (5 million names: one false match in some 3.7 * 10^12 lookups of unlisted names).
//!
//! Building needs no order: the files are cut into chunks at line boundaries, hashed
//! on every core, sorted and deduplicated per file (a file's count of names is the
//! count `sort -u` gives), merged across files (a name in several files gets the
//! union of their categories), and inserted. The names themselves are not kept: the
//! explanation of a verdict reads the files again ([`Index::find_line`]).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use super::FilterError;
use super::list::{self, Line, Skipped};
use super::name::{suffixes, text_byte};
use super::ut1::{Kind, Ut1Category};

/// At most this many categories, so a category set fits in a `u128`.
pub const MAX_CATEGORIES: usize = 128;

/// A file with more bad lines than this share is refused as garbage.
const GARBAGE_SHARE: f64 = 0.5;

/// A set of category ids.
pub type CategorySet = u128;

/// One category of the index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Category {
    pub id: u8,
    pub name: String,
    pub aliases: Vec<String>,
    pub kind: Kind,
    pub titles: std::collections::BTreeMap<String, String>,
    pub descriptions: std::collections::BTreeMap<String, String>,
    /// Names and addresses listed in it.
    pub entries: u64,
}

/// A list file to compile, and the category it fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListSource {
    pub category: String,
    pub path: PathBuf,
}

/// What the build made of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceReport {
    pub category: String,
    pub path: PathBuf,
    /// Distinct names.
    pub names: u64,
    pub addresses: u64,
    pub skipped: Skipped,
}

/// One of the table's arrays: a vector, except that its elements may start inside
/// their allocation, at a 2 MiB boundary (see [`Slots::move_to_huge_pages`]).
struct Slots<T> {
    buf: Vec<T>,
    start: usize,
    len: usize,
}

impl<T: Copy + Default> Slots<T> {
    #[cfg(test)]
    fn push(&mut self, x: T) {
        self.resize(self.len + 1, x);
    }

    fn resize(&mut self, n: usize, x: T) {
        if self.buf.len() < self.start + n {
            self.buf.resize(self.start + n, x);
        }
        let from = self.start + self.len.min(n);
        self.buf[from..self.start + n].fill(x);
        self.len = n;
    }

    /// Moves the elements to a new allocation (of their length, not the old one's
    /// capacity) where they start on a 2 MiB boundary
    /// and fill whole 2 MiB pages (the last one padded), and asks for those pages to
    /// be huge ones. Every lookup reads the arrays at random, a few places per query:
    /// where they sat in 4 KiB pages (the ends of the keys, which an allocation's
    /// address left outside any whole 2 MiB page, and most of the smaller category
    /// array), nearly every probe, and the prefetch announcing it, also missed the TLB
    /// and waited on a page walk.
    fn move_to_huge_pages(&mut self) {
        const HUGE: usize = 2 << 20;
        let size = std::mem::size_of::<T>().max(1);
        let bytes = (self.len * size).next_multiple_of(HUGE);
        if bytes == 0 {
            return;
        }
        // Zeroed and untouched (a fresh mapping) until the copy: the pages are huge
        // from their first touch once advised.
        let mut buf = vec![T::default(); (bytes + HUGE) / size];
        let start = (buf.as_ptr() as usize).next_multiple_of(HUGE) - buf.as_ptr() as usize;
        let start = start / size;
        let end = (start + bytes / size).min(buf.len());
        cartable_sys::prefer_huge_pages(&buf[start..end]);
        buf[start..start + self.len].copy_from_slice(self);
        *self = Slots {
            buf,
            start,
            len: self.len,
        };
    }
}

impl<T> From<Vec<T>> for Slots<T> {
    fn from(buf: Vec<T>) -> Self {
        let len = buf.len();
        Slots { buf, start: 0, len }
    }
}

impl<T> std::ops::Deref for Slots<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.buf[self.start..self.start + self.len]
    }
}

impl<T> std::ops::DerefMut for Slots<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Slots<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The names: hashes in an open-addressing table, and their category sets.
///
/// A hash's home slot grows with the hash (`hash * home >> 64`) and the hashes are
/// inserted in ascending order with linear probing and no wrap-around (a run past the
/// last home slot spills into slots appended at the end), so **the keys stand in
/// ascending order along the array**: a lookup stops at the first empty slot or the
/// first larger key, and a 90 % full table still costs a few probes, present or not.
struct Table {
    /// 0 marks an empty slot (a hash is never 0).
    keys: Slots<u64>,
    /// Index into `sets` for each slot.
    set_of: Slots<u16>,
    sets: Vec<CategorySet>,
    /// Home slots (`keys` may be longer: the spill-over).
    home: usize,
    len: u64,
}

impl Table {
    /// The reference layout, one insertion at a time (tests check `spread` against it).
    #[cfg(test)]
    fn with_capacity(names: usize) -> Table {
        let home = (names + names / 9 + 16).max(16);
        Table {
            keys: Slots::from(vec![0; home]),
            set_of: Slots::from(vec![0; home]),
            sets: Vec::new(),
            home,
            len: 0,
        }
    }

    fn slot(&self, hash: u64) -> usize {
        ((u128::from(hash) * self.home as u128) >> 64) as usize
    }

    /// Inserts a hash larger than every hash inserted before.
    #[cfg(test)]
    fn push_ascending(&mut self, hash: u64, set: u16) {
        let mut i = self.slot(hash);
        while self.keys.get(i).is_some_and(|&k| k != 0) {
            i += 1;
        }
        if i == self.keys.len() {
            self.keys.push(0);
            self.set_of.push(0);
        }
        self.keys[i] = hash;
        self.set_of[i] = set;
        self.len += 1;
    }

    fn get(&self, hash: u64) -> Option<CategorySet> {
        let mut i = self.slot(hash);
        while let Some(&k) = self.keys.get(i) {
            if k == hash {
                return Some(self.sets[usize::from(self.set_of[i])]);
            }
            if k == 0 || k > hash {
                return None;
            }
            i += 1;
        }
        None
    }

    /// The layout's promise, for a table read back from disk.
    fn is_ordered(&self) -> bool {
        let mut last = 0u64;
        for (i, &k) in self.keys.iter().enumerate() {
            if k == 0 {
                continue;
            }
            if k <= last || self.slot(k) > i {
                return false;
            }
            last = k;
        }
        true
    }
}

/// The hash a name is kept under; never 0.
pub fn name_hash(name: &[u8]) -> u64 {
    let mut h = NameHasher::new();
    let mut words = name.chunks_exact(8);
    for w in &mut words {
        h.mix_word(u64::from_le_bytes([
            w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
        ]));
    }
    words.remainder().iter().for_each(|&b| h.byte(b));
    h.finish()
}

/// [`name_hash`] fed a byte at a time, so the hashes of a wire-format name's suffixes
/// can be worked out without writing the name as text first.
///
/// The bytes are mixed eight at a time (as one little-endian word), not one by one as
/// FNV-1a did: every query hashes each suffix of its name twice (to announce its slots,
/// then to look it up), and a multiplication per byte, each waiting for the one
/// before, was a tenth of a blocked name's own work.
struct NameHasher {
    h: u64,
    /// The bytes of the word being filled, from its low byte.
    word: u64,
    filled: u32,
    len: u64,
}

impl NameHasher {
    fn new() -> NameHasher {
        NameHasher {
            h: 0xcbf2_9ce4_8422_2325,
            word: 0,
            filled: 0,
            len: 0,
        }
    }

    fn byte(&mut self, b: u8) {
        self.word |= u64::from(b) << (8 * self.filled);
        self.filled += 1;
        if self.filled == 8 {
            let w = self.word;
            self.word = 0;
            self.filled = 0;
            self.mix_word(w);
        }
    }

    /// Eight bytes at once (only at a word boundary).
    fn mix_word(&mut self, w: u64) {
        self.h = (self.h ^ w)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
        self.len += 8;
    }

    fn finish(self) -> u64 {
        // A partial last word, and the length: "a" and "a\0" differ.
        let len = self.len + u64::from(self.filled);
        let mut h = (self.h ^ self.word).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ len;
        // The finalizer of MurmurHash3: every input bit reaches every output bit, so the
        // slot (the hash's high bits) is well spread.
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        h.max(1)
    }
}

/// Suffixes of a question whose slots are announced at most (a name's first few
/// suffixes are the ones a listing most often covers; deeper ones are read unannounced).
const PREFETCH_SUFFIXES: usize = 6;

/// The hash of each suffix of the wire-format name that starts `question` (labels as
/// a client sends them), as [`name_hash`] gives it for the suffix written as the DNS
/// server reads it (`dns::wire`: lower case, `.` between labels, a byte that is not
/// printable or is a dot as `?`); at most `PREFETCH_SUFFIXES`, the name itself first.
fn wire_suffix_hashes(question: &[u8], mut each: impl FnMut(u64)) {
    let mut start = 0;
    for _ in 0..PREFETCH_SUFFIXES {
        let mut h = NameHasher::new();
        let mut at = start;
        let mut labels = 0;
        loop {
            let Some(&len) = question.get(at) else { return };
            let len = usize::from(len);
            if len == 0 {
                break;
            }
            let Some(label) = question.get(at + 1..at + 1 + len).filter(|_| len <= 63) else {
                return;
            };
            if labels > 0 {
                h.byte(b'.');
            }
            for &c in label {
                h.byte(text_byte(c).to_ascii_lowercase());
            }
            labels += 1;
            at += 1 + len;
        }
        if labels == 0 {
            return;
        }
        each(h.finish());
        start += 1 + usize::from(question[start]);
    }
}

/// The immutable, compiled lists.
pub struct Index {
    /// Unique to this index in the process: what a memo of a lookup is valid for
    /// (see `decide::Listing`); a reload makes a new one.
    generation: u64,
    table: Table,
    /// Sorted by address.
    addresses: Vec<(u32, CategorySet)>,
    categories: Vec<Category>,
    by_name: HashMap<String, u8>,
    sources: Vec<SourceReport>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("names", &self.names())
            .field("categories", &self.categories.len())
            .finish()
    }
}

/// A listed name or parent that a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit<'a> {
    /// The listed entry: the name itself or one of its parents.
    pub entry: &'a str,
    pub categories: CategorySet,
}

/// A number no index of this process had before (never 0).
fn next_generation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Index {
    /// This index's generation (never 0): memos of its lookups carry it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// An index with no category and no name.
    pub fn empty() -> Index {
        Index::build(Vec::new(), Vec::new()).expect("an empty index always builds")
    }

    /// Builds an index of `categories`, filled from `sources`.
    ///
    /// Fails, leaving the caller's current index in service, when a file is missing
    /// or unreadable, when it is mostly garbage, or when a source names an unknown
    /// category.
    pub fn build(
        categories: Vec<Ut1Category>,
        sources: Vec<ListSource>,
    ) -> Result<Index, FilterError> {
        if categories.len() > MAX_CATEGORIES {
            return Err(FilterError::TooManyCategories(categories.len()));
        }
        let mut by_name = HashMap::new();
        let mut cats = Vec::with_capacity(categories.len());
        for (id, c) in categories.into_iter().enumerate() {
            let id = id as u8;
            by_name.insert(c.name.clone(), id);
            for a in &c.aliases {
                by_name.entry(a.clone()).or_insert(id);
            }
            cats.push(Category {
                id,
                name: c.name,
                aliases: c.aliases,
                kind: c.kind,
                titles: c.titles,
                descriptions: c.descriptions,
                entries: 0,
            });
        }
        let mut source_ids = Vec::with_capacity(sources.len());
        for s in &sources {
            let id = *by_name
                .get(&s.category)
                .ok_or_else(|| FilterError::UnknownCategory(s.category.clone()))?;
            source_ids.push(id);
        }

        let (table, addresses, reports) = compile(&sources, &source_ids)?;
        for r in &reports {
            if let Some(&id) = by_name.get(&r.category) {
                cats[id as usize].entries += r.names + r.addresses;
            }
        }
        Ok(Index {
            generation: next_generation(),
            table,
            addresses,
            categories: cats,
            by_name,
            sources: reports,
        })
    }

    /// Every listed entry covering `name` (itself, then its parents).
    pub fn lookup<'s, 'n>(&'s self, name: &'n str) -> impl Iterator<Item = Hit<'n>> + use<'s, 'n> {
        suffixes(name).filter_map(|entry| {
            self.table
                .get(name_hash(entry.as_bytes()))
                .map(|categories| Hit { entry, categories })
        })
    }

    /// Starts bringing in the table slots a lookup of the name in `question` (as on
    /// the wire, from its first label) will read, one per suffix.
    ///
    /// Why: the table is megabytes, so a lookup of a name not asked lately waits on
    /// memory, once per suffix; a receiving thread announces every query of its batch
    /// before it answers the first, and the waits overlap (see `dns::front`).
    pub fn prefetch_question(&self, question: &[u8]) {
        if self.table.keys.is_empty() {
            return;
        }
        wire_suffix_hashes(question, |hash| {
            let slot = self.table.slot(hash).min(self.table.keys.len() - 1);
            cartable_sys::prefetch(&self.table.keys[slot]);
            // A listed name's category set id sits at (or a slot or two after) its home.
            cartable_sys::prefetch(&self.table.set_of[slot]);
        });
    }

    /// The categories listing `addr`, if any.
    pub fn address(&self, addr: Ipv4Addr) -> Option<CategorySet> {
        let key = u32::from(addr);
        self.addresses
            .binary_search_by_key(&key, |&(a, _)| a)
            .ok()
            .map(|i| self.addresses[i].1)
    }

    /// The category called `name` (or one of its aliases).
    pub fn category(&self, name: &str) -> Option<&Category> {
        self.by_name
            .get(name)
            .map(|&id| &self.categories[id as usize])
    }

    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    pub fn sources(&self) -> &[SourceReport] {
        &self.sources
    }

    /// Listed names (each counted once, whatever its number of categories).
    pub fn names(&self) -> u64 {
        self.table.len
    }

    /// Bytes the compiled table takes.
    pub fn map_bytes(&self) -> usize {
        self.table.keys.len() * 10 + self.table.sets.len() * 16
    }

    /// The file and line where `entry` is listed in one of `categories`: for the
    /// explanation of a verdict, never for answering queries (it reads the files).
    pub fn find_line(&self, entry: &str, categories: CategorySet) -> Option<(PathBuf, u64)> {
        for s in &self.sources {
            let Some(&id) = self.by_name.get(&s.category) else {
                continue;
            };
            if categories & (1u128 << id) == 0 {
                continue;
            }
            let file = File::open(&s.path).ok()?;
            let mut reader = BufReader::new(file);
            let mut buf = Vec::new();
            let mut line_no = 0;
            while reader.read_until(b'\n', &mut buf).ok()? > 0 {
                line_no += 1;
                if let Line::Names(names) = list::parse_line(trim_newline(&buf))
                    && names.iter().any(|n| n == entry)
                {
                    return Some((s.path.clone(), line_no));
                }
                buf.clear();
            }
        }
        None
    }
}

/// The layout of a saved index file: this magic line, one line of JSON (`Saved`),
/// then the table's keys (little-endian u64) and set ids (little-endian u16).
const SAVED_MAGIC: &[u8] = b"cartable-index 3\n";

#[derive(Serialize, Deserialize)]
struct Saved {
    fingerprint: String,
    categories: Vec<Category>,
    sources: Vec<SourceReport>,
    addresses: Vec<(u32, CategorySet)>,
    sets: Vec<CategorySet>,
    home: u64,
    slots: u64,
    names: u64,
}

impl Index {
    /// Writes the index to `path` (through a temporary file, renamed when synced), so
    /// a restart can load it instead of compiling the lists again.
    pub fn save(&self, path: &Path, fingerprint: &str) -> std::io::Result<()> {
        use std::io::Write;
        let header = Saved {
            fingerprint: fingerprint.to_string(),
            categories: self.categories.clone(),
            sources: self.sources.clone(),
            addresses: self.addresses.clone(),
            sets: self.table.sets.clone(),
            home: self.table.home as u64,
            slots: self.table.keys.len() as u64,
            names: self.table.len,
        };
        let tmp = path.with_extension("tmp");
        let mut f = std::io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        f.write_all(SAVED_MAGIC)?;
        serde_json::to_writer(&mut f, &header).map_err(std::io::Error::other)?;
        f.write_all(b"\n")?;
        for k in self.table.keys.iter() {
            f.write_all(&k.to_le_bytes())?;
        }
        for s in self.table.set_of.iter() {
            f.write_all(&s.to_le_bytes())?;
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    /// Reads an index saved with the same `fingerprint`; `None` if there is none, it
    /// was made from other sources, or it is damaged (then the caller compiles).
    pub fn load(path: &Path, fingerprint: &str) -> Option<Index> {
        use std::io::Read;
        let mut f = BufReader::with_capacity(1 << 20, File::open(path).ok()?);
        let mut magic = vec![0u8; SAVED_MAGIC.len()];
        f.read_exact(&mut magic).ok()?;
        if magic != SAVED_MAGIC {
            return None;
        }
        let mut line = Vec::new();
        f.read_until(b'\n', &mut line).ok()?;
        let saved: Saved = serde_json::from_slice(&line).ok()?;
        if saved.fingerprint != fingerprint || saved.sets.len() > usize::from(u16::MAX) + 1 {
            return None;
        }
        let slots = usize::try_from(saved.slots).ok()?;
        let home = usize::try_from(saved.home).ok()?;
        if home == 0 || home > slots || saved.names > saved.slots {
            return None;
        }
        let mut bytes = vec![0u8; slots.checked_mul(10)?];
        f.read_exact(&mut bytes).ok()?;
        // Nothing may follow: a longer file is not what was saved.
        if f.read(&mut [0u8; 1]).ok()? != 0 {
            return None;
        }
        let (key_bytes, set_bytes) = bytes.split_at(slots * 8);
        let keys: Vec<u64> = key_bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        let set_of: Vec<u16> = set_bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        drop(bytes);
        let used = keys.iter().filter(|&&k| k != 0).count() as u64;
        if used != saved.names
            || set_of
                .iter()
                .any(|&s| usize::from(s) >= saved.sets.len().max(1))
        {
            return None;
        }
        let mut by_name = HashMap::new();
        for c in &saved.categories {
            by_name.insert(c.name.clone(), c.id);
            for a in &c.aliases {
                by_name.entry(a.clone()).or_insert(c.id);
            }
        }
        Some(Index {
            generation: next_generation(),
            table: {
                let mut table = Table {
                    keys: Slots::from(keys),
                    set_of: Slots::from(set_of),
                    sets: saved.sets,
                    home,
                    len: saved.names,
                };
                if !table.is_ordered() {
                    return None;
                }
                table.move_to_huge_pages();
                table
            },
            addresses: saved.addresses,
            categories: saved.categories,
            by_name,
            sources: saved.sources,
        })
    }
}

/// The ids in a set, lowest first.
pub fn ids(set: CategorySet) -> impl Iterator<Item = u8> {
    (0..MAX_CATEGORIES as u8).filter(move |&i| set & (1u128 << i) != 0)
}

/// Bytes of a file one build job reads.
const CHUNK_BYTES: u64 = 4 << 20;

/// A byte range of one source, cut at line boundaries by the reader: the lines that
/// start inside `start..end` are the job's.
struct Job {
    source: usize,
    start: u64,
    end: u64,
}

/// What one job found.
#[derive(Default)]
struct Found {
    hashes: Vec<u64>,
    addresses: Vec<Ipv4Addr>,
    /// Bad lines, their line numbers counted from the job's first line.
    skipped: Skipped,
    lines: u64,
}

/// The table, the listed addresses (sorted) and what each file held.
type Compiled = (Table, Vec<(u32, CategorySet)>, Vec<SourceReport>);

// Long: the compile's phases (hash in chunks on every core, sort, merge, spread into
// the table in place) share their buffers to keep a reload's peak memory down.
fn compile(sources: &[ListSource], source_ids: &[u8]) -> Result<Compiled, FilterError> {
    let mut jobs = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        let size = std::fs::metadata(&s.path)
            .map_err(|e| FilterError::Io {
                path: s.path.clone(),
                source: e,
            })?
            .len();
        let mut start = 0;
        loop {
            let end = (start + CHUNK_BYTES).min(size);
            jobs.push(Job {
                source: i,
                start,
                end,
            });
            if end >= size {
                break;
            }
            start = end;
        }
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4)
        .min(jobs.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<Found, FilterError>>>> =
        jobs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    // Each job's hashes go straight to its file's vector (order does not matter), so
    // the build never holds them twice.
    let collected: Vec<std::sync::Mutex<Vec<u64>>> = sources
        .iter()
        .map(|_| std::sync::Mutex::new(Vec::new()))
        .collect();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { return };
                    let found = read_job(&sources[job.source].path, job).map(|mut f| {
                        if let Ok(mut all) = collected[job.source].lock() {
                            all.extend_from_slice(&f.hashes);
                        }
                        f.hashes = Vec::new();
                        f
                    });
                    if let Ok(mut slot) = results[i].lock() {
                        *slot = Some(found);
                    }
                }
            });
        }
    });

    // Per source, in file order: line numbers made absolute, names sorted and unique.
    let mut per_source: Vec<(Vec<u64>, SourceReport, Vec<Ipv4Addr>)> = sources
        .iter()
        .zip(collected)
        .map(|(s, hashes)| {
            (
                hashes.into_inner().unwrap_or_default(),
                SourceReport {
                    category: s.category.clone(),
                    path: s.path.clone(),
                    names: 0,
                    addresses: 0,
                    skipped: Skipped::default(),
                },
                Vec::new(),
            )
        })
        .collect();
    let mut lines_before = vec![0u64; sources.len()];
    for (job, slot) in jobs.iter().zip(results) {
        let found = slot
            .into_inner()
            .ok()
            .flatten()
            .unwrap_or_else(|| Err(FilterError::Index("a build thread stopped".into())))?;
        let (_, report, addresses) = &mut per_source[job.source];
        addresses.extend_from_slice(&found.addresses);
        report.skipped.count += found.skipped.count;
        for (line, text) in found.skipped.examples {
            if report.skipped.examples.len() < list::EXAMPLES {
                report
                    .skipped
                    .examples
                    .push((line + lines_before[job.source], text));
            }
        }
        lines_before[job.source] += found.lines;
    }
    let mut reports = Vec::with_capacity(sources.len());
    let mut addresses: Vec<(u32, CategorySet)> = Vec::new();
    let mut sorted: Vec<Vec<u64>> = Vec::with_capacity(sources.len());
    for ((mut hashes, mut report, addrs), &id) in per_source.into_iter().zip(source_ids) {
        hashes.sort_unstable();
        hashes.dedup();
        report.names = hashes.len() as u64;
        report.addresses = addrs.len() as u64;
        let total = report.names + report.addresses + report.skipped.count;
        if total > 10 && report.skipped.count as f64 > GARBAGE_SHARE * total as f64 {
            return Err(FilterError::Garbage {
                path: report.path.clone(),
                skipped: report.skipped.count,
                total,
            });
        }
        addresses.extend(addrs.iter().map(|a| (u32::from(*a), 1u128 << id)));
        sorted.push(hashes);
        reports.push(report);
    }
    addresses.sort_unstable_by_key(|&(a, _)| a);
    let mut merged: Vec<(u32, CategorySet)> = Vec::with_capacity(addresses.len());
    for (addr, set) in addresses {
        match merged.last_mut() {
            Some(last) if last.0 == addr => last.1 |= set,
            _ => merged.push((addr, set)),
        }
    }
    let table = merge_into_table(sorted, source_ids)?;
    Ok((table, merged, reports))
}

/// Builds the table from the sources' sorted, unique hashes, in the memory of the
/// largest of them: a name in several sources gets the union of their categories.
///
/// Peak memory is the table's own (about 11 bytes a name) plus the smaller sources:
/// the merge runs backwards into the largest vector grown to the final length, then
/// the merged hashes are spread, backwards again, to their slots.
fn merge_into_table(mut sorted: Vec<Vec<u64>>, source_ids: &[u8]) -> Result<Table, FilterError> {
    let total: usize = sorted.iter().map(Vec::len).sum();
    let home = (total + total / 9 + 16).max(16);
    let big = (0..sorted.len()).max_by_key(|&i| sorted[i].len());
    let mut keys = big
        .map(|b| std::mem::take(&mut sorted[b]))
        .unwrap_or_default();
    let big_len = keys.len();
    keys.resize(total, 0);
    let mut set_of = vec![0u16; total];
    let mut sets: Vec<CategorySet> = Vec::new();
    let mut set_ids: HashMap<CategorySet, u16> = HashMap::new();
    // Unread counts: the largest source (in `keys`) and each other one.
    let mut left_big = big_len;
    let mut left: Vec<usize> = sorted.iter().map(Vec::len).collect();
    let mut w = total;
    loop {
        let mut top = if left_big > 0 {
            Some(keys[left_big - 1])
        } else {
            None
        };
        for (i, v) in sorted.iter().enumerate() {
            if left[i] > 0 {
                top = top.max(Some(v[left[i] - 1]));
            }
        }
        let Some(hash) = top else { break };
        let mut set: CategorySet = 0;
        if left_big > 0 && keys[left_big - 1] == hash {
            set |= 1u128 << big.map_or(0, |b| source_ids[b]);
            left_big -= 1;
        }
        for (i, v) in sorted.iter().enumerate() {
            if left[i] > 0 && v[left[i] - 1] == hash {
                set |= 1u128 << source_ids[i];
                left[i] -= 1;
            }
        }
        let id = match set_ids.get(&set) {
            Some(&id) => id,
            None => {
                let id = u16::try_from(sets.len()).map_err(|_| {
                    FilterError::Index("more than 65,536 combinations of categories".into())
                })?;
                set_ids.insert(set, id);
                sets.push(set);
                id
            }
        };
        // Never ahead of what is still to be read from `keys`: w > left_big.
        w -= 1;
        keys[w] = hash;
        set_of[w] = id;
    }
    drop(sorted);
    let len = total - w;
    keys.copy_within(w.., 0);
    set_of.copy_within(w.., 0);
    keys.truncate(len);
    set_of.truncate(len);
    let mut table = Table {
        keys: Slots::from(keys),
        set_of: Slots::from(set_of),
        sets,
        home,
        len: len as u64,
    };
    table.spread();
    // Also gives back what the vectors' doubling left unused while the files were read.
    table.move_to_huge_pages();
    Ok(table)
}

impl Table {
    /// Each lookup reads `keys` and `set_of` at random: fewer TLB misses.
    fn move_to_huge_pages(&mut self) {
        self.keys.move_to_huge_pages();
        self.set_of.move_to_huge_pages();
    }

    /// Moves the sorted, packed hashes `keys[..len]` to their slots. The j-th hash's
    /// slot is `max(home slot, slot of the (j-1)-th + 1)`, that is `j + M(j)` with
    /// `M(j)` the running maximum of `home(i) - i`: always at or after `j`, so moving
    /// the hashes from the last to the first never overwrites one not yet moved.
    /// `M` is kept at the start of each block and recomputed within it.
    fn spread(&mut self) {
        const BLOCK: usize = 4096;
        let n = self.keys.len();
        let mut marks = Vec::with_capacity(n / BLOCK + 1);
        let mut m = 0usize;
        for j in 0..n {
            if j % BLOCK == 0 {
                marks.push(m);
            }
            m = m.max(self.slot(self.keys[j]).saturating_sub(j));
        }
        let slots = if n == 0 {
            self.home
        } else {
            (n + m).max(self.home)
        };
        self.keys.resize(slots, 0);
        self.set_of.resize(slots, 0);
        let mut shift = [0usize; BLOCK];
        for (b, &start_m) in marks.iter().enumerate().rev() {
            let start = b * BLOCK;
            let end = (start + BLOCK).min(n);
            let mut m = start_m;
            for j in start..end {
                m = m.max(self.slot(self.keys[j]).saturating_sub(j));
                shift[j - start] = m;
            }
            for j in (start..end).rev() {
                let to = j + shift[j - start];
                if to != j {
                    self.keys[to] = self.keys[j];
                    self.set_of[to] = self.set_of[j];
                    self.keys[j] = 0;
                }
            }
        }
    }
}

/// Reads the lines of `job` and hashes their names.
fn read_job(path: &Path, job: &Job) -> Result<Found, FilterError> {
    use std::io::{Read, Seek, SeekFrom};
    let io = |e| FilterError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut file = File::open(path).map_err(io)?;
    // From one byte before the range: if that byte ends a line, the first line is
    // ours; otherwise the line in progress is the previous job's.
    let from = job.start.saturating_sub(1);
    file.seek(SeekFrom::Start(from)).map_err(io)?;
    let mut bytes = Vec::with_capacity((job.end - from) as usize + 4096);
    (&mut file)
        .take(job.end - from)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    // The last line may run past the range: read on to its end.
    if bytes.last().is_some_and(|&b| b != b'\n') {
        let mut rest = BufReader::new(file);
        rest.read_until(b'\n', &mut bytes).map_err(io)?;
    }
    let mut text: &[u8] = &bytes;
    if job.start > 0 {
        match text.iter().position(|&b| b == b'\n') {
            Some(i) => text = &text[i + 1..],
            None => return Ok(Found::default()),
        }
    }
    if text.is_empty() {
        // The range held only the end of the previous job's last line.
        return Ok(Found::default());
    }
    let mut found = Found {
        hashes: Vec::with_capacity(text.len() / 20),
        ..Found::default()
    };
    for raw in text.split(|&b| b == b'\n') {
        found.lines += 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if let Some(name) = plain_name(line) {
            found.hashes.push(name_hash(name.as_bytes()));
            continue;
        }
        match list::parse_line(line) {
            Line::Blank => {}
            Line::Names(names) => found
                .hashes
                .extend(names.iter().map(|n| name_hash(n.as_bytes()))),
            Line::Address(a) => found.addresses.push(a),
            Line::Bad => found.skipped.add(found.lines, line),
        }
    }
    // The split after a final newline yields one empty piece that is not a line.
    if text.ends_with(b"\n") {
        found.lines -= 1;
    }
    Ok(found)
}

/// The line itself when it is already a normalized name (lower case, valid labels, not
/// an address): the common case in UT1 files, checked without allocating.
fn plain_name(line: &[u8]) -> Option<&str> {
    if line.is_empty() || line.len() > super::name::MAX_NAME {
        return None;
    }
    let mut label = 0usize;
    let mut letters = false;
    for &b in line {
        match b {
            b'.' => {
                if label == 0 {
                    return None;
                }
                label = 0;
            }
            b'a'..=b'z' | b'-' | b'_' => {
                letters = true;
                label += 1;
            }
            b'0'..=b'9' => label += 1,
            _ => return None,
        }
        if label > 63 {
            return None;
        }
    }
    // All digits and dots could be an address: leave those to the full parser.
    (label > 0 && letters)
        .then(|| std::str::from_utf8(line).ok())
        .flatten()
}

fn trim_newline(buf: &[u8]) -> &[u8] {
    let buf = buf.strip_suffix(b"\n").unwrap_or(buf);
    buf.strip_suffix(b"\r").unwrap_or(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::Path;

    pub(crate) fn category(name: &str, kind: Kind) -> Ut1Category {
        Ut1Category {
            name: name.into(),
            aliases: vec![],
            kind,
            titles: BTreeMap::new(),
            descriptions: BTreeMap::new(),
            domains: None,
        }
    }

    fn source(dir: &Path, category: &str, file: &str, text: &str) -> ListSource {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        ListSource {
            category: category.into(),
            path,
        }
    }

    fn hit_names(index: &Index, name: &str) -> Vec<(String, Vec<String>)> {
        index
            .lookup(name)
            .map(|h| {
                let cats = ids(h.categories)
                    .map(|i| index.categories()[i as usize].name.clone())
                    .collect();
                (h.entry.to_string(), cats)
            })
            .collect()
    }

    /// The arrays keep their contents when moved to 2 MiB pages, and start on one.
    #[test]
    fn slots_move_to_a_2_mib_boundary_whole() {
        let mut keys = Slots::from((1..=300_000u64).collect::<Vec<_>>());
        keys.resize(300_001, 7);
        keys.move_to_huge_pages();
        assert_eq!(keys.as_ptr() as usize % (2 << 20), 0);
        assert_eq!(keys.len(), 300_001);
        assert_eq!((keys[0], keys[299_999], keys[300_000]), (1, 300_000, 7));
        keys.resize(2, 0);
        keys.resize(3, 9);
        assert_eq!(*keys, [1, 2, 9]);
        let mut empty = Slots::<u16>::from(Vec::new());
        empty.move_to_huge_pages();
        assert!(empty.is_empty());
    }

    /// Names a word apart, a byte apart or a length apart hash apart, and a name fed
    /// a byte at a time hashes as the name read a word at a time.
    #[test]
    fn names_hash_apart_and_the_same_both_ways() {
        let mut seen = std::collections::HashSet::new();
        let letters = b"abcdefghijklmnopqrstuvwxyz0123456789-.";
        for &a in letters {
            for &b in letters {
                for &c in letters {
                    assert!(seen.insert(name_hash(&[a, b, c])));
                }
                assert!(seen.insert(name_hash(&[a, b])));
            }
        }
        assert_ne!(name_hash(b"a"), name_hash(b"a\0"));
        assert_ne!(name_hash(b"abcdefgh"), name_hash(b"abcdefgh\0"));
        assert_ne!(
            name_hash(b"abcdefgh.example"),
            name_hash(b"abcdefgi.example")
        );
        let long = b"a-rather-long-subdomain.of.some-school.example.fr";
        for cut in 0..long.len() {
            let mut h = NameHasher::new();
            long[..cut].iter().for_each(|&b| h.byte(b));
            assert_eq!(h.finish(), name_hash(&long[..cut]), "{cut}");
        }
    }

    /// The slots announced for a question are the ones its lookup reads: the hashes
    /// worked out from the wire are those of the name's suffixes as text.
    #[test]
    fn suffix_hashes_from_the_wire_are_the_lookup_hashes() {
        let mut wire = Vec::new();
        for label in ["WWW", "Ex_a-mple", "co", "uk"] {
            wire.push(label.len() as u8);
            wire.extend_from_slice(label.as_bytes());
        }
        wire.extend_from_slice(&[0, 0, 1, 0, 1]);
        let mut got = Vec::new();
        wire_suffix_hashes(&wire, |h| got.push(h));
        let want: Vec<u64> = suffixes("www.ex_a-mple.co.uk")
            .map(|s| name_hash(s.as_bytes()))
            .collect();
        assert_eq!(got, want);
        // A byte the server reads as `?`, and the cap on suffixes.
        let odd = [1, b'.', 1, b'a', 0];
        let mut got = Vec::new();
        wire_suffix_hashes(&odd, |h| got.push(h));
        assert_eq!(got, vec![name_hash(b"?.a"), name_hash(b"a")]);
        let deep: Vec<u8> = std::iter::repeat_n([1, b'a'], 10)
            .flatten()
            .chain([0])
            .collect();
        let mut count = 0;
        wire_suffix_hashes(&deep, |_| count += 1);
        assert_eq!(count, PREFETCH_SUFFIXES);
        // Cut short or compressed: nothing announced past what can be read.
        let mut count = 0;
        wire_suffix_hashes(&[3, b'a', b'b'], |_| count += 1);
        wire_suffix_hashes(&[0xc0, 12], |_| count += 1);
        assert_eq!(count, 0);
    }

    #[test]
    fn a_listed_domain_covers_its_subdomains_and_merges_categories() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::build(
            vec![
                category("gambling", Kind::Black),
                category("games", Kind::Black),
            ],
            vec![
                source(dir.path(), "gambling", "a", "casino.example\npoker.test\n"),
                source(dir.path(), "games", "b", "chess.test\npoker.test\n"),
            ],
        )
        .unwrap();
        assert_eq!(index.names(), 3);
        assert_eq!(
            hit_names(&index, "www.casino.example"),
            [("casino.example".to_string(), vec!["gambling".to_string()])]
        );
        assert_eq!(
            hit_names(&index, "poker.test"),
            [(
                "poker.test".to_string(),
                vec!["gambling".to_string(), "games".to_string()]
            )]
        );
        assert!(hit_names(&index, "notcasino.example").is_empty());
        assert!(hit_names(&index, "example").is_empty());
        assert_eq!(index.category("games").unwrap().entries, 2);
    }

    #[test]
    fn a_saved_index_loads_back_only_with_its_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::build(
            vec![
                category("gambling", Kind::Black),
                category("games", Kind::White),
            ],
            vec![
                source(
                    dir.path(),
                    "gambling",
                    "a",
                    "casino.example\npoker.test\n1.2.3.4\n",
                ),
                source(dir.path(), "games", "b", "chess.test\npoker.test\n"),
            ],
        )
        .unwrap();
        let path = dir.path().join("index.bin");
        index.save(&path, "fp-1").unwrap();
        assert!(Index::load(&path, "fp-2").is_none());
        let back = Index::load(&path, "fp-1").unwrap();
        assert_eq!(
            hit_names(&back, "www.poker.test"),
            hit_names(&index, "www.poker.test")
        );
        assert_eq!(back.names(), 3);
        assert_eq!(back.address(Ipv4Addr::new(1, 2, 3, 4)), Some(1));
        assert_eq!(back.category("games").unwrap().kind, Kind::White);
        // A damaged file is not used.
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes.truncate(n - 5);
        std::fs::write(&path, bytes).unwrap();
        assert!(Index::load(&path, "fp-1").is_none());
    }

    #[test]
    fn unsorted_and_hosts_files_need_no_order() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::build(
            vec![
                category("ads", Kind::Black),
                category("central", Kind::Black),
            ],
            vec![
                source(
                    dir.path(),
                    "ads",
                    "a",
                    "zz.test\naa.test\nmm.test\naa.test\n",
                ),
                source(dir.path(), "central", "b", "0.0.0.0 track.test ads.test\n"),
            ],
        )
        .unwrap();
        assert_eq!(index.names(), 5);
        assert_eq!(hit_names(&index, "x.track.test").len(), 1);
    }

    #[test]
    fn addresses_are_indexed_and_lines_found() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::build(
            vec![category("ads", Kind::Black)],
            vec![source(
                dir.path(),
                "ads",
                "a",
                "1.2.3.4\nbad line here\nads.test\n",
            )],
        )
        .unwrap();
        assert_eq!(index.address(Ipv4Addr::new(1, 2, 3, 4)), Some(1));
        assert_eq!(index.address(Ipv4Addr::new(1, 2, 3, 5)), None);
        assert_eq!(index.sources()[0].skipped.count, 1);
        let (path, line) = index.find_line("ads.test", 1).unwrap();
        assert_eq!(
            (path.file_name().unwrap().to_str().unwrap(), line),
            ("a", 3)
        );
    }

    #[test]
    fn a_file_cut_into_chunks_counts_every_line_once() {
        let dir = tempfile::tempdir().unwrap();
        // About 2.5 chunks: lines cross the cuts, duplicates and bad lines are spread.
        let mut text = String::new();
        let mut bad_lines = Vec::new();
        let mut line = 0u64;
        let mut i = 0u64;
        while (text.len() as u64) < CHUNK_BYTES * 5 / 2 {
            line += 1;
            if i % 100_003 == 7 {
                text.push_str("<bad line>\n");
                bad_lines.push(line);
                line += 1;
            }
            text.push_str(&format!("host-{}.example\n", i % 400_000));
            i += 1;
        }
        let path = dir.path().join("big");
        std::fs::write(&path, &text).unwrap();
        let index = Index::build(
            vec![category("ads", Kind::Black)],
            vec![ListSource {
                category: "ads".into(),
                path,
            }],
        )
        .unwrap();
        let report = &index.sources()[0];
        assert_eq!(report.names, 400_000);
        assert_eq!(report.skipped.count, bad_lines.len() as u64);
        let seen: Vec<u64> = report.skipped.examples.iter().map(|e| e.0).collect();
        assert_eq!(seen, bad_lines[..seen.len()]);
        for n in [0, 1, 199_999, 399_999] {
            assert_eq!(hit_names(&index, &format!("www.host-{n}.example")).len(), 1);
        }
        assert!(hit_names(&index, "host-400000.example").is_empty());
        assert!(index.table.is_ordered());
        assert!(
            index.table.keys.len() < 400_000 * 12 / 10,
            "about 90 % full"
        );
        let absent = (0..100_000)
            .filter(|n| !hit_names(&index, &format!("other-{n}.example")).is_empty())
            .count();
        assert_eq!(absent, 0);
    }

    #[test]
    fn jobs_take_the_lines_that_start_in_their_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        std::fs::write(&path, "aa.test\nbb.test\n<bad>\ncc.test").unwrap();
        let cuts = [0, 4, 8, 16, 19, 26];
        let mut lines = 0;
        let mut names = 0;
        let mut bad = Vec::new();
        for w in cuts.windows(2) {
            let job = Job {
                source: 0,
                start: w[0],
                end: w[1],
            };
            let f = read_job(&path, &job).unwrap();
            bad.extend(f.skipped.examples.iter().map(|e| e.0 + lines));
            lines += f.lines;
            names += f.hashes.len();
        }
        assert_eq!((lines, names, bad), (4, 3, vec![3]));
    }

    #[test]
    fn the_table_built_in_place_is_the_one_built_slot_by_slot() {
        // Pseudo-random hashes, plus a crowd at the very top that spills past the end.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut hashes: Vec<u64> = (0..50_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.max(1)
            })
            .chain((0..300).map(|i| u64::MAX - i))
            .collect();
        hashes.sort_unstable();
        hashes.dedup();
        let mut reference = Table::with_capacity(hashes.len());
        reference.sets.push(1);
        for &h in &hashes {
            reference.push_ascending(h, 0);
        }
        let built = merge_into_table(vec![hashes.clone()], &[0]).unwrap();
        assert_eq!(built.home, reference.home);
        assert_eq!(*built.keys, *reference.keys);
        assert!(built.keys.len() > built.home, "the top crowd spilled");
        assert!(built.is_ordered());
        assert!(hashes.iter().all(|&h| built.get(h) == Some(1)));
        // Two sources sharing hashes: the union of their categories.
        let t = merge_into_table(vec![vec![5, 9, 12], vec![1, 9]], &[0, 3]).unwrap();
        assert_eq!(
            [1, 5, 9, 12, 7].map(|h| t.get(h)),
            [Some(8), Some(1), Some(9), Some(1), None]
        );
        assert_eq!(t.len, 4);
    }

    #[test]
    fn missing_garbage_and_unknown_sources_fail_the_build() {
        let dir = tempfile::tempdir().unwrap();
        let cats = || vec![category("ads", Kind::Black)];
        let missing = ListSource {
            category: "ads".into(),
            path: dir.path().join("nope"),
        };
        assert!(matches!(
            Index::build(cats(), vec![missing]),
            Err(FilterError::Io { .. })
        ));
        let garbage: String = (0..20).map(|i| format!("<html> {i}\n")).collect();
        let g = source(dir.path(), "ads", "g", &garbage);
        assert!(matches!(
            Index::build(cats(), vec![g]),
            Err(FilterError::Garbage { .. })
        ));
        let u = source(dir.path(), "nope", "u", "a.test\n");
        assert!(matches!(
            Index::build(cats(), vec![u]),
            Err(FilterError::UnknownCategory(_))
        ));
    }
}
