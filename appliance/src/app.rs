//! Builds the daemon from a [`Config`] and runs it: `App::build` opens the store and
//! binds every socket (so mistakes fail the start with a clear error), `App::run`
//! hands the services to the supervisor until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::dns::engine::{Engine, EngineConfig};
use crate::dns::forward::{self, Forwarder};
use crate::dns::reload::{FilterService, FilterSpec};
use crate::dns::server::DnsService;
use crate::filter::decide::Filter;
use crate::filter::index::Index;
use crate::filter::policy::Policies;
use crate::net::uplink::UplinkWatch;
use crate::store::Store;
use crate::store::service::StoreService;
use crate::supervisor::{Health, Supervisor};
use crate::sync::SyncService;
use crate::web::{HttpService, WebState};

pub struct App {
    hub: Arc<crate::hub::Hub>,
    headwind: Option<Arc<crate::hub::headwind::Headwind>>,
    store: Store,
    supervisor: Supervisor,
    http_addr: SocketAddr,
    dns_addrs: Vec<SocketAddr>,
    health: Health,
    engine: Arc<Engine>,
    reload: Arc<tokio::sync::Notify>,
}

impl App {
    pub fn build(config: Config) -> anyhow::Result<App> {
        let config = Arc::new(config);
        let data_dir = &config.appliance.data_dir;
        let store = Store::open(data_dir)
            .with_context(|| format!("opening the store in {}", data_dir.display()))?;
        let health = Health::default();
        let (uplink, uplink_rx) = UplinkWatch::new();
        // Policies from the central side, verified again, win over the config file's.
        let fleet_key = config
            .sync
            .fleet_public_key
            .as_ref()
            .map(|k| k.0.as_slice());
        let policies = match crate::sync::desired::stored_policies(&store, fleet_key) {
            Some(p) => {
                tracing::info!(
                    policies = p.len(),
                    "using the policies from the central side"
                );
                p
            }
            None => config.filter.policies.clone(),
        };
        let spec = FilterSpec {
            sources: config.filter_sources(),
            policies,
            block_mode: config.dns.block_mode,
        };
        // The first compile happens before serving, so no query is answered unfiltered.
        // If it fails, the box serves with the policies alone (safe search, anti-bypass,
        // allow and deny lists) and the filter service retries with backoff.
        let (filter, loaded) = match FilterService::compile(&spec) {
            Ok(l) => {
                cartable_sys::release_free_heap();
                (l.filter, true)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot compile the filter lists; serving with the policies alone");
                let index = Arc::new(Index::empty());
                let policies = Policies::compile(&spec.policies, &index, spec.block_mode)
                    .context("the policies cannot be compiled")?;
                (Filter { index, policies }, false)
            }
        };
        let upstreams = if config.dns.upstreams.is_empty() && config.dns.system_resolvers {
            let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            forward::from_resolv_conf(&resolv, &config.dns.listen)
                .into_iter()
                .map(forward::Upstream::Plain)
                .collect()
        } else {
            config.dns.upstreams.clone()
        };
        let tls = if upstreams
            .iter()
            .any(|u| matches!(u, forward::Upstream::Tls { .. }))
        {
            let ca = config.dns.upstream_ca_file.as_ref().map(|p| p.as_path());
            Some(
                crate::base::tls::client_config(ca)
                    .map_err(|e| anyhow::anyhow!("TLS upstreams: {e}"))?,
            )
        } else {
            None
        };
        let engine = Arc::new(Engine::new(
            filter,
            Forwarder::new(
                upstreams,
                std::time::Duration::from_millis(config.dns.upstream_timeout_ms),
                tls,
            ),
            EngineConfig {
                // Redirect mode: the cached origins' names lead to the box.
                local: config
                    .cache
                    .redirect
                    .iter()
                    .flat_map(|o| o.hosts.iter())
                    .map(|h| {
                        (
                            h.trim_end_matches('.').to_ascii_lowercase(),
                            config.dns.box_addresses.clone(),
                        )
                    })
                    .chain(
                        config
                            .dns
                            .local
                            .iter()
                            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone())),
                    )
                    .collect(),
                box_addresses: config.dns.box_addresses.clone(),
                cache_entries: config.dns.cache_entries,
                max_stale: std::time::Duration::from_secs(
                    u64::from(config.dns.stale_max_hours) * 3600,
                ),
                timezone: config.filter.timezone.zone(),
                query_log: config.dns.query_log,
            },
        ));
        match crate::dns::persist::restore_cache(&engine, &store) {
            Ok(n) if n > 0 => tracing::info!(entries = n, "DNS cache restored"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot restore the DNS cache; starting cold"),
        }
        let dns = DnsService::bind(
            &config.dns.listen,
            engine.clone(),
            uplink.subscribe(),
            store.clone(),
        )
        .with_context(|| format!("binding [dns] listen = {:?}", config.dns.listen))?;
        let dns_addrs = dns.local_addrs();
        let filter_service = Arc::new(FilterService::new(engine.clone(), spec, loaded));
        let reload = filter_service.reload.clone();
        let (mut sync, sync_view) = SyncService::new(
            config.clone(),
            store.clone(),
            Some(filter_service.clone()),
            uplink.subscribe(),
        );
        let hub = Arc::new(
            crate::hub::Hub::load(
                store.clone(),
                Some(engine.clone()),
                std::time::Duration::from_secs(config.hub.one_shot_ttl_secs),
            )
            .context("loading the hub's devices")?,
        );
        let headwind = config.hub.headwind_secret.clone().map(|secret| {
            Arc::new(crate::hub::headwind::Headwind::new(
                secret,
                config.hub.headwind_project.clone(),
                config.hub.wipe_packages.clone(),
                config.hub.wipe_dirs.clone(),
            ))
        });
        let origin_tls = match &config.cache.ca_file {
            Some(ca) => crate::base::tls::client_config(Some(ca.as_path())),
            None => crate::base::tls::client_config(None),
        }
        .map_err(|e| tracing::warn!(error = %e, "HTTPS origins are off"))
        .ok();
        let cache = crate::cache::Cache::open(
            data_dir,
            store.clone(),
            config.cache.clone(),
            config.filter.timezone.zone(),
            crate::cache::origin::Origins::new(
                origin_tls,
                Some(engine.clone()),
                std::time::Duration::from_secs(config.cache.stall_secs.max(1)),
            ),
            crate::cache::CatalogueSource {
                fleet_key: fleet_key.map(|k| k.to_vec()),
                file: config
                    .cache
                    .catalogue
                    .as_ref()
                    .map(|p| p.as_path().to_path_buf()),
            },
        )?;
        let woken = cache.clone();
        sync.on_catalogue(Arc::new(move || {
            woken.wake.notify_one();
        }));
        let web = WebState {
            config: config.clone(),
            store: store.clone(),
            health: health.clone(),
            uplink: uplink_rx,
            started: Instant::now(),
            engine: Some(engine.clone()),
            sync: sync_view,
            hub: Some(hub.clone()),
            headwind: headwind.clone(),
            cache: Some(cache.clone()),
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
        supervisor.add(filter_service);
        supervisor.add(Arc::new(dns));
        supervisor.add(Arc::new(sync));
        supervisor.add(Arc::new(crate::hub::screen_time::ScreenTimeService::new(
            hub.clone(),
            store.clone(),
            config.filter.timezone.zone(),
            std::time::Duration::from_secs(config.hub.screen_time_tick_secs.max(1)),
        )));
        supervisor.add(Arc::new(crate::cache::prefetch::PrefetchService::new(
            cache,
        )));
        supervisor.add(Arc::new(http));
        Ok(App {
            hub,
            headwind,
            store,
            supervisor,
            http_addr,
            dns_addrs,
            health,
            engine,
            reload,
        })
    }

    /// Where the HTTP server listens (the real port when the config said 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where the DNS server listens (UDP and TCP on each).
    pub fn dns_addrs(&self) -> &[SocketAddr] {
        &self.dns_addrs
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Notified, recompiles the lists and swaps them in (what SIGHUP does).
    pub fn reload_handle(&self) -> Arc<tokio::sync::Notify> {
        self.reload.clone()
    }

    pub fn hub(&self) -> &Arc<crate::hub::Hub> {
        &self.hub
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
        if let Some(hw) = self.headwind.clone() {
            // Headwind tablets poll; one that stopped polling is offline.
            let (hub, stop) = (self.hub.clone(), shutdown.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
                loop {
                    tokio::select! {
                        _ = tick.tick() => hw.reap(&hub),
                        _ = stop.cancelled() => return,
                    }
                }
            });
        }
        self.supervisor.run(shutdown, on_ready).await;
        // Every service has stopped: nothing changes the cache or the counters now.
        let last_save = crate::dns::server::persist(&self.engine, &self.store, true);
        if tokio::time::timeout(std::time::Duration::from_secs(3), last_save)
            .await
            .is_err()
        {
            tracing::warn!("the last save of the DNS cache did not finish in 3 s");
        }
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
    }
}
