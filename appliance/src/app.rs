//! Wires the daemon from a [`Config`]: each component builds itself from its own
//! section and the handles it is given (`XConfig::build(deps)`), and this file only
//! connects them: the hub's device rules to the DNS engine, the DNS upstreams to the
//! cache's origins, verified desired state from the sync to the filter and the cache,
//! every service's routes to the one HTTP server. `App::build` opens the store and
//! binds every socket (so mistakes fail the start with a clear error); `App::run`
//! hands the services to the supervisor until shutdown.
//!
//! What must not live here: logic. A decision about names, files or protocols
//! belongs to the component that owns it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::base::clock::Clock;
use crate::config::Config;
use crate::dns::engine::Engine;
use crate::dns::reload::{FilterService, FilterSpec, PolicySource};
use crate::dns::{Dns, DnsDeps};
use crate::hub::{Hub, HubDeps};
use crate::net::uplink::UplinkWatch;
use crate::store::Store;
use crate::store::service::StoreService;
use crate::supervisor::{Health, Service, Supervisor};
use crate::sync::desired::Identity;
use crate::sync::{Sinks, SyncDeps};
use crate::web::HttpService;
use crate::web::status::StatusState;

pub struct App {
    /// Cancelled by the update agent's directory backend to "reboot".
    exit: CancellationToken,
    hub: Arc<Hub>,
    store: Store,
    supervisor: Supervisor,
    http_addr: SocketAddr,
    dns_addrs: Vec<SocketAddr>,
    /// The sync's link, and the update agent's wake-up: a download waiting out its
    /// backoff goes on as soon as the broker answers again.
    reconnects: (crate::sync::SyncView, Arc<tokio::sync::Notify>),
    /// The cart's leases, and the DNS engine that follows tablets by MAC with them.
    leases: (
        tokio::sync::watch::Receiver<Vec<crate::net::dhcp::pool::Lease>>,
        Arc<Engine>,
    ),
}

