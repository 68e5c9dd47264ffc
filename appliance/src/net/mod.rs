//! The box's network. In both modes, `uplink` watches the way out. In `school` mode
//! that is all: the box sits on the school's LAN and touches no link, route or
//! firewall. In `cart` mode the box is the tablets' whole network: `links` makes the
//! LAN bridge and its address, `dhcp` gives the addresses, `firewall` keeps every
//! tablet on the box's filter (DNS redirected, DNS over TLS and public resolvers
//! refused, NAT), and `ap` renders hostapd's configuration.
//!
//! It is built in two steps because of what binds what: [`NetConfig::prepare`] sets
//! the links up before the DNS server binds (it listens on the LAN's address), and
//! [`NetConfig::build`] makes the services once the DNS ports are known (the
//! firewall redirects to them).
//!
//! What must not live here: DNS answers (the `dns` service serves DNS over TLS too)
//! or the tablets' policies; the lease table goes out through [`Net::leases`].

pub(crate) mod ap;
pub(crate) mod dhcp;
pub(crate) mod firewall;
pub(crate) mod links;
pub(crate) mod uplink;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::base::clock::Clock;
use crate::config::{NetConfig, NetMode};
use crate::store::Store;
use crate::supervisor::Service;

/// What `[net]` cannot say itself.
pub(crate) struct NetDeps {
    pub(crate) store: Store,
    pub clock: Clock,
    pub data_dir: PathBuf,
    /// The DNS server's port (the redirect's target) and its DNS-over-TLS port.
    pub dns_port: u16,
    pub dot_port: Option<u16>,
    /// The web server's port (the captive-portal URI).
    pub http_port: u16,
    /// The central side's resolver addresses (its verified policies).
    pub central_resolvers: firewall::CentralResolvers,
}

/// The built network side.
pub(crate) struct Net {
    pub(crate) services: Vec<Arc<dyn Service>>,
    pub(crate) routes: Router,
    /// The cart's leases (empty in school mode), on every change.
    pub(crate) leases: tokio::sync::watch::Receiver<Vec<dhcp::pool::Lease>>,
    /// Tells the firewall that the central side's resolver addresses changed.
    pub(crate) firewall_wake: Arc<tokio::sync::Notify>,
}

impl NetConfig {
    /// Cart mode: the LAN bridge up with the box's address, before any socket is
    /// bound; the DNS-over-TLS address to add. School mode: nothing, but a cart's
    /// table a crash left behind is removed.
    pub fn prepare(&self) -> anyhow::Result<Vec<SocketAddr>> {
        if self.mode != NetMode::Cart {
            // A cart's table left by a kill -9 before the box was switched to school
            // mode: ours to remove (nothing else of the firewall is touched).
            if firewall::remove() {
                tracing::info!("removed the cart's no-bypass rules left by an earlier run");
            }
            return Ok(Vec::new());
        }
        links::set_up(&self.lan).context("setting the cart's LAN up")?;
        Ok(vec![SocketAddr::new(
            IpAddr::V4(self.lan.address.addr),
            853,
        )])
    }

    /// Does this box route its LAN to the uplink (cart mode with NAT)?
    pub fn forwards(&self) -> bool {
        self.mode == NetMode::Cart && self.firewall.enabled && self.firewall.nat
    }

    /// The cart's services (none in school mode) and the network's routes.
    pub(crate) fn build(&self, deps: NetDeps) -> anyhow::Result<Net> {
        let mut services: Vec<Arc<dyn Service>> = Vec::new();
        let mut dhcp_server = None;
        let (_, empty) = tokio::sync::watch::channel(Vec::new());
        let mut leases = empty;
        let firewall_wake = Arc::new(tokio::sync::Notify::new());
        if self.mode == NetMode::Cart {
            if self.firewall.enabled {
                services.push(Arc::new(self.firewall(&deps, firewall_wake.clone())));
            }
            if self.dhcp.enabled {
                let server = Arc::new(self.dhcp_server(&deps)?);
                leases = server.table();
                dhcp_server = Some(server.clone());
                services.push(server);
            }
            if self.ap.enabled {
                self.write_hostapd()?;
            }
        }
        let state = NetState {
            mode: self.mode,
            dhcp: dhcp_server,
            portal: self.box_url(deps.http_port),
        };
        let routes = Router::new()
            .route("/api/v1/net", get(net_status))
            .route("/captive-portal/api", get(captive_portal))
            .with_state(state);
        Ok(Net {
            services,
            routes,
            leases,
            firewall_wake,
        })
    }

