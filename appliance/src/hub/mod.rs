//! The classroom hub: tablets keep a WebSocket to the box; teachers command them.
//!
//! The registry of devices lives in memory (loaded from the store at start) so a
//! teacher's command fans out without touching the disk: each device's desired state
//! is changed and the command queued on its connection under one short lock, then the
//! change is written to the store (the HTTP answer waits for that, the tablets do not).
//! Internet off and allow-list are also enforced by the DNS server: the hub hands it a
//! map from each connected device's address to its rule.

pub(crate) mod api;
mod build;
pub use build::{HubDeps, HubParts};
pub(crate) mod auth;
pub(crate) mod cards;
mod enrolment;
pub mod headwind;
mod inventory;
pub(crate) mod limit;
pub(crate) mod page;
pub mod provisioning;
pub(crate) mod screen_time;
pub(crate) mod ws;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cartable_protocol::device::{Action, DesiredState, Internet, ToDevice};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::base::clock::Clock;
use crate::filter::decide::DeviceRule;
use crate::filter::policy::{MacAddr, SuffixSet};
use crate::store::{Store, StoreError};
use limit::{Limiter, Purpose};

/// Frames waiting for a slow device before it is treated as offline for one-shots.
const DEVICE_QUEUE: usize = 64;
/// Commands whose acks are kept; past it, those older than [`COMMAND_MEMORY`] go.
const MAX_COMMANDS: usize = 4096;
const COMMAND_MEMORY: Duration = Duration::from_secs(3600);

/// What a device last told the hub.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reported {
    pub model: String,
    pub os: String,
    pub agent: String,
    pub battery: Option<u8>,
    pub app: Option<String>,
    pub state: DesiredState,
}

struct Conn {
    tx: mpsc::Sender<ToDevice>,
    ip: IpAddr,
    session: u64,
    /// Its MAC, when the cart's DHCP leased it the address it connected from: its DNS
    /// rules then follow the MAC to whatever address it is given next.
    mac: Option<MacAddr>,
}

impl Conn {
    /// Where the tablet is now: its MAC's leased address, else where it connected from.
    fn address(&self, leases: &HashMap<MacAddr, IpAddr>) -> IpAddr {
        self.mac
            .and_then(|m| leases.get(&m).copied())
            .unwrap_or(self.ip)
    }
}

struct Device {
    name: String,
    class_id: Option<i64>,
    pupil: Option<(i64, String)>,
    desired: DesiredState,
    reported: Reported,
    /// The last command it acknowledged.
    acked: Option<u64>,
    conn: Option<Conn>,
    /// A pupil signed in with their card: (session row, pupil id, name).
    session: Option<(i64, i64, String)>,
    /// The `logout_and_wipe` whose ack ends that session.
    wipe_command: Option<u64>,
}

#[derive(Default)]
struct Registry {
    devices: HashMap<i64, Device>,
    by_token: HashMap<[u8; 32], i64>,
    /// The cart's DHCP leases, both ways (empty on a school's LAN).
    mac_at: HashMap<IpAddr, MacAddr>,
    address_of: HashMap<MacAddr, IpAddr>,
}

/// The acknowledgements of one command.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CommandStatus {
    /// Devices it was sent to and that have not answered yet.
    pub pending: Vec<i64>,
    pub ok: Vec<i64>,
    pub failed: BTreeMap<i64, String>,
    /// Offline devices: lasting actions wait in their desired state, one-shots in
    /// their queue until they expire.
    pub offline: Vec<i64>,
    /// The class it was sent to: only that class's teachers may read it.
    #[serde(skip)]
    pub class: Option<i64>,
    #[serde(skip)]
    sent: Option<std::time::Instant>,
}