impl App {
    // Long: the wiring in build order, one component after another, each handed the
    // handles of those before; split, the order would be harder to read, not easier.
    pub fn build(config: Config) -> anyhow::Result<App> {
        let (config, box_key) = crate::sync::box_key::resolve_id(config)?;
        let data_dir = config.appliance.data_dir.clone();
        let clock = Clock::system(config.filter.timezone.zone());
        let store = Store::open(&data_dir)
            .with_context(|| format!("opening the store in {}", data_dir.display()))?;
        let health = Health::default();
        let (uplink, uplink_rx) = UplinkWatch::new();
        // Cart mode: the LAN exists before the DNS server binds its address.
        let tls_extra = config.net.prepare()?;
        let fleet_key = config.sync.fleet_public_key.as_ref().map(|k| k.0.clone());

        let Dns {
            engine,
            server: dns,
            filter,
        } = config.dns.build(DnsDeps {
            store: store.clone(),
            clock: clock.clone(),
            uplink: uplink.subscribe(),
            filter: filter_spec(&config, &store, fleet_key.as_deref()),
            box_names: config.cache.redirect_hosts(),
            data_dir: data_dir.clone(),
            tls_extra,
        })?;
        let dns_addrs = dns.local_addrs();
        let net = config.net.build(crate::net::NetDeps {
            store: store.clone(),
            clock: clock.clone(),
            data_dir: data_dir.clone(),
            dns_port: dns_addrs.first().map_or(53, |a| a.port()),
            dot_port: dns.tls_addrs().first().map(|a| a.port()),
            http_port: config.http.listen.port(),
            central_resolvers: {
                let (store, key) = (store.clone(), fleet_key.clone());
                Arc::new(move || crate::sync::desired::stored_resolvers(&store, key.as_deref()))
            },
        })?;

        let rules_to = engine.clone();
        let hub = config
            .hub
            .build(HubDeps {
                store: store.clone(),
                clock: clock.clone(),
                data_dir: data_dir.clone(),
                rules: Some(Arc::new(move |rules| rules_to.set_devices(rules))),
                site: config.appliance.site.to_string(),
                wifi: crate::hub::provisioning::Wifi::of_cart(&config.net),
            })
            .context("loading the hub's devices")?;

        let resolver_engine = engine.clone();
        let cache = config.cache.build(crate::cache::CacheDeps {
            data_dir: data_dir.clone(),
            store: store.clone(),
            zone: clock.zone().clone(),
            resolver: Some(Arc::new(move |host: String| {
                let engine = resolver_engine.clone();
                Box::pin(async move { engine.addresses_upstream(&host).await })
            })),
            fleet_key: fleet_key.clone(),
        })?;

        let exit = CancellationToken::new();
        let update = config.update.build(crate::update::UpdateDeps {
            store: store.clone(),
            clock: clock.clone(),
            data_dir: data_dir.clone(),
            site: config.appliance.site.to_string(),
            box_id: config.appliance.id.to_string(),
            fleet_key: fleet_key.clone(),
            chunks: chunk_source(&cache),
            exit: exit.clone(),
        })?;

        let (sync, sync_view) = config.sync.build(SyncDeps {
            store: store.clone(),
            identity: Identity {
                site: config.appliance.site.to_string(),
                box_id: config.appliance.id.to_string(),
                fleet_key,
                box_key: Arc::new(box_key),
            },
            data_dir: data_dir.clone(),
            clock: clock.clone(),
            uplink: uplink.subscribe(),
            sinks: sinks(&filter, &cache, &update.wake, &net.firewall_wake),
            firmware: (update.status())().running,
            inventory: Some({
                let hub = hub.hub.clone();
                Arc::new(move || {
                    let hub = hub.clone();
                    Box::pin(async move {
                        hub.inventory().await.unwrap_or_else(|e| {
                            tracing::warn!(error = %e, "cannot list the tablets for the state message");
                            Vec::new()
                        })
                    })
                })
            }),
        });
        let link = sync_view.clone();
        let reconnects = (sync_view.clone(), update.wake.clone());

        let http = http_service(
            &config,
            Parts {
                store: &store,
                health: &health,
                uplink: uplink_rx,
                sync: sync_view,
                cache: &cache,
                engine: &engine,
                filter: &filter,
                clock,
                update: update.status(),
                admin: hub.admin_check.clone(),
            },
            hub.routes.merge(admin_gated(net.routes, &hub.admin_check)),
        )?;
        let http_addr = http.local_addr()?;
        let services = health.clone();
        let update = update.service(crate::update::HealthProbe {
            services: Arc::new(move || services.snapshot()),
            broker: Arc::new(move || link.link_state()),
            uplink: uplink.subscribe(),
            dns: dns_addrs.first().copied(),
            http: http_addr,
            store: store.clone(),
        });

        // Start order; the supervisor stops them in reverse, the store last.
        let mut supervisor = Supervisor::new(health.clone());
        let first: [Arc<dyn Service>; 4] = [
            Arc::new(StoreService {
                store: store.clone(),
            }),
            Arc::new(uplink),
            filter,
            Arc::new(dns),
        ];
        let prefetch = Arc::new(crate::cache::prefetch::PrefetchService::new(cache));
        let last: [Arc<dyn Service>; 3] = [prefetch, Arc::new(http), update];
        // The firewall after the DNS (it redirects to it), DHCP after the firewall (a
        // tablet with an address is already kept on the filter).
        let sync: Arc<dyn Service> = Arc::new(sync);
        for service in first
            .into_iter()
            .chain(net.services)
            .chain([sync])
            .chain(hub.services)
            .chain(last)
        {
            supervisor.add(service);
        }
        Ok(App {
            exit,
            hub: hub.hub,
            store,
            supervisor,
            http_addr,
            dns_addrs,
            reconnects,
            leases: (net.leases, engine),
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

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves until `shutdown` is cancelled, then stops every service and closes the
    /// store once its last writes are committed.
    pub async fn run(self, shutdown: CancellationToken, on_ready: impl FnOnce()) {
        let (exit, stop) = (self.exit.clone(), shutdown.clone());
        tokio::spawn(async move {
            exit.cancelled().await;
            tracing::info!("rebooting (the directory backend): the daemon stops");
            stop.cancel();
        });
        let (link, wake) = self.reconnects;
        tokio::spawn(link.on_reconnect(move || wake.notify_one()));
        tokio::spawn(follow_leases(
            self.leases.0,
            self.leases.1,
            self.hub.clone(),
        ));
        self.supervisor.run(shutdown, on_ready).await;
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
    }
}

/// Hands every change of the cart's lease table to the DNS engine (policies by MAC)
/// and the hub (tablets' rules and tiles by MAC).
async fn follow_leases(
    mut leases: tokio::sync::watch::Receiver<Vec<crate::net::dhcp::pool::Lease>>,
    engine: Arc<Engine>,
    hub: Arc<crate::hub::Hub>,
) {
    loop {
        let pairs: Vec<_> = leases
            .borrow_and_update()
            .iter()
            .map(|l| (l.mac, std::net::IpAddr::V4(l.address)))
            .collect();
        engine.set_leases(pairs.iter().map(|(m, a)| (*a, *m)).collect());
        hub.set_leases(&pairs);
        if leases.changed().await.is_err() {
            return;
        }
    }
}

/// What the HTTP side is made of, besides the hub's routes.
struct Parts<'a> {
    store: &'a Store,
    health: &'a Health,
    uplink: tokio::sync::watch::Receiver<cartable_protocol::status::UplinkStatus>,
    sync: crate::sync::SyncView,
    cache: &'a Arc<crate::cache::Cache>,
    engine: &'a Arc<Engine>,
    filter: &'a Arc<crate::dns::reload::FilterService>,
    clock: Clock,
    update: Arc<dyn Fn() -> cartable_protocol::status::UpdateStatus + Send + Sync>,
    /// The hub's word on who is a signed-in admin, for the other services' admin routes.
    admin: crate::base::http::AdminCheck,
}

/// The layer that marks a signed-in admin's requests (the hub knows the sessions; the
/// services' admin routes read the mark).
fn admin_gated(router: axum::Router, check: &crate::base::http::AdminCheck) -> axum::Router {
    router.route_layer(axum::middleware::from_fn_with_state(
        check.clone(),
        crate::base::http::admin_gate,
    ))
}

/// Every service's routes on one router, behind the cache's redirect mode, served
/// with the cache's `sendfile` fast path.
fn http_service(
    config: &Config,
    p: Parts<'_>,
    hub_routes: axum::Router,
) -> anyhow::Result<HttpService> {
    let status = StatusState {
        box_id: config.appliance.id.to_string(),
        site: config.appliance.site.to_string(),
        data_dir: config.appliance.data_dir.clone(),
        health: p.health.clone(),
        uplink: p.uplink,
        started: Instant::now(),
        sync: {
            let (view, store) = (p.sync, p.store.clone());
            Arc::new(move || {
                let (view, store) = (view.clone(), store.clone());
                Box::pin(async move { crate::sync::status(&view, &store).await })
            })
        },
        cache: {
            let cache = p.cache.clone();
            Arc::new(move || cache.status())
        },
        update: p.update,
    };
    let router = crate::web::status::routes(status)
        .merge(crate::web::audit_api::routes(p.store.clone()))
        .merge(crate::cache::routes(p.cache.clone()))
        .merge(hub_routes)
        .merge(admin_gated(
            crate::dns::routes(p.engine.clone(), p.filter.clone(), p.store.clone(), p.clock),
            &p.admin,
        ));
    // Redirect mode: requests for a cached origin's host never reach the routes.
    let router = crate::cache::redirect::wrap(router, p.cache.clone());
    let fast = Arc::new(crate::cache::sendfile::Sendfile(p.cache.clone()));
    HttpService::bind(config.http.listen, router, Some(fast))
        .with_context(|| format!("binding [http] listen = {}", config.http.listen))
}

/// The lists of the config, with the policies in force: the central side's (verified
/// again) when it sent some, else the school admin's edits, else the config file's.
fn filter_spec(config: &Config, store: &Store, fleet_key: Option<&[u8]>) -> FilterSpec {
    let file = config.filter.policies.clone();
    let (policies, source) =
        if let Some(p) = crate::sync::desired::stored_policies(store, fleet_key) {
            tracing::info!(
                policies = p.len(),
                "using the policies from the central side"
            );
            (p, PolicySource::Central)
        } else if let Some(p) = crate::dns::policy_edit::stored(store) {
            tracing::info!(
                policies = p.len(),
                "using the policies edited on the admin page"
            );
            (p, PolicySource::Local)
        } else {
            (file.clone(), PolicySource::File)
        };
    FilterSpec {
        source,
        file_policies: file,
        sources: config.filter_sources(),
        policies,
        block_mode: config.dns.block_mode,
    }
}

/// A release's chunks come through the cache, under its windows, and are offered by
/// it to the site's other boxes.
fn chunk_source(cache: &Arc<crate::cache::Cache>) -> crate::update::ChunkSource {
    let (fetch, window, offer) = (cache.clone(), cache.clone(), cache.clone());
    crate::update::ChunkSource {
        fetch: Arc::new(move |c: crate::update::ChunkFetch| {
            let cache = fetch.clone();
            Box::pin(async move {
                cache
                    .fetch_object(&c.sha256, c.size, c.urls, &c.label)
                    .await
            })
        }),
        in_window: Arc::new(move || window.in_window()),
        offer: Arc::new(move |r| offer.offer(r)),
    }
}

/// Verified desired state from the sync: policies to the filter (and their resolver
/// addresses to the cart's firewall), catalogues checked by the cache and fetched at
/// once, a release to the update agent.
fn sinks(
    filter: &Arc<FilterService>,
    cache: &Arc<crate::cache::Cache>,
    update: &Arc<tokio::sync::Notify>,
    firewall: &Arc<tokio::sync::Notify>,
) -> Sinks {
    let (update, firewall) = (update.clone(), firewall.clone());
    let (filter, checked, woken) = (filter.clone(), cache.clone(), cache.clone());
    Sinks {
        policies: Some(Arc::new(move |configs| {
            let prepared = filter.prepare_policies(&configs)?;
            let (filter, firewall) = (filter.clone(), firewall.clone());
            Ok(Box::new(move || {
                filter.put_in_force(prepared, configs, PolicySource::Central);
                // The policies carry the cart's resolver addresses too.
                firewall.notify_one();
            }))
        })),
        check_catalogue: Some(Arc::new(move |c| checked.check_catalogue(c))),
        catalogue_applied: Some(Arc::new(move || woken.wake.notify_one())),
        release_applied: Some(Arc::new(move || update.notify_one())),
    }
}
