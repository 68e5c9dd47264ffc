//! Reloading the lists: on SIGHUP (or a request from the sync side), a new filter is
//! compiled on a blocking thread beside the one serving, then swapped in atomically.
//! A failed build is logged and the filter in service stays.

use std::sync::Arc;

use tokio::sync::Notify;

use super::engine::Engine;
use crate::filter::load::{Sources, load};
use crate::filter::policy::{BlockMode, PolicyConfig};
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
}

impl FilterService {
    pub fn new(engine: Arc<Engine>, spec: FilterSpec, loaded: bool) -> FilterService {
        FilterService {
            engine,
            spec,
            reload: Arc::new(Notify::new()),
            loaded: std::sync::atomic::AtomicBool::new(loaded),
        }
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
        let spec = self.spec.clone();
        let loaded = tokio::task::spawn_blocking(move || Self::compile(&spec)).await??;
        self.engine.swap_filter(loaded.filter);
        self.loaded
            .store(true, std::sync::atomic::Ordering::Relaxed);
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
