//! Reloading the lists: on SIGHUP (or a request from the sync side), a new filter is
//! compiled on a blocking thread beside the one serving, then swapped in atomically.
//! A failed build is logged and the filter in service stays.

use std::sync::Arc;

use tokio::sync::Notify;

use super::engine::Engine;
use crate::filter::decide::Filter;
use crate::filter::load::{Sources, load};
use crate::filter::policy::{BlockMode, Policies, PolicyConfig};
use crate::supervisor::{Service, ServiceCtx, ServiceFuture};

/// What a reload compiles.
#[derive(Clone)]
pub struct FilterSpec {
    pub sources: Sources,
    pub policies: Vec<PolicyConfig>,
    pub block_mode: BlockMode,
}

pub struct FilterService {
    engine: Arc<Engine>,
    spec: FilterSpec,
    /// Asks for a reload (SIGHUP is turned into this).
    pub reload: Arc<Notify>,
    /// Whether the filter in service came from a successful load of `spec`.
    loaded: std::sync::atomic::AtomicBool,
    /// Policies from the central side, in force instead of the config file's.
    central_policies: std::sync::Mutex<Option<Vec<PolicyConfig>>>,
}

impl FilterService {
    pub fn new(engine: Arc<Engine>, spec: FilterSpec, loaded: bool) -> FilterService {
        FilterService {
            engine,
            spec,
            reload: Arc::new(Notify::new()),
            loaded: std::sync::atomic::AtomicBool::new(loaded),
            central_policies: std::sync::Mutex::new(None),
        }
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
    pub fn put_in_force(&self, filter: Filter, policies: Vec<PolicyConfig>) {
        *self
            .central_policies
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(policies);
        self.engine.swap_filter(filter);
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
        if let Some(p) = self
            .central_policies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            spec.policies = p;
        }
        let loaded = tokio::task::spawn_blocking(move || Self::compile(&spec)).await??;
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
            loop {
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(()),
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
