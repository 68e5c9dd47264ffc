//! Builds the daemon from a [`Config`] and runs it: `App::build` opens the store and
//! binds every socket (so mistakes fail the start with a clear error), `App::run`
//! hands the services to the supervisor until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::net::uplink::UplinkWatch;
use crate::store::Store;
use crate::store::service::StoreService;
use crate::supervisor::{Health, Supervisor};
use crate::web::{HttpService, WebState};

pub struct App {
    store: Store,
    supervisor: Supervisor,
    http_addr: SocketAddr,
    health: Health,
}

impl App {
    pub fn build(config: Config) -> anyhow::Result<App> {
        let config = Arc::new(config);
        let data_dir = &config.appliance.data_dir;
        let store = Store::open(data_dir)
            .with_context(|| format!("opening the store in {}", data_dir.display()))?;
        let health = Health::default();
        let (uplink, uplink_rx) = UplinkWatch::new();
        let web = WebState {
            config: config.clone(),
            store: store.clone(),
            health: health.clone(),
            uplink: uplink_rx,
            started: Instant::now(),
        };
        let http = HttpService::bind(config.http.listen, web)
            .with_context(|| format!("binding [http] listen = {}", config.http.listen))?;
        let http_addr = http.local_addr()?;

        // Start order; the supervisor stops them in reverse, the store last.
        let mut supervisor = Supervisor::new(health.clone());
        supervisor.add(Arc::new(StoreService {
            store: store.clone(),
        }));
        supervisor.add(Arc::new(uplink));
        supervisor.add(Arc::new(http));
        Ok(App {
            store,
            supervisor,
            http_addr,
            health,
        })
    }

    /// Where the HTTP server listens (the real port when the config said 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Serves until `shutdown` is cancelled, then stops every service and closes the
    /// store once its last writes are committed.
    pub async fn run(self, shutdown: CancellationToken, on_ready: impl FnOnce()) {
        self.supervisor.run(shutdown, on_ready).await;
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
    }
}
