//! Store-and-forward to the central side over MQTT.
//!
//! Producers write events into the [`outbox`] in their own transactions; this service
//! keeps one connection to the broker while the uplink is up, drains the outbox in
//! sequence order in compressed batches (rows deleted only after the broker's PUBACK),
//! publishes the box's retained presence and state, and takes in signed desired state
//! ([`desired`]). A link-down from the uplink watcher drops the connection at once;
//! link-up reconnects at once.
//!
//! Everything published is sealed with the box's own key ([`box_key`]) and stamped
//! with the connection's session number, so the central side stores only what this
//! box sent, and tells an old retained presence or state, replayed, from a new one.

pub mod box_key;
pub(crate) mod desired;
pub(crate) mod link;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cartable_protocol::desired::Catalogue;
use cartable_protocol::events::{Batch, Presence, ReportedState};
use cartable_protocol::sealed::{self, LAST_IN_SESSION};
use cartable_protocol::status::{LinkState, SyncStatus, UplinkState, UplinkStatus};
use cartable_protocol::topics;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::base::backoff::Backoff;
use crate::base::clock::{Clock, in_window};
use crate::config::SyncConfig;
use crate::filter::policy::PolicyConfig;
use crate::store::{Store, outbox};
use crate::supervisor::{Service, ServiceCtx, ServiceFuture};

/// Batches in flight before waiting for the oldest one's ack.
const WINDOW: usize = 4;
/// Most events in one batch.
const BATCH_ROWS: usize = 5_000;
/// An idle drainer with nothing unsent waits for an append this long at most (a
/// safety net: appends wake it).
const IDLE_WAIT: Duration = Duration::from_secs(60);
/// A PUBACK slower than this means the connection is gone.
const ACK_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Default)]
struct LinkInfo {
    state: LinkState,
    last_error: Option<String>,
}

/// What the status page reads of the sync service.
#[derive(Clone)]
pub struct SyncView {
    rx: watch::Receiver<LinkInfo>,
    broker: Option<String>,
    box_key: String,
}

impl SyncView {
    /// Where the MQTT link is now.
    pub(crate) fn link_state(&self) -> LinkState {
        self.rx.borrow().state
    }

    /// Calls `then` each time the link comes up again after being down: the uplink
    /// is back, so what waits for it (a firmware download in its backoff after a
    /// long cut) may try now rather than at its next attempt. Ends with the sync.
    pub(crate) async fn on_reconnect(mut self, then: impl Fn()) {
        let mut was = self.rx.borrow_and_update().state;
        while self.rx.changed().await.is_ok() {
            let now = self.rx.borrow_and_update().state;
            if now == LinkState::Connected && was != LinkState::Connected {
                then();
            }
            was = now;
        }
    }
}

/// The link's state and the backlog, for `/api/v1/status`.
pub(crate) async fn status(view: &SyncView, store: &Store) -> SyncStatus {
    let info = view.rx.borrow().clone();
    SyncStatus {
        link: info.state,
        broker: view.broker.clone(),
        box_key: Some(view.box_key.clone()),
        backlog: store.read(outbox::backlog).await.unwrap_or_default(),
        last_error: info.last_error,
    }
}

pub struct SyncService {
    config: SyncConfig,
    identity: desired::Identity,
    data_dir: PathBuf,
    clock: Clock,
    store: Store,
    sinks: Sinks,
    uplink: watch::Receiver<UplinkStatus>,
    info: watch::Sender<LinkInfo>,
    firmware: String,
    inventory: Option<Inventory>,
    started: Instant,
    /// The current connection's session number (see [`next_session`]).
    session: AtomicU64,
}