/// A device tile, as the teacher's page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Tile {
    pub id: i64,
    pub name: String,
    pub class_id: Option<i64>,
    /// The pupil using the tablet: signed in with a card, else assigned to it.
    pub pupil: Option<(i64, String)>,
    /// True when `pupil` signed in with a card (the profile is wiped at logout).
    pub pupil_session: bool,
    pub connected: bool,
    /// Where the connected tablet is, and its MAC on a cart (from its DHCP lease).
    pub address: Option<IpAddr>,
    pub mac: Option<String>,
    pub desired: DesiredState,
    pub reported: Reported,
    pub acked: Option<u64>,
}

/// One device, as the screen-time service sees it.
pub struct DeviceView {
    pub id: i64,
    pub class_id: Option<i64>,
    /// Signed in with a card, else assigned.
    pub pupil: Option<i64>,
    pub connected: bool,
    pub desired: DesiredState,
    pub name: String,
    /// The app in the foreground, as the tablet last reported.
    pub app: Option<String>,
}

/// (id, name, token hash, class, desired state as JSON, pupil id, pupil name), as stored.
type DeviceRow = (
    i64,
    String,
    Vec<u8>,
    Option<i64>,
    String,
    Option<i64>,
    Option<String>,
);

/// One limiter per thing a client could guess.
pub(crate) struct Limits {
    pub(crate) sign_in: Limiter,
    pub(crate) enrolment: Limiter,
    pub(crate) headwind: Limiter,
}

/// Where the hub sends the per-address rules of connected tablets (the DNS server's
/// `set_devices`, wired by `app`).
pub type RulesSink = Arc<dyn Fn(HashMap<IpAddr, DeviceRule>) + Send + Sync>;

