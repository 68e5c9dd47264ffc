//! The agent's state machine: one step at a time from the state in the store, each
//! transition written with its outbox event before the next step starts, so a kill
//! -9 anywhere resumes at the step it interrupted.
//!
//! ```text
//! (release stored) ─▶ downloading ─▶ verified ─▶ waiting_for_window ─▶ installing
//!        │                                                                  │
//!        └▶ refused                        rebooting ◀──────────────────────┘
//!                                              │ (first boot of the new slot)
//!                                          checking ─▶ committed | rolled_back
//! ```

use std::path::PathBuf;
use std::time::Duration;

use cartable_protocol::desired::Body;
use cartable_protocol::events::EventBody;
use cartable_protocol::release::Release;
use cartable_protocol::status::{UpdateProgress, UpdateState, UpdateStatus};
use cartable_protocol::topics::DesiredKind;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::ChunkSource;
use super::assemble::{self, AssembleError, Assembly, Tally};
use super::backend::{self, Booted, Installer};
use super::health::{self, HealthProbe};
use super::plan::{self, BoxFacts, Decision};
use super::progress::{self, Target};
use crate::base::clock::Clock;
use crate::store::Store;

pub(super) struct Settings {
    pub(crate) site: String,
    pub(crate) box_id: String,
    pub(crate) board: String,
    /// The install window when the release names none.
    pub(crate) window: String,
    pub(crate) health_timeout: Duration,
    pub(crate) peers: Vec<String>,
    pub(crate) keyring: PathBuf,
    /// `data_dir/update`: the bundle being rebuilt and the one installed last.
    pub(crate) dir: PathBuf,
}

pub(super) struct Agent {
    pub(crate) settings: Settings,
    pub(crate) store: Store,
    pub(crate) clock: Clock,
    pub(crate) fleet_key: Option<Vec<u8>>,
    pub(crate) installer: Option<Box<dyn Installer>>,
    pub(crate) booted: Booted,
    pub(crate) source: ChunkSource,
    pub(crate) status: watch::Sender<UpdateStatus>,
    pub(crate) wake: std::sync::Arc<Notify>,
}

/// What to do after a step.
enum Next {
    /// Another step at once.
    Now,
    /// Nothing until woken or this long.
    Wait(Duration),
}

/// How long an idle agent sleeps when nothing wakes it.
const IDLE: Duration = Duration::from_secs(3600);
/// A failed download or install waits this long, doubled at each failure, ...
const RETRY_FIRST: Duration = Duration::from_secs(5);
/// ... up to this (the sync's own longest wait: a try costs one connection, and a
/// link back after a long cut is found by the next try or by the sync's reconnect,
/// whichever comes first).
const RETRY_MAX: Duration = Duration::from_secs(300);
/// Installs that fail this many times in a row refuse the release.
const INSTALL_TRIES: u32 = 3;

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("the store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Assemble(#[from] AssembleError),
}

impl Agent {
    fn bundle(&self) -> PathBuf {
        self.settings.dir.join("bundle.raucb")
    }

    fn installed_bundle(&self) -> PathBuf {
        self.settings.dir.join("installed.raucb")
    }

