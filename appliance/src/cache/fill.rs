//! One object's download: written to `cache/partial/{sha256}` and hashed as bytes
//! arrive, resumed with a Range request after a cut (the kept bytes hashed again
//! first), checked against the catalogue's SHA-256, then made durable and renamed
//! into place.
//!
//! Tablets that ask for the object meanwhile read the partial file as it grows
//! ([`Fill::reader`]), so a cold download through the box is as fast as a direct one,
//! and the origin sends the object once however many tablets wait. **A reader never
//! receives the object's last byte before the hash verified**: on a mismatch its
//! connection is cut short of the promised length, so no tablet keeps a corrupt file.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cartable_protocol::desired::CatalogueItem;
use cartable_protocol::events::EventBody;
use hyper::body::Bytes;
use ring::digest;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::watch;

use super::objects::{ObjectError, Sha256};
use super::origin::{self, Start};
use super::{Cache, index, now};

/// Where a download is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FillState {
    /// Bytes written so far.
    Running(u64),
    /// Every byte arrived and the hash verified; being made durable and put in place.
    /// Readers may finish from the partial file they hold open.
    Verified,
    /// Verified and in place.
    Done,
    Failed(Arc<str>),
}

pub struct Fill {
    pub sha: Sha256,
    pub size: u64,
    pub item: String,
    pub version: String,
    pub urls: Vec<String>,
    pub partial: PathBuf,
    /// Whether its outcome goes to the outbox.
    pub report: bool,
    state: watch::Sender<FillState>,
}

/// Bytes read from the disk per chunk sent to a reader (one buffer per reader: 200
/// tablets waiting on a cold object hold 200 of them).
const CHUNK: usize = 64 * 1024;
/// Bytes gathered from the origin before each write to the partial file.
const WRITE_BUFFER: usize = 256 * 1024;

impl Fill {
    pub fn new(item: &CatalogueItem, sha: Sha256, partial: PathBuf, report: bool) -> Arc<Fill> {
        Arc::new(Fill {
            sha,
            size: item.size,
            item: item.id.clone(),
            version: item.version.clone(),
            urls: item.urls.clone(),
            partial,
            report,
            state: watch::channel(FillState::Running(0)).0,
        })
    }

    /// A fill that failed before it started.
    pub fn failed(item: &CatalogueItem, why: &str) -> Arc<Fill> {
        let f = Fill::new(item, zero_sha(), PathBuf::new(), false);
        f.state.send_replace(FillState::Failed(why.into()));
        f
    }

    pub fn state(&self) -> FillState {
        self.state.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<FillState> {
        self.state.subscribe()
    }

    /// Waits for the end: `Ok` once the object is in place.
    pub async fn done(&self) -> Result<(), Arc<str>> {
        let mut rx = self.subscribe();
        loop {
            match rx.borrow_and_update().clone() {
                FillState::Done => return Ok(()),
                FillState::Failed(why) => return Err(why),
                FillState::Running(_) | FillState::Verified => {}
            }
            if rx.changed().await.is_err() {
                return Err("the download stopped".into());
            }
        }
    }

    /// The bytes `start..=end` as they arrive, the last one only after the hash
    /// verified; an error (the response is cut) if the download fails.
    pub fn reader(
        self: &Arc<Self>,
        objects_path: PathBuf,
        start: u64,
        end: u64,
    ) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let state = Reader {
            fill: self.clone(),
            rx: self.subscribe(),
            file: None,
            on_object: false,
            object_path: objects_path,
            pos: start,
            end_excl: end + 1,
            buf: vec![0u8; CHUNK],
        };
        futures_util::stream::unfold(state, |mut r| async move {
            match r.next().await {
                Ok(Some(b)) => Some((Ok(b), r)),
                Ok(None) => None,
                Err(e) => {
                    // End the stream after the error.
                    r.pos = r.end_excl;
                    Some((Err(e), r))
                }
            }
        })
    }
}

fn zero_sha() -> Sha256 {
    Sha256::parse("0000000000000000000000000000000000000000000000000000000000000000")
        .expect("64 hex digits parse")
}

struct Reader {
    fill: Arc<Fill>,
    rx: watch::Receiver<FillState>,
    file: Option<tokio::fs::File>,
    on_object: bool,
    object_path: PathBuf,
    pos: u64,
    end_excl: u64,
    buf: Vec<u8>,
}