pub struct Hub {
    store: Store,
    /// Unix time for the store's rows and the one-shots' expiry (tests move it).
    clock: Clock,
    rules: Option<RulesSink>,
    registry: Mutex<Registry>,
    commands: Mutex<HashMap<u64, CommandStatus>>,
    next_command: AtomicU64,
    next_session: AtomicU64,
    /// How long a one-shot action waits for an offline device.
    pub one_shot_ttl: Duration,
    pub(crate) sessions: auth::Sessions,
    /// Guessing, slowed down per address and purpose.
    pub(crate) limits: Limits,
    pub cards: cards::Cards,
    /// The class whose tiles changed (the teachers' pages listen).
    changes: tokio::sync::broadcast::Sender<i64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    /// Loads the enrolled devices from the store.
    pub fn load(
        store: Store,
        clock: Clock,
        rules: Option<RulesSink>,
        one_shot_ttl: Duration,
    ) -> Result<Hub, StoreError> {
        let rows: Vec<DeviceRow> = store.read_blocking(|c| {
            let mut st = c.prepare(
                "SELECT d.id, d.name, d.token_hash, d.class_id, d.desired, p.id,
                        p.first_name || ' ' || p.last_name
                 FROM devices d LEFT JOIN pupils p ON p.id = d.pupil_id WHERE d.revoked = 0",
            )?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })?;
        let mut reg = Registry::default();
        for (id, name, hash, class_id, desired, pupil_id, pupil_name) in rows {
            let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) else {
                continue;
            };
            reg.by_token.insert(hash, id);
            reg.devices.insert(
                id,
                Device {
                    name,
                    class_id,
                    pupil: pupil_id.zip(pupil_name),
                    desired: serde_json::from_str(&desired).unwrap_or_default(),
                    reported: Reported::default(),
                    acked: None,
                    conn: None,
                    session: None,
                    wipe_command: None,
                },
            );
        }
        // Command ids must not repeat across restarts (queued ones are matched by id).
        let seed = (clock.unix().max(0) as u64) << 20;
        let (store_for_cards, clock_for_limits) = (store.clone(), clock.clone());
        let hub = Hub {
            store,
            rules,
            clock,
            registry: Mutex::new(reg),
            commands: Mutex::new(HashMap::new()),
            next_command: AtomicU64::new(seed),
            next_session: AtomicU64::new(1),
            one_shot_ttl,
            sessions: auth::Sessions::new(store_for_cards.clone(), clock_for_limits.clone()),
            limits: Limits {
                sign_in: Limiter::load(Purpose::SignIn, &store_for_cards, &clock_for_limits)?,
                enrolment: Limiter::load(Purpose::Enrolment, &store_for_cards, &clock_for_limits)?,
                headwind: Limiter::load(Purpose::Headwind, &store_for_cards, &clock_for_limits)?,
            },
            cards: cards::Cards::load(&store_for_cards)?,
            changes: tokio::sync::broadcast::channel(256).0,
        };
        Ok(hub)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A pupil showed a card to tablet `device`: the session starts (ending any other
    /// on that tablet), or the card is refused.
    pub async fn pupil_login(&self, device: i64, card: &str) -> Result<ToDevice, StoreError> {
        let Some(holder) = self.cards.verify(&self.store, card).await? else {
            return Ok(ToDevice::Error {
                message: "unknown or revoked card".into(),
            });
        };
        let (pupil, now) = (holder.pupil_id, self.clock.unix());
        let session = self
            .store
            .write(move |t| {
                t.execute(
                    "UPDATE pupil_sessions SET ended_at = ?2 WHERE device_id = ?1 AND ended_at IS NULL",
                    params![device, now],
                )?;
                t.execute(
                    "INSERT INTO pupil_sessions(pupil_id, device_id, started_at) VALUES (?1, ?2, ?3)",
                    params![pupil, device, now],
                )?;
                Ok(t.last_insert_rowid())
            })
            .await?;
        let class = lock(&self.registry).devices.get_mut(&device).and_then(|d| {
            d.session = Some((session, pupil, holder.name.clone()));
            d.class_id
        });
        self.changed(class);
        Ok(ToDevice::PupilSession {
            pupil: holder.name,
            class: holder.class,
        })
    }

    /// The pupil logs out: the tablet is told to wipe, and the session ends on its ack.
    pub async fn pupil_logout(&self, device: i64) -> Result<(), StoreError> {
        let (_, persist) = self.command(&[device], Action::LogoutAndWipe);
        persist.await
    }

    /// A class or pupil was deleted: tablets no longer belong to it.
    pub fn forget(&self, table: &str, id: i64) {
        let mut reg = lock(&self.registry);
        for d in reg.devices.values_mut() {
            match table {
                "classes" if d.class_id == Some(id) => d.class_id = None,
                "pupils" if d.pupil.as_ref().is_some_and(|(p, _)| *p == id) => d.pupil = None,
                _ => {}
            }
        }
    }

    /// What the screen-time service needs of every device.
    pub fn screen_time_view(&self) -> Vec<DeviceView> {
        lock(&self.registry)
            .devices
            .iter()
            .map(|(id, d)| DeviceView {
                id: *id,
                class_id: d.class_id,
                pupil: d
                    .session
                    .as_ref()
                    .map(|(_, p, _)| *p)
                    .or(d.pupil.as_ref().map(|(p, _)| *p)),
                connected: d.conn.is_some(),
                desired: d.desired.clone(),
                name: d.name.clone(),
                app: d.reported.app.clone(),
            })
            .collect()
    }

    /// A device's name and desired state.
    pub fn desired_of(&self, id: i64) -> Option<(String, DesiredState)> {
        lock(&self.registry)
            .devices
            .get(&id)
            .map(|d| (d.name.clone(), d.desired.clone()))
    }

    /// Tile changes, by class id.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<i64> {
        self.changes.subscribe()
    }

