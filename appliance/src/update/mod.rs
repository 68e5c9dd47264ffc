//! The firmware update agent (service `update`): takes the signed release the sync
//! stored, rebuilds its bundle from chunks ([`assemble`]: local first, then peers,
//! then the origin, through the cache), checks it (the manifest's SHA-256, then
//! RAUC's signature), installs it into the other slot inside the install window
//! ([`backend`]: RAUC, or a folder for tests), reboots, and after the first boot of
//! the new firmware checks its health ([`health`]): pass, it is marked good; fail or
//! time out, it is marked bad and the box goes back, never to retry that version.
//!
//! Each step is a state in the store ([`progress`]) written with its outbox event,
//! so a kill -9 at any step resumes there. What a box takes is decided by
//! [`plan`] (board, version, wave, window).

mod agent;
pub(crate) mod assemble;
pub(crate) mod backend;
pub(crate) mod health;
pub(crate) mod plan;
pub(crate) mod progress;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cartable_protocol::release::Release;
use cartable_protocol::status::{UpdateState, UpdateStatus};
use futures_util::future::BoxFuture;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::base::clock::Clock;
use crate::config::{UpdateBackend, UpdateConfig};
use crate::store::Store;
use crate::supervisor::{Service, ServiceCtx, ServiceFuture};

pub(crate) use health::HealthProbe;

/// The service's name, in `/healthz` and the status.
pub(crate) const SERVICE: &str = "update";

/// One chunk to fetch.
pub(crate) struct ChunkFetch {
    pub(crate) sha256: String,
    pub(crate) size: u64,
    /// Tried in order (peers first, then the release's chunk URLs).
    pub(crate) urls: Vec<String>,
    /// What the download is for, in the cache's status.
    pub(crate) label: String,
}

/// Offers a release's chunks to the site's other boxes (none: withdrawn).
pub(crate) type Offer = dyn Fn(Option<&Release>) + Send + Sync;

/// Where chunks come from, handed in by `app` (the cache: verified, resumable, one
/// download per chunk, under its rate cap).
#[derive(Clone)]
pub(crate) struct ChunkSource {
    /// The chunk's verified file once it is held.
    pub(crate) fetch:
        Arc<dyn Fn(ChunkFetch) -> BoxFuture<'static, Result<PathBuf, String>> + Send + Sync>,
    /// Whether downloads may use the uplink now (the cache's windows).
    pub(crate) in_window: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Offers the release's chunks to the site's other boxes (none: withdrawn).
    pub(crate) offer: Arc<Offer>,
}

/// What the agent is built with, besides its own `[update]` section.
pub(crate) struct UpdateDeps {
    pub(crate) store: Store,
    pub(crate) clock: Clock,
    pub(crate) data_dir: PathBuf,
    pub(crate) site: String,
    pub(crate) box_id: String,
    /// The pinned fleet key: the release is verified again when read from the store.
    pub(crate) fleet_key: Option<Vec<u8>>,
    pub(crate) chunks: ChunkSource,
    /// Cancelled by the directory backend's "reboot": the daemon stops.
    pub(crate) exit: CancellationToken,
}

/// The agent, and what the status page reads of it.
pub(crate) struct Update {
    agent: Arc<agent::Agent>,
    /// Woken when a release is stored.
    pub(crate) wake: Arc<Notify>,
    status: watch::Receiver<UpdateStatus>,
}

impl Update {
    pub(crate) fn status(&self) -> Arc<dyn Fn() -> UpdateStatus + Send + Sync> {
        let rx = self.status.clone();
        Arc::new(move || rx.borrow().clone())
    }

    /// The supervised service, once the health check's parts are known.
    pub(crate) fn service(&self, probe: HealthProbe) -> Arc<UpdateService> {
        Arc::new(UpdateService {
            agent: self.agent.clone(),
            probe,
        })
    }
}

