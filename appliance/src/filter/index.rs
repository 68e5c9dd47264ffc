//! The compiled block lists: every listed name in one immutable finite-state map.
//!
//! Names are keys of an `fst::Map` in byte order; each maps to a *category set* (a
//! bitmask over at most 128 categories, shared by every name listed in the same
//! categories). A lookup asks the map for the name and each of its parents, so a
//! listed domain covers its subdomains. Finite-state maps share prefixes and suffixes,
//! which keeps millions of names in a few bytes each.
//!
//! Building streams: UT1 files are sorted, so a k-way merge of the files feeds the map
//! builder directly and the only memory used beyond the map itself is one line per
//! file. A file found out of order (hosts lists usually are) is sorted in memory
//! alone, and the build starts over with it marked.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use fst::{Map, MapBuilder};
use serde::{Deserialize, Serialize};

use super::FilterError;
use super::list::{self, Line, Skipped};
use super::name::suffixes;
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceReport {
    pub category: String,
    pub path: PathBuf,
    pub names: u64,
    pub addresses: u64,
    pub skipped: Skipped,
    /// Whether it was in byte order (streamed) or had to be sorted in memory.
    pub sorted: bool,
}

/// One slice of the names: those whose first byte falls in its range. Slices are
/// built in parallel, one per core; each has its own table of category sets.
struct Part {
    map: Map<Vec<u8>>,
    sets: Vec<CategorySet>,
}

/// The immutable, compiled lists.
pub struct Index {
    parts: Vec<Part>,
    /// First byte of a name -> its part.
    part_of: [u8; 256],
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

impl Index {
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

        let mut in_memory = vec![false; sources.len()];
        loop {
            match compile(&sources, &source_ids, &in_memory)? {
                Compiled::Done(parts, part_of, addresses, reports) => {
                    for r in &reports {
                        if let Some(&id) = by_name.get(&r.category) {
                            cats[id as usize].entries += r.names + r.addresses;
                        }
                    }
                    return Ok(Index {
                        parts,
                        part_of: *part_of,
                        addresses,
                        categories: cats,
                        by_name,
                        sources: reports,
                    });
                }
                Compiled::Unsorted(i) => {
                    tracing::debug!(path = %sources[i].path.display(), "list not in byte order; sorting it in memory");
                    in_memory[i] = true;
                }
            }
        }
    }