    pub(crate) async fn run(
        &self,
        probe: &HealthProbe,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        self.after_boot(probe, shutdown).await?;
        let mut failures = 0u32;
        loop {
            let next = match self.step(&mut failures).await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "update step failed");
                    self.status.send_modify(|s| s.detail = e.to_string());
                    failures += 1;
                    Next::Wait(retry_wait(failures))
                }
            };
            let wait = match next {
                Next::Now => continue,
                Next::Wait(d) => d,
            };
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The release in force, verified again with the pinned key, and offered to the
    /// site's other boxes (they may ask this box for its chunks).
    async fn release(&self) -> Result<Option<Release>, StepError> {
        let release = self.verified_release().await?;
        (self.source.offer)(release.as_ref());
        Ok(release)
    }

    async fn verified_release(&self) -> Result<Option<Release>, StepError> {
        let Some(key) = self.fleet_key.clone() else {
            return Ok(None);
        };
        let envelope = self
            .store
            .read(|c| crate::store::desired_envelope(c, DesiredKind::Release))
            .await?;
        let Some(envelope) = envelope else {
            return Ok(None);
        };
        match cartable_protocol::desired::open(envelope.as_bytes(), &key) {
            Ok(v) => match v.desired.body {
                Body::Release(r) if r.check().is_ok() => Ok(Some(r)),
                _ => Ok(None),
            },
            Err(e) => {
                tracing::error!(error = %e, "the stored release does not verify; ignored");
                Ok(None)
            }
        }
    }

    fn facts(&self) -> BoxFacts<'_> {
        BoxFacts {
            site: &self.settings.site,
            box_id: &self.settings.box_id,
            board: &self.settings.board,
            running: &self.booted.version,
        }
    }

    /// The outbox event of a step.
    fn event(
        &self,
        version: &str,
        state: UpdateState,
        detail: &str,
        progress: UpdateProgress,
    ) -> EventBody {
        EventBody::Release {
            version: version.to_string(),
            state,
            detail: detail.to_string(),
            running: self.booted.version.clone(),
            board: self.settings.board.clone(),
            progress,
        }
    }

    /// Shows `target` in the status.
    fn show(&self, t: &Target) {
        self.status.send_modify(|s| {
            s.state = t.state;
            s.version = Some(t.release.version.clone());
            s.detail = t.detail.clone();
            s.progress.chunks = t.release.chunks.len() as u32;
            s.progress.bytes = t.release.bundle.size;
        });
    }

    /// Moves the target to `state`, with its event, and shows it.
    async fn transition(
        &self,
        t: &mut Target,
        state: UpdateState,
        detail: impl Into<String>,
    ) -> Result<(), StepError> {
        let detail = detail.into();
        tracing::info!(version = %t.release.version, state = state.as_str(), detail, "update");
        let version = t.release.version.clone();
        let progress = self.status.borrow().progress.clone();
        let event = self.event(&version, state, &detail, progress);
        let (d, at) = (detail.clone(), self.clock.unix());
        let never = matches!(state, UpdateState::Refused | UpdateState::RolledBack);
        let boot_id = match (&self.installer, state) {
            (Some(i), UpdateState::Rebooting) => Some(i.boot_id()),
            _ => None,
        };
        self.store
            .write(move |tx| {
                progress::set_state(tx, state, &d, at)?;
                if let Some(b) = &boot_id {
                    progress::set_boot_id(tx, b)?;
                }
                if never {
                    progress::add_never(tx, &version, &d, at)?;
                }
                progress::report(tx, at, &event)
            })
            .await?;
        t.state = state;
        t.detail = detail;
        self.show(t);
        Ok(())
    }

    /// Writes a new target (a release taken or refused) with its event. A refusal
    /// here is for what this box is (board, version, no installer), never a verdict
    /// on the release: the versions never taken again are those that failed a check
    /// or rolled back (`transition`).
    async fn begin(
        &self,
        release: Release,
        state: UpdateState,
        detail: String,
    ) -> Result<Target, StepError> {
        tracing::info!(version = %release.version, state = state.as_str(), detail, "release");
        let t = Target {
            release,
            state,
            detail,
            from_version: self.booted.version.clone(),
            bytes_local: 0,
            boot_id: String::new(),
        };
        let event = self.event(
            &t.release.version,
            t.state,
            &t.detail,
            UpdateProgress::default(),
        );
        let (row, at) = (t.clone(), self.clock.unix());
        self.store
            .write(move |tx| {
                progress::start(tx, &row, at)?;
                progress::report(tx, at, &event)
            })
            .await?;
        self.status
            .send_modify(|s| s.progress = UpdateProgress::default());
        self.show(&t);
        Ok(t)
    }

    // Long: the state machine's one dispatch, each arm a step of the diagram above.
    async fn step(&self, failures: &mut u32) -> Result<Next, StepError> {
        let target = self.store.read(progress::target).await?;
        let Some(release) = self.release().await? else {
            if let Some(t) = &target {
                self.show(t);
            }
            return Ok(Next::Wait(IDLE));
        };
        let aborted = release.rollout.aborted;
        let mut t = match target {
            // The same order goes on where it is. Another order for the same version
            // (a rollback order after a refusal as older, another bundle) and an
            // aborted release published again are decided afresh.
            Some(t)
                if same_order(&t.release, &release)
                    && (aborted || t.state != UpdateState::Aborted) =>
            {
                t
            }
            _ => {
                let never = self
                    .store
                    .read({
                        let v = release.version.clone();
                        move |c| progress::never(c, &v)
                    })
                    .await?;
                match plan::decide(&release, &self.facts(), never.as_deref()) {
                    d @ (Decision::Running | Decision::NotYet(_)) => {
                        let why = match d {
                            Decision::NotYet(why) => why,
                            _ => format!("release {} runs", release.version),
                        };
                        self.status.send_modify(|s| {
                            s.state = UpdateState::Idle;
                            s.version = Some(release.version.clone());
                            s.detail = why;
                        });
                        return Ok(Next::Wait(IDLE));
                    }
                    // Refused for what this box is (its board, its version), not for
                    // what the release is: a later order (a rollback) may take it.
                    Decision::Refuse(why) => {
                        self.begin(release, UpdateState::Refused, why).await?;
                        return Ok(Next::Wait(IDLE));
                    }
                    Decision::Take if self.installer.is_none() => {
                        self.begin(
                            release,
                            UpdateState::Refused,
                            "this box has no installer ([update] backend = \"none\")".into(),
                        )
                        .await?;
                        return Ok(Next::Wait(IDLE));
                    }
                    Decision::Take => {
                        *failures = 0;
                        self.begin(release, UpdateState::Downloading, String::new())
                            .await?
                    }
                }
            }
        };
        let before_install = matches!(
            t.state,
            UpdateState::Downloading | UpdateState::Verified | UpdateState::WaitingForWindow
        );
        if aborted && before_install {
            return self.abort(&mut t).await;
        }
        match t.state {
            UpdateState::Downloading => self.download(&mut t, failures).await,
            UpdateState::Verified => self.verify_signature(&mut t).await,
            UpdateState::WaitingForWindow => self.wait_for_window(&mut t).await,
            UpdateState::Installing => self.install(&mut t, failures).await,
            UpdateState::Idle
            | UpdateState::Rebooting
            | UpdateState::Checking
            | UpdateState::Committed
            | UpdateState::RolledBack
            | UpdateState::Refused
            | UpdateState::Aborted => {
                self.show(&t);
                Ok(Next::Wait(IDLE))
            }
        }
    }

    /// The fleet aborted the rollout before this box installed: the partial bundle
    /// and its progress go (the space is the school's), the running slot is untouched.
    async fn abort(&self, t: &mut Target) -> Result<Next, StepError> {
        let bundle = self.bundle();
        match std::fs::remove_file(&bundle) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(AssembleError::Io {
                    what: format!("removing {}", bundle.display()),
                    source: e,
                }
                .into());
            }
        }
        self.store.write(progress::forget_all_chunks).await?;
        self.transition(t, UpdateState::Aborted, "the fleet aborted the rollout")
            .await?;
        Ok(Next::Wait(IDLE))
    }

    async fn download(&self, t: &mut Target, failures: &mut u32) -> Result<Next, StepError> {
        let bundle = self.bundle();
        assemble::prepare(&self.store, &t.release, &bundle).await?;
        let installed = self
            .store
            .read(progress::installed)
            .await?
            .map(|r| (r, self.installed_bundle()));
        let status = self.status.clone();
        let on_progress = move |tally: Tally| {
            status.send_modify(|s| {
                s.progress.chunks_done = tally.chunks_done;
                s.progress.bytes_done = tally.bytes_done;
                s.progress.bytes_local = tally.bytes_local;
            });
        };
        let assembly = Assembly {
            store: &self.store,
            release: &t.release,
            bundle: &bundle,
            installed,
            source: &self.source,
            peers: &self.settings.peers,
            on_progress: &on_progress,
        };
        self.show(t);
        match assembly.run(t.bytes_local).await {
            Ok(_) => {}
            Err(AssembleError::OutsideWindow) => {
                self.status
                    .send_modify(|s| s.detail = "outside the download window".into());
                return Ok(Next::Wait(Duration::from_secs(300)));
            }
            Err(e @ AssembleError::Fetch { .. }) => {
                *failures += 1;
                self.status.send_modify(|s| s.detail = e.to_string());
                tracing::warn!(error = %e, "a chunk could not be had; retrying later");
                return Ok(Next::Wait(retry_wait(*failures)));
            }
            Err(e) => return Err(e.into()),
        }
        match assemble::check_whole(&t.release, &bundle).await? {
            Ok(()) => {
                *failures = 0;
                self.transition(t, UpdateState::Verified, "").await?;
                Ok(Next::Now)
            }
            Err(bad) if bad.is_empty() => {
                // Every chunk is what the manifest says, yet the whole is not: the
                // manifest contradicts itself.
                self.transition(
                    t,
                    UpdateState::Refused,
                    "the chunks put together do not hash to the bundle's SHA-256",
                )
                .await?;
                Ok(Next::Wait(IDLE))
            }
            Err(bad) => {
                tracing::warn!(
                    chunks = bad.len(),
                    "chunks damaged on disk; fetching them again"
                );
                self.store
                    .write(move |tx| progress::forget_chunks(tx, &bad))
                    .await?;
                *failures += 1;
                Ok(Next::Wait(retry_wait(*failures)))
            }
        }
    }

    /// RAUC's own signature check, and the manifest inside the bundle agreeing with
    /// the signed release.
    async fn verify_signature(&self, t: &mut Target) -> Result<Next, StepError> {
        let (bundle, keyring) = (self.bundle(), self.settings.keyring.clone());
        let info = tokio::task::spawn_blocking(move || backend::rauc_info(&bundle, &keyring))
            .await
            .map_err(|e| crate::store::StoreError::Commit(e.to_string()))?;
        let compatible = format!("cartable-{}", t.release.board);
        let fault = match info {
            Err(e) => Some(format!("the bundle's signature does not verify: {e}")),
            Ok(i) if i.compatible != compatible => Some(format!(
                "the bundle is for `{}`, the release says `{compatible}`",
                i.compatible
            )),
            Ok(i) if i.version.as_deref() != Some(t.release.version.as_str()) => Some(format!(
                "the bundle is version {}, the release says {}",
                i.version.as_deref().unwrap_or("(none)"),
                t.release.version
            )),
            Ok(_) => None,
        };
        match fault {
            Some(why) => {
                self.transition(t, UpdateState::Refused, why).await?;
                Ok(Next::Wait(IDLE))
            }
            None => {
                self.transition(t, UpdateState::WaitingForWindow, "")
                    .await?;
                Ok(Next::Now)
            }
        }
    }

    async fn wait_for_window(&self, t: &mut Target) -> Result<Next, StepError> {
        let window = t
            .release
            .window
            .clone()
            .unwrap_or_else(|| self.settings.window.clone());
        if plan::in_window(&window, self.clock.local()) {
            self.transition(t, UpdateState::Installing, "").await?;
            return Ok(Next::Now);
        }
        self.status
            .send_modify(|s| s.detail = format!("installs between {window}"));
        // Looked at again every minute: the window's start, to the minute.
        Ok(Next::Wait(Duration::from_secs(60)))
    }

    async fn install(&self, t: &mut Target, failures: &mut u32) -> Result<Next, StepError> {
        let Some(installer) = &self.installer else {
            return Ok(Next::Wait(IDLE));
        };
        let (bundle, version) = (self.bundle(), t.release.version.clone());
        let result = tokio::task::block_in_place(|| installer.install(&bundle, &version));
        if let Err(e) = result {
            *failures += 1;
            tracing::error!(error = %e, "install failed");
            if *failures >= INSTALL_TRIES {
                self.transition(t, UpdateState::Refused, format!("install failed: {e}"))
                    .await?;
                return Ok(Next::Wait(IDLE));
            }
            self.status
                .send_modify(|s| s.detail = format!("install failed: {e}"));
            return Ok(Next::Wait(retry_wait(*failures)));
        }
        self.transition(t, UpdateState::Rebooting, "").await?;
        if let Err(e) = tokio::task::block_in_place(|| installer.reboot()) {
            tracing::error!(error = %e, "cannot reboot");
            self.status
                .send_modify(|s| s.detail = format!("installed; the reboot failed: {e}"));
        }
        Ok(Next::Wait(IDLE))
    }

    /// At start: the first boot of new firmware is checked and committed or sent
    /// back; a boot that came back to the old slot is a rollback; any other boot
    /// confirms the running slot (as the bootloader's counting expects).
    async fn after_boot(
        &self,
        probe: &HealthProbe,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let Some(installer) = &self.installer else {
            return Ok(());
        };
        let target = self.store.read(progress::target).await?;
        let mut t = match target {
            Some(t) if matches!(t.state, UpdateState::Rebooting | UpdateState::Checking) => t,
            other => {
                if let Some(t) = &other {
                    self.show(t);
                }
                // Confirms this boot to the bootloader's counting. A failure is said,
                // not fatal: the box serves on, and the bootloader decides at the
                // next boot.
                if let Err(e) = tokio::task::block_in_place(|| installer.mark_good()) {
                    tracing::error!(error = %e, "cannot mark the booted slot good");
                    self.status
                        .send_modify(|s| s.detail = format!("cannot mark the slot good: {e}"));
                }
                return Ok(());
            }
        };
        self.show(&t);
        if t.state == UpdateState::Rebooting
            && !t.boot_id.is_empty()
            && t.boot_id == installer.boot_id()
        {
            // Still the boot the reboot was asked from: the daemon was killed or
            // restarted before the machine went down. Not a fallback: reboot now.
            tracing::warn!(version = %t.release.version, "the reboot never happened; rebooting");
            tokio::task::block_in_place(|| installer.reboot())?;
            return Ok(());
        }
        if self.booted.version != t.release.version {
            tokio::task::block_in_place(|| installer.mark_good())?;
            let why = format!(
                "the new firmware did not come up: the box booted {} again",
                self.booted.version
            );
            self.transition(&mut t, UpdateState::RolledBack, why)
                .await?;
            return Ok(());
        }
        self.transition(&mut t, UpdateState::Checking, "").await?;
        let checked = tokio::select! {
            r = health::check(probe, self.settings.health_timeout) => r,
            () = shutdown.cancelled() => return Ok(()),
        };
        match checked {
            Ok(()) => {
                tokio::task::block_in_place(|| installer.mark_good())?;
                self.keep_installed(&t.release).await?;
                self.transition(&mut t, UpdateState::Committed, "").await?;
            }
            Err(why) => {
                tokio::task::block_in_place(|| installer.mark_bad())?;
                self.transition(
                    &mut t,
                    UpdateState::RolledBack,
                    format!("health check failed: {why}"),
                )
                .await?;
                tokio::task::block_in_place(|| installer.reboot())?;
            }
        }
        Ok(())
    }

    /// The committed bundle becomes the one the next release copies chunks from.
    async fn keep_installed(&self, release: &Release) -> Result<(), StepError> {
        let (from, to) = (self.bundle(), self.installed_bundle());
        let moved = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
            match std::fs::rename(&from, &to) {
                Ok(()) => {
                    if let Some(dir) = to.parent() {
                        std::fs::File::open(dir)?.sync_all()?;
                    }
                    Ok(true)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(to.exists()),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(|e| crate::store::StoreError::Commit(e.to_string()))?
        .map_err(|e| AssembleError::Io {
            what: "keeping the installed bundle".into(),
            source: e,
        })?;
        if moved {
            let r = release.clone();
            self.store
                .write(move |tx| progress::set_installed(tx, &r))
                .await?;
        }
        Ok(())
    }
}

fn retry_wait(failures: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(1 << failures.saturating_sub(1).min(10))
        .min(RETRY_MAX)
}

/// Whether two manifests give the same order: the same bundle of the same version, an
/// upgrade both or a rollback both. Rollout changes (pause, widen) are the same order.
fn same_order(a: &Release, b: &Release) -> bool {
    a.version == b.version && a.bundle == b.bundle && a.downgrade == b.downgrade
}
