//! The sockets: UDP threads (`udp`) that answer on the spot whatever needs no upstream,
//! and TCP connections (length-prefixed, pipelined, idle-limited), plain or in TLS
//! (DNS over TLS, RFC 7858: the same framing inside the session).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cartable_protocol::status::{UplinkState, UplinkStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::engine::{Engine, Step};
use super::persist::{save_cache, save_learned};
use super::ratelimit::{RateLimiter, client_key};
use super::stats::Counters;
use super::udp;
use crate::store::Store;
use crate::supervisor::{Service, ServiceCtx, ServiceFuture};

/// How often the counters go to the store.
const STATS_EVERY: Duration = Duration::from_secs(60);
/// The cache is saved whole every this many counter flushes (five minutes) ...
const CACHE_SAVE_EVERY_TICKS: u64 = 5;
/// ... and what it learned, this often: a power cut loses at most this much.
const LEARNED_EVERY: Duration = Duration::from_secs(2);

/// Stores the counters' gains, and the cache too if `cache`.
async fn persist(engine: &Engine, store: &Store, cache: bool) {
    if let Err(e) = engine.flushed.flush(engine, store).await {
        tracing::warn!(error = %e, "cannot store the DNS counters");
    }
    if cache {
        match save_cache(engine, store).await {
            Ok(n) => tracing::debug!(entries = n, "DNS cache saved"),
            Err(e) => tracing::warn!(error = %e, "cannot save the DNS cache"),
        }
    }
}

/// A TCP client silent this long is closed (RFC 7766 suggests seconds, not minutes) ...
const TCP_IDLE: Duration = Duration::from_secs(10);
/// ... this long once three quarters of the connections are taken.
const TCP_IDLE_BUSY: Duration = Duration::from_secs(2);
/// Most TCP connections served at once ...
const TCP_MAX: usize = 512;
/// ... and from one client (an IPv4 address, an IPv6 /64): a tablet needs one or two,
/// so one client holding idle connections cannot take the others' turn.
const TCP_PER_CLIENT: usize = 8;

/// The DNS service; its sockets are bound when it is built.
pub struct DnsService {
    /// Per listening address, one socket per UDP thread.
    udp: Vec<Vec<Arc<UdpSocket>>>,
    tcp: Vec<TcpListener>,
    /// DNS over TLS: its listeners and the session's configuration.
    dot: Vec<TcpListener>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    engine: Arc<Engine>,
    uplink: watch::Receiver<UplinkStatus>,
    store: Store,
}

impl DnsService {
    pub fn bind(
        listen: &[SocketAddr],
        engine: Arc<Engine>,
        uplink: watch::Receiver<UplinkStatus>,
        store: Store,
    ) -> std::io::Result<DnsService> {
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for addr in listen {
            let (u, t) = bind_pair(*addr)?;
            udp.push(u);
            tcp.push(t);
        }
        Ok(DnsService {
            udp,
            tcp,
            dot: Vec::new(),
            tls: None,
            engine,
            uplink,
            store,
        })
    }

    /// Serves DNS over TLS on `listen` too, with `config`.
    pub(crate) fn with_tls(
        mut self,
        listen: &[SocketAddr],
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<DnsService> {
        for addr in listen {
            let t = TcpListener::bind(addr)?;
            t.set_nonblocking(true)?;
            self.dot.push(t);
        }
        self.tls = Some(tokio_rustls::TlsAcceptor::from(config));
        Ok(self)
    }

    /// Where DNS over TLS is served.
    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.dot
            .iter()
            .filter_map(|t| t.local_addr().ok())
            .collect()
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|group| group.first()?.local_addr().ok())
            .collect()
    }
}

