//! The cart's LAN links, through rtnetlink (no `ip` command): the bridge created or
//! adopted, its ports joined, the box's address set, every link up.
//!
//! It runs once, while the daemon is built, before any socket is bound: the DHCP
//! server's socket is bound to the bridge and DNS over TLS listens on the bridge's
//! address, so both must exist first. A port that is missing (a radio not yet there)
//! is a warning, not a failure: the cart still serves its wired ports, and hostapd
//! adds its interface to the bridge itself when it starts.

use std::net::IpAddr;

use anyhow::Context;
use futures_util::TryStreamExt;
use rtnetlink::{Handle, LinkBridge, LinkUnspec};

use crate::config::LanConfig;

/// Sets the LAN up; waits on its own small runtime (the daemon's is not running yet
/// when the app is built, or is the caller's).
pub(crate) fn set_up(lan: &LanConfig) -> anyhow::Result<()> {
    let lan = lan.clone();
    std::thread::scope(|s| {
        s.spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(set_up_async(&lan))
        })
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the link set-up panicked")))
    })
}

async fn set_up_async(lan: &LanConfig) -> anyhow::Result<()> {
    let (conn, handle, _) = rtnetlink::new_connection().context("rtnetlink socket")?;
    let task = tokio::spawn(conn);
    let result = configure(&handle, lan).await;
    task.abort();
    result
}

async fn index_of(handle: &Handle, name: &str) -> anyhow::Result<Option<u32>> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(Some(msg.header.index)),
        Ok(None) => Ok(None),
        // No such device.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -19 => Ok(None),
        Err(e) => Err(e).with_context(|| format!("looking up {name}")),
    }
}

async fn configure(handle: &Handle, lan: &LanConfig) -> anyhow::Result<()> {
    let bridge = &lan.bridge.0;
    let index = match index_of(handle, bridge).await? {
        Some(i) => {
            tracing::info!(%bridge, "adopting the LAN bridge");
            i
        }
        None => {
            handle
                .link()
                .add(LinkBridge::new(bridge).build())
                .execute()
                .await
                .with_context(|| format!("creating the bridge {bridge}"))?;
            tracing::info!(%bridge, "LAN bridge created");
            index_of(handle, bridge)
                .await?
                .with_context(|| format!("the bridge {bridge} vanished"))?
        }
    };
    for port in &lan.ports {
        match index_of(handle, &port.0).await? {
            Some(p) => handle
                .link()
                .set(LinkUnspec::new_with_index(p).controller(index).up().build())
                .execute()
                .await
                .with_context(|| format!("joining {port} to {bridge}"))?,
            None => tracing::warn!(%port, %bridge, "no such interface: not joined to the LAN"),
        }
    }
    handle
        .address()
        .add(index, IpAddr::V4(lan.address.addr), lan.address.prefix)
        .replace()
        .execute()
        .await
        .with_context(|| format!("setting {} on {bridge}", String::from(lan.address)))?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .with_context(|| format!("bringing {bridge} up"))?;
    Ok(())
}
