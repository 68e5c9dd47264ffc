//! `cartable status`: asks a running daemon over HTTP and prints its state.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use cartable_protocol::status::{ServiceState, StatusReport, UplinkState};
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
    out
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
    fn sizes_and_durations_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024 / 2), "1.5 GiB");
        assert_eq!(human_duration(59), "59 s");
        assert_eq!(human_duration(3 * 3600 + 120), "3 h 2 min");
        assert_eq!(human_duration(3 * 86400 + 3600), "3 days 1 h");
    }
}