/// The UDP sockets (one per thread) and a TCP listener on the same address. With
/// port 0, TCP takes the port UDP got; that TCP port may be taken already (by any
/// connection's local port), so another UDP port is tried, a few times.
fn bind_pair(addr: SocketAddr) -> std::io::Result<(Vec<Arc<UdpSocket>>, TcpListener)> {
    let mut attempts = 0;
    loop {
        let u = udp::bind(addr, udp::threads())?;
        match TcpListener::bind(u[0].local_addr()?) {
            Ok(t) => {
                t.set_nonblocking(true)?;
                return Ok((u.into_iter().map(Arc::new).collect(), t));
            }
            Err(e)
                if addr.port() == 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && attempts < 16 =>
            {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

impl DnsService {
    /// A blocking thread per UDP socket, an accept loop per TCP and DoT listener.
    fn spawn_listeners(
        &self,
        tasks: &mut JoinSet<std::io::Result<()>>,
        stop_all: &CancellationToken,
    ) -> std::io::Result<()> {
        for socket in self.udp.iter().flatten() {
            let (socket, engine, stop) = (socket.clone(), self.engine.clone(), stop_all.clone());
            let runtime = tokio::runtime::Handle::current();
            tasks.spawn_blocking(move || udp::serve(socket, engine, runtime, stop));
        }
        for t in &self.tcp {
            let listener = tokio::net::TcpListener::from_std(t.try_clone()?)?;
            tasks.spawn(tcp_accept(
                listener,
                self.engine.clone(),
                stop_all.clone(),
                None,
            ));
        }
        for t in &self.dot {
            let listener = tokio::net::TcpListener::from_std(t.try_clone()?)?;
            let tls = self.tls.clone();
            tasks.spawn(tcp_accept(
                listener,
                self.engine.clone(),
                stop_all.clone(),
                tls,
            ));
        }
        Ok(())
    }
}

impl Service for DnsService {
    fn name(&self) -> &'static str {
        "dns"
    }

    /// Its last save of the cache and counters may take up to 3 s.
    fn stop_grace(&self) -> Duration {
        Duration::from_millis(3500)
    }

    fn run(self: Arc<Self>, ctx: ServiceCtx) -> ServiceFuture {
        Box::pin(async move {
            // Every loop of this run stops with it, failed or asked to.
            let stop_all = ctx.shutdown.child_token();
            let mut tasks = JoinSet::new();
            self.spawn_listeners(&mut tasks, &stop_all)?;
            // Serve stale answers at once while the uplink is down.
            let mut uplink = self.uplink.clone();
            let engine = self.engine.clone();
            let stop = stop_all.clone();
            tasks.spawn(async move {
                loop {
                    let down = uplink.borrow_and_update().state == UplinkState::Down;
                    engine.set_uplink_down(down);
                    tokio::select! {
                        r = uplink.changed() => if r.is_err() { return Ok(()) },
                        _ = stop.cancelled() => return Ok(()),
                    }
                }
            });
            // New answers to the store every two seconds, off the answer path.
            let (engine, store, stop) = (self.engine.clone(), self.store.clone(), stop_all.clone());
            tasks.spawn(async move {
                let mut every = tokio::time::interval(LEARNED_EVERY);
                loop {
                    tokio::select! {
                        _ = every.tick() => {}
                        _ = stop.cancelled() => return Ok(()),
                    }
                    if let Err(e) = save_learned(&engine, &store).await {
                        tracing::warn!(error = %e, "cannot store the DNS answers just learned");
                    }
                }
            });
            // Counters to the store every minute, the cache every five, and both once
            // more when the service stops (the services that could change them, the
            // hub and the web, stop before this one).
            let (engine, store, stop) = (self.engine.clone(), self.store.clone(), stop_all.clone());
            tasks.spawn(async move {
                let mut minute = tokio::time::interval(STATS_EVERY);
                minute.tick().await;
                let mut ticks = 0u64;
                loop {
                    tokio::select! {
                        _ = minute.tick() => {}
                        _ = stop.cancelled() => return Ok(()),
                    }
                    ticks += 1;
                    persist(
                        &engine,
                        &store,
                        ticks.is_multiple_of(CACHE_SAVE_EVERY_TICKS),
                    )
                    .await;
                }
            });
            ctx.ready();
            // Shutdown first: the loops stop on its child token, so at shutdown both
            // branches are ready, and a loop that left because of it is no failure.
            let result = tokio::select! {
                biased;
                _ = ctx.shutdown.cancelled() => Ok(()),
                Some(ended) = tasks.join_next() => {
                    // A loop only ends on shutdown or a socket error.
                    match ended {
                        Ok(Err(e)) => Err(e.into()),
                        Ok(Ok(())) => Err(anyhow::anyhow!("a DNS socket loop ended")),
                        Err(e) => Err(e.into()),
                    }
                }
            };
            // The UDP threads hold the port: they have all left when `run` returns, so
            // a service started next on the same port gets every datagram.
            stop_all.cancel();
            while tasks.join_next().await.is_some() {}
            if ctx.shutdown.is_cancelled() {
                let last_save = persist(&self.engine, &self.store, true);
                if tokio::time::timeout(Duration::from_secs(3), last_save)
                    .await
                    .is_err()
                {
                    tracing::warn!("the last save of the DNS cache did not finish in 3 s");
                }
            }
            result
        })
    }
}

/// What the TCP connections of one listener share: the slots, the connections per
/// client, and one rate limiter.
pub(crate) struct TcpShared {
    slots: Arc<tokio::sync::Semaphore>,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    limiter: Mutex<RateLimiter>,
}

/// One client's hold on a connection; gives it back when dropped.
struct ClientSlot {
    shared: Arc<TcpShared>,
    client: IpAddr,
}

impl TcpShared {
    pub(crate) fn new(engine: &Engine) -> Arc<TcpShared> {
        Arc::new(TcpShared {
            slots: Arc::new(tokio::sync::Semaphore::new(TCP_MAX)),
            per_client: Mutex::new(HashMap::new()),
            limiter: Mutex::new(RateLimiter::new(engine.limits().clone())),
        })
    }

    fn take(self: &Arc<Self>, client: IpAddr) -> Option<ClientSlot> {
        let client = client_key(client);
        let mut m = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(client).or_insert(0);
        if *n >= TCP_PER_CLIENT {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            shared: self.clone(),
            client,
        })
    }

    /// Shorter when the server is busy (RFC 7766, section 6.2.3).
    fn idle(&self) -> Duration {
        if self.slots.available_permits() < TCP_MAX / 4 {
            TCP_IDLE_BUSY
        } else {
            TCP_IDLE
        }
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut m = self
            .shared
            .per_client
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.client);
            }
        }
    }
}

