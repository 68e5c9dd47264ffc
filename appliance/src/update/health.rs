//! The health check of new firmware after its first boot: every service running, a
//! DNS answer on the box's own socket, the web server (and so the hub) answering,
//! the store opening, and the broker reached when the uplink is up. Checked until
//! all pass or the time limit runs out: a box that cannot reach its central console
//! after an update could never be updated again, so that too sends it back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cartable_protocol::status::{
    LinkState, ServiceState, ServiceStatus, UplinkState, UplinkStatus,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::store::Store;

/// What the check looks at, handed in by `app`.
#[derive(Clone)]
pub(crate) struct HealthProbe {
    pub(crate) services: Arc<dyn Fn() -> Vec<ServiceStatus> + Send + Sync>,
    /// The sync link's state (`Standalone` when the box has no broker).
    pub(crate) broker: Arc<dyn Fn() -> LinkState + Send + Sync>,
    pub(crate) uplink: watch::Receiver<UplinkStatus>,
    pub(crate) dns: Option<SocketAddr>,
    pub(crate) http: SocketAddr,
    pub(crate) store: Store,
}

/// Runs the checks until all pass (`Ok`) or `limit` runs out (`Err`, what failed
/// last).
pub(crate) async fn check(probe: &HealthProbe, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        let failed = failures(probe).await;
        if failed.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(failed.join("; "));
        }
        tracing::debug!(failed = %failed.join("; "), "health check: not yet");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn failures(p: &HealthProbe) -> Vec<String> {
    let mut failed = Vec::new();
    let not_running: Vec<String> = (p.services)()
        .into_iter()
        .filter(|s| s.name != super::SERVICE && s.state != ServiceState::Running)
        .map(|s| format!("{} {}", s.name, s.state.as_str()))
        .collect();
    if !not_running.is_empty() {
        failed.push(format!("services not running: {}", not_running.join(", ")));
    }
    if let Some(addr) = p.dns
        && let Err(e) = dns_answers(addr).await
    {
        failed.push(format!("no DNS answer on {addr}: {e}"));
    }
    if let Err(e) = http_answers(p.http).await {
        failed.push(format!("the web server on {}: {e}", p.http));
    }
    if let Err(e) = p
        .store
        .read(|c| Ok(c.query_row("SELECT count(*) FROM desired", [], |r| r.get::<_, i64>(0))?))
        .await
    {
        failed.push(format!("the store: {e}"));
    }
    let uplink_up = p.uplink.borrow().state == UplinkState::Up;
    let link = (p.broker)();
    if uplink_up && !matches!(link, LinkState::Standalone | LinkState::Connected) {
        failed.push("the uplink is up but the central broker is not reached".into());
    }
    failed
}

/// Any well-formed answer with our ID counts: the server reads, decides, answers.
async fn dns_answers(addr: SocketAddr) -> Result<(), String> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};
    // Not a secret: only tells our answer from a stray one.
    let id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x5ca1, |d| d.subsec_nanos() as u16);
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(
        Name::from_ascii("cartable-health.invalid.").map_err(|e| e.to_string())?,
        RecordType::A,
    ));
    let bytes = m.to_vec().map_err(|e| e.to_string())?;
    let target = on_this_box(addr);
    let bind: SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| e.to_string())?;
    socket
        .send_to(&bytes, target)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    let read = tokio::time::timeout(Duration::from_secs(3), socket.recv(&mut buf)).await;
    match read {
        Ok(Ok(n)) if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id => Ok(()),
        Ok(Ok(_)) => Err("an answer that is not ours".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer in 3 s".into()),
    }
}

/// `GET /healthz` answers (200, or 503 "degraded": the server and its routes run).
async fn http_answers(addr: SocketAddr) -> Result<(), String> {
    let target = on_this_box(addr);
    let talk = async {
        let mut s = tokio::net::TcpStream::connect(target).await?;
        s.write_all(b"GET /healthz HTTP/1.0\r\nHost: cartable\r\n\r\n")
            .await?;
        let mut head = vec![0u8; 256];
        let n = s.read(&mut head).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&head[..n]).into_owned())
    };
    let head = tokio::time::timeout(Duration::from_secs(3), talk)
        .await
        .map_err(|_| "no answer in 3 s".to_string())?
        .map_err(|e| e.to_string())?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    match status {
        "200" => Ok(()),
        "503" if head.contains("degraded") => Ok(()),
        other => Err(format!("status `{other}`")),
    }
}

/// Where to reach a socket of this box listening on `addr` (a wildcard: loopback).
fn on_this_box(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            (std::net::Ipv4Addr::LOCALHOST, addr.port()).into()
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            (std::net::Ipv6Addr::LOCALHOST, addr.port()).into()
        }
        _ => addr,
    }
}