/// Where verified desired state goes, handed in by `app`: the sync knows no other
/// service.
#[derive(Clone, Default)]
pub struct Sinks {
    /// Compiles policies against the lists in service; the closure it returns puts
    /// them in force (called once they are stored). `None`: policies are only stored.
    pub policies: Option<PolicySink>,
    /// Checks a catalogue before it is stored.
    pub check_catalogue: Option<CatalogueCheck>,
    /// Told when a new catalogue is in force (the cache fetches it at once).
    pub catalogue_applied: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Told when a new release is stored (the update agent takes it at once).
    pub release_applied: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// See [`Sinks::check_catalogue`].
pub(crate) type CatalogueCheck = Arc<dyn Fn(&Catalogue) -> Result<(), String> + Send + Sync>;

/// See [`Sinks::policies`].
pub(crate) type PolicySink =
    Arc<dyn Fn(Vec<PolicyConfig>) -> Result<Box<dyn FnOnce() + Send>, String> + Send + Sync>;

/// What the sync service is built with, besides its own `[sync]` section.
pub struct SyncDeps {
    pub store: Store,
    /// The box's site and id (`[appliance]`), and the pinned fleet key.
    pub identity: desired::Identity,
    /// The disk whose free space is reported.
    pub data_dir: PathBuf,
    /// School-local time, for the rate limit's hours.
    pub clock: Clock,
    pub uplink: watch::Receiver<UplinkStatus>,
    pub sinks: Sinks,
    /// The firmware version running, as the presence and state report it (the fleet's
    /// rollouts read it).
    pub firmware: String,
    /// The box's tablets for the state message (the hub's, wired by `app`).
    pub inventory: Option<Inventory>,
}

/// Lists the box's tablets for the fleet's inventory.
pub(crate) type Inventory = Arc<
    dyn Fn() -> std::pin::Pin<
            Box<
                dyn std::future::Future<Output = Vec<cartable_protocol::events::DeviceReport>>
                    + Send,
            >,
        > + Send
        + Sync,
>;

impl SyncConfig {
    pub fn build(&self, deps: SyncDeps) -> (SyncService, SyncView) {
        let (info, rx) = watch::channel(LinkInfo::default());
        let broker = self.broker.clone().map(String::from);
        let box_key = cartable_protocol::desired::hex(
            ring::signature::KeyPair::public_key(deps.identity.box_key.as_ref()).as_ref(),
        );
        (
            SyncService {
                config: self.clone(),
                identity: deps.identity,
                data_dir: deps.data_dir,
                clock: deps.clock,
                store: deps.store,
                sinks: deps.sinks,
                uplink: deps.uplink,
                info,
                firmware: deps.firmware,
                inventory: deps.inventory,
                started: Instant::now(),
                session: AtomicU64::new(0),
            },
            SyncView {
                rx,
                broker,
                box_key,
            },
        )
    }
}

/// What [`SyncService::publish_next`] did.
enum Next {
    /// A batch through this sequence number is on its way.
    Sent(u64, link::Ack),
    /// The rows are too few and too young: wait this long, or for more rows.
    Wait(Duration),
    Empty,
}

/// Whether `rows` unsent rows of `bytes` bytes (before compression), the oldest `age`
/// seconds old, make a batch now: when full, or when the oldest has waited
/// `max_age` seconds. Else how long until it has.
fn batch_due(
    rows: usize,
    bytes: usize,
    age: u32,
    max_bytes: usize,
    max_age: u32,
) -> Result<(), Duration> {
    if rows >= BATCH_ROWS || bytes >= max_bytes || age >= max_age {
        Ok(())
    } else {
        Err(Duration::from_secs(u64::from(max_age - age)))
    }
}

enum End {
    Shutdown,
    UplinkDown,
    Lost(String),
}

/// A session number greater than every one before it: the clock's seconds when it is
/// ahead (a box restored from an old backup still moves forward), else the last one
/// plus one (a box whose clock starts in 1970 too).
fn next_session(t: &rusqlite::Transaction<'_>, now: i64) -> Result<u64, crate::store::StoreError> {
    let next = (outbox::counter(t, "session")? + 1).max(now);
    outbox::set_counter(t, "session", next)?;
    Ok(next as u64)
}

impl SyncService {
    /// `body` for `topic`, sealed with the box's key and stamped `n` in this session.
    fn seal(&self, topic: &str, n: u64, body: &[u8]) -> Vec<u8> {
        let stamp = sealed::stamp(self.session.load(Ordering::Relaxed), n);
        sealed::seal(&self.identity.box_key, topic, stamp, body)
    }

    fn presence(&self, online: bool) -> Vec<u8> {
        let body = serde_json::to_vec(&Presence {
            online,
            version: self.firmware.clone(),
        })
        .unwrap_or_default();
        let topic = topics::presence(&self.identity.site, &self.identity.box_id);
        // Offline is the session's last word: it outranks the state published in it.
        self.seal(&topic, if online { 1 } else { LAST_IN_SESSION }, &body)
    }

    /// The link's state; an error is kept until the link is up again (a connected
    /// link showing the refusal of an hour ago misleads whoever reads the status).
    fn set(&self, state: LinkState, error: Option<String>) {
        self.info.send_modify(|i| {
            i.state = state;
            if state == LinkState::Connected {
                i.last_error = None;
            } else if error.is_some() {
                i.last_error = error;
            }
        });
    }