impl UpdateConfig {
    pub(crate) fn build(&self, deps: UpdateDeps) -> anyhow::Result<Update> {
        use anyhow::Context;
        let rauc_conf = Path::new("/etc/rauc/system.conf");
        let backend = match self.backend {
            UpdateBackend::Auto if rauc_conf.exists() => UpdateBackend::Rauc,
            UpdateBackend::Auto => UpdateBackend::None,
            b => b,
        };
        let image_version = || {
            std::fs::read_to_string("/etc/os-release")
                .ok()
                .and_then(|t| {
                    t.lines().find_map(|l| {
                        l.strip_prefix("IMAGE_VERSION=")
                            .map(|v| v.trim_matches('"').to_string())
                    })
                })
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string())
        };
        let configured = self.version.as_ref().map(|v| v.0.clone());
        let installer: Option<Box<dyn backend::Installer>> = match backend {
            UpdateBackend::Rauc => Some(Box::new(backend::Rauc {
                version: configured.clone().unwrap_or_else(image_version),
            })),
            UpdateBackend::Directory => {
                let dir = self
                    .directory
                    .clone()
                    .unwrap_or_else(|| deps.data_dir.join("update").join("slots"));
                let first = configured.clone().unwrap_or_else(image_version);
                Some(Box::new(
                    backend::Directory::open(&dir, &self.keyring, &first, deps.exit.clone())
                        .with_context(|| {
                            format!("opening the update slots in {}", dir.display())
                        })?,
                ))
            }
            UpdateBackend::Auto | UpdateBackend::None => None,
        };
        let unknown_slot = |version: String| backend::Booted {
            slot: None,
            version,
        };
        // An installer that cannot say its slot leaves the box serving: updates wait.
        let booted = match installer.as_ref().map(|i| i.booted()) {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                tracing::error!(error = %e, "cannot read the booted slot");
                unknown_slot(configured.unwrap_or_else(image_version))
            }
            None => unknown_slot(configured.unwrap_or_else(image_version)),
        };
        let board = self.board.clone().unwrap_or_else(|| board_of(rauc_conf));
        let (status_tx, status_rx) = watch::channel(UpdateStatus {
            running: booted.version.clone(),
            slot: booted.slot.clone(),
            backend: installer.as_ref().map_or("none", |i| i.name()).to_string(),
            state: UpdateState::Idle,
            ..UpdateStatus::default()
        });
        let wake = Arc::new(Notify::new());
        let agent = agent::Agent {
            settings: agent::Settings {
                site: deps.site,
                box_id: deps.box_id,
                board,
                window: self.window.0.clone(),
                health_timeout: Duration::from_secs(u64::from(self.health_timeout_secs.max(1))),
                peers: self.peers.iter().map(|p| p.0.clone()).collect(),
                keyring: self.keyring.clone(),
                dir: deps.data_dir.join("update"),
            },
            store: deps.store,
            clock: deps.clock,
            fleet_key: deps.fleet_key,
            installer,
            booted,
            source: deps.chunks,
            status: status_tx,
            wake: wake.clone(),
        };
        Ok(Update {
            agent: Arc::new(agent),
            wake,
            status: status_rx,
        })
    }
}

/// The board from RAUC's `compatible=cartable-<board>`, else the processor's name.
fn board_of(rauc_conf: &Path) -> String {
    std::fs::read_to_string(rauc_conf)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.trim()
                    .strip_prefix("compatible=")
                    .map(|c| c.trim().trim_start_matches("cartable-").to_string())
            })
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

pub(crate) struct UpdateService {
    agent: Arc<agent::Agent>,
    probe: HealthProbe,
}

impl Service for UpdateService {
    fn name(&self) -> &'static str {
        SERVICE
    }

    fn run(self: Arc<Self>, ctx: ServiceCtx) -> ServiceFuture {
        Box::pin(async move {
            ctx.ready();
            self.agent.run(&self.probe, &ctx.shutdown).await
        })
    }
}
