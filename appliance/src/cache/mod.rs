//! The app and update cache: objects fetched once over the weak link, verified, and
//! served on the LAN.
//!
//! [`Cache`] ties the parts together: the content-addressed files ([`objects`]), their
//! index and quota ([`index`]), the catalogue in force ([`catalogue`]), downloads
//! ([`fill`]: one per object however many tablets wait for it), the prefetcher
//! ([`prefetch`]), the HTTP side ([`serve`]) and DNS redirect mode ([`redirect`]);
//! the daily removal of what writes and downloads left behind ([`clean`]).

pub(crate) mod catalogue;
pub mod clean;
pub(crate) mod fill;
pub(crate) mod index;
pub mod objects;
pub(crate) mod offered;
pub(crate) mod origin;
pub(crate) mod prefetch;
pub(crate) mod redirect;
pub(crate) mod sendfile;
pub(crate) mod serve;

/// The cache's routes: objects by hash, catalogue items by name, and the item list.
/// (Redirect mode and the `sendfile` path are mounted by `app`: [`redirect::wrap`]
/// and [`sendfile::Sendfile`].)
pub fn routes(cache: std::sync::Arc<Cache>) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/cache/{sha256}", get(serve::object))
        .route("/api/v1/cache", get(serve::items))
        .route("/cache/items/{id}", get(serve::item))
        .route("/cache/items/{id}/{version}", get(serve::item))
        .with_state(cache)
}

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use cartable_protocol::desired::{Catalogue, CatalogueItem};
use cartable_protocol::status::{CacheDownload, CacheStatus};
use tokio::sync::Notify;

use crate::config::CacheConfig;
use crate::store::Store;
use fill::{Fill, FillState};
use objects::{Objects, Sha256};
use origin::Origins;