    /// The retained state message.
    async fn reported(&self) -> ReportedState {
        let data_dir = self.data_dir.clone();
        let disk = tokio::task::spawn_blocking(move || crate::base::disk::status(&data_dir))
            .await
            .map(|d| d.free_bytes)
            .unwrap_or(0);
        let from_store = self
            .store
            .read(|c| {
                let backlog = outbox::backlog(c)?;
                let mut desired_state = std::collections::BTreeMap::new();
                for kind in topics::DesiredKind::ALL {
                    if let Some(a) = desired::in_force(c, kind)? {
                        desired_state.insert(kind.as_str().to_string(), a);
                    }
                }
                let mut refused = std::collections::BTreeMap::new();
                let mut st = c.prepare(
                    "SELECT substr(name, 9), value FROM sync_counters WHERE name LIKE 'refused:%'",
                )?;
                for r in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
                    let (k, v) = r?;
                    refused.insert(k, v as u64);
                }
                let counts = crate::store::school::counts(c)?;
                Ok((backlog, desired_state, refused, counts))
            })
            .await;
        let mut state = ReportedState {
            version: self.firmware.clone(),
            uptime_secs: self.started.elapsed().as_secs(),
            disk_free_bytes: disk,
            ..ReportedState::default()
        };
        if let Ok((backlog, d, refused, counts)) = from_store {
            state.backlog = backlog;
            state.desired = d;
            state.refused = refused;
            state.counts = [
                ("classes".to_string(), counts.classes),
                ("teachers".to_string(), counts.teachers),
                ("pupils".to_string(), counts.pupils),
            ]
            .into();
        }
        if let Some(inventory) = &self.inventory {
            state.devices = inventory().await;
        }
        state
    }

    async fn session(
        &self,
        link: link::Link,
        driver: tokio::task::JoinHandle<rumqttc::ConnectionError>,
        stop: &CancellationToken,
        applied: &tokio::sync::Notify,
    ) -> End {
        let (site, box_id) = (self.identity.site.as_str(), self.identity.box_id.as_str());
        let mut driver = driver;
        let work = async {
            for f in topics::desired_filters(site, box_id) {
                link.subscribe(f).await.map_err(|e| e.to_string())?;
            }
            let _ack = link
                .publish(topics::presence(site, box_id), true, self.presence(true))
                .await
                .map_err(|e| e.to_string())?;
            tokio::select! {
                r = self.drain(&link) => r,
                r = self.publish_state(&link, applied) => r,
            }
        };
        let mut uplink = self.uplink.clone();
        let end = tokio::select! {
            r = work => End::Lost(r.err().unwrap_or_else(|| "the session ended".into())),
            e = &mut driver => End::Lost(match e {
                Ok(e) => e.to_string(),
                Err(e) => e.to_string(),
            }),
            _ = wait_down(&mut uplink) => End::UplinkDown,
            _ = stop.cancelled() => End::Shutdown,
        };
        if matches!(end, End::Shutdown) {
            // Say goodbye properly: the will is only for the unexpected.
            if let Ok(ack) = link
                .publish(topics::presence(site, box_id), true, self.presence(false))
                .await
            {
                let _ = tokio::time::timeout(Duration::from_millis(500), ack).await;
            }
            link.disconnect().await;
            let _ = tokio::time::timeout(Duration::from_millis(300), &mut driver).await;
        }
        driver.abort();
        end
    }

