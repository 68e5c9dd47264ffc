//! Watches for a default route, the simplest honest sign that the uplink is there.
//!
//! The kernel tells us at once: an rtnetlink socket subscribed to link and route
//! changes wakes the watcher, which then reads the routing tables from `/proc` (no
//! privilege needed) and the carrying interface's state from `/sys`. A slow poll stays
//! as a safety net (and is all there is where netlink is unavailable). The state goes
//! out on a `watch` channel that the status page, the DNS server and the sync drainer
//! read without waiting: a cable pulled pauses the sync at once.

use std::sync::Arc;
use std::time::Duration;

use cartable_protocol::status::{UplinkState, UplinkStatus};
use tokio::sync::watch;

use crate::supervisor::{Service, ServiceCtx, ServiceFuture};

/// How often the routing table is read.
const POLL: Duration = Duration::from_secs(2);

pub(crate) struct UplinkWatch {
    tx: watch::Sender<UplinkStatus>,
}

impl UplinkWatch {
    pub(crate) fn new() -> (Self, watch::Receiver<UplinkStatus>) {
        let (tx, rx) = watch::channel(UplinkStatus {
            state: UplinkState::Unknown,
            interface: None,
        });
        (UplinkWatch { tx }, rx)
    }

    /// Another receiver of the uplink state.
    pub(crate) fn subscribe(&self) -> watch::Receiver<UplinkStatus> {
        self.tx.subscribe()
    }
}

impl Service for UplinkWatch {
    fn name(&self) -> &'static str {
        "uplink"
    }

    fn run(self: Arc<Self>, ctx: ServiceCtx) -> ServiceFuture {
        Box::pin(async move {
            let mut ticker = tokio::time::interval(POLL);
            let mut changes = netlink_changes();
            let mut announced = false;
            loop {
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                    _ = ticker.tick() => {}
                    Some(()) = next_change(&mut changes) => {
                        // Several messages come per change: read them all first.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        drain(&mut changes);
                    }
                }
                let v4 = tokio::fs::read_to_string("/proc/net/route").await.ok();
                let v6 = tokio::fs::read_to_string("/proc/net/ipv6_route").await.ok();
                let mut now = status_from_tables(v4.as_deref(), v6.as_deref());
                if let Some(ifname) = &now.interface {
                    let operstate =
                        tokio::fs::read_to_string(format!("/sys/class/net/{ifname}/operstate"))
                            .await
                            .unwrap_or_default();
                    if matches!(operstate.trim(), "down" | "lowerlayerdown" | "notpresent") {
                        now.state = UplinkState::Down;
                    }
                }
                self.tx.send_if_modified(|old| {
                    if *old != now {
                        tracing::info!(state = ?now.state, interface = ?now.interface, "uplink changed");
                        *old = now;
                        true
                    } else {
                        false
                    }
                });
                if !announced {
                    ctx.ready();
                    announced = true;
                }
            }
        })
    }
}

type Changes = Option<futures_util::stream::BoxStream<'static, ()>>;

/// A stream that yields on every link or route change the kernel announces.
fn netlink_changes() -> Changes {
    use futures_util::StreamExt;
    use rtnetlink::constants::{RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE, RTMGRP_LINK};
    use rtnetlink::sys::AsyncSocket;
    let (mut conn, _handle, messages) = match rtnetlink::new_connection() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "no rtnetlink socket; polling the routes instead");
            return None;
        }
    };
    let groups = RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE;
    if let Err(e) = conn
        .socket_mut()
        .socket_mut()
        .bind(&rtnetlink::sys::SocketAddr::new(0, groups))
    {
        tracing::warn!(error = %e, "cannot subscribe to rtnetlink; polling the routes instead");
        return None;
    }
    tokio::spawn(conn);
    Some(messages.map(|_| ()).boxed())
}

async fn next_change(changes: &mut Changes) -> Option<()> {
    use futures_util::StreamExt;
    match changes {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

fn drain(changes: &mut Changes) {
    use futures_util::StreamExt;
    if let Some(s) = changes {
        while let Some(Some(())) = futures_util::FutureExt::now_or_never(s.next()) {}
    }
}

/// Finds a default route in the text of `/proc/net/route` and `/proc/net/ipv6_route`.
pub(crate) fn status_from_tables(v4: Option<&str>, v6: Option<&str>) -> UplinkStatus {
    if v4.is_none() && v6.is_none() {
        return UplinkStatus {
            state: UplinkState::Unknown,
            interface: None,
        };
    }
    // IPv4: "Iface Destination Gateway Flags ..." with destination and mask 00000000.
    let v4_default = v4.into_iter().flat_map(str::lines).skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 7 && f[1] == "00000000" && f[7] == "00000000" && f[0] != "lo")
            .then(|| f[0].to_string())
    });
    // IPv6: destination ::/0 with a gateway, on an interface other than lo.
    let v6_default = || {
        v6.into_iter().flat_map(str::lines).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let zero = "00000000000000000000000000000000";
            (f.len() == 10 && f[0] == zero && f[1] == "00" && f[4] != zero && f[9] != "lo")
                .then(|| f[9].to_string())
        })
    };
    match v4_default.or_else(v6_default) {
        Some(interface) => UplinkStatus {
            state: UplinkState::Up,
            interface: Some(interface),
        },
        None => UplinkStatus {
            state: UplinkState::Down,
            interface: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

    #[test]
    fn default_route_means_up() {
        let t = format!(
            "{HEADER}eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\neth0\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n"
        );
        let s = status_from_tables(Some(&t), None);
        assert_eq!(s.state, UplinkState::Up);
        assert_eq!(s.interface.as_deref(), Some("eth0"));
    }

    #[test]
    fn only_local_routes_means_down() {
        let t = format!("{HEADER}eth0\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n");
        let v6 = "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n";
        assert_eq!(
            status_from_tables(Some(&t), Some(v6)).state,
            UplinkState::Down
        );
        assert_eq!(status_from_tables(None, None).state, UplinkState::Unknown);
    }

    #[test]
    fn ipv6_default_route_means_up() {
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 wlan0\n";
        let s = status_from_tables(Some(HEADER), Some(v6));
        assert_eq!(s.state, UplinkState::Up);
        assert_eq!(s.interface.as_deref(), Some("wlan0"));
    }
}
