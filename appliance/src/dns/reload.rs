//! Reloading the lists: on SIGHUP (or a request from the sync side), a new filter is
//! compiled on a blocking thread beside the one serving, then swapped in atomically.
//! A failed build is logged and the filter in service stays.
//!
//! It also says when the filter in service is not what the admin asked for: a policy
//! that blocks nothing it names, a list file gone, a failed reload. Those are the
//! service's problems, shown by `/healthz` and the status as "degraded": a box that
//! quietly stopped filtering is the failure a school never notices by itself.

use std::sync::Arc;

use std::time::Duration;

use tokio::sync::Notify;

use super::engine::Engine;
use crate::filter::decide::Filter;
use crate::filter::load::{Sources, load};
use crate::filter::policy::{BlockMode, Policies, PolicyConfig};
use crate::supervisor::{Service, ServiceCtx, ServiceFuture};

/// Where the policies in force come from, in the order of precedence: the central
/// side's signed set, else the school admin's edits (from the admin page, in the
/// store), else the configuration file's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicySource {
    File,
    Local,
    Central,
}

/// What a reload compiles.
#[derive(Clone)]
pub struct FilterSpec {
    pub sources: Sources,
    pub policies: Vec<PolicyConfig>,
    pub block_mode: BlockMode,
    /// Where `policies` come from (read back from the store at start, or the file).
    pub source: PolicySource,
    /// The configuration file's policies, whatever is in force.
    pub file_policies: Vec<PolicyConfig>,
}

pub struct FilterService {
    engine: Arc<Engine>,
    spec: FilterSpec,
    /// Asks for a reload (SIGHUP is turned into this).
    pub reload: Arc<Notify>,
    /// Whether the filter in service came from a successful load of `spec`.
    loaded: std::sync::atomic::AtomicBool,
    /// Policies put in force since the start (the central side's, the admin's), in
    /// force instead of `spec`'s.
    in_force: std::sync::Mutex<Option<(Vec<PolicyConfig>, PolicySource)>>,
    /// Why the last reload failed, until one succeeds.
    reload_error: std::sync::Mutex<Option<String>>,
    /// The problems last said (logged and shown), and a wake-up when they may have
    /// changed.
    problems: std::sync::Mutex<Vec<String>>,
    recheck: Notify,
}

/// How often the list files are looked at (a file deleted under a running box).
const RECHECK_EVERY: Duration = Duration::from_secs(60);

impl FilterService {
    pub fn new(engine: Arc<Engine>, spec: FilterSpec, loaded: bool) -> FilterService {
        FilterService {
            engine,
            spec,
            reload: Arc::new(Notify::new()),
            loaded: std::sync::atomic::AtomicBool::new(loaded),
            in_force: std::sync::Mutex::new(None),
            reload_error: std::sync::Mutex::new(None),
            problems: std::sync::Mutex::new(Vec::new()),
            recheck: Notify::new(),
        }
    }