    async fn publish_state(
        &self,
        link: &link::Link,
        applied: &tokio::sync::Notify,
    ) -> Result<(), String> {
        let topic = topics::state(self.identity.site.as_str(), self.identity.box_id.as_str());
        let every = Duration::from_secs(u64::from(self.config.state_every_secs.max(1)));
        // 1 is the online presence; the state's stamps follow it.
        let mut n = 1;
        loop {
            let state = self.reported().await;
            n += 1;
            let body = serde_json::to_vec(&state).unwrap_or_default();
            let _ack = link
                .publish(topic.clone(), true, self.seal(&topic, n, &body))
                .await
                .map_err(|e| e.to_string())?;
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = applied.notified() => {}
            }
        }
    }

    /// Publishes the outbox in order, a window of batches in flight, and deletes rows
    /// as the broker acknowledges them. Returns only on a lost connection.
    async fn drain(&self, link: &link::Link) -> Result<(), String> {
        let mut sent_through = 0u64;
        let mut in_flight: VecDeque<(u64, link::Ack)> = VecDeque::new();
        loop {
            // How long until the oldest unsent row makes a batch on its own, if it is
            // too young to now.
            let mut young: Option<Duration> = None;
            while in_flight.len() < WINDOW {
                match self.publish_next(link, sent_through).await? {
                    Next::Sent(last_seq, ack) => {
                        sent_through = last_seq;
                        in_flight.push_back((last_seq, ack));
                    }
                    Next::Wait(wait) => {
                        young = Some(wait);
                        break;
                    }
                    Next::Empty => break,
                }
            }
            match in_flight.pop_front() {
                Some((last_seq, ack)) => {
                    match tokio::time::timeout(ACK_TIMEOUT, ack).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return Err("connection lost before the broker's ack".into()),
                        Err(_) => return Err("no ack from the broker in 60 s".into()),
                    }
                    self.store
                        .write(move |t| outbox::acknowledge(t, last_seq))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                // Nothing in flight: a new row, or the oldest one coming of age.
                None => tokio::select! {
                    _ = self.store.outbox_appended() => {}
                    _ = tokio::time::sleep(young.unwrap_or(IDLE_WAIT)) => {}
                },
            }
        }
    }

    /// Publishes the rows after `after` as one batch if they make one now.
    async fn publish_next(&self, link: &link::Link, after: u64) -> Result<Next, String> {
        let max_bytes = self.config.batch_max_bytes.max(1);
        let (events, bytes) = self
            .store
            .read(move |c| outbox::read_after(c, after, BATCH_ROWS, max_bytes))
            .await
            .map_err(|e| e.to_string())?;
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(Next::Empty);
        };
        // A row from the future (a clock set back) counts as new.
        let age = (self.clock.unix() - first.at).clamp(0, i64::from(u32::MAX)) as u32;
        if let Err(wait) = batch_due(
            events.len(),
            bytes,
            age,
            max_bytes,
            self.config.batch_max_age_secs,
        ) {
            return Ok(Next::Wait(wait));
        }
        let (n, first_seq, last_seq) = (events.len(), first.seq, last.seq);
        let topic = topics::events(self.identity.site.as_str(), self.identity.box_id.as_str());
        let batch = Batch {
            site: self.identity.site.clone(),
            r#box: self.identity.box_id.clone(),
            events,
        }
        .encode();
        let payload = self.seal(&topic, 0, &batch);
        let size = payload.len();
        let ack = link
            .publish(topic, false, payload)
            .await
            .map_err(|e| e.to_string())?;
        tracing::debug!(
            first_seq,
            last_seq,
            events = n,
            bytes = size,
            "batch published"
        );
        self.pace(size).await;
        Ok(Next::Sent(last_seq, ack))
    }

    /// Waits as long as `bytes` take at the configured rate, in school hours.
    async fn pace(&self, bytes: usize) {
        let cfg = &self.config;
        if cfg.rate_limit == 0 {
            return;
        }
        let now = self.clock.local();
        if in_window(
            &cfg.rate_limit_days,
            cfg.rate_limit_from,
            cfg.rate_limit_to,
            now,
        ) {
            tokio::time::sleep(Duration::from_secs_f64(
                bytes as f64 / cfg.rate_limit as f64,
            ))
            .await;
        }
    }
}