    /// The cart's DHCP leases (MAC, address): a connected tablet's MAC is learned from
    /// the address it connected from, and its DNS rules move with its lease.
    pub fn set_leases(&self, leases: &[(MacAddr, IpAddr)]) {
        let classes: HashSet<i64> = {
            let mut reg = lock(&self.registry);
            reg.mac_at = leases.iter().map(|(m, a)| (*a, *m)).collect();
            reg.address_of = leases.iter().copied().collect();
            let Registry {
                devices, mac_at, ..
            } = &mut *reg;
            devices
                .values_mut()
                .filter_map(|d| {
                    let c = d.conn.as_mut()?;
                    if c.mac.is_none() {
                        c.mac = mac_at.get(&c.ip).copied();
                    }
                    d.class_id
                })
                .collect()
        };
        self.refresh_dns();
        for class in classes {
            self.changed(Some(class));
        }
    }

    fn changed(&self, class: Option<i64>) {
        if let Some(c) = class {
            let _ = self.changes.send(c);
        }
    }

    fn class_of(&self, id: i64) -> Option<i64> {
        lock(&self.registry)
            .devices
            .get(&id)
            .and_then(|d| d.class_id)
    }

    /// Assigns the tablet to a pupil of its class (None: unassigned).
    pub async fn assign(&self, id: i64, pupil: Option<i64>) -> Result<bool, StoreError> {
        let found = self
            .store
            .write(move |t| {
                let name: Option<String> = match pupil {
                    None => None,
                    Some(p) => {
                        let n = t
                            .query_row(
                                "SELECT p.first_name || ' ' || p.last_name FROM pupils p
                                 JOIN devices d ON d.class_id = p.class_id
                                 WHERE p.id = ?1 AND d.id = ?2",
                                params![p, id],
                                |r| r.get(0),
                            )
                            .optional()?;
                        match n {
                            Some(n) => Some(n),
                            None => return Ok(None),
                        }
                    }
                };
                t.execute(
                    "UPDATE devices SET pupil_id = ?2 WHERE id = ?1",
                    params![id, pupil],
                )?;
                Ok(Some(name))
            })
            .await?;
        let Some(name) = found else { return Ok(false) };
        if let Some(d) = lock(&self.registry).devices.get_mut(&id) {
            d.pupil = pupil.zip(name);
        }
        self.changed(self.class_of(id));
        Ok(true)
    }

    /// Registers a new connection of device `id` (replacing an older one); returns the
    /// session number, the receiver of its frames, and what to send first.
    pub fn connect(
        &self,
        id: i64,
        ip: IpAddr,
    ) -> Option<(u64, mpsc::Receiver<ToDevice>, String, DesiredState)> {
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(DEVICE_QUEUE);
        let (name, desired) = {
            let mut reg = lock(&self.registry);
            let mac = reg.mac_at.get(&ip).copied();
            let d = reg.devices.get_mut(&id)?;
            d.conn = Some(Conn {
                tx,
                ip,
                session,
                mac,
            });
            (d.name.clone(), d.desired.clone())
        };
        // Only a tablet with a rule changes what the DNS server must know.
        if desired.internet != Internet::On {
            self.refresh_dns();
        }
        self.seen(id);
        self.changed(self.class_of(id));
        Some((session, rx, name, desired))
    }

    pub fn disconnect(&self, id: i64, session: u64) {
        let removed = {
            let mut reg = lock(&self.registry);
            match reg.devices.get_mut(&id) {
                Some(d) if d.conn.as_ref().is_some_and(|c| c.session == session) => {
                    d.conn = None;
                    Some(d.desired.internet != Internet::On)
                }
                _ => None,
            }
        };
        if let Some(had_rule) = removed {
            if had_rule {
                self.refresh_dns();
            }
            self.seen(id);
            self.changed(self.class_of(id));
        }
    }

    pub fn report(&self, id: i64, update: impl FnOnce(&mut Reported)) {
        let class = lock(&self.registry).devices.get_mut(&id).and_then(|d| {
            update(&mut d.reported);
            d.class_id
        });
        self.changed(class);
    }

