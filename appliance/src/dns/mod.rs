//! The filtering DNS server: `wire` reads and writes messages, `cache` keeps upstream
//! answers (serving them stale when the uplink is down), `forward` asks the upstream,
//! `engine` decides each answer with `crate::filter`, `server` owns the sockets (`udp` its
//! answering threads), `ratelimit` and `rebind` keep the LAN from turning the server
//! against itself or the school, and `reload` swaps in new lists without dropping a
//! query. Its HTTP side is here too:
//! the filter's admin API (`admin_api`: verdicts, counters, the query log), the admin
//! page's policy edits (`policy_edit`) and the block page (`blockpage`), mounted by
//! [`routes`].
//!
//! What must not live here: another service's state. The hub hands its device rules
//! to [`engine::Engine::set_devices`] through `app`'s wiring, the cache resolves
//! origins through [`engine::Engine::addresses_upstream`] the same way.

pub(crate) mod admin_api;
pub(crate) mod batch;
pub(crate) mod blockpage;
pub(crate) mod cache;
pub(crate) mod engine;
pub(crate) mod forward;
pub(crate) mod front;
pub(crate) mod inline;
pub(crate) mod persist;
pub(crate) mod policy_edit;
pub(crate) mod querylog;
pub(crate) mod ratelimit;
pub(crate) mod rebind;
pub(crate) mod reload;
pub(crate) mod server;
pub(crate) mod stats;
pub mod udp;
pub(crate) mod wire;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use cartable_protocol::status::UplinkStatus;
use tokio::sync::watch;

use crate::base::clock::Clock;
use crate::config::{DnsConfig, Upstream};
use crate::filter::decide::Filter;
use crate::filter::index::Index;
use crate::filter::policy::Policies;
use crate::store::Store;

/// What the DNS side is built with, besides its own `[dns]` section.
pub struct DnsDeps {
    pub store: Store,
    pub clock: Clock,
    pub uplink: watch::Receiver<UplinkStatus>,
    /// The lists and the policies in force (the central side's when it sent some).
    pub filter: reload::FilterSpec,
    /// More names answered with `box_addresses` (the cache's redirect-mode hosts).
    pub box_names: Vec<String>,
    /// Where the self-signed DNS-over-TLS certificate is kept.
    pub data_dir: std::path::PathBuf,
    /// More DNS-over-TLS addresses (the cart's LAN address, port 853).
    pub tls_extra: Vec<std::net::SocketAddr>,
}

/// The built DNS side: the engine (shared with the HTTP side and, through `app`'s
/// handles, with the hub and the cache) and its two services.
pub struct Dns {
    pub engine: Arc<engine::Engine>,
    pub server: server::DnsService,
    pub filter: Arc<reload::FilterService>,
}

