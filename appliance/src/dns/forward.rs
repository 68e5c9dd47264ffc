//! Asking the upstream resolvers: plain DNS over UDP, over TCP when the answer is
//! truncated. Each query uses a fresh socket (so a random source port) and a random
//! ID, and an answer counts only if its ID and question match: a spoofed or stray
//! datagram is ignored, not cached.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::wire::{self, EDNS_PAYLOAD};
use crate::config::Upstream;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream resolver is configured")]
    NoUpstream,
    #[error("no upstream answered in time")]
    Timeout,
    #[error("upstream {0}: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("cannot build the query: {0}")]
    Build(String),
}

/// The upstream resolvers, tried in order of recent success.
pub struct Forwarder {
    upstreams: Vec<Upstream>,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Per upstream: when it last failed (ms since `epoch`), 0 if never.
    failed_at: Vec<AtomicU64>,
    epoch: Instant,
    timeout: Duration,
}

impl Forwarder {
    /// `tls` is needed when any upstream is `Upstream::Tls`.
    pub fn new(
        upstreams: Vec<Upstream>,
        timeout: Duration,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> Forwarder {
        Forwarder {
            tls,
            failed_at: upstreams.iter().map(|_| AtomicU64::new(0)).collect(),
            upstreams,
            epoch: Instant::now(),
            timeout,
        }
    }

    pub fn upstreams(&self) -> &[Upstream] {
        &self.upstreams
    }

    /// Resolves (name, type, class) upstream; returns the response bytes.
    pub async fn resolve(
        &self,
        name: &str,
        qtype: u16,
        qclass: u16,
    ) -> Result<Vec<u8>, ForwardError> {
        if self.upstreams.is_empty() {
            return Err(ForwardError::NoUpstream);
        }
        let mut order: Vec<usize> = (0..self.upstreams.len()).collect();
        order.sort_by_key(|&i| self.failed_at[i].load(Ordering::Relaxed));
        let mut last = ForwardError::Timeout;
        for i in order.into_iter().take(3) {
            let upstream = &self.upstreams[i];
            match self.ask(upstream, name, qtype, qclass).await {
                Ok(bytes) => {
                    self.failed_at[i].store(0, Ordering::Relaxed);
                    return Ok(bytes);
                }
                Err(e) => {
                    let now = self.epoch.elapsed().as_millis() as u64 + 1;
                    self.failed_at[i].store(now, Ordering::Relaxed);
                    tracing::debug!(upstream = ?upstream, error = %e, "upstream failed");
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn ask(
        &self,
        upstream: &Upstream,
        name: &str,
        qtype: u16,
        qclass: u16,
    ) -> Result<Vec<u8>, ForwardError> {
        let id = random_id();
        let query = build_query(id, name, qtype, qclass)?;
        let upstream = match upstream {
            Upstream::Plain(addr) => *addr,
            Upstream::Tls { addr, name: server } => {
                let tls = self
                    .tls
                    .clone()
                    .ok_or_else(|| ForwardError::Build("no TLS configuration".into()))?;
                let exchange = tls_exchange(tls, *addr, server, &query, id, name);
                return tokio::time::timeout(self.timeout, exchange)
                    .await
                    .map_err(|_| ForwardError::Timeout)?;
            }
        };
        let answer = tokio::time::timeout(self.timeout, udp_exchange(upstream, &query, id, name))
            .await
            .map_err(|_| ForwardError::Timeout)??;
        if answer.len() > 2 && answer[2] & 0x02 != 0 {
            // Truncated: the whole answer over TCP.
            return tokio::time::timeout(self.timeout, tcp_exchange(upstream, &query, id, name))
                .await
                .map_err(|_| ForwardError::Timeout)?;
        }
        Ok(answer)
    }
}

fn random_id() -> u16 {
    let mut b = [0u8; 2];
    // ring's generator reads the OS; it cannot fail on Linux once booted.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u16::from_be_bytes(b)
}

fn build_query(id: u16, name: &str, qtype: u16, qclass: u16) -> Result<Vec<u8>, ForwardError> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    let fqdn =
        Name::from_ascii(format!("{name}.")).map_err(|e| ForwardError::Build(e.to_string()))?;
    let mut q = Query::query(fqdn, RecordType::from(qtype));
    q.set_query_class(DNSClass::from(qclass));
    m.add_query(q);
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    m.set_edns(edns);
    m.to_vec().map_err(|e| ForwardError::Build(e.to_string()))
}

/// True when `answer` is a well-formed response to our query `id` for `name`.
fn matches(answer: &[u8], id: u16, name: &str) -> bool {
    if answer.len() < wire::HEADER
        || u16::from_be_bytes([answer[0], answer[1]]) != id
        || answer[2] & 0x80 == 0
    {
        return false;
    }
    match Message::from_vec(answer) {
        Ok(m) => m.queries.first().is_some_and(|q| {
            q.name()
                .to_ascii()
                .trim_end_matches('.')
                .eq_ignore_ascii_case(name)
        }),
        Err(_) => false,
    }
}

async fn udp_exchange(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    name: &str,
) -> Result<Vec<u8>, ForwardError> {
    let io = |e| ForwardError::Io(upstream, e);
    let local: SocketAddr = if upstream.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await.map_err(io)?;
    socket.connect(upstream).await.map_err(io)?;
    socket.send(query).await.map_err(io)?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await.map_err(io)?;
        if matches(&buf[..n], id, name) {
            buf.truncate(n);
            return Ok(buf);
        }
        tracing::debug!(%upstream, "ignored a datagram that does not answer our query");
    }
}

async fn tcp_exchange(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    name: &str,
) -> Result<Vec<u8>, ForwardError> {
    let mut stream = TcpStream::connect(upstream)
        .await
        .map_err(|e| ForwardError::Io(upstream, e))?;
    framed_exchange(&mut stream, upstream, query, id, name).await
}

/// One query over a fresh TLS connection (RFC 7858 framing, as over TCP).
async fn tls_exchange(
    tls: std::sync::Arc<rustls::ClientConfig>,
    upstream: SocketAddr,
    server: &str,
    query: &[u8],
    id: u16,
    name: &str,
) -> Result<Vec<u8>, ForwardError> {
    let io = |e| ForwardError::Io(upstream, e);
    let server_name = rustls::pki_types::ServerName::try_from(server.to_string())
        .map_err(|e| ForwardError::Build(format!("{server}: {e}")))?;
    let tcp = TcpStream::connect(upstream).await.map_err(io)?;
    let mut stream = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(io)?;
    framed_exchange(&mut stream, upstream, query, id, name).await
}

/// One length-prefixed query and its answer on a stream (TCP, TLS).
async fn framed_exchange<S>(
    stream: &mut S,
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    name: &str,
) -> Result<Vec<u8>, ForwardError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let io = |e| ForwardError::Io(upstream, e);
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.map_err(io)?;
    let len = stream.read_u16().await.map_err(io)?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.map_err(io)?;
    if matches(&buf, id, name) {
        Ok(buf)
    } else {
        Err(ForwardError::Io(
            upstream,
            std::io::Error::other("answer does not match the query"),
        ))
    }
}

/// The `nameserver` lines of a resolv.conf, minus the addresses the box itself serves
/// on (asking ourselves would loop).
pub(crate) fn from_resolv_conf(text: &str, own: &[SocketAddr]) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some("nameserver")).then(|| f.next()).flatten()
        })
        .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .filter(|a| {
            !own.iter().any(|o| {
                o == a || (o.port() == a.port() && o.ip().is_unspecified() && a.ip().is_loopback())
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_without_ourselves() {
        let text = "# x\nnameserver 9.9.9.9\nnameserver 127.0.0.1\nsearch lan\nnameserver ::1\n";
        let own: Vec<SocketAddr> = vec!["127.0.0.1:53".parse().unwrap()];
        assert_eq!(
            from_resolv_conf(text, &own),
            vec![
                "9.9.9.9:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        let wildcard: Vec<SocketAddr> = vec!["0.0.0.0:53".parse().unwrap()];
        assert_eq!(
            from_resolv_conf(text, &wildcard),
            vec!["9.9.9.9:53".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn upstreams_parse() {
        let up = |s: &str| Upstream::try_from(s.to_string());
        assert_eq!(
            up("9.9.9.9").unwrap(),
            Upstream::Plain("9.9.9.9:53".parse().unwrap())
        );
        assert_eq!(
            up("[::1]:5353").unwrap(),
            Upstream::Plain("[::1]:5353".parse().unwrap())
        );
        assert_eq!(
            up("tls://9.9.9.9#dns.quad9.net").unwrap(),
            Upstream::Tls {
                addr: "9.9.9.9:853".parse().unwrap(),
                name: "dns.quad9.net".into()
            }
        );
        assert_eq!(
            String::from(up("tls://[::1]:8853#a.test").unwrap()),
            "tls://[::1]:8853#a.test"
        );
        for bad in [
            "",
            "dns.google",
            "tls://9.9.9.9",
            "tls://9.9.9.9#",
            "udp://1.1.1.1",
            "1.2.3.4:99999",
        ] {
            assert!(up(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_matching_answers_count() {
        let q = build_query(42, "a.test", 1, 1).unwrap();
        let mut answer = q.clone();
        answer[2] |= 0x80;
        assert!(matches(&answer, 42, "a.test"));
        assert!(matches(&answer, 42, "A.Test"));
        assert!(!matches(&answer, 43, "a.test"));
        assert!(!matches(&answer, 42, "b.test"));
        assert!(!matches(&q, 42, "a.test"), "a query is not an answer");
        assert!(!matches(&answer[..10], 42, "a.test"));
    }
}