#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    #[error(
        "no room for {need} bytes: the cache holds {used} of its {quota}-byte quota, \
         {free} bytes are free on the disk and {reserve} must stay free, and nothing \
         more can be evicted (the rest is pinned or being fetched)"
    )]
    Full {
        need: u64,
        used: u64,
        quota: u64,
        free: u64,
        reserve: u64,
    },
    #[error("cannot measure the free space: {0}")]
    Io(#[from] std::io::Error),
    #[error("the index: {0}")]
    Store(#[from] crate::store::StoreError),
}

#[derive(Default)]
struct Room {
    /// Bytes of the objects held.
    used: u64,
    /// Bytes promised to downloads in progress.
    reserved: u64,
}

/// An object the cache fetches when a client asks for it.
pub(crate) struct Wanted {
    pub(crate) item: CatalogueItem,
    /// A release's chunk for another box: paced and under the windows, like the
    /// box's own chunks.
    pub(crate) chunk: bool,
}

/// Where the catalogue comes from, so that it can be read again when it changes.
/// What the cache is built with, besides its own `[cache]` section.
pub struct CacheDeps {
    pub data_dir: PathBuf,
    pub store: Store,
    /// School-local time, for the prefetcher's windows.
    pub zone: jiff::tz::TimeZone,
    /// Looks origins up past the box's own DNS answers.
    pub resolver: Option<origin::Resolver>,
    /// The pinned fleet key: a catalogue from the central side is verified again.
    pub fleet_key: Option<Vec<u8>>,
}

impl Cache {
    /// Whether a catalogue from the central side can be stored (ids, URLs, hashes).
    pub fn check_catalogue(&self, c: &Catalogue) -> Result<(), String> {
        catalogue::check("catalogue", c).map_err(|e| e.to_string())
    }
}

impl CacheConfig {
    pub fn build(&self, deps: CacheDeps) -> anyhow::Result<Arc<Cache>> {
        let tls = crate::base::tls::client_config(self.ca_file.as_ref().map(|p| p.as_path()))
            .map_err(|e| tracing::warn!(error = %e, "HTTPS origins are off"))
            .ok();
        let origins = Origins::new(
            tls,
            deps.resolver,
            std::time::Duration::from_secs(self.stall_secs.max(1)),
        );
        let source = CatalogueSource {
            fleet_key: deps.fleet_key,
            file: self.catalogue.as_ref().map(|p| p.as_path().to_path_buf()),
        };
        Cache::open(
            &deps.data_dir,
            deps.store,
            self.clone(),
            deps.zone,
            origins,
            source,
        )
    }
}

pub struct CatalogueSource {
    pub fleet_key: Option<Vec<u8>>,
    pub file: Option<PathBuf>,
}

/// Why an item's last download failed, and when it may be tried again.
#[derive(Debug, Clone)]
pub struct Failure {
    pub error: String,
    pub retry_at: std::time::Instant,
}

pub struct Cache {
    pub objects: Objects,
    store: Store,
    config: CacheConfig,
    zone: jiff::tz::TimeZone,
    pub(crate) origins: Origins,
    source: CatalogueSource,
    catalogue: ArcSwap<Catalogue>,
    fills: Mutex<HashMap<String, Arc<Fill>>>,
    room: Mutex<Room>,
    /// Objects served since the index last heard: their last access is written in
    /// batches, off the serving path.
    touched: Mutex<Vec<String>>,
    pub(crate) failures: Mutex<HashMap<String, Failure>>,
    /// Wakes the prefetcher (a new catalogue, a failed fill to retry).
    pub wake: Notify,
    /// DNS redirect mode: host -> origin name.
    pub redirect_hosts: HashMap<String, String>,
    /// The index's references match the catalogue in force.
    refs_written: std::sync::atomic::AtomicBool,
    /// The signed release's chunks, fetched for the site's other boxes.
    offered: ArcSwap<offered::Offered>,
}

impl Cache {
    /// Opens the objects under `data_dir/cache` and reads the catalogue in force; the
    /// index is brought in line with the files by [`Cache::reconcile`].
    pub fn open(
        data_dir: &std::path::Path,
        store: Store,
        config: CacheConfig,
        zone: jiff::tz::TimeZone,
        origins: Origins,
        source: CatalogueSource,
    ) -> anyhow::Result<Arc<Cache>> {
        use anyhow::Context;
        let objects = Objects::open(data_dir)
            .with_context(|| format!("opening the cache in {}", data_dir.display()))?;
        let first = catalogue::current(&store, source.fleet_key.as_deref(), source.file.as_deref())
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "the catalogue cannot be read; the cache serves what it holds");
                Catalogue::default()
            });
        let redirect_hosts = redirect::host_map(&config.redirect);
        Ok(Arc::new(Cache {
            redirect_hosts,
            objects,
            store,
            config,
            zone,
            origins,
            source,
            catalogue: ArcSwap::from_pointee(first),
            fills: Mutex::new(HashMap::new()),
            room: Mutex::new(Room::default()),
            touched: Mutex::new(Vec::new()),
            failures: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            refs_written: std::sync::atomic::AtomicBool::new(false),
            offered: ArcSwap::from_pointee(offered::Offered::default()),
        }))
    }

    /// Makes the index list exactly the files on disk and counts the bytes held.
    pub async fn reconcile(self: &Arc<Self>) -> Result<(), crate::store::StoreError> {
        let cache = self.clone();
        let used = self
            .store
            .write(move |tx| index::reconcile(tx, &cache.objects, now_ms()))
            .await?;
        if let Ok(mut r) = self.room.lock() {
            r.used = used;
        }
        Ok(())
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn catalogue(&self) -> Arc<Catalogue> {
        self.catalogue.load_full()
    }

    /// Reads the catalogue in force again; when it changed, rewrites the index's
    /// references and wakes the prefetcher. A broken catalogue keeps the last good one.
    pub async fn refresh_catalogue(&self) {
        let store = self.store.clone();
        let key = self.source.fleet_key.clone();
        let file = self.source.file.clone();
        let read = tokio::task::spawn_blocking(move || {
            catalogue::current(&store, key.as_deref(), file.as_deref())
        })
        .await;
        let fresh = match read {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the catalogue cannot be read; keeping the one in force");
                return;
            }
            Err(_) => return,
        };
        let written = self.refs_written.load(std::sync::atomic::Ordering::Relaxed);
        if written && *self.catalogue.load_full() == fresh {
            return;
        }
        let refs: Vec<(String, String, String, bool)> = fresh
            .items
            .iter()
            .map(|i| {
                (
                    i.id.clone(),
                    i.version.clone(),
                    i.sha256.to_ascii_lowercase(),
                    i.pinned,
                )
            })
            .collect();
        if let Err(e) = self.store.write(move |tx| index::set_refs(tx, &refs)).await {
            tracing::error!(error = %e, "cannot record the catalogue's references");
            return;
        }
        self.refs_written
            .store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(items = fresh.items.len(), "catalogue in force");
        self.catalogue.store(Arc::new(fresh));
        self.wake.notify_one();
    }

    /// What `sha` is, when the cache may fetch it for a client that asks: an item
    /// of the catalogue, or a chunk of the release on offer to the site's boxes.
    pub(crate) fn wanted(&self, sha: &Sha256) -> Option<Wanted> {
        if let Some(item) = self
            .catalogue
            .load()
            .items
            .iter()
            .find(|i| i.sha256.eq_ignore_ascii_case(sha.as_str()))
        {
            return Some(Wanted {
                item: item.clone(),
                chunk: false,
            });
        }
        let item = self.offered.load().item(sha.as_str())?;
        Some(Wanted { item, chunk: true })
    }

    /// Offers the chunks of `release` (the signed one the box stored) to the site's
    /// other boxes; none withdraws the offer.
    pub(crate) fn offer(&self, release: Option<&cartable_protocol::release::Release>) {
        if !self.offered.load().is_of(release) {
            self.offered.store(Arc::new(offered::Offered::of(release)));
        }
    }

    /// Notes that an object was served (its last access goes to the index later).
    pub fn touch(&self, sha: &Sha256) {
        if let Ok(mut t) = self.touched.lock()
            && t.len() < 100_000
        {
            t.push(sha.as_str().to_string());
        }
    }

    /// Writes the last accesses noted since the previous call.
    pub async fn flush_touches(&self) {
        let batch = match self.touched.lock() {
            Ok(mut t) if !t.is_empty() => std::mem::take(&mut *t),
            _ => return,
        };
        let at = now_ms();
        if let Err(e) = self
            .store
            .write(move |tx| index::touch(tx, &batch, at))
            .await
        {
            tracing::warn!(error = %e, "cannot record the cache's last accesses");
        }
    }

    /// The download of `item`'s object: the one in progress, or a new one. Every
    /// caller shares it, so one object is fetched once however many wait.
    pub fn fill(self: &Arc<Self>, item: &CatalogueItem, paced: bool) -> Arc<Fill> {
        // The prefetcher evicts only for what must be held; a tablet's request may.
        let evict = !paced || self.is_pinned(&item.sha256);
        self.fill_with(item, paced, evict, true)
    }

    /// The download of a release's chunk another box asked for: paced and evicting
    /// like the box's own chunks ([`Cache::fetch_object`]), shared with them.
    pub(crate) fn fill_chunk(self: &Arc<Self>, item: &CatalogueItem) -> Arc<Fill> {
        self.fill_with(item, true, true, false)
    }

    /// Fetches an object no catalogue names (a firmware release's chunk): paced like
    /// the prefetcher (its rate cap), evicting like a pinned item (the update must
    /// be held). The verified file's path, once it is in place.
    pub async fn fetch_object(
        self: &Arc<Self>,
        sha256: &str,
        size: u64,
        urls: Vec<String>,
        label: &str,
    ) -> Result<PathBuf, String> {
        let sha = Sha256::parse(sha256).ok_or_else(|| format!("`{sha256}` is not a SHA-256"))?;
        let item = CatalogueItem {
            id: label.to_string(),
            version: String::new(),
            urls,
            size,
            sha256: sha.as_str().to_string(),
            pinned: false,
            audience: Vec::new(),
            priority: 0,
        };
        self.fill_chunk(&item)
            .done()
            .await
            .map_err(|e| e.to_string())?;
        Ok(self.objects.path(&sha))
    }

    /// `report`: each object stored or failed goes to the outbox (a catalogue's
    /// items; a release's chunks are reported by the update agent, as a whole).
    fn fill_with(
        self: &Arc<Self>,
        item: &CatalogueItem,
        paced: bool,
        evict: bool,
        report: bool,
    ) -> Arc<Fill> {
        let sha = match Sha256::parse(&item.sha256) {
            Some(s) => s,
            None => return Fill::failed(item, "the catalogue's hash is not a SHA-256"),
        };
        let mut fills = self.fills.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = fills.get(sha.as_str()) {
            return f.clone();
        }
        let fill = Fill::new(item, sha.clone(), self.objects.partial_path(&sha), report);
        fills.insert(sha.as_str().to_string(), fill.clone());
        drop(fills);
        let (cache, f) = (self.clone(), fill.clone());
        tokio::spawn(async move {
            fill::run(&cache, &f, paced, evict).await;
            cache
                .fills
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(f.sha.as_str());
        });
        fill
    }

    /// Bytes written so far when `sha` is being fetched.
    pub fn downloading(&self, sha: &str) -> Option<u64> {
        let fill = self.fills.lock().ok()?.get(sha).cloned()?;
        match fill.state() {
            FillState::Running(n) => Some(n),
            // Every byte in and verified; made durable and renamed into place next.
            FillState::Verified => Some(fill.size),
            _ => None,
        }
    }

    pub fn filling(&self, sha: &str) -> bool {
        self.fills
            .lock()
            .map(|f| f.contains_key(sha))
            .unwrap_or(false)
    }

    /// Promises `need` bytes to a download, evicting (when `evict`) least-recently
    /// used objects that nothing pins until the quota and the disk's reserve both
    /// allow it. The prefetcher does not evict for unpinned items: two of them
    /// competing for the last room would evict each other in turn forever.
    pub async fn make_room(
        self: &Arc<Self>,
        need: u64,
        evict: bool,
    ) -> Result<Reservation, RoomError> {
        self.flush_touches().await;
        let cache = self.clone();
        let (reservation, evicted) =
            tokio::task::spawn_blocking(move || cache.make_room_now(need, evict))
                .await
                .map_err(|e| RoomError::Io(std::io::Error::other(e.to_string())))??;
        if !evicted.is_empty() {
            let list = evicted.clone();
            let at = now();
            let _ = self
                .store
                .write(move |tx| {
                    for (sha, size) in &list {
                        index::remove(tx, sha)?;
                        crate::store::outbox::append(
                            tx,
                            at,
                            &cartable_protocol::events::EventBody::UpdateProgress {
                                item: sha.clone(),
                                state: "evicted".into(),
                                bytes: *size,
                            },
                        )?;
                    }
                    Ok(())
                })
                .await;
        }
        Ok(reservation)
    }

    #[allow(clippy::type_complexity)]
    fn make_room_now(
        self: Arc<Self>,
        need: u64,
        evict: bool,
    ) -> Result<(Reservation, Vec<(String, u64)>), RoomError> {
        let mut room = self.room.lock().unwrap_or_else(|p| p.into_inner());
        let mut evicted = Vec::new();
        let mut candidates: Option<std::vec::IntoIter<index::Row>> = None;
        loop {
            let free = self.objects.free_space()?;
            let quota_ok = room.used + room.reserved + need <= self.config.quota_bytes;
            let disk_ok = free >= self.config.reserve_bytes.saturating_add(need);
            if quota_ok && disk_ok {
                room.reserved += need;
                return Ok((
                    Reservation {
                        cache: Arc::downgrade(&self),
                        bytes: need,
                    },
                    evicted,
                ));
            }
            if candidates.is_none() {
                let list = if evict {
                    self.store.read_blocking(index::evictable)?
                } else {
                    Vec::new()
                };
                candidates = Some(list.into_iter());
            }
            let next = candidates
                .as_mut()
                .and_then(|c| c.find(|r| !self.filling(&r.sha256) && !self.is_pinned(&r.sha256)));
            let Some(victim) = next else {
                return Err(RoomError::Full {
                    need,
                    used: room.used,
                    quota: self.config.quota_bytes,
                    free,
                    reserve: self.config.reserve_bytes,
                });
            };
            if let Some(sha) = Sha256::parse(&victim.sha256) {
                self.objects.remove(&sha)?;
            }
            tracing::info!(sha256 = %victim.sha256, size = victim.size, "evicted from the cache");
            room.used = room.used.saturating_sub(victim.size);
            evicted.push((victim.sha256, victim.size));
        }
    }

    /// Pinned by the catalogue in force (the index's references say the same).
    pub(crate) fn is_pinned(&self, sha: &str) -> bool {
        self.catalogue
            .load()
            .items
            .iter()
            .any(|i| i.pinned && i.sha256.eq_ignore_ascii_case(sha))
    }

    /// Counts a stored object against the quota.
    pub(crate) fn stored(&self, size: u64) {
        if let Ok(mut r) = self.room.lock() {
            r.used += size;
        }
    }

    pub fn used(&self) -> u64 {
        self.room.lock().map(|r| r.used).unwrap_or(0)
    }

    pub fn in_window(&self) -> bool {
        let w = &self.config.windows;
        if w.is_empty() {
            return true;
        }
        let t = crate::base::clock::LocalTime::at(jiff::Timestamp::now(), &self.zone);
        w.iter()
            .any(|w| crate::base::clock::in_window(&w.days, w.from, w.to, t))
    }

    /// What `/api/v1/status` shows of the cache.
    pub fn status(&self) -> CacheStatus {
        let catalogue = self.catalogue.load();
        let present = catalogue
            .items
            .iter()
            .filter(|i| Sha256::parse(&i.sha256).is_some_and(|s| self.objects.contains(&s)))
            .count();
        let downloading = self
            .fills
            .lock()
            .map(|f| {
                f.values()
                    .map(|f| CacheDownload {
                        item: f.item.clone(),
                        version: f.version.clone(),
                        bytes: match f.state() {
                            FillState::Running(n) => n,
                            FillState::Verified | FillState::Done => f.size,
                            FillState::Failed(_) => 0,
                        },
                        size: f.size,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let failures = self.failures.lock().map(|f| f.clone()).unwrap_or_default();
        CacheStatus {
            items: catalogue.items.len() as u32,
            present: present as u32,
            bytes_used: self.used(),
            quota_bytes: self.config.quota_bytes,
            downloading,
            failing: failures.len() as u32,
            last_error: failures.values().next().map(|f| f.error.clone()),
            in_window: self.in_window(),
        }
    }
}

/// Bytes promised to one download; given back when it ends, however it ends.
pub struct Reservation {
    cache: std::sync::Weak<Cache>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(c) = self.cache.upgrade()
            && let Ok(mut r) = c.room.lock()
        {
            r.reserved = r.reserved.saturating_sub(self.bytes);
        }
    }
}

/// Seconds, for the outbox's events.
pub(crate) fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Milliseconds, for the index's last accesses (an LRU needs finer than seconds).
pub(crate) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// A pause between prefetch rounds when there is nothing to do.
pub const IDLE: Duration = Duration::from_secs(30);