    fn firewall(&self, deps: &NetDeps, wake: Arc<tokio::sync::Notify>) -> firewall::Firewall {
        let mut resolvers: Vec<IpAddr> = firewall::BUILTIN_RESOLVERS
            .iter()
            .filter_map(|a| a.parse().ok())
            .chain(self.firewall.resolver_addresses.iter().copied())
            .collect();
        resolvers.sort();
        resolvers.dedup();
        firewall::Firewall {
            ruleset: firewall::Ruleset {
                bridge: self.lan.bridge.clone(),
                lan: self.lan.address,
                dns_port: deps.dns_port,
                dot_port: deps.dot_port,
                nat: self.firewall.nat.then(|| self.lan.uplink.clone()),
                resolvers,
            },
            central: deps.central_resolvers.clone(),
            wake,
            file: deps.data_dir.join("net").join("cartable.nft"),
            forward: self.firewall.nat,
        }
    }

    fn dhcp_server(&self, deps: &NetDeps) -> anyhow::Result<dhcp::DhcpServer> {
        let d = &self.dhcp;
        let pool = dhcp::pool::Pool::new(
            self.lan.address,
            (d.range_start, d.range_end),
            d.lease_secs,
            d.statics.iter().map(|s| (s.mac, s.address)),
        );
        let captive_portal = match &d.captive_portal {
            Some(uri) if uri.is_empty() => None,
            Some(uri) => Some(uri.clone()),
            None => Some(format!(
                "{}captive-portal/api",
                self.box_url(deps.http_port)
            )),
        };
        dhcp::DhcpServer::bind(
            &self.lan.bridge.0,
            67,
            pool,
            dhcp::Offerings {
                lan: self.lan.address,
                captive_portal,
            },
            deps.store.clone(),
            deps.clock.clone(),
        )
        .context("starting the cart's DHCP server")
    }

    /// `http://BOX[:PORT]/`: the box's pages on the LAN.
    fn box_url(&self, http_port: u16) -> String {
        let host = self.lan.address.addr;
        if http_port == 80 {
            format!("http://{host}/")
        } else {
            format!("http://{host}:{http_port}/")
        }
    }

    fn write_hostapd(&self) -> anyhow::Result<()> {
        let Some(text) = ap::render(&self.ap, &self.lan.bridge) else {
            anyhow::bail!("[net.ap] has no passphrase");
        };
        let file = &self.ap.config_file;
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, file))
            .with_context(|| format!("writing hostapd's configuration {}", file.display()))?;
        tracing::info!(file = %file.display(), "hostapd configuration written");
        Ok(())
    }
}

#[derive(Clone)]
struct NetState {
    mode: NetMode,
    dhcp: Option<Arc<dhcp::DhcpServer>>,
    portal: String,
}

#[derive(Serialize)]
struct NetStatus {
    mode: NetMode,
    dhcp: Option<dhcp::CountersView>,
    leases: Vec<LeaseView>,
}

#[derive(Serialize)]
struct LeaseView {
    mac: String,
    address: std::net::Ipv4Addr,
    hostname: String,
    expires: u64,
}

/// `GET /api/v1/net`: the mode, the DHCP counters and leases (to an admin, as the
/// filter's admin API).
async fn net_status(
    State(state): State<NetState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Option<axum::Extension<crate::base::http::AdminCaller>>,
) -> Response {
    if let Err(denied) = crate::base::http::admin_or_local(&peer, caller.as_deref()) {
        return denied.into_response();
    }
    let (dhcp, leases) = match &state.dhcp {
        Some(d) => (
            Some(d.counters()),
            d.leases()
                .into_iter()
                .map(|l| LeaseView {
                    mac: l.mac.to_string(),
                    address: l.address,
                    hostname: l.hostname,
                    expires: l.expires,
                })
                .collect(),
        ),
        None => (None, Vec::new()),
    };
    axum::Json(NetStatus {
        mode: state.mode,
        dhcp,
        leases,
    })
    .into_response()
}

/// `GET /captive-portal/api`, RFC 8908's API, the URI DHCP gives (RFC 8910): the cart is no
/// captive portal (nothing to sign in to), and its page is the box's.
async fn captive_portal(State(state): State<NetState>) -> Response {
    let body = serde_json::json!({
        "captive": false,
        "user-portal-url": state.portal,
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/captive+json")],
        body.to_string(),
    )
        .into_response()
}