async fn wait_down(uplink: &mut watch::Receiver<UplinkStatus>) {
    loop {
        if uplink.borrow_and_update().state == UplinkState::Down {
            return;
        }
        if uplink.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn wait_not_down(uplink: &mut watch::Receiver<UplinkStatus>) {
    loop {
        if uplink.borrow_and_update().state != UplinkState::Down {
            return;
        }
        if uplink.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Service for SyncService {
    fn name(&self) -> &'static str {
        "sync"
    }

    // Long: the connection loop (uplink watch, connect, session, backoff) reads best as
    // one state machine; the session and the drain are functions of their own.
    fn run(self: Arc<Self>, ctx: ServiceCtx) -> ServiceFuture {
        Box::pin(async move {
            let bound = self.config.outbox_max_bytes;
            self.store
                .write(move |t| outbox::set_bound(t, bound))
                .await?;
            let Some(broker) = self.config.broker.clone() else {
                self.set(LinkState::Standalone, None);
                ctx.ready();
                ctx.shutdown.cancelled().await;
                return Ok(());
            };
            ctx.ready();
            let identity = self.identity.clone();
            let (site, box_id) = (identity.site.clone(), identity.box_id.clone());
            let applied = Arc::new(tokio::sync::Notify::new());
            // Desired state is handled one message at a time, in arrival order.
            let (in_tx, mut in_rx) = mpsc::channel::<link::Incoming_>(64);
            let handler = {
                let (store, sinks, applied) =
                    (self.store.clone(), self.sinks.clone(), applied.clone());
                tokio::spawn(async move {
                    while let Some(m) = in_rx.recv().await {
                        let outcome =
                            desired::handle(&identity, &store, &sinks, &m.topic, &m.payload).await;
                        tracing::debug!(topic = m.topic, ?outcome, "desired state message");
                        use cartable_protocol::topics::DesiredKind;
                        let hook = match &outcome {
                            desired::Outcome::Applied {
                                kind: DesiredKind::Catalogue,
                                ..
                            } => sinks.catalogue_applied.as_ref(),
                            desired::Outcome::Applied {
                                kind: DesiredKind::Release,
                                ..
                            } => sinks.release_applied.as_ref(),
                            _ => None,
                        };
                        if let Some(hook) = hook {
                            hook();
                        }
                        applied.notify_one();
                    }
                })
            };
            let mut backoff = Backoff::new(
                Duration::from_secs(1),
                Duration::from_secs(u64::from(self.config.reconnect_max_secs)),
                Backoff::seed((&site, &box_id)),
            );
            let mut uplink = self.uplink.clone();
            let client_id = format!("cartable-{site}-{box_id}");
            let result = loop {
                if uplink.borrow().state == UplinkState::Down {
                    self.set(LinkState::Paused, None);
                    tracing::info!("uplink down: sync paused");
                    tokio::select! {
                        _ = wait_not_down(&mut uplink) => backoff.reset(),
                        _ = ctx.shutdown.cancelled() => break Ok(()),
                    }
                }
                self.set(LinkState::Connecting, None);
                // A new session for every attempt: its will is sealed with it.
                let now = self.clock.unix();
                let session = self.store.write(move |t| next_session(t, now)).await?;
                self.session.store(session, Ordering::Relaxed);
                let options = link::options(
                    &self.config,
                    &broker,
                    &client_id,
                    Some((topics::presence(&site, &box_id), self.presence(false))),
                    true,
                )?;
                let attempt = tokio::select! {
                    r = link::connect(options, in_tx.clone(), CONNECT_TIMEOUT) => Some(r),
                    _ = wait_down(&mut uplink) => None,
                    _ = ctx.shutdown.cancelled() => break Ok(()),
                };
                let why = match attempt {
                    None => continue,
                    Some(Err(e)) => {
                        format!("cannot connect to {}: {e}", String::from(broker.clone()))
                    }
                    Some(Ok((link, driver))) => {
                        tracing::info!(broker = %String::from(broker.clone()), "sync connected");
                        backoff.reset();
                        self.set(LinkState::Connected, None);
                        match self.session(link, driver, &ctx.shutdown, &applied).await {
                            End::Shutdown => break Ok(()),
                            End::UplinkDown => continue,
                            End::Lost(why) => why,
                        }
                    }
                };
                let wait = backoff.next_wait();
                tracing::warn!(
                    error = why,
                    retry_in_ms = wait.as_millis() as u64,
                    "sync link down"
                );
                self.set(LinkState::Backoff, Some(why));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    // The uplink coming back is worth trying at once.
                    _ = uplink_came_back(&mut uplink) => backoff.reset(),
                    _ = ctx.shutdown.cancelled() => break Ok(()),
                }
            };
            handler.abort();
            result
        })
    }
}

/// Resolves when the uplink goes from down to up.
async fn uplink_came_back(uplink: &mut watch::Receiver<UplinkStatus>) {
    let mut was_down = uplink.borrow_and_update().state == UplinkState::Down;
    loop {
        if uplink.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        let down = uplink.borrow_and_update().state == UplinkState::Down;
        if was_down && !down {
            return;
        }
        was_down = down;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sessions_always_grow_whatever_the_clock_says() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for (now, expected) in [
            (1_800_000_000, 1_800_000_000),
            // The clock went back to 1970 (no real-time clock): still forward.
            (10, 1_800_000_001),
            (1_900_000_000, 1_900_000_000),
        ] {
            let got = store.write(move |t| next_session(t, now)).await.unwrap();
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn a_batch_goes_when_full_or_when_its_oldest_row_is_old_enough() {
        let kib = 1024;
        // Full by rows or by bytes: at once, however young.
        assert_eq!(batch_due(BATCH_ROWS, 10, 0, 256 * kib, 5), Ok(()));
        assert_eq!(batch_due(3, 256 * kib, 0, 256 * kib, 5), Ok(()));
        // Small and young: wait until the oldest is five seconds old.
        assert_eq!(
            batch_due(3, kib, 2, 256 * kib, 5),
            Err(Duration::from_secs(3))
        );
        assert_eq!(batch_due(3, kib, 5, 256 * kib, 5), Ok(()));
        // `batch_max_age_secs = 0`: every row goes at once.
        assert_eq!(batch_due(1, 10, 0, 256 * kib, 0), Ok(()));
    }
}