impl DnsConfig {
    /// Compiles the lists (before serving, so no query is answered unfiltered), puts
    /// the saved cache back and binds the sockets.
    pub fn build(&self, deps: DnsDeps) -> anyhow::Result<Dns> {
        let (filter, loaded) = first_filter(&deps.filter)?;
        let engine = Arc::new(engine::Engine::new(
            filter,
            self.forwarder()?,
            engine::EngineConfig {
                local: self.local_names(&deps.box_names),
                box_addresses: self.box_addresses.clone(),
                cache_entries: self.cache_entries,
                max_stale: Duration::from_secs(u64::from(self.stale_max_hours) * 3600),
                clock: deps.clock,
                query_log: self.query_log,
                allow_clients: self.allow_clients.clone(),
                rebind: rebind::Rebind::new(self.rebind_protection, &self.rebind_allow),
                limits: ratelimit::Limits {
                    rate: self.client_rate,
                    burst: self.client_burst,
                    exempt: self.rate_exempt.clone(),
                },
            },
        ));
        match persist::restore_cache(&engine, &deps.store) {
            Ok(n) if n > 0 => tracing::info!(entries = n, "DNS cache restored"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot restore the DNS cache; starting cold"),
        }
        let server =
            server::DnsService::bind(&self.listen, engine.clone(), deps.uplink, deps.store)
                .with_context(|| format!("binding [dns] listen = {:?}", self.listen))?;
        let tls_listen: Vec<std::net::SocketAddr> = self
            .tls_listen
            .iter()
            .chain(
                deps.tls_extra
                    .iter()
                    .filter(|a| !self.tls_listen.contains(a)),
            )
            .copied()
            .collect();
        let server = if tls_listen.is_empty() {
            server
        } else {
            let config = self.tls_server_config(&deps.data_dir, &tls_listen)?;
            server
                .with_tls(&tls_listen, config)
                .with_context(|| format!("binding DNS over TLS on {tls_listen:?}"))?
        };
        let filter = Arc::new(reload::FilterService::new(
            engine.clone(),
            deps.filter,
            loaded,
        ));
        Ok(Dns {
            engine,
            server,
            filter,
        })
    }

    /// The given certificate, else the box's own self-signed one (named after the
    /// box's addresses, so a client that checks sees what it asked).
    fn tls_server_config(
        &self,
        data_dir: &std::path::Path,
        listen: &[std::net::SocketAddr],
    ) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let (cert, key) = match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(c), Some(k)) => (c.as_path().to_path_buf(), k.as_path().to_path_buf()),
            (Some(_), None) | (None, Some(_)) => {
                anyhow::bail!("[dns] tls_cert_file and tls_key_file go together")
            }
            (None, None) => {
                let mut names = vec!["cartable.local".to_string()];
                names.extend(
                    listen
                        .iter()
                        .map(|a| a.ip())
                        .filter(|ip| !ip.is_unspecified())
                        .map(|ip| ip.to_string()),
                );
                crate::base::tls::self_signed(&data_dir.join("dns").join("tls"), names)
                    .map_err(|e| anyhow::anyhow!("the DNS-over-TLS certificate: {e}"))?
            }
        };
        crate::base::tls::server_config(&cert, &key, &[b"dot"])
            .map_err(|e| anyhow::anyhow!("DNS over TLS: {e}"))
    }

    /// The upstreams: the configured ones, else the system's (`/etc/resolv.conf`,
    /// less the box's own addresses).
    fn forwarder(&self) -> anyhow::Result<forward::Forwarder> {
        let upstreams: Vec<Upstream> = if self.upstreams.is_empty() && self.system_resolvers {
            let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            forward::from_resolv_conf(&resolv, &self.listen)
                .into_iter()
                .map(Upstream::Plain)
                .collect()
        } else {
            self.upstreams.clone()
        };
        let tls = if upstreams.iter().any(|u| matches!(u, Upstream::Tls { .. })) {
            let ca = self.upstream_ca_file.as_ref().map(|p| p.as_path());
            Some(
                crate::base::tls::client_config(ca)
                    .map_err(|e| anyhow::anyhow!("TLS upstreams: {e}"))?,
            )
        } else {
            None
        };
        let timeout = Duration::from_millis(self.upstream_timeout_ms);
        Ok(forward::Forwarder::new(upstreams, timeout, tls))
    }

    /// `[dns] local`, plus `box_names` pointing at the box.
    fn local_names(
        &self,
        box_names: &[String],
    ) -> hashbrown::HashMap<String, Vec<std::net::IpAddr>> {
        box_names
            .iter()
            .map(|h| {
                (
                    h.trim_end_matches('.').to_ascii_lowercase(),
                    self.box_addresses.clone(),
                )
            })
            .chain(
                self.local
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone())),
            )
            .collect()
    }
}

/// The filter to serve with from the start. If the lists cannot be compiled, the box
/// serves with the policies alone (safe search, anti-bypass, allow and deny lists)
/// and the filter service retries with backoff; the bool says which.
fn first_filter(spec: &reload::FilterSpec) -> anyhow::Result<(Filter, bool)> {
    match reload::FilterService::compile(spec) {
        Ok(l) => {
            cartable_sys::release_free_heap();
            Ok((l.filter, true))
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot compile the filter lists; serving with the policies alone");
            let index = Arc::new(Index::empty());
            let policies = Policies::compile(&spec.policies, &index, spec.block_mode)
                .context("the policies cannot be compiled")?;
            Ok((Filter { index, policies }, false))
        }
    }
}

/// What the DNS side's HTTP handlers share.
#[derive(Clone)]
pub struct HttpState {
    pub engine: Arc<engine::Engine>,
    /// Says where the policies in force come from.
    pub filter: Arc<reload::FilterService>,
    pub store: Store,
    pub clock: Clock,
    /// One policy edit at a time (an edit reads the set in force, then replaces it).
    pub edits: Arc<tokio::sync::Mutex<()>>,
}

/// The filter's admin API, and the block page as the fallback: in `blockpage` mode a
/// blocked name resolves to the box, so any request whose route is not the box's own
/// is a browser that was sent here by a block.
pub fn routes(
    engine: Arc<engine::Engine>,
    filter: Arc<reload::FilterService>,
    store: Store,
    clock: Clock,
) -> Router {
    Router::new()
        .route("/api/v1/filter/test", get(admin_api::test))
        .route("/api/v1/filter/stats", get(admin_api::stats))
        .route("/api/v1/filter/hourly", get(admin_api::hourly))
        .route("/api/v1/filter/log", get(admin_api::log))
        .route(
            "/api/v1/filter/policies",
            get(policy_edit::get)
                .put(policy_edit::put)
                .delete(policy_edit::reset),
        )
        .route(
            "/api/v1/filter/policies/{policy}/names",
            axum::routing::post(policy_edit::name),
        )
        .fallback(blockpage::page)
        .with_state(HttpState {
            engine,
            filter,
            store,
            clock,
            edits: Arc::default(),
        })
}
