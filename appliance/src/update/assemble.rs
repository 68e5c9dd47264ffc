//! Rebuilds a release's bundle from its chunks, in a file of the bundle's size: a
//! chunk the box already holds (in the bundle it installed last, or earlier in this
//! one) is copied locally; only the others are fetched, through the cache (verified,
//! resumable, one download per chunk however many boxes ask, under its rate cap).
//!
//! Progress is on disk: a chunk's bytes are synced before its row is written, so a
//! box that reboots or stays offline for weeks goes on where it stopped and never
//! fetches a recorded chunk again. Every chunk is hashed as it is written; the whole
//! bundle's SHA-256 is checked at the end ([`check_whole`]), and a chunk found wrong
//! there is forgotten and fetched again.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cartable_protocol::release::Release;
use ring::digest;

use super::ChunkSource;
use super::progress;
use crate::store::Store;

/// Local chunks are synced and recorded in groups of this many bytes.
const LOCAL_GROUP: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub(crate) enum AssembleError {
    /// Nothing wrong with the box: the chunk could not be had now (retried later).
    #[error("chunk {idx}: {detail}")]
    Fetch { idx: usize, detail: String },
    #[error("outside the download window")]
    OutsideWindow,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the store: {0}")]
    Store(#[from] crate::store::StoreError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AssembleError {
    let what = what.into();
    move |source| AssembleError::Io { what, source }
}

/// Bytes in place, for the status.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tally {
    pub(crate) chunks_done: u32,
    pub(crate) bytes_done: u64,
    pub(crate) bytes_local: u64,
}

/// Where a chunk's bytes can be copied from on this box.
#[derive(Clone)]
struct Local {
    file: PathBuf,
    offset: u64,
}

/// One chunk's place in the bundle.
fn offsets(r: &Release) -> Vec<u64> {
    let mut at = 0u64;
    r.chunks
        .iter()
        .map(|c| {
            let o = at;
            at += u64::from(c.size);
            o
        })
        .collect()
}

/// Makes sure the bundle file is there at its size; a file missing or of another
/// size means no recorded chunk can be trusted: they are forgotten.
pub(crate) async fn prepare(
    store: &Store,
    r: &Release,
    bundle: &Path,
) -> Result<(), AssembleError> {
    let size = r.bundle.size;
    let path = bundle.to_path_buf();
    let fresh = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let len = std::fs::metadata(&path).map(|m| m.len()).ok();
        if len == Some(size) {
            return Ok(false);
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)?;
        f.set_len(size)?;
        f.sync_all()?;
        Ok(true)
    })
    .await
    .map_err(|e| AssembleError::Io {
        what: "preparing the bundle file".into(),
        source: std::io::Error::other(e.to_string()),
    })?
    .map_err(io(format!("preparing {}", bundle.display())))?;
    if fresh {
        store.write(progress::forget_all_chunks).await?;
    }
    Ok(())
}

pub(crate) struct Assembly<'a> {
    pub(crate) store: &'a Store,
    pub(crate) release: &'a Release,
    pub(crate) bundle: &'a Path,
    /// The release installed last and its bundle file, if kept.
    pub(crate) installed: Option<(Release, PathBuf)>,
    pub(crate) source: &'a ChunkSource,
    /// Base URLs of peer boxes, asked first.
    pub(crate) peers: &'a [String],
    /// Told after each chunk recorded.
    pub(crate) on_progress: &'a (dyn Fn(Tally) + Send + Sync),
}