    /// Every listed entry covering `name` (itself, then its parents).
    pub fn lookup<'s, 'n>(&'s self, name: &'n str) -> impl Iterator<Item = Hit<'n>> + use<'s, 'n> {
        suffixes(name).filter_map(|entry| {
            let part =
                &self.parts[usize::from(self.part_of[usize::from(*entry.as_bytes().first()?)])];
            part.map.get(entry).map(|set| Hit {
                entry,
                categories: part.sets[set as usize],
            })
        })
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
        self.parts.iter().map(|p| p.map.len() as u64).sum()
    }

    /// Bytes the compiled map takes.
    pub fn map_bytes(&self) -> usize {
        self.parts
            .iter()
            .map(|p| p.map.as_fst().as_bytes().len())
            .sum()
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
/// then each part's map bytes in order.
const SAVED_MAGIC: &[u8] = b"cartable-index 1\n";

#[derive(Serialize, Deserialize)]
struct Saved {
    fingerprint: String,
    categories: Vec<Category>,
    sources: Vec<SourceReport>,
    part_of: Vec<u8>,
    addresses: Vec<(u32, CategorySet)>,
    /// (category sets, map length in bytes) of each part.
    parts: Vec<(Vec<CategorySet>, u64)>,
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
            part_of: self.part_of.to_vec(),
            addresses: self.addresses.clone(),
            parts: self
                .parts
                .iter()
                .map(|p| (p.sets.clone(), p.map.as_fst().as_bytes().len() as u64))
                .collect(),
        };
        let tmp = path.with_extension("tmp");
        let mut f = std::io::BufWriter::new(File::create(&tmp)?);
        f.write_all(SAVED_MAGIC)?;
        serde_json::to_writer(&mut f, &header).map_err(std::io::Error::other)?;
        f.write_all(b"\n")?;
        for p in &self.parts {
            f.write_all(p.map.as_fst().as_bytes())?;
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    /// Reads an index saved with the same `fingerprint`; `None` if there is none, it
    /// was made from other sources, or it is damaged (then the caller compiles).
    pub fn load(path: &Path, fingerprint: &str) -> Option<Index> {
        use std::io::Read;
        let mut f = BufReader::new(File::open(path).ok()?);
        let mut magic = vec![0u8; SAVED_MAGIC.len()];
        f.read_exact(&mut magic).ok()?;
        if magic != SAVED_MAGIC {
            return None;
        }
        let mut line = Vec::new();
        f.read_until(b'\n', &mut line).ok()?;
        let saved: Saved = serde_json::from_slice(&line).ok()?;
        if saved.fingerprint != fingerprint || saved.part_of.len() != 256 {
            return None;
        }
        let mut parts = Vec::with_capacity(saved.parts.len());
        for (sets, len) in saved.parts {
            let mut bytes = vec![0u8; usize::try_from(len).ok()?];
            f.read_exact(&mut bytes).ok()?;
            let map = Map::new(bytes).ok()?;
            parts.push(Part { map, sets });
        }
        let mut part_of = [0u8; 256];
        part_of.copy_from_slice(&saved.part_of);
        if part_of.iter().any(|&p| usize::from(p) >= parts.len()) {
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
            parts,
            part_of,
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

enum Compiled {
    Done(
        Vec<Part>,
        Box<[u8; 256]>,
        Vec<(u32, CategorySet)>,
        Vec<SourceReport>,
    ),
    /// Source `i` is out of byte order.
    Unsorted(usize),
}

/// Yields one source's names in byte order, deduplicated.
struct SourceReader {
    lines: Option<BufReader<File>>,
    /// For a source read whole: its names, sorted, reversed (next at the end).
    sorted: Vec<String>,
    buf: Vec<u8>,
    pending: Vec<String>,
    line_no: u64,
    /// The previous name, to drop duplicates and notice disorder (reused buffer).
    last: String,
    report: SourceReport,
    addresses: Vec<Ipv4Addr>,
    /// Only names whose first byte is in `lo..hi` are yielded.
    lo: u8,
    hi: u16,
    /// The first part also counts bad lines and collects addresses.
    first: bool,
}

enum Next {
    Name(String),
    End,
    OutOfOrder,
}

impl SourceReader {
    fn open(
        source: &ListSource,
        whole: bool,
        (lo, hi): (u8, u16),
        first: bool,
    ) -> Result<SourceReader, FilterError> {
        let io = |e| FilterError::Io {
            path: source.path.clone(),
            source: e,
        };
        let file = File::open(&source.path).map_err(io)?;
        let mut reader = SourceReader {
            lines: None,
            sorted: Vec::new(),
            buf: Vec::with_capacity(256),
            pending: Vec::new(),
            line_no: 0,
            last: String::new(),
            report: SourceReport {
                category: source.category.clone(),
                path: source.path.clone(),
                names: 0,
                addresses: 0,
                skipped: Skipped::default(),
                sorted: !whole,
            },
            addresses: Vec::new(),
            lo,
            hi,
            first,
        };
        if whole {
            let bytes = std::fs::read(&source.path).map_err(io)?;
            let parsed = list::parse(&bytes);
            drop(bytes);
            let mut names = parsed.names;
            names.retain(|n| reader.in_range(n));
            names.sort_unstable();
            names.dedup();
            names.reverse();
            if first {
                reader.report.skipped = parsed.skipped;
                reader.addresses = parsed.addresses;
            }
            reader.sorted = names;
        } else {
            reader.lines = Some(BufReader::with_capacity(64 * 1024, file));
        }
        Ok(reader)
    }

    fn in_range(&self, name: &str) -> bool {
        let b = name.as_bytes().first().copied().unwrap_or(0);
        b >= self.lo && u16::from(b) < self.hi
    }

    fn next(&mut self) -> Result<Next, FilterError> {
        loop {
            let name = if let Some(n) = self.pending.pop() {
                n
            } else if let Some(lines) = self.lines.as_mut() {
                self.buf.clear();
                let read = lines
                    .read_until(b'\n', &mut self.buf)
                    .map_err(|e| FilterError::Io {
                        path: self.report.path.clone(),
                        source: e,
                    })?;
                if read == 0 {
                    return Ok(Next::End);
                }
                self.line_no += 1;
                let line = trim_newline(&self.buf);
                if let Some(name) = plain_name(line) {
                    let b = u16::from(name.as_bytes()[0]);
                    if b >= self.hi && !self.first {
                        // Sorted: nothing further can be in range. (The first part
                        // reads on, to count bad lines and collect addresses.)
                        self.lines = None;
                        return Ok(Next::End);
                    }
                    if b < u16::from(self.lo) || b >= self.hi {
                        // Out of range, still checked for order.
                        if name < self.last.as_str() {
                            return Ok(Next::OutOfOrder);
                        }
                        self.last.clear();
                        self.last.push_str(name);
                        continue;
                    }
                    name.to_string()
                } else {
                    match list::parse_line(line) {
                        Line::Blank => continue,
                        Line::Address(a) => {
                            self.addresses.push(a);
                            continue;
                        }
                        Line::Bad => {
                            self.report.skipped.add(self.line_no, &self.buf);
                            continue;
                        }
                        Line::Names(mut names) if names.len() == 1 => {
                            names.pop().unwrap_or_default()
                        }
                        // Several names on one line: not a sorted UT1 file.
                        Line::Names(_) => return Ok(Next::OutOfOrder),
                    }
                }
            } else if let Some(n) = self.sorted.pop() {
                n
            } else {
                return Ok(Next::End);
            };
            if !self.last.is_empty() {
                match name.as_str().cmp(self.last.as_str()) {
                    std::cmp::Ordering::Equal => continue,
                    std::cmp::Ordering::Less => return Ok(Next::OutOfOrder),
                    std::cmp::Ordering::Greater => {}
                }
            }
            self.last.clear();
            self.last.push_str(&name);
            return Ok(Next::Name(name));
        }
    }
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

/// Fewer names than this are compiled on one thread.
const PARALLEL_FROM: u64 = 200_000;

fn compile(
    sources: &[ListSource],
    source_ids: &[u8],
    in_memory: &[bool],
) -> Result<Compiled, FilterError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    let ranges = split_by_first_byte(sources, threads)?;
    let results: Vec<Result<PartResult, FilterError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .iter()
            .enumerate()
            .map(|(i, &range)| {
                scope.spawn(move || compile_part(sources, source_ids, in_memory, range, i == 0))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(FilterError::Index("a build thread panicked".into())))
            })
            .collect()
    });
    let mut parts = Vec::with_capacity(results.len());
    let mut addresses: Vec<(u32, CategorySet)> = Vec::new();
    let mut reports: Vec<SourceReport> = Vec::new();
    for result in results {
        match result? {
            PartResult::Unsorted(i) => return Ok(Compiled::Unsorted(i)),
            PartResult::Done(part, addrs, part_reports) => {
                parts.push(part);
                addresses.extend(addrs);
                if reports.is_empty() {
                    reports = part_reports;
                } else {
                    for (r, p) in reports.iter_mut().zip(part_reports) {
                        r.names += p.names;
                    }
                }
            }
        }
    }
    let mut part_of = [0u8; 256];
    for (i, &(lo, hi)) in ranges.iter().enumerate() {
        for b in u16::from(lo)..hi {
            part_of[usize::from(b)] = i as u8;
        }
    }
    addresses.sort_unstable_by_key(|&(a, _)| a);
    let mut merged: Vec<(u32, CategorySet)> = Vec::with_capacity(addresses.len());
    for (addr, set) in addresses {
        match merged.last_mut() {
            Some(last) if last.0 == addr => last.1 |= set,
            _ => merged.push((addr, set)),
        }
    }
    let reports = reports
        .into_iter()
        .map(|r| {
            let total = r.names + r.addresses + r.skipped.count;
            if total > 10 && r.skipped.count as f64 > GARBAGE_SHARE * total as f64 {
                Err(FilterError::Garbage {
                    path: r.path.clone(),
                    skipped: r.skipped.count,
                    total,
                })
            } else {
                Ok(r)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Compiled::Done(parts, Box::new(part_of), merged, reports))
}

/// Ranges of first bytes (`lo..hi`) holding about as many names each, from a count of
/// the first byte of every line (a plain byte scan, much cheaper than parsing).
fn split_by_first_byte(
    sources: &[ListSource],
    parts: usize,
) -> Result<Vec<(u8, u16)>, FilterError> {
    let mut counts = [0u64; 256];
    let mut total = 0u64;
    for s in sources {
        let io = |e| FilterError::Io {
            path: s.path.clone(),
            source: e,
        };
        let mut file = File::open(&s.path).map_err(io)?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut at_line_start = true;
        loop {
            let n = std::io::Read::read(&mut file, &mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                if at_line_start && b != b'\n' {
                    counts[usize::from(b.to_ascii_lowercase())] += 1;
                    total += 1;
                }
                at_line_start = b == b'\n';
            }
        }
    }
    if parts <= 1 || total < PARALLEL_FROM {
        return Ok(vec![(0, 256)]);
    }
    let mut ranges = Vec::with_capacity(parts);
    let mut lo = 0u16;
    let mut seen = 0u64;
    for b in 0u16..256 {
        let before = seen;
        seen += counts[usize::from(b)];
        let wanted = total * (ranges.len() as u64 + 1) / parts as u64;
        if seen >= wanted && ranges.len() + 1 < parts {
            // Cut before or after this byte's names, whichever is nearer the target.
            let cut = if wanted - before < seen - wanted && b > lo {
                b
            } else {
                b + 1
            };
            if cut < 256 {
                ranges.push((lo as u8, cut));
                lo = cut;
            }
        }
    }
    ranges.push((lo as u8, 256));
    Ok(ranges)
}

enum PartResult {
    Done(Part, Vec<(u32, CategorySet)>, Vec<SourceReport>),
    Unsorted(usize),
}

/// Builds the map of the names whose first byte is in `range`, by a k-way merge of
/// the sources (each sorted, or sorted in memory when marked).
fn compile_part(
    sources: &[ListSource],
    source_ids: &[u8],
    in_memory: &[bool],
    range: (u8, u16),
    first: bool,
) -> Result<PartResult, FilterError> {
    let mut readers = Vec::with_capacity(sources.len());
    for (s, &whole) in sources.iter().zip(in_memory) {
        readers.push(SourceReader::open(s, whole, range, first)?);
    }
    let mut heap: BinaryHeap<Reverse<(String, usize)>> = BinaryHeap::new();
    for (i, r) in readers.iter_mut().enumerate() {
        match r.next()? {
            Next::Name(n) => heap.push(Reverse((n, i))),
            Next::End => {}
            Next::OutOfOrder => return Ok(PartResult::Unsorted(i)),
        }
    }
    let mut builder = MapBuilder::memory();
    let mut sets: Vec<CategorySet> = Vec::new();
    let mut set_ids: HashMap<CategorySet, u32> = HashMap::new();
    let mut from = Vec::with_capacity(sources.len());
    while let Some(Reverse((name, first_source))) = heap.pop() {
        from.clear();
        from.push(first_source);
        while heap.peek().is_some_and(|Reverse((next, _))| *next == name) {
            if let Some(Reverse((_, i))) = heap.pop() {
                from.push(i);
            }
        }
        let mut set: CategorySet = 0;
        for &i in &from {
            set |= 1u128 << source_ids[i];
            readers[i].report.names += 1;
            match readers[i].next()? {
                Next::Name(n) => heap.push(Reverse((n, i))),
                Next::End => {}
                Next::OutOfOrder => return Ok(PartResult::Unsorted(i)),
            }
        }
        let id = *set_ids.entry(set).or_insert_with(|| {
            sets.push(set);
            (sets.len() - 1) as u32
        });
        builder
            .insert(name.as_bytes(), u64::from(id))
            .map_err(|e| FilterError::Index(e.to_string()))?;
    }
    let map = builder.into_map();
    tracing::debug!(range = ?range, names = map.len(), "index part built");
    let mut addresses = Vec::new();
    for (r, &id) in readers.iter().zip(source_ids) {
        addresses.extend(r.addresses.iter().map(|a| (u32::from(*a), 1u128 << id)));
    }
    let mut reports = Vec::with_capacity(readers.len());
    for mut r in readers {
        r.report.addresses = r.addresses.len() as u64;
        reports.push(r.report);
    }
    Ok(PartResult::Done(Part { map, sets }, addresses, reports))
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
    fn unsorted_and_hosts_files_are_sorted_in_memory() {
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
        assert!(index.sources().iter().all(|s| !s.sorted));
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