    /// Where the policies in force come from, for `cartable filter test`.
    pub fn policies_from(&self) -> &'static str {
        match self.policies_in_force().1 {
            PolicySource::Central => "the central side (signed)",
            PolicySource::Local => "the school admin's edits (admin page)",
            PolicySource::File => "the configuration file",
        }
    }

    /// The policies in force and where they come from.
    pub fn policies_in_force(&self) -> (Vec<PolicyConfig>, PolicySource) {
        self.in_force
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| (self.spec.policies.clone(), self.spec.source))
    }

    /// Where the lists come from.
    pub fn sources(&self) -> &Sources {
        &self.spec.sources
    }

    /// The configuration file's policies (what "back to the file" restores).
    pub fn file_policies(&self) -> &[PolicyConfig] {
        &self.spec.file_policies
    }

    /// What the filter in service fails to do: policies that block nothing, list
    /// files gone, the last reload's failure.
    pub fn problems(&self) -> Vec<String> {
        let mut out = self.engine.filter().coverage_problems();
        let s = &self.spec.sources;
        for path in s
            .ut1_dir
            .iter()
            .chain(s.ut1_archive.iter())
            .chain(s.lists.iter().map(|(_, p)| p))
        {
            if !path.exists() {
                out.push(format!(
                    "list `{}` is gone; the lists in service stay until it is back",
                    path.display()
                ));
            }
        }
        if let Some(e) = &*self.reload_error.lock().unwrap_or_else(|e| e.into_inner()) {
            out.push(format!(
                "the last reload failed ({e}); the lists in service stay"
            ));
        }
        out
    }

    /// Compiles `policies` against the lists in service, without swapping: the caller
    /// stores them first, then calls [`FilterService::put_in_force`].
    pub fn prepare_policies(&self, policies: &[PolicyConfig]) -> Result<Filter, String> {
        let index = self.engine.filter().index.clone();
        let compiled =
            Policies::compile(policies, &index, self.spec.block_mode).map_err(|e| e.to_string())?;
        Ok(Filter {
            index,
            policies: compiled,
        })
    }

    /// Swaps in a filter from [`FilterService::prepare_policies`]; later reloads keep
    /// these policies.
    pub fn put_in_force(&self, filter: Filter, policies: Vec<PolicyConfig>, source: PolicySource) {
        *self.in_force.lock().unwrap_or_else(|e| e.into_inner()) = Some((policies, source));
        self.engine.swap_filter(filter);
        self.recheck.notify_one();
    }

    /// Compiles the lists now, on this thread.
    pub fn compile(
        spec: &FilterSpec,
    ) -> Result<crate::filter::load::Loaded, crate::filter::FilterError> {
        let loaded = load(&spec.sources, &spec.policies, spec.block_mode)?;
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        let how = if loaded.from_saved {
            "filter lists loaded (saved index, lists unchanged)"
        } else {
            "filter lists compiled"
        };
        tracing::info!(
            names = loaded.filter.index.names(),
            categories = loaded.filter.index.categories().len(),
            index_bytes = loaded.filter.index.map_bytes(),
            took_ms = loaded.took.as_millis() as u64,
            "{how}"
        );
        Ok(loaded)
    }

    async fn reload_now(&self) -> anyhow::Result<()> {
        let mut spec = self.spec.clone();
        (spec.policies, spec.source) = self.policies_in_force();
        let loaded = match tokio::task::spawn_blocking(move || Self::compile(&spec)).await? {
            Ok(loaded) => loaded,
            Err(e) => {
                *self.reload_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                return Err(e.into());
            }
        };
        *self.reload_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.engine.swap_filter(loaded.filter);
        self.loaded
            .store(true, std::sync::atomic::Ordering::Relaxed);
        // The build's temporary buffers (and, once its last reader is done, the old
        // index) go back to the system, not to the allocator's free lists.
        tokio::task::spawn_blocking(cartable_sys::release_free_heap);
        Ok(())
    }
}

impl Service for FilterService {
    fn name(&self) -> &'static str {
        "filter"
    }

    fn run(self: Arc<Self>, ctx: ServiceCtx) -> ServiceFuture {
        Box::pin(async move {
            if !self.loaded.load(std::sync::atomic::Ordering::Relaxed) {
                // The last attempt failed: try again (the supervisor backs off).
                self.reload_now().await?;
            }
            let mut hangup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
            ctx.ready();
            let mut look = tokio::time::interval(RECHECK_EVERY);
            loop {
                // Said once when they change, not at every look.
                let problems = self.problems();
                {
                    let mut said = self.problems.lock().unwrap_or_else(|e| e.into_inner());
                    if *said != problems {
                        for p in problems.iter().filter(|p| !said.contains(p)) {
                            tracing::warn!("filter degraded: {p}");
                        }
                        if problems.is_empty() {
                            tracing::info!("filter no longer degraded");
                        }
                        *said = problems.clone();
                    }
                }
                ctx.problems(problems);
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                    _ = self.recheck.notified() => continue,
                    _ = look.tick() => continue,
                    _ = self.reload.notified() => tracing::info!("reloading the filter lists"),
                    _ = hangup.recv() => tracing::info!("SIGHUP: reloading the filter lists"),
                }
                if let Err(e) = self.reload_now().await {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "reload failed; the lists in service stay"
                    );
                }
            }
        })
    }
}