impl Reader {
    async fn next(&mut self) -> std::io::Result<Option<Bytes>> {
        loop {
            if self.pos >= self.end_excl {
                return Ok(None);
            }
            let state = self.rx.borrow_and_update().clone();
            let available = match state {
                FillState::Running(n) => n.min(self.fill.size.saturating_sub(1)),
                // Every byte is there and verified; a reader not reading yet opens
                // the partial file below (or the object, once renamed).
                FillState::Verified => self.fill.size,
                FillState::Done => {
                    if !self.on_object {
                        // The same bytes, now verified and in place.
                        let mut f = tokio::fs::File::open(&self.object_path).await?;
                        f.seek(SeekFrom::Start(self.pos)).await?;
                        self.file = Some(f);
                        self.on_object = true;
                    }
                    self.fill.size
                }
                FillState::Failed(why) => {
                    return Err(std::io::Error::other(format!(
                        "the download from the origin failed: {why}"
                    )));
                }
            };
            if self.pos < available {
                if self.file.is_none() {
                    match tokio::fs::File::open(&self.fill.partial).await {
                        Ok(mut f) => {
                            f.seek(SeekFrom::Start(self.pos)).await?;
                            self.file = Some(f);
                        }
                        Err(_) => {
                            // Not there yet, or already renamed: wait for news.
                            if self.rx.changed().await.is_err() {
                                return Err(std::io::Error::other("the download stopped"));
                            }
                            continue;
                        }
                    }
                }
                let want = (available.min(self.end_excl) - self.pos).min(CHUNK as u64) as usize;
                let file = self
                    .file
                    .as_mut()
                    .ok_or_else(|| std::io::Error::other("no file"))?;
                let n = file.read(&mut self.buf[..want]).await?;
                if n == 0 {
                    // Truncated under us (an origin that ignored Range): read again.
                    self.file = None;
                    if self.rx.changed().await.is_err() {
                        return Err(std::io::Error::other("the download stopped"));
                    }
                    continue;
                }
                self.pos += n as u64;
                return Ok(Some(Bytes::copy_from_slice(&self.buf[..n])));
            }
            if self.rx.changed().await.is_err() {
                return Err(std::io::Error::other("the download stopped"));
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Origin(#[from] origin::OriginError),
    #[error("the partial file: {0}")]
    Io(#[from] std::io::Error),
    #[error("the origin sent more than the catalogue's {0} bytes")]
    TooLong(u64),
    #[error("cut at {have} of {size} bytes")]
    Cut { have: u64, size: u64 },
    #[error(transparent)]
    Object(#[from] ObjectError),
}

/// Runs one download to its end and records the outcome.
#[tracing::instrument(skip_all, fields(item = %fill.item, version = %fill.version, sha256 = %fill.sha.as_str(), size = fill.size))]
pub(crate) async fn run(cache: &Arc<Cache>, fill: &Arc<Fill>, paced: bool, evict: bool) {
    if cache.objects.contains(&fill.sha) {
        fill.state.send_replace(FillState::Done);
        return;
    }
    let have = tokio::fs::metadata(&fill.partial)
        .await
        .map(|m| m.len())
        .unwrap_or(0)
        .min(fill.size);
    let reservation = match cache.make_room(fill.size - have, evict).await {
        Ok(r) => r,
        Err(e) => {
            fail(cache, fill, e.to_string()).await;
            return;
        }
    };
    let mut last = String::from("the catalogue gives no URL");
    for url in &fill.urls {
        match attempt(cache, fill, url, paced).await {
            Ok(size) => {
                cache.stored(size);
                drop(reservation);
                let (sha, item, report) = (fill.sha.clone(), fill.item.clone(), fill.report);
                let recorded = cache
                    .store
                    .write(move |tx| {
                        let at = now();
                        index::insert(tx, &sha, size, super::now_ms(), None)?;
                        if report {
                            crate::store::outbox::append(
                                tx,
                                at,
                                &EventBody::UpdateProgress {
                                    item,
                                    state: "stored".into(),
                                    bytes: size,
                                },
                            )?;
                        }
                        Ok(())
                    })
                    .await;
                if let Err(e) = recorded {
                    // The file is in place; the next start indexes it.
                    tracing::error!(error = %e, "cannot index a stored object");
                }
                if let Ok(mut f) = cache.failures.lock() {
                    f.remove(fill.sha.as_str());
                }
                tracing::info!(url, "stored in the cache");
                fill.state.send_replace(FillState::Done);
                return;
            }
            Err(e) => {
                tracing::warn!(url, error = %e, "download failed");
                last = format!("{url}: {e}");
                if let AttemptError::Io(io) = &e
                    && io.raw_os_error() == Some(nix::libc::ENOSPC)
                {
                    // A full disk keeps nothing half-written.
                    let _ = tokio::fs::remove_file(&fill.partial).await;
                    last = format!("the disk is full: {io}");
                    break;
                }
            }
        }
    }
    drop(reservation);
    fail(cache, fill, last).await;
}

async fn fail(cache: &Cache, fill: &Fill, why: String) {
    tracing::warn!(error = %why, "not stored");
    if fill.report {
        let (item, have) = (
            fill.item.clone(),
            match fill.state() {
                FillState::Running(n) => n,
                _ => 0,
            },
        );
        let _ = cache
            .store
            .write(move |tx| {
                crate::store::outbox::append(
                    tx,
                    now(),
                    &EventBody::UpdateProgress {
                        item,
                        state: "failed".into(),
                        bytes: have,
                    },
                )?;
                Ok(())
            })
            .await;
    }
    fill.state.send_replace(FillState::Failed(why.into()));
}

// Long: one download attempt from resume point to verified rename, in order; the
// steps share the partial file, the hash context and the progress channel.
async fn attempt(
    cache: &Arc<Cache>,
    fill: &Arc<Fill>,
    url: &str,
    paced: bool,
) -> Result<u64, AttemptError> {
    let stall = Duration::from_secs(cache.config.stall_secs.max(1));
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&fill.partial)
        .await?;
    let mut have = file.metadata().await?.len();
    if have > fill.size {
        file.set_len(0).await?;
        have = 0;
    }
    // The hash is computed as bytes arrive (the bytes of an earlier attempt first),
    // so that the end of a download costs no second reading of the file.
    let mut hash = if have > 0 {
        let path = fill.partial.clone();
        tokio::task::spawn_blocking(move || hash_prefix(&path, have))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??
    } else {
        digest::Context::new(&digest::SHA256)
    };
    if have < fill.size {
        let response = cache.origins.get(url, have, &[]).await?;
        if response.start == Start::Whole && have > 0 {
            tracing::info!(
                have,
                "the origin ignored the range: fetching the whole object"
            );
            file.set_len(0).await?;
            have = 0;
            hash = digest::Context::new(&digest::SHA256);
        } else if have > 0 {
            tracing::info!(from = have, "resuming");
        }
        fill.state.send_replace(FillState::Running(have));
        file.seek(SeekFrom::Start(have)).await?;
        let mut body = response.body;
        let mut buf: Vec<u8> = Vec::with_capacity(WRITE_BUFFER);
        let mut flushed = have;
        loop {
            let chunk = match origin::next_chunk(&mut body, stall).await {
                Ok(c) => c,
                Err(e) => {
                    // Keep what arrived for the next attempt's Range.
                    file.write_all(&buf).await?;
                    file.sync_data().await?;
                    return Err(e.into());
                }
            };
            let Some(chunk) = chunk else { break };
            if flushed + (buf.len() + chunk.len()) as u64 > fill.size {
                drop(file);
                let _ = tokio::fs::remove_file(&fill.partial).await;
                return Err(AttemptError::TooLong(fill.size));
            }
            hash.update(&chunk);
            buf.extend_from_slice(&chunk);
            if buf.len() >= WRITE_BUFFER {
                file.write_all(&buf).await?;
                flushed += buf.len() as u64;
                if paced {
                    cache.pace(buf.len()).await;
                }
                buf.clear();
                fill.state.send_replace(FillState::Running(flushed));
            }
        }
        file.write_all(&buf).await?;
        flushed += buf.len() as u64;
        have = flushed;
        if have < fill.size {
            fill.state.send_replace(FillState::Running(flushed));
            file.sync_data().await?;
            return Err(AttemptError::Cut {
                have,
                size: fill.size,
            });
        }
    }
    let found = cartable_protocol::desired::hex(hash.finish().as_ref());
    if found != fill.sha.as_str() {
        drop(file);
        let _ = tokio::fs::remove_file(&fill.partial).await;
        return Err(ObjectError::Mismatch {
            expected: fill.sha.as_str().to_string(),
            found,
        }
        .into());
    }
    // Readers may take the last bytes now; durability and the rename follow.
    fill.state.send_replace(FillState::Verified);
    file.sync_data().await?;
    drop(file);
    let (objects_cache, partial, sha) = (cache.clone(), fill.partial.clone(), fill.sha.clone());
    tokio::task::spawn_blocking(move || objects_cache.objects.place(&partial, &sha))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
    Ok(fill.size)
}

/// The hash context after the first `len` bytes of `path`.
fn hash_prefix(path: &std::path::Path, len: u64) -> std::io::Result<digest::Context> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?.take(len);
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(ctx);
        }
        ctx.update(&buf[..n]);
    }
}

impl Cache {
    /// Waits as long as `bytes` take at the prefetcher's rate cap.
    pub(crate) async fn pace(&self, bytes: usize) {
        if self.config.rate_limit > 0 {
            tokio::time::sleep(Duration::from_secs_f64(
                bytes as f64 / self.config.rate_limit as f64,
            ))
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Cache, CacheDeps};
    use crate::config::CacheConfig;
    use cartable_protocol::desired::CatalogueItem;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A real HTTP/1.1 origin on loopback serving `body`, honouring `Range: bytes=N-`;
    /// its first answer is cut after `cut` bytes. Counts the bytes it sent.
    async fn origin(body: Vec<u8>, cut: usize) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/app.apk", listener.local_addr().unwrap());
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = sent.clone();
        tokio::spawn(async move {
            let mut first = true;
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut b).await.unwrap_or(0) == 1 {
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let from: usize = head
                    .split("range: bytes=")
                    .nth(1)
                    .and_then(|r| r.split('-').next()?.parse().ok())
                    .unwrap_or(0);
                let part = &body[from..];
                let status = if from > 0 {
                    format!(
                        "206 Partial Content\r\nContent-Range: bytes {from}-{}/{}",
                        body.len() - 1,
                        body.len()
                    )
                } else {
                    "200 OK".to_string()
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    part.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
                let n = if std::mem::take(&mut first) {
                    cut.min(part.len())
                } else {
                    part.len()
                };
                let _ = conn.write_all(&part[..n]).await;
                counter.fetch_add(n, Ordering::Relaxed);
            }
        });
        (url, sent)
    }

    fn cache(dir: &std::path::Path) -> Arc<Cache> {
        let store = crate::store::Store::open(dir).unwrap();
        let config = CacheConfig {
            reserve_bytes: 0,
            stall_secs: 5,
            ..CacheConfig::default()
        };
        config
            .build(CacheDeps {
                data_dir: dir.to_path_buf(),
                store,
                zone: jiff::tz::TimeZone::UTC,
                resolver: None,
                fleet_key: None,
            })
            .unwrap()
    }

    fn item(url: &str, body: &[u8], sha: &str) -> CatalogueItem {
        CatalogueItem {
            id: "app".into(),
            version: "1".into(),
            urls: vec![url.into()],
            size: body.len() as u64,
            sha256: sha.into(),
            pinned: true,
            audience: Vec::new(),
            priority: 0,
        }
    }

    fn sha256(b: &[u8]) -> String {
        digest::digest(&digest::SHA256, b)
            .as_ref()
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    }

    /// A download cut midway fails, keeps its partial file, and the next fill asks
    /// only for the rest (Range), verifies and stores the object: the origin sends
    /// each byte once.
    #[tokio::test]
    async fn a_cut_download_resumes_where_it_stopped_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let body: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (url, sent) = origin(body.clone(), 100_000).await;
        let cache = cache(dir.path());
        let it = item(&url, &body, &sha256(&body));
        assert!(cache.fill(&it, false).done().await.is_err(), "cut short");
        let again = cache.fill(&it, false);
        again.done().await.unwrap();
        let sha = Sha256::parse(&it.sha256).unwrap();
        assert!(cache.objects.contains(&sha));
        assert_eq!(
            sent.load(Ordering::Relaxed),
            body.len(),
            "each byte sent once"
        );
    }

    /// A body that does not match the catalogue's hash never becomes an object.
    #[tokio::test]
    async fn a_body_with_the_wrong_hash_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let body = vec![42u8; 50_000];
        let (url, _) = origin(body.clone(), usize::MAX).await;
        let cache = cache(dir.path());
        let it = item(&url, &body, &sha256(b"something else"));
        let why = cache.fill(&it, false).done().await.unwrap_err();
        assert!(why.contains("SHA-256") || why.contains("hash"), "{why}");
        assert!(!cache.objects.contains(&Sha256::parse(&it.sha256).unwrap()));
    }
}