    /// Records a device's answer to a command.
    pub fn ack(&self, id: i64, command: u64, ok: bool, error: String) {
        let mut ended = None;
        let class = {
            // The registry first, as `command` holds it while it fans out and records
            // the status: a fast tablet's ack waits for its command to be known.
            let mut reg = lock(&self.registry);
            let Some(d) = reg.devices.get_mut(&id) else {
                return;
            };
            let wipe = d.wipe_command == Some(command);
            let mut commands = lock(&self.commands);
            let status = commands
                .get_mut(&command)
                .filter(|st| st.pending.contains(&id) || st.offline.contains(&id));
            // Only a tablet the command went to may acknowledge it (a wipe it was sent
            // is known to the device itself, even once the command's status is gone).
            if status.is_none() && !wipe {
                tracing::debug!(device = id, command, "an ack for a command not sent to it");
                return;
            }
            if let Some(st) = status {
                st.pending.retain(|d| *d != id);
                if ok {
                    st.ok.push(id);
                } else {
                    st.failed.insert(id, error);
                }
            }
            drop(commands);
            d.acked = Some(d.acked.map_or(command, |a| a.max(command)));
            if ok && wipe {
                d.wipe_command = None;
                ended = d.session.take().map(|(session, _, _)| session);
            }
            d.class_id
        };
        if let Some(session) = ended {
            // The tablet confirmed the wipe: the pupil's session is over.
            let (store, now) = (self.store.clone(), self.clock.unix());
            tokio::spawn(async move {
                let done = store
                    .write(move |t| {
                        t.execute(
                            "UPDATE pupil_sessions SET ended_at = ?2, wiped = 1 WHERE id = ?1",
                            params![session, now],
                        )?;
                        Ok(())
                    })
                    .await;
                if let Err(e) = done {
                    tracing::error!(error = %e, "cannot record the end of a pupil session");
                }
            });
        }
        self.changed(class);
    }

    /// Whether `action` sent to `targets` fits in a device frame, as the command and as
    /// the whole desired state each tablet receives when it connects next: a command
    /// too large for the tablets is refused before anything changes.
    pub(crate) fn fits(&self, targets: &[i64], action: &Action) -> bool {
        let size = |m: &ToDevice| serde_json::to_string(m).map_or(usize::MAX, |s| s.len());
        let frame = |action: Action| ToDevice::Command {
            id: u64::MAX,
            action,
        };
        if size(&frame(action.clone())) > cartable_protocol::device::MAX_FRAME {
            return false;
        }
        // A one-shot leaves the desired states as they are (and they fit already).
        if !action.apply_to(&mut DesiredState::default()) {
            return true;
        }
        let reg = lock(&self.registry);
        targets.iter().filter_map(|t| reg.devices.get(t)).all(|d| {
            let mut desired = d.desired.clone();
            action.apply_to(&mut desired);
            size(&frame(Action::Apply { desired })) <= cartable_protocol::device::MAX_FRAME
        })
    }

    /// Marks `command` as sent to `class` (for the permission check on its status).
    pub fn tag_command(&self, command: u64, class: i64) {
        if let Some(st) = lock(&self.commands).get_mut(&command) {
            st.class = Some(class);
        }
    }

    pub fn command_status(&self, command: u64) -> Option<CommandStatus> {
        lock(&self.commands).get(&command).cloned()
    }