/// A TLS handshake that has not finished by then is dropped.
const TLS_HANDSHAKE: Duration = Duration::from_secs(5);

async fn tcp_accept(
    listener: tokio::net::TcpListener,
    engine: Arc<Engine>,
    shutdown: CancellationToken,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
    let shared = TcpShared::new(&engine);
    loop {
        let (stream, client) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: wait, do not spin or die.
                    tracing::warn!(error = %e, "DNS TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return Ok(()),
        };
        // Too many, from everyone or from this client: drop the connection; the
        // client retries.
        let Some(slot) = shared.take(client.ip()) else {
            tracing::debug!(%client, "DNS TCP: too many connections from this client");
            continue;
        };
        let Ok(permit) = shared.slots.clone().try_acquire_owned() else {
            continue;
        };
        let engine = engine.clone();
        let shutdown = shutdown.clone();
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _held = (permit, slot);
            let serve = async {
                match tls {
                    None => tcp_connection(stream, client, engine, &shared).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(stream)).await {
                            Ok(Ok(session)) => {
                                tcp_connection(session, client, engine, &shared).await
                            }
                            _ => tracing::debug!(%client, "DNS over TLS: no handshake"),
                        }
                    }
                }
            };
            tokio::select! {
                _ = serve => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

/// One client's queries on a stream (RFC 7766 framing), answered in order, until it
/// closes, goes idle, sends what is not a query, or passes its rate.
///
/// Queries that arrived together are answered together: the answers collect while
/// the read buffer holds another whole query, and go out in one write (one TLS
/// record, one system call) before the connection waits for more. A client that
/// pipelines (dnsperf, a resolver's DoT pool) then costs a write per burst, not per
/// query; one that asks and waits gets its answer at once.
pub(crate) async fn tcp_connection<S>(
    stream: S,
    client: SocketAddr,
    engine: Arc<Engine>,
    shared: &TcpShared,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut stream = tokio::io::BufReader::with_capacity(16 * 1024, stream);
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let full = out.len() >= 64 * 1024;
        if (full || !whole_query_buffered(stream.buffer())) && !out.is_empty() {
            // A TLS session holds what it was given until flushed (a no-op on TCP).
            if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
                return;
            }
            out.clear();
        }
        let len = match tokio::time::timeout(shared.idle(), stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => break,
        };
        let mut query = vec![0u8; len];
        match tokio::time::timeout(shared.idle(), stream.read_exact(&mut query)).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        let allowed = shared
            .limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow(client.ip(), std::time::Instant::now());
        if !allowed {
            Counters::add(&engine.stats.local().rate_limited);
            break;
        }
        let reply = match engine.start(&query, client.ip(), false) {
            Step::Done(Some(r)) => r,
            Step::Done(None) => break,
            Step::Upstream(p) => engine.clone().finish(query, p).await,
        };
        let reply = &reply[..reply.len().min(65535)];
        out.extend_from_slice(&(reply.len() as u16).to_be_bytes());
        out.extend_from_slice(reply);
    }
    // What was answered before the end still goes out.
    if !out.is_empty() {
        let _ = stream.write_all(&out).await;
        let _ = stream.flush().await;
    }
}

/// Does `buf` start with a whole length-prefixed message?
fn whole_query_buffered(buf: &[u8]) -> bool {
    buf.len() >= 2 && buf.len() >= 2 + usize::from(u16::from_be_bytes([buf[0], buf[1]]))
}
