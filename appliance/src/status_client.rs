//! `cartable status`: asks a running daemon over HTTP and prints its state.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use cartable_protocol::status::{LinkState, ServiceState, StatusReport, UplinkState};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Fetches `/api/v1/status` from the daemon at `addr`.
pub async fn fetch(addr: SocketAddr) -> anyhow::Result<StatusReport> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: hyper::Uri = format!("http://{addr}/api/v1/status").parse()?;
    let response = tokio::time::timeout(Duration::from_secs(5), client.get(uri))
        .await
        .with_context(|| format!("no answer from {addr} within 5 s"))?
        .with_context(|| format!("cannot reach the daemon at {addr}; is it running?"))?;
    let code = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !code.is_success() {
        bail!("{addr} answered {code}: {}", String::from_utf8_lossy(&body));
    }
    serde_json::from_slice(&body).context("the daemon's answer is not a status report")
}

/// A report as a person reads it.
pub fn render(r: &StatusReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cartable {} — box {} at site {}",
        r.version, r.box_id, r.site
    );
    let _ = writeln!(out, "up for {}", human_duration(r.uptime_secs));
    let _ = writeln!(out, "services:");
    for s in &r.services {
        let _ = write!(out, "  {:<10} {}", s.name, s.state.as_str());
        if s.restarts > 0 {
            let _ = write!(out, " ({} restarts)", s.restarts);
        }
        if let (true, Some(e)) = (s.state != ServiceState::Running, &s.last_error) {
            let _ = write!(out, ": {e}");
        }
        if !s.problems.is_empty() {
            let _ = write!(out, ", degraded");
        }
        out.push('\n');
        for p in &s.problems {
            let _ = writeln!(out, "    - {p}");
        }
    }
    let uplink = match (&r.uplink.state, &r.uplink.interface) {
        (UplinkState::Up, Some(i)) => format!("up via {i}"),
        (UplinkState::Up, None) => "up".to_string(),
        (UplinkState::Down, _) => "down (working offline)".to_string(),
        (UplinkState::Unknown, _) => "not checked yet".to_string(),
    };
    let _ = writeln!(out, "uplink: {uplink}");
    let _ = writeln!(
        out,
        "disk: {} free of {} on {}",
        human_bytes(r.disk.free_bytes),
        human_bytes(r.disk.total_bytes),
        r.disk.path
    );
    render_sync(&mut out, r);
    render_cache(&mut out, r);
    let u = &r.update;
    let _ = write!(out, "firmware: {}", u.running);
    if let Some(slot) = &u.slot {
        let _ = write!(out, " (slot {slot})");
    }
    if let Some(v) = &u.version {
        let _ = write!(out, "; release {v}: {:?}", u.state);
        if u.progress.chunks > 0 {
            let _ = write!(
                out,
                " {}/{} chunks",
                u.progress.chunks_done, u.progress.chunks
            );
        }
    }
    if !u.detail.is_empty() {
        let _ = write!(out, " ({})", u.detail);
    }
    out.push('\n');
    out
}

/// The link to the central side and what waits to go up it.
fn render_sync(out: &mut String, r: &StatusReport) {
    let s = &r.sync;
    let link = match s.link {
        LinkState::Standalone => "standalone (no broker configured)",
        LinkState::Connecting => "connecting",
        LinkState::Connected => "connected",
        LinkState::Paused => "paused (uplink down)",
        LinkState::Backoff => "waiting to retry",
    };
    let _ = write!(out, "sync: {link}");
    if let Some(b) = &s.broker {
        let _ = write!(out, " to {b}");
    }
    let b = &s.backlog;
    let _ = write!(
        out,
        "; {} events waiting ({})",
        b.rows,
        human_bytes(b.bytes)
    );
    if let Some(at) = b.last_sync_at {
        let ago = (crate::base::clock::unix_now() - at).max(0) as u64;
        let _ = write!(out, ", last sync {} ago", human_duration(ago));
    }
    if b.dropped_rows > 0 {
        let _ = write!(
            out,
            ", {} statistics dropped to stay under the bound",
            b.dropped_rows
        );
    }
    out.push('\n');
    if let Some(e) = &s.last_error {
        let _ = writeln!(out, "  last error: {e}");
    }
}

/// The app and update cache.
fn render_cache(out: &mut String, r: &StatusReport) {
    let c = &r.cache;
    let _ = write!(
        out,
        "cache: {}/{} items held, {} of {}",
        c.present,
        c.items,
        human_bytes(c.bytes_used),
        human_bytes(c.quota_bytes)
    );
    if !c.in_window {
        out.push_str(", outside its download windows");
    }
    out.push('\n');
    for d in &c.downloading {
        let _ = writeln!(
            out,
            "  fetching {} {}: {} of {}",
            d.item,
            d.version,
            human_bytes(d.bytes),
            human_bytes(d.size)
        );
    }
    if c.failing > 0 {
        let _ = writeln!(
            out,
            "  {} items failing{}",
            c.failing,
            c.last_error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
}

fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        s => format!("{} days {} h", s / 86400, (s % 86400) / 3600),
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A wildcard listen address is reached on loopback.
pub fn local_address(listen: SocketAddr) -> SocketAddr {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => [127, 0, 0, 1].into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_says_sync_cache_and_firmware_not_only_json() {
        let mut r: StatusReport = serde_json::from_value(serde_json::json!({
            "version": "0.1.0", "box_id": "b", "site": "s", "uptime_secs": 5,
            "services": [], "uplink": {"state": "up", "interface": "eth0"},
            "disk": {"path": "/data", "free_bytes": 1, "total_bytes": 2},
        }))
        .unwrap();
        r.sync.link = LinkState::Backoff;
        r.sync.broker = Some("mqtts://central:8883".into());
        r.sync.backlog.rows = 12;
        r.sync.last_error = Some("connection refused".into());
        r.cache.items = 3;
        r.cache.present = 2;
        r.update.running = "2026.12.1".into();
        let text = render(&r);
        assert!(
            text.contains("sync: waiting to retry to mqtts://central:8883; 12 events waiting"),
            "{text}"
        );
        assert!(text.contains("  last error: connection refused"), "{text}");
        assert!(text.contains("cache: 2/3 items held"), "{text}");
        assert!(text.contains("firmware: 2026.12.1"), "{text}");
    }

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024 / 2), "1.5 GiB");
        assert_eq!(human_duration(59), "59 s");
        assert_eq!(human_duration(3 * 3600 + 120), "3 h 2 min");
        assert_eq!(human_duration(3 * 86400 + 3600), "3 days 1 h");
    }
}