    pub fn next_command_id(&self) -> u64 {
        self.next_command.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `action` to `targets` now; returns the command's id at once, and the
    /// store write to await for durability.
    pub fn command(
        &self,
        targets: &[i64],
        action: Action,
    ) -> (
        u64,
        impl std::future::Future<Output = Result<(), StoreError>> + use<>,
    ) {
        let id = self.next_command_id();
        let mut status = CommandStatus::default();
        let mut lasting: Vec<(i64, String)> = Vec::new();
        let mut queued: Vec<i64> = Vec::new();
        let mut internet_changed = false;
        {
            let mut reg = lock(&self.registry);
            for &t in targets {
                let Some(d) = reg.devices.get_mut(&t) else {
                    continue;
                };
                let before = d.desired.internet.clone();
                let is_lasting = action.apply_to(&mut d.desired);
                if action == Action::LogoutAndWipe {
                    d.wipe_command = Some(id);
                }
                internet_changed |= before != d.desired.internet;
                if is_lasting {
                    lasting.push((t, serde_json::to_string(&d.desired).unwrap_or_default()));
                }
                let sent = d.conn.as_ref().is_some_and(|c| {
                    c.tx.try_send(ToDevice::Command {
                        id,
                        action: action.clone(),
                    })
                    .is_ok()
                });
                if sent {
                    status.pending.push(t);
                } else {
                    status.offline.push(t);
                    if !is_lasting {
                        queued.push(t);
                    }
                }
            }
            // Recorded before the registry is released: a fast tablet's ack (which
            // takes the registry first) cannot come before its command is known.
            status.sent = Some(std::time::Instant::now());
            let mut commands = lock(&self.commands);
            if commands.len() >= MAX_COMMANDS {
                // Acks older than a lesson are of no use to a teacher's page.
                commands.retain(|_, c| c.sent.is_some_and(|t| t.elapsed() < COMMAND_MEMORY));
            }
            commands.insert(id, status);
        }
        if internet_changed {
            self.refresh_dns();
        }
        let store = self.store.clone();
        let action_json = serde_json::to_string(&action).unwrap_or_default();
        let expires = self.clock.unix() + self.one_shot_ttl.as_secs() as i64;
        let persist = async move {
            if lasting.is_empty() && queued.is_empty() {
                return Ok(());
            }
            store
                .write(move |t| {
                    for (device, desired) in &lasting {
                        t.execute(
                            "UPDATE devices SET desired = ?2 WHERE id = ?1",
                            params![device, desired],
                        )?;
                    }
                    for device in &queued {
                        t.execute(
                            "INSERT INTO device_queue(device_id, command_id, action, expires_at) VALUES (?1, ?2, ?3, ?4)",
                            params![device, id as i64, action_json, expires],
                        )?;
                    }
                    Ok(())
                })
                .await
        };
        (id, persist)
    }

    /// One-shot actions still valid for `device`, oldest first.
    pub async fn queued(&self, device: i64) -> Result<Vec<(u64, Action)>, StoreError> {
        let now = self.clock.unix();
        self.store
            .write(move |t| {
                t.execute(
                    "DELETE FROM device_queue WHERE device_id = ?1 AND expires_at <= ?2",
                    params![device, now],
                )?;
                let mut st = t.prepare(
                    "SELECT command_id, action FROM device_queue WHERE device_id = ?1 ORDER BY id",
                )?;
                let rows = st
                    .query_map([device], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                    })?
                    .filter_map(|r| r.ok())
                    .filter_map(|(c, a)| Some((c as u64, serde_json::from_str(&a).ok()?)))
                    .collect();
                Ok(rows)
            })
            .await
    }

    /// A queued one-shot was acknowledged: it is done.
    pub async fn dequeue(&self, device: i64, command: u64) -> Result<(), StoreError> {
        self.store
            .write(move |t| {
                t.execute(
                    "DELETE FROM device_queue WHERE device_id = ?1 AND command_id = ?2",
                    params![device, command as i64],
                )?;
                Ok(())
            })
            .await
    }

    /// Devices of a class (None: every device), as tiles.
    pub fn tiles(&self, class_id: Option<i64>) -> Vec<Tile> {
        let reg = lock(&self.registry);
        let mut tiles: Vec<Tile> = reg
            .devices
            .iter()
            .filter(|(_, d)| class_id.is_none() || d.class_id == class_id)
            .map(|(id, d)| Tile {
                id: *id,
                name: d.name.clone(),
                class_id: d.class_id,
                pupil: d
                    .session
                    .as_ref()
                    .map(|(_, id, name)| (*id, name.clone()))
                    .or_else(|| d.pupil.clone()),
                pupil_session: d.session.is_some(),
                connected: d.conn.is_some(),
                address: d.conn.as_ref().map(|c| c.address(&reg.address_of)),
                mac: d.conn.as_ref().and_then(|c| c.mac).map(|m| m.to_string()),
                desired: d.desired.clone(),
                reported: d.reported.clone(),
                acked: d.acked,
            })
            .collect();
        tiles.sort_by(|a, b| a.name.cmp(&b.name));
        tiles
    }