impl Assembly<'_> {
    // Long: one pass over the chunks in order, local copies grouped between syncs and
    // each fetched chunk synced and recorded on its own; the steps share the file,
    // the tally and the pending group.
    pub(crate) async fn run(&self, bytes_local: u64) -> Result<Tally, AssembleError> {
        let r = self.release;
        let at = offsets(r);
        let done: BTreeSet<u32> = {
            let list = self.store.read(progress::chunks_done).await?;
            list.into_iter().collect()
        };
        let mut tally = Tally {
            chunks_done: done.len() as u32,
            bytes_done: done
                .iter()
                .filter_map(|i| r.chunks.get(*i as usize))
                .map(|c| u64::from(c.size))
                .sum(),
            bytes_local,
        };
        (self.on_progress)(tally);
        let mut local: HashMap<String, Local> = HashMap::new();
        if let Some((old, file)) = &self.installed
            && std::fs::metadata(file).is_ok_and(|m| m.len() == old.bundle.size)
        {
            for (c, o) in old.chunks.iter().zip(offsets(old)) {
                local.entry(c.sha256.clone()).or_insert(Local {
                    file: file.clone(),
                    offset: o,
                });
            }
        }
        for i in &done {
            if let Some(c) = r.chunks.get(*i as usize) {
                local.entry(c.sha256.clone()).or_insert(Local {
                    file: self.bundle.to_path_buf(),
                    offset: at[*i as usize],
                });
            }
        }
        let file = Arc::new(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.bundle)
                .map_err(io(format!("opening {}", self.bundle.display())))?,
        );
        let mut group: Vec<u32> = Vec::new();
        let mut group_bytes = 0u64;
        for (i, c) in r.chunks.iter().enumerate() {
            let idx = i as u32;
            if done.contains(&idx) {
                continue;
            }
            let size = u64::from(c.size);
            if let Some(from) = local.get(&c.sha256).cloned() {
                let (f, sha, to) = (file.clone(), c.sha256.clone(), at[i]);
                let copied = blocking(move || copy_local(&from, &f, to, size, &sha)).await?;
                if copied {
                    group.push(idx);
                    group_bytes += size;
                    if group_bytes >= LOCAL_GROUP {
                        self.record(&file, &mut group, &mut group_bytes, &mut tally, true)
                            .await?;
                    }
                    continue;
                }
                // The local copy is damaged: fetch it.
                local.remove(&c.sha256);
            }
            self.record(&file, &mut group, &mut group_bytes, &mut tally, true)
                .await?;
            if !(self.source.in_window)() {
                return Err(AssembleError::OutsideWindow);
            }
            let urls = self
                .peers
                .iter()
                .map(|p| format!("{}/cache/{}", p.trim_end_matches('/'), c.sha256))
                .chain(
                    r.chunk_urls
                        .iter()
                        .map(|u| format!("{}/{}", u.trim_end_matches('/'), c.sha256)),
                )
                .collect();
            let fetched = (self.source.fetch)(super::ChunkFetch {
                sha256: c.sha256.clone(),
                size,
                urls,
                label: format!("firmware-{}", r.version),
            })
            .await
            .map_err(|detail| AssembleError::Fetch { idx: i, detail })?;
            let from = Local {
                file: fetched,
                offset: 0,
            };
            let (f, sha, to) = (file.clone(), c.sha256.clone(), at[i]);
            if !blocking(move || copy_local(&from, &f, to, size, &sha)).await? {
                return Err(AssembleError::Fetch {
                    idx: i,
                    detail: "the cache's copy does not match its SHA-256".into(),
                });
            }
            group.push(idx);
            group_bytes += size;
            self.record(&file, &mut group, &mut group_bytes, &mut tally, false)
                .await?;
            local.entry(c.sha256.clone()).or_insert(Local {
                file: self.bundle.to_path_buf(),
                offset: at[i],
            });
        }
        self.record(&file, &mut group, &mut group_bytes, &mut tally, true)
            .await?;
        Ok(tally)
    }

    /// Syncs the file, then records the group's chunks.
    async fn record(
        &self,
        file: &Arc<std::fs::File>,
        group: &mut Vec<u32>,
        bytes: &mut u64,
        tally: &mut Tally,
        local: bool,
    ) -> Result<(), AssembleError> {
        if group.is_empty() {
            return Ok(());
        }
        let f = file.clone();
        blocking(move || f.sync_data().map_err(io("syncing the bundle file"))).await?;
        let (idx, n, local_bytes) = (
            std::mem::take(group),
            *bytes,
            if local { *bytes } else { 0 },
        );
        let count = idx.len() as u32;
        self.store
            .write(move |tx| progress::record_chunks(tx, &idx, local_bytes))
            .await?;
        tally.chunks_done += count;
        tally.bytes_done += n;
        tally.bytes_local += local_bytes;
        *bytes = 0;
        (self.on_progress)(*tally);
        Ok(())
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AssembleError> + Send + 'static,
) -> Result<T, AssembleError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AssembleError::Io {
            what: "a file task".into(),
            source: std::io::Error::other(e.to_string()),
        })?
}

/// Copies `size` bytes from `from` to `to` at `at` if they hash to `sha`; false
/// (nothing written) if they do not.
fn copy_local(
    from: &Local,
    to: &std::fs::File,
    at: u64,
    size: u64,
    sha: &str,
) -> Result<bool, AssembleError> {
    let src =
        std::fs::File::open(&from.file).map_err(io(format!("opening {}", from.file.display())))?;
    let mut buf = vec![0u8; size as usize];
    if src.read_exact_at(&mut buf, from.offset).is_err() {
        return Ok(false);
    }
    let found = cartable_protocol::desired::hex(digest::digest(&digest::SHA256, &buf).as_ref());
    if found != sha {
        return Ok(false);
    }
    to.write_all_at(&buf, at)
        .map_err(io("writing the bundle file"))?;
    Ok(true)
}

/// Checks the whole bundle's SHA-256; on a mismatch, the chunks whose bytes are
/// wrong (to be forgotten and fetched again).
pub(crate) async fn check_whole(
    r: &Release,
    bundle: &Path,
) -> Result<Result<(), Vec<u32>>, AssembleError> {
    let (r, path) = (r.clone(), bundle.to_path_buf());
    blocking(move || {
        let f = std::fs::File::open(&path).map_err(io(format!("opening {}", path.display())))?;
        let mut whole = digest::Context::new(&digest::SHA256);
        let mut bad = Vec::new();
        let mut at = 0u64;
        let mut buf = Vec::new();
        for (i, c) in r.chunks.iter().enumerate() {
            buf.resize(c.size as usize, 0);
            f.read_exact_at(&mut buf, at)
                .map_err(io(format!("reading {}", path.display())))?;
            whole.update(&buf);
            let found =
                cartable_protocol::desired::hex(digest::digest(&digest::SHA256, &buf).as_ref());
            if found != c.sha256 {
                bad.push(i as u32);
            }
            at += u64::from(c.size);
        }
        let found = cartable_protocol::desired::hex(whole.finish().as_ref());
        if found == r.bundle.sha256 {
            Ok(Ok(()))
        } else {
            Ok(Err(bad))
        }
    })
    .await
}
