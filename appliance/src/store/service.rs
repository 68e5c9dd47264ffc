//! The store as a supervised service: it reports the writer's health, so that a dead
//! writer shows in `/healthz` instead of silently failing every write.

use std::sync::Arc;
use std::time::Duration;

use super::Store;
use crate::supervisor::{Service, ServiceCtx, ServiceFuture};

const CHECK_EVERY: Duration = Duration::from_secs(5);

pub(crate) struct StoreService {
    pub store: Store,
}

impl Service for StoreService {
    fn name(&self) -> &'static str {
        "store"
    }

    fn run(self: Arc<Self>, ctx: ServiceCtx) -> ServiceFuture {
        Box::pin(async move {
            let mut ticker = tokio::time::interval(CHECK_EVERY);
            let mut announced = false;
            loop {
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                    _ = ticker.tick() => {}
                }
                if !self.store.writer_alive() {
                    anyhow::bail!("the store writer has stopped");
                }
                if !announced {
                    ctx.ready();
                    announced = true;
                }
            }
        })
    }
}