    /// The class's tablets used by (signed in, else assigned to) one of `pupils`.
    pub fn used_by(&self, class_id: i64, pupils: &[i64]) -> Vec<i64> {
        let reg = lock(&self.registry);
        let mut ids: Vec<i64> = reg
            .devices
            .iter()
            .filter(|(_, d)| d.class_id == Some(class_id))
            .filter(|(_, d)| {
                let user = d
                    .session
                    .as_ref()
                    .map(|(_, p, _)| *p)
                    .or(d.pupil.as_ref().map(|(p, _)| *p));
                user.is_some_and(|p| pupils.contains(&p))
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The subset of `ids` that belong to `class_id`.
    pub fn in_class(&self, class_id: i64, ids: &[i64]) -> Vec<i64> {
        let reg = lock(&self.registry);
        ids.iter()
            .copied()
            .filter(|i| {
                reg.devices
                    .get(i)
                    .is_some_and(|d| d.class_id == Some(class_id))
            })
            .collect()
    }

    /// Gives the DNS server the rules of every connected device that is not on, at
    /// the address each has now (its MAC's lease on a cart).
    fn refresh_dns(&self) {
        let Some(sink) = &self.rules else { return };
        let mut rules = HashMap::new();
        let reg = lock(&self.registry);
        for d in reg.devices.values() {
            let Some(c) = &d.conn else { continue };
            let ip = c.address(&reg.address_of);
            match &d.desired.internet {
                Internet::On => {}
                Internet::Off => {
                    rules.insert(ip, DeviceRule::InternetOff);
                }
                Internet::AllowList { domains } => {
                    rules.insert(
                        ip,
                        DeviceRule::AllowListOnly(Arc::new(SuffixSet::new(
                            domains.iter().map(String::as_str),
                        ))),
                    );
                }
            }
        }
        drop(reg);
        sink(rules);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    /// A hub on a fresh store with `n` enrolled tablets, and what it sends the DNS
    /// server.
    async fn hub(
        n: usize,
    ) -> (
        tempfile::TempDir,
        Hub,
        Vec<i64>,
        Arc<StdMutex<Vec<HashMap<IpAddr, DeviceRule>>>>,
        Clock,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let sink = seen.clone();
        let rules: RulesSink = Arc::new(move |r| sink.lock().unwrap().push(r));
        let clock = Clock::manual(jiff::tz::TimeZone::UTC, jiff::Timestamp::UNIX_EPOCH);
        let hub = Hub::load(store, clock.clone(), Some(rules), Duration::from_secs(600)).unwrap();
        let mut ids = Vec::new();
        for i in 0..n {
            let code = hub
                .new_enrolment_code(format!("tab-{i}"), None, Duration::from_secs(60), 8)
                .await
                .unwrap();
            ids.push(hub.enrol(&code, "test").await.unwrap().unwrap().0);
        }
        (dir, hub, ids, seen, clock)
    }

    /// A command reaches the connected tablet at once and waits for the offline one;
    /// acks move each tablet from pending to ok or failed; the DNS server learns the
    /// rule of every connected tablet whose internet is off.
    #[tokio::test]
    async fn fan_out_acks_and_dns_rules() {
        let (_dir, hub, ids, seen, _) = hub(3).await;
        let (a, b, c) = (ids[0], ids[1], ids[2]);
        let ip_a = IpAddr::from([10, 0, 0, 1]);
        let (_, mut rx_a, _, _) = hub.connect(a, ip_a).unwrap();
        let (_, mut rx_c, _, _) = hub.connect(c, [10, 0, 0, 3].into()).unwrap();

        let (lock_id, persist) = hub.command(&[a, b, c], Action::Lock);
        persist.await.unwrap();
        for rx in [&mut rx_a, &mut rx_c] {
            match rx.try_recv().unwrap() {
                ToDevice::Command { id, action } => {
                    assert_eq!((id, action), (lock_id, Action::Lock))
                }
                other => panic!("{other:?}"),
            }
        }
        let st = hub.command_status(lock_id).unwrap();
        assert_eq!(
            (st.pending.clone(), st.offline.clone()),
            (vec![a, c], vec![b])
        );
        hub.ack(a, lock_id, true, String::new());
        hub.ack(c, lock_id, false, "kiosk mode off".into());
        let st = hub.command_status(lock_id).unwrap();
        assert!(st.pending.is_empty());
        assert_eq!(st.ok, [a]);
        assert_eq!(
            st.failed.get(&c).map(String::as_str),
            Some("kiosk mode off")
        );
        // The lock is lasting: the offline tablet gets it in its desired state.
        assert!(hub.desired_of(b).unwrap().1.locked);

        // Internet off for a: the DNS server is told a's address, and only it.
        let before = seen.lock().unwrap().len();
        let (_, persist) = hub.command(&[a], Action::InternetOff);
        persist.await.unwrap();
        let rules = seen.lock().unwrap()[before..].last().cloned().unwrap();
        assert_eq!(rules.len(), 1);
        assert!(matches!(rules.get(&ip_a), Some(DeviceRule::InternetOff)));
        // Gone offline, its rule goes too.
        hub.disconnect(a, hub.connect(a, ip_a).unwrap().0);
        assert!(seen.lock().unwrap().last().unwrap().is_empty());
    }

    /// On a cart, a tablet's rule follows its MAC: learned from the lease of the
    /// address it connected from, moved when DHCP gives it another address, and the
    /// old address (now perhaps another tablet's) keeps no rule.
    #[tokio::test]
    async fn a_tablets_rule_follows_its_lease() {
        let (_dir, hub, ids, seen, _) = hub(1).await;
        let mac = MacAddr([2, 0, 0, 0, 1, 1]);
        let (old, new) = (
            IpAddr::from([10, 42, 0, 100]),
            IpAddr::from([10, 42, 0, 101]),
        );
        hub.set_leases(&[(mac, old)]);
        let _conn = hub.connect(ids[0], old).unwrap();
        let (_, persist) = hub.command(&[ids[0]], Action::InternetOff);
        persist.await.unwrap();
        assert!(seen.lock().unwrap().last().unwrap().contains_key(&old));
        let tile = &hub.tiles(None)[0];
        assert_eq!(tile.mac.as_deref(), Some("02:00:00:00:01:01"));
        hub.set_leases(&[(mac, new)]);
        let rules = seen.lock().unwrap().last().cloned().unwrap();
        assert!(
            matches!(rules.get(&new), Some(DeviceRule::InternetOff)),
            "{rules:?}"
        );
        assert!(!rules.contains_key(&old));
        assert_eq!(hub.tiles(None)[0].address, Some(new));
    }

    /// A one-shot for an offline tablet waits in its queue for `one_shot_ttl` on the
    /// hub's clock, then is dropped.
    #[tokio::test]
    async fn one_shots_wait_for_an_offline_tablet_until_they_expire() {
        let (_dir, hub, ids, _, clock) = hub(1).await;
        let message = Action::ShowMessage {
            text: "Au tableau !".into(),
        };
        let (id, persist) = hub.command(&ids, message.clone());
        persist.await.unwrap();
        clock.advance(Duration::from_secs(599));
        assert_eq!(hub.queued(ids[0]).await.unwrap(), [(id, message)]);
        clock.advance(Duration::from_secs(1));
        assert!(hub.queued(ids[0]).await.unwrap().is_empty());
    }
}
